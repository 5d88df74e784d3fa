"""Clocks and sleeping. Time is the host's (CLOCK_REALTIME is not
virtualised); sleeps park the task on a sentry timer."""
from __future__ import annotations

import errno
import struct
import time

from vfs.inode import fserr

from ..waiter import Block
from .table import PARTIAL, syscall
from .util import read_timespec_ns, s32

TIMESPEC = struct.Struct("<qq")
CLOCKS = {0: time.CLOCK_REALTIME, 1: time.CLOCK_MONOTONIC, 2: time.CLOCK_PROCESS_CPUTIME_ID,
          3: time.CLOCK_THREAD_CPUTIME_ID, 4: time.CLOCK_MONOTONIC_RAW, 5: 5, 6: 6,
          7: time.CLOCK_BOOTTIME, 8: 8, 9: 9, 11: time.CLOCK_TAI}
TIMER_ABSTIME = 1


def process_cpu_ns(tg) -> int:
    """CPU time of a guest process: its host process's CPU clock (the
    sentry's own time is not charged to it)."""
    if not tg.tasks:
        return 0
    hpid = tg.tasks[0].thread.pid
    try:
        return time.clock_gettime_ns(((~hpid) << 3) | 2)  # CPUCLOCK_SCHED of hpid
    except OSError:
        return 0


def thread_cpu_ns(task) -> int:
    """CPU time of one guest thread, from its host thread's schedstat (the
    host allows reading another process's per-thread clock only from
    inside that process)."""
    hpid = task.tg.tasks[0].thread.pid if task.tg.tasks else task.thread.pid
    try:
        with open(f"/proc/{hpid}/task/{task.thread.pid}/schedstat", "rb") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def _cpu_clock_target(k, t, clock: int):
    """A dynamic CPU clock id (clock_getcpuclockid, pthread_getcpuclockid):
    ~pid << 3 | type, with bit 2 set for a thread."""
    pid = ~(clock >> 3)
    if clock & 3 == 3:
        raise fserr(errno.EINVAL)  # CLOCKFD: not supported
    if clock & 4:
        task = t if pid == 0 else k.pidns.tasks.get(pid)
        if task is None or not task.alive:
            raise fserr(errno.EINVAL)
        return thread_cpu_ns(task)
    tg = t.tg if pid == 0 else k.pidns.groups.get(pid)
    if tg is None:
        raise fserr(errno.EINVAL)
    return process_cpu_ns(tg)


def _clock_ns(k, t, clock: int) -> int:
    clock = s32(clock)
    if clock == 2:
        return process_cpu_ns(t.tg)
    if clock == 3:
        return thread_cpu_ns(t)
    if clock < 0:
        return _cpu_clock_target(k, t, clock)
    if clock not in CLOCKS:
        raise fserr(errno.EINVAL)
    return time.clock_gettime_ns(CLOCKS[clock])


@syscall("clock_gettime")
def sys_clock_gettime(k, t, clock, tp, *_):
    ns = _clock_ns(k, t, clock)
    t.thread.write(tp, TIMESPEC.pack(ns // 10**9, ns % 10**9))
    return 0


@syscall("clock_getres")
def sys_clock_getres(k, t, clock, tp, *_):
    _clock_ns(k, t, clock)
    if tp:
        res = 4_000_000 if s32(clock) in (5, 6) else 1  # the coarse clocks tick at 250 Hz
        t.thread.write(tp, TIMESPEC.pack(0, res))
    return 0


@syscall("gettimeofday")
def sys_gettimeofday(k, t, tv, tz, *_):
    ns = time.time_ns()
    if tv:
        t.thread.write(tv, TIMESPEC.pack(ns // 10**9, (ns % 10**9) // 1000))
    if tz:
        t.thread.write(tz, bytes(8))
    return 0


@syscall("time")
def sys_time(k, t, tloc, *_):
    now = int(time.time())
    if tloc:
        t.thread.write(tloc, struct.pack("<q", now))
    return now


def _sleep_until(k, t, deadline_ns: int, rem_addr: int = 0):
    """Park until the monotonic deadline; the timer ends the call with 0.
    A handled signal ends it with EINTR even under SA_RESTART (Linux's
    restart block) and, for relative sleeps, stores the time left."""
    if time.monotonic_ns() >= deadline_ns:
        return 0

    def store_remaining(task):
        left = max(0, deadline_ns - time.monotonic_ns())
        task.thread.write(rem_addr, TIMESPEC.pack(left // 10**9, left % 10**9))
    raise Block(deadline_ns=deadline_ns, on_timeout=0, interrupt_result=-errno.EINTR,
                on_interrupt=store_remaining if rem_addr else None)


@syscall("nanosleep")
def sys_nanosleep(k, t, req, rem, *_):
    return _sleep(k, t, 1, 0, req, rem)


@syscall("clock_nanosleep")
def sys_clock_nanosleep(k, t, clock, flags, req, rem, *_):
    if s32(clock) == 3 or s32(clock) < 0 and s32(clock) & 4:
        raise fserr(errno.EINVAL)  # a thread's CPU clock cannot be slept on
    return _sleep(k, t, clock, flags, req, rem)


def _sleep(k, t, clock, flags, req, rem):
    # A parked sleep re-runs this handler only on timeout (on_timeout=0),
    # so computing the deadline here happens once per call.
    dur = read_timespec_ns(t, req)
    if flags & TIMER_ABSTIME:
        now = _clock_ns(k, t, clock)
        dur = max(0, dur - now)
        rem = 0  # absolute sleeps report nothing left
    else:
        _clock_ns(k, t, clock)  # EINVAL for an unknown clock
    return _sleep_until(k, t, time.monotonic_ns() + dur, rem)


@syscall("times")
def sys_times(k, t, buf, *_):
    ticks = (time.monotonic_ns() - k.boot_ns) // 10_000_000
    if buf:  # struct tms in clock ticks (100 Hz); CPU time counted as user time
        own, kids = process_cpu_ns(t.tg) // 10_000_000, t.tg.children_cpu_ns // 10_000_000
        t.thread.write(buf, struct.pack("<qqqq", own, 0, kids, 0))
    return ticks


TIMEVAL2 = struct.Struct("<qqqq")  # it_interval, it_value (struct timeval each)


def _tv_ns(sec: int, usec: int) -> int:
    if sec < 0 or not 0 <= usec < 10**6:
        raise fserr(errno.EINVAL)
    return sec * 10**9 + usec * 1000


def _itimerval(it) -> bytes:
    rem, iv = it.remaining(), it.interval
    us = lambda ns: (ns // 10**9, (ns % 10**9 + 999) // 1000)  # noqa: E731 round up
    return TIMEVAL2.pack(*us(iv), *us(rem))


@syscall("getitimer")
def sys_getitimer(k, t, which, value, *_):
    from .. import itimer
    if which not in (0, 1, 2):
        raise fserr(errno.EINVAL)
    t.thread.write(value, _itimerval(itimer.itimers(k, t.tg)[which]))
    return 0


@syscall("setitimer", support=PARTIAL, note="VIRTUAL and PROF both count all CPU time of the process")
def sys_setitimer(k, t, which, new, old, *_):
    from .. import itimer
    if which not in (0, 1, 2):
        raise fserr(errno.EINVAL)
    it = itimer.itimers(k, t.tg)[which]
    values = TIMEVAL2.unpack(t.thread.read(new, 32)) if new else (0, 0, 0, 0)
    interval, value = _tv_ns(values[0], values[1]), _tv_ns(values[2], values[3])
    if old:
        t.thread.write(old, _itimerval(it))
    it.set(value, interval)
    return 0


@syscall("alarm")
def sys_alarm(k, t, seconds, *_):
    from .. import itimer
    it = itimer.itimers(k, t.tg)[0]
    rem = it.remaining()
    it.set((seconds & 0xFFFFFFFF) * 10**9, 0)
    return (rem + 500_000_000) // 10**9 if rem else 0
