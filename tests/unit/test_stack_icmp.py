"""ICMP and ICMPv6 on real stacks joined in memory: echo, the errors the
stack sends (port and protocol unreachable, reassembly time exceeded)
under the global rate limit, errors received and handed to the sending
socket, path MTU, and ping sockets. What crosses the link is parsed back
with the wire codecs, so checksums and quotes are checked too."""
import errno

import pytest

from netstack.core import AF_INET, AF_INET6, IPPROTO_IP, LOOPBACK4, LOOPBACK6, PacketInfo, WouldBlock
from netstack.icmp import HARD_ERRORS
from netstack.ping import PingEndpoint
from netstack.udp import SO_REUSEADDR, SOL_SOCKET, UDPEndpoint
from netstack.wire import icmp as wire
from netstack.wire import ipv4 as wire4
from netstack.wire import ipv6 as wire6
from netstack.wire import udp as wire_udp
from netstack.wire.icmp import IcmpMessage, echo_rest
from netstack_testkit import A4, A6, B4, B6, SEC, joined_stacks

IP_RECVERR = 11


def icmp_sent(link, start=0):
    """(ip header, ICMP message) of each ICMP packet a link carried."""
    out = []
    for ethertype, pkt, _ in link.sent[start:]:
        if ethertype == 0x0800:
            hdr, payload = wire4.parse(pkt)
            if hdr.proto == 1:
                out.append((hdr, wire.parse(payload, hdr.src, hdr.dst)))
        else:
            hdr, payload = wire6.parse(pkt)
            if hdr.next_header == 58:
                out.append((hdr, wire.parse(payload, hdr.src, hdr.dst)))
    return out


def errno_of(fn, *args):
    with pytest.raises(OSError) as ei:
        fn(*args)
    return ei.value.errno


# --- echo ---------------------------------------------------------------------

@pytest.mark.parametrize("v6", [False, True])
def test_echo_reply_over_the_wire(v6):
    a, b, la, lb = joined_stacks()
    src, dst = (A6, B6) if v6 else (A4, B4)
    req_type, rep_type = (128, 129) if v6 else (8, 0)
    a.route(dst).send(58 if v6 else 1, IcmpMessage(req_type, 0, echo_rest(0x1234, 7), b"ping data"))
    (hdr, req), = icmp_sent(la)
    assert req.type == req_type
    (hdr, rep), = icmp_sent(lb)
    assert rep.type == rep_type and rep.code == 0
    assert (rep.ident, rep.seq, rep.body) == (0x1234, 7, b"ping data")
    assert (hdr.src, hdr.dst) == (dst, src)
    assert a.stats["icmp.echo_reply_unmatched"] == 1     # no ping socket waited


def test_echo_to_broadcast_ignored():
    a, b, la, lb = joined_stacks()
    pkt = wire4.build(wire4.IPv4Header(0, 1, False, False, 0, 64, 1, A4, bytes((10, 0, 0, 255))),
                      IcmpMessage(8, 0, echo_rest(1, 1), b"").encode(A4, bytes((10, 0, 0, 255))))
    lb.nic.receive(0x0800, pkt)
    assert not lb.sent and b.stats["icmp.echo_broadcast_ignored"] == 1


def test_echo_on_loopback():
    a, _, _, _ = joined_stacks()
    for fam, lo in ((AF_INET, LOOPBACK4), (AF_INET6, LOOPBACK6)):
        p = PingEndpoint(a, fam)
        p.connect((lo, 0))
        t = 8 if fam == AF_INET else 128
        assert p.send(bytes((t, 0, 0, 0)) + echo_rest(999, 3) + b"hi") == 10
        data, full, frm = p.recv(100)
        assert frm == (lo, 0) and full == 10
        msg = wire.parse(data, lo, lo)
        assert msg.type == (0 if fam == AF_INET else 129)
        # the stack put our identifier in, the sequence is the caller's
        assert (msg.ident, msg.seq, msg.body) == (p.port, 3, b"hi")


# --- ping sockets -----------------------------------------------------------------

def test_ping_socket_over_the_wire_and_rules():
    a, b, la, lb = joined_stacks()
    p = PingEndpoint(a, AF_INET)
    assert errno_of(p.send, b"\x08\x00\x00", 0, (B4, 0)) == errno.EINVAL      # short
    assert errno_of(p.send, bytes(8), 0, (B4, 0)) == errno.EINVAL             # not a request
    assert errno_of(p.send, b"\x08\x01" + bytes(6), 0, (B4, 0)) == errno.EINVAL
    assert errno_of(p.send, b"\x08" + bytes(7)) == errno.EDESTADDRREQ
    p.send(b"\x08\x00\x00\x00\x00\x00\x00\x2a" + b"abc", 0, (B4, 0))
    (hdr, req), = icmp_sent(la)
    assert req.ident == p.port and req.seq == 42 and hdr.dst == B4
    data, _, frm = p.recv(100)
    assert frm == (B4, 0) and wire.parse(data, B4, A4).body == b"abc"
    # identifiers are unique whatever the address, unless both reuse
    q = PingEndpoint(a, AF_INET)
    assert errno_of(q.bind, (A4, p.port)) == errno.EADDRINUSE
    six = PingEndpoint(a, AF_INET6)
    assert errno_of(six.bind, (A6, p.port)) == errno.EADDRINUSE
    assert errno_of(six.send, b"\x80" + bytes(7), 0, (bytes(10) + b"\xff\xff" + B4, 0)) == errno.EINVAL


def test_ping_socket_hears_errors():
    a, b, la, lb = joined_stacks()
    p = PingEndpoint(a, AF_INET)
    p.setsockopt(IPPROTO_IP, IP_RECVERR, 1)
    p.send(b"\x08" + bytes(7), 0, (B4, 0))
    req_pkt = la.sent[-1][1]
    err = IcmpMessage(3, 1, wire.NO_REST, wire.quote(req_pkt))
    b.route(A4).send(1, err)
    assert p.take_error() == errno.EHOSTUNREACH


# --- errors sent ------------------------------------------------------------------

@pytest.mark.parametrize("v6", [False, True])
def test_protocol_unreachable(v6):
    a, b, la, lb = joined_stacks()

    class Raw:
        def encode(self, src, dst):
            return b"raw payload"
    dst = B6 if v6 else B4
    a.route(dst).send(200, Raw())
    (hdr, msg), = icmp_sent(lb)
    assert b.stats["ip.unknown_protocol"] == 1
    if v6:
        # IPv6: parameter problem, unrecognized next header, pointing at it
        assert (msg.type, msg.code, msg.rest) == (4, 1, b"\0\0\0\x06")
        qhdr, qpayload = wire6.parse(msg.body)
    else:
        assert (msg.type, msg.code) == (3, 2)
        qhdr, qpayload = wire4.parse(msg.body)
        assert hdr.tos & 0xC0 == 0xC0      # IPTOS_PREC_INTERNETCONTROL
    assert qpayload == b"raw payload"


def test_unreachable_quotes_the_datagram():
    a, b, la, lb = joined_stacks()
    s = UDPEndpoint(a, AF_INET)
    s.bind((A4, 4444))
    s.send(b"x" * 1000, 0, (B4, 9))
    (hdr, msg), = icmp_sent(lb)
    assert (msg.type, msg.code) == (3, 3) and (hdr.src, hdr.dst) == (B4, A4)
    assert len(msg.body) == wire.QUOTE4         # 548 bytes of the offending packet
    assert msg.body[9] == 17 and msg.body[12:16] == A4 and msg.body[16:20] == B4
    assert msg.body[20:24] == (4444).to_bytes(2, "big") + (9).to_bytes(2, "big")


def test_no_error_about_an_error_or_to_broadcast():
    a, b, la, lb = joined_stacks()
    info = PacketInfo(A4, B4, 1, 64, 0, lb.nic)
    error_msg = IcmpMessage(3, 3, wire.NO_REST, b"").encode(A4, B4)
    b.icmp_unreachable(info, error_msg, 3)
    assert not lb.sent
    b.icmp_unreachable(PacketInfo(A4, bytes((10, 0, 0, 255)), 17, 64, 0, lb.nic), bytes(8), 3)
    assert not lb.sent
    b.icmp_unreachable(PacketInfo(bytes(4), B4, 17, 64, 0, lb.nic), bytes(8), 3)
    assert not lb.sent
    b.icmp_unreachable(PacketInfo(A4, B4, 17, 64, 0, lb.nic), bytes(8), 3)
    assert len(lb.sent) == 1


def test_rate_limit_burst_then_one_per_ms():
    a, b, la, lb = joined_stacks()
    s = UDPEndpoint(a, AF_INET)
    for _ in range(60):
        s.send(b"x", 0, (B4, 9))
    assert len(icmp_sent(lb)) == 50 and b.stats["icmp.ratelimited"] == 10
    a.clock.advance(5_000_000)          # 5 ms: 5 more
    for _ in range(10):
        s.send(b"x", 0, (B4, 9))
    assert len(icmp_sent(lb)) == 55
    # echo replies are not limited
    n = len(lb.sent)
    for i in range(3):
        a.route(B4).send(1, IcmpMessage(8, 0, echo_rest(1, i), b""))
    assert len(lb.sent) == n + 3


@pytest.mark.parametrize("v6", [False, True])
def test_reassembly_timeout_sends_time_exceeded(v6):
    a, b, la, lb = joined_stacks()
    fam, dst = (AF_INET6, B6) if v6 else (AF_INET, B4)
    r = UDPEndpoint(b, fam)
    r.bind((dst, 7000))
    s = UDPEndpoint(a, fam)
    s.setsockopt(41 if v6 else IPPROTO_IP, 25 if v6 else IP_RECVERR, 1)
    la.drop = lambda et, p: len(la.sent) > 1        # only the first fragment arrives
    s.send(b"z" * 3000, 0, (dst, 7000))
    assert len(la.sent) == 3
    with pytest.raises(WouldBlock):
        r.recv(5000)
    limit = 60 if v6 else 30    # RFC 8200's 60 s for IPv6, Linux's ipfrag_time for IPv4
    b.clock.advance((limit - 1) * SEC)
    assert not icmp_sent(lb)
    b.clock.advance(2 * SEC)
    (hdr, msg), = icmp_sent(lb)
    if v6:
        assert (msg.type, msg.code) == (3, 1)
        assert b.stats["ipv6.frag_timeout"] == 1
    else:
        assert (msg.type, msg.code) == (11, 1)
        assert b.stats["ipv4.frag_timeout"] == 1
    # the sender's socket (IP_RECVERR) hears of it
    assert s.take_error() == errno.EHOSTUNREACH


# --- errors received -------------------------------------------------------------

def test_frag_needed_lowers_path_mtu():
    a, b, la, lb = joined_stacks()
    s = UDPEndpoint(a, AF_INET)
    s.connect((B4, 9999))
    r = UDPEndpoint(b, AF_INET)
    r.bind((B4, 9999))
    s.send(b"x" * 100)
    sent = la.sent[-1][1]
    route = a.route(B4)
    assert route.mtu == 1500
    gen = a.generation
    # a router says: 1400 fits
    b.route(A4).send(1, IcmpMessage(3, 4, wire.mtu_rest(1400, False), wire.quote(sent)))
    assert a.generation != gen and route.generation != a.generation
    assert a.route(B4).mtu == 1400
    assert s.take_error() == errno.EMSGSIZE      # Linux: hard for IP_PMTUDISC_WANT
    n = len(la.sent)
    s.send(b"y" * 1450)
    assert len(la.sent) == n + 2 and all(len(p) <= 1400 for _, p, _ in la.sent[n:])
    assert [r.recv(2000)[1] for _ in range(2)] == [100, 1450]


def test_packet_too_big_v6():
    a, b, la, lb = joined_stacks()
    s = UDPEndpoint(a, AF_INET6)
    s.connect((B6, 9999))
    s.send(b"x")
    b.route(A6).send(58, IcmpMessage(2, 0, wire.mtu_rest(1280, True), wire.quote(la.sent[-1][1])))
    assert a.route(B6).mtu == 1280


def test_errors_with_bad_quotes_are_counted():
    a, b, la, lb = joined_stacks()
    b.route(A4).send(1, IcmpMessage(3, 3, wire.NO_REST, b"\x45" + bytes(10)))
    assert a.stats["icmp.bad_quote"] == 1
    b.route(A6).send(58, IcmpMessage(1, 4, wire.NO_REST, bytes(20)))
    assert a.stats["icmp6.bad_quote"] == 1
    # a quote of a packet we did not send
    other = wire4.build(wire4.IPv4Header(0, 0, False, False, 0, 64, 17, bytes((10, 0, 0, 77)), B4),
                        wire_udp.Datagram(1, 2, b"").encode(bytes((10, 0, 0, 77)), B4))
    b.route(A4).send(1, IcmpMessage(3, 3, wire.NO_REST, other))
    assert a.stats["icmp.error_not_ours"] == 1


def test_soft_errors_only_with_recverr():
    a, b, la, lb = joined_stacks()
    s = UDPEndpoint(a, AF_INET)
    s.connect((B4, 9))
    la.drop = lambda et, p: True
    s.send(b"x")
    quote = wire.quote(la.sent[-1][1])
    b.route(A4).send(1, IcmpMessage(11, 0, wire.NO_REST, quote))     # TTL exceeded: soft
    assert s.take_error() == 0
    b.route(A4).send(1, IcmpMessage(3, 13, wire.NO_REST, quote))     # filtered: hard
    assert s.take_error() == errno.EHOSTUNREACH
    assert "admin_prohibited" in HARD_ERRORS and "time_exceeded" not in HARD_ERRORS


def test_reuseaddr_ping_sockets_share():
    a, _, _, _ = joined_stacks()
    p = PingEndpoint(a, AF_INET)
    p.setsockopt(SOL_SOCKET, SO_REUSEADDR, 1)
    p.bind((LOOPBACK4, 77))
    q = PingEndpoint(a, AF_INET)
    q.setsockopt(SOL_SOCKET, SO_REUSEADDR, 1)
    q.bind((LOOPBACK4, 77))
    assert q.getsockname() == (LOOPBACK4, 77)
