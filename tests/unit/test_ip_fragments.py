"""IPv4/IPv6 fragmentation and reassembly (netstack/ipv4.py, ipv6.py):
fragments reassembled in any order, duplicates ignored, overlaps discard
the datagram, limits on size, count, memory and time; and against Linux:
it reassembles our fragments and we reassemble its (root only)."""
from __future__ import annotations

import errno
import json
import os
import random
import shutil
import socket
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from netstack import ipv4, ipv6
from netstack.wire import ethernet, udp
from netstack.wire import ipv4 as w4
from netstack.wire import ipv6 as w6

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
LO4 = bytes((127, 0, 0, 1))
LO6 = bytes(15) + b"\x01"
A4, B4 = bytes((10, 0, 0, 1)), bytes((10, 0, 0, 2))
A6, B6 = bytes.fromhex("fd00" + "00" * 13 + "01"), bytes.fromhex("fd00" + "00" * 13 + "02")
SEC = 1_000_000_000

# an option list: security (copied, 11 bytes), NOP, record route (not
# copied, 7 bytes), EOL padding
OPTIONS = bytes((0x82, 11)) + bytes(9) + b"\x01" + bytes((0x07, 7, 4)) + bytes(4) + bytes(5)
assert len(OPTIONS) % 4 == 0


def hdr4(ident=1, proto=17, df=False, options=b"", src=A4, dst=B4):
    return w4.IPv4Header(0, ident, df, False, 0, 64, proto, src, dst, options)


def hdr6(nh=17, src=A6, dst=B6):
    return w6.IPv6Header(0, 0, 64, nh, src, dst)


def frag4(offset, data, more, ident=1, proto=17):
    """A received IPv4 fragment as parse returns it."""
    h = hdr4(ident, proto)
    h.frag_offset, h.mf = offset, more
    return w4.parse(w4.build(h, data))


def frag6(offset, data, more, ident=1, nh=17):
    return w6.parse(w6.build_fragment(hdr6(nh), data, offset, more, ident))


def feed(r, packets, now=0, family=4):
    """Parse each packet and add it; the results that completed a datagram."""
    parse = w4.parse if family == 4 else w6.parse
    done = []
    for p in packets:
        h, data = parse(p)
        res = r.add(h, data, now)
        if res is not None:
            done.append(res)
    return done


# ---------------------------------------------------------------- any order

@SETTINGS
@given(st.integers(0, 5000), st.integers(68, 1500), st.booleans(), st.data())
def test_ipv4_fragments_reassemble_in_any_order(size, mtu, with_options, data):
    payload = random.Random(size).randbytes(size)
    hdr = hdr4(ident=data.draw(st.integers(0, 0xFFFF)),
               options=OPTIONS if with_options else b"")
    packets = ipv4.fragment(hdr, payload, mtu)
    copied = OPTIONS[:11] + b"\x00"     # only security has the copy bit, EOL-padded
    assert all(len(p) <= mtu for p in packets)
    expect_offset = 0
    for i, p in enumerate(packets):
        h, d = w4.parse(p)
        assert h.frag_offset == expect_offset
        assert h.mf == (i < len(packets) - 1)
        if h.mf:
            assert len(d) % 8 == 0
        # the first carries all options, the rest only the copied ones
        assert h.options == (hdr.options if i == 0 or not with_options else copied)
        expect_offset += len(d)
    assert expect_offset == size
    order = data.draw(st.permutations(range(len(packets))))
    r = ipv4.Reassembler(lambda: 0, max_fragments_per_packet=len(packets))
    if len(packets) == 1:
        assert w4.parse(packets[0]) == (w4.IPv4Header(
            0, hdr.ident, False, False, 0, 64, 17, A4, B4, hdr.options,
            len(packets[0])), payload)
        return
    done = feed(r, [packets[i] for i in order])
    assert len(done) == 1
    got, got_payload = done[0]
    assert got_payload == payload
    assert (got.mf, got.frag_offset, got.ident, got.options, got.src, got.dst) == \
        (False, 0, hdr.ident, hdr.options, A4, B4)
    assert got.total_length == got.header_length + size
    assert len(r) == 0 and r.used == 0
    assert r.stats["ipv4.frag_reassembled"] == 1


@SETTINGS
@given(st.integers(1, 9000), st.integers(1280, 2000), st.data())
def test_ipv6_fragments_reassemble_in_any_order(size, mtu, data):
    payload = random.Random(size).randbytes(size)
    ident = data.draw(st.integers(0, 0xFFFFFFFF))
    packets = ipv6.fragment6(hdr6(), payload, mtu, ident)
    assert all(len(p) <= mtu for p in packets)
    if 40 + size <= mtu:
        assert packets == [w6.build(hdr6(), payload)]
        return
    order = data.draw(st.permutations(range(len(packets))))
    r = ipv6.Reassembler6(lambda: 0)
    done = feed(r, [packets[i] for i in order], family=6)
    assert len(done) == 1
    got, got_payload = done[0]
    assert got_payload == payload
    assert (got.next_header, got.frag, got.src, got.dst, got.payload_length) == \
        (17, None, A6, B6, size)
    assert len(r) == 0 and r.used == 0


def test_ipv6_headers_after_the_fragment_header_are_walked():
    """Destination options belong to the fragmentable part: walked once the
    datagram is whole."""
    dgram = udp.Datagram(1, 2, os.urandom(3000)).encode(A6, B6)
    inner = bytes((17, 0, 1, 4)) + bytes(4) + dgram       # dest options, PadN
    packets = ipv6.fragment6(hdr6(nh=60), inner, 1280, 7)
    done = feed(ipv6.Reassembler6(lambda: 0), packets[::-1], family=6)
    got, got_payload = done[0]
    assert got.next_header == 17 and got_payload == dgram
    assert udp.parse(got_payload, got.src, got.dst).payload == dgram[8:]


def test_fragmenting_a_fragment_composes():
    """A fragment fragmented again (a router would) keeps its offsets and
    only the final piece of the final fragment clears MF."""
    payload = os.urandom(3000)
    big = ipv4.fragment(hdr4(), payload, 1500)
    small = []
    for p in big:
        h, d = w4.parse(p)
        small += ipv4.fragment(h, d, 576)
    assert len(small) > len(big)
    done = feed(ipv4.Reassembler(lambda: 0), small[::-1])
    assert done[0][1] == payload


def test_fragments_of_different_datagrams_do_not_mix():
    r = ipv4.Reassembler(lambda: 0)
    one, two = os.urandom(2000), os.urandom(2000)
    a = ipv4.fragment(hdr4(ident=5), one, 1000)
    b = ipv4.fragment(hdr4(ident=5, proto=6), two, 1000)     # same ident, other proto
    c = ipv4.fragment(hdr4(ident=5, src=B4), two, 1000)      # other source
    interleaved = [p for trio in zip(a, b, c) for p in trio]
    done = feed(r, interleaved)
    assert sorted(d for _, d in done) == sorted([one, two, two])
    assert {(h.proto, h.src) for h, _ in done} == {(17, A4), (6, A4), (17, B4)}


# ---------------------------------------------------------------- duplicates, overlaps

def test_duplicates_are_ignored():
    payload = os.urandom(4000)
    packets = ipv4.fragment(hdr4(), payload, 1000)
    r = ipv4.Reassembler(lambda: 0)
    assert feed(r, packets[:-1] + packets[:-1]) == []
    assert r.stats["ipv4.frag_duplicate"] == len(packets) - 1
    # data already held across two fragments is a duplicate too
    h, d = frag4(8, payload[8:984], True)
    assert r.add(h, d, 0) is None
    assert r.stats["ipv4.frag_duplicate"] == len(packets)
    assert feed(r, packets[-1:])[0][1] == payload


@pytest.mark.parametrize("first,second", [
    ((0, 16, True), (8, 24, True)),      # overlaps the end of held data
    ((8, 24, True), (0, 16, True)),      # overlaps its start
    ((8, 16, True), (0, 24, True)),      # contains it
    ((0, 16, True), (8, 12, False)),     # a last fragment ending inside held data
    ((16, 24, False), (8, 24, False)),   # two last fragments, different starts
])
def test_overlap_discards_the_datagram(first, second):
    for family in (4, 6):
        r = ipv4.Reassembler(lambda: 0)
        make = frag4 if family == 4 else frag6
        pfx = "ipv4." if family == 4 else "ipv6."
        body = os.urandom(64)
        for offset, end, more in (first, second):
            res = r.add(*make(offset, body[offset:end], more), 0)
            assert res is None
        assert len(r) == 0 and r.used == 0
        assert r.stats[pfx + "frag_overlap"] + r.stats[pfx + "frag_bad_length"] == 1
        # what remains of the datagram cannot complete it any more
        assert r.add(*make(24, body[24:32], False), 0) is None
        assert len(r) == 1


def test_inconsistent_lengths_discard_the_datagram():
    r = ipv4.Reassembler(lambda: 0)
    body = bytes(64)
    r.add(*frag4(16, body[:8], False), 0)          # ends at 24
    r.add(*frag4(24, body[:8], True), 0)           # data past the end
    assert len(r) == 0 and r.stats["ipv4.frag_bad_length"] == 1
    r.add(*frag4(32, body[:8], True), 0)
    r.add(*frag4(8, body[:8], False), 0)           # last, but data lies beyond
    assert len(r) == 0 and r.stats["ipv4.frag_bad_length"] == 2
    r.add(*frag4(8, body[:8], False), 0)
    r.add(*frag4(0, body[:8], False), 0)           # a second, different end
    assert len(r) == 0 and r.stats["ipv4.frag_bad_length"] == 3


def test_empty_and_unaligned_fragments():
    r = ipv4.Reassembler(lambda: 0)
    assert r.add(*frag4(8, b"", True), 0) is None
    assert len(r) == 0 and r.stats["ipv4.frag_empty"] == 1
    # IPv4: a non-final fragment's odd tail is trimmed (as Linux does)
    body = os.urandom(32)
    assert r.add(*frag4(0, body[:13], True), 0) is None
    got = r.add(*frag4(8, body[8:20], False), 0)
    assert got[1] == body[:20]
    # IPv6: RFC 8200 says such a fragment is in error; it is dropped
    r6 = ipv6.Reassembler6(lambda: 0)
    assert r6.add(*frag6(0, body[:13], True), 0) is None
    assert len(r6) == 0 and r6.stats["ipv6.frag_unaligned"] == 1


# ---------------------------------------------------------------- limits

def test_datagram_larger_than_65535_is_dropped():
    r = ipv4.Reassembler(lambda: 0)
    r.add(*frag4(0, bytes(8), True), 0)
    assert r.add(*frag4(65528 - 16, bytes(24), False), 0) is None   # 20 + 65536
    assert len(r) == 0 and r.stats["ipv4.frag_too_big"] == 1
    r6 = ipv6.Reassembler6(lambda: 0)
    r6.add(*frag6(0, bytes(8), True), 0)
    assert r6.add(*frag6(65528, bytes(16), False), 0) is None
    assert len(r6) == 0 and r6.stats["ipv6.frag_too_big"] == 1
    # the largest legal one goes through
    payload = os.urandom(65535 - 20)
    assert feed(ipv4.Reassembler(lambda: 0),
                ipv4.fragment(hdr4(), payload, 9000)[::-1])[0][1] == payload


def test_fragment_count_is_bounded():
    r = ipv4.Reassembler(lambda: 0, max_fragments_per_packet=4)
    for i in range(4):
        assert r.add(*frag4(16 * i, bytes(8), True), 0) is None
    assert len(r) == 1
    r.add(*frag4(64, bytes(8), True), 0)
    assert len(r) == 0 and r.stats["ipv4.frag_too_many"] == 1 and r.used == 0


def test_memory_is_bounded_oldest_evicted():
    r = ipv4.Reassembler(lambda: 0, limit_bytes=3 * (1000 + ipv4.Reassembler.OVERHEAD))
    payloads = [os.urandom(2000) for _ in range(4)]
    frags = [ipv4.fragment(hdr4(ident=i), p, 1020) for i, p in enumerate(payloads)]
    for f in frags:
        assert feed(r, f[:1]) == []
    assert r.stats["ipv4.frag_evicted"] == 1 and len(r) == 3
    assert r.used <= r.limit_bytes
    assert feed(r, frags[0][1:]) == []                  # the evicted one is gone
    assert feed(r, frags[3][1:])[0][1] == payloads[3]   # the newest completes


def test_timeout_reports_first_fragments_for_icmp():
    now = [0]
    r = ipv4.Reassembler(lambda: now[0], timeout_ns=30 * SEC)
    a = ipv4.fragment(hdr4(ident=1), os.urandom(3000), 1000)
    b = ipv4.fragment(hdr4(ident=2), os.urandom(3000), 1000)
    feed(r, a[:1], now=0)            # holds offset 0: worth a time exceeded
    feed(r, b[1:2], now=5 * SEC)     # does not (RFC 792/1122)
    assert r.next_deadline() == 30 * SEC
    assert r.expire(29 * SEC) == [] and len(r) == 2
    expired = r.expire()             # the clock, when not told the time
    assert expired == []
    now[0] = 30 * SEC
    expired = r.expire()
    assert len(expired) == 1 and len(r) == 1
    h, d = expired[0]
    assert ipv4.packet_of(h, d) == a[0]       # the packet to quote, rebuilt
    assert r.next_deadline() == 35 * SEC
    assert r.stats["ipv4.frag_timeout"] == 1
    # a fragment arriving late starts afresh; the stale one is reported later
    assert feed(r, b[:1] + b[2:], now=36 * SEC) == []
    assert r.stats["ipv4.frag_timeout"] == 2
    assert r.expire(36 * SEC) == []           # b held no offset 0
    assert len(r) == 1 and r.used > 0
    r.expire(100 * SEC)
    assert len(r) == 0 and r.used == 0 and r.next_deadline() is None


def test_ipv6_timeout_and_rebuilt_packet():
    r = ipv6.Reassembler6(lambda: 0)
    packets = ipv6.fragment6(hdr6(), os.urandom(3000), 1280, 99)
    feed(r, packets[:1], family=6)
    assert r.expire(59 * SEC) == []          # IPv6 waits 60 s, not 30
    (h, d), = r.expire(60 * SEC)
    assert ipv6.packet_of(h, d) == packets[0]
    assert r.stats["ipv6.frag_timeout"] == 1


@SETTINGS
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 40), st.integers(0, 30),
                          st.booleans(), st.integers(0, 3)), max_size=60))
def test_reassembler_fuzz_keeps_its_books(ops):
    """Random fragments of two datagrams: nothing raises but what is
    documented, memory accounting stays exact, and whatever completes is
    exactly the bytes that were sent."""
    truth = [random.Random(1).randbytes(400), random.Random(2).randbytes(400)]
    r = ipv4.Reassembler(lambda: 0, limit_bytes=2000, max_fragments_per_packet=8)
    now = 0
    for which, off8, size8, more, step in ops:
        now += step * 10 * SEC
        offset, end = off8 * 8, min(off8 * 8 + size8 * 8, 400)
        res = r.add(*frag4(offset, truth[which][offset:end], more, ident=which), now)
        if res is not None:
            h, d = res
            assert d == truth[which][:len(d)]
        assert r.used == sum(dg.size for dg in r._datagrams.values())
        assert r.used <= r.limit_bytes + 400 + r.OVERHEAD
        for dg in r._datagrams.values():
            spans = [(f[0], f[1]) for f in dg.frags]
            assert spans == sorted(spans)
            assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
    r.expire(now + 31 * SEC)
    assert len(r) == 0 and r.used == 0


# ---------------------------------------------------------------- sending limits

def test_df_and_size_limits():
    with pytest.raises(OSError) as e:
        ipv4.fragment(hdr4(df=True), bytes(1481), 1500)
    assert e.value.errno == errno.EMSGSIZE
    assert len(ipv4.fragment(hdr4(df=True), bytes(1480), 1500)) == 1
    with pytest.raises(OSError) as e:
        ipv4.fragment(hdr4(), bytes(65516), 1500)
    assert e.value.errno == errno.EMSGSIZE
    with pytest.raises(OSError) as e:
        ipv4.fragment(hdr4(options=OPTIONS), bytes(100), 50)   # no room for data
    assert e.value.errno == errno.EMSGSIZE
    with pytest.raises(OSError) as e:
        ipv6.fragment6(hdr6(), bytes(1300), 1280, 1, dontfrag=True)
    assert e.value.errno == errno.EMSGSIZE
    with pytest.raises(OSError) as e:
        ipv6.fragment6(hdr6(), bytes(65536), 1280, 1)
    assert e.value.errno == errno.EMSGSIZE
    assert len(ipv6.fragment6(hdr6(), bytes(65535), 1280, 1)) == 54


# ---------------------------------------------------------------- the host kernel

def raw_socket(family):
    try:
        return socket.socket(family, socket.SOCK_RAW, socket.IPPROTO_RAW)
    except PermissionError:
        pytest.skip("raw sockets need CAP_NET_RAW")


@pytest.mark.parametrize("v6", [False, True])
def test_kernel_reassembles_our_fragments(v6):
    """Our fragments sent in reverse order over loopback: Linux delivers the
    whole datagram to a UDP socket."""
    family, host, addr = ((socket.AF_INET6, "::1", LO6) if v6
                          else (socket.AF_INET, "127.0.0.1", LO4))
    with raw_socket(family) as raw, socket.socket(family, socket.SOCK_DGRAM) as u:
        u.bind((host, 0))
        u.settimeout(2)
        payload = os.urandom(5000)
        dgram = udp.Datagram(4000, u.getsockname()[1], payload).encode(addr, addr)
        ident = int.from_bytes(os.urandom(2), "big") | 1     # 0: the kernel's choice
        if v6:
            packets = ipv6.fragment6(w6.IPv6Header(0, 0, 64, 17, addr, addr), dgram,
                                     1280, ident)
        else:
            packets = ipv4.fragment(hdr4(ident, src=addr, dst=addr,
                                         options=OPTIONS[:12]), dgram, 576)
        assert len(packets) > 3
        for p in reversed(packets):
            raw.sendto(p, (host, 0))
        assert u.recv(6000) == payload


CAPTURE = r"""
import json, os, socket, subprocess
subprocess.run(["ip", "link", "set", "lo", "up", "mtu", "1280"], check=True)
cap = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
cap.bind(("lo", 0))
out = {"frames": []}
for fam, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
    u = socket.socket(fam, socket.SOCK_DGRAM)
    u.bind((host, 0))
    u.settimeout(2)
    data = os.urandom(4000)
    socket.socket(fam, socket.SOCK_DGRAM).sendto(data, (host, u.getsockname()[1]))
    assert u.recv(5000) == data
    out[str(fam)] = data.hex()
cap.setblocking(False)
while True:
    try:
        f, addr = cap.recvfrom(70000)
    except BlockingIOError:
        break
    if addr[2] != socket.PACKET_OUTGOING:
        out["frames"].append(f.hex())
print(json.dumps(out))
"""


def test_we_reassemble_the_kernels_fragments():
    """In a private network namespace whose loopback has a 1280-byte MTU,
    Linux fragments a 4000-byte UDP datagram of each family; the captured
    frames go through our Ethernet, IP and UDP parsers and reassembler."""
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        pytest.skip("needs root, unshare and ip")
    proc = subprocess.run(["unshare", "-n", sys.executable, "-c", CAPTURE],
                          capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        pytest.skip("no private network namespace: " + proc.stderr[-300:])
    out = json.loads(proc.stdout)
    r = ipv4.Reassembler(lambda: 0)
    whole = {}
    for frame in map(bytes.fromhex, out["frames"]):
        _, _, ethertype, packet = ethernet.parse(frame)
        if ethertype == ethernet.ETH_P_IP:
            h, data = w4.parse(packet)
            fragment = h.mf or h.frag_offset
        elif ethertype == ethernet.ETH_P_IPV6:
            h, data = w6.parse(packet)
            fragment = h.frag is not None
        else:
            continue
        assert fragment     # each family's datagram exceeds the MTU
        res = r.add(h, data, 0)
        if res is not None:
            h, data = res
            proto = h.proto if ethertype == ethernet.ETH_P_IP else h.next_header
            assert proto == 17
            whole[ethertype] = udp.parse(data, h.src, h.dst).payload
    assert whole == {ethernet.ETH_P_IP: bytes.fromhex(out[str(int(socket.AF_INET))]),
                     ethernet.ETH_P_IPV6: bytes.fromhex(out[str(int(socket.AF_INET6))])}
    assert r.stats["ipv4.frag_reassembled"] == r.stats["ipv6.frag_reassembled"] == 1


def test_malformed_reassembled_ipv6_is_counted_not_raised():
    # the fragmentable part starts with a routing header that names hops
    inner = bytes((17, 2, 4, 1)) + bytes(20) + bytes(3000)
    packets = ipv6.fragment6(hdr6(nh=43), inner, 1280, 3)
    r = ipv6.Reassembler6(lambda: 0)
    assert feed(r, packets, family=6) == []
    assert r.stats["ipv6.routing_header"] == 1 and len(r) == 0
