"""TmpFS: a filesystem held in the sentry's memory, as Linux's tmpfs.

Directories keep their children in creation order (readdir order), regular
files keep their bytes in a bytearray, symlinks their target, device
nodes, fifos and sockets only their mode and rdev. The overlay filesystem
uses a TmpFS as its writable upper layer (whiteouts are 0:0 character
devices, opaque directories carry the trusted.overlay.opaque xattr).

Rules followed from Linux (tmpfs and the man pages of the calls):
- st_nlink of a directory is 2 + its subdirectories, 0 once removed;
  st_size of a directory is 20 bytes per entry plus two (BOGO_DIRENT_SIZE).
- Timestamps: a create/link/unlink/rename touches the directories' mtime
  and ctime, a link count change the inode's ctime, a write the file's
  mtime and ctime, a truncation that changes the size likewise, every
  attribute change the ctime; reads update atime with relatime rules.
- A file unlinked while open keeps its data until the last open
  description is released; only then are its pages given back.
- Space: the filesystem has a size limit (default half of the host's RAM,
  like tmpfs) counted in 4 KiB pages of file data; beyond it writes fail
  with ENOSPC. Growing a file with truncate makes a hole (no pages).
Permission checks are the VFS core's (vfs.ops), not ours.
"""
from __future__ import annotations

import errno
import os
import stat as S

from .file import O_NOATIME
from .inode import (DirEntry, FileDescriptionImpl, Filesystem, Inode, InodeDirImpl, Stat, StatFS,
                    dtype_of, fserr, now_ns)

TMPFS_MAGIC = 0x01021994
PAGE_SIZE = 4096
BOGO_DIRENT_SIZE = 20          # what tmpfs adds to a directory's size per entry
MAX_FILE_SIZE = (1 << 63) - 1  # MAX_LFS_FILESIZE on 64-bit Linux
SYMLINK_MAX = PAGE_SIZE - 1    # a target plus its NUL must fit in a page
DAY_NS = 24 * 3600 * 10**9     # relatime refreshes an atime older than this

XATTR_CREATE, XATTR_REPLACE = 1, 2


def _pages(nbytes: int) -> int:
    return (nbytes + PAGE_SIZE - 1) // PAGE_SIZE


def _default_size_limit() -> int:
    """Half of physical memory, tmpfs's default size."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
    except (OSError, ValueError):
        return 1 << 30


class TmpFS(Filesystem):
    """One tmpfs instance. mode/uid/gid are its root directory's (tmpfs's
    default root mode is 1777); size_limit is in bytes, inode_limit counts
    files of every type."""
    name = "tmpfs"
    magic = TMPFS_MAGIC

    def __init__(self, *, mode: int = 0o1777, uid: int = 0, gid: int = 0,
                 size_limit: int | None = None, inode_limit: int | None = None):
        super().__init__()
        limit = _default_size_limit() if size_limit is None else size_limit
        self.page_limit = limit // PAGE_SIZE
        self.inode_limit = self.page_limit if inode_limit is None else inode_limit
        self.pages_used = 0
        self.inodes_used = 0
        self._root = TmpDir(self, S.S_IFDIR | (mode & 0o7777), uid, gid, parent=None)

    def root(self) -> "TmpDir":
        return self._root

    def statfs(self) -> StatFS:
        free = max(0, self.page_limit - self.pages_used)
        return StatFS(type=self.magic, bsize=PAGE_SIZE, blocks=self.page_limit, bfree=free,
                      bavail=free, files=self.inode_limit,
                      ffree=max(0, self.inode_limit - self.inodes_used), namelen=255,
                      frsize=PAGE_SIZE)

    # --- accounting ---
    def _charge_inode(self) -> None:
        if self.inodes_used >= self.inode_limit:
            raise fserr(errno.ENOSPC)
        self.inodes_used += 1

    def _charge_pages(self, old_len: int, new_len: int) -> None:
        """Account for file data going from old_len to new_len bytes;
        ENOSPC (and no change) if the growth does not fit."""
        delta = _pages(new_len) - _pages(old_len)
        if delta > 0 and self.pages_used + delta > self.page_limit:
            raise fserr(errno.ENOSPC)
        self.pages_used += delta


class TmpInode(Inode):
    """What every tmpfs inode has: identity, owner, mode, times, xattrs."""

    def __init__(self, fs: TmpFS, mode: int, uid: int, gid: int, rdev: int = 0):
        fs._charge_inode()
        self.fs = fs
        self.ino = fs.next_ino()
        self._mode = mode
        self.uid = uid
        self.gid = gid
        self.rdev = rdev
        self.links = 1  # names pointing here (directories compute theirs)
        t = now_ns()
        self.atime_ns = self.mtime_ns = self.ctime_ns = t
        self.xattrs: dict[bytes, bytes] | None = None

    # --- attributes ---
    def nlink(self) -> int:
        return max(self.links, 0)

    def size(self) -> int:
        return 0

    def blocks(self) -> int:
        return 0

    def stat(self) -> Stat:
        return Stat(mode=self._mode, ino=self.ino, dev=self.fs.dev, nlink=self.nlink(),
                    uid=self.uid, gid=self.gid, rdev=self.rdev, size=self.size(),
                    blksize=PAGE_SIZE, blocks=self.blocks(), atime_ns=self.atime_ns,
                    mtime_ns=self.mtime_ns, ctime_ns=self.ctime_ns)

    def mode(self) -> int:
        return self._mode

    def setattr(self, *, mode: int | None = None, uid: int | None = None,
                gid: int | None = None, size: int | None = None,
                atime_ns: int | None = None, mtime_ns: int | None = None) -> None:
        now = now_ns()
        touched = False
        if size is not None:
            # first, so that a failing truncate changes nothing else
            if self._resize(size):
                self.mtime_ns = now
                touched = True
        if uid is not None or gid is not None:
            if uid is not None:
                self.uid = uid
            if gid is not None:
                self.gid = gid
            if S.S_ISREG(self._mode):
                # chown drops set-user-ID, and set-group-ID when it means
                # "setgid" rather than mandatory locking (group exec set)
                kill = S.S_ISUID | (S.S_ISGID if self._mode & S.S_IXGRP else 0)
                self._mode &= ~kill
            touched = True
        if mode is not None:
            self._mode = S.S_IFMT(self._mode) | (mode & 0o7777)
            touched = True
        if atime_ns is not None:
            self.atime_ns = atime_ns
            touched = True
        if mtime_ns is not None:
            self.mtime_ns = mtime_ns
            touched = True
        if touched:
            self.ctime_ns = now

    def _resize(self, size: int) -> bool:
        """Truncate to size; True if the size changed."""
        raise fserr(errno.EISDIR if S.S_ISDIR(self._mode) else errno.EINVAL)

    def touch_atime(self) -> None:
        """relatime: refresh atime if it is older than mtime or ctime, or a day old."""
        now = now_ns()
        if self.atime_ns <= self.mtime_ns or self.atime_ns <= self.ctime_ns or \
                now - self.atime_ns >= DAY_NS:
            self.atime_ns = now

    # --- extended attributes (used by the overlay; no namespace checks) ---
    def getxattr(self, name: bytes) -> bytes:
        if not self.xattrs or name not in self.xattrs:
            raise fserr(errno.ENODATA)
        return self.xattrs[name]

    def setxattr(self, name: bytes, value: bytes, flags: int = 0) -> None:
        present = bool(self.xattrs) and name in self.xattrs
        if flags & XATTR_CREATE and present:
            raise fserr(errno.EEXIST)
        if flags & XATTR_REPLACE and not present:
            raise fserr(errno.ENODATA)
        if self.xattrs is None:
            self.xattrs = {}
        self.xattrs[name] = bytes(value)
        self.ctime_ns = now_ns()

    def listxattr(self) -> list[bytes]:
        return list(self.xattrs or ())

    def removexattr(self, name: bytes) -> None:
        if not self.xattrs or name not in self.xattrs:
            raise fserr(errno.ENODATA)
        del self.xattrs[name]
        self.ctime_ns = now_ns()

    # --- lifetime ---
    def drop_link(self) -> None:
        """One name fewer; the inode's storage goes with the last name
        and the last open description."""
        self.links -= 1
        self.ctime_ns = now_ns()
        self._maybe_free()

    def _maybe_free(self) -> None:
        if self.links == 0:
            self.fs.inodes_used -= 1
            self.links = -1  # freed: never count it twice

    def nlink_is_zero(self) -> bool:
        return self.links <= 0


class TmpFile(TmpInode):
    """A regular file. `data` holds the bytes up to the last one written;
    `length` (st_size) may go beyond it after a growing truncate, and the
    gap reads as zeros."""

    def __init__(self, fs: TmpFS, mode: int, uid: int, gid: int):
        super().__init__(fs, S.S_IFREG | (mode & 0o7777), uid, gid)
        self.data = bytearray()
        self.length = 0
        self.opens = 0

    def size(self) -> int:
        return self.length

    def blocks(self) -> int:
        return _pages(len(self.data)) * (PAGE_SIZE // 512)

    def open(self, flags: int) -> "TmpFileImpl":
        return TmpFileImpl(self, flags)

    def read_at(self, size: int, offset: int) -> bytes:
        end = min(offset + size, self.length)
        if offset >= end:
            return b""
        chunk = bytes(self.data[offset:end])
        if len(chunk) < end - offset:  # the tail of a hole
            chunk += bytes(end - offset - len(chunk))
        return chunk

    def write_at(self, data: bytes, offset: int) -> int:
        if not data:
            return 0
        if offset >= MAX_FILE_SIZE:
            raise fserr(errno.EFBIG)
        data = data[:MAX_FILE_SIZE - offset]
        end = offset + len(data)
        if end > len(self.data):
            self.fs._charge_pages(len(self.data), end)
            if offset > len(self.data):
                self.data.extend(bytes(offset - len(self.data)))
        self.data[offset:end] = data
        self.length = max(self.length, end)
        self.mtime_ns = self.ctime_ns = now_ns()
        return len(data)

    def _resize(self, size: int) -> bool:
        if size < 0:
            raise fserr(errno.EINVAL)
        if size > MAX_FILE_SIZE:
            raise fserr(errno.EFBIG)
        if size == self.length:
            return False
        if size < len(self.data):
            self.fs._charge_pages(len(self.data), size)
            del self.data[size:]
        self.length = size
        return True

    def _maybe_free(self) -> None:
        if self.links == 0 and self.opens == 0:
            self.fs._charge_pages(len(self.data), 0)
            self.data = bytearray()
            super()._maybe_free()

    def released(self) -> None:
        self.opens -= 1
        self._maybe_free()


class TmpFileImpl(FileDescriptionImpl):
    """An open regular file; it holds the inode, so an unlinked file stays
    readable and writable through it."""
    seekable = True

    def __init__(self, inode: TmpFile, flags: int):
        self.inode = inode
        self.noatime = bool(flags & O_NOATIME)
        inode.opens += 1

    def pread(self, size: int, offset: int) -> bytes:
        if not self.noatime:
            self.inode.touch_atime()
        return self.inode.read_at(size, offset)

    def pwrite(self, data: bytes, offset: int) -> int:
        return self.inode.write_at(data, offset)

    def size(self) -> int:
        return self.inode.length

    def release(self) -> None:
        if self.inode is not None:
            self.inode.released()
            self.inode = None


class TmpSymlink(TmpInode):
    def __init__(self, fs: TmpFS, target: bytes, uid: int, gid: int):
        super().__init__(fs, S.S_IFLNK | 0o777, uid, gid)
        self.target = bytes(target)

    def size(self) -> int:
        return len(self.target)

    def readlink(self) -> bytes:
        self.touch_atime()
        return self.target

    def open(self, flags: int) -> FileDescriptionImpl:
        raise fserr(errno.ELOOP)


class TmpSpecial(TmpInode):
    """A fifo, socket or device node: only its mode and rdev are stored.
    Opening one is the sentry's business (vfs.ops device hook, pipes), so
    open() here fails with ENXIO."""

    def __init__(self, fs: TmpFS, mode: int, rdev: int, uid: int, gid: int):
        kind = S.S_IFMT(mode)
        super().__init__(fs, mode, uid, gid, rdev if kind in (S.S_IFCHR, S.S_IFBLK) else 0)


class TmpDir(TmpInode):
    """A directory. `parent` is None for the root and for a removed
    directory; rename uses the chain to refuse moving a directory under
    itself."""

    def __init__(self, fs: TmpFS, mode: int, uid: int, gid: int, parent: "TmpDir | None"):
        super().__init__(fs, mode, uid, gid)
        self.parent = parent
        self.children: dict[bytes, TmpInode] = {}
        self.subdirs = 0
        self.removed = False

    def nlink(self) -> int:
        return 0 if self.removed else 2 + self.subdirs

    def size(self) -> int:
        return BOGO_DIRENT_SIZE * (2 + len(self.children))

    def open(self, flags: int) -> InodeDirImpl:
        return InodeDirImpl(self)

    # --- reading ---
    def lookup(self, name: bytes) -> TmpInode:
        try:
            return self.children[name]
        except KeyError:
            raise fserr(errno.ENOENT, name) from None

    def readdir(self) -> list[DirEntry]:
        self.touch_atime()
        return self.entries()

    def entries(self) -> list[DirEntry]:
        """readdir without the atime update, for the overlay's own looks."""
        return [DirEntry(name, child.ino, dtype_of(child._mode))
                for name, child in self.children.items()]

    # --- making entries ---
    def _check_new(self, name: bytes) -> None:
        if not name or name in (b".", b"..") or b"/" in name:
            raise fserr(errno.EINVAL)
        if self.removed:
            raise fserr(errno.ENOENT)  # creating in a deleted directory
        if name in self.children:
            raise fserr(errno.EEXIST)

    def _owner_for_new(self, mode: int, gid: int) -> tuple[int, int]:
        """A set-group-ID directory passes its group on, and its setgid bit
        to new subdirectories (inode_init_owner)."""
        if self._mode & S.S_ISGID:
            gid = self.gid
            if S.S_ISDIR(mode):
                mode |= S.S_ISGID
        return mode, gid

    def _attach(self, name: bytes, child: TmpInode) -> TmpInode:
        self.children[name] = child
        if isinstance(child, TmpDir):
            self.subdirs += 1
            child.parent = self
        self.mtime_ns = self.ctime_ns = now_ns()
        return child

    def create(self, name: bytes, mode: int, uid: int, gid: int) -> TmpFile:
        self._check_new(name)
        mode, gid = self._owner_for_new(S.S_IFREG | (mode & 0o7777), gid)
        return self._attach(name, TmpFile(self.fs, mode, uid, gid))

    def mkdir(self, name: bytes, mode: int, uid: int, gid: int) -> "TmpDir":
        self._check_new(name)
        mode, gid = self._owner_for_new(S.S_IFDIR | (mode & 0o7777), gid)
        return self._attach(name, TmpDir(self.fs, mode, uid, gid, parent=self))

    def mknod(self, name: bytes, mode: int, rdev: int, uid: int, gid: int) -> TmpInode:
        kind = S.S_IFMT(mode)
        if kind in (0, S.S_IFREG):
            return self.create(name, mode, uid, gid)
        if kind not in (S.S_IFCHR, S.S_IFBLK, S.S_IFIFO, S.S_IFSOCK):
            raise fserr(errno.EINVAL)
        self._check_new(name)
        mode, gid = self._owner_for_new(kind | (mode & 0o7777), gid)
        return self._attach(name, TmpSpecial(self.fs, mode, rdev, uid, gid))

    def symlink(self, name: bytes, target: bytes, uid: int, gid: int) -> TmpSymlink:
        if not target:
            raise fserr(errno.ENOENT)
        if len(target) > SYMLINK_MAX:
            raise fserr(errno.ENAMETOOLONG)
        self._check_new(name)
        _, gid = self._owner_for_new(S.S_IFLNK, gid)
        return self._attach(name, TmpSymlink(self.fs, target, uid, gid))

    def link(self, name: bytes, target: Inode) -> None:
        if not isinstance(target, TmpInode) or target.fs is not self.fs:
            raise fserr(errno.EXDEV)
        if isinstance(target, TmpDir):
            raise fserr(errno.EPERM)
        self._check_new(name)
        if target.nlink_is_zero():
            raise fserr(errno.ENOENT)  # no linking an unlinked file back in
        target.links += 1
        target.ctime_ns = now_ns()
        self._attach(name, target)

    # --- removing entries ---
    def _detach(self, name: bytes) -> TmpInode:
        child = self.children.pop(name)
        if isinstance(child, TmpDir):
            self.subdirs -= 1
        self.mtime_ns = self.ctime_ns = now_ns()
        return child

    @staticmethod
    def _forget(child: TmpInode) -> None:
        """child lost a name (unlink, or replaced by rename)."""
        if isinstance(child, TmpDir):
            child.removed = True
            child.parent = None
            child.ctime_ns = now_ns()
            child.fs.inodes_used -= 1
        else:
            child.drop_link()

    def unlink(self, name: bytes) -> None:
        child = self.lookup(name)
        if isinstance(child, TmpDir):
            raise fserr(errno.EISDIR)
        self._forget(self._detach(name))

    def rmdir(self, name: bytes) -> None:
        child = self.lookup(name)
        if not isinstance(child, TmpDir):
            raise fserr(errno.ENOTDIR)
        if child.children:
            raise fserr(errno.ENOTEMPTY)
        self._forget(self._detach(name))

    def is_ancestor_of(self, d: "TmpDir | None") -> bool:
        """Is self d or above it?"""
        while d is not None:
            if d is self:
                return True
            d = d.parent
        return False

    def rename(self, name: bytes, new_dir: Inode, new_name: bytes) -> None:
        """rename(2) within this filesystem, checks in Linux's order: the
        source moving under itself, the target holding the source, the
        same-file no-op, the type checks, emptiness."""
        if not isinstance(new_dir, TmpDir) or new_dir.fs is not self.fs:
            raise fserr(errno.EXDEV)
        src = self.lookup(name)
        if new_dir.removed:
            raise fserr(errno.ENOENT)
        if not new_name or new_name in (b".", b"..") or b"/" in new_name:
            raise fserr(errno.EINVAL)
        src_is_dir = isinstance(src, TmpDir)
        if src_is_dir and src.is_ancestor_of(new_dir):
            raise fserr(errno.EINVAL)
        target = new_dir.children.get(new_name)
        if isinstance(target, TmpDir) and target.is_ancestor_of(self):
            raise fserr(errno.ENOTEMPTY)  # over a directory holding the source
        if target is src:
            return  # two names of one file: rename does nothing
        if target is not None:
            target_is_dir = isinstance(target, TmpDir)
            if src_is_dir and not target_is_dir:
                raise fserr(errno.ENOTDIR)
            if target_is_dir and not src_is_dir:
                raise fserr(errno.EISDIR)
            if target_is_dir and target.children:
                raise fserr(errno.ENOTEMPTY)
        if target is not None:
            self._forget(new_dir._detach(new_name))
        self._detach(name)
        new_dir._attach(name=new_name, child=src)
        src.ctime_ns = now_ns()
