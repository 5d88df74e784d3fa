"""The netstack's clock on the kernel's event loop: protocol timers
(retransmission, delayed ACK, TIME-WAIT, ARP) share the loop's timer heap
with parked tasks' deadlines, so they fire between guest syscalls."""
from __future__ import annotations

import time

from netstack.core import Clock


class _Handle:
    __slots__ = ("kernel", "timer")

    def __init__(self, kernel, timer):
        self.kernel, self.timer = kernel, timer

    def cancel(self) -> None:
        if self.timer is not None:
            self.kernel.cancel_timer(self.timer)
            self.timer = None


class KernelClock(Clock):
    def __init__(self, kernel):
        self.kernel = kernel

    def now_ns(self) -> int:
        return time.monotonic_ns()

    def call_at(self, deadline_ns: int, callback) -> _Handle:
        return _Handle(self.kernel, self.kernel.add_timer(deadline_ns, callback))
