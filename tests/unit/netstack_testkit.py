"""What the netstack's stack-level unit tests share: a clock that moves
only when told, and an IP-level link joining two stacks in memory (no
framing, so packets cross as the stack encodes them: IP header, checksum,
fragments), which records what it carried and can drop packets."""
from __future__ import annotations

import heapq
import itertools
import socket

import pytest

from netstack.core import Clock
from netstack.stack import Stack

SEC = 1_000_000_000
A4 = bytes((10, 0, 0, 1))
B4 = bytes((10, 0, 0, 2))
A6 = bytes.fromhex("fd000000000000000000000000000001")
B6 = bytes.fromhex("fd000000000000000000000000000002")


class ManualClock(Clock):
    """Time moves only in advance(); due callbacks run in deadline order."""

    def __init__(self):
        self.now = 1_000 * SEC
        self._heap = []
        self._seq = itertools.count()

    def now_ns(self):
        return self.now

    def call_at(self, deadline, callback):
        entry = [deadline, next(self._seq), callback]
        heapq.heappush(self._heap, entry)

        class Handle:
            def cancel(self_):
                entry[2] = None
        return Handle()

    def advance(self, ns):
        end = self.now + ns
        while self._heap and self._heap[0][0] <= end:
            deadline, _, cb = heapq.heappop(self._heap)
            self.now = max(self.now, deadline)
            if cb is not None:
                cb()
        self.now = end


class PairLink:
    """One end of an in-memory point-to-point IP link. `sent` records
    (ethertype, packet, next_hop) of everything sent; `drop(ethertype,
    packet) -> bool` may discard a packet in flight."""
    loopback = False
    mac = None

    def __init__(self, name="eth0", mtu=1500):
        self.name = name
        self.mtu = mtu
        self.nic = None
        self.peer = None
        self.sent = []
        self.drop = None

    def attach(self, nic):
        self.nic = nic

    def send(self, ethertype, payload, next_hop):
        assert len(payload) <= self.mtu, "the stack sent more than the MTU"
        payload = bytes(payload)
        self.sent.append((ethertype, payload, next_hop))
        if self.drop is not None and self.drop(ethertype, payload):
            return
        if self.peer is not None and self.peer.nic is not None:
            self.peer.nic.receive(ethertype, payload)

    def fileno(self):
        return None

    def poll_in(self, budget=64):
        return 0

    def close(self):
        self.peer = None


def joined_stacks(mtu=1500, clock=None):
    """Stacks a (10.0.0.1/24, fd00::1/64) and b (10.0.0.2/24, fd00::2/64),
    each with lo, ICMP and UDP, joined by a PairLink: (a, b, link_a, link_b)."""
    clock = clock or ManualClock()
    a, b = Stack.with_loopback(clock), Stack.with_loopback(clock)
    la, lb = PairLink(mtu=mtu), PairLink(mtu=mtu)
    la.peer, lb.peer = lb, la
    na, nb = a.add_nic(la), b.add_nic(lb)
    a.add_address(na, A4, 24)
    b.add_address(nb, B4, 24)
    a.add_address(na, A6, 64)
    b.add_address(nb, B6, 64)
    return a, b, la, lb


def raw_socket(family, proto):
    """A raw socket on the host kernel (tests that check our packets
    against it), with a 2 s timeout; skips the test without CAP_NET_RAW."""
    try:
        s = socket.socket(family, socket.SOCK_RAW, proto)
    except PermissionError:
        pytest.skip("raw sockets need CAP_NET_RAW")
    s.settimeout(2)
    return s
