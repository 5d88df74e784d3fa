"""The filesystem-facing interface: Filesystem, Inode and Stat.

Every filesystem (tmpfs, overlay, gofer, proc, dev, sys) implements Inode.
Paths and names are bytes. Failures raise OSError(errno) (see fserr); the
sentry turns them into -errno for the guest. The VFS core (vfs.path) does
path walking, mount crossing, symlink following and permission checks, so
an Inode only answers about itself and its direct children.
"""
from __future__ import annotations

import errno
import itertools
import os
import stat as S
import time
from dataclasses import dataclass, replace

# d_type values for getdents64
DT_UNKNOWN, DT_FIFO, DT_CHR, DT_DIR, DT_BLK, DT_REG, DT_LNK, DT_SOCK = 0, 1, 2, 4, 6, 8, 10, 12


def fserr(code: int, what: str | bytes | None = None) -> OSError:
    """An OSError carrying a Linux errno, to be raised by filesystem code."""
    if what is None:
        return OSError(code, os.strerror(code))
    return OSError(code, os.strerror(code), what)


def dtype_of(mode: int) -> int:
    return S.S_IFMT(mode) >> 12


def now_ns() -> int:
    return time.time_ns()


@dataclass
class Stat:
    """What stat(2) reports. Times are nanoseconds since the epoch."""
    mode: int
    ino: int = 0
    dev: int = 0
    nlink: int = 1
    uid: int = 0
    gid: int = 0
    rdev: int = 0
    size: int = 0
    blksize: int = 4096
    blocks: int = 0
    atime_ns: int = 0
    mtime_ns: int = 0
    ctime_ns: int = 0

    def copy(self, **changes) -> "Stat":
        return replace(self, **changes)


@dataclass
class StatFS:
    """What statfs(2) reports."""
    type: int
    bsize: int = 4096
    blocks: int = 0
    bfree: int = 0
    bavail: int = 0
    files: int = 0
    ffree: int = 0
    namelen: int = 255
    frsize: int = 4096
    flags: int = 0


@dataclass
class DirEntry:
    name: bytes
    ino: int
    dtype: int


_dev_numbers = itertools.count(1)


class Filesystem:
    """One mounted filesystem instance. `name` is the type shown in
    /proc/mounts; `dev` is the st_dev of its inodes (anonymous devices get
    minor numbers 0:N like Linux's)."""
    name = "none"
    magic = 0  # f_type for statfs

    def __init__(self):
        self.dev = next(_dev_numbers)
        self._ino = itertools.count(1)

    def next_ino(self) -> int:
        return next(self._ino)

    def statfs(self) -> StatFS:
        return StatFS(type=self.magic)

    def root(self) -> "Inode":
        raise NotImplementedError


class Inode:
    """A file of some filesystem. Default methods fail the way Linux fails
    on a file that does not support the operation; subclasses override what
    they support.

    Directory methods take a child `name` (never b"", b"." or b"..": the
    VFS core handles those) and must not follow symlinks.
    """
    fs: Filesystem
    # The shared pages of the file while it is mapped MAP_SHARED
    # (sentry.mm.filecache.Slot); reads and writes then go through them.
    page_cache = None

    # --- every inode ---
    def stat(self) -> Stat:
        raise NotImplementedError

    def setattr(self, *, mode: int | None = None, uid: int | None = None,
                gid: int | None = None, size: int | None = None,
                atime_ns: int | None = None, mtime_ns: int | None = None) -> None:
        """chmod/chown/truncate/utimes. mode holds permission bits only."""
        raise fserr(errno.EPERM)

    def open(self, flags: int) -> "FileDescriptionImpl":
        """Open for I/O. flags are the guest's O_* flags (access mode,
        O_APPEND, O_TRUNC already applied by the core via setattr)."""
        raise fserr(errno.ENXIO)

    def readlink(self) -> bytes:
        raise fserr(errno.EINVAL)

    def follow_link(self, ctx) -> "object | None":
        """For magic links (/proc/self/fd/N, /proc/[pid]/cwd): return a
        vfs.path.Location to jump to instead of parsing readlink().
        None means: an ordinary symlink, parse readlink()."""
        return None

    # --- directories ---
    def lookup(self, name: bytes) -> "Inode":
        raise fserr(errno.ENOTDIR)

    def readdir(self) -> list[DirEntry]:
        """Entries other than . and .."""
        raise fserr(errno.ENOTDIR)

    def create(self, name: bytes, mode: int, uid: int, gid: int) -> "Inode":
        """Make a regular file; mode has S_IFREG and permission bits."""
        raise fserr(errno.ENOTDIR if not self.is_dir() else errno.EPERM)

    def mkdir(self, name: bytes, mode: int, uid: int, gid: int) -> "Inode":
        raise fserr(errno.ENOTDIR if not self.is_dir() else errno.EPERM)

    def mknod(self, name: bytes, mode: int, rdev: int, uid: int, gid: int) -> "Inode":
        raise fserr(errno.ENOTDIR if not self.is_dir() else errno.EPERM)

    def symlink(self, name: bytes, target: bytes, uid: int, gid: int) -> "Inode":
        raise fserr(errno.ENOTDIR if not self.is_dir() else errno.EPERM)

    def link(self, name: bytes, target: "Inode") -> None:
        raise fserr(errno.ENOTDIR if not self.is_dir() else errno.EPERM)

    def unlink(self, name: bytes) -> None:
        raise fserr(errno.ENOTDIR if not self.is_dir() else errno.EPERM)

    def rmdir(self, name: bytes) -> None:
        raise fserr(errno.ENOTDIR if not self.is_dir() else errno.EPERM)

    def rename(self, name: bytes, new_dir: "Inode", new_name: bytes) -> None:
        """Within one filesystem (the core returns EXDEV otherwise). Replaces
        an existing target following rename(2)'s rules."""
        raise fserr(errno.ENOTDIR if not self.is_dir() else errno.EPERM)

    def exchange(self, name: bytes, new_dir: "Inode", new_name: bytes) -> None:
        """renameat2 RENAME_EXCHANGE: swap two existing entries (the core
        has checked both exist). Filesystems without it: EINVAL, as Linux."""
        raise fserr(errno.EINVAL)

    def rename_whiteout(self, name: bytes, new_dir: "Inode", new_name: bytes,
                        uid: int, gid: int) -> None:
        """renameat2 RENAME_WHITEOUT: rename, leaving a 0:0 character
        device owned by uid/gid under the old name."""
        raise fserr(errno.EINVAL)

    def tmpfile(self, mode: int, uid: int, gid: int, linkable: bool = True) -> "Inode":
        """O_TMPFILE: an unnamed regular file on this directory's
        filesystem (st_nlink 0); `linkable` says whether link() may later
        name it (not with O_EXCL)."""
        raise fserr(errno.EOPNOTSUPP)

    # --- regular files ---
    def fallocate(self, mode: int, offset: int, length: int) -> None:
        """fallocate(2) after the core's checks (mode combination, open
        for writing, file type, offset + length <= MAX_LFS_FILESIZE)."""
        raise fserr(errno.EOPNOTSUPP)

    # --- extended attributes ---
    # Names are full ("user.x"); the core (vfs.ops) checks who may touch
    # which namespace, the filesystem which namespaces it stores.
    def getxattr(self, name: bytes) -> bytes:
        raise fserr(errno.EOPNOTSUPP)

    def setxattr(self, name: bytes, value: bytes, flags: int = 0) -> None:
        """flags: XATTR_CREATE (1: EEXIST if present), XATTR_REPLACE
        (2: ENODATA if absent)."""
        raise fserr(errno.EOPNOTSUPP)

    def listxattr(self) -> list[bytes]:
        """Every name stored; a filesystem without xattrs lists none."""
        return []

    def removexattr(self, name: bytes) -> None:
        raise fserr(errno.EOPNOTSUPP)

    # --- helpers ---
    def mode(self) -> int:
        return self.stat().mode

    def is_dir(self) -> bool:
        return S.S_ISDIR(self.mode())

    def is_symlink(self) -> bool:
        return S.S_ISLNK(self.mode())


class FileDescriptionImpl:
    """The file-type-specific half of an open file description (see
    vfs.file.FileDescription, which holds offset and flags and calls these).

    Blocking objects (pipes, ttys, sockets) raise vfs.file.WouldBlock
    carrying a waiter key rather than blocking the sentry.
    """
    seekable = True

    def pread(self, size: int, offset: int) -> bytes:
        raise fserr(errno.EINVAL)

    def pwrite(self, data: bytes, offset: int) -> int:
        raise fserr(errno.EINVAL)

    def size(self) -> int:
        """For SEEK_END and O_APPEND."""
        return 0

    def readdir(self) -> list[DirEntry]:
        raise fserr(errno.ENOTDIR)

    def ioctl(self, request: int, arg: int, mem) -> int:
        """mem: an object with read(addr, n) -> bytes and write(addr, data)
        for the calling task's memory."""
        raise fserr(errno.ENOTTY)

    def fsync(self) -> None:
        return None

    def release(self) -> None:
        """Last reference to the description closed."""
        return None

    # Readiness for poll/select/epoll (issue 3 builds on this).
    def readiness(self) -> int:
        return 0x1 | 0x4  # POLLIN | POLLOUT: regular files are always ready


class InodeDirImpl(FileDescriptionImpl):
    """An open directory for callers that open an Inode directly (the VFS
    core's vfs.ops.DirectoryImpl adds . and ..)."""

    def __init__(self, inode: Inode):
        self.inode = inode

    def readdir(self) -> list[DirEntry]:
        return self.inode.readdir()

    def pread(self, size, offset):
        raise fserr(errno.EISDIR)

    def pwrite(self, data, offset):
        raise fserr(errno.EISDIR)
