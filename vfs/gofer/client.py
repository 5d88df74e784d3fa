"""A synchronous 9P2000.L client: one request in flight at a time (the
sentry is single-threaded), one method per operation.

A server's Rlerror becomes OSError(errno). A broken connection or a reply
that makes no sense becomes GoferProtocolError, an OSError with EIO, so
callers that handle OSError handle it too. Rlopen/Rlcreate may carry a
donated host fd (see vfs.gofer.server); lopen/lcreate return it, and any fd
that arrives with another reply is closed.
"""
from __future__ import annotations

import errno
import os
import socket

from . import p9

DEFAULT_MSIZE = (1 << 20) + p9.IOHDRSZ
_FD_REPLIES = (p9.Rlopen, p9.Rlcreate)


class GoferProtocolError(OSError):
    def __init__(self, why: str):
        super().__init__(errno.EIO, f"9P protocol error: {why}")


class GoferClient:
    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.msize = DEFAULT_MSIZE
        self._tag = 0
        self._next_fid = 1
        self._free_fids: list[int] = []
        self._deferred_clunks: list[int] = []
        self.broken = False

    # --- plumbing ---
    def new_fid(self) -> int:
        if self._free_fids:
            return self._free_fids.pop()
        fid = self._next_fid
        self._next_fid += 1
        return fid

    def _forget_fid(self, fid: int) -> None:
        self._free_fids.append(fid)

    def defer_clunk(self, fid: int) -> None:
        """Clunk fid before the next request. Safe from __del__ and from a
        garbage collection that runs in the middle of a request."""
        if not self.broken:
            self._deferred_clunks.append(fid)

    def _exchange(self, msg: p9.Message, tag: int | None = None) -> tuple[p9.Message, int | None]:
        if self.broken:
            raise GoferProtocolError("connection already failed")
        if tag is None:
            self._tag = self._tag % 0xFFFE + 1
            tag = self._tag
        try:
            wire = p9.encode(tag, msg)
        except p9.P9Error as e:  # nothing was sent: the session is intact
            raise OSError(errno.EINVAL, str(e)) from None
        fds: list[int] = []
        try:
            p9.send_message(self.sock, wire)
            raw = p9.read_message(self.sock, self.msize, fds)
            if raw is None:
                raise GoferProtocolError("server closed the connection")
            rtag, reply = p9.decode(raw)
        except p9.P9Error as e:
            self.broken = True
            _close_all(fds)
            raise GoferProtocolError(str(e)) from None
        except OSError as e:
            self.broken = True
            _close_all(fds)
            if isinstance(e, GoferProtocolError):
                raise
            raise GoferProtocolError(f"connection failed: {e}") from None
        except BaseException:  # interrupted mid-exchange: the stream is out of step
            self.broken = True
            _close_all(fds)
            raise
        donated = None
        if fds and isinstance(reply, _FD_REPLIES):
            donated = fds.pop(0)
        _close_all(fds)
        if rtag != tag:
            self.broken = True
            raise GoferProtocolError(f"reply tag {rtag}, expected {tag}")
        if isinstance(reply, p9.Rlerror):
            raise OSError(reply.ecode, os.strerror(reply.ecode))
        if reply.TYPE != msg.TYPE + 1:
            self.broken = True
            raise GoferProtocolError(f"{type(reply).__name__} answers {type(msg).__name__}")
        return reply, donated

    def rpc(self, msg: p9.Message) -> p9.Message:
        """Send msg, return its reply (Rlerror raised as OSError)."""
        reply, fd = self.rpc_with_fd(msg)
        if fd is not None:
            os.close(fd)
        return reply

    def rpc_with_fd(self, msg: p9.Message) -> tuple[p9.Message, int | None]:
        self._send_deferred_clunks()
        return self._exchange(msg)

    def _send_deferred_clunks(self) -> None:
        while self._deferred_clunks and not self.broken:
            fid = self._deferred_clunks.pop()
            try:
                self._exchange(p9.Tclunk(fid))
            except GoferProtocolError:
                raise
            except OSError:
                pass
            self._forget_fid(fid)

    # --- session ---
    def version(self, msize: int = DEFAULT_MSIZE, version: bytes = p9.VERSION) -> tuple[int, bytes]:
        self.msize = max(msize, p9.IOHDRSZ + 64)
        reply, _ = self._exchange(p9.Tversion(msize, version), tag=p9.NOTAG)
        if reply.version != version:
            raise OSError(errno.EPROTONOSUPPORT, f"server speaks {reply.version!r}")
        if reply.msize > msize:
            raise GoferProtocolError(f"server raised msize to {reply.msize}")
        self.msize = reply.msize
        self._free_fids.clear()
        self._deferred_clunks.clear()
        self._next_fid = 1
        return reply.msize, reply.version

    def attach(self, fid: int, uname: bytes = b"", aname: bytes = b"",
               n_uname: int = p9.NONUNAME, afid: int = p9.NOFID) -> p9.Qid:
        return self.rpc(p9.Tattach(fid, afid, uname, aname, n_uname)).qid

    def clunk(self, fid: int) -> None:
        try:
            self.rpc(p9.Tclunk(fid))
        finally:  # a clunked fid is gone even if the server complained
            self._forget_fid(fid)

    def flush(self, oldtag: int) -> None:
        self.rpc(p9.Tflush(oldtag))

    # --- walking and attributes ---
    def walk(self, fid: int, names, newfid: int | None = None) -> tuple[int, list[p9.Qid]]:
        """Walk all of names from fid; returns (newfid, qids). newfid
        defaults to a fresh number; fid numbers come from new_fid(). Longer
        walks go MAXWELEM names per message. A walk that stops early raises
        (ENOENT, or the server's error) and leaves no new fid behind."""
        names = list(names)
        if newfid is None:
            newfid = self.new_fid()
        chunks = [names[i:i + p9.MAXWELEM] for i in range(0, len(names), p9.MAXWELEM)] or [[]]
        qids: list[p9.Qid] = []
        cur = fid
        for chunk in chunks:
            try:
                reply = self.rpc(p9.Twalk(cur, newfid, tuple(chunk)))
            except BaseException:
                self._abandon_walk(fid, newfid, established=cur == newfid)
                raise
            if len(reply.qids) != len(chunk):
                # The spec leaves newfid unset after a short walk, but diod
                # sets it: clunk to be sure (EBADF from a server that did not).
                self._abandon_walk(fid, newfid, established=True)
                raise OSError(errno.ENOENT, os.strerror(errno.ENOENT))
            qids.extend(reply.qids)
            cur = newfid
        return newfid, qids

    def _abandon_walk(self, fid: int, newfid: int, established: bool) -> None:
        if newfid == fid:
            return
        if established and not self.broken:
            try:
                self.clunk(newfid)
            except OSError:
                pass
        else:
            self._forget_fid(newfid)

    def getattr(self, fid: int, mask: int = p9.GETATTR_BASIC) -> p9.Rgetattr:
        return self.rpc(p9.Tgetattr(fid, mask))

    def setattr(self, fid: int, valid: int, mode: int = 0, uid: int = 0, gid: int = 0, size: int = 0,
                atime_ns: int = 0, mtime_ns: int = 0) -> None:
        self.rpc(p9.Tsetattr(fid, valid, mode, uid, gid, size, atime_ns // 10**9, atime_ns % 10**9,
                             mtime_ns // 10**9, mtime_ns % 10**9))

    def readlink(self, fid: int) -> bytes:
        return self.rpc(p9.Treadlink(fid)).target

    def statfs(self, fid: int) -> p9.Rstatfs:
        return self.rpc(p9.Tstatfs(fid))

    def xattrwalk(self, fid: int, newfid: int, name: bytes) -> int:
        return self.rpc(p9.Txattrwalk(fid, newfid, name)).size

    def xattr_get(self, fid: int, name: bytes) -> bytes:
        """The value of attribute name of fid's file; with name b"" the
        NUL-terminated list of names (Txattrwalk, Treads, Tclunk)."""
        newfid = self.new_fid()
        try:
            size = self.xattrwalk(fid, newfid, name)
        except BaseException:
            self._forget_fid(newfid)
            raise
        try:
            if size > p9.XATTR_SIZE_MAX * 16:
                raise GoferProtocolError(f"xattr of {size} bytes")
            parts, got = [], 0
            while got < size:
                data = self.read(newfid, got, size - got)
                if not data:
                    break
                parts.append(data)
                got += len(data)
        finally:
            self.clunk(newfid)
        return b"".join(parts)

    def xattr_set(self, fid: int, name: bytes, value: bytes, flags: int = 0) -> None:
        """Set attribute name of fid's file (Txattrcreate on a clone, Twrites,
        Tclunk, which stores it and reports the error). An empty value
        removes the attribute: 9P has no other way to say remove."""
        newfid, _ = self.walk(fid, [])
        try:
            self.rpc(p9.Txattrcreate(newfid, name, len(value), flags))
            done = 0
            while done < len(value):
                n = self.write(newfid, done, value[done:])
                if n <= 0:
                    raise OSError(errno.EIO, "short xattr write")
                done += n
        except BaseException:
            try:
                self.clunk(newfid)
            except OSError:
                pass
            raise
        self.clunk(newfid)

    def lock(self, fid: int, type_: int, start: int = 0, length: int = 0, *, flags: int = 0,
             proc_id: int = 0, client_id: bytes = b"") -> int:
        """Rlock status (p9.LOCK_SUCCESS, LOCK_BLOCKED, ...); fid is open."""
        return self.rpc(p9.Tlock(fid, type_, flags, start, length, proc_id, client_id)).status

    def getlock(self, fid: int, type_: int, start: int = 0, length: int = 0, *,
                proc_id: int = 0, client_id: bytes = b"") -> p9.Rgetlock:
        return self.rpc(p9.Tgetlock(fid, type_, start, length, proc_id, client_id))

    # --- I/O ---
    def lopen(self, fid: int, flags: int) -> tuple[p9.Qid, int, int | None]:
        """(qid, iounit, donated host fd or None)."""
        reply, fd = self.rpc_with_fd(p9.Tlopen(fid, flags))
        return reply.qid, reply.iounit, fd

    def lcreate(self, fid: int, name: bytes, flags: int, mode: int, gid: int
                ) -> tuple[p9.Qid, int, int | None]:
        """Create and open name in directory fid; fid then names the file."""
        reply, fd = self.rpc_with_fd(p9.Tlcreate(fid, name, flags, mode, gid))
        return reply.qid, reply.iounit, fd

    @property
    def max_io(self) -> int:
        return self.msize - p9.IOHDRSZ

    def read(self, fid: int, offset: int, count: int) -> bytes:
        count = min(count, self.max_io)
        data = self.rpc(p9.Tread(fid, offset, count)).data
        if len(data) > count:
            raise GoferProtocolError(f"Rread of {len(data)} bytes for {count}")
        return data

    def write(self, fid: int, offset: int, data: bytes) -> int:
        """One Twrite of at most msize's worth; callers loop."""
        chunk = bytes(data[:self.max_io])
        n = self.rpc(p9.Twrite(fid, offset, chunk)).count
        if n > len(chunk):
            raise GoferProtocolError(f"Rwrite of {n} bytes for {len(chunk)}")
        return n

    def readdir(self, fid: int, offset: int, count: int | None = None) -> list[p9.Dirent]:
        count = self.max_io if count is None else min(count, self.max_io)
        data = self.rpc(p9.Treaddir(fid, offset, count)).data
        try:
            return p9.decode_dirents(data)
        except p9.P9Error as e:
            raise GoferProtocolError(str(e)) from None

    def readdir_all(self, fid: int) -> list[p9.Dirent]:
        """Every entry of the opened directory fid, following the cookies."""
        out, offset = [], 0
        while True:
            batch = self.readdir(fid, offset)
            if not batch:
                return out
            out.extend(batch)
            offset = batch[-1].offset

    def fsync(self, fid: int, datasync: bool = False) -> None:
        self.rpc(p9.Tfsync(fid, int(datasync)))

    # --- changes ---
    def mkdir(self, dfid: int, name: bytes, mode: int, gid: int) -> p9.Qid:
        return self.rpc(p9.Tmkdir(dfid, name, mode, gid)).qid

    def symlink(self, dfid: int, name: bytes, target: bytes, gid: int) -> p9.Qid:
        return self.rpc(p9.Tsymlink(dfid, name, target, gid)).qid

    def mknod(self, dfid: int, name: bytes, mode: int, major: int, minor: int, gid: int) -> p9.Qid:
        return self.rpc(p9.Tmknod(dfid, name, mode, major, minor, gid)).qid

    def link(self, dfid: int, fid: int, name: bytes) -> None:
        self.rpc(p9.Tlink(dfid, fid, name))

    def unlinkat(self, dfid: int, name: bytes, flags: int = 0) -> None:
        self.rpc(p9.Tunlinkat(dfid, name, flags))

    def renameat(self, olddfid: int, oldname: bytes, newdfid: int, newname: bytes) -> None:
        self.rpc(p9.Trenameat(olddfid, oldname, newdfid, newname))

    def rename(self, fid: int, dfid: int, name: bytes) -> None:
        self.rpc(p9.Trename(fid, dfid, name))

    def remove(self, fid: int) -> None:
        try:
            self.rpc(p9.Tremove(fid))
        finally:  # Tremove clunks the fid whatever the outcome
            self._forget_fid(fid)

    def close(self) -> None:
        self.broken = True
        self._deferred_clunks.clear()
        try:
            self.sock.close()
        except OSError:
            pass


def _close_all(fds: list[int]) -> None:
    while fds:
        try:
            os.close(fds.pop())
        except OSError:
            pass
