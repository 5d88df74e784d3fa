"""GoferFilesystem: the sentry's view of a gofer's export, over GoferClient.

Each looked-up file is a GoferInode holding one fid, walked from its
parent, and holding its parent (as the gofer's own node tree does). A
directory remembers its children weakly (the sentry's dentries hold
them), so the same host file looked up twice under one path is the same
Inode while anyone still holds it; when the last holder goes, its fid is
clunked before the next request.

With cache=True (the default) attributes and looked-up names are cached,
on the assumption the DESIGN makes for the root filesystem: only this
sandbox changes the export while it runs. Every change made through this
filesystem drops what it affects. With cache=False every stat asks the
gofer and every lookup walks again (keeping the Inode object when the
name still leads to the same file).

Regular files are read and written through the host fd the gofer donates
at open; without one (a server that does not donate) Tread/Twrite do it.
The filesystem keeps a duplicate of the read-only fds it was given (the
last OPEN_FD_CACHE files): opening one of those files for reading again
costs an os.dup instead of three round trips (walk, lopen, clunk); such
an fd names the inode, so it stays right whatever happens to the name.

Extended attributes: user.* only (the gofer serves no other namespace;
others are EOPNOTSUPP here without a round trip), changed only on a
read-write mount (EROFS otherwise). Setting an empty value removes the
attribute: 9P's Txattrcreate has no other way to say remove (Linux's own
9p client behaves the same).
"""
from __future__ import annotations

import collections
import errno
import os
import stat as S
import weakref

from . import p9
from .client import GoferClient
from ..inode import DirEntry, FileDescriptionImpl, Filesystem, Inode, Stat, StatFS, fserr

# One pread/pwrite through the gofer fallback or a donated fd is capped;
# read(2) and write(2) allow short transfers and callers loop.
MAX_IO = 1 << 24
OPEN_FD_CACHE = 256  # read-only host fds kept for reopening (each pins an inode)
ST_RDONLY = 1
XATTR_USER_PREFIX = b"user."


def _user_xattr(name: bytes) -> None:
    if not name.startswith(XATTR_USER_PREFIX) or name == XATTR_USER_PREFIX:
        raise fserr(errno.EOPNOTSUPP)


class GoferFilesystem(Filesystem):
    name = "9p"
    magic = p9.V9FS_MAGIC

    def __init__(self, client: GoferClient, *, aname: bytes = b"", rw: bool = False,
                 cache: bool = True, uname: bytes = b"", n_uname: int = p9.NONUNAME):
        super().__init__()
        self.client = client
        self.rw = rw
        self.cache = cache
        self.old_style = False  # the server lacks Tunlinkat/Trenameat (diod)
        self._read_fds: collections.OrderedDict[GoferInode, int] = collections.OrderedDict()
        # qid.path -> generation: every name of a hard-linked file has its own
        # inode object, and a change through one must reach the others' caches
        self.attr_gen: dict[int, int] = {}
        fid = client.new_fid()
        # our gofer ignores who attaches; other servers (diod) want a user
        qid = client.attach(fid, uname=uname, aname=aname, n_uname=n_uname)
        self._root = GoferInode(self, fid, qid, None)

    def root(self) -> "GoferInode":
        return self._root

    def reopen_for_reading(self, inode: "GoferInode") -> int | None:
        fd = self._read_fds.get(inode)
        if fd is None:
            return None
        if self.client.broken:  # the gofer is gone: the whole mount answers EIO
            self.drop_open_files()
            raise fserr(errno.EIO)
        self._read_fds.move_to_end(inode)
        return os.dup(fd)

    def keep_for_reading(self, inode: "GoferInode", fd: int) -> None:
        if inode in self._read_fds:
            return
        self._read_fds[inode] = os.dup(fd)
        while len(self._read_fds) > OPEN_FD_CACHE:
            os.close(self._read_fds.popitem(last=False)[1])

    def drop_open_files(self) -> None:
        while self._read_fds:
            os.close(self._read_fds.popitem()[1])

    def statfs(self) -> StatFS:
        r = self.client.statfs(self._root.fid)
        return StatFS(type=self.magic, bsize=r.bsize, blocks=r.blocks, bfree=r.bfree,
                      bavail=r.bavail, files=r.files, ffree=r.ffree, namelen=r.namelen,
                      frsize=r.bsize, flags=0 if self.rw else ST_RDONLY)


def _stat_from(fs: GoferFilesystem, r: p9.Rgetattr) -> Stat:
    return Stat(mode=r.mode, ino=r.qid.path, dev=fs.dev, nlink=r.nlink, uid=r.uid, gid=r.gid,
                rdev=r.rdev, size=r.size, blksize=r.blksize, blocks=r.blocks,
                atime_ns=r.atime_sec * 10**9 + r.atime_nsec,
                mtime_ns=r.mtime_sec * 10**9 + r.mtime_nsec,
                ctime_ns=r.ctime_sec * 10**9 + r.ctime_nsec)


class GoferInode(Inode):
    def __init__(self, fs: GoferFilesystem, fid: int, qid: p9.Qid, parent: "GoferInode | None"):
        self.fs = fs
        self.fid = fid
        self.qid = qid
        self.parent = parent  # keeps the directory (and its child cache) alive
        self._stat: Stat | None = None
        self._stat_gen = 0
        self._target: bytes | None = None
        self._children: weakref.WeakValueDictionary[bytes, GoferInode] = weakref.WeakValueDictionary()

    def __del__(self):
        try:
            self.fs.client.defer_clunk(self.fid)
        except AttributeError:
            pass  # half-built

    @property
    def client(self) -> GoferClient:
        return self.fs.client

    # --- attributes ---
    def stat(self) -> Stat:
        """The cached Stat is returned itself (no copy): callers must not
        modify it (none does; Stat.copy() makes a changed one)."""
        st = self._stat
        if st is None or self._stat_gen != self.fs.attr_gen.get(self.qid.path, 0):
            st = _stat_from(self.fs, self.client.getattr(self.fid))
            if self.fs.cache:
                self._stat = st
                self._stat_gen = self.fs.attr_gen.get(self.qid.path, 0)
        return st

    def invalidate(self) -> None:
        """Attributes changed: drop this name's cache and every other name's
        of the same file."""
        self._stat = None
        gens = self.fs.attr_gen
        gens[self.qid.path] = gens.get(self.qid.path, 0) + 1

    def mode(self) -> int:
        return self.stat().mode

    def setattr(self, *, mode=None, uid=None, gid=None, size=None, atime_ns=None, mtime_ns=None) -> None:
        valid = 0
        if mode is not None:
            valid |= p9.SETATTR_MODE
        if uid is not None:
            valid |= p9.SETATTR_UID
        if gid is not None:
            valid |= p9.SETATTR_GID
        if size is not None:
            valid |= p9.SETATTR_SIZE
        if atime_ns is not None:
            valid |= p9.SETATTR_ATIME | p9.SETATTR_ATIME_SET
        if mtime_ns is not None:
            valid |= p9.SETATTR_MTIME | p9.SETATTR_MTIME_SET
        if not valid:
            return
        self.invalidate()
        self.client.setattr(self.fid, valid, mode=(mode or 0) & 0o7777, uid=uid or 0, gid=gid or 0,
                            size=size or 0, atime_ns=atime_ns or 0, mtime_ns=mtime_ns or 0)

    # --- extended attributes ---
    def getxattr(self, name: bytes) -> bytes:
        _user_xattr(name)
        return self.client.xattr_get(self.fid, name)

    def listxattr(self) -> list[bytes]:
        return [n for n in self.client.xattr_get(self.fid, b"").split(b"\0") if n]

    def setxattr(self, name: bytes, value: bytes, flags: int = 0) -> None:
        _user_xattr(name)
        if not self.fs.rw:
            raise fserr(errno.EROFS)
        self.invalidate()  # ctime changes
        self.client.xattr_set(self.fid, name, bytes(value), flags)

    def removexattr(self, name: bytes) -> None:
        _user_xattr(name)
        if not self.fs.rw:
            raise fserr(errno.EROFS)
        self.invalidate()
        self.client.xattr_set(self.fid, name, b"", p9.XATTR_REPLACE)

    def readlink(self) -> bytes:
        if self._target is None:
            if not S.S_ISLNK(self.mode()):
                raise fserr(errno.EINVAL)
            self._target = self.client.readlink(self.fid)  # a symlink's text never changes
        return self._target

    # --- I/O ---
    def open(self, flags: int) -> FileDescriptionImpl:
        reading = flags & os.O_ACCMODE == os.O_RDONLY
        if reading:
            fd = self.fs.reopen_for_reading(self)
            if fd is not None:
                return GoferFileImpl(self, None, fd)
        fid, _ = self.client.walk(self.fid, [])
        try:
            _, _, host_fd = self.client.lopen(fid, flags & os.O_ACCMODE)
        except BaseException:
            self.client.defer_clunk(fid)
            raise
        if host_fd is not None:
            self.client.defer_clunk(fid)  # the donated fd is all the I/O needs
            fid = None
            if reading:
                self.fs.keep_for_reading(self, host_fd)
        return GoferFileImpl(self, fid, host_fd)

    # --- directories ---
    def lookup(self, name: bytes) -> "GoferInode":
        known = self._children.get(name)
        if known is not None and self.fs.cache:
            return known
        fid, (qid,) = self.client.walk(self.fid, [name])
        if known is not None and known.qid == qid:
            self.client.defer_clunk(fid)  # still the same file: keep its Inode
            known.invalidate()
            return known
        child = GoferInode(self.fs, fid, qid, self)
        self._children[name] = child
        return child

    def readdir(self) -> list[DirEntry]:
        fid, _ = self.client.walk(self.fid, [])
        try:
            _, _, fd = self.client.lopen(fid, os.O_RDONLY | os.O_DIRECTORY)
            if fd is not None:
                os.close(fd)
            entries = self.client.readdir_all(fid)
        finally:
            self.client.defer_clunk(fid)
        return [DirEntry(d.name, d.qid.path, d.type) for d in entries if d.name not in (b".", b"..")]

    def _made(self, name: bytes, uid: int) -> "GoferInode":
        """The inode of a child just created, owned by uid (the gofer makes
        files as itself; the group came with the request)."""
        self.invalidate()
        self._children.pop(name, None)
        child = self.lookup(name)
        if child.stat().uid != uid:
            child.setattr(uid=uid)
        return child

    def create(self, name: bytes, mode: int, uid: int, gid: int) -> "GoferInode":
        self.client.mknod(self.fid, name, S.S_IFREG | (mode & 0o7777), 0, 0, gid)
        return self._made(name, uid)

    def mkdir(self, name: bytes, mode: int, uid: int, gid: int) -> "GoferInode":
        self.client.mkdir(self.fid, name, mode & 0o7777, gid)
        return self._made(name, uid)

    def mknod(self, name: bytes, mode: int, rdev: int, uid: int, gid: int) -> "GoferInode":
        self.client.mknod(self.fid, name, mode, os.major(rdev), os.minor(rdev), gid)
        return self._made(name, uid)

    def symlink(self, name: bytes, target: bytes, uid: int, gid: int) -> "GoferInode":
        self.client.symlink(self.fid, name, target, gid)
        return self._made(name, uid)

    def link(self, name: bytes, target: Inode) -> None:
        if not isinstance(target, GoferInode) or target.fs is not self.fs:
            raise fserr(errno.EXDEV)
        self.client.link(self.fid, target.fid, name)
        self.invalidate()
        target.invalidate()

    def _removed(self, name: bytes) -> None:
        self.invalidate()
        child = self._children.pop(name, None)
        if child is not None:
            child.invalidate()

    def unlink(self, name: bytes) -> None:
        self._unlink(name, 0)
        self._removed(name)

    def rmdir(self, name: bytes) -> None:
        self._unlink(name, p9.AT_REMOVEDIR)
        self._removed(name)

    def _unlink(self, name: bytes, flags: int) -> None:
        """Tunlinkat, or on servers without it (diod 1.0) Tremove of a
        walked fid, as Linux's client falls back."""
        if not self.fs.old_style:
            try:
                return self.client.unlinkat(self.fid, name, flags)
            except OSError as e:
                if e.errno != errno.EOPNOTSUPP:
                    raise
                self.fs.old_style = True
        fid, (qid,) = self.client.walk(self.fid, [name])
        is_dir = bool(qid.type & p9.QTDIR)
        if is_dir != bool(flags & p9.AT_REMOVEDIR):
            self.client.defer_clunk(fid)
            raise fserr(errno.EISDIR if is_dir else errno.ENOTDIR)
        self.client.remove(fid)

    def rename(self, name: bytes, new_dir: Inode, new_name: bytes) -> None:
        if not isinstance(new_dir, GoferInode) or new_dir.fs is not self.fs:
            raise fserr(errno.EXDEV)
        if not self.fs.old_style:
            try:
                self.client.renameat(self.fid, name, new_dir.fid, new_name)
            except OSError as e:
                if e.errno != errno.EOPNOTSUPP:
                    raise
                self.fs.old_style = True
        if self.fs.old_style:  # Trename of a walked fid
            fid, _ = self.client.walk(self.fid, [name])
            try:
                self.client.rename(fid, new_dir.fid, new_name)
            finally:
                self.client.defer_clunk(fid)
        moved = self._children.pop(name, None)
        new_dir._removed(new_name)
        self.invalidate()
        if moved is not None:
            moved.invalidate()
            moved.parent = new_dir
            new_dir._children[new_name] = moved


class GoferFileImpl(FileDescriptionImpl):
    """An open regular file: the donated host fd when there is one, else
    Tread/Twrite on the open fid."""
    seekable = True

    def __init__(self, inode: GoferInode, fid: int | None, host_fd: int | None):
        self.inode = inode
        self.fid = fid
        self.host_fd = host_fd

    @property
    def client(self) -> GoferClient:
        return self.inode.fs.client

    def pread(self, size: int, offset: int) -> bytes:
        size = min(size, MAX_IO)
        if self.host_fd is not None:
            return os.pread(self.host_fd, size, offset)
        parts, got = [], 0
        while got < size:
            data = self.client.read(self.fid, offset + got, size - got)
            if not data:
                break
            parts.append(data)
            got += len(data)
        return b"".join(parts)

    def pwrite(self, data: bytes, offset: int) -> int:
        data = memoryview(data)[:MAX_IO]
        self.inode.invalidate()
        done = 0
        while done < len(data):
            if self.host_fd is not None:
                n = os.pwrite(self.host_fd, data[done:], offset + done)
            else:
                n = self.client.write(self.fid, offset + done, data[done:])
            if n <= 0:
                break
            done += n
        return done

    def size(self) -> int:
        if self.host_fd is not None:
            return os.fstat(self.host_fd).st_size
        self.inode.invalidate()
        return self.inode.stat().size

    def fsync(self) -> None:
        if self.host_fd is not None:
            os.fsync(self.host_fd)
        else:
            self.client.fsync(self.fid)

    def release(self) -> None:
        if self.host_fd is not None:
            os.close(self.host_fd)
            self.host_fd = None
        if self.fid is not None:
            self.client.defer_clunk(self.fid)
            self.fid = None
