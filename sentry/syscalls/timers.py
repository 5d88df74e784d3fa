"""POSIX timers, timerfd and signalfd syscalls: argument decoding in
Linux's order of checks; the objects live in sentry.posixtimer,
sentry.timerfd and sentry.signalfd."""
from __future__ import annotations

import errno
import struct

from vfs.file import O_CLOEXEC, O_NONBLOCK, O_RDWR, FileDescription
from vfs.inode import fserr

from .. import posixtimer
from ..kernel import NORESUME
from ..signalfd import SignalFD
from ..timerfd import TimerFD
from .table import PARTIAL, syscall
from .util import s32

ITIMERSPEC = struct.Struct("<qqqq")  # it_interval, it_value (struct timespec each)
I32 = struct.Struct("<i")
TIMER_ABSTIME = 1
TFD_TIMER_ABSTIME, TFD_TIMER_CANCEL_ON_SET = 1, 2
TFD_CLOCKS = (posixtimer.CLOCK_REALTIME, posixtimer.CLOCK_MONOTONIC, posixtimer.CLOCK_BOOTTIME)


def _read_itimerspec(t, addr: int) -> tuple[int, int]:
    """(value, interval) in ns; EFAULT if unreadable, EINVAL if malformed."""
    isec, insec, vsec, vnsec = ITIMERSPEC.unpack(t.thread.read(addr, ITIMERSPEC.size))
    for sec, nsec in ((isec, insec), (vsec, vnsec)):
        if sec < 0 or not 0 <= nsec < 10**9:
            raise fserr(errno.EINVAL)
    return vsec * 10**9 + vnsec, isec * 10**9 + insec


def _itimerspec(value: int, interval: int) -> bytes:
    return ITIMERSPEC.pack(interval // 10**9, interval % 10**9, value // 10**9, value % 10**9)


# --- POSIX timers ---
@syscall("timer_create", support=PARTIAL,
         note="one pending instance per signal number: a timer's signal pending together with "
              "another of the same number is merged; CPU-clock timers are polled")
def sys_timer_create(k, t, clock, sevp, timer_id_addr, *_):
    event = t.thread.read(sevp, 64) if sevp else None
    timer = posixtimer.create(k, t, s32(clock), event)
    try:
        t.thread.write(timer_id_addr, I32.pack(timer.id))
    except OSError:
        posixtimer.delete(t.tg, timer.id)
        raise
    return 0


@syscall("timer_settime")
def sys_timer_settime(k, t, timer_id, flags, new, old, *_):
    if not new:
        raise fserr(errno.EINVAL)
    value, interval = _read_itimerspec(t, new)
    timer = posixtimer.lookup(t.tg, s32(timer_id))
    prev = timer.set(value, interval, bool(flags & TIMER_ABSTIME))
    if not t.alive:  # an already-due timer's signal killed the process
        return NORESUME
    if old:
        t.thread.write(old, _itimerspec(*prev))
    return 0


@syscall("timer_gettime")
def sys_timer_gettime(k, t, timer_id, cur, *_):
    timer = posixtimer.lookup(t.tg, s32(timer_id))
    t.thread.write(cur, _itimerspec(*timer.get()))
    return 0


@syscall("timer_getoverrun")
def sys_timer_getoverrun(k, t, timer_id, *_):
    return posixtimer.lookup(t.tg, s32(timer_id)).overrun_last


@syscall("timer_delete")
def sys_timer_delete(k, t, timer_id, *_):
    posixtimer.delete(t.tg, s32(timer_id))
    return 0


# --- timerfd ---
@syscall("timerfd_create", support=PARTIAL,
         note="the _ALARM clocks give EPERM (no CAP_WAKE_ALARM); TFD_TIMER_CANCEL_ON_SET is "
              "accepted but never cancels (the sandbox cannot set the clock)")
def sys_timerfd_create(k, t, clock, flags, *_):
    clock = s32(clock)
    if flags & ~(O_CLOEXEC | O_NONBLOCK) or clock not in TFD_CLOCKS + posixtimer.ALARM_CLOCKS:
        raise fserr(errno.EINVAL)
    if clock in posixtimer.ALARM_CLOCKS:
        raise fserr(errno.EPERM)
    desc = FileDescription(TimerFD(k, clock), O_RDWR | (flags & O_NONBLOCK))
    return t.tg.fdtable.install(desc, cloexec=bool(flags & O_CLOEXEC))


def _timerfd(t, fd) -> TimerFD:
    desc = t.tg.fdtable.get(s32(fd))
    if not isinstance(desc.impl, TimerFD):
        raise fserr(errno.EINVAL)
    return desc.impl


@syscall("timerfd_settime")
def sys_timerfd_settime(k, t, fd, flags, new, old, *_):
    value, interval = _read_itimerspec(t, new)
    if flags & ~(TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET):
        raise fserr(errno.EINVAL)
    prev = _timerfd(t, fd).settime(value, interval, bool(flags & TFD_TIMER_ABSTIME))
    if old:
        t.thread.write(old, _itimerspec(*prev))
    return 0


@syscall("timerfd_gettime")
def sys_timerfd_gettime(k, t, fd, cur, *_):
    t.thread.write(cur, _itimerspec(*_timerfd(t, fd).gettime()))
    return 0


# --- signalfd ---
@syscall("signalfd")
def sys_signalfd(k, t, fd, mask, sizemask, *_):
    return sys_signalfd4(k, t, fd, mask, sizemask, 0)


@syscall("signalfd4")
def sys_signalfd4(k, t, fd, mask_addr, sizemask, flags, *_):
    if sizemask != 8:
        raise fserr(errno.EINVAL)
    mask = struct.unpack("<Q", t.thread.read(mask_addr, 8))[0]
    if flags & ~(O_CLOEXEC | O_NONBLOCK):
        raise fserr(errno.EINVAL)
    fd = s32(fd)
    if fd == -1:
        desc = FileDescription(SignalFD(k, mask), O_RDWR | (flags & O_NONBLOCK))
        return t.tg.fdtable.install(desc, cloexec=bool(flags & O_CLOEXEC))
    desc = t.tg.fdtable.get(fd)
    if not isinstance(desc.impl, SignalFD):
        raise fserr(errno.EINVAL)
    desc.impl.set_mask(mask)
    return fd
