"""Open file descriptions: offset, status flags and the file's impl.

A FileDescription is what fd tables point at (dup shares it, open makes a
new one). It is reference counted by the fd tables that hold it.
"""
from __future__ import annotations

import errno
import os
import select

from . import inotify
from .inode import FileDescriptionImpl, Stat, fserr

O_ACCMODE = 0o3
O_RDONLY, O_WRONLY, O_RDWR = 0, 1, 2
O_CREAT, O_EXCL, O_NOCTTY, O_TRUNC = 0o100, 0o200, 0o400, 0o1000
O_APPEND, O_NONBLOCK, O_DSYNC, O_ASYNC = 0o2000, 0o4000, 0o10000, 0o20000
O_DIRECT, O_LARGEFILE, O_DIRECTORY, O_NOFOLLOW = 0o40000, 0o100000, 0o200000, 0o400000
O_NOATIME, O_CLOEXEC, O_SYNC, O_PATH, O_TMPFILE = 0o1000000, 0o2000000, 0o4010000, 0o10000000, 0o20200000
# Flags F_SETFL may change (Linux: O_APPEND|O_ASYNC|O_DIRECT|O_NOATIME|O_NONBLOCK).
SETFL_MASK = O_APPEND | O_ASYNC | O_DIRECT | O_NOATIME | O_NONBLOCK

SEEK_SET, SEEK_CUR, SEEK_END, SEEK_DATA, SEEK_HOLE = 0, 1, 2, 3, 4


class WouldBlock(Exception):
    """Raised by an impl whose operation must wait. `waitable` is an object
    with add_waiter(callback) / remove_waiter(callback) (sentry.waiter);
    the sentry parks the task and retries the syscall when it fires."""

    def __init__(self, waitable, events: int = 0, host_fd: int | None = None):
        super().__init__()
        self.waitable = waitable
        self.events = events
        self.host_fd = host_fd  # a host fd the sentry's loop must poll instead


class FileDescription:
    def __init__(self, impl: FileDescriptionImpl, flags: int, location=None, inode=None):
        self.impl = impl
        self.flags = flags & ~(O_CREAT | O_EXCL | O_NOCTTY | O_TRUNC | O_CLOEXEC)
        self.location = location  # vfs.path.Location, None for pipes/sockets
        self.inode = inode
        self.offset = 0
        self.refs = 0
        self.dir_cache = None  # getdents snapshot, taken at offset 0

    # --- access mode ---
    @property
    def readable(self) -> bool:
        return self.flags & O_PATH == 0 and self.flags & O_ACCMODE in (O_RDONLY, O_RDWR)

    @property
    def writable(self) -> bool:
        return self.flags & O_PATH == 0 and self.flags & O_ACCMODE in (O_WRONLY, O_RDWR)

    @property
    def nonblocking(self) -> bool:
        return bool(self.flags & O_NONBLOCK)

    # --- I/O that moves the offset ---
    def read(self, size: int) -> bytes:
        if not self.readable:
            raise fserr(errno.EBADF)
        data = self._pread(size, self.offset)
        if self.impl.seekable:
            self.offset += len(data)
        if data and inotify.marks:
            inotify.accessed(self)
        return data

    def write(self, data: bytes) -> int:
        if not self.writable:
            raise fserr(errno.EBADF)
        if self.flags & O_APPEND and self.impl.seekable:
            self.offset = self.impl.size()
        n = self._pwrite(data, self.offset)
        if self.impl.seekable:
            self.offset += n
        if n and inotify.marks:
            inotify.modified(self)
        return n

    def pread(self, size: int, offset: int) -> bytes:
        if not self.readable:
            raise fserr(errno.EBADF)
        if not self.impl.seekable:
            raise fserr(errno.ESPIPE)
        if offset < 0:
            raise fserr(errno.EINVAL)
        data = self._pread(size, offset)
        if data and inotify.marks:
            inotify.accessed(self)
        return data

    def pwrite(self, data: bytes, offset: int) -> int:
        if not self.writable:
            raise fserr(errno.EBADF)
        if not self.impl.seekable:
            raise fserr(errno.ESPIPE)
        if offset < 0:
            raise fserr(errno.EINVAL)
        if self.flags & O_APPEND:
            offset = self.impl.size()  # Linux appends whatever the offset (pwrite(2), BUGS)
        n = self._pwrite(data, offset)
        if n and inotify.marks:
            inotify.modified(self)
        return n

    # A file mapped MAP_SHARED has its current bytes in its page cache
    # (stores through mappings land there first): read from it, and write
    # to both so the mappings see the write.
    def _pread(self, size: int, offset: int) -> bytes:
        cache = self.inode.page_cache if self.inode is not None else None
        if cache is None:
            return self.impl.pread(size, offset)
        return cache.read(size, offset, self.impl.size())

    def _pwrite(self, data: bytes, offset: int) -> int:
        cache = self.inode.page_cache if self.inode is not None else None
        if cache is None:
            return self.impl.pwrite(data, offset)
        old = self.impl.size()
        n = self.impl.pwrite(data, offset)
        if offset > old:
            cache.resized(old, offset)
        cache.write(data[:n], offset)
        return n

    def seek(self, offset: int, whence: int) -> int:
        if not self.impl.seekable:
            raise fserr(errno.ESPIPE)
        if whence == SEEK_SET:
            new = offset
        elif whence == SEEK_CUR:
            new = self.offset + offset
        elif whence == SEEK_END:
            new = self.impl.size() + offset
        elif whence in (SEEK_DATA, SEEK_HOLE):
            size = self.impl.size()
            if offset >= size or offset < 0:
                raise fserr(errno.ENXIO)
            new = _seek_data(self.impl, offset, size) if whence == SEEK_DATA else _seek_hole(self.impl, offset, size)
        else:
            raise fserr(errno.EINVAL)
        if new < 0:
            raise fserr(errno.EINVAL)
        if new == 0:
            self.dir_cache = None  # rewinddir sees fresh contents
        self.offset = new
        return new

    def stat(self) -> Stat:
        if self.inode is None:
            raise fserr(errno.EBADF)
        return self.inode.stat()

    # --- reference counting by fd tables ---
    def incref(self) -> "FileDescription":
        self.refs += 1
        return self

    def decref(self) -> None:
        self.refs -= 1
        if self.refs == 0:
            if inotify.marks:
                inotify.closed(self)
            self.impl.release()


def _seek_data(impl, offset: int, size: int) -> int:
    """The first offset >= offset that holds data (files without a sparse
    store are all data)."""
    if not hasattr(impl, "data_ranges"):
        return offset
    for start, length in impl.data_ranges(size):
        if start + length > offset:
            return max(start, offset)
    raise fserr(errno.ENXIO)


def _seek_hole(impl, offset: int, size: int) -> int:
    """The first offset >= offset in a hole; the end of the file counts."""
    if not hasattr(impl, "data_ranges"):
        return size
    for start, length in impl.data_ranges(size):
        if start > offset:
            break
        if start + length > offset:
            offset = start + length
    return min(offset, size)


class HostFileImpl(FileDescriptionImpl):
    """A host fd the sandbox was given on purpose (pyrunsc's own stdio).
    The sentry reads and writes it for the guest; the guest never holds it.
    Reads never block the sentry: not-ready raises WouldBlock naming the
    host fd, and the task waits in the event loop."""
    seekable = False
    POLLIN, POLLOUT = 1, 4

    def __init__(self, host_fd: int):
        self.host_fd = host_fd
        self._poll = select.poll()
        self._poll.register(host_fd, self.POLLIN)

    def reopen(self, flags: int) -> "HostFileImpl":
        return HostFileImpl(self.host_fd)

    def _ready_to_read(self) -> bool:
        return bool(self._poll.poll(0))

    def pread(self, size, offset):
        if not self._ready_to_read():
            raise WouldBlock(None, self.POLLIN, host_fd=self.host_fd)
        try:
            return os.read(self.host_fd, size)
        except BlockingIOError:
            raise WouldBlock(None, self.POLLIN, host_fd=self.host_fd) from None

    def pwrite(self, data, offset):
        try:
            return os.write(self.host_fd, data)
        except BrokenPipeError:
            raise fserr(errno.EPIPE) from None

    def readiness(self) -> int:
        return (self.POLLIN if self._ready_to_read() else 0) | self.POLLOUT

    def stat(self) -> Stat:
        """The host file's type and mode (a tty, pipe or file), with
        sandbox-local identity: no host inode or device numbers leak."""
        st = os.fstat(self.host_fd)
        return Stat(mode=st.st_mode, ino=self.host_fd + 1, dev=0xB, rdev=st.st_rdev if os.isatty(self.host_fd) else 0,
                    size=0, blksize=st.st_blksize, atime_ns=st.st_atime_ns,
                    mtime_ns=st.st_mtime_ns, ctime_ns=st.st_ctime_ns)

    def link_name(self) -> bytes:
        return b"/dev/pts/0" if os.isatty(self.host_fd) else b"pipe:[%d]" % (self.host_fd + 1)

    def ioctl(self, request, arg, mem):
        return host_tty_ioctl(self.host_fd, request, arg, mem)


# tty ioctls answered from the host terminal: (request, bytes in, bytes out)
_TTY_IOCTLS = {
    0x5401: (0, 36),   # TCGETS: struct termios (kernel layout, 36 bytes)
    0x5402: (36, 0),   # TCSETS
    0x5403: (36, 0),   # TCSETSW
    0x5404: (36, 0),   # TCSETSF
    0x5413: (0, 8),    # TIOCGWINSZ
    0x5414: (8, 0),    # TIOCSWINSZ
    0x541B: (0, 4),    # FIONREAD
}


def host_tty_ioctl(host_fd: int, request: int, arg: int, mem) -> int:
    import fcntl
    spec = _TTY_IOCTLS.get(request)
    if spec is None:
        raise fserr(errno.ENOTTY)
    n_in, n_out = spec
    if request != 0x541B and not os.isatty(host_fd):
        raise fserr(errno.ENOTTY)
    buf = mem.read(arg, n_in) if n_in else bytes(n_out)
    try:
        res = fcntl.ioctl(host_fd, request, buf)
    except OSError as e:
        raise fserr(e.errno) from None
    if n_out:
        mem.write(arg, res[:n_out])
    return 0
