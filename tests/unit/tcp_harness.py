"""Test harness for TCP: a clock the test advances by hand, real Stacks
(loopback, or two stacks joined by an in-memory point-to-point link that
can drop, duplicate, delay and reorder packets), and a scripted raw peer
(RawPeer) for driving the state machine segment by segment."""
from __future__ import annotations

import heapq
import itertools
import random

from netstack.core import AF_INET, Clock
from netstack.stack import ETH_P_IP, ETH_P_IPV6, Stack
from netstack.tcp import TCPProtocol
from netstack.wire import ipv4 as wire4
from netstack.wire import ipv6 as wire6
from netstack.wire import tcp as wtcp

MS = 1_000_000
SEC = 1_000_000_000


class FakeClock(Clock):
    """Time stands still until advance(); due callbacks run in order."""

    class Handle:
        __slots__ = ("cb",)

        def __init__(self, cb):
            self.cb = cb

        def cancel(self):
            self.cb = None

    def __init__(self, start: int = 1_000 * SEC):
        self.now = start
        self._heap: list = []
        self._seq = itertools.count()

    def now_ns(self) -> int:
        return self.now

    def call_at(self, deadline_ns: int, callback):
        h = self.Handle(callback)
        heapq.heappush(self._heap, (deadline_ns, next(self._seq), h))
        return h

    def pending(self) -> int:
        return sum(1 for _, _, h in self._heap if h.cb is not None)

    def next_deadline(self):
        while self._heap and self._heap[0][2].cb is None:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def run_due(self) -> None:
        """Run what is due now (including what that schedules for now)."""
        heap = self._heap
        while heap and heap[0][0] <= self.now:
            _, _, h = heapq.heappop(heap)
            cb, h.cb = h.cb, None
            if cb is not None:
                cb()

    def advance(self, ns: int) -> None:
        """Move time on by ns, firing every timer on the way at its time."""
        end = self.now + ns
        while True:
            d = self.next_deadline()
            if d is None or d > end:
                break
            if d > self.now:
                self.now = d
            self.run_due()
        self.now = end
        self.run_due()

    def run_until(self, pred, limit: int = 600 * SEC, step: int | None = None) -> bool:
        """Advance timer by timer until pred() holds (or limit passes)."""
        end = self.now + limit
        self.run_due()
        while not pred():
            d = self.next_deadline()
            if d is None or d > end:
                return pred()
            self.now = max(self.now, d)
            self.run_due()
        return True


def loopback_stack(clock=None):
    """A real Stack with lo and TCP, on a fake clock."""
    clock = clock or FakeClock()
    stack = Stack.with_loopback(clock)
    tcp = stack.handlers.get(6) or TCPProtocol(stack)
    return clock, stack, tcp


class Impairment:
    """What the wire does to each packet: loss, duplication, delay with
    jitter (which reorders), driven by a seeded RNG, plus an optional
    `drop(seg) -> bool` for targeted drops of parsed TCP segments."""

    def __init__(self, loss=0.0, dup=0.0, reorder=0.0, delay=1 * MS,
                 jitter=0, seed=0, drop=None):
        self.loss, self.dup, self.reorder = loss, dup, reorder
        self.delay, self.jitter = delay, jitter
        self.rng = random.Random(seed)
        self.drop = drop


class WireLink:
    """One end of an in-memory point-to-point IP link (no Ethernet: the
    packet goes straight to the other end's NIC), delivered through the
    clock so no stack is re-entered."""
    loopback = False
    mac = None

    def __init__(self, clock, name: str, mtu: int = 1500):
        self.clock = clock
        self.name = name
        self.mtu = mtu
        self.nic = None
        self.peer = None
        self.imp = Impairment()
        self.sent: list = []         # (ethertype, packet) as sent, for inspection
        self.record = False

    def attach(self, nic) -> None:
        self.nic = nic

    def fileno(self):
        return None

    def poll_in(self, budget: int = 64) -> int:
        return 0

    def close(self) -> None:
        self.nic = None

    def send(self, ethertype: int, payload, next_hop) -> None:
        payload = bytes(payload)
        if self.record:
            self.sent.append((ethertype, payload))
        imp = self.imp
        if imp.drop is not None:
            seg = tcp_of(ethertype, payload)
            if seg is not None and imp.drop(seg):
                return
        rng = imp.rng
        if imp.loss and rng.random() < imp.loss:
            return
        copies = 2 if imp.dup and rng.random() < imp.dup else 1
        for _ in range(copies):
            delay = imp.delay
            if imp.jitter:
                delay += rng.randrange(imp.jitter)
            if imp.reorder and rng.random() < imp.reorder:
                delay += imp.delay * 3
            self.clock.call_at(self.clock.now_ns() + delay,
                               lambda p=payload, e=ethertype: self._arrive(e, p))

    def _arrive(self, ethertype, payload) -> None:
        peer = self.peer
        if peer is not None and peer.nic is not None:
            peer.nic.receive(ethertype, payload)


def tcp_of(ethertype: int, packet):
    """The TCP segment in an IP packet, or None."""
    try:
        if ethertype == ETH_P_IP:
            hdr, payload = wire4.parse(packet)
            if hdr.proto != 6 or hdr.mf or hdr.frag_offset:
                return None
            return wtcp.parse(payload, hdr.src, hdr.dst)
        if ethertype == ETH_P_IPV6:
            hdr, payload = wire6.parse(packet)
            if hdr.next_header != 6:
                return None
            return wtcp.parse(payload, hdr.src, hdr.dst)
    except Exception:
        return None
    return None


A4 = bytes((10, 0, 0, 1))
B4 = bytes((10, 0, 0, 2))
A6 = bytes.fromhex("fd000000000000000000000000000001")
B6 = bytes.fromhex("fd000000000000000000000000000002")


class Pair:
    """Two stacks, a (10.0.0.1, fd00::1) and b (10.0.0.2, fd00::2), joined
    by a WireLink pair; a.link / b.link impair what each end sends."""

    def __init__(self, mtu: int = 1500, clock=None):
        self.clock = clock or FakeClock()
        self.a = Stack.with_loopback(self.clock)
        self.b = Stack.with_loopback(self.clock)
        self.a_tcp = self.a.handlers.get(6) or TCPProtocol(self.a)
        self.b_tcp = self.b.handlers.get(6) or TCPProtocol(self.b)
        self.a_link = WireLink(self.clock, "wa", mtu)
        self.b_link = WireLink(self.clock, "wb", mtu)
        self.a_link.peer, self.b_link.peer = self.b_link, self.a_link
        na = self.a.add_nic(self.a_link, "eth0")
        nb = self.b.add_nic(self.b_link, "eth0")
        self.a.add_address(na, A4, 24)
        self.b.add_address(nb, B4, 24)
        self.a.add_address(na, A6, 64)
        self.b.add_address(nb, B6, 64)


def connect_pair(a_tcp, b_tcp, clock, b_addr, port=5000, family=AF_INET,
                 setup=None):
    """A listener on b, a connection from a: (client, server) endpoints,
    both established."""
    lst = b_tcp.endpoint(family)
    if setup:
        setup(lst)
    lst.bind((bytes(len(b_addr)), port))
    lst.listen(16)
    cli = a_tcp.endpoint(family)
    if setup:
        setup(cli)
    cli.connect((b_addr, port))
    assert clock.run_until(lambda: cli.state != 2 and bool(lst.accept_queue), 30 * SEC)
    assert cli.connect_result() == 0
    srv = lst.accept()
    return cli, srv, lst


def transfer(clock, src, dst, data: bytes, chunk: int = 65536, limit=600 * SEC,
             close=True) -> bytes:
    """Send data from src to dst (then close src if asked), reading on the
    way; return what dst received up to EOF (or what arrived in time)."""
    from netstack.core import WouldBlock
    got = bytearray()
    off = 0
    end = clock.now_ns() + limit
    closed = False
    while clock.now_ns() < end:
        progress = False
        while off < len(data):
            try:
                n = src.send(data[off:off + chunk])
            except WouldBlock:
                break
            off += n
            progress = True
        if off >= len(data) and close and not closed:
            src.shutdown(1)
            closed = True
        while True:
            try:
                d, _, _ = dst.recv(1 << 20)
            except WouldBlock:
                break
            if not d:
                return bytes(got)
            got += d
            progress = True
        if not close and len(got) >= len(data):
            return bytes(got)
        if not progress:
            d = clock.next_deadline()
            if d is None:
                break
            clock.now = max(clock.now, d)
        clock.run_due()
    return bytes(got)


class RawPeer:
    """A scripted TCP peer: registered as stack's TCP handler, it records
    every segment that arrives and sends what the test builds."""
    number = 6

    def __init__(self, stack, local: bytes = B4, remote: bytes = A4):
        self.stack = stack
        self.local, self.remote = local, remote
        self.got: list = []
        stack.register(self)

    def parse(self, data, src, dst):
        return wtcp.parse(data, src, dst)

    def deliver(self, info, seg) -> None:
        self.got.append(seg)

    def error(self, *a) -> None:
        pass

    def send(self, seg) -> None:
        self.stack.route(self.remote, self.local).send(6, seg)

    def take(self) -> list:
        out, self.got = self.got, []
        return out

    def last(self):
        return self.got[-1] if self.got else None


def seg(sport, dport, seq, ack, flags, window=65535, payload=b"", **kw):
    s = wtcp.Segment(sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, flags,
                     window, payload)
    for k, v in kw.items():
        setattr(s, k, v)
    return s
