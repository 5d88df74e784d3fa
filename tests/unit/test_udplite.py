"""UDP-Lite (RFC 3828): the wire codec, the endpoint's checksum coverage
options and receive policy (Linux's udp_lib_setsockopt and
udp_queue_rcv_one_skb), its own port table, and interoperation with the
host kernel's UDP-Lite in both directions."""
import errno
import os
import socket
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netstack.core import (AF_INET, AF_INET6, IPPROTO_IP, LOOPBACK4, LOOPBACK6,
                           Malformed, WouldBlock, to_v6)
from netstack.stack import Stack
from netstack.udp import (SOL_UDP, SOL_UDPLITE, UDPLITE_RECV_CSCOV, UDPLITE_SEND_CSCOV,
                          UDPEndpoint, UDPLiteEndpoint)
from netstack.wire import ipv4 as wire4
from netstack.wire import ipv6 as wire6
from netstack.wire.udp import HEADER, IPPROTO_UDPLITE, LiteDatagram, parse_lite
from netstack_testkit import A4, A6, B4, B6, ManualClock, joined_stacks, raw_socket

LO = {AF_INET: LOOPBACK4, AF_INET6: LOOPBACK6}


@pytest.fixture
def stack():
    return Stack.with_loopback(ManualClock())


def lite(stack, family=AF_INET, addr=None, port=0, **cov):
    e = UDPLiteEndpoint(stack, family)
    if addr is not None:
        e.bind((addr, port))
    if "send" in cov:
        e.setsockopt(SOL_UDPLITE, UDPLITE_SEND_CSCOV, cov["send"])
    if "recv" in cov:
        e.setsockopt(SOL_UDPLITE, UDPLITE_RECV_CSCOV, cov["recv"])
    return e


def errno_of(fn, *args):
    with pytest.raises(OSError) as ei:
        fn(*args)
    return ei.value.errno


def received(ep):
    out = []
    while True:
        try:
            out.append(ep.recv(70000)[0])
        except WouldBlock:
            return out


# --- the codec ----------------------------------------------------------------

@settings(max_examples=200)
@given(payload=st.binary(max_size=300), cov=st.integers(0, 400), v6=st.booleans())
def test_codec_round_trip(payload, cov, v6):
    src, dst = (A6, B6) if v6 else (A4, B4)
    length = HEADER + len(payload)
    cov = 0 if cov == 0 else max(HEADER, min(cov, length))
    wire = LiteDatagram(4000, 5000, payload, cov).encode(src, dst)
    assert len(wire) == length
    assert struct.unpack_from("!HHH", wire) == (4000, 5000, cov)
    assert wire[6:8] != b"\0\0"                     # the checksum is never left out
    dg = parse_lite(wire, src, dst)
    assert (dg.sport, dg.dport, dg.payload, dg.cscov) == (4000, 5000, payload, cov)
    assert dg.partial == (0 < cov < length)


def test_coverage_bounds_what_the_checksum_protects():
    payload = bytes(range(40))
    wire = LiteDatagram(1, 2, payload, HEADER + 10).encode(A4, B4)
    outside = bytearray(wire)
    outside[HEADER + 20] ^= 0xFF                    # past the coverage: still fine
    assert parse_lite(bytes(outside), A4, B4).payload[20] == payload[20] ^ 0xFF
    inside = bytearray(wire)
    inside[HEADER + 5] ^= 0xFF
    with pytest.raises(Malformed, match="udplite.bad_checksum"):
        parse_lite(bytes(inside), A4, B4)
    # full coverage (0) protects everything; the pseudo-header counts too
    full = LiteDatagram(1, 2, payload, 0).encode(A4, B4)
    damaged = bytearray(full)
    damaged[-1] ^= 1
    with pytest.raises(Malformed, match="udplite.bad_checksum"):
        parse_lite(bytes(damaged), A4, B4)
    with pytest.raises(Malformed, match="udplite.bad_checksum"):
        parse_lite(full, A4, bytes((10, 0, 0, 3)))


@pytest.mark.parametrize("cov", [1, 7, 100])
def test_coverage_short_of_the_header_or_past_the_end_is_dropped(cov):
    wire = bytearray(LiteDatagram(1, 2, b"x" * 20, 0).encode(A4, B4))
    wire[4:6] = cov.to_bytes(2, "big")
    with pytest.raises(Malformed, match="udplite.bad_coverage"):
        parse_lite(bytes(wire), A4, B4)


def test_zero_checksum_and_short_packets_are_dropped():
    wire = bytearray(LiteDatagram(1, 2, b"abc", 0).encode(A4, B4))
    wire[6:8] = b"\0\0"
    with pytest.raises(Malformed, match="udplite.zero_checksum"):
        parse_lite(bytes(wire), A4, B4)
    with pytest.raises(Malformed, match="udplite.short"):
        parse_lite(b"\0" * 7, A4, B4)


# --- options -----------------------------------------------------------------

def test_coverage_options_follow_linux(stack):
    e = UDPLiteEndpoint(stack, AF_INET)
    assert e.protocol == IPPROTO_UDPLITE
    assert e.getsockopt(SOL_UDPLITE, UDPLITE_SEND_CSCOV) == 0
    for set_to, reads in ((3, 8), (-5, 8), (0, 0), (20, 20), (70000, 0xFFFF)):
        e.setsockopt(SOL_UDPLITE, UDPLITE_SEND_CSCOV, set_to)
        e.setsockopt(SOL_UDP, UDPLITE_RECV_CSCOV, set_to)      # SOL_UDP is the same level
        assert e.getsockopt(SOL_UDP, UDPLITE_SEND_CSCOV) == reads
        assert e.getsockopt(SOL_UDPLITE, UDPLITE_RECV_CSCOV) == reads
    assert errno_of(e.setsockopt, SOL_UDPLITE, 99, 1) == errno.ENOPROTOOPT
    assert errno_of(e.setsockopt, SOL_UDPLITE, UDPLITE_SEND_CSCOV, b"\1") == errno.EINVAL
    u = UDPEndpoint(stack, AF_INET)
    # a UDP socket reads the coverages as 0 but cannot set them
    assert u.getsockopt(SOL_UDP, UDPLITE_SEND_CSCOV) == 0
    assert errno_of(u.setsockopt, SOL_UDP, UDPLITE_SEND_CSCOV, 20) == errno.ENOPROTOOPT
    assert errno_of(u.setsockopt, SOL_UDP, UDPLITE_SEND_CSCOV, b"\1") == errno.EINVAL


# --- endpoints over loopback and over the wire ---------------------------------

@pytest.mark.parametrize("family", [AF_INET, AF_INET6])
def test_send_recv_and_own_port_table(stack, family):
    r = lite(stack, family, LO[family])
    port = r.getsockname()[1]
    # the same port is free for UDP: the tables are separate
    u = UDPEndpoint(stack, family)
    u.bind((LO[family], port))
    assert errno_of(lite(stack, family).bind, (LO[family], port)) == errno.EADDRINUSE
    s = lite(stack, family)
    assert s.send(b"hello", 0, (LO[family], port)) == 5
    assert r.recv(100) == (b"hello", 5, (LO[family], s.getsockname()[1]))
    with pytest.raises(WouldBlock):
        u.recv(100)
    assert r.last_info.proto == IPPROTO_UDPLITE


def test_dual_stack_socket_reaches_ipv4(stack):
    r = lite(stack, AF_INET, LOOPBACK4)
    s = lite(stack, AF_INET6)
    s.send(b"v4", 0, (to_v6(LOOPBACK4), r.getsockname()[1]))
    assert r.recv(10)[0] == b"v4"


def test_nobody_there_is_port_unreachable(stack):
    r = lite(stack, AF_INET, LOOPBACK4)
    port = r.getsockname()[1]
    r.close()
    s = lite(stack, AF_INET)
    s.connect((LOOPBACK4, port))
    s.send(b"x")
    assert s.take_error() == errno.ECONNREFUSED
    assert stack.stats["udplite.no_port"] == 1


@pytest.mark.parametrize("over_wire", [False, True])
def test_receive_policy_on_partial_coverage(over_wire):
    """Without UDPLITE_RECV_CSCOV anything valid arrives; with it, a
    partially covered datagram must cover at least that much, and 0 asks
    for full coverage."""
    if over_wire:
        a, b, _, _ = joined_stacks()
        dst, src_stack = B4, a
    else:
        a = b = Stack.with_loopback(ManualClock())
        dst, src_stack = LOOPBACK4, a
    plain = lite(b, AF_INET, dst)
    strict = lite(b, AF_INET, dst, recv=0)
    min30 = lite(b, AF_INET, dst, recv=30)
    min16 = lite(b, AF_INET, dst, recv=16)
    partial = lite(src_stack, AF_INET, send=20)
    whole = lite(src_stack, AF_INET, send=200)      # past the length: full coverage
    for r in (plain, strict, min30, min16):
        for s in (partial, whole):
            s.send(b"p" * 100 if s is partial else b"w" * 100, 0, (dst, r.getsockname()[1]))
    assert received(plain) == [b"p" * 100, b"w" * 100]
    assert received(strict) == [b"w" * 100]
    assert received(min30) == [b"w" * 100]
    assert received(min16) == [b"p" * 100, b"w" * 100]
    assert b.stats["udplite.coverage_drop"] == 2


def test_wire_form_carries_the_coverage():
    a, b, la, _ = joined_stacks()
    r = lite(b, AF_INET6, B6, 4000)
    s = lite(a, AF_INET6, A6, 4001, send=12)
    s.send(b"0123456789", 0, (B6, 4000))
    ethertype, pkt, _ = la.sent[-1]
    hdr, payload = wire6.parse(pkt)
    assert hdr.next_header == IPPROTO_UDPLITE
    dg = parse_lite(payload, A6, B6)
    assert (dg.sport, dg.dport, dg.cscov, dg.payload) == (4001, 4000, 12, b"0123456789")
    assert r.recv(100)[0] == b"0123456789"
    # a datagram shorter than the coverage goes out fully covered (length)
    s.setsockopt(SOL_UDPLITE, UDPLITE_SEND_CSCOV, 100)
    s.send(b"ab", 0, (B6, 4000))
    _, payload = wire6.parse(la.sent[-1][1])
    assert parse_lite(payload, A6, B6).cscov == HEADER + 2


# --- the host kernel -------------------------------------------------------------

def kernel_lite(family, host):
    try:
        u = socket.socket(family, socket.SOCK_DGRAM, IPPROTO_UDPLITE)
    except OSError as e:
        pytest.skip(f"no UDP-Lite in the host kernel: {e}")
    u.bind((host, 0))
    u.settimeout(2)
    return u


@pytest.mark.parametrize("family,host,addr", [(socket.AF_INET, "127.0.0.1", LOOPBACK4),
                                              (socket.AF_INET6, "::1", LOOPBACK6)])
def test_kernel_accepts_our_partial_coverage(family, host, addr):
    """Linux checks our checksum over exactly the coverage: a byte broken
    past it still arrives, one inside is dropped."""
    with raw_socket(family, IPPROTO_UDPLITE) as raw, kernel_lite(family, host) as u:
        u.setsockopt(SOL_UDPLITE, UDPLITE_RECV_CSCOV, 12)
        port = u.getsockname()[1]
        payload = os.urandom(30)
        wire = bytearray(LiteDatagram(4000, port, payload, HEADER + 4).encode(addr, addr))
        inside = bytearray(wire)
        inside[HEADER + 1] ^= 0xFF
        raw.sendto(bytes(inside), (host, 0))
        wire[HEADER + 10] ^= 0xFF
        raw.sendto(bytes(wire), (host, 0))
        raw.sendto(LiteDatagram(4000, port, b"whole", 0).encode(addr, addr), (host, 0))
        got = [u.recv(100), u.recv(100)]
        assert got == [bytes(wire[HEADER:]), b"whole"]


@pytest.mark.parametrize("family,host,addr", [(socket.AF_INET, "127.0.0.1", LOOPBACK4),
                                              (socket.AF_INET6, "::1", LOOPBACK6)])
def test_we_parse_the_kernels_partial_coverage(family, host, addr):
    with raw_socket(family, IPPROTO_UDPLITE) as raw, kernel_lite(family, host) as u:
        u.setsockopt(SOL_UDPLITE, UDPLITE_SEND_CSCOV, 13)
        dport = u.getsockname()[1] ^ 1 or 1
        payload = os.urandom(50)
        u.sendto(payload, (host, dport))
        for _ in range(20):
            pkt = raw.recv(70000)
            if family == socket.AF_INET:    # raw IPv4 sockets hand over the IP header
                _, pkt = wire4.parse(pkt)
            dg = parse_lite(pkt, addr, addr)
            if dg.dport == dport and dg.payload == payload:
                break
        else:
            pytest.fail("the kernel's datagram never showed")
        assert dg.cscov == 13 and dg.partial


def test_ip_level_options_still_work(stack):
    s = lite(stack, AF_INET)
    s.setsockopt(IPPROTO_IP, 2, 9)       # IP_TTL
    r = lite(stack, AF_INET, LOOPBACK4)
    s.send(b"t", 0, r.getsockname())
    r.recv(10)
    assert r.last_info.ttl == 9
