"""devpts: /dev/pts lists the sandbox's pseudo-terminal replicas as
character devices 136:N. `source` (the sentry's pty registry) says which
exist: numbers() -> list[int]. Opening a node goes through the device
opener like any device node."""
from __future__ import annotations

import errno
import os
import stat as S

from .inode import DT_CHR, DirEntry, Filesystem, Inode, Stat, fserr, now_ns

DEVPTS_MAGIC = 0x1CD1
PTS_MAJOR = 136
TTY_GID = 5


class _PtsRoot(Inode):
    def __init__(self, fs: "DevPtsFS"):
        self.fs = fs
        self._stat = Stat(mode=S.S_IFDIR | 0o755, ino=1, dev=fs.dev, nlink=2,
                          atime_ns=fs.born, mtime_ns=fs.born, ctime_ns=fs.born)

    def stat(self) -> Stat:
        return self._stat

    def lookup(self, name: bytes) -> Inode:
        if not name.isdigit() or int(name) not in self.fs.source.numbers():
            raise fserr(errno.ENOENT)
        return _PtsNode(self.fs, int(name))

    def readdir(self) -> list[DirEntry]:
        return [DirEntry(b"%d" % n, n + 3, DT_CHR) for n in self.fs.source.numbers()]


class _PtsNode(Inode):
    def __init__(self, fs: "DevPtsFS", index: int):
        self.fs = fs
        self.index = index

    def stat(self) -> Stat:
        if self.index not in self.fs.source.numbers():
            raise fserr(errno.ENOENT)  # the pty was closed
        return self.fs.node_stat(self.index)


class DevPtsFS(Filesystem):
    name = "devpts"
    magic = DEVPTS_MAGIC

    def __init__(self, source):
        super().__init__()
        self.source = source
        source.devpts = self
        self.born = now_ns()
        self._root = _PtsRoot(self)

    def root(self) -> Inode:
        return self._root

    def node_stat(self, index: int) -> Stat:
        """/dev/pts/N's stat; also fstat of a replica opened without a path
        (the console's), so ttyname() finds it."""
        return Stat(mode=S.S_IFCHR | 0o620, ino=index + 3, dev=self.dev, gid=TTY_GID,
                    rdev=os.makedev(PTS_MAJOR, index), atime_ns=self.born,
                    mtime_ns=self.born, ctime_ns=self.born)
