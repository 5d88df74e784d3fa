"""The 9P2000.L codec: exact wire bytes, round trips of every message, and
garbage in (random, truncated, mutated) only ever raising P9Error."""
import socket
import struct
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vfs.gofer import p9

qids = st.builds(p9.Qid, st.integers(0, 0xFF), st.integers(0, 0xFFFFFFFF), st.integers(0, 2**64 - 1))
KIND_STRATEGIES = {
    "U8": st.integers(0, 0xFF),
    "U16": st.integers(0, 0xFFFF),
    "U32": st.integers(0, 0xFFFFFFFF),
    "U64": st.integers(0, 2**64 - 1),
    "QID": qids,
    "STR": st.binary(max_size=300),
    "DATA": st.binary(max_size=3000),
    "STRS": st.lists(st.binary(max_size=40), max_size=20).map(tuple),
    "QIDS": st.lists(qids, max_size=20).map(tuple),
}


def message_strategy(cls):
    return st.builds(cls, **{name: KIND_STRATEGIES[repr(kind)] for name, kind in cls.FIELDS})


any_message = st.sampled_from(sorted(p9.MESSAGES.values(), key=lambda c: c.TYPE)).flatmap(message_strategy)
tags = st.integers(0, 0xFFFF)


def test_every_operation_the_gofer_uses_has_both_messages():
    names = {cls.__name__ for cls in p9.MESSAGES.values()}
    for op in ["version", "attach", "walk", "getattr", "setattr", "lopen", "lcreate", "read", "write",
               "readdir", "readlink", "mkdir", "symlink", "mknod", "link", "unlinkat", "renameat",
               "rename", "fsync", "statfs", "clunk", "remove", "flush", "xattrwalk", "auth"]:
        assert "T" + op in names and "R" + op in names, op
    assert "Rlerror" in names
    for cls in p9.MESSAGES.values():
        if cls.__name__.startswith("T"):
            assert p9.MESSAGES[cls.TYPE + 1].__name__ == "R" + cls.__name__[1:]


def test_known_wire_bytes():
    assert p9.encode(p9.NOTAG, p9.Tversion(8192, b"9P2000.L")) == (
        b"\x15\x00\x00\x00\x64\xff\xff\x00\x20\x00\x00\x08\x009P2000.L")
    assert p9.encode(1, p9.Twalk(1, 2, (b"ab",))) == (
        struct.pack("<IBHIIH", 21, 110, 1, 1, 2, 1) + b"\x02\x00ab")
    assert p9.encode(3, p9.Rlerror(2)) == b"\x0b\x00\x00\x00\x07\x03\x00\x02\x00\x00\x00"
    qid = p9.Qid(0x80, 7, 0x0102030405060708)
    assert p9.encode(0, p9.Rattach(qid)) == (
        b"\x14\x00\x00\x00\x69\x00\x00\x80\x07\x00\x00\x00\x08\x07\x06\x05\x04\x03\x02\x01")
    rgetattr = p9.Rgetattr(0x7FF, qid, *range(18))
    assert len(p9.encode(0, rgetattr)) == 7 + 8 + 13 + 3 * 4 + 15 * 8
    assert p9.encode(9, p9.Rclunk()) == b"\x07\x00\x00\x00\x79\x09\x00"
    assert p9.encode(1, p9.Tread(5, 2**40, 100)) == struct.pack("<IBHIQI", 23, 116, 1, 5, 2**40, 100)


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(tags, any_message)
def test_round_trip(tag, msg):
    wire = p9.encode(tag, msg)
    assert struct.unpack_from("<I", wire)[0] == len(wire)
    assert wire[4] == msg.TYPE
    assert p9.decode(wire) == (tag, msg)


@pytest.mark.parametrize("cls", sorted(p9.MESSAGES.values(), key=lambda c: c.TYPE),
                         ids=lambda c: c.__name__)
def test_round_trip_each_type(cls):
    @settings(max_examples=25)
    @given(tags, message_strategy(cls))
    def check(tag, msg):
        assert p9.decode(p9.encode(tag, msg)) == (tag, msg)
    check()


@settings(max_examples=300)
@given(tags, any_message, st.data())
def test_truncated_messages_raise_p9error(tag, msg, data):
    wire = p9.encode(tag, msg)
    cut = data.draw(st.integers(0, len(wire) - 1))
    with pytest.raises(p9.P9Error):
        p9.decode(wire[:cut])  # size field no longer matches
    if cut >= 7:
        patched = struct.pack("<I", cut) + wire[4:cut]  # size agrees, body short
        with pytest.raises(p9.P9Error):
            p9.decode(patched)


@settings(max_examples=300)
@given(tags, any_message, st.binary(min_size=1, max_size=8))
def test_trailing_bytes_raise_p9error(tag, msg, extra):
    wire = p9.encode(tag, msg) + extra
    with pytest.raises(p9.P9Error):
        p9.decode(struct.pack("<I", len(wire)) + wire[4:])


def decode_or_p9error(buf):
    try:
        p9.decode(buf)
    except p9.P9Error:
        pass


@settings(max_examples=1000)
@given(st.binary(max_size=200))
def test_random_bytes_only_raise_p9error(buf):
    decode_or_p9error(buf)


@settings(max_examples=500)
@given(st.sampled_from(sorted(p9.MESSAGES)), st.binary(max_size=200))
def test_random_bodies_with_valid_header_only_raise_p9error(type_, body):
    decode_or_p9error(struct.pack("<IBH", 7 + len(body), type_, 1) + body)


@settings(max_examples=500)
@given(tags, any_message, st.data())
def test_mutated_messages_only_raise_p9error(tag, msg, data):
    wire = bytearray(p9.encode(tag, msg))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(wire) - 1))
        wire[i] = data.draw(st.integers(0, 255))
    decode_or_p9error(bytes(wire))


@settings(max_examples=300)
@given(st.lists(st.builds(p9.Dirent, qids, st.integers(0, 2**64 - 1), st.integers(0, 255),
                          st.binary(max_size=60)), max_size=10))
def test_dirents_round_trip(entries):
    data = p9.encode_dirents(entries)
    assert len(data) == sum(p9.dirent_size(d.name) for d in entries)
    assert p9.decode_dirents(data) == entries


@settings(max_examples=500)
@given(st.binary(max_size=120))
def test_random_dirent_data_only_raises_p9error(data):
    try:
        p9.decode_dirents(data)
    except p9.P9Error:
        pass


@pytest.mark.parametrize("msg", [
    p9.Tversion(2**32, b"9P2000.L"),
    p9.Tflush(-1),
    p9.Twalk(1, 2, (b"x" * 70000,)),
    p9.Rwalk(tuple([p9.Qid(0, 0, 0)] * 70000)),
    p9.Tattach(1, 2, "text, not bytes", b"", 0),
    p9.Rattach(None),
])
def test_unencodable_values_raise_p9error(msg):
    with pytest.raises(p9.P9Error):
        p9.encode(1, msg)


def test_unknown_type_and_short_header():
    with pytest.raises(p9.P9Error):
        p9.decode(struct.pack("<IBH", 7, 99, 0))
    with pytest.raises(p9.P9Error):
        p9.decode(b"\x07\x00\x00")


# --- framing over a real socket -------------------------------------------

def read_all_frames(payload: bytes, max_size: int = 1 << 16):
    """Feed payload through a socketpair (writer closes) and read frames
    until EOF or P9Error; a reader thread never outlives the timeout."""
    a, b = socket.socketpair()
    b.settimeout(5)
    writer = threading.Thread(target=lambda: (a.sendall(payload), a.close()))
    writer.start()
    frames = []
    try:
        while True:
            frame = p9.read_message(b, max_size)
            if frame is None:
                return frames, None
            frames.append(frame)
    except p9.P9Error as e:
        return frames, e
    finally:
        writer.join()
        b.close()


def test_framing_reads_whole_messages_then_eof():
    msgs = [p9.encode(i, p9.Tclunk(i)) for i in range(5)] + [p9.encode(9, p9.Rread(b"x" * 5000))]
    frames, err = read_all_frames(b"".join(msgs))
    assert err is None and frames == msgs


@pytest.mark.parametrize("payload", [
    struct.pack("<I", 3) + b"abc",               # size below the header
    struct.pack("<I", 1 << 30),                  # above max_size
    p9.encode(1, p9.Tclunk(1))[:-2],            # EOF inside a message
    b"\x20\x00",                                 # EOF inside the size field
])
def test_framing_errors_are_p9error(payload):
    _, err = read_all_frames(payload)
    assert isinstance(err, p9.P9Error)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300))
def test_framing_random_streams_end(payload):
    frames, _ = read_all_frames(payload)
    assert sum(len(f) for f in frames) <= len(payload)


def test_fd_travels_with_message():
    import os
    a, b = socket.socketpair()
    r, w = os.pipe()
    try:
        p9.send_message(a, p9.encode(1, p9.Rlopen(p9.Qid(0, 0, 1), 0)), r)
        fds = []
        frame = p9.read_message(b, 1 << 16, fds)
        assert p9.decode(frame)[1] == p9.Rlopen(p9.Qid(0, 0, 1), 0)
        assert len(fds) == 1
        os.write(w, b"ping")
        assert os.read(fds[0], 4) == b"ping"
        os.close(fds[0])
    finally:
        for fd in (r, w):
            os.close(fd)
        a.close()
        b.close()
