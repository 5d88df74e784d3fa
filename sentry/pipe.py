"""Pipes: a bounded byte buffer with a read end and a write end."""
from __future__ import annotations

import errno
import itertools
import stat as S

from vfs.file import WouldBlock
from vfs.inode import FileDescriptionImpl, Stat, fserr, now_ns

from .waiter import WaitQueue

PIPE_BUF = 4096
DEFAULT_CAPACITY = 65536
_pipe_ino = itertools.count(1)
POLLIN, POLLOUT, POLLERR, POLLHUP = 1, 4, 8, 16


class Pipe:
    def __init__(self):
        self.buf = bytearray()
        self.capacity = DEFAULT_CAPACITY
        self.readers = 0
        self.writers = 0
        self.readable = WaitQueue()  # data arrived or last writer left
        self.writable = WaitQueue()  # room freed or last reader left
        self.ino = next(_pipe_ino)
        self.ctime = now_ns()
        self.on_broken = None  # callback(): SIGPIPE for the writer (set by the kernel)

    def stat(self) -> Stat:
        return Stat(mode=S.S_IFIFO | 0o600, ino=self.ino, dev=0xC, size=len(self.buf),
                    atime_ns=self.ctime, mtime_ns=self.ctime, ctime_ns=self.ctime)

    # --- splice(2), tee(2), vmsplice(2): bytes in and out without an end ---
    def room(self) -> int:
        return max(0, self.capacity - len(self.buf))

    def peek(self, n: int) -> bytes:
        return bytes(self.buf[:n])

    def take(self, n: int) -> bytes:
        data = bytes(self.buf[:n])
        if data:
            del self.buf[:n]
            self.writable.notify()
        return data

    def put(self, data: bytes) -> int:
        """Append what fits (no PIPE_BUF atomicity: splice fills free room)."""
        chunk = data[:self.room()]
        if chunk:
            self.buf += chunk
            self.readable.notify()
        return len(chunk)


class PipeEnd(FileDescriptionImpl):
    seekable = False

    def __init__(self, pipe: Pipe, reading: bool):
        self.pipe = pipe
        self.reading = reading
        if reading:
            pipe.readers += 1
        else:
            pipe.writers += 1

    @property
    def capacity(self) -> int:
        return self.pipe.capacity

    def set_capacity(self, n: int) -> int:
        n = max(PIPE_BUF, 1 << (max(n, 1) - 1).bit_length())
        if n < len(self.pipe.buf):
            raise fserr(errno.EBUSY)
        if n > 1 << 20:
            raise fserr(errno.EPERM)
        self.pipe.capacity = n
        return n

    def stat(self) -> Stat:
        return self.pipe.stat()

    def link_name(self) -> bytes:
        return b"pipe:[%d]" % self.pipe.ino

    def pread(self, size, offset):
        p = self.pipe
        if not p.buf:
            if p.writers == 0 or size == 0:
                return b""
            raise WouldBlock(p.readable, POLLIN)
        data = bytes(p.buf[:size])
        del p.buf[:size]
        p.writable.notify()
        return data

    def pwrite(self, data, offset):
        p = self.pipe
        if p.readers == 0:
            raise fserr(errno.EPIPE)
        if not data:
            return 0
        room = p.capacity - len(p.buf)
        # writes of at most PIPE_BUF bytes are atomic: all or wait
        if room <= 0 or (len(data) <= PIPE_BUF and room < len(data)):
            raise WouldBlock(p.writable, POLLOUT)
        chunk = data[:room]
        p.buf += chunk
        p.readable.notify()
        return len(chunk)

    def reopen(self, flags: int) -> "PipeEnd":
        """A new end of the same pipe (open of /proc/self/fd/N)."""
        acc = flags & 3
        if acc == 2:
            raise fserr(errno.EINVAL)
        return PipeEnd(self.pipe, acc == 0)

    def wait_queues(self):
        return (self.pipe.readable,) if self.reading else (self.pipe.writable,)

    def readiness(self) -> int:
        p = self.pipe
        if self.reading:
            return (POLLIN if p.buf else 0) | (POLLHUP if p.writers == 0 else 0)
        if p.readers == 0:
            return POLLERR
        return POLLOUT if p.capacity - len(p.buf) >= PIPE_BUF else 0

    def release(self):
        p = self.pipe
        if self.reading:
            p.readers -= 1
            if p.readers == 0:
                p.writable.notify()
        else:
            p.writers -= 1
            if p.writers == 0:
                p.readable.notify()


def new_pipe() -> tuple[PipeEnd, PipeEnd]:
    p = Pipe()
    return PipeEnd(p, True), PipeEnd(p, False)


def pipe_of(impl) -> Pipe | None:
    """The pipe behind an open pipe end or fifo, None for anything else."""
    p = getattr(impl, "pipe", None)
    return p if isinstance(p, Pipe) else None
