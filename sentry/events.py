"""Event descriptions: eventfd and epoll.

Both are FileDescriptionImpls with readiness() and wait_queues(), so they
work with read/write, poll/select and with each other (an epoll inside an
epoll). An epoll instance polls its interest list when asked; waiting on it
means waiting on the union of its members' wait queues and host fds.
"""
from __future__ import annotations

import errno
import itertools
import struct

from vfs.file import WouldBlock
from vfs.inode import FileDescriptionImpl, fserr

from .waiter import WaitQueue

POLLIN, POLLPRI, POLLOUT, POLLERR, POLLHUP = 1, 2, 4, 8, 16
EPOLLRDNORM, EPOLLWRNORM, EPOLLRDHUP = 0x40, 0x100, 0x2000
EPOLLEXCLUSIVE, EPOLLWAKEUP, EPOLLONESHOT, EPOLLET = 1 << 28, 1 << 29, 1 << 30, 1 << 31
EPOLL_CTL_ADD, EPOLL_CTL_DEL, EPOLL_CTL_MOD = 1, 2, 3
U64 = struct.Struct("<Q")
_anon_ino = itertools.count(1)


class EventFD(FileDescriptionImpl):
    seekable = False
    MAX = 0xFFFFFFFFFFFFFFFE

    def __init__(self, initval: int, semaphore: bool):
        self.count = initval
        self.semaphore = semaphore
        self.queue = WaitQueue()
        self.ino = next(_anon_ino)

    def link_name(self) -> bytes:
        return b"anon_inode:[eventfd]"

    def pread(self, size, offset):
        if size < 8:
            raise fserr(errno.EINVAL)
        if self.count == 0:
            raise WouldBlock(self.queue, POLLIN)
        value = 1 if self.semaphore else self.count
        self.count -= value
        self.queue.notify()
        return U64.pack(value)

    def pwrite(self, data, offset):
        if len(data) < 8:
            raise fserr(errno.EINVAL)
        value = U64.unpack(data[:8])[0]
        if value == 0xFFFFFFFFFFFFFFFF:
            raise fserr(errno.EINVAL)
        if self.count + value > self.MAX:
            raise WouldBlock(self.queue, POLLOUT)
        self.count += value
        self.queue.notify()
        return 8

    def readiness(self) -> int:
        return (POLLIN if self.count else 0) | (POLLOUT if self.count < self.MAX else 0)

    def wait_queues(self):
        return (self.queue,)


class _Interest:
    __slots__ = ("fd", "desc", "events", "data", "disabled", "last")

    def __init__(self, fd, desc, events, data):
        self.fd, self.desc, self.events, self.data = fd, desc, events, data
        self.disabled = False  # EPOLLONESHOT fired
        self.last = 0          # readiness last reported (edge triggering)


class EventPoll(FileDescriptionImpl):
    seekable = False

    def __init__(self):
        self.interest: dict[tuple[int, int], _Interest] = {}  # (fd, id(desc))
        self.queue = WaitQueue()  # for epolls nested in epolls/poll

    def link_name(self) -> bytes:
        return b"anon_inode:[eventpoll]"

    def ctl(self, op: int, fd: int, desc, events: int, data: int) -> None:
        if desc.impl is self:
            raise fserr(errno.EINVAL)
        if not hasattr(desc.impl, "readiness") or getattr(desc.impl, "seekable", True) and \
                not hasattr(desc.impl, "wait_queues") and not hasattr(desc.impl, "host_fd"):
            raise fserr(errno.EPERM)  # regular files and directories cannot be watched
        key = (fd, id(desc))
        if op == EPOLL_CTL_ADD:
            if key in self.interest:
                raise fserr(errno.EEXIST)
            self.interest[key] = _Interest(fd, desc, events, data)
        elif op == EPOLL_CTL_DEL:
            if self.interest.pop(key, None) is None:
                raise fserr(errno.ENOENT)
        elif op == EPOLL_CTL_MOD:
            it = self.interest.get(key)
            if it is None:
                raise fserr(errno.ENOENT)
            if events & EPOLLEXCLUSIVE:
                raise fserr(errno.EINVAL)
            it.events, it.data, it.disabled, it.last = events, data, False, 0
        else:
            raise fserr(errno.EINVAL)
        self.queue.notify()

    def forget_closed(self, live) -> None:
        """Drop interests whose description is gone (closed everywhere)."""
        for key in [k for k, it in self.interest.items() if it.desc.refs <= 0]:
            del self.interest[key]

    def collect(self, maxevents: int) -> list[tuple[int, int]]:
        """Ready (events, data) pairs, applying ET and ONESHOT."""
        out = []
        for it in list(self.interest.values()):
            if it.desc.refs <= 0:
                continue
            if it.disabled:
                continue
            ready = it.desc.impl.readiness()
            mask = it.events | POLLERR | POLLHUP
            got = ready & mask
            if it.events & EPOLLET:
                new = got & ~it.last
                it.last = got
                got = new
            if not got:
                continue
            out.append((got, it.data))
            if it.events & EPOLLONESHOT:
                it.disabled = True
            if len(out) >= maxevents:
                break
        return out

    def readiness(self) -> int:
        for it in self.interest.values():
            if it.desc.refs > 0 and not it.disabled and it.desc.impl.readiness() & (it.events | POLLERR | POLLHUP):
                return POLLIN
        return 0

    def wait_queues(self):
        qs = [self.queue]
        for it in self.interest.values():
            member = getattr(it.desc.impl, "wait_queues", None)
            if member is not None:
                qs.extend(member())
        return tuple(qs)

    def host_fds(self):
        # each host fd for what its interest asks (POLLIN/POLLOUT/POLLPRI), so a
        # writable fd watched for input does not keep the loop awake
        return tuple((it.desc.impl.host_fd, it.events & (POLLIN | POLLOUT | POLLPRI))
                     for it in self.interest.values() if getattr(it.desc.impl, "host_fd", None) is not None)
