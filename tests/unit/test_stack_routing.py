"""The stack itself: interfaces, addresses, routing (longest prefix,
gateways, local and loopback addresses, ENETUNREACH), the receive path's
drops (malformed, not for us, martians: counted, never raised) and the
loopback queue that delivers without recursing."""
import errno

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netstack.core import AF_INET, AF_INET6, ANY4, ANY6, LOOPBACK4, LOOPBACK6
from netstack.ping import PingEndpoint
from netstack.udp import UDPEndpoint
from netstack.stack import (IFF_LOOPBACK, IFF_RUNNING, IFF_UP, Stack,
                            network, solicited_node)
from netstack.wire import ipv4 as wire4
from netstack.wire import ipv6 as wire6
from netstack.wire import udp as wire_udp
from netstack.wire.icmp import IcmpMessage
from netstack_testkit import A4, A6, B4, B6, ManualClock, joined_stacks


def ip4(*b):
    return bytes(b)


def errno_of(fn, *args, **kw):
    with pytest.raises(OSError) as ei:
        fn(*args, **kw)
    return ei.value.errno


# --- interfaces and addresses ------------------------------------------------

def test_loopback_interface_as_linux():
    s = Stack.with_loopback(ManualClock())
    lo, = s.nics
    assert (lo.index, lo.name, lo.mtu) == (1, "lo", 65536)
    assert lo.flags == IFF_UP | IFF_LOOPBACK | IFF_RUNNING
    assert lo.addrs == [(LOOPBACK4, 8), (LOOPBACK6, 128)]
    assert s.is_local(LOOPBACK4) and s.is_local(ip4(127, 9, 8, 7)) and s.is_local(LOOPBACK6)
    assert s.is_local(bytes(10) + b"\xff\xff" + LOOPBACK4)
    assert not s.is_local(ANY4) and not s.is_local(ip4(10, 0, 0, 1))
    assert not s.is_local(bytes(15) + b"\x02")
    # the lo routes Linux's main table shows: ::1 only
    assert s.routes == [(LOOPBACK6, 128, None, lo)]


def test_address_adds_connected_route_and_duplicates_fail():
    a, b, la, lb = joined_stacks()
    nic = la.nic
    assert nic.index == 2 and nic.name == "eth0"
    assert (ip4(10, 0, 0, 0), 24, None, nic) in a.routes
    assert (network(A6, 64), 64, None, nic) in a.routes
    assert errno_of(a.add_address, nic, A4, 24) == errno.EEXIST
    assert errno_of(a.add_address, nic, A4 + b"\0", 24) == errno.EINVAL
    assert errno_of(a.add_address, nic, ip4(10, 0, 0, 9), 33) == errno.EINVAL
    a.add_address(nic, ip4(192, 168, 1, 1), 32)          # a host address: no route
    assert not [r for r in a.routes if r[0] == ip4(192, 168, 1, 1)]
    assert a.is_local(ip4(192, 168, 1, 1))
    a.del_address(nic, ip4(192, 168, 1, 1))
    assert not a.is_local(ip4(192, 168, 1, 1))
    assert errno_of(a.del_address, nic, ip4(192, 168, 1, 1)) == errno.EADDRNOTAVAIL


# --- routing ------------------------------------------------------------------

def test_loopback_and_local_routes():
    a, b, la, lb = joined_stacks()
    r = a.route(LOOPBACK4)
    assert r.loopback and r.nic is a.lo and r.local == LOOPBACK4 and r.mtu == 65536
    r = a.route(ip4(127, 3, 3, 3))
    assert r.loopback and r.local == LOOPBACK4 and r.remote == ip4(127, 3, 3, 3)
    r = a.route(LOOPBACK6)
    assert r.loopback and r.local == LOOPBACK6
    # our own addresses route over lo too, from themselves
    for own in (A4, A6):
        r = a.route(own)
        assert r.loopback and r.local == own and r.remote == own
    # the unspecified address means ourselves
    assert a.route(ANY4).remote == LOOPBACK4 and a.route(ANY6).remote == LOOPBACK6
    assert a.route(ANY4, A4).remote == A4
    # a v4-mapped remote is IPv4
    assert a.route(bytes(10) + b"\xff\xff" + B4).remote == B4


def test_on_link_route_and_source():
    a, b, la, lb = joined_stacks()
    r = a.route(B4)
    assert not r.loopback and r.nic is la.nic and r.local == A4 and r.next_hop == B4
    assert r.mtu == 1500 and not r.broadcast
    r6 = a.route(B6)
    assert r6.local == A6 and r6.next_hop == B6
    assert errno_of(a.route, B4, A6) == errno.ENETUNREACH     # families differ


def test_longest_prefix_match_and_gateways():
    a, b, la, lb = joined_stacks()
    nic = la.nic
    a.add_route(ip4(172, 16, 0, 0), 12, gateway=ip4(10, 0, 0, 250))
    a.add_route(ip4(172, 16, 5, 0), 24, gateway=ip4(10, 0, 0, 251))
    a.add_route(ip4(172, 16, 5, 128), 25, nic=nic)          # on-link
    assert a.route(ip4(172, 20, 1, 1)).next_hop == ip4(10, 0, 0, 250)
    assert a.route(ip4(172, 16, 5, 1)).next_hop == ip4(10, 0, 0, 251)
    assert a.route(ip4(172, 16, 5, 200)).next_hop == ip4(172, 16, 5, 200)
    assert errno_of(a.route, ip4(8, 8, 8, 8)) == errno.ENETUNREACH
    a.add_route(ANY4, 0, gateway=ip4(10, 0, 0, 254))
    r = a.route(ip4(8, 8, 8, 8))
    assert r.next_hop == ip4(10, 0, 0, 254) and r.local == A4
    # more specific still wins over the default
    assert a.route(ip4(172, 16, 5, 1)).next_hop == ip4(10, 0, 0, 251)
    # a gateway must be reachable on a connected network
    assert errno_of(a.add_route, ip4(9, 0, 0, 0), 8, gateway=ip4(8, 8, 8, 8)) == errno.ENETUNREACH
    assert errno_of(a.add_route, ip4(172, 16, 0, 0), 12, gateway=ip4(10, 0, 0, 9)) == errno.EEXIST
    a.del_route(ip4(172, 16, 5, 0), 24)
    assert a.route(ip4(172, 16, 5, 1)).next_hop == ip4(10, 0, 0, 250)
    assert errno_of(a.del_route, ip4(172, 16, 5, 0), 24) == errno.ESRCH
    # IPv6 default
    assert errno_of(a.route, bytes.fromhex("20010db8" + "00" * 11 + "01")) == errno.ENETUNREACH
    gw6 = bytes.fromhex("fd00" + "00" * 13 + "fe")
    a.add_route(ANY6, 0, gateway=gw6)
    assert a.route(bytes.fromhex("20010db8" + "00" * 11 + "01")).next_hop == gw6


def test_ifindex_restricts_and_link_local_is_on_link():
    a, b, la, lb = joined_stacks()
    assert errno_of(a.route, B4, None, a.lo.index) == errno.ENETUNREACH
    assert a.route(B4, None, la.nic.index).nic is la.nic
    ll = bytes.fromhex("fe80" + "00" * 13 + "07")
    assert errno_of(a.route, ll) == errno.ENETUNREACH
    assert a.route(ll, None, la.nic.index).next_hop == ll


def test_broadcast_routes():
    a, b, la, lb = joined_stacks()
    r = a.route(ip4(10, 0, 0, 255))
    assert r.broadcast and r.next_hop == b"\xff\xff\xff\xff"
    assert a.is_broadcast(ip4(10, 0, 0, 255)) and a.is_broadcast(b"\xff" * 4)
    assert a.is_broadcast(ip4(224, 0, 0, 251)) and not a.is_broadcast(B4)


def test_route_objects_follow_generation():
    a, b, la, lb = joined_stacks()
    r = a.route(B4)
    assert a.route(B4) is r and r.generation == a.generation
    a.add_route(ANY4, 0, gateway=ip4(10, 0, 0, 254))
    assert r.generation != a.generation
    assert a.route(B4) is not r


def test_gateway_route_sends_to_gateway_mac_hop():
    a, b, la, lb = joined_stacks()
    a.add_route(ANY4, 0, gateway=B4)
    b.add_address(lb.nic, ip4(198, 51, 100, 7), 32)    # b owns the far address too
    r = UDPEndpoint(b, 2)
    r.bind((ip4(198, 51, 100, 7), 53))
    s = UDPEndpoint(a, 2)
    s.send(b"q", 0, (ip4(198, 51, 100, 7), 53))
    assert la.sent[-1][2] == B4
    assert r.recv(10)[2][0] == A4


# --- receive path -------------------------------------------------------------

def udp4(src, dst, ttl=64, payload=b"x", dport=9):
    return wire4.build(wire4.IPv4Header(0, 1, False, False, 0, ttl, 17, src, dst),
                       wire_udp.Datagram(1000, dport, payload).encode(src, dst))


def test_not_for_us_and_martians_dropped():
    a, b, la, lb = joined_stacks()
    nic = lb.nic
    nic.receive(0x0800, udp4(A4, ip4(10, 0, 0, 77)))
    assert b.stats["ipv4.not_for_us"] == 1
    nic.receive(0x0800, udp4(LOOPBACK4, B4))
    nic.receive(0x0800, udp4(ip4(224, 1, 1, 1), B4))
    nic.receive(0x0800, udp4(B4, B4))           # our own address from outside
    assert b.stats["ipv4.martian"] == 3
    other6 = bytes.fromhex("fd00" + "00" * 13 + "99")
    pkt6 = wire6.build(wire6.IPv6Header(0, 0, 64, 17, A6, other6),
                       wire_udp.Datagram(1, 2, b"").encode(A6, other6))
    nic.receive(0x86DD, pkt6)
    assert b.stats["ipv6.not_for_us"] == 1
    nic.receive(0x1234, b"whatever")
    assert b.stats["ip.unknown_ethertype"] == 1
    assert not lb.sent          # none of these is answered


def test_ttl_reaches_the_transport_unchanged():
    a, b, la, lb = joined_stacks()
    seen = []

    class Spy:
        number = 17

        def parse(self, data, src, dst):
            return wire_udp.parse(data, src, dst)

        def deliver(self, info, obj):
            seen.append(info)
    b.register(Spy())
    lb.nic.receive(0x0800, udp4(A4, B4, ttl=1))
    lb.nic.receive(0x0800, udp4(A4, B4, ttl=0))    # TTL matters when forwarding; we don't
    assert [i.ttl for i in seen] == [1, 0] and seen[0].nic is lb.nic


def test_bad_checksums_counted():
    a, b, la, lb = joined_stacks()
    pkt = bytearray(udp4(A4, B4))
    pkt[10] ^= 0xFF
    lb.nic.receive(0x0800, bytes(pkt))
    assert b.stats["ipv4.bad_checksum"] == 1
    pkt = bytearray(udp4(A4, B4, payload=b"abcd"))
    pkt[-1] ^= 1
    lb.nic.receive(0x0800, bytes(pkt))
    assert b.stats["udp.bad_checksum"] == 1


def test_solicited_node_group_accepted():
    a, b, la, lb = joined_stacks()
    group = solicited_node(B6)
    assert group == bytes.fromhex("ff02" + "00" * 9 + "01ff") + B6[13:]
    pkt = wire6.build(wire6.IPv6Header(0, 0, 255, 17, A6, group),
                      wire_udp.Datagram(1, 9, b"").encode(A6, group))
    lb.nic.receive(0x86DD, pkt)
    assert b.stats["udp.no_port_broadcast"] == 1 and not b.stats["ipv6.not_for_us"]


def _valid_packets():
    """Packets that get past the IP layer: UDP/ICMP/unknown protocol, whole
    or fragments, v4 or v6, with arbitrary payloads."""
    def v4(proto, payload, off, mf, ttl):
        return (0x0800, wire4.build(wire4.IPv4Header(0, 7, False, mf, off * 8, ttl, proto, A4, B4),
                                    payload))

    def v6(proto, payload, off, mf, ttl):
        hdr = wire6.IPv6Header(0, 0, ttl, proto, A6, B6)
        if off or mf:
            return (0x86DD, wire6.build_fragment(hdr, payload, off * 8, mf, 7))
        return (0x86DD, wire6.build(hdr, payload))
    protos = st.sampled_from([1, 6, 17, 58, 0, 43, 44, 60, 59, 200])
    return st.builds(lambda f, *a: f(*a), st.sampled_from([v4, v6]), protos,
                     st.binary(max_size=300), st.integers(0, 8), st.booleans(),
                     st.integers(0, 255))


def _valid_icmp():
    """Well-formed ICMP/ICMPv6 messages of any type, whose body may quote
    a real packet of ours (so errors reach the transports) or be noise."""
    def build(v6, type_, code, rest, body, quote_real):
        if quote_real:
            src, dst = (B6, A6) if v6 else (B4, A4)
            dg = wire_udp.Datagram(5353, 9, body).encode(src, dst)
            body = (wire6.build(wire6.IPv6Header(0, 0, 64, 17, src, dst), dg) if v6 else
                    wire4.build(wire4.IPv4Header(0, 1, False, False, 0, 64, 17, src, dst), dg))
        msg = IcmpMessage(type_, code, rest, body)
        if v6:
            return (0x86DD, wire6.build(wire6.IPv6Header(0, 0, 64, 58, A6, B6), msg.encode(A6, B6)))
        return (0x0800, wire4.build(wire4.IPv4Header(0, 1, False, False, 0, 64, 1, A4, B4),
                                    msg.encode(A4, B4)))
    return st.builds(build, st.booleans(), st.one_of(st.sampled_from([0, 2, 3, 4, 8, 11, 12, 128, 129]),
                                                     st.integers(0, 255)),
                     st.integers(0, 20), st.binary(min_size=4, max_size=4),
                     st.binary(max_size=120), st.booleans())


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(
    st.tuples(st.sampled_from([0x0800, 0x86DD]), st.binary(max_size=200)),
    _valid_packets(), _valid_icmp()))
def test_random_packets_never_raise(frame):
    a, b, la, lb = joined_stacks()
    for fam, addr in ((AF_INET, B4), (AF_INET6, B6)):
        sock = UDPEndpoint(b, fam)
        sock.bind((addr, 5353))
        sock.connect((A4 if fam == AF_INET else A6, 9))
        ping = PingEndpoint(b, fam)
        ping.bind((addr, 0))
    ethertype, data = frame
    for nic in (lb.nic, b.lo):
        nic.receive(ethertype, data)
        # and with a byte flipped somewhere in the headers
        if len(data) > 2:
            mutated = bytearray(data)
            mutated[len(data) // 3] ^= 0x5A
            nic.receive(ethertype, bytes(mutated))
    b.clock.advance(60 * 10**9)       # reassembly timeouts run too


# --- the loopback queue --------------------------------------------------------

def test_loopback_delivery_never_recurses():
    s = Stack.with_loopback(ManualClock())
    depth, max_depth, order = [0], [0], []

    class PingPong:
        number = 253

        def parse(self, data, src, dst):
            return data

        def deliver(self, info, obj):
            depth[0] += 1
            max_depth[0] = max(max_depth[0], depth[0])
            order.append(obj)
            if obj < 5:
                s.route(info.src, info.dst).send(253, obj + 1)
                order.append(("sent", obj + 1))
            depth[0] -= 1
    s.register(PingPong())
    s.route(LOOPBACK4).send(253, 0)
    # all five replies arrived before send returned, one at a time
    assert max_depth[0] == 1
    assert order == [0, ("sent", 1), 1, ("sent", 2), 2, ("sent", 3), 3, ("sent", 4), 4,
                     ("sent", 5), 5]


def test_unknown_protocol_on_loopback_answered():
    s = Stack.with_loopback(ManualClock())

    class Obj:
        def encode(self, src, dst):
            return b"data"
    s.route(LOOPBACK4).send(250, Obj())
    assert s.stats["ip.unknown_protocol"] == 1 and s.stats["icmp.errors_sent"] == 1


def test_icmp_error_to_local_sender_on_neighbour_failure_ignores_foreign():
    a, b, la, lb = joined_stacks()
    # a packet that is not ours: nothing is sent
    la.nic.neighbour_unreachable(0x0800, udp4(ip4(10, 0, 0, 50), B4))
    la.nic.neighbour_unreachable(0x0800, b"garbage")
    assert not a.stats["icmp.errors_sent"]

