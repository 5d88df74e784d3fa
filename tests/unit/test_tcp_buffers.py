"""The connection's byte queues against simple models (hypothesis): the
send queue's peek/ack by sequence number, the receive queue's reads and
peeks, and out-of-order reassembly from arbitrary overlapping pieces."""
from hypothesis import given, settings
from hypothesis import strategies as st

from netstack.tcp.buffers import Reassembly, RecvQueue, SendQueue
from netstack.tcp.rto import RTO, RTO_MAX, RTO_MIN, model_timeout

BASE = 2**32 - 1000       # unwrapped sequence numbers pass 2**32 freely


@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=20000), min_size=1, max_size=20),
       st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(1, 70000)), max_size=20),
       st.lists(st.integers(0, 1 << 20), max_size=10))
def test_send_queue_peek_and_ack(writes, peeks, acks):
    q = SendQueue(BASE)
    model = b"".join(writes)
    for w in writes:
        q.append(w)
    assert len(q) == len(model) and q.end == BASE + len(model)
    base = 0
    for a in sorted(acks):
        for off, n in peeks:
            off = base + off % (len(model) - base + 1)
            n = min(n, len(model) - off)
            if n > 0:
                assert bytes(q.peek(BASE + off, n)) == model[off:off + n]
        a = min(a, len(model))
        if a > base:
            q.ack(BASE + a)
            base = a
            assert q.base == BASE + a and len(q) == len(model) - a


@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=5000), max_size=20),
       st.lists(st.tuples(st.integers(0, 9000), st.booleans()), max_size=30))
def test_recv_queue_reads_in_order(chunks, reads):
    q = RecvQueue()
    model = bytearray()
    for c in chunks:
        q.append(memoryview(c) if len(c) % 2 else c)
        model += c
    for n, peek in reads:
        got = q.read(n, peek)
        assert got == bytes(model[:n])
        if not peek:
            del model[:n]
        assert q.size == len(model)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 3000), st.lists(st.tuples(st.integers(0, 3000), st.integers(1, 400)),
                                       max_size=40))
def test_reassembly_from_overlapping_pieces(size, pieces):
    data = bytes((i * 13) & 0xFF for i in range(size))
    r = Reassembly()
    nxt = BASE
    out = b""
    for off, n in pieces + [(0, size)]:
        off %= size
        piece = data[off:off + n]
        if BASE + off + len(piece) <= nxt:
            continue
        if BASE + off > nxt:
            r.add(BASE + off, piece)
            assert r.size == sum(e - s for s, e, _ in r.ranges)
            assert r.blocks(4)[0][0] <= BASE + off < r.blocks(4)[0][1]
            continue
        # in order: what the connection does, then pull what follows
        cut = nxt - (BASE + off)
        out += piece[cut:]
        nxt = BASE + off + len(piece)
        chunks, nxt = r.pop_ready(nxt)
        out += b"".join(bytes(c) for c in chunks)
    assert out == data[:len(out)] and nxt == BASE + len(out)
    assert len(out) == size and not r


def test_rto_follows_rfc6298_with_linux_floor():
    r = RTO()
    assert r.rto == 1_000_000_000
    r.sample(100_000_000)                  # 100 ms: srtt 100, rttvar 50
    assert r.rto == 100_000_000 + max(200_000_000, RTO_MIN)
    r.sample(100_000_000)
    assert r.srtt == 100_000_000
    r.back_off()
    r.back_off()
    assert r.rto == 4 * r.base
    for _ in range(20):
        r.back_off()
    assert r.rto == RTO_MAX
    r.sample(1_000_000)
    assert r.backoff == 0
    assert model_timeout(15, RTO_MIN) == 924_600_000_000
    assert model_timeout(6, 1_000_000_000) == 127_000_000_000
