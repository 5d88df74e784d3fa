"""The 9P2000.L codec: exact wire bytes, round trips of every message, and
garbage in (random, truncated, mutated) only ever raising P9Error."""
import dataclasses
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


NINE_P_2000_L = ["version", "auth", "attach", "walk", "getattr", "setattr", "lopen", "lcreate", "read",
                 "write", "readdir", "mkdir", "mknod", "symlink", "readlink", "link", "rename",
                 "renameat", "unlinkat", "statfs", "fsync", "lock", "getlock", "xattrwalk",
                 "xattrcreate", "flush", "clunk", "remove"]


def test_the_whole_9p2000l_message_set():
    names = {cls.__name__ for cls in p9.MESSAGES.values()}
    for op in NINE_P_2000_L:
        assert "T" + op in names and "R" + op in names, op
    assert names == {"T" + op for op in NINE_P_2000_L} | {"R" + op for op in NINE_P_2000_L} | {"Rlerror"}
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
    # the messages added last, byte for byte as Linux's net/9p/client.c lays them out
    assert p9.encode(2, p9.Tlock(7, p9.LOCK_TYPE_WRLCK, p9.LOCK_FLAGS_BLOCK, 10, 0, 4242, b"host")) == (
        struct.pack("<IBHIBIQQIH", 42, 52, 2, 7, 1, 1, 10, 0, 4242, 4) + b"host")
    assert p9.encode(2, p9.Rlock(p9.LOCK_BLOCKED)) == b"\x08\x00\x00\x00\x35\x02\x00\x01"
    assert p9.encode(3, p9.Tgetlock(7, 0, 1, 2, 3, b"")) == struct.pack("<IBHIBQQIH", 34, 54, 3, 7, 0, 1, 2, 3, 0)
    assert p9.encode(3, p9.Rgetlock(2, 1, 2, 3, b"c")) == struct.pack("<IBHBQQIH", 31, 55, 3, 2, 1, 2, 3, 1) + b"c"
    assert p9.encode(4, p9.Txattrcreate(9, b"user.a", 5, p9.XATTR_CREATE)) == (
        struct.pack("<IBHIH", 31, 32, 4, 9, 6) + b"user.a" + struct.pack("<QI", 5, 1))
    assert p9.encode(4, p9.Rxattrcreate()) == b"\x07\x00\x00\x00\x21\x04\x00"
    assert p9.encode(5, p9.Txattrwalk(1, 2, b"")) == struct.pack("<IBHIIH", 17, 30, 5, 1, 2, 0)
    assert p9.encode(5, p9.Rxattrwalk(2**33)) == struct.pack("<IBHQ", 15, 31, 5, 2**33)


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


def test_records_behave_as_the_dataclasses_they_replace():
    qid = p9.Qid(0x80, 7, 9)
    assert repr(qid) == "Qid(type=128, version=7, path=9)"
    assert qid == p9.Qid(0x80, 7, 9) and qid != p9.Qid(0x80, 7, 10) and qid != (0x80, 7, 9)
    assert hash(qid) == hash(p9.Qid(0x80, 7, 9)) and {qid: 1}[p9.Qid(0x80, 7, 9)] == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        qid.path = 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        del p9.Dirent(qid, 1, 4, b"a").name
    assert repr(p9.Dirent(qid, 1, 4, b"a")) == f"Dirent(qid={qid!r}, offset=1, type=4, name=b'a')"
    walk = p9.Twalk(1, 2, (b"a", b"b"))
    assert repr(walk) == "Twalk(fid=1, newfid=2, wnames=(b'a', b'b'))" and repr(p9.Rclunk()) == "Rclunk()"
    assert walk == p9.Twalk(fid=1, newfid=2, wnames=(b"a", b"b")) and walk != p9.Twalk(1, 3, (b"a", b"b"))
    assert p9.Tclunk(1) != p9.Tremove(1)  # same fields, another message
    with pytest.raises(TypeError):
        hash(walk)  # mutable records: unhashable, as a dataclass with eq
    with pytest.raises(TypeError):
        p9.Tclunk()
    with pytest.raises(AttributeError):
        walk.other = 1  # slots: fields only
    walk.fid = 5
    assert walk.fid == 5


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


# --- the server's buffered reader -------------------------------------------------

def reader_over(chunks, max_size=1 << 16):
    """A MessageReader fed chunks by a writer thread (writer closes after)."""
    a, b = socket.socketpair()
    b.settimeout(5)

    def write():
        for c in chunks:
            a.sendall(c)
        a.close()
    writer = threading.Thread(target=write)
    writer.start()
    return p9.MessageReader(b, max_size), writer, b


def drain(reader):
    frames = []
    try:
        while True:
            got = reader.read(wait=True)
            if got is None:
                return frames, None
            frames.extend(got)
    except p9.P9Error as e:
        return frames, e


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(tags, any_message), min_size=1, max_size=8), st.data())
def test_reader_finds_every_message_however_the_stream_is_cut(msgs, data):
    wire = [p9.encode(t, m) for t, m in msgs]
    stream = b"".join(wire)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    chunks = [stream[i:j] for i, j in zip([0] + cuts, cuts + [len(stream)]) if j > i]
    reader, writer, sock = reader_over(chunks)
    try:
        frames, err = drain(reader)
    finally:
        writer.join()
        sock.close()
    assert err is None and frames == wire


@pytest.mark.parametrize("tail", [
    struct.pack("<I", 3) + b"abc",         # size below the header
    struct.pack("<I", 1 << 30),            # above max_size
    p9.encode(1, p9.Tclunk(1))[:-2],       # EOF inside a message
    b"\x20\x00",                           # EOF inside the size field
])
def test_reader_returns_the_good_messages_before_a_break(tail):
    good = [p9.encode(i, p9.Tclunk(i)) for i in range(3)]
    reader, writer, sock = reader_over([b"".join(good) + tail])
    try:
        frames, err = drain(reader)
    finally:
        writer.join()
        sock.close()
    assert frames == good and isinstance(err, p9.P9Error)


def test_reader_without_waiting():
    a, b = socket.socketpair()
    try:
        reader = p9.MessageReader(b, 1 << 16)
        assert reader.read(wait=False) == []
        msg = p9.encode(1, p9.Tclunk(1))
        a.sendall(msg[:5])
        assert reader.read(wait=False) == []  # half a message is not one
        a.sendall(msg[5:] + msg)
        got = reader.read(wait=False)
        assert got in ([msg, msg], [msg])
        if len(got) == 1:
            assert reader.read(wait=False) == [msg]
        a.close()
        assert reader.read(wait=True) is None
    finally:
        b.close()


# --- the client facing a broken server ------------------------------------------------

@settings(max_examples=150, deadline=None)
@given(st.one_of(st.binary(max_size=64),
                 st.tuples(tags, any_message).map(lambda tm: p9.encode(*tm)),
                 st.tuples(any_message, st.integers(0, 40)).map(lambda mc: p9.encode(1, mc[0])[:mc[1]])))
def test_client_turns_any_reply_into_a_result_or_eio(reply):
    """Whatever bytes come back (then EOF), a request ends: with its reply,
    an errno from Rlerror, or EIO for anything that makes no sense. Never a
    hang, never another exception."""
    import errno
    from vfs.gofer.client import GoferClient
    a, b = socket.socketpair()
    b.settimeout(5)

    def serve():
        try:
            a.recv(1 << 16)
            a.sendall(reply)
        finally:
            a.close()
    t = threading.Thread(target=serve)
    t.start()
    c = GoferClient(b)
    try:
        try:
            r = c.getattr(1)
        except OSError as e:
            if c.broken:
                assert e.errno == errno.EIO
            else:  # only a well-formed Rlerror on our tag keeps the session
                assert p9.decode(reply) == (1, p9.Rlerror(e.errno))
        else:
            assert p9.decode(reply)[0] == 1 and isinstance(r, p9.Rgetattr)
    finally:
        t.join()
        b.close()
