"""Clocks and sleeping. Time is the host's (CLOCK_REALTIME is not
virtualised); sleeps park the task on a sentry timer."""
from __future__ import annotations

import errno
import os
import struct
import time

from vfs.inode import fserr

from ..waiter import Block
from .table import syscall
from .util import read_timespec_ns, s32

TIMESPEC = struct.Struct("<qq")
CLOCKS = {0: time.CLOCK_REALTIME, 1: time.CLOCK_MONOTONIC, 2: time.CLOCK_PROCESS_CPUTIME_ID,
          3: time.CLOCK_THREAD_CPUTIME_ID, 4: time.CLOCK_MONOTONIC_RAW, 5: 5, 6: 6,
          7: time.CLOCK_BOOTTIME, 8: 8, 9: 9, 11: time.CLOCK_TAI}
TIMER_ABSTIME = 1


def _clock_ns(k, t, clock: int) -> int:
    clock = s32(clock)
    if clock in (2, 3):  # the guest's own CPU time is not tracked yet: time since start
        return time.monotonic_ns() - t.tg.start_ns
    if clock < 0 or clock not in CLOCKS:
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
        res = 4_000_000 if s32(clock) in (5, 6) else 1
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
    """Park until the monotonic deadline; the timer ends the call with 0."""
    if time.monotonic_ns() >= deadline_ns:
        return 0
    raise Block(deadline_ns=deadline_ns, on_timeout=0)


@syscall("nanosleep")
def sys_nanosleep(k, t, req, rem, *_):
    return _sleep(k, t, 1, 0, req, rem)


@syscall("clock_nanosleep")
def sys_clock_nanosleep(k, t, clock, flags, req, rem, *_):
    return _sleep(k, t, clock, flags, req, rem)


def _sleep(k, t, clock, flags, req, rem):
    # A parked sleep re-runs this handler only on timeout (on_timeout=0),
    # so computing the deadline here happens once per call.
    dur = read_timespec_ns(t, req)
    if flags & TIMER_ABSTIME:
        now = _clock_ns(k, t, clock)
        dur = max(0, dur - now)
    return _sleep_until(k, t, time.monotonic_ns() + dur, rem)


@syscall("times")
def sys_times(k, t, buf, *_):
    ticks = (time.monotonic_ns() - k.boot_ns) // 10_000_000
    if buf:
        cpu = os.times()
        t.thread.write(buf, struct.pack("<qqqq", int(cpu.user * 100), int(cpu.system * 100), 0, 0))
    return ticks


@syscall("getitimer")
def sys_getitimer(k, t, which, value, *_):
    if which not in (0, 1, 2):
        raise fserr(errno.EINVAL)
    t.thread.write(value, bytes(32))
    return 0
