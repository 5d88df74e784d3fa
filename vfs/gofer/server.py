"""The gofer: serves one host directory over 9P2000.L on a connected socket.

    python -m vfs.gofer.server --fd N --root DIR [--rw]

serves the unix socket fd N until EOF, one request at a time (requests
queued behind it are read ahead, so a Tflush can cancel one that has not
been answered yet; nothing ever blocks: a conflicting Tlock answers
LOCK_BLOCKED at once and the client retries).

Confinement (never optional):
  * every fid names a Node holding an O_PATH|O_NOFOLLOW host fd; a walk
    opens one component at a time relative to the parent's fd, so the host
    never resolves a path, a '..' or a symlink for us;
  * a name containing '/' or NUL, or equal to '' or '.', is refused; in a
    walk '..' moves to the Node's parent as this server recorded it and
    stays put at the export root; any other request naming '..' is refused;
  * a file is reopened for I/O by (parent fd, name) with O_NOFOLLOW and
    must still be the inode the fid was walked to (else ESTALE), so a
    host-side swap of the name cannot redirect the open;
  * symlinks are never followed: Treadlink returns the target text and the
    sandbox resolves it in its own namespace;
  * a walk that crosses into another file system checks its f_type and
    refuses host pseudo file systems (proc, sysfs, cgroup, debugfs, ...);
  * only regular files and directories are ever opened; device nodes,
    fifos and sockets only answer getattr (and setattr with --rw), so a
    fifo never blocks the server;
  * only user.* extended attributes, of regular files and directories;
  * without --rw every modifying request fails with EROFS.
A hard link the host made inside the export to a file outside it is that
file: no server can tell it from any other link (the export's owner must
not make one).

Process confinement (vfs.gofer.confine): every fd but the socket and the
export root is closed and stdio points at /dev/null; SIGKILL when the
parent dies; then a mount namespace whose root is the export (pseudo file
systems detached, nosuid/nodev/noexec, read-only without --rw) and a
network namespace of its own; no_new_privs; only the capabilities serving
needs (read-search; with --rw also DAC override, chown, fowner, fsetid);
a seccomp filter allowing only the calls serving makes (x86-64). Each step
that the host refuses is skipped; the walk rules above hold regardless.

Locks (Tlock/Tgetlock) are host open-file-description locks on the fid's
open file: each opened fid is one lock owner, whatever proc_id says.
Rgetlock reports a conflicting holder as proc_id 0xFFFFFFFF (host pids are
not the client's business).

Extended attributes follow Linux's client and diod: Txattrwalk with an
empty name reads the NUL-separated list, with a name that attribute's
value (Tread on the new fid); Txattrcreate turns the fid into a buffer
that Twrite fills and Tclunk stores (attr_size 0: remove the attribute).

Extension to 9P2000.L, fd donation: an Rlopen or Rlcreate that opened a
regular file carries that open host fd as SCM_RIGHTS ancillary data on the
reply's first byte (O_RDONLY when the server is read-only, the requested
access mode otherwise; never O_APPEND, the client positions every write).
The client may pread/pwrite it instead of sending Tread/Twrite; the fid
stays usable for Tread/Twrite as well. The byte stream is unchanged, so a
client unaware of the extension (diod's, Linux's) just never sees the fd:
the kernel discards SCM_RIGHTS that a recv without ancillary buffer skips.
"""
from __future__ import annotations

import collections
import errno
import fcntl
import os
import resource
import signal
import socket
import stat as S
import struct
import sys
import time

from . import confine, hostcalls, p9
from .confine import PSEUDO_FS_MAGICS

MAX_MSIZE = (1 << 20) + p9.IOHDRSZ

_O_PATH_NOFOLLOW = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
# lopen flags passed on to the host; O_APPEND is left out on purpose
_OPEN_FLAGS_KEPT = os.O_ACCMODE | os.O_TRUNC | os.O_DSYNC | os.O_SYNC
_WRITE_ACCESS = (os.O_WRONLY, os.O_RDWR)
_OPENABLE = (S.S_IFREG, S.S_IFDIR)
_MKNOD_ALLOWED = (S.S_IFREG, S.S_IFIFO, S.S_IFSOCK)  # never device nodes
_XATTR_PREFIX = b"user."
_XATTR_NAME_MAX = 255
_FLOCK = struct.Struct("hhqqi4x")  # struct flock (native layout)
_LOCK_TYPES = {p9.LOCK_TYPE_RDLCK: fcntl.F_RDLCK, p9.LOCK_TYPE_WRLCK: fcntl.F_WRLCK,
               p9.LOCK_TYPE_UNLCK: fcntl.F_UNLCK}
_OFF_MAX = (1 << 63) - 1


def _err(code: int) -> OSError:
    return OSError(code, os.strerror(code))


def check_not_pseudo(fd: int) -> None:
    if hostcalls.fstatfs(fd).type in PSEUDO_FS_MAGICS:
        raise _err(errno.EACCES)


def check_name(name: bytes) -> None:
    """A single name of a directory entry; a walk handles '..' before this."""
    if not name or name in (b".", b"..") or b"/" in name or b"\0" in name:
        raise _err(errno.EINVAL)
    if len(name) > 255:
        raise _err(errno.ENAMETOOLONG)


class Node:
    """A host file reached by a walk. The server's own tree of nodes (parent,
    name) is what '..' and reopen-by-name use. Reference counted by fids
    and child nodes; the O_PATH fd closes with the last reference."""
    __slots__ = ("fd", "parent", "name", "refs", "dev", "ino", "kind", "children", "unlinked")

    def __init__(self, fd: int, parent: "Node | None", name: bytes, st: os.stat_result):
        self.fd = fd
        self.parent = parent
        self.name = name
        self.refs = 0
        self.dev, self.ino, self.kind = st.st_dev, st.st_ino, S.S_IFMT(st.st_mode)
        self.children: dict[bytes, list[Node]] = {}
        self.unlinked = False
        if parent is not None:
            parent.refs += 1
            parent.children.setdefault(name, []).append(self)

    def same_file(self, st: os.stat_result) -> bool:
        return (st.st_dev, st.st_ino) == (self.dev, self.ino)


def incref(node: Node) -> Node:
    node.refs += 1
    return node


def decref(node: Node | None) -> None:
    while node is not None:
        node.refs -= 1
        if node.refs > 0:
            return
        os.close(node.fd)
        parent = node.parent
        if parent is not None:
            siblings = parent.children.get(node.name)
            if siblings and node in siblings:
                siblings.remove(node)
                if not siblings:
                    del parent.children[node.name]
        node = parent


class XattrValue:
    """An xattr fid's contents: read back (walk) or filled in (create)."""
    __slots__ = ("name", "data", "size", "flags", "writing", "filled")

    def __init__(self, name: bytes, data: bytes, *, writing: bool = False, flags: int = 0):
        self.name = name
        self.data = bytearray(data) if writing else data
        self.size = len(data)
        self.flags = flags
        self.writing = writing
        self.filled = 0  # bytes written so far (as one run from offset 0)


class Fid:
    __slots__ = ("node", "open_fd", "writable", "dirents", "xattr")

    def __init__(self, node: Node):
        self.node = incref(node)
        self.open_fd: int | None = None
        self.writable = False
        self.dirents: list[p9.Dirent] | None = None
        self.xattr: XattrValue | None = None

    def release(self) -> None:
        if self.open_fd is not None:
            os.close(self.open_fd)
            self.open_fd = None
        decref(self.node)


class GoferServer:
    def __init__(self, sock: socket.socket, root_fd: int, rw: bool = False,
                 hidden: set[tuple[int, int]] = frozenset()):
        self.sock = sock
        self.rw = rw
        self.root = incref(Node(root_fd, None, b"", os.fstat(root_fd)))
        self.hidden = hidden  # (dev, ino) of directories a pseudo fs covered
        self.msize = MAX_MSIZE
        self.reader = p9.MessageReader(sock, self.msize)
        self.fids: dict[int, Fid] = {}
        self._foreign_qids: dict[tuple[int, int], int] = {}
        self._handlers = {cls: getattr(self, "do_" + cls.__name__[1:].lower())
                          for cls in p9.MESSAGES.values()
                          if cls.__name__[0] == "T" and hasattr(self, "do_" + cls.__name__[1:].lower())}

    # --- the loop ---
    def serve(self) -> None:
        pending: collections.deque[bytes] = collections.deque()
        reading = True  # until EOF or broken framing: then answer what came
        while True:
            if reading:
                try:
                    more = self.reader.read(wait=not pending)
                except (p9.P9Error, OSError):
                    more = None  # the stream cannot be trusted any more
                if more is None:
                    reading = False
                elif more:
                    pending.extend(more)
                    _drop_flushed(pending)
            if not pending:
                if reading:
                    continue
                return
            tag, reply, fd = self.handle(pending.popleft())
            try:
                p9.send_message(self.sock, p9.encode(tag, reply), fd)
            except OSError:
                return

    def handle(self, raw: bytes) -> tuple[int, p9.Message, int | None]:
        """(tag, reply, fd to donate or None) for one raw request."""
        try:
            tag, msg = p9.decode(raw)
        except p9.P9Error:
            _, type_, tag = p9.peek_header(raw)
            known = type_ in p9.MESSAGES
            return tag, p9.Rlerror(errno.EINVAL if known else errno.EOPNOTSUPP), None
        handler = self._handlers.get(type(msg))
        if handler is None:
            return tag, p9.Rlerror(errno.EOPNOTSUPP), None
        try:
            result = handler(msg)
        except OSError as e:
            return tag, p9.Rlerror(e.errno or errno.EIO), None
        except (ValueError, OverflowError):
            return tag, p9.Rlerror(errno.EINVAL), None
        except Exception:  # a bug here must not take the file server down
            return tag, p9.Rlerror(errno.EIO), None
        if isinstance(result, tuple):
            return (tag, *result)
        return tag, result, None

    # --- helpers ---
    def fid(self, n: int) -> Fid:
        f = self.fids.get(n)
        if f is None:
            raise _err(errno.EBADF)
        return f

    def new_fid_number(self, n: int) -> None:
        if n in self.fids or n == p9.NOFID:
            raise _err(errno.EBADF)

    def need_rw(self) -> None:
        if not self.rw:
            raise _err(errno.EROFS)

    def dir_node(self, n: int) -> Node:
        node = self.fid(n).node
        if node.kind != S.S_IFDIR:
            raise _err(errno.ENOTDIR)
        return node

    def qid(self, dev: int, ino: int, kind: int) -> p9.Qid:
        if kind == S.S_IFDIR:
            qtype = p9.QTDIR
        elif kind == S.S_IFLNK:
            qtype = p9.QTSYMLINK
        else:
            qtype = p9.QTFILE
        return p9.Qid(qtype, 0, self.qid_path(dev, ino))

    def qid_path(self, dev: int, ino: int) -> int:
        """The inode number for files on the export's own device; files
        under other mounts get numbers of their own so none collide."""
        if dev == self.root.dev:
            return ino
        path = self._foreign_qids.get((dev, ino))
        if path is None:
            path = (1 << 63) | len(self._foreign_qids)
            self._foreign_qids[(dev, ino)] = path
        return path

    def node_qid(self, node: Node) -> p9.Qid:
        return self.qid(node.dev, node.ino, node.kind)

    def step(self, node: Node, name: bytes) -> Node:
        """One walk step: the child `name` of node, never leaving the export."""
        if name == b"..":
            return node.parent or node
        check_name(name)
        if node.kind != S.S_IFDIR:
            raise _err(errno.ENOTDIR)
        fd = os.open(name, _O_PATH_NOFOLLOW, dir_fd=node.fd)
        try:
            st = os.fstat(fd)
            if st.st_dev != node.dev:
                check_not_pseudo(fd)
            elif (st.st_dev, st.st_ino) in self.hidden:
                raise _err(errno.EACCES)  # a pseudo fs was mounted here
            for known in node.children.get(name, ()):
                if known.same_file(st) and not known.unlinked:
                    os.close(fd)
                    return known
            return Node(fd, node, name, st)
        except BaseException:
            try:
                os.close(fd)
            except OSError:
                pass
            raise

    def verified_parent(self, node: Node) -> tuple[int, bytes]:
        """(parent fd, name) that still name node on the host."""
        if node.parent is None:
            raise _err(errno.EBUSY)  # the export root has no name here
        if node.unlinked:
            raise _err(errno.ENOENT)
        st = os.stat(node.name, dir_fd=node.parent.fd, follow_symlinks=False)
        if not node.same_file(st):
            raise _err(errno.ESTALE)
        return node.parent.fd, node.name

    def reopen(self, node: Node, flags: int) -> int:
        """An fd of node opened for I/O (regular files and directories only)."""
        if node.kind == S.S_IFDIR:
            return os.open(".", flags | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=node.fd)
        if node.kind != S.S_IFREG:
            raise _err(errno.EACCES)
        if node.parent is None or node.unlinked:
            raise _err(errno.ENOENT)
        fd = os.open(node.name, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK,
                     dir_fd=node.parent.fd)
        st = os.fstat(fd)
        if not node.same_file(st):
            os.close(fd)
            raise _err(errno.ESTALE)
        return fd

    def forget_name(self, parent: Node, name: bytes) -> None:
        """Nodes for a removed or replaced name: mark them unlinked."""
        for n in parent.children.pop(name, ()):
            n.unlinked = True

    def moved(self, old_parent: Node, old_name: bytes, new_parent: Node, new_name: bytes) -> None:
        """Keep the node tree in step with a rename this server made."""
        if old_parent is new_parent and old_name == new_name:
            return
        movers = old_parent.children.pop(old_name, [])
        self.forget_name(new_parent, new_name)
        for m in movers:
            m.name = new_name
            if m.parent is not new_parent:
                m.parent = incref(new_parent)
                decref(old_parent)
        if movers:
            new_parent.children.setdefault(new_name, []).extend(movers)

    # --- session ---
    def do_version(self, m: p9.Tversion):
        for f in list(self.fids.values()):
            f.release()
        self.fids.clear()
        if not m.version.startswith(p9.VERSION):
            return p9.Rversion(min(m.msize, MAX_MSIZE), b"unknown")
        if m.msize < p9.IOHDRSZ + 64:
            raise _err(errno.EINVAL)
        self.msize = min(m.msize, MAX_MSIZE)
        self.reader.max_size = self.msize
        return p9.Rversion(self.msize, p9.VERSION)

    def do_auth(self, m: p9.Tauth):
        # No authentication: holding the socket is the capability. ENOENT is
        # how diod says "attach without auth", and its clients expect it.
        raise _err(errno.ENOENT)

    def do_attach(self, m: p9.Tattach):
        self.new_fid_number(m.fid)
        self.fids[m.fid] = Fid(self.root)
        return p9.Rattach(self.node_qid(self.root))

    def do_flush(self, m: p9.Tflush):
        # the request oldtag names was either answered already or dropped
        # unanswered when this Tflush was read (see _drop_flushed)
        return p9.Rflush()

    def do_clunk(self, m: p9.Tclunk):
        f = self.fid(m.fid)
        del self.fids[m.fid]
        try:
            if f.xattr is not None and f.xattr.writing:
                self._xattr_store(f)
        finally:  # the fid is gone even when storing failed
            f.release()
        return p9.Rclunk()

    # --- walking and attributes ---
    def do_walk(self, m: p9.Twalk):
        start = self.fid(m.fid)
        if start.xattr is not None:
            raise _err(errno.EINVAL)  # an xattr fid only reads, writes and clunks
        if m.newfid != m.fid:
            self.new_fid_number(m.newfid)
        if len(m.wnames) > p9.MAXWELEM:
            raise _err(errno.EINVAL)
        node = incref(start.node)
        qids = []
        try:
            for i, name in enumerate(m.wnames):
                try:
                    nxt = incref(self.step(node, name))
                except OSError:
                    if i == 0:
                        raise
                    return p9.Rwalk(tuple(qids))  # a partial walk leaves newfid unset
                decref(node)
                node = nxt
                qids.append(self.node_qid(node))
            new = Fid(node)
            if m.newfid == m.fid:
                self.fids.pop(m.fid).release()
            self.fids[m.newfid] = new
            return p9.Rwalk(tuple(qids))
        finally:
            decref(node)

    def do_getattr(self, m: p9.Tgetattr):
        node = self.fid(m.fid).node
        st = os.fstat(node.fd)
        return p9.Rgetattr(
            valid=p9.GETATTR_BASIC, qid=self.qid(st.st_dev, st.st_ino, S.S_IFMT(st.st_mode)),
            mode=st.st_mode, uid=st.st_uid, gid=st.st_gid, nlink=st.st_nlink, rdev=st.st_rdev,
            size=st.st_size, blksize=st.st_blksize, blocks=st.st_blocks,
            atime_sec=st.st_atime_ns // 10**9, atime_nsec=st.st_atime_ns % 10**9,
            mtime_sec=st.st_mtime_ns // 10**9, mtime_nsec=st.st_mtime_ns % 10**9,
            ctime_sec=st.st_ctime_ns // 10**9, ctime_nsec=st.st_ctime_ns % 10**9,
            btime_sec=0, btime_nsec=0, gen=0, data_version=0)

    def do_setattr(self, m: p9.Tsetattr):
        self.need_rw()
        node = self.fid(m.fid).node
        v = m.valid
        if node.kind in _OPENABLE:
            self._setattr_open(node, m)
            return p9.Rsetattr()
        # symlinks and special files: by name, never following a symlink
        if v & p9.SETATTR_SIZE:
            raise _err(errno.EINVAL)
        if v & p9.SETATTR_MODE:
            if node.kind == S.S_IFLNK:
                raise _err(errno.EOPNOTSUPP)
            hostcalls.fchmod_path_fd(node.fd, m.mode & 0o7777)  # the exact inode
        if v & (p9.SETATTR_UID | p9.SETATTR_GID):
            hostcalls.fchown_path_fd(node.fd, m.uid if v & p9.SETATTR_UID else -1,
                                     m.gid if v & p9.SETATTR_GID else -1)
        times = self._times(m, os.fstat(node.fd))
        if times:  # by name, never following: a name swapped meanwhile is ESTALE
            dir_fd, name = self.verified_parent(node)
            os.utime(name, ns=times, dir_fd=dir_fd, follow_symlinks=False)
        return p9.Rsetattr()

    def _setattr_open(self, node: Node, m: p9.Tsetattr) -> None:
        v = m.valid
        wants_size = bool(v & p9.SETATTR_SIZE)
        if wants_size and node.kind == S.S_IFDIR:
            raise _err(errno.EISDIR)
        fd = self.reopen(node, os.O_WRONLY if wants_size else os.O_RDONLY)
        try:
            if v & p9.SETATTR_MODE:
                os.fchmod(fd, m.mode & 0o7777)
            if v & (p9.SETATTR_UID | p9.SETATTR_GID):
                os.fchown(fd, m.uid if v & p9.SETATTR_UID else -1, m.gid if v & p9.SETATTR_GID else -1)
            if wants_size:
                os.ftruncate(fd, m.size)
            times = self._times(m, os.fstat(fd))
            if times:
                os.utime(fd, ns=times)
        finally:
            os.close(fd)

    @staticmethod
    def _times(m: p9.Tsetattr, st: os.stat_result) -> tuple[int, int] | None:
        """(atime_ns, mtime_ns) to set, or None; an unset one keeps its value."""
        v = m.valid
        if not v & (p9.SETATTR_ATIME | p9.SETATTR_MTIME):
            return None
        now = time.time_ns()
        atime, mtime = st.st_atime_ns, st.st_mtime_ns
        if v & p9.SETATTR_ATIME:
            atime = m.atime_sec * 10**9 + m.atime_nsec if v & p9.SETATTR_ATIME_SET else now
        if v & p9.SETATTR_MTIME:
            mtime = m.mtime_sec * 10**9 + m.mtime_nsec if v & p9.SETATTR_MTIME_SET else now
        return atime, mtime

    def do_readlink(self, m: p9.Treadlink):
        node = self.fid(m.fid).node
        if node.kind != S.S_IFLNK:
            raise _err(errno.EINVAL)
        return p9.Rreadlink(os.readlink(b"", dir_fd=node.fd))

    def do_statfs(self, m: p9.Tstatfs):
        sf = hostcalls.fstatfs(self.fid(m.fid).node.fd)
        return p9.Rstatfs(p9.V9FS_MAGIC, sf.bsize, sf.blocks, sf.bfree, sf.bavail,
                          sf.files, sf.ffree, sf.fsid, sf.namelen)

    # --- extended attributes (user.* only) ---
    def do_xattrwalk(self, m: p9.Txattrwalk):
        f = self.fid(m.fid)
        if f.xattr is not None:
            raise _err(errno.EINVAL)
        if m.newfid != m.fid:
            self.new_fid_number(m.newfid)
        if m.name:
            _check_xattr_name(m.name)
            data = self._xattr_get(f.node, m.name)
        else:
            data = self._xattr_list(f.node)
        new = Fid(f.node)
        new.xattr = XattrValue(m.name, data)
        if m.newfid == m.fid:
            self.fids.pop(m.fid).release()
        self.fids[m.newfid] = new
        return p9.Rxattrwalk(len(data))

    def do_xattrcreate(self, m: p9.Txattrcreate):
        self.need_rw()
        f = self.fid(m.fid)
        if f.open_fd is not None or f.xattr is not None:
            raise _err(errno.EINVAL)
        _check_xattr_name(m.name)
        if m.flags & ~(p9.XATTR_CREATE | p9.XATTR_REPLACE):
            raise _err(errno.EINVAL)
        if m.attr_size > p9.XATTR_SIZE_MAX:
            raise _err(errno.E2BIG)
        if f.node.kind not in _OPENABLE:
            raise _err(errno.EPERM)  # Linux: user.* only on files and directories
        f.xattr = XattrValue(m.name, bytes(m.attr_size), writing=True, flags=m.flags)
        return p9.Rxattrcreate()

    def _xattr_fd(self, node: Node) -> int:
        """An fd for the f*xattr calls (an O_PATH fd will not do)."""
        return self.reopen(node, os.O_RDONLY)

    def _xattr_get(self, node: Node, name: bytes) -> bytes:
        if node.kind not in _OPENABLE:
            raise _err(errno.ENODATA)
        fd = self._xattr_fd(node)
        try:
            return os.getxattr(fd, name)
        finally:
            os.close(fd)

    def _xattr_list(self, node: Node) -> bytes:
        if node.kind not in _OPENABLE:
            return b""
        fd = self._xattr_fd(node)
        try:
            names = [os.fsencode(n) for n in os.listxattr(fd)]
        finally:
            os.close(fd)
        return b"".join(n + b"\0" for n in names if n.startswith(_XATTR_PREFIX))

    def _xattr_store(self, f: Fid) -> None:
        """Tclunk of a Txattrcreate fid: set (or with size 0 remove) it."""
        x = f.xattr
        if x.filled != x.size:
            raise _err(errno.EINVAL)  # fewer bytes written than announced
        fd = self._xattr_fd(f.node)
        try:
            if x.size:
                os.setxattr(fd, x.name, bytes(x.data), x.flags)
            else:
                os.removexattr(fd, x.name)
        finally:
            os.close(fd)

    # --- locks ---
    def _flock(self, m, type_: int) -> bytes:
        if type_ not in _LOCK_TYPES or m.start > _OFF_MAX or m.length > _OFF_MAX:
            raise _err(errno.EINVAL)
        return _FLOCK.pack(_LOCK_TYPES[type_], os.SEEK_SET, m.start, m.length, 0)

    def do_lock(self, m: p9.Tlock):
        f = self.open_fid(m.fid)
        if m.flags & ~(p9.LOCK_FLAGS_BLOCK | p9.LOCK_FLAGS_RECLAIM):
            raise _err(errno.EINVAL)
        try:
            fcntl.fcntl(f.open_fd, fcntl.F_OFD_SETLK, self._flock(m, m.type))
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EACCES):
                return p9.Rlock(p9.LOCK_BLOCKED)  # never wait here: the client retries
            raise
        return p9.Rlock(p9.LOCK_SUCCESS)

    def do_getlock(self, m: p9.Tgetlock):
        f = self.open_fid(m.fid)
        if m.type == p9.LOCK_TYPE_UNLCK:
            raise _err(errno.EINVAL)
        raw = fcntl.fcntl(f.open_fd, fcntl.F_OFD_GETLK, self._flock(m, m.type))
        ltype, _, start, length, _ = _FLOCK.unpack(raw)
        if ltype == fcntl.F_UNLCK:
            return p9.Rgetlock(p9.LOCK_TYPE_UNLCK, m.start, m.length, m.proc_id, m.client_id)
        kind = p9.LOCK_TYPE_WRLCK if ltype == fcntl.F_WRLCK else p9.LOCK_TYPE_RDLCK
        return p9.Rgetlock(kind, start, length, 0xFFFFFFFF, b"")

    # --- I/O ---
    def do_lopen(self, m: p9.Tlopen):
        f = self.fid(m.fid)
        if f.open_fd is not None or f.xattr is not None:
            raise _err(errno.EINVAL)
        if f.node.kind not in _OPENABLE:
            raise _err(errno.EACCES)  # device nodes, fifos, sockets: getattr only
        flags = m.flags & _OPEN_FLAGS_KEPT
        writes = flags & os.O_ACCMODE in _WRITE_ACCESS or flags & os.O_TRUNC
        if writes:
            self.need_rw()
        f.open_fd = self.reopen(f.node, flags)
        f.writable = bool(flags & os.O_ACCMODE in _WRITE_ACCESS)
        reply = p9.Rlopen(self.node_qid(f.node), 0)
        return reply, (f.open_fd if f.node.kind == S.S_IFREG else None)

    def do_lcreate(self, m: p9.Tlcreate):
        self.need_rw()
        f = self.fid(m.fid)
        if f.open_fd is not None:
            raise _err(errno.EINVAL)
        parent = self.dir_node(m.fid)
        check_name(m.name)
        flags = (m.flags & _OPEN_FLAGS_KEPT) | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        if m.flags & os.O_EXCL:
            flags |= os.O_EXCL
        fd = os.open(m.name, flags, m.mode & 0o7777, dir_fd=parent.fd)
        try:
            st = os.fstat(fd)
            if not S.S_ISREG(st.st_mode):
                raise _err(errno.EISDIR)
            if st.st_gid != m.gid:
                os.fchown(fd, -1, m.gid)
            node = self.step(parent, m.name)
            if not node.same_file(st):
                raise _err(errno.ESTALE)
        except BaseException:
            os.close(fd)
            raise
        new = Fid(node)
        new.open_fd = fd
        new.writable = m.flags & os.O_ACCMODE in _WRITE_ACCESS
        self.fids[m.fid] = new
        f.release()
        return p9.Rlcreate(self.node_qid(node), 0), fd

    def open_fid(self, n: int) -> Fid:
        f = self.fid(n)
        if f.open_fd is None:
            raise _err(errno.EBADF)
        return f

    def do_read(self, m: p9.Tread):
        count = min(m.count, self.msize - p9.IOHDRSZ)
        f = self.fid(m.fid)
        if f.xattr is not None and not f.xattr.writing:
            return p9.Rread(bytes(f.xattr.data[m.offset:m.offset + count]))
        f = self.open_fid(m.fid)
        return p9.Rread(os.pread(f.open_fd, count, m.offset))

    def do_write(self, m: p9.Twrite):
        self.need_rw()
        f = self.fid(m.fid)
        if f.xattr is not None and f.xattr.writing:
            return p9.Rwrite(self._xattr_write(f.xattr, m.offset, m.data))
        f = self.open_fid(m.fid)
        if not f.writable:
            raise _err(errno.EBADF)
        return p9.Rwrite(os.pwrite(f.open_fd, m.data, m.offset))

    @staticmethod
    def _xattr_write(x: XattrValue, offset: int, data: bytes) -> int:
        if offset != x.filled:
            raise _err(errno.EINVAL)  # the value is written front to back
        n = min(len(data), x.size - offset)
        if n <= 0 and data:
            raise _err(errno.ENOSPC)  # more than Txattrcreate announced
        x.data[offset:offset + n] = data[:n]
        x.filled += n
        return n

    def do_fsync(self, m: p9.Tfsync):
        f = self.open_fid(m.fid)
        (os.fdatasync if m.datasync else os.fsync)(f.open_fd)
        return p9.Rfsync()

    def do_readdir(self, m: p9.Treaddir):
        f = self.open_fid(m.fid)
        if f.node.kind != S.S_IFDIR:
            raise _err(errno.ENOTDIR)
        if m.offset == 0 or f.dirents is None:
            f.dirents = self.list_dir(f)
        budget = min(m.count, self.msize - p9.IOHDRSZ)
        out, used = [], 0
        for d in f.dirents[m.offset:]:
            size = p9.dirent_size(d.name)
            if used + size > budget:
                if not out:
                    raise _err(errno.EINVAL)  # the buffer cannot hold one entry
                break
            out.append(p9.encode_dirent(d))
            used += size
        return p9.Rreaddir(b"".join(out))

    def list_dir(self, f: Fid) -> list[p9.Dirent]:
        """The whole directory, '.' and '..' first; offsets are indexes."""
        node = f.node
        parent = node.parent or node
        entries = [(b".", self.node_qid(node), 4), (b"..", self.node_qid(parent), 4)]
        os.lseek(f.open_fd, 0, os.SEEK_SET)
        with os.scandir(f.open_fd) as it:
            for e in it:
                dtype = _dtype(e)
                kind = dtype << 12
                entries.append((os.fsencode(e.name), self.qid(node.dev, e.inode(), kind), dtype))
        return [p9.Dirent(q, i + 1, t, name) for i, (name, q, t) in enumerate(entries)]

    # --- changes (only with --rw) ---
    def do_mkdir(self, m: p9.Tmkdir):
        self.need_rw()
        parent = self.dir_node(m.dfid)
        check_name(m.name)
        os.mkdir(m.name, m.mode & 0o7777, dir_fd=parent.fd)
        return p9.Rmkdir(self._new_child_qid(parent, m.name, m.gid))

    def do_symlink(self, m: p9.Tsymlink):
        self.need_rw()
        parent = self.dir_node(m.fid)
        check_name(m.name)
        if b"\0" in m.symtgt:
            raise _err(errno.EINVAL)
        os.symlink(m.symtgt, m.name, dir_fd=parent.fd)
        return p9.Rsymlink(self._new_child_qid(parent, m.name, m.gid))

    def do_mknod(self, m: p9.Tmknod):
        self.need_rw()
        parent = self.dir_node(m.dfid)
        check_name(m.name)
        if S.S_IFMT(m.mode) not in _MKNOD_ALLOWED:
            raise _err(errno.EPERM)
        os.mknod(m.name, m.mode & (0o170000 | 0o7777), 0, dir_fd=parent.fd)
        return p9.Rmknod(self._new_child_qid(parent, m.name, m.gid))

    def _new_child_qid(self, parent: Node, name: bytes, gid: int) -> p9.Qid:
        st = os.stat(name, dir_fd=parent.fd, follow_symlinks=False)
        if st.st_gid != gid:
            os.chown(name, -1, gid, dir_fd=parent.fd, follow_symlinks=False)
        return self.qid(st.st_dev, st.st_ino, S.S_IFMT(st.st_mode))

    def do_link(self, m: p9.Tlink):
        self.need_rw()
        parent = self.dir_node(m.dfid)
        check_name(m.name)
        src_dir, src_name = self.verified_parent(self.fid(m.fid).node)
        os.link(src_name, m.name, src_dir_fd=src_dir, dst_dir_fd=parent.fd, follow_symlinks=False)
        return p9.Rlink()

    def do_unlinkat(self, m: p9.Tunlinkat):
        self.need_rw()
        parent = self.dir_node(m.dirfid)
        check_name(m.name)
        if m.flags & p9.AT_REMOVEDIR:
            os.rmdir(m.name, dir_fd=parent.fd)
        else:
            os.unlink(m.name, dir_fd=parent.fd)
        self.forget_name(parent, m.name)
        return p9.Runlinkat()

    def do_renameat(self, m: p9.Trenameat):
        self.need_rw()
        old_parent, new_parent = self.dir_node(m.olddirfid), self.dir_node(m.newdirfid)
        check_name(m.oldname)
        check_name(m.newname)
        self._rename(old_parent, m.oldname, new_parent, m.newname)
        return p9.Rrenameat()

    def do_rename(self, m: p9.Trename):
        self.need_rw()
        node = self.fid(m.fid).node
        new_parent = self.dir_node(m.dfid)
        check_name(m.name)
        self.verified_parent(node)
        self._rename(node.parent, node.name, new_parent, m.name)
        return p9.Rrename()

    def _rename(self, old_parent: Node, old_name: bytes, new_parent: Node, new_name: bytes) -> None:
        src = os.stat(old_name, dir_fd=old_parent.fd, follow_symlinks=False)
        try:
            dst = os.stat(new_name, dir_fd=new_parent.fd, follow_symlinks=False)
            same = (src.st_dev, src.st_ino) == (dst.st_dev, dst.st_ino)
        except FileNotFoundError:
            same = False
        os.rename(old_name, new_name, src_dir_fd=old_parent.fd, dst_dir_fd=new_parent.fd)
        if not same:  # renaming one hard link onto another changes nothing
            self.moved(old_parent, old_name, new_parent, new_name)

    def do_remove(self, m: p9.Tremove):
        f = self.fid(m.fid)
        try:
            self.need_rw()
            node = f.node
            dir_fd, name = self.verified_parent(node)
            if node.kind == S.S_IFDIR:
                os.rmdir(name, dir_fd=dir_fd)
            else:
                os.unlink(name, dir_fd=dir_fd)
            self.forget_name(node.parent, name)
        finally:  # Tremove clunks the fid even when the removal fails
            f.release()
            del self.fids[m.fid]
        return p9.Rremove()


def _check_xattr_name(name: bytes) -> None:
    if len(name) > _XATTR_NAME_MAX:
        raise _err(errno.ERANGE)
    if b"\0" in name or not name.startswith(_XATTR_PREFIX) or name == _XATTR_PREFIX:
        # other namespaces are not served: trusted.* and security.* would
        # let a guest act with the gofer's host privileges
        raise _err(errno.EOPNOTSUPP)


def _drop_flushed(pending: collections.deque) -> None:
    """Tflush: a request still queued ahead of the Tflush naming its tag
    is dropped unanswered, as 9P asks; the Tflush is answered in turn."""
    if not any(len(raw) == p9.HEADER_SIZE + 2 and raw[4] == p9.Tflush.TYPE for raw in pending):
        return
    kept: list[bytes | None] = []
    waiting: dict[int, int] = {}  # tag -> index in kept of a request not yet answered
    for raw in pending:
        tag = struct.unpack_from("<H", raw, 5)[0]
        if len(raw) == p9.HEADER_SIZE + 2 and raw[4] == p9.Tflush.TYPE:
            old = waiting.pop(struct.unpack_from("<H", raw, p9.HEADER_SIZE)[0], None)
            if old is not None:
                kept[old] = None
        else:
            waiting[tag] = len(kept)
        kept.append(raw)
    pending.clear()
    pending.extend(raw for raw in kept if raw is not None)


def _dtype(e: os.DirEntry) -> int:
    """d_type of a scandir entry, asking the host only when readdir did not say."""
    try:
        if e.is_symlink():
            return 10
        if e.is_dir(follow_symlinks=False):
            return 4
        if e.is_file(follow_symlinks=False):
            return 8
        return S.S_IFMT(e.stat(follow_symlinks=False).st_mode) >> 12
    except OSError:
        return 0


# --- process set-up ---

def close_other_fds(keep: set[int]) -> None:
    """Close every fd not in keep; 0, 1 and 2 then point at /dev/null so a
    stray write can never land in a file this server opened."""
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if limit == resource.RLIM_INFINITY:
        limit = 1 << 20
    lo = 0
    for fd in sorted(keep) + [limit]:
        if fd > lo:
            os.closerange(lo, fd)
        lo = fd + 1
    null = os.open(os.devnull, os.O_RDWR)
    for std in (0, 1, 2):
        if std != null and std not in keep:
            os.dup2(null, std)
    if null > 2:
        os.close(null)


def main(argv: list[str] | None = None) -> int:
    import argparse  # here: a forked gofer calls serve_export, and argparse would cost it 6 ms
    ap = argparse.ArgumentParser(prog="python -m vfs.gofer.server",
                                 description="Serve DIR over 9P2000.L on a connected socket fd.")
    ap.add_argument("--fd", type=int, required=True, help="connected unix socket to serve")
    ap.add_argument("--root", required=True, help="directory to export")
    ap.add_argument("--rw", action="store_true", help="allow changes (default: read-only, EROFS)")
    ap.add_argument("--keep-stderr", action="store_true",
                    help="keep fd 2 for debugging; confinement steps the host refused are listed")
    ap.add_argument("--no-seccomp", action="store_true",
                    help="no system call filter (to measure what serving calls, with strace)")
    args = ap.parse_args(argv)
    return serve_export(args.fd, args.root, args.rw, keep_stderr=args.keep_stderr,
                        seccomp=not args.no_seccomp)


def serve_export(fd: int, root: str, rw: bool, *, keep_stderr: bool = False, seccomp: bool = True) -> int:
    """Confine this process to root and serve it on the socket fd until
    EOF; the exit status (main's, the command line's)."""
    try:
        root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        check_not_pseudo(root_fd)
        sock = socket.socket(fileno=fd)
    except OSError as e:
        print(f"gofer: cannot serve {root!r} on fd {fd}: {e}", file=sys.stderr)
        return 2
    parent = os.getppid()
    try:
        hostcalls.prctl(hostcalls.PR_SET_PDEATHSIG, signal.SIGKILL)  # never outlive the sentry
    except OSError:
        pass
    if os.getppid() != parent:
        return 0  # the parent died before the death signal was armed
    os.set_inheritable(fd, False)
    os.umask(0)  # modes arrive with the guest's umask applied
    os.chdir("/")
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # one O_PATH fd per walked file
    except (OSError, ValueError):
        pass
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crash must not drop a core into the export
    close_other_fds({fd, root_fd} | ({2} if keep_stderr else set()))

    conf = confine.enter_export(root, rw)
    if conf.mount_ns:
        new_root = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        before, after = os.fstat(root_fd), os.fstat(new_root)
        os.close(root_fd)
        root_fd = new_root
        if (before.st_dev, before.st_ino) != (after.st_dev, after.st_ino):
            return 3  # cannot happen: the bind shows the export's own root
    errors = conf.errors + confine.drop_privileges(rw)
    if seccomp:
        try:
            confine.install_filter()
        except OSError as e:
            errors.append(f"no seccomp filter: {e.strerror}")
    if keep_stderr:
        for why in errors:
            print(f"gofer: {why}", file=sys.stderr)
    try:
        GoferServer(sock, root_fd, rw=rw, hidden=conf.hidden).serve()
    finally:
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
