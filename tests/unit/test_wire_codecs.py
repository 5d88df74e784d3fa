"""The netstack's byte codecs (netstack/wire): checksum against RFC 1071's
definition and the host kernel, build/parse round trips, and fuzzing (no
parser raises anything but Malformed).

The kernel tests send our packets through raw sockets on the loopback
interface (root only: skipped without CAP_NET_RAW): Linux drops a UDP
datagram or ICMP echo whose checksum is wrong, so delivery proves ours
right, and the replies it builds are parsed by our codecs."""
from __future__ import annotations

import os
import select
import socket
import struct
import time

import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from netstack.core import Malformed
from netstack.wire import arp, checksum as ck, ethernet, icmp, ipv4, ipv6, udp
from netstack_testkit import raw_socket

SETTINGS = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

LO4 = bytes((127, 0, 0, 1))
LO6 = bytes(15) + b"\x01"
addr4 = st.binary(min_size=4, max_size=4)
addr6 = st.binary(min_size=16, max_size=16)
mac = st.binary(min_size=6, max_size=6)
u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)


# ---------------------------------------------------------------- checksum

def reference_sum(data: bytes, initial: int = 0) -> int:
    """RFC 1071 4.1, word by word with end-around carry."""
    if len(data) % 2:
        data += b"\x00"
    s = initial
    for i in range(0, len(data), 2):
        s += (data[i] << 8) | data[i + 1]
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


@SETTINGS
@given(st.binary(max_size=3000), st.integers(0, 0xFFFFFFFF))
def test_checksum_matches_reference(data, initial):
    assert ck.ones_sum(data, initial) == reference_sum(data, initial)
    assert ck.checksum(data, initial) == ~reference_sum(data, initial) & 0xFFFF
    assert ck.checksum(memoryview(data), initial) == ck.checksum(data, initial)


@SETTINGS
@given(st.binary(max_size=400))
def test_checksum_negative_zero_edges(data):
    # all-zero words and sums that are nonzero multiples of 0xFFFF are where
    # a modulo shortcut goes wrong
    for d in (bytes(len(data)), data + b"\xff\xff", b"\xff\xff" * len(data)):
        assert ck.checksum(d) == ~reference_sum(d) & 0xFFFF


def test_checksum_known_vectors():
    # RFC 1071 section 3's example: the words sum to 0xddf2
    assert ck.ones_sum(bytes.fromhex("0001f203f4f5f6f7")) == 0xDDF2
    assert ck.checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D
    # A real IPv4 header (192.168.0.1 -> 192.168.0.199, UDP, DF), checksum b861
    header = bytes.fromhex("450000730000400040 11b861c0a80001c0a800c7".replace(" ", ""))
    assert ck.checksum(header) == 0
    hdr, payload = ipv4.parse(header + bytes(0x73 - 20))
    assert (hdr.df, hdr.ttl, hdr.proto, hdr.total_length) == (True, 64, 17, 0x73)
    assert ipv4.build(hdr, payload)[:20] == header


@SETTINGS
@given(addr4 | addr6, addr4 | addr6, u8, st.integers(0, 0xFFFF), st.binary(max_size=97))
@example(bytes(4), b"\xff" * 4, 0, 0, b"")   # addresses summing to ones'-complement negative zero
def test_pseudo_sum_is_the_pseudo_header_sum(src, dst, proto, length, body):
    dst = dst[:len(src)] if len(dst) >= len(src) else dst + bytes(len(src) - len(dst))
    if len(src) == 4:
        pseudo = src + dst + struct.pack("!BBH", 0, proto, length)
    else:
        pseudo = src + dst + struct.pack("!I3xB", length, proto)
    assert ck.checksum(body, ck.pseudo_sum(src, dst, proto, length)) == \
        ~reference_sum(pseudo + body) & 0xFFFF


# ---------------------------------------------------------------- ethernet, ARP

@SETTINGS
@given(mac, mac, st.sampled_from([ethernet.ETH_P_IP, ethernet.ETH_P_ARP,
                                  ethernet.ETH_P_IPV6, 0x88CC]),
       st.binary(max_size=100))
def test_ethernet_round_trip(dst, src, et, payload):
    frame = ethernet.build(dst, src, et, payload)
    assert len(frame) == ethernet.HEADER + len(payload)
    assert ethernet.parse(frame) == (dst, src, et, payload)


def test_ethernet_rejects():
    with pytest.raises(Malformed, match="eth.short"):
        ethernet.parse(bytes(13))
    with pytest.raises(Malformed, match="eth.vlan_tagged"):
        ethernet.parse(ethernet.build(ethernet.BROADCAST, bytes(6), 0x8100, bytes(50)))
    with pytest.raises(Malformed, match="eth.not_ethernet_ii"):
        ethernet.parse(ethernet.build(ethernet.BROADCAST, bytes(6), 46, bytes(46)))
    assert ethernet.is_multicast(ethernet.BROADCAST)
    assert not ethernet.is_multicast(b"\x02" + bytes(5))


@SETTINGS
@given(st.sampled_from([arp.REQUEST, arp.REPLY]), mac, addr4, mac, addr4,
       st.binary(max_size=18))
def test_arp_round_trip(op, sha, spa, tha, tpa, padding):
    pkt = arp.ArpPacket(op, sha, spa, tha, tpa)
    data = pkt.encode()
    assert len(data) == arp.LENGTH
    assert arp.parse(data + padding) == pkt      # Ethernet pads to 46 bytes


def test_arp_rejects_other_kinds():
    good = arp.ArpPacket(arp.REQUEST, bytes(6), bytes(4), bytes(6), bytes(4)).encode()
    for offset, value, name in ((1, 6, "arp.unsupported"),      # IEEE 802 htype
                                (2, 0x86, "arp.unsupported"),   # ptype
                                (4, 8, "arp.unsupported"),      # hlen
                                (5, 16, "arp.unsupported"),     # plen
                                (7, 3, "arp.bad_op")):          # RARP request
        bad = bytearray(good)
        bad[offset] = value
        with pytest.raises(Malformed, match=name):
            arp.parse(bytes(bad))
    with pytest.raises(Malformed, match="arp.short"):
        arp.parse(good[:27])


# ---------------------------------------------------------------- IPv4

@st.composite
def ipv4_options(draw):
    """A well-formed option list padded with EOL to a multiple of 4."""
    out = b""
    for _ in range(draw(st.integers(0, 4))):
        if draw(st.booleans()):
            out += b"\x01"
        else:
            t = draw(st.sampled_from([0x07, 0x44, 0x82, 0x86, 0x88, 0x94]))
            body = draw(st.binary(max_size=6))
            out += bytes((t, len(body) + 2)) + body
    out = out[:36] if len(out) <= 36 else b""
    return out + bytes(-len(out) % 4)


@st.composite
def ipv4_headers(draw, options=True):
    return ipv4.IPv4Header(
        tos=draw(u8), ident=draw(u16), df=draw(st.booleans()),
        mf=draw(st.booleans()), frag_offset=draw(st.integers(0, 0x1FFF)) * 8,
        ttl=draw(u8), proto=draw(u8), src=draw(addr4), dst=draw(addr4),
        options=draw(ipv4_options()) if options else b"")


@SETTINGS
@given(ipv4_headers(), st.binary(max_size=300), st.binary(max_size=30))
def test_ipv4_round_trip(hdr, payload, padding):
    packet = ipv4.build(hdr, payload)
    assert len(packet) == hdr.header_length + len(payload)
    assert ck.checksum(packet[:hdr.header_length]) == 0
    got, got_payload = ipv4.parse(packet + padding)    # link padding trimmed
    hdr.total_length = len(packet)
    assert got == hdr
    assert got_payload == payload


def test_ipv4_rejects():
    hdr = ipv4.IPv4Header(0, 1, False, False, 0, 64, 17, LO4, LO4)
    good = ipv4.build(hdr, b"x" * 10)

    def patched(offset, value):
        b = bytearray(good)
        b[offset] = value
        b[10:12] = b"\0\0"
        b[10:12] = ck.checksum(bytes(b[:20])).to_bytes(2, "big")
        return bytes(b)

    cases = [(good[:19], "ipv4.short"), (patched(0, 0x65), "ipv4.bad_version"),
             (patched(0, 0x44), "ipv4.bad_ihl"), (patched(3, 31), "ipv4.bad_length"),
             (patched(3, 19), "ipv4.bad_length"), (good[:29], "ipv4.bad_length"),
             (good[:11] + bytes([good[11] ^ 1]) + good[12:], "ipv4.bad_checksum")]
    # a header with options: an option running past the header's end
    opt = ipv4.build(ipv4.IPv4Header(0, 1, False, False, 0, 64, 17, LO4, LO4,
                                     options=b"\x01\x07\x08\x00"), b"")
    cases.append((opt, "ipv4.bad_options"))
    lsrr = ipv4.build(ipv4.IPv4Header(0, 1, False, False, 0, 64, 17, LO4, LO4,
                                      options=b"\x83\x07\x04" + LO4 + b"\x00"), b"")
    cases.append((lsrr, "ipv4.source_route"))
    for data, name in cases:
        with pytest.raises(Malformed, match=name):
            ipv4.parse(data)


def test_ipv4_build_limits():
    hdr = ipv4.IPv4Header(0, 1, False, False, 0, 64, 17, LO4, LO4)
    assert len(ipv4.build(hdr, bytes(65515))) == 65535
    with pytest.raises(OSError) as e:
        ipv4.build(hdr, bytes(65516))
    assert e.value.errno == 90      # EMSGSIZE


# ---------------------------------------------------------------- IPv6

@st.composite
def ipv6_headers(draw):
    return ipv6.IPv6Header(tclass=draw(u8), flow=draw(st.integers(0, 0xFFFFF)),
                           hop_limit=draw(u8),
                           next_header=draw(st.sampled_from([6, 17, 58, 59, 132])),
                           src=draw(addr6), dst=draw(addr6))


def opts_header(nh: int, options: bytes = b"") -> bytes:
    """A hop-by-hop or destination options header padded with PadN."""
    pad = -(len(options) + 2) % 8
    if pad == 1:
        options += b"\x00"
    elif pad:
        options += bytes((1, pad - 2)) + bytes(pad - 2)
    return bytes((nh, (len(options) + 2) // 8 - 1)) + options


def routing_header(nh: int, rtype: int, segs_left: int) -> bytes:
    return bytes((nh, 2, rtype, segs_left)) + bytes(4) + bytes(16)


def frag_header(nh: int, offset: int, more: bool, ident: int) -> bytes:
    return struct.pack("!BBHI", nh, 0, offset | more, ident)


def v6packet(first_nh: int, payload: bytes, src=LO6, dst=LO6) -> bytes:
    return ipv6.build(ipv6.IPv6Header(0, 0, 64, first_nh, src, dst), payload)


@SETTINGS
@given(ipv6_headers(), st.binary(max_size=300), st.binary(max_size=30))
def test_ipv6_round_trip(hdr, payload, padding):
    packet = ipv6.build(hdr, payload)
    got, got_payload = ipv6.parse(packet + padding)
    hdr.payload_length = len(payload)
    assert got == hdr and got.frag is None
    assert got_payload == payload


@SETTINGS
@given(ipv6_headers(), st.binary(min_size=1, max_size=200),
       st.integers(0, 0x1FFF), st.booleans(), st.integers(0, 0xFFFFFFFF))
def test_ipv6_fragment_round_trip(hdr, data, offset8, more, ident):
    offset = offset8 * 8
    packet = ipv6.build_fragment(hdr, data, offset, more, ident)
    got, got_payload = ipv6.parse(packet)
    if offset == 0 and not more:     # an atomic fragment: no reassembly
        assert got.frag is None
    else:
        assert got.frag == (offset, more, ident)
    assert got.next_header == hdr.next_header
    assert got_payload == data


def test_ipv6_extension_headers_walked():
    udp_bytes = udp.Datagram(1, 2, b"hi").encode(LO6, LO6)
    router_alert = b"\x05\x02\x00\x00"
    skip_me = b"\x1e\x02ab"         # unknown option, action 00: skip
    chain = (opts_header(43, router_alert + skip_me)       # hop-by-hop
             + routing_header(60, 0, 0)                     # RH0, no hops left
             + opts_header(44)                              # dest options
             + frag_header(17, 0, False, 9))                # atomic fragment
    hdr, payload = ipv6.parse(v6packet(0, chain + udp_bytes))
    assert (hdr.next_header, hdr.frag, payload) == (17, None, udp_bytes)
    # a real fragment stops the walk: what follows is fragment data
    hdr, payload = ipv6.parse(v6packet(60, opts_header(44) + frag_header(60, 0, True, 5)
                                       + opts_header(17) + udp_bytes))
    assert (hdr.next_header, hdr.frag) == (60, (0, True, 5))
    assert ipv6.walk(hdr.next_header, payload) == (17, udp_bytes)
    hdr, payload = ipv6.parse(v6packet(59, b"ignored"))
    assert hdr.next_header == 59


@pytest.mark.parametrize("first,chain,name", [
    (0, opts_header(0) + opts_header(17), "ipv6.hbh_not_first"),
    (60, opts_header(0) + opts_header(17), "ipv6.hbh_not_first"),
    (43, routing_header(17, 0, 2), "ipv6.routing_header"),      # RH0 naming hops
    (43, routing_header(17, 2, 1), "ipv6.routing_header"),      # hops left: not ours
    (43, routing_header(17, 4, 0), "ipv6.routing_header"),      # SRH: seg6 is off
    (60, opts_header(17, b"\x80\x01x"), "ipv6.unknown_option"),  # action 10
    (0, opts_header(17, b"\xc2\x04\x00\x01\x00\x00"), "ipv6.unknown_option"),  # jumbo
    (60, opts_header(17, b"\x01\x09"), "ipv6.bad_options"),     # PadN past the end
    (60, b"\x11\x01" + bytes(6), "ipv6.short_ext"),             # says 16 bytes, has 8
    (44, b"\x11\x00\x00", "ipv6.short_ext"),
])
def test_ipv6_bad_extension_headers(first, chain, name):
    with pytest.raises(Malformed, match=name):
        ipv6.parse(v6packet(first, chain))


def test_ipv6_nested_fragment_after_reassembly():
    with pytest.raises(Malformed, match="ipv6.nested_fragment"):
        ipv6.walk(44, frag_header(17, 8, True, 1) + bytes(8))


def test_ipv6_rejects():
    good = v6packet(17, bytes(8))
    with pytest.raises(Malformed, match="ipv6.short"):
        ipv6.parse(good[:39])
    with pytest.raises(Malformed, match="ipv6.bad_version"):
        ipv6.parse(b"\x40" + good[1:])
    with pytest.raises(Malformed, match="ipv6.bad_length"):
        ipv6.parse(good[:47])


# ---------------------------------------------------------------- UDP

@SETTINGS
@given(st.one_of(st.tuples(addr4, addr4), st.tuples(addr6, addr6)), u16, u16,
       st.binary(max_size=300), st.binary(max_size=20))
def test_udp_round_trip(addrs, sport, dport, payload, padding):
    src, dst = addrs
    data = udp.Datagram(sport, dport, payload).encode(src, dst)
    assert len(data) == 8 + len(payload)
    assert data[6:8] != b"\x00\x00"     # a computed 0 goes out as 0xFFFF
    assert udp.parse(data + padding, src, dst) == udp.Datagram(sport, dport, payload)
    bad = bytearray(data)
    bad[-1 if payload else 0] ^= 0x40
    with pytest.raises(Malformed, match="udp.bad_checksum"):
        udp.parse(bytes(bad), src, dst)
    with pytest.raises(Malformed, match="udp.bad_checksum"):
        udp.parse(data, bytes((src[0] ^ 1,)) + src[1:], dst)   # other pseudo-header


def zero_checksum_datagram(src, dst, sport, dport, payload):
    """A datagram whose checksum computes to 0: its last two payload bytes
    chosen to make the ones'-complement sum 0xFFFF."""
    payload = payload[:len(payload) & ~1] + b"\0\0"
    length = 8 + len(payload)
    s = ck.ones_sum(struct.pack("!HHH", sport, dport, length) + payload,
                    ck.pseudo_sum(src, dst, 17, length))
    fix = 0xFFFF - s
    return udp.Datagram(sport, dport, payload[:-2] + fix.to_bytes(2, "big"))


@SETTINGS
@given(st.one_of(st.tuples(addr4, addr4), st.tuples(addr6, addr6)), u16, u16,
       st.binary(max_size=100))
def test_udp_computed_zero_is_sent_as_ffff(addrs, sport, dport, payload):
    src, dst = addrs
    d = zero_checksum_datagram(src, dst, sport, dport, payload)
    data = d.encode(src, dst)
    assert data[6:8] == b"\xff\xff"
    assert udp.parse(data, src, dst) == d


def test_udp_zero_checksum_and_lengths():
    raw4 = struct.pack("!HHHH", 1, 2, 12, 0) + b"abcd"
    assert udp.parse(raw4, LO4, LO4).payload == b"abcd"     # none, on IPv4
    with pytest.raises(Malformed, match="udp.zero_checksum"):
        udp.parse(raw4, LO6, LO6)
    with pytest.raises(Malformed, match="udp.short"):
        udp.parse(raw4[:7], LO4, LO4)
    with pytest.raises(Malformed, match="udp.bad_length"):
        udp.parse(raw4[:11], LO4, LO4)
    with pytest.raises(Malformed, match="udp.bad_length"):
        udp.parse(struct.pack("!HHHH", 1, 2, 7, 0), LO4, LO4)
    with pytest.raises(OSError):
        udp.Datagram(1, 2, bytes(65528)).encode(LO4, LO4)


# ---------------------------------------------------------------- ICMP

@SETTINGS
@given(st.one_of(st.tuples(addr4, addr4), st.tuples(addr6, addr6)), u8, u8,
       st.binary(min_size=4, max_size=4), st.binary(max_size=300))
def test_icmp_round_trip(addrs, type_, code, rest, body):
    src, dst = addrs
    msg = icmp.IcmpMessage(type_, code, rest, body)
    data = msg.encode(src, dst)
    assert icmp.parse(data, src, dst) == msg
    bad = bytearray(data)
    bad[len(bad) // 2] ^= 0x10
    with pytest.raises(Malformed, match="icmp6?.bad_checksum"):
        icmp.parse(bytes(bad), src, dst)


def test_icmp_fields_and_quote():
    echo = icmp.IcmpMessage(icmp.ECHO_REQUEST, 0, icmp.echo_rest(0x1234, 0x10005), b"")
    assert (echo.ident, echo.seq) == (0x1234, 5)
    assert icmp.IcmpMessage(icmp.DEST_UNREACH, icmp.FRAG_NEEDED,
                            icmp.mtu_rest(1400, False)).mtu == 1400
    assert icmp.IcmpMessage(icmp.PACKET_TOO_BIG6, 0,
                            icmp.mtu_rest(70000, True)).mtu == 70000
    assert icmp.is_error(icmp.DEST_UNREACH, False) and not icmp.is_error(icmp.ECHO_REQUEST, False)
    assert icmp.is_error(icmp.PACKET_TOO_BIG6, True) and not icmp.is_error(icmp.ECHO_REPLY6, True)
    big4 = ipv4.build(ipv4.IPv4Header(0, 1, False, False, 0, 64, 17, LO4, LO4), bytes(2000))
    big6 = v6packet(17, bytes(2000))
    assert icmp.quote(big4) == big4[:548]    # an error stays within 576 bytes
    assert icmp.quote(big6) == big6[:1232]   # within the IPv6 minimum MTU
    assert 20 + 8 + len(icmp.quote(big4)) == 576
    assert 40 + 8 + len(icmp.quote(big6)) == 1280
    assert icmp.quote(big4[:40]) == big4[:40]
    assert icmp.quote(big4, 28) == big4[:28]    # RFC 792's header + 8 bytes
    with pytest.raises(Malformed, match="icmp.short"):
        icmp.parse(bytes(7), LO4, LO4)


@SETTINGS
@given(st.lists(st.tuples(st.integers(1, 255), st.binary(max_size=40)),
                max_size=5, unique_by=lambda o: o[0]))
def test_ndp_options_round_trip(options):
    data = icmp.build_ndp_options(options)
    assert len(data) % 8 == 0
    got = icmp.ndp_options(data)
    assert set(got) == {t for t, _ in options}
    for t, value in options:
        assert got[t][:len(value)] == value
        assert not got[t][len(value):].strip(b"\0")
        assert (len(got[t]) + 2) % 8 == 0


def test_ndp_neighbor_messages():
    target = bytes.fromhex("fe80000000000000021122fffe334455")
    ns = icmp.neighbor_message(icmp.NEIGHBOR_SOLICIT, target, b"\x02" * 6)
    wire = ns.encode(LO6, LO6)
    got = icmp.parse(wire, LO6, LO6)
    assert icmp.parse_neighbor(got) == (target, {icmp.OPT_SOURCE_LLADDR: b"\x02" * 6})
    na = icmp.neighbor_message(icmp.NEIGHBOR_ADVERT, target, b"\x04" * 6,
                               icmp.NA_SOLICITED | icmp.NA_OVERRIDE)
    got = icmp.parse(na.encode(LO6, LO6), LO6, LO6)
    assert got.rest[0] == 0x60
    assert icmp.parse_neighbor(got) == (target, {icmp.OPT_TARGET_LLADDR: b"\x04" * 6})
    assert icmp.parse_neighbor(icmp.neighbor_message(icmp.NEIGHBOR_SOLICIT, target)) \
        == (target, {})
    for bad in (b"\x01\x00" + bytes(6), b"\x01\x02" + bytes(6), b"\x01"):
        with pytest.raises(Malformed, match="ndp.bad_option"):
            icmp.ndp_options(bad)
    with pytest.raises(Malformed, match="ndp.short"):
        icmp.parse_neighbor(icmp.IcmpMessage(icmp.NEIGHBOR_SOLICIT, 0, bytes(4), bytes(15)))


# ---------------------------------------------------------------- fuzzing

def parse_all(data: bytes) -> None:
    """Every parser on data: anything but Malformed escapes."""
    for fn in (ethernet.parse, arp.parse, ipv4.parse, ipv6.parse,
               icmp.ndp_options, lambda d: ipv6.walk(d[0] if d else 0, d[1:])):
        try:
            fn(data)
        except Malformed:
            pass
    for src, dst in ((LO4, LO4), (LO6, LO6)):
        for fn in (udp.parse, icmp.parse):
            try:
                fn(data, src, dst)
            except Malformed:
                pass


@FUZZ
@given(st.binary(max_size=200))
def test_fuzz_arbitrary_bytes(data):
    parse_all(data)


@st.composite
def valid_packets(draw):
    """A valid packet of some layer, for mutation."""
    kind = draw(st.sampled_from(["eth", "arp", "ipv4", "ipv6", "ipv6ext", "udp", "icmp"]))
    payload = draw(st.binary(max_size=60))
    if kind == "eth":
        return ethernet.build(draw(mac), draw(mac), ethernet.ETH_P_IP, payload)
    if kind == "arp":
        return arp.ArpPacket(arp.REQUEST, draw(mac), draw(addr4), bytes(6), draw(addr4)).encode()
    if kind == "ipv4":
        return ipv4.build(draw(ipv4_headers()), payload)
    if kind == "ipv6":
        return ipv6.build(draw(ipv6_headers()), payload)
    if kind == "ipv6ext":
        chain = (opts_header(60, b"\x05\x02\x00\x00") + opts_header(44)
                 + frag_header(17, draw(st.integers(0, 10)) * 8, draw(st.booleans()), 7))
        return v6packet(0, chain + payload)
    src = draw(st.sampled_from([LO4, LO6]))
    if kind == "udp":
        return udp.Datagram(draw(u16), draw(u16), payload).encode(src, src)
    return icmp.IcmpMessage(draw(u8), draw(u8), bytes(4),
                            icmp.build_ndp_options([(1, payload)])).encode(src, src)


@FUZZ
@given(valid_packets(), st.lists(st.tuples(st.integers(0, 200), u8), max_size=4),
       st.integers(0, 300), st.binary(max_size=8))
def test_fuzz_mutated_packets(packet, flips, cut, tail):
    data = bytearray(packet)
    for pos, value in flips:
        if data:
            data[pos % len(data)] = value
    parse_all(bytes(data[:cut]) + tail)
    parse_all(bytes(data))


# ---------------------------------------------------------------- the host kernel

def udp_receiver(family, host):
    u = socket.socket(family, socket.SOCK_DGRAM)
    u.bind((host, 0))
    u.settimeout(2)
    return u


@pytest.mark.parametrize("family,host,addr", [(socket.AF_INET, "127.0.0.1", LO4),
                                              (socket.AF_INET6, "::1", LO6)])
def test_kernel_accepts_our_udp_checksums(family, host, addr):
    """Linux delivers our datagrams (a computed-zero checksum too) and drops
    the one whose checksum we broke."""
    with raw_socket(family, socket.IPPROTO_UDP) as raw, udp_receiver(family, host) as u:
        port = u.getsockname()[1]
        bad = bytearray(udp.Datagram(4000, port, b"broken").encode(addr, addr))
        bad[-1] ^= 1
        raw.sendto(bytes(bad), (host, 0))
        sent = [os.urandom(33), b"", zero_checksum_datagram(addr, addr, 4000, port,
                                                            os.urandom(20)).payload]
        for payload in sent:
            data = udp.Datagram(4000, port, payload).encode(addr, addr)
            raw.sendto(data, (host, 0))
        assert [u.recv(100) for _ in sent] == sent      # the broken one never came
        assert udp.Datagram(4000, port, sent[2]).encode(addr, addr)[6:8] == b"\xff\xff"


def icmp_echo_ignored(v6: bool) -> bool:
    path = "/proc/sys/net/ipv%d/icmp/echo_ignore_all" % (6 if v6 else 4)
    try:
        with open(path) as f:
            return f.read().strip() != "0"
    except OSError:
        return False


def await_echo_reply(sock, v6, ident, seqs):
    """(seq, message) of echo replies with our ident until one of seqs came;
    the kernel's reply, header and all, goes through our parsers."""
    deadline = time.monotonic() + 2
    seen = []
    while time.monotonic() < deadline:
        if not select.select([sock], [], [], 0.2)[0]:
            continue
        data, frm = sock.recvfrom(4096)
        if not v6:
            hdr, data = ipv4.parse(data)
            assert (hdr.src, hdr.dst, hdr.proto) == (LO4, LO4, 1)
        if data[0] != (icmp.ECHO_REPLY6 if v6 else icmp.ECHO_REPLY):
            continue        # our own requests come by too
        msg = icmp.parse(data, LO6, LO6) if v6 else icmp.parse(data, LO4, LO4)
        if msg.ident == ident:
            seen.append((msg.seq, msg))
            if msg.seq in seqs:
                return seen
    pytest.fail("no echo reply from the kernel")


@pytest.mark.parametrize("v6", [False, True])
def test_kernel_answers_our_echo_and_we_parse_its_reply(v6):
    if icmp_echo_ignored(v6):
        pytest.skip("the host ignores echo requests")
    family, host = (socket.AF_INET6, "::1") if v6 else (socket.AF_INET, "127.0.0.1")
    addr = LO6 if v6 else LO4
    request = icmp.ECHO_REQUEST6 if v6 else icmp.ECHO_REQUEST
    with raw_socket(family, socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP) as raw:
        ident = int.from_bytes(os.urandom(2), "big")
        body = os.urandom(56)
        if not v6:
            # (a raw ICMPv6 socket has the kernel compute the checksum, so only
            # IPv4 shows the kernel rejecting a bad one of ours)
            bad = bytearray(icmp.IcmpMessage(request, 0, icmp.echo_rest(ident, 1),
                                             body).encode(addr, addr))
            bad[-1] ^= 1
            raw.sendto(bytes(bad), (host, 0))
        raw.sendto(icmp.IcmpMessage(request, 0, icmp.echo_rest(ident, 2), body)
                   .encode(addr, addr), (host, 0))
        seen = await_echo_reply(raw, v6, ident, {2})
        assert [seq for seq, _ in seen] == [2]
        assert seen[0][1].body == body
