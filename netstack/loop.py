"""A small event loop for running a stack on its own (tests, tools): the
Clock the stack's timers use, plus readers on host fds (a tap link's)
polled with select.poll. Single-threaded, like the sentry's loop: every
callback runs on the thread calling run_*.
"""
from __future__ import annotations

import heapq
import itertools
import select
import time

from .core import Clock

_READ = select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP


class _Handle:
    __slots__ = ("callback", "cancelled")

    def __init__(self, callback):
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True
        self.callback = None


class EventLoop(Clock):
    def __init__(self):
        self._timers: list = []         # (deadline, seq, handle)
        self._seq = itertools.count()
        self._readers: dict[int, object] = {}
        self._poll = select.poll()
        self._stopped = False

    # --- Clock --------------------------------------------------------------

    def now_ns(self) -> int:
        return time.monotonic_ns()

    def call_at(self, deadline_ns: int, callback) -> _Handle:
        h = _Handle(callback)
        heapq.heappush(self._timers, (deadline_ns, next(self._seq), h))
        return h

    def call_later(self, delay_ns: int, callback) -> _Handle:
        return self.call_at(self.now_ns() + delay_ns, callback)

    # --- fds ----------------------------------------------------------------

    def add_reader(self, fd: int, callback) -> None:
        """callback() whenever fd is readable (or in error)."""
        if fd in self._readers:
            self._poll.modify(fd, _READ)
        else:
            self._poll.register(fd, _READ)
        self._readers[fd] = callback

    def remove_reader(self, fd: int) -> None:
        if self._readers.pop(fd, None) is not None:
            self._poll.unregister(fd)

    def add_link(self, link) -> None:
        """Poll a link's fd (if it has one) and dispatch its input."""
        fd = link.fileno()
        if fd is not None:
            self.add_reader(fd, link.poll_in)

    # --- running ------------------------------------------------------------

    def _run_timers(self) -> None:
        timers = self._timers
        now = self.now_ns()
        while timers and timers[0][0] <= now:
            h = heapq.heappop(timers)[2]
            if not h.cancelled:
                cb, h.callback = h.callback, None
                h.cancelled = True
                cb()

    def _next_timeout_ms(self, limit_ns: int | None) -> int:
        timers = self._timers
        while timers and timers[0][2].cancelled:
            heapq.heappop(timers)
        wait = None
        if timers:
            wait = max(0, timers[0][0] - self.now_ns())
        if limit_ns is not None:
            wait = limit_ns if wait is None else min(wait, limit_ns)
        if wait is None:
            return -1
        return (wait + 999_999) // 1_000_000

    def run_once(self, timeout_ns: int | None = None) -> None:
        """Wait for an fd or the next timer (at most timeout_ns), then run
        what is due."""
        ms = self._next_timeout_ms(timeout_ns)
        if self._readers or ms != 0:
            if not self._readers and ms < 0:
                raise RuntimeError("event loop has nothing to wait for")
            for fd, _ in self._poll.poll(ms):
                cb = self._readers.get(fd)
                if cb is not None:
                    cb()
        self._run_timers()

    def run_until(self, predicate, timeout: float | None = None) -> bool:
        """Run until predicate() is true (checked before waiting and after
        every round) or timeout seconds pass; whether it became true."""
        deadline = None if timeout is None else self.now_ns() + int(timeout * 1e9)
        while not predicate():
            if deadline is not None:
                left = deadline - self.now_ns()
                if left <= 0:
                    return False
            else:
                left = None
            self.run_once(left)
        return True

    def run_for(self, seconds: float) -> None:
        self.run_until(lambda: False, seconds)

    def run_forever(self) -> None:
        self._stopped = False
        while not self._stopped:
            self.run_once()

    def stop(self) -> None:
        self._stopped = True
