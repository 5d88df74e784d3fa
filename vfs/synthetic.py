"""Building blocks for filesystems whose files are computed rather than
stored (proc, dev, sys): a file whose bytes are generated when it is
opened, a fixed directory, a fixed symlink.

A generated file is snapshotted at open, like Linux's seq_file: every read
of one open description sees the same text, and a new open sees fresh
state. stat() reports the size given (0 for proc, like Linux, which cannot
know the length before generating it).
"""
from __future__ import annotations

import errno
import stat as S
from collections.abc import Callable

from .file import O_ACCMODE, O_RDONLY
from .inode import (DirEntry, FileDescriptionImpl, Filesystem, Inode, Stat, dtype_of,
                    fserr, now_ns)


class SyntheticFS(Filesystem):
    """A filesystem living only in the sentry; every inode's times are the
    time it was made (Linux shows roughly the same for proc and sys)."""

    def __init__(self):
        super().__init__()
        self.created_ns = now_ns()


class SnapshotImpl(FileDescriptionImpl):
    """An open generated file: reads slice the bytes taken at open."""
    seekable = True

    def __init__(self, data: bytes, write_errno: int = errno.EINVAL):
        self.data = data
        self.write_errno = write_errno

    def pread(self, size: int, offset: int) -> bytes:
        return self.data[offset:offset + size]

    def pwrite(self, data: bytes, offset: int) -> int:
        raise fserr(self.write_errno)

    def size(self) -> int:
        return len(self.data)


class SyntheticInode(Inode):
    """stat() for an inode of a SyntheticFS. Subclasses that depend on a
    task override owner()."""

    def __init__(self, fs: SyntheticFS, mode: int, ino: int | None = None, size: int = 0):
        self.fs = fs
        self._mode = mode
        self.ino = fs.next_ino() if ino is None else ino
        self._size = size

    def owner(self) -> tuple[int, int]:
        return 0, 0

    def nlink(self) -> int:
        return 1

    def stat(self) -> Stat:
        uid, gid = self.owner()
        t = self.fs.created_ns
        return Stat(mode=self._mode, ino=self.ino, dev=self.fs.dev, nlink=self.nlink(),
                    uid=uid, gid=gid, size=self._size, atime_ns=t, mtime_ns=t, ctime_ns=t)

    def mode(self) -> int:
        return self._mode

    def setattr(self, *, size: int | None = None, **others) -> None:
        """Truncation is accepted and changes nothing, as in Linux's proc and
        sysfs, so `echo x > file` (O_TRUNC) meets the file's own write
        rules; other changes are refused."""
        if any(v is not None for v in others.values()) or size is None:
            raise fserr(errno.EPERM)


def refuse_write_open(flags: int, write_open_errno: int | None) -> None:
    """Opening a read-only synthetic file for writing: Linux refuses some at
    open (sysctls, sysfs: EACCES) and lets others open but fail each write
    (proc seq files: EINVAL); write_open_errno None means the latter."""
    if flags & O_ACCMODE != O_RDONLY and write_open_errno is not None:
        raise fserr(write_open_errno)


class GeneratedFile(SyntheticInode):
    """A read-only regular file whose content `generate()` computes at open."""

    def __init__(self, fs: SyntheticFS, generate: Callable[[], bytes], perm: int = 0o444, *,
                 ino: int | None = None, size: int = 0, write_open_errno: int | None = None,
                 write_errno: int = errno.EINVAL):
        super().__init__(fs, S.S_IFREG | perm, ino, size)
        self.generate = generate
        self.write_open_errno = write_open_errno
        self.write_errno = write_errno

    def open(self, flags: int) -> FileDescriptionImpl:
        refuse_write_open(flags, self.write_open_errno)
        return SnapshotImpl(self.generate(), self.write_errno)


def constant(text: bytes | str) -> Callable[[], bytes]:
    data = text.encode() if isinstance(text, str) else text
    return lambda: data


class Symlink(SyntheticInode):
    """A symlink with fixed target text; the VFS core walks it."""

    def __init__(self, fs: SyntheticFS, target: bytes, ino: int | None = None):
        super().__init__(fs, S.S_IFLNK | 0o777, ino, len(target))
        self.target = target

    def readlink(self) -> bytes:
        return self.target


class StaticDir(SyntheticInode):
    """A directory with a fixed set of children, in the order added."""

    def __init__(self, fs: SyntheticFS, perm: int = 0o555, ino: int | None = None):
        super().__init__(fs, S.S_IFDIR | perm, ino)
        self.entries: dict[bytes, Inode] = {}

    def add(self, name: bytes | str, inode: Inode) -> Inode:
        self.entries[name.encode() if isinstance(name, str) else name] = inode
        return inode

    def subdir(self, name: bytes | str, perm: int = 0o555) -> "StaticDir":
        return self.add(name, StaticDir(self.fs, perm))

    def file(self, name: bytes | str, generate: Callable[[], bytes], perm: int = 0o444,
             **kw) -> GeneratedFile:
        return self.add(name, GeneratedFile(self.fs, generate, perm, **kw))

    def nlink(self) -> int:
        return 2 + sum(1 for i in self.entries.values() if S.S_ISDIR(i.mode()))

    def lookup(self, name: bytes) -> Inode:
        try:
            return self.entries[name]
        except KeyError:
            raise fserr(errno.ENOENT, name) from None

    def readdir(self) -> list[DirEntry]:
        return [DirEntry(name, i.ino if isinstance(i, SyntheticInode) else i.stat().ino,
                         dtype_of(i.mode())) for name, i in self.entries.items()]
