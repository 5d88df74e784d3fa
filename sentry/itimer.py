"""Interval timers (setitimer, alarm): ITIMER_REAL counts wall time,
ITIMER_VIRTUAL and ITIMER_PROF the process's CPU time, which the sentry
reads from the guest's host process (both count all its CPU time: the
user/system split is not kept)."""
from __future__ import annotations

import time

from .signals import send_signal_to_group
from .syscalls.time import process_cpu_ns

ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF = 0, 1, 2
SIGNAL_OF = {ITIMER_REAL: 14, ITIMER_VIRTUAL: 26, ITIMER_PROF: 27}  # ALRM, VTALRM, PROF
MIN_POLL_NS = 1_000_000


class ITimer:
    def __init__(self, k, tg, which: int):
        self.k, self.tg, self.which = k, tg, which
        self.target = 0     # deadline: monotonic ns (REAL) or CPU ns
        self.interval = 0
        self.kt = None

    def _now(self) -> int:
        return time.monotonic_ns() if self.which == ITIMER_REAL else process_cpu_ns(self.tg)

    def remaining(self) -> int:
        return max(1, self.target - self._now()) if self.kt is not None else 0

    def set(self, value_ns: int, interval_ns: int) -> None:
        self.cancel()
        self.interval = interval_ns
        if value_ns:
            self.target = self._now() + value_ns
            self._arm(value_ns)

    def _arm(self, wait_ns: int) -> None:
        self.kt = self.k.add_timer(time.monotonic_ns() + max(wait_ns, 1), self._check)

    def _check(self) -> None:
        self.kt = None
        if self.tg.exiting:
            return
        left = self.target - self._now()
        if left > 0:  # CPU timers: not enough CPU time used yet
            self._arm(max(left, MIN_POLL_NS))
            return
        send_signal_to_group(self.k, self.tg, SIGNAL_OF[self.which], from_kernel=True)
        if self.interval and not self.tg.exiting:
            self.target += self.interval
            self._arm(max(self.target - self._now(), MIN_POLL_NS if self.which else 1))

    def cancel(self) -> None:
        if self.kt is not None:
            self.k.cancel_timer(self.kt)
            self.kt = None


def itimers(k, tg) -> list[ITimer]:
    if tg.itimers is None:
        tg.itimers = [ITimer(k, tg, w) for w in (ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF)]
    return tg.itimers


def cancel_all(tg) -> None:
    for it in tg.itimers or ():
        it.cancel()
