"""The neighbour cache and ARP: states, timeouts, queue and table bounds,
driven by a manual clock; two Ethernet links joined in memory."""
import collections

import pytest

from netstack import arp
from netstack.arp import DELAY, INCOMPLETE, PROBE, REACHABLE, STALE, NeighbourCache
from netstack.link.ethernet import EthernetLink, ipv4_multicast_mac, ipv6_multicast_mac
from netstack.wire import arp as wire_arp
from netstack.wire import ethernet
from netstack_testkit import ManualClock

SEC = arp.SEC
A = bytes((10, 0, 0, 1))
B = bytes((10, 0, 0, 2))
C = bytes((10, 0, 0, 3))
MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")
MAC_C = bytes.fromhex("020000000003")


class Recorder:
    """The cache's three callbacks, recording what they were asked."""

    def __init__(self):
        self.solicited, self.sent, self.failures = [], [], []

    def cache(self, clock, **kw):
        return NeighbourCache(clock, lambda a, m: self.solicited.append((a, m)),
                              lambda m, p: self.sent.append((m, p)),
                              lambda a, ps: self.failures.append((a, ps)), **kw)


@pytest.fixture
def clock():
    return ManualClock()


def test_resolve_queues_until_reply_then_flushes_in_order(clock):
    r = Recorder()
    c = r.cache(clock)
    assert c.resolve(B, b"p1") is None
    assert c.resolve(B, b"p2") is None
    assert r.solicited == [(B, None)]          # one broadcast request, not one per packet
    assert c.get(B).state is INCOMPLETE
    c.confirm(B, MAC_B)
    assert r.sent == [(MAC_B, b"p1"), (MAC_B, b"p2")]
    assert c.get(B).state is REACHABLE
    assert c.resolve(B, b"p3") == MAC_B       # resolved: the caller sends it


def test_queue_is_bounded_dropping_oldest(clock):
    r = Recorder()
    c = r.cache(clock, queue_len=3)
    for i in range(5):
        c.resolve(B, b"p%d" % i)
    c.confirm(B, MAC_B)
    assert [p for _, p in r.sent] == [b"p2", b"p3", b"p4"]
    assert c.stats["arp.queue_overflow"] == 2


def test_failed_resolution_retries_then_reports_queued_packets(clock):
    r = Recorder()
    c = r.cache(clock, max_probes=3, retrans=SEC)
    c.resolve(B, b"x")
    c.resolve(B, b"y")
    clock.advance(SEC)
    clock.advance(SEC)
    assert r.solicited == [(B, None)] * 3 and not r.failures
    clock.advance(SEC)
    assert r.failures == [(B, [b"x", b"y"])]
    assert c.get(B) is None
    assert c.stats["arp.failed"] == 1 and c.stats["arp.dropped_unresolved"] == 2
    # a later packet starts over
    c.resolve(B, b"z")
    assert r.solicited[-1] == (B, None) and c.get(B).state is INCOMPLETE


def test_reachable_ages_to_stale_then_delay_probe_and_forget(clock):
    r = Recorder()
    c = r.cache(clock, reachable_time=30 * SEC, delay=5 * SEC, retrans=SEC, max_probes=3,
                stale_gc=3600 * SEC)
    c.resolve(B, b"x")
    c.confirm(B, MAC_B)
    clock.advance(14 * SEC)                 # randomised 0.5-1.5x: still reachable before 15 s
    assert c.get(B).state is REACHABLE
    clock.advance(32 * SEC)
    assert c.get(B).state is STALE
    assert c.resolve(B, b"y") == MAC_B      # a stale entry is used as is...
    assert c.get(B).state is DELAY
    clock.advance(5 * SEC)
    assert c.get(B).state is PROBE          # ...and checked by unicast
    assert r.solicited[-1] == (B, MAC_B)
    clock.advance(2 * SEC)
    assert r.solicited[-3:] == [(B, MAC_B)] * 3
    clock.advance(SEC)
    assert c.get(B) is None and c.stats["arp.probe_failed"] == 1


def test_probe_answered_makes_reachable_again(clock):
    r = Recorder()
    c = r.cache(clock, reachable_time=2 * SEC, delay=SEC, retrans=SEC)
    c.resolve(B, b"x")
    c.confirm(B, MAC_B)
    clock.advance(4 * SEC)
    c.resolve(B, b"y")
    clock.advance(SEC)
    assert c.get(B).state is PROBE
    c.confirm(B, MAC_B)
    assert c.get(B).state is REACHABLE
    clock.advance(10 * SEC)
    assert c.get(B) is not None             # no leftover probe timer removed it


def test_learned_entry_is_stale_and_collected_when_unused(clock):
    r = Recorder()
    c = r.cache(clock, stale_gc=60 * SEC)
    c.learn(B, MAC_B)
    assert c.get(B).state is STALE and c.get(B).mac == MAC_B
    clock.advance(59 * SEC)
    assert c.get(B) is not None
    clock.advance(2 * SEC)
    assert c.get(B) is None and c.stats["arp.stale_gc"] == 1


def test_unsolicited_reply_creates_nothing_but_updates_known(clock):
    r = Recorder()
    c = r.cache(clock)
    c.confirm(B, MAC_B)
    assert c.get(B) is None and c.stats["arp.unsolicited_reply"] == 1
    c.update(B, MAC_B)
    assert c.get(B) is None
    c.learn(B, MAC_B)
    c.update(B, MAC_C)                       # the neighbour moved: take the new address
    assert c.get(B).mac == MAC_C and c.get(B).state is STALE


def test_request_from_incomplete_neighbour_flushes_queue(clock):
    r = Recorder()
    c = r.cache(clock)
    c.resolve(B, b"x")
    c.learn(B, MAC_B)
    assert r.sent == [(MAC_B, b"x")] and c.get(B).state is STALE


def test_table_bound_evicts_least_recently_used_resolved(clock):
    r = Recorder()
    c = r.cache(clock, max_entries=3)
    c.learn(A, MAC_A)
    clock.advance(SEC)
    c.learn(B, MAC_B)
    clock.advance(SEC)
    c.resolve(A, b"a")                      # A used more recently than B
    c.resolve(C, b"c")                       # table full: B goes
    assert len(c) == 3
    c.resolve(bytes((10, 0, 0, 4)), b"d")
    assert c.get(B) is None and c.get(A) is not None and len(c) == 3
    assert c.stats["arp.evicted"] == 1


def test_table_full_of_incomplete_refuses(clock):
    r = Recorder()
    c = r.cache(clock, max_entries=2)
    c.resolve(A, b"a")
    c.resolve(B, b"b")
    assert c.resolve(C, b"c") is None
    assert c.get(C) is None and c.stats["arp.table_full"] == 1


# --- two Ethernet links joined in memory -----------------------------------

class Wire:
    """A frame device: what one end writes the other reads."""

    def __init__(self, name):
        self.name = name
        self.inbox = collections.deque()
        self.peer = None
        self.up = True
        self.closed = False

    @staticmethod
    def pair():
        a, b = Wire("a"), Wire("b")
        a.peer, b.peer = b, a
        return a, b

    def write(self, frame):
        if self.up:
            self.peer.inbox.append(bytes(frame))
        return True

    def read_batch(self, budget=64):
        out = []
        while self.inbox and len(out) < budget:
            out.append(self.inbox.popleft())
        return out

    def fileno(self):
        return None

    def close(self):
        self.closed = True


class Host:
    """The network layer's side of a NIC: what it owns and what reached it."""

    def __init__(self, clock, addrs):
        self.stack = self
        self.clock = clock
        self.stats = collections.Counter()
        self.addrs = list(addrs)
        self.received = []
        self.unreachable = []

    def receive(self, ethertype, payload):
        self.received.append((ethertype, payload))

    def neighbour_unreachable(self, ethertype, packet):
        self.unreachable.append((ethertype, packet))


def ip_packet(src, dst, body=b"hello"):
    # only the destination matters to the link; a plausible IPv4 header
    total = 20 + len(body)
    return bytes((0x45, 0)) + total.to_bytes(2, "big") + bytes(8) + src + dst + body


@pytest.fixture
def pair(clock):
    wa, wb = Wire.pair()
    ha, hb = Host(clock, [(A, 24)]), Host(clock, [(B, 24)])
    la, lb = EthernetLink(wa, MAC_A), EthernetLink(wb, MAC_B)
    la.attach(ha)
    lb.attach(hb)

    def pump():
        while wa.inbox or wb.inbox:
            la.poll_in()
            lb.poll_in()
    return la, lb, ha, hb, wa, wb, pump


def test_gratuitous_arp_on_attach(pair):
    la, lb, ha, hb, wa, wb, pump = pair
    # each link announced its address: a broadcast request for itself
    frames = list(wb.inbox)
    assert len(frames) == 1
    dst, src, et, payload = ethernet.parse(frames[0])
    pkt = wire_arp.parse(payload)
    assert (dst, src, et) == (ethernet.BROADCAST, MAC_A, ethernet.ETH_P_ARP)
    assert (pkt.op, pkt.spa, pkt.tpa, pkt.sha) == (wire_arp.REQUEST, A, A, MAC_A)
    pump()
    # a gratuitous ARP creates no entry (nobody asked)
    assert la.arp.cache.get(B) is None and lb.arp.cache.get(A) is None
    ha.addrs.append((bytes((10, 0, 1, 1)), 24))
    la.addresses_changed()
    assert hb.stats["arp.announced"] == 1 and ha.stats["arp.announced"] == 2


def test_resolve_and_deliver_across_the_pair(pair):
    la, lb, ha, hb, wa, wb, pump = pair
    pump()
    p = ip_packet(A, B)
    la.send(ethernet.ETH_P_IP, p, B)
    la.send(ethernet.ETH_P_IP, p + b"2", B)
    assert not hb.received
    pump()
    assert hb.received == [(ethernet.ETH_P_IP, p), (ethernet.ETH_P_IP, p + b"2")]
    assert la.arp.cache.get(B).state is REACHABLE     # our request was answered
    assert lb.arp.cache.get(A).state is STALE         # learned from the request to it
    assert ha.stats["arp.requests_sent"] == 1 and hb.stats["arp.replies_sent"] == 1
    # the reverse direction needs no request: B learned A from it
    lb.send(ethernet.ETH_P_IP, ip_packet(B, A), A)
    pump()
    assert ha.received and hb.stats["arp.requests_sent"] == 0


def test_unanswered_resolution_reports_unreachable(pair, clock):
    la, lb, ha, hb, wa, wb, pump = pair
    pump()
    wa.up = False                    # B never hears us
    p = ip_packet(A, B)
    la.send(ethernet.ETH_P_IP, p, B)
    clock.advance(10 * SEC)
    assert ha.unreachable == [(ethernet.ETH_P_IP, p)]
    assert ha.stats["arp.requests_sent"] == arp.MAX_PROBES


def test_group_destinations_need_no_resolution(pair):
    la, lb, ha, hb, wa, wb, pump = pair
    pump()
    for dst, mac in ((b"\xff\xff\xff\xff", ethernet.BROADCAST),
                     (bytes((10, 0, 0, 255)), ethernet.BROADCAST),
                     (bytes((224, 0, 0, 251)), bytes.fromhex("01005e0000fb"))):
        la.send(ethernet.ETH_P_IP, ip_packet(A, dst), dst)
        frame = wb.inbox.popleft()
        assert frame[:6] == mac
    assert ha.stats["arp.requests_sent"] == 0
    assert ipv4_multicast_mac(bytes((239, 255, 1, 2))) == bytes.fromhex("01005e7f0102")
    assert ipv6_multicast_mac(bytes.fromhex("ff020000000000000000000000000001")) == bytes.fromhex("333300000001")


def test_frames_for_others_and_malformed_are_counted(pair):
    la, lb, ha, hb, wa, wb, pump = pair
    pump()
    other = bytes.fromhex("020000000099")
    la.device.write(ethernet.build(other, MAC_A, ethernet.ETH_P_IP, ip_packet(A, B)))
    la.device.write(b"\x01\x02")                                    # shorter than a header
    la.device.write(ethernet.build(MAC_B, b"\x01" + MAC_A[1:], ethernet.ETH_P_IP, b"x"))
    la.device.write(ethernet.build(ethernet.BROADCAST, MAC_A, ethernet.ETH_P_ARP, b"short"))
    la.device.write(ethernet.build(MAC_B, MAC_A, 0x88B5, b"experimental"))
    pump()
    assert not hb.received
    s = hb.stats
    assert (s["eth.not_for_us"], s["eth.short"], s["eth.bad_source"], s["arp.short"],
            s["eth.unknown_ethertype"]) == (1, 1, 1, 1, 1)


def test_arp_for_someone_else_or_claiming_our_address_is_ignored(pair):
    la, lb, ha, hb, wa, wb, pump = pair
    pump()
    req = wire_arp.ArpPacket(wire_arp.REQUEST, MAC_C, C, bytes(6), bytes((10, 0, 0, 9)))
    wa.write(ethernet.build(ethernet.BROADCAST, MAC_C, ethernet.ETH_P_ARP, req.encode()))
    conflict = wire_arp.ArpPacket(wire_arp.REPLY, MAC_C, B, MAC_B, B)
    wa.write(ethernet.build(MAC_B, MAC_C, ethernet.ETH_P_ARP, conflict.encode()))
    pump()
    assert lb.arp.cache.get(C) is None and not wa.inbox
    assert hb.stats["arp.address_conflict"] == 1 and hb.stats["arp.replies_sent"] == 0


def test_address_probe_is_answered_without_learning(pair):
    la, lb, ha, hb, wa, wb, pump = pair
    pump()
    probe = wire_arp.ArpPacket(wire_arp.REQUEST, MAC_C, bytes(4), bytes(6), B)
    wa.write(ethernet.build(ethernet.BROADCAST, MAC_C, ethernet.ETH_P_ARP, probe.encode()))
    lb.poll_in()
    dst, src, _, payload = ethernet.parse(wa.inbox.popleft())
    rep = wire_arp.parse(payload)
    assert dst == MAC_C and (rep.op, rep.spa, rep.sha, rep.tha) == (wire_arp.REPLY, B, MAC_B, MAC_C)
    assert lb.arp.cache.get(bytes(4)) is None


def test_oversized_packet_is_dropped(pair):
    la, lb, ha, hb, wa, wb, pump = pair
    pump()
    la.send(ethernet.ETH_P_IP, ip_packet(A, B, bytes(1500)), B)
    assert ha.stats["eth.too_big"] == 1 and not wb.inbox


# --- IPv6 neighbour discovery over the same pair ----------------------------

A6 = bytes.fromhex("fd000000000000000000000000000001")
B6 = bytes.fromhex("fd000000000000000000000000000002")


def ip6_packet(src, dst, body=b"hello6", next_header=17, hop_limit=64):
    return (bytes((0x60, 0, 0, 0)) + len(body).to_bytes(2, "big") + bytes((next_header, hop_limit))
            + src + dst + body)


@pytest.fixture
def pair6(pair):
    la, lb, ha, hb, wa, wb, pump = pair
    ha.addrs.append((A6, 64))
    hb.addrs.append((B6, 64))
    la.addresses_changed()
    lb.addresses_changed()
    return pair


def test_ndp_resolves_and_delivers(pair6):
    la, lb, ha, hb, wa, wb, pump = pair6
    # the unsolicited advertisements went to all nodes
    assert ha.stats["ndp.announced"] == 1 and hb.stats["ndp.announced"] == 1
    pump()
    assert la.ndp.cache.get(B6) is None      # an unsolicited advertisement creates nothing
    p = ip6_packet(A6, B6)
    la.send(ethernet.ETH_P_IPV6, p, B6)
    ns = wb.inbox[0]
    assert ns[:6] == bytes.fromhex("3333ff000002")   # to B6's solicited-node group
    pump()
    assert hb.received == [(ethernet.ETH_P_IPV6, p)]
    assert la.ndp.cache.get(B6).state is REACHABLE and la.ndp.cache.get(B6).mac == MAC_B
    assert lb.ndp.cache.get(A6).state is STALE
    assert hb.stats["ndp.adverts_sent"] == 1 and ha.stats["ndp.adverts_received"] == 1
    # NDP messages were consumed by the link, not handed to the NIC
    assert all(et == ethernet.ETH_P_IPV6 and pk == p for et, pk in hb.received)


def test_ndp_drops_forged_hop_limit_and_bad_checksum(pair6):
    la, lb, ha, hb, wa, wb, pump = pair6
    pump()
    from netstack.wire import icmp as wicmp
    ns = wicmp.neighbor_message(wicmp.NEIGHBOR_SOLICIT, B6, MAC_A).encode(A6, B6)
    wa.write(ethernet.build(MAC_B, MAC_A, ethernet.ETH_P_IPV6, ip6_packet(A6, B6, ns, 58, 64)))
    bad = bytearray(ns)
    bad[2] ^= 0xFF
    wa.write(ethernet.build(MAC_B, MAC_A, ethernet.ETH_P_IPV6, ip6_packet(A6, B6, bytes(bad), 58, 255)))
    pump()
    assert hb.stats["ndp.bad_hop_limit"] == 1 and hb.stats["icmp6.bad_checksum"] == 1
    assert lb.ndp.cache.get(A6) is None and hb.stats["ndp.adverts_sent"] == 0
    assert not hb.received
    # the same solicitation, well formed, is answered
    wa.write(ethernet.build(MAC_B, MAC_A, ethernet.ETH_P_IPV6, ip6_packet(A6, B6, ns, 58, 255)))
    pump()
    assert hb.stats["ndp.adverts_sent"] == 1


def test_ndp_multicast_destination_needs_no_resolution(pair6):
    la, lb, ha, hb, wa, wb, pump = pair6
    pump()
    group = bytes.fromhex("ff020000000000000000000000000001")
    la.send(ethernet.ETH_P_IPV6, ip6_packet(A6, group), group)
    assert wb.inbox[0][:6] == bytes.fromhex("333300000001")
    pump()
    assert hb.received and ha.stats["ndp.solicits_sent"] == 0


def test_random_mac_is_unicast_and_locally_administered():
    from netstack.link.ethernet import random_mac
    macs = {random_mac() for _ in range(50)}
    assert len(macs) > 1
    assert all(len(m) == 6 and m[0] & 1 == 0 and m[0] & 2 for m in macs)


def test_arp_from_a_broadcast_or_group_address_is_dropped(pair):
    la, lb, ha, hb, wa, wb, pump = pair
    pump()
    for spa in (bytes((10, 0, 0, 255)), bytes((224, 0, 0, 1)), b"\xff\xff\xff\xff"):
        req = wire_arp.ArpPacket(wire_arp.REQUEST, MAC_C, spa, bytes(6), B)
        wa.write(ethernet.build(ethernet.BROADCAST, MAC_C, ethernet.ETH_P_ARP, req.encode()))
    pump()
    assert hb.stats["arp.bad_sender"] == 3 and len(lb.arp.cache) == 0
    assert hb.stats["arp.replies_sent"] == 0
