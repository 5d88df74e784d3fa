"""AF_UNIX socket pairs: two connected endpoints inside the sentry.

A stream pair is two pipes, one per direction; a datagram or seqpacket pair
keeps message boundaries. Named sockets (bind/connect to a path or the
abstract namespace) come with the netstack work; unconnected AF_UNIX
sockets exist so programs can try them and get Linux's errors.
"""
from __future__ import annotations

import collections
import errno
import itertools
import stat as S

from vfs.file import WouldBlock
from vfs.inode import FileDescriptionImpl, Stat, fserr, now_ns

from .pipe import Pipe
from .waiter import WaitQueue

SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET = 1, 2, 5
POLLIN, POLLOUT, POLLERR, POLLHUP, POLLRDHUP = 1, 4, 8, 16, 0x2000
_ino = itertools.count(1)
DGRAM_QUEUE = 64


class _Messages:
    """One direction of a datagram pair."""

    def __init__(self):
        self.queue = collections.deque()
        self.readable = WaitQueue()
        self.writable = WaitQueue()
        self.readers = self.writers = 1


class UnixSocket(FileDescriptionImpl):
    seekable = False

    def __init__(self, stype: int):
        self.stype = stype
        self.ino = next(_ino)
        self.ctime = now_ns()
        self.rx = self.tx = None  # Pipe or _Messages, once connected
        self.peer: UnixSocket | None = None
        self.shut_rd = self.shut_wr = False

    # --- identity ---
    def stat(self) -> Stat:
        return Stat(mode=S.S_IFSOCK | 0o777, ino=self.ino, dev=0x8, atime_ns=self.ctime,
                    mtime_ns=self.ctime, ctime_ns=self.ctime)

    def link_name(self) -> bytes:
        return b"socket:[%d]" % self.ino

    @property
    def connected(self) -> bool:
        return self.rx is not None

    # --- data ---
    def recv(self, size: int, peek: bool = False) -> bytes:
        if not self.connected:
            raise fserr(errno.EINVAL if self.stype == SOCK_STREAM else errno.ENOTCONN)
        if self.stype == SOCK_STREAM:
            p = self.rx
            if not p.buf:
                if p.writers == 0 or self.shut_rd or size == 0:
                    return b""
                raise WouldBlock(p.readable, POLLIN)
            data = bytes(p.buf[:size])
            if not peek:
                del p.buf[:size]
                p.writable.notify()
            return data
        q = self.rx
        if not q.queue:
            if q.writers == 0 or self.shut_rd:
                return b""
            raise WouldBlock(q.readable, POLLIN)
        msg = q.queue[0] if peek else q.queue.popleft()
        if not peek:
            q.writable.notify()
        return msg[:size]

    def send(self, data: bytes) -> int:
        if not self.connected:
            raise fserr(errno.ENOTCONN)
        if self.shut_wr or self.tx.readers == 0:
            raise fserr(errno.EPIPE)
        if self.stype == SOCK_STREAM:
            p = self.tx
            if not data:
                return 0
            room = p.capacity - len(p.buf)
            if room <= 0:
                raise WouldBlock(p.writable, POLLOUT)
            p.buf += data[:room]
            p.readable.notify()
            return min(room, len(data))
        q = self.tx
        if len(data) > 212992:
            raise fserr(errno.EMSGSIZE)
        if len(q.queue) >= DGRAM_QUEUE:
            raise WouldBlock(q.writable, POLLOUT)
        q.queue.append(bytes(data))
        q.readable.notify()
        return len(data)

    def pread(self, size, offset):
        return self.recv(size)

    def pwrite(self, data, offset):
        return self.send(data)

    def shutdown(self, how: int) -> None:
        if not self.connected:
            raise fserr(errno.ENOTCONN)
        if how in (0, 2) and not self.shut_rd:  # SHUT_RD
            self.shut_rd = True
            self.rx.readers -= 1
            self.rx.writable.notify()
            self.rx.readable.notify()
        if how in (1, 2) and not self.shut_wr:  # SHUT_WR
            self.shut_wr = True
            self.tx.writers -= 1
            self.tx.readable.notify()

    # --- readiness ---
    def readiness(self) -> int:
        if not self.connected:
            return POLLOUT | POLLHUP
        r = 0
        if self.stype == SOCK_STREAM:
            if self.rx.buf or self.rx.writers == 0 or self.shut_rd:
                r |= POLLIN
            if self.rx.writers == 0:
                r |= POLLRDHUP
            if self.tx.capacity - len(self.tx.buf) > 0 and not self.shut_wr and self.tx.readers:
                r |= POLLOUT
        else:
            if self.rx.queue or self.rx.writers == 0:
                r |= POLLIN
            if len(self.tx.queue) < DGRAM_QUEUE and self.tx.readers:
                r |= POLLOUT
        if (self.rx.writers == 0 or self.shut_rd) and (self.tx.readers == 0 or self.shut_wr):
            r |= POLLHUP
        return r

    def wait_queues(self):
        if not self.connected:
            return ()
        return (self.rx.readable, self.tx.writable)

    def release(self) -> None:
        if not self.connected:
            return
        if not self.shut_rd:
            self.rx.readers -= 1
            self.rx.writable.notify()
        if not self.shut_wr:
            self.tx.writers -= 1
            self.tx.readable.notify()


def socketpair(stype: int) -> tuple[UnixSocket, UnixSocket]:
    a, b = UnixSocket(stype), UnixSocket(stype)
    if stype == SOCK_STREAM:
        ab, ba = Pipe(), Pipe()
        for p in (ab, ba):
            p.readers = p.writers = 1
            p.capacity = 212992  # the default socket buffer size
    else:
        ab, ba = _Messages(), _Messages()
    a.tx, a.rx, b.tx, b.rx = ab, ba, ba, ab
    a.peer, b.peer = b, a
    return a, b
