"""The TCP header codec: round trips, the checksum against a word-by-word
reference, every Malformed reason, and fuzzing (hypothesis): random and
mutated bytes only ever raise Malformed."""
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netstack.core import Malformed
from netstack.wire import tcp
from netstack.wire.tcp import ACK, FIN, PSH, RST, SYN, Segment

SRC4, DST4 = bytes((10, 0, 0, 1)), bytes((10, 0, 0, 2))
SRC6 = bytes.fromhex("fd000000000000000000000000000001")
DST6 = bytes.fromhex("fd000000000000000000000000000002")


def ref_checksum(data: bytes, src: bytes, dst: bytes) -> int:
    """RFC 1071 the slow way, over the pseudo header and the segment."""
    if len(src) == 4:
        pseudo = src + dst + struct.pack("!BBH", 0, 6, len(data))
    else:
        pseudo = src + dst + struct.pack("!I3xB", len(data), 6)
    buf = pseudo + data
    if len(buf) & 1:
        buf += b"\0"
    s = 0
    for i in range(0, len(buf), 2):
        s += (buf[i] << 8) | buf[i + 1]
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def test_checksum_matches_reference_and_verifies():
    for src, dst in ((SRC4, DST4), (SRC6, DST6)):
        for payload in (b"", b"a", b"hello world!", bytes(range(256)) * 3 + b"x"):
            s = Segment(1234, 80, 0xDEADBEEF, 0x01020304, ACK | PSH, 512, payload,
                        ts=(7, 9))
            wire = s.encode(src, dst)
            field = struct.unpack_from("!H", wire, 16)[0]
            zeroed = wire[:16] + b"\0\0" + wire[18:]
            assert field == ref_checksum(zeroed, src, dst)
            assert tcp.parse(wire, src, dst) == s
            with pytest.raises(Malformed, match="tcp.bad_checksum"):
                tcp.parse(wire, src, bytes(reversed(dst)))


def test_syn_options_layout_and_round_trip():
    s = Segment(40000, 5000, 1, 0, SYN, 65535, ts=(100, 0), mss=1460, wscale=7,
                sack_ok=True)
    wire = s.encode(SRC4, DST4)
    assert len(wire) == 40                       # 20 + MSS 4 + SACKOK/TS 12 + NOP WS 4
    assert wire[20:24] == bytes((2, 4, 0x05, 0xB4))
    assert wire[24:26] == bytes((4, 2)) and wire[26:28] == bytes((8, 10))
    assert wire[36:40] == bytes((1, 3, 3, 7))
    assert tcp.parse(wire, SRC4, DST4) == s


def test_sack_blocks_round_trip():
    s = Segment(1, 2, 3, 4, ACK, 100, ts=(1, 2), sack=((10, 20), (30, 40), (50, 60)))
    back = tcp.parse(s.encode(SRC4, DST4), SRC4, DST4)
    assert back.sack == ((10, 20), (30, 40), (50, 60)) and back.ts == (1, 2)


def _raw(off_words=5, flags=ACK, opts=b"", payload=b"", src=SRC4, dst=DST4, bad_sum=False):
    h = bytearray(struct.pack("!HHIIBBHHH", 1, 2, 3, 4, off_words << 4, flags, 10, 0, 0))
    data = bytes(h) + opts + payload
    c = ref_checksum(data, src, dst) ^ (1 if bad_sum else 0)
    return data[:16] + struct.pack("!H", c) + data[18:]


@pytest.mark.parametrize("data,reason", [
    (b"\0" * 19, "tcp.short"),
    (_raw(off_words=4), "tcp.bad_offset"),
    (_raw(off_words=6), "tcp.bad_offset"),           # header longer than the data
    (_raw(bad_sum=True), "tcp.bad_checksum"),
    (_raw(flags=SYN | FIN), "tcp.bad_flags"),
    (_raw(flags=SYN | RST), "tcp.bad_flags"),
    (_raw(off_words=6, opts=bytes((1, 2, 4, 5))), "tcp.bad_options"),       # truncated MSS
    (_raw(off_words=6, opts=bytes((2, 3, 5, 0))), "tcp.bad_options"),       # MSS length 3
    (_raw(off_words=6, opts=bytes((30, 1, 0, 0))), "tcp.bad_options"),      # length < 2
    (_raw(off_words=6, opts=bytes((30, 9, 0, 0))), "tcp.bad_options"),      # past the header
    (_raw(off_words=6, opts=bytes((1, 1, 1, 8))), "tcp.bad_options"),       # TS cut short
    (_raw(off_words=7, opts=bytes((5, 6, 0, 0, 0, 0, 0, 0))), "tcp.bad_options"),  # SACK of 4
])
def test_malformed_reasons(data, reason):
    with pytest.raises(Malformed) as e:
        tcp.parse(data, SRC4, DST4)
    assert str(e.value) == reason


def test_unknown_options_skipped_and_eol_ends():
    opts = bytes((30, 4, 9, 9, 0, 99, 99, 99))        # unknown kind, then EOL + junk
    s = tcp.parse(_raw(off_words=7, opts=opts, payload=b"data"), SRC4, DST4)
    assert s.payload == b"data" and s.mss is None and s.ts is None


u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
segments = st.builds(
    Segment, u16, u16, u32, u32,
    st.integers(0, 255).filter(lambda f: not (f & SYN and f & (FIN | RST))),
    u16, st.binary(max_size=300),
    ts=st.none() | st.tuples(u32, u32),
    sack=st.lists(st.tuples(u32, u32), max_size=3).map(tuple),
    urg=u16,
    mss=st.none() | u16,
    wscale=st.none() | st.integers(0, 255),
    sack_ok=st.booleans(),
).filter(lambda s: len(s.options()) <= 40)


@settings(max_examples=200, deadline=None)
@given(segments, st.booleans())
def test_round_trip(s, v6):
    src, dst = (SRC6, DST6) if v6 else (SRC4, DST4)
    assert tcp.parse(s.encode(src, dst), src, dst) == s


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=120))
def test_random_bytes_only_malformed(data):
    try:
        tcp.parse(data, SRC4, DST4)
    except Malformed:
        pass


@settings(max_examples=200, deadline=None)
@given(segments, st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)),
                          min_size=1, max_size=6),
       st.integers(0, 20))
def test_mutated_bytes_only_malformed(s, edits, cut):
    """Corrupt a valid segment (and fix its checksum up, so the option and
    length checks behind it are reached): parse returns or raises Malformed."""
    wire = bytearray(s.encode(SRC4, DST4))
    for pos, val in edits:
        if pos < len(wire):
            wire[pos] = val
    if cut:
        del wire[-cut:]
    wire[16:18] = b"\0\0"
    if len(wire) >= 18:
        wire[16:18] = struct.pack("!H", ref_checksum(bytes(wire), SRC4, DST4))
    try:
        back = tcp.parse(bytes(wire), SRC4, DST4)
    except Malformed:
        return
    assert isinstance(back.payload, bytes)
