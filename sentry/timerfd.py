"""timerfd: a timer read as a file of expiration counts.

Expirations are counted from the clock whenever the fd is looked at
(read, poll, gettime), so the count never lags the event loop. The
kernel timer only has to wake waiters: it is armed while nobody has been
told of an expiry yet, and a periodic timer with unread ticks costs
nothing until it is read, as in Linux.
"""
from __future__ import annotations

import errno
import itertools
import struct
import time

from vfs.file import WouldBlock
from vfs.inode import FileDescriptionImpl, Stat, fserr

from .posixtimer import MAX_WAIT_NS, wall_clock
from .waiter import WaitQueue

POLLIN = 1
U64 = struct.Struct("<Q")
_ino = itertools.count(1)


class TimerFD(FileDescriptionImpl):
    seekable = False

    def __init__(self, k, clockid: int):
        self.k = k
        self.clock = wall_clock(clockid)
        self.armed = False
        self.expiry = 0      # on the fd's clock
        self.interval = 0
        self.ticks = 0       # expirations not yet read
        self.kt = None
        self.queue = WaitQueue()
        self.ino = next(_ino)

    def link_name(self) -> bytes:
        return b"anon_inode:[timerfd]"

    def stat(self) -> Stat:
        return Stat(mode=0o600, ino=self.ino)  # an anonymous inode: no file type

    # --- timer ---
    def gettime(self) -> tuple[int, int]:
        now = self.clock.now()
        self._update(now)
        return (self.expiry - now if self.armed else 0), self.interval

    def settime(self, value: int, interval: int, absolute: bool) -> tuple[int, int]:
        old = self.gettime()
        self._cancel()
        self.ticks, self.armed, self.interval = 0, False, interval
        if value:
            now = self.clock.now()
            self.expiry = value if absolute else now + value
            self.armed = True
            self._update(now)  # already due: readable when the call returns
            self._rearm(now)
        return old

    def _update(self, now: int) -> None:
        """Count the expirations up to now."""
        if not self.armed or now < self.expiry:
            return
        if self.interval:
            periods = (now - self.expiry) // self.interval + 1
            self.ticks += periods
            self.expiry += periods * self.interval
        else:
            self.ticks += 1
            self.armed = False
        self.queue.notify()

    def _fire(self) -> None:
        self.kt = None
        now = self.clock.now()
        self._update(now)
        self._rearm(now)

    def _rearm(self, now: int) -> None:
        """Wake at the next expiry, unless readers already have ticks."""
        if self.kt is None and self.armed and not self.ticks:
            delay = min(self.expiry - now, MAX_WAIT_NS)
            self.kt = self.k.add_timer(time.monotonic_ns() + delay, self._fire)

    def _cancel(self) -> None:
        if self.kt is not None:
            self.k.cancel_timer(self.kt)
            self.kt = None

    # --- file ---
    def pread(self, size, offset):
        if size < 8:
            raise fserr(errno.EINVAL)
        now = self.clock.now()
        self._update(now)
        if not self.ticks:
            raise WouldBlock(self.queue, POLLIN)
        ticks, self.ticks = self.ticks, 0
        self._rearm(now)
        return U64.pack(ticks)

    def readiness(self) -> int:
        self._update(self.clock.now())
        return POLLIN if self.ticks else 0

    def wait_queues(self):
        return (self.queue,)

    def release(self) -> None:
        self._cancel()
