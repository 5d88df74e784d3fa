"""Neighbour resolution: the neighbour cache every resolving link keeps
(one per protocol: ARP for IPv4, NDP for IPv6) and the ARP speaker.

A neighbour moves through the states of RFC 4861 7.3.2 (which Linux's ARP
follows too):

  INCOMPLETE  a request is out (broadcast every RETRANS, MAX_PROBES times);
              packets for it wait in a bounded queue (the oldest is dropped)
  REACHABLE   confirmed by a reply to our request, for REACHABLE_TIME
              (randomised 0.5-1.5x, as Linux does)
  STALE       known but unconfirmed (learned from a request to us, or aged
              out of REACHABLE); used as is; forgotten after STALE_GC unused
  DELAY       a STALE entry was used: wait DELAY for a confirmation...
  PROBE       ...then ask it by unicast, MAX_PROBES times, then forget it

When an INCOMPLETE resolution fails, its queued packets are handed to the
`failed` callback (the link reports host unreachable) and the entry goes.
The cache holds at most `max_entries`: a new neighbour evicts the least
recently used resolved one, or is refused when all are being resolved.
"""
from __future__ import annotations

import collections
import random

from .core import Malformed, Timer
from .wire import arp as wire_arp
from .wire import ethernet

INCOMPLETE, REACHABLE, STALE, DELAY, PROBE = "incomplete", "reachable", "stale", "delay", "probe"

SEC = 1_000_000_000
REACHABLE_TIME = 30 * SEC      # net.ipv4.neigh.default.base_reachable_time_ms
RETRANS = 1 * SEC              # retrans_time_ms
DELAY_TIME = 5 * SEC           # delay_first_probe_time
STALE_GC = 60 * SEC            # gc_stale_time
MAX_PROBES = 3                 # mcast_solicit / ucast_solicit
MAX_ENTRIES = 1024             # gc_thresh3
QUEUE_LEN = 16                 # packets waiting per unresolved neighbour


class Neighbour:
    __slots__ = ("addr", "mac", "state", "queue", "probes", "used", "timer")

    def __init__(self, addr: bytes, mac, state: str, now: int):
        self.addr = addr
        self.mac = mac
        self.state = state
        self.queue: collections.deque = collections.deque()
        self.probes = 0
        self.used = now
        self.timer: Timer | None = None

    def __repr__(self):
        mac = self.mac.hex(":") if self.mac else None
        return f"<Neighbour {self.addr.hex()} {mac} {self.state}>"


class NeighbourCache:
    """Address → link address, with reachability states and the packets
    waiting for resolution. The owner supplies:
      solicit(addr, mac)       send a request: broadcast/multicast when mac
                               is None, a unicast probe to mac otherwise
      transmit(mac, packet)    send a packet that waited, now resolved
      failed(addr, packets)    resolution failed; the packets are dropped
    Counters go into `stats` as "<name>.<event>"."""

    def __init__(self, clock, solicit, transmit, failed=None, stats=None, *, name: str = "arp",
                 max_entries: int = MAX_ENTRIES, queue_len: int = QUEUE_LEN,
                 reachable_time: int = REACHABLE_TIME, retrans: int = RETRANS,
                 delay: int = DELAY_TIME, stale_gc: int = STALE_GC, max_probes: int = MAX_PROBES):
        self.clock = clock
        self.solicit = solicit
        self.transmit = transmit
        self.failed = failed
        self.stats = stats if stats is not None else collections.Counter()
        self.name = name
        self.max_entries = max_entries
        self.queue_len = queue_len
        self.reachable_time = reachable_time
        self.retrans = retrans
        self.delay = delay
        self.stale_gc = stale_gc
        self.max_probes = max_probes
        self.entries: dict[bytes, Neighbour] = {}

    def _count(self, event: str) -> None:
        self.stats[f"{self.name}.{event}"] += 1

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, addr: bytes) -> Neighbour | None:
        return self.entries.get(addr)

    # --- sending ---------------------------------------------------------

    def resolve(self, addr: bytes, packet) -> bytes | None:
        """The link address to send `packet` to now, or None: then the
        packet waits for resolution (or was dropped, and counted)."""
        n = self.entries.get(addr)
        now = self.clock.now_ns()
        if n is None:
            n = self._add(addr, None, INCOMPLETE, now)
            if n is None:
                self._count("table_full")
                return None
            self._enqueue(n, packet)
            n.probes = 1
            self._arm(n, self.retrans)
            self.solicit(addr, None)
            return None
        n.used = now
        state = n.state
        if state is REACHABLE or state is DELAY or state is PROBE:
            return n.mac
        if state is STALE:
            n.state = DELAY
            self._arm(n, self.delay)
            return n.mac
        self._enqueue(n, packet)       # INCOMPLETE
        return None

    def _enqueue(self, n: Neighbour, packet) -> None:
        if len(n.queue) >= self.queue_len:
            n.queue.popleft()
            self._count("queue_overflow")
        n.queue.append(packet)

    # --- what the wire tells ---------------------------------------------

    def confirm(self, addr: bytes, mac: bytes) -> None:
        """A reply to our request (solicited): the neighbour is reachable.
        Unsolicited replies for neighbours we do not know are ignored."""
        n = self.entries.get(addr)
        if n is None:
            self._count("unsolicited_reply")
            return
        n.mac = mac
        self._reachable(n)

    def learn(self, addr: bytes, mac: bytes) -> None:
        """The neighbour asked for one of our addresses: we will answer it,
        so remember it (STALE: it exists, its reachability is unproven)."""
        n = self.entries.get(addr)
        if n is None:
            n = self._add(addr, mac, STALE, self.clock.now_ns())
            if n is None:
                self._count("table_full")
                return
            self._arm(n, self.stale_gc)
            return
        self.update(addr, mac)

    def update(self, addr: bytes, mac: bytes) -> None:
        """An unconfirmed claim (a request, a gratuitous ARP): refresh an
        entry we already have; a changed address makes it STALE."""
        n = self.entries.get(addr)
        if n is None:
            return
        if n.state is INCOMPLETE:
            n.mac = mac
            n.state = STALE
            self._arm(n, self.stale_gc)
            self._flush(n)
        elif n.mac != mac:
            n.mac = mac
            n.state = STALE
            self._arm(n, self.stale_gc)

    def remove(self, addr: bytes) -> None:
        n = self.entries.pop(addr, None)
        if n is not None and n.timer is not None:
            n.timer.cancel()

    def clear(self) -> None:
        for addr in list(self.entries):
            self.remove(addr)

    # --- internals -------------------------------------------------------

    def _add(self, addr: bytes, mac, state: str, now: int) -> Neighbour | None:
        if len(self.entries) >= self.max_entries and not self._evict():
            return None
        n = Neighbour(addr, mac, state, now)
        self.entries[addr] = n
        return n

    def _evict(self) -> bool:
        victim = None
        for n in self.entries.values():
            if n.state is not INCOMPLETE and (victim is None or n.used < victim.used):
                victim = n
        if victim is None:
            return False
        self.remove(victim.addr)
        self._count("evicted")
        return True

    def _arm(self, n: Neighbour, delay: int) -> None:
        if n.timer is None:
            n.timer = Timer(self.clock, lambda: self._expire(n))
        n.timer.cancel()            # deadlines here move earlier as often as later
        n.timer.arm_in(delay)

    def _reachable(self, n: Neighbour) -> None:
        n.state = REACHABLE
        n.probes = 0
        self._arm(n, int(self.reachable_time * random.uniform(0.5, 1.5)))
        self._flush(n)

    def _flush(self, n: Neighbour) -> None:
        while n.queue:
            self.transmit(n.mac, n.queue.popleft())

    def _expire(self, n: Neighbour) -> None:
        if self.entries.get(n.addr) is not n:
            return
        state = n.state
        if state is INCOMPLETE:
            if n.probes < self.max_probes:
                n.probes += 1
                self._arm(n, self.retrans)
                self.solicit(n.addr, None)
                return
            self.remove(n.addr)
            self._count("failed")
            packets = list(n.queue)
            n.queue.clear()
            self.stats[f"{self.name}.dropped_unresolved"] += len(packets)
            if self.failed is not None:
                self.failed(n.addr, packets)
        elif state is REACHABLE:
            n.state = STALE
            self._arm(n, self.stale_gc)
        elif state is STALE:
            if self.clock.now_ns() - n.used >= self.stale_gc:
                self.remove(n.addr)
                self._count("stale_gc")
            else:
                self._arm(n, n.used + self.stale_gc - self.clock.now_ns())
        elif state is DELAY:
            n.state = PROBE
            n.probes = 1
            self._arm(n, self.retrans)
            self.solicit(n.addr, n.mac)
        elif state is PROBE:
            if n.probes < self.max_probes:
                n.probes += 1
                self._arm(n, self.retrans)
                self.solicit(n.addr, n.mac)
            else:
                self.remove(n.addr)
                self._count("probe_failed")


class ArpResolver:
    """ARP (RFC 826) for one Ethernet link: resolves IPv4 next hops through
    a NeighbourCache, answers requests for the NIC's addresses, announces
    addresses with gratuitous ARP.

    `link` gives: mac, stats, clock, ipv4_addrs() -> [(addr, prefixlen)],
    ipv4_group_mac(addr) (the MAC of a broadcast or multicast address),
    write_frame(dst_mac, ethertype, payload), and unreachable(ethertype,
    packets) for packets that could not be resolved."""

    def __init__(self, link, **cache_opts):
        self.link = link
        self.cache = NeighbourCache(link.clock, self._solicit, self._transmit, self._failed,
                                    link.stats, name="arp", **cache_opts)

    def _source_for(self, target: bytes) -> bytes:
        """Our address on target's subnet, else our first; 0.0.0.0 (a probe)
        when the NIC has no IPv4 address."""
        addrs = self.link.ipv4_addrs()
        t = int.from_bytes(target, "big")
        for addr, plen in addrs:
            mask = ((1 << 32) - 1) ^ ((1 << (32 - plen)) - 1) if plen else 0
            if (int.from_bytes(addr, "big") ^ t) & mask == 0:
                return addr
        return addrs[0][0] if addrs else bytes(4)

    def _solicit(self, addr: bytes, mac) -> None:
        link = self.link
        pkt = wire_arp.ArpPacket(wire_arp.REQUEST, link.mac, self._source_for(addr), bytes(6), addr)
        link.write_frame(mac or ethernet.BROADCAST, ethernet.ETH_P_ARP, pkt.encode())
        self.link.stats["arp.requests_sent"] += 1

    def _transmit(self, mac: bytes, packet: bytes) -> None:
        self.link.write_frame(mac, ethernet.ETH_P_IP, packet)

    def _failed(self, addr: bytes, packets: list) -> None:
        if packets:
            self.link.unreachable(ethernet.ETH_P_IP, packets)

    def announce(self, addr: bytes) -> None:
        """Gratuitous ARP: a broadcast request for our own address, so
        neighbours with a cached entry for it update it (Linux sends these
        as requests too)."""
        link = self.link
        pkt = wire_arp.ArpPacket(wire_arp.REQUEST, link.mac, addr, bytes(6), addr)
        link.write_frame(ethernet.BROADCAST, ethernet.ETH_P_ARP, pkt.encode())
        link.stats["arp.announced"] += 1

    def receive(self, payload, src_mac: bytes) -> None:
        stats = self.link.stats
        try:
            pkt = wire_arp.parse(payload)
        except Malformed as e:
            stats[str(e)] += 1
            return
        spa, sha = pkt.spa, pkt.sha
        if sha[0] & 1 or sha == self.link.mac:
            stats["arp.bad_sender"] += 1     # a group address, or someone speaking as us
            return
        if spa[0] >= 224 or self.link.ipv4_group_mac(spa) is not None:
            stats["arp.bad_sender"] += 1     # a broadcast or group address is nobody's
            return
        ours = {a for a, _ in self.link.ipv4_addrs()}
        if spa in ours:
            stats["arp.address_conflict"] += 1
            return
        if spa == bytes(4):
            # an address probe (RFC 5227): answer it if it asks for ours,
            # learn nothing
            if pkt.op == wire_arp.REQUEST and pkt.tpa in ours:
                self._reply(pkt)
            return
        if pkt.tpa not in ours:
            self.cache.update(spa, sha)      # gratuitous or for someone else
            return
        if pkt.op == wire_arp.REQUEST:
            self.cache.learn(spa, sha)
            self._reply(pkt)
        else:
            self.cache.confirm(spa, sha)
            stats["arp.replies_received"] += 1

    def _reply(self, req) -> None:
        link = self.link
        rep = wire_arp.ArpPacket(wire_arp.REPLY, link.mac, req.tpa, req.sha, req.spa)
        link.write_frame(req.sha, ethernet.ETH_P_ARP, rep.encode())
        link.stats["arp.replies_sent"] += 1
