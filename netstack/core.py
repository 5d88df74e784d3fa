"""What every layer of the netstack shares: poll bits, the wait queue and
WouldBlock that endpoints raise, the error for a malformed packet, the
clock interface and a lazily re-armed timer.

The netstack never imports the sentry: the sentry hands it a clock and
parks tasks on the queues endpoints expose (same add_waiter/remove_waiter
interface as sentry.waiter.WaitQueue, which is why the class is repeated
here rather than imported).
"""
from __future__ import annotations

import dataclasses

AF_INET, AF_INET6 = 2, 10
IPPROTO_IP, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP = 0, 1, 6, 17
IPPROTO_IPV6, IPPROTO_ICMPV6, IPPROTO_RAW = 41, 58, 255
POLLIN, POLLPRI, POLLOUT, POLLERR, POLLHUP, POLLRDHUP = 0x1, 0x2, 0x4, 0x8, 0x10, 0x2000

ANY4 = bytes(4)
ANY6 = bytes(16)
LOOPBACK4 = bytes((127, 0, 0, 1))
LOOPBACK6 = bytes(15) + b"\x01"
V4MAPPED = bytes(10) + b"\xff\xff"


def to_v6(addr: bytes) -> bytes:
    """An address in 16-byte form: IPv4 as ::ffff:a.b.c.d."""
    return V4MAPPED + addr if len(addr) == 4 else addr


def unmap(addr: bytes) -> bytes:
    """An IPv4-mapped IPv6 address as its IPv4 address; others unchanged."""
    return addr[12:] if len(addr) == 16 and addr[:12] == V4MAPPED else addr


class WaitQueue:
    """Callbacks waiting for a change (data, room, a connection, an error)."""
    __slots__ = ("_waiters",)

    def __init__(self):
        self._waiters: list = []

    def add_waiter(self, callback) -> None:
        self._waiters.append(callback)

    def remove_waiter(self, callback) -> None:
        try:
            self._waiters.remove(callback)
        except ValueError:
            pass

    def notify(self) -> None:
        if self._waiters:
            waiters, self._waiters = self._waiters, []
            for cb in waiters:
                cb()

    def __bool__(self) -> bool:
        return bool(self._waiters)


class WouldBlock(Exception):
    """An endpoint operation that must wait: retry when `queue` notifies.
    `events` is the poll bit waited for (POLLIN or POLLOUT)."""

    def __init__(self, queue: WaitQueue, events: int = 0):
        super().__init__()
        self.queue = queue
        self.events = events


class Malformed(ValueError):
    """A frame, packet or segment to drop; str(e) is the counter's name
    (e.g. "ipv4.bad_checksum")."""


class Clock:
    """The time source and timer service a stack runs on. The sentry's
    implementation schedules on its event loop; netstack.loop has one for
    standalone use. call_at returns a handle with cancel()."""

    def now_ns(self) -> int:
        raise NotImplementedError

    def call_at(self, deadline_ns: int, callback):
        raise NotImplementedError


class Timer:
    """One logical timer (retransmission, delayed ACK, TIME_WAIT, ARP
    expiry) over a clock. Re-arming to a later deadline keeps the clock's
    handle and re-checks when it fires, so a timer pushed back on every
    segment costs no clock operation."""
    __slots__ = ("clock", "callback", "deadline", "_handle", "_handle_at")

    def __init__(self, clock: Clock, callback):
        self.clock = clock
        self.callback = callback
        self.deadline: int | None = None
        self._handle = None
        self._handle_at = 0

    def arm(self, deadline_ns: int) -> None:
        self.deadline = deadline_ns
        if self._handle is None or deadline_ns < self._handle_at:
            if self._handle is not None:
                self._handle.cancel()
            self._handle_at = deadline_ns
            self._handle = self.clock.call_at(deadline_ns, self._fire)

    def arm_in(self, delay_ns: int) -> None:
        self.arm(self.clock.now_ns() + delay_ns)

    def disarm(self) -> None:
        self.deadline = None  # a pending handle fires and finds nothing to do

    def cancel(self) -> None:
        """disarm and drop the clock's handle too (the owner goes away)."""
        self.deadline = None
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    @property
    def armed(self) -> bool:
        return self.deadline is not None

    def _fire(self) -> None:
        self._handle = None
        if self.deadline is None:
            return
        now = self.clock.now_ns()
        if now < self.deadline:
            self._handle_at = self.deadline
            self._handle = self.clock.call_at(self.deadline, self._fire)
            return
        self.deadline = None
        self.callback()


@dataclasses.dataclass(slots=True)
class PacketInfo:
    """The network layer's facts about a received transport packet."""
    src: bytes          # 4 or 16 bytes
    dst: bytes
    proto: int
    ttl: int = 64       # hop limit for IPv6
    tos: int = 0        # traffic class for IPv6
    nic: object = None  # the interface it arrived on
