"""POSIX per-process timers (timer_create and friends).

A timer counts on a host clock (REALTIME, MONOTONIC, BOOTTIME, TAI) or on
a guest CPU clock, which the sentry polls as sentry.itimer does. Expiry
queues a signal carrying SI_TIMER siginfo. As in Linux, a periodic timer
whose signal is still pending does not queue another: the missed periods
become the overrun, counted when the signal is taken (dequeue), and the
next period is armed then. Timers belong to the thread group and go away
at exec and exit.
"""
from __future__ import annotations

import errno
import struct
import time

from vfs.inode import fserr

from . import signals
from .syscalls.time import process_cpu_ns, thread_cpu_ns

CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_PROCESS_CPUTIME_ID, CLOCK_THREAD_CPUTIME_ID = 0, 1, 2, 3
CLOCK_REALTIME_ALARM, CLOCK_BOOTTIME_ALARM, CLOCK_BOOTTIME, CLOCK_TAI = 8, 9, 7, 11
WALL_CLOCKS = {CLOCK_REALTIME: time.CLOCK_REALTIME, CLOCK_MONOTONIC: time.CLOCK_MONOTONIC,
               CLOCK_BOOTTIME: time.CLOCK_BOOTTIME, CLOCK_TAI: time.CLOCK_TAI}
ALARM_CLOCKS = (CLOCK_REALTIME_ALARM, CLOCK_BOOTTIME_ALARM)
NO_TIMERS = (4, 5, 6)  # MONOTONIC_RAW and the coarse clocks: readable, no timers
SIGEV_SIGNAL, SIGEV_NONE, SIGEV_THREAD, SIGEV_THREAD_ID = 0, 1, 2, 4
SIGALRM, SI_TIMER = 14, -2
INT_MAX = (1 << 31) - 1
MAX_TIMERS = 1 << 16       # per process (Linux bounds them by RLIMIT_SIGPENDING)
MIN_POLL_NS = 1_000_000    # CPU clocks are polled at most this often
PENDING_POLL_NS = 20_000_000  # re-check of a periodic timer whose signal waits
MAX_WAIT_NS = 86_400 * 10**9  # far deadlines are re-checked daily (the loop's poll timeout is bounded)
SIGEVENT = struct.Struct("<Qiii")  # sigev_value, sigev_signo, sigev_notify, sigev_notify_thread_id


class Clock:
    """What a timer counts: now() in ns, and for CPU clocks whether the
    process or thread measured still exists."""
    __slots__ = ("now", "alive")

    def __init__(self, now, alive=None):
        self.now = now
        self.alive = alive  # None: a host clock, never polled

    @property
    def cpu(self) -> bool:
        return self.alive is not None


def wall_clock(clockid: int) -> Clock:
    host = WALL_CLOCKS[clockid]
    return Clock(lambda: time.clock_gettime_ns(host))


def check_clock(clockid: int) -> None:
    """What Linux refuses before it allocates a timer id."""
    if clockid < 0:
        if clockid & 7 == 3:  # a posix-clock fd (CLOCKFD): no timers on those
            raise fserr(errno.EOPNOTSUPP)
        return
    if clockid in NO_TIMERS:
        raise fserr(errno.EOPNOTSUPP)
    if clockid not in WALL_CLOCKS and clockid not in ALARM_CLOCKS and clockid not in (2, 3):
        raise fserr(errno.EINVAL)


def timer_clock(k, t, clockid: int) -> Clock:
    """The clock of a new timer (after check_clock)."""
    if clockid in WALL_CLOCKS:
        return wall_clock(clockid)
    if clockid in ALARM_CLOCKS:
        raise fserr(errno.EPERM)  # needs CAP_WAKE_ALARM, which no guest has
    if clockid == CLOCK_PROCESS_CPUTIME_ID:
        return _process_clock(t.tg)
    if clockid == CLOCK_THREAD_CPUTIME_ID:
        return _thread_clock(t)
    # a dynamic CPU clock id: ~pid << 3 | type, bit 2 for a thread
    if clockid & 3 == 3:
        raise fserr(errno.EINVAL)
    pid = ~(clockid >> 3)
    if clockid & 4:
        task = t if pid == 0 else k.pidns.tasks.get(pid)
        if task is None or not task.alive or task.tg is not t.tg:
            raise fserr(errno.EINVAL)  # thread clocks only of one's own threads
        return _thread_clock(task)
    tg = t.tg if pid == 0 else k.pidns.groups.get(pid)
    if tg is None or tg.state != "R":
        raise fserr(errno.EINVAL)
    return _process_clock(tg)


def _process_clock(tg) -> Clock:
    return Clock(lambda: process_cpu_ns(tg), lambda: not tg.exiting and bool(tg.tasks))


def _thread_clock(task) -> Clock:
    return Clock(lambda: thread_cpu_ns(task), lambda: task.alive)


class QueuedSignal:
    """Stands in tg.signal_info while a timer's signal is pending;
    sentry.signals calls taken() when the signal is dequeued, so the
    siginfo carries the overrun as of delivery."""
    __slots__ = ("timer", "expiry")

    def __init__(self, timer, expiry):
        self.timer, self.expiry = timer, expiry

    def taken(self) -> tuple:
        return self.timer.taken(self)


class PosixTimer:
    def __init__(self, k, tg, timer_id, clock: Clock, notify, signo, value, target):
        self.k, self.tg, self.id, self.clock = k, tg, timer_id, clock
        self.notify, self.signo, self.value = notify, signo, value
        self.target = target    # the Task for SIGEV_THREAD_ID, else None (the process)
        self.armed = False
        self.expiry = 0         # on the timer's clock
        self.interval = 0
        self.overrun_last = 0   # what timer_getoverrun reports
        self.queued: QueuedSignal | None = None
        self.kt = None          # the kernel timer that wakes us
        self.deleted = False

    # --- the guest's view ---
    def get(self) -> tuple[int, int]:
        """(time to the next expiry, interval) in ns."""
        if not self.armed:
            return 0, 0
        now = self.clock.now()
        left = self.expiry - now
        if left <= 0:
            if self.interval:  # periods passed while the signal waited
                left = self.interval - (now - self.expiry) % self.interval
            else:  # due but not fired yet: shown as armed, unless nothing fires
                left = 0 if self.notify == SIGEV_NONE else 1
        return left, self.interval

    def set(self, value: int, interval: int, absolute: bool) -> tuple[int, int]:
        """Arm (value != 0) or disarm; returns the previous get()."""
        old = self.get()
        self._disarm()
        self.overrun_last = 0
        if not value:
            return old
        now = self.clock.now()
        self.expiry = value if absolute else now + value
        self.interval = interval
        self.armed = True
        if self.notify != SIGEV_NONE:
            if self.expiry <= now:
                self._fire()  # already due: pending when the call returns
            else:
                self._wake_at(now)
        return old

    def delete(self) -> None:
        self._disarm()
        self.deleted = True

    # --- expiry ---
    def _fire(self) -> None:
        self.kt = None
        if self.deleted or not self.armed or self.tg.exiting:
            return
        now = self.clock.now()
        if now < self.expiry:  # a CPU clock short of its target, or a far deadline
            self._wake_at(now)
            return
        q = self.queued
        if q is not None:
            if self._pending(q):  # not taken yet: its overrun grows until it is
                self._wake_in(max(self.interval, PENDING_POLL_NS))
                return
            self.queued = None  # discarded without delivery: start a new one
            self.expiry += (now - self.expiry) // self.interval * self.interval
        q = QueuedSignal(self, self.expiry)
        if self._send(q):
            self.queued = q
            if self.interval:  # the next period is armed when the signal is taken
                self._wake_in(max(self.interval, PENDING_POLL_NS))
            else:
                self.armed = False
            return
        if self.deleted or self.tg.exiting:
            return
        if self.interval:  # not queued (ignored): periods go on
            self.expiry += ((now - self.expiry) // self.interval + 1) * self.interval
            if self.target is None or self.target.alive:  # a gone thread gets nothing more
                self._wake_at(now)
        else:
            self.armed = False

    def taken(self, q: QueuedSignal) -> tuple:
        """The signal was dequeued: fix its overrun, arm the next period."""
        overrun = 0
        if q is self.queued:
            self.queued = None
            if self.interval and self.armed:
                now = self.clock.now()
                overrun = max(0, (now - q.expiry) // self.interval)
                self.expiry = q.expiry + (overrun + 1) * self.interval
                self._cancel_wake()
                self._wake_at(now)
        overrun = min(overrun, INT_MAX)
        self.overrun_last = overrun
        return (self.signo, 0, SI_TIMER, self.id | (overrun << 32), self.value)

    def _send(self, q: QueuedSignal) -> bool:
        """Queue the signal; True if it is pending now (not ignored)."""
        k, tg, sig = self.k, self.tg, self.signo
        if self.target is not None:
            if not self.target.alive:
                return False
            signals.send_signal_to_task(k, self.target, sig, info=q)
        else:
            signals.send_signal_to_group(k, tg, sig, info=q)
        return self._pending(q)

    def _pending(self, q: QueuedSignal) -> bool:
        holder = self.target if self.target is not None else self.tg
        return bool(holder.pending_signals & signals.bit(self.signo)) and \
            self.tg.signal_info.get(self.signo) is q

    def _disarm(self) -> None:
        """Stop the timer and withdraw its pending signal (Linux drops the
        signal of a timer that is re-armed or deleted)."""
        self._cancel_wake()
        self.armed = False
        self.interval = 0
        q, self.queued = self.queued, None
        if q is not None and self._pending(q):
            holder = self.target if self.target is not None else self.tg
            holder.pending_signals &= ~signals.bit(self.signo)
            del self.tg.signal_info[self.signo]

    # --- kernel timers ---
    def _wake_at(self, now: int) -> None:
        """Wake at the expiry: exactly for a host clock; for a CPU clock no
        sooner than that much CPU time can have been used."""
        left = self.expiry - now
        if self.clock.cpu:
            if not self.clock.alive():
                return  # what it measured is gone: it never expires
            left = max(left, MIN_POLL_NS)
        self._wake_in(left)

    def _wake_in(self, delay_ns: int) -> None:
        self._cancel_wake()
        self.kt = self.k.add_timer(time.monotonic_ns() + min(max(delay_ns, 0), MAX_WAIT_NS), self._fire)

    def _cancel_wake(self) -> None:
        if self.kt is not None:
            self.k.cancel_timer(self.kt)
            self.kt = None


class TimerTable:
    """A process's timers by id; ids count up from 0 as Linux hands them
    out (a failed timer_create may still use one up)."""

    def __init__(self):
        self.timers: dict[int, PosixTimer] = {}
        self.next_id = 0

    def reserve_id(self) -> int:
        while True:
            tid, self.next_id = self.next_id, (self.next_id + 1) & INT_MAX
            if tid not in self.timers:
                return tid


def _table(tg) -> TimerTable:
    if tg.posix_timers is None:
        tg.posix_timers = TimerTable()
    return tg.posix_timers


def create(k, t, clockid: int, event: bytes | None) -> PosixTimer:
    """timer_create, in Linux's order of checks: the clock, then an id is
    used up, then the notification and the clock's own checks."""
    check_clock(clockid)
    table = _table(t.tg)
    if len(table.timers) >= MAX_TIMERS:
        raise fserr(errno.EAGAIN)
    timer_id = table.reserve_id()
    target = None
    if event is None:
        notify, signo, value = SIGEV_SIGNAL, SIGALRM, timer_id
    else:
        value, signo, notify, tid = SIGEVENT.unpack_from(event)
        if notify == SIGEV_THREAD_ID:
            target = k.pidns.tasks.get(tid)
            if target is None or not target.alive or target.tg is not t.tg:
                raise fserr(errno.EINVAL)
        elif notify not in (SIGEV_SIGNAL, SIGEV_THREAD, SIGEV_NONE):
            raise fserr(errno.EINVAL)
        if notify != SIGEV_NONE and not 1 <= signo <= 64:
            raise fserr(errno.EINVAL)
    clock = timer_clock(k, t, clockid)
    timer = PosixTimer(k, t.tg, timer_id, clock, notify, signo, value, target)
    table.timers[timer_id] = timer
    return timer


def lookup(tg, timer_id: int) -> PosixTimer:
    timer = tg.posix_timers.timers.get(timer_id) if tg.posix_timers is not None else None
    if timer is None:
        raise fserr(errno.EINVAL)
    return timer


def delete(tg, timer_id: int) -> None:
    lookup(tg, timer_id).delete()
    del tg.posix_timers.timers[timer_id]


def delete_all(tg) -> None:
    """At exec and exit. The id counter lives on, as Linux's does."""
    table = tg.posix_timers
    if table is not None:
        for timer in table.timers.values():
            timer.delete()
        table.timers.clear()
