"""eventfd and epoll syscalls."""
from __future__ import annotations

import errno
import struct
import time

from vfs.file import O_CLOEXEC, O_NONBLOCK, O_RDWR, FileDescription
from vfs.inode import fserr

from ..events import EventFD, EventPoll
from ..signals import with_call_mask
from ..waiter import Block
from .table import PARTIAL, syscall
from .util import read_timespec_ns, s32

EPOLL_EVENT = struct.Struct("<IQ")  # packed on x86-64: 12 bytes


@syscall("eventfd")
def sys_eventfd(k, t, initval, *_):
    return sys_eventfd2(k, t, initval, 0)


@syscall("eventfd2")
def sys_eventfd2(k, t, initval, flags, *_):
    if flags & ~(O_CLOEXEC | O_NONBLOCK | 1):
        raise fserr(errno.EINVAL)
    desc = FileDescription(EventFD(initval & 0xFFFFFFFF, bool(flags & 1)), O_RDWR | (flags & O_NONBLOCK))
    return t.tg.fdtable.install(desc, cloexec=bool(flags & O_CLOEXEC))


@syscall("epoll_create")
def sys_epoll_create(k, t, size, *_):
    if s32(size) <= 0:
        raise fserr(errno.EINVAL)
    return sys_epoll_create1(k, t, 0)


@syscall("epoll_create1")
def sys_epoll_create1(k, t, flags, *_):
    if flags & ~O_CLOEXEC:
        raise fserr(errno.EINVAL)
    return t.tg.fdtable.install(FileDescription(EventPoll(), O_RDWR), cloexec=bool(flags & O_CLOEXEC))


def _epoll(t, epfd):
    desc = t.tg.fdtable.get(s32(epfd))
    if not isinstance(desc.impl, EventPoll):
        raise fserr(errno.EINVAL)
    return desc.impl


@syscall("epoll_ctl", support=PARTIAL, note="edge triggering reports readiness transitions only")
def sys_epoll_ctl(k, t, epfd, op, fd, event, *_):
    ep = _epoll(t, epfd)
    desc = t.tg.fdtable.get(s32(fd))
    events = data = 0
    if op != 2:  # EPOLL_CTL_DEL ignores the event
        events, data = EPOLL_EVENT.unpack(t.thread.read(event, 12))
    ep.ctl(op, s32(fd), desc, events, data)
    return 0


def _wait(k, t, epfd, events_addr, maxevents, timeout_ns):
    maxevents = s32(maxevents)
    if maxevents <= 0 or maxevents > 65536:
        raise fserr(errno.EINVAL)
    ep = _epoll(t, epfd)
    ready = ep.collect(maxevents)
    deadline = None if timeout_ns is None else t.call_start() + timeout_ns
    if ready or (deadline is not None and time.monotonic_ns() >= deadline):
        if ready:
            t.thread.write(events_addr, b"".join(EPOLL_EVENT.pack(ev, data) for ev, data in ready))
        return len(ready)
    raise Block(*ep.wait_queues(), host_fds=ep.host_fds(), deadline_ns=deadline,
                interrupt_result=-errno.EINTR)  # never restarted


def _ms(timeout):
    ms = s32(timeout)
    return None if ms < 0 else ms * 1_000_000


@syscall("epoll_wait")
def sys_epoll_wait(k, t, epfd, events, maxevents, timeout, *_):
    return _wait(k, t, epfd, events, maxevents, _ms(timeout))


@syscall("epoll_pwait")
def sys_epoll_pwait(k, t, epfd, events, maxevents, timeout, sigmask, size):
    return with_call_mask(k, t, sigmask, size, lambda: _wait(k, t, epfd, events, maxevents, _ms(timeout)))


@syscall("epoll_pwait2")
def sys_epoll_pwait2(k, t, epfd, events, maxevents, tsp, sigmask, size):
    ns = None
    if tsp:
        ns = read_timespec_ns(t, tsp)
    return with_call_mask(k, t, sigmask, size, lambda: _wait(k, t, epfd, events, maxevents, ns))
