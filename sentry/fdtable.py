"""Per-process file descriptor tables: fd number -> (description, cloexec)."""
from __future__ import annotations

import errno

from vfs.file import FileDescription
from vfs.inode import fserr
from vfs.locks import LOCKS


class FDTable:
    def __init__(self, limit: int = 1024):
        self.fds: dict[int, tuple[FileDescription, bool]] = {}
        self.limit = limit

    def get(self, fd: int) -> FileDescription:
        try:
            return self.fds[fd][0]
        except KeyError:
            raise fserr(errno.EBADF) from None

    def cloexec(self, fd: int) -> bool:
        return self.get(fd) is not None and self.fds[fd][1]

    def set_cloexec(self, fd: int, on: bool) -> None:
        self.fds[fd] = (self.get(fd), on)

    def _lowest_free(self, start: int) -> int:
        fd = start
        while fd in self.fds:
            fd += 1
        if fd >= self.limit:
            raise fserr(errno.EMFILE)
        return fd

    def install(self, desc: FileDescription, cloexec: bool = False, start: int = 0) -> int:
        if start >= self.limit:
            raise fserr(errno.EINVAL)
        fd = self._lowest_free(start)
        self.fds[fd] = (desc.incref(), cloexec)
        return fd

    def install_at(self, fd: int, desc: FileDescription, cloexec: bool = False) -> None:
        """dup2 semantics: replace whatever is at fd."""
        if fd < 0 or fd >= self.limit:
            raise fserr(errno.EBADF)
        old = self.fds.get(fd)
        self.fds[fd] = (desc.incref(), cloexec)
        if old is not None:
            self._drop(old[0])

    def close(self, fd: int) -> None:
        entry = self.fds.pop(fd, None)
        if entry is None:
            raise fserr(errno.EBADF)
        self._drop(entry[0])

    def _drop(self, desc: FileDescription) -> None:
        """Linux's filp_close: this table's record locks on the file go
        (the table is their owner), then the reference; the last
        reference takes the description's OFD and flock locks."""
        LOCKS.close_fd(desc, self)
        desc.decref()
        if desc.refs == 0:
            LOCKS.release_description(desc)

    def close_range(self, first: int, last: int, cloexec_only: bool = False) -> None:
        for fd in [f for f in self.fds if first <= f <= last]:
            if cloexec_only:
                self.fds[fd] = (self.fds[fd][0], True)
            else:
                self.close(fd)

    def on_exec(self) -> None:
        for fd in [f for f, (_, ce) in self.fds.items() if ce]:
            self.close(fd)

    def fork(self) -> "FDTable":
        new = FDTable(self.limit)
        for fd, (desc, ce) in self.fds.items():
            new.fds[fd] = (desc.incref(), ce)
        return new

    def close_all(self) -> None:
        for fd in list(self.fds):
            self.close(fd)
