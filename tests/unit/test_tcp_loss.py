"""Loss, duplication and reordering injected on the link between two
stacks: each lost handshake or closing segment is recovered by
retransmission, lost data by fast retransmit or the RTO, and under random
impairment schedules (hypothesis) the bytes received always equal the
bytes sent."""
import errno

from hypothesis import given, settings
from hypothesis import strategies as st

from netstack.core import AF_INET, AF_INET6
from netstack.tcp import CLOSED, ESTABLISHED, SYN_RECV, SYN_SENT, TIME_WAIT
from netstack.wire.tcp import ACK, FIN, SYN
from tcp_harness import B4, B6, MS, SEC, Impairment, Pair, connect_pair, transfer


def drop_first(pred, times=1):
    """A drop hook discarding the first `times` segments matching pred."""
    left = [times]
    dropped = []

    def drop(seg):
        if left[0] and pred(seg):
            left[0] -= 1
            dropped.append(seg)
            return True
        return False
    drop.dropped = dropped
    return drop


def listener(p, port=5000, family=AF_INET):
    lst = p.b_tcp.endpoint(family)
    lst.bind((bytes(4 if family == AF_INET else 16), port))
    lst.listen(8)
    return lst


def test_lost_syn_is_retransmitted_after_initial_rto():
    p = Pair()
    lst = listener(p)
    p.a_link.imp.drop = d = drop_first(lambda s: s.flags == SYN)
    cli = p.a_tcp.endpoint(AF_INET)
    cli.connect((B4, 5000))
    p.clock.advance(900 * MS)
    assert cli.state == SYN_SENT and len(d.dropped) == 1
    p.clock.advance(200 * MS)                   # the 1 s initial RTO has passed
    assert cli.state == ESTABLISHED and lst.accept().state == ESTABLISHED
    assert cli.rto.rto >= 200 * MS


def test_lost_synack_recovered():
    p = Pair()
    lst = listener(p)
    p.b_link.imp.drop = d = drop_first(lambda s: s.flags == SYN | ACK)
    cli = p.a_tcp.endpoint(AF_INET)
    cli.connect((B4, 5000))
    p.clock.advance(10 * MS)
    assert cli.state == SYN_SENT and len(d.dropped) == 1
    assert p.clock.run_until(lambda: cli.state == ESTABLISHED, 5 * SEC)
    p.clock.advance(10 * MS)
    assert lst.accept().state == ESTABLISHED


def test_lost_handshake_ack_completed_by_data():
    p = Pair()
    lst = listener(p)
    p.a_link.imp.drop = drop_first(lambda s: s.flags == ACK and not s.payload)
    cli = p.a_tcp.endpoint(AF_INET)
    cli.connect((B4, 5000))
    p.clock.advance(10 * MS)
    assert cli.state == ESTABLISHED
    (child,) = lst.syn_queue
    assert child.state == SYN_RECV
    cli.send(b"first words")
    p.clock.advance(10 * MS)
    srv = lst.accept()
    assert srv.recv(100)[0] == b"first words"


def test_lost_data_segment_fast_retransmit():
    p = Pair()
    cli, srv, _ = connect_pair(p.a_tcp, p.b_tcp, p.clock, B4)
    p.a_link.imp.drop = d = drop_first(lambda s: len(s.payload) > 0 and s.seq != cli.snd_una & 0xFFFFFFFF)
    data = bytes(range(256)) * 400
    assert transfer(p.clock, cli, srv, data) == data
    assert len(d.dropped) == 1
    assert p.a.stats["tcp.fast_retransmit"] >= 1
    assert p.a.stats["tcp.rto"] == 0


def test_lost_tail_segment_recovered_by_rto():
    p = Pair()
    cli, srv, _ = connect_pair(p.a_tcp, p.b_tcp, p.clock, B4)
    p.a_link.imp.drop = d = drop_first(lambda s: s.payload == b"tail")
    cli.send(b"tail")
    p.clock.advance(100 * MS)
    assert srv.pending_in() == 0 and len(d.dropped) == 1
    p.clock.advance(1 * SEC)
    assert srv.recv(10)[0] == b"tail"
    assert p.a.stats["tcp.rto"] == 1


def test_lost_fin_retransmitted():
    p = Pair()
    cli, srv, _ = connect_pair(p.a_tcp, p.b_tcp, p.clock, B4)
    p.a_link.imp.drop = d = drop_first(lambda s: s.flags & FIN)
    cli.close()
    p.clock.advance(50 * MS)
    assert len(d.dropped) == 1 and srv.pending_in() == 0
    assert p.clock.run_until(lambda: srv.done, 5 * SEC)
    assert srv.recv(10)[0] == b""


def test_lost_ack_of_fin_in_last_ack():
    p = Pair()
    cli, srv, _ = connect_pair(p.a_tcp, p.b_tcp, p.clock, B4)
    cli.close()
    p.clock.advance(10 * MS)
    p.a_link.imp.drop = d = drop_first(lambda s: s.flags == ACK)
    srv.close()                              # CLOSE-WAIT -> LAST-ACK
    p.clock.advance(10 * MS)
    assert cli.state == TIME_WAIT and len(d.dropped) == 1
    assert p.clock.run_until(lambda: srv.state == CLOSED, 5 * SEC)
    assert cli.state == TIME_WAIT


def test_duplicated_everything():
    p = Pair()
    cli, srv, _ = connect_pair(p.a_tcp, p.b_tcp, p.clock, B4)
    p.a_link.imp = Impairment(dup=1.0)
    p.b_link.imp = Impairment(dup=1.0)
    data = bytes(range(256)) * 300
    assert transfer(p.clock, cli, srv, data) == data


def test_reordered_segments():
    p = Pair()
    cli, srv, _ = connect_pair(p.a_tcp, p.b_tcp, p.clock, B4)
    p.a_link.imp = Impairment(reorder=0.3, seed=3)
    data = bytes(range(256)) * 300
    assert transfer(p.clock, cli, srv, data) == data
    assert p.b.stats["tcp.out_of_order"] > 0


@settings(max_examples=40, deadline=None)
@given(loss=st.floats(0, 0.25), dup=st.floats(0, 0.2), reorder=st.floats(0, 0.3),
       jitter=st.integers(0, 5), seed=st.integers(0, 2**16), size=st.integers(1, 60000),
       cc=st.sampled_from(["reno", "cubic"]), v6=st.booleans(), back=st.booleans())
def test_random_impairment_stream_intact(loss, dup, reorder, jitter, seed, size, cc, v6, back):
    p = Pair()
    fam = AF_INET6 if v6 else AF_INET
    cli, srv, _ = connect_pair(p.a_tcp, p.b_tcp, p.clock, B6 if v6 else B4, family=fam,
                               setup=lambda ep: ep.setsockopt(6, 13, cc.encode()))
    p.a_link.imp = Impairment(loss, dup, reorder, 1 * MS, jitter * MS, seed)
    p.b_link.imp = Impairment(loss, dup, reorder, 1 * MS, jitter * MS, seed + 1)
    data = bytes((i * 7 + seed) & 0xFF for i in range(size))
    src, dst = (srv, cli) if back else (cli, srv)
    got = transfer(p.clock, src, dst, data, chunk=4000, limit=3000 * SEC)
    assert got == data


def test_blackhole_times_out_with_etimedout():
    """tcp_retries2 = 15: with every segment lost, the connection gives up
    after Linux's 924.6 s of backoff with ETIMEDOUT."""
    p = Pair()
    cli, srv, _ = connect_pair(p.a_tcp, p.b_tcp, p.clock, B4)
    p.a_link.imp.loss = 1.0
    cli.send(b"into the void")
    start = p.clock.now
    assert p.clock.run_until(lambda: cli.state == CLOSED, 2000 * SEC)
    assert 900 * SEC <= p.clock.now - start <= 1000 * SEC
    assert cli.take_error() == errno.ETIMEDOUT
    assert p.a.stats["tcp.rto"] == 15         # retransmissions; the 16th expiry gives up


def test_user_timeout_shortens_the_wait():
    p = Pair()
    cli, srv, _ = connect_pair(p.a_tcp, p.b_tcp, p.clock, B4)
    cli.setsockopt(6, 18, 3000)              # TCP_USER_TIMEOUT 3 s
    p.a_link.imp.loss = 1.0
    cli.send(b"x")
    start = p.clock.now
    assert p.clock.run_until(lambda: cli.state == CLOSED, 100 * SEC)
    assert p.clock.now - start < 10 * SEC
    assert cli.take_error() == errno.ETIMEDOUT


def test_syn_retries_then_etimedout():
    """tcp_syn_retries = 6: SYNs at 0, 1, 3, 7, 15, 31, 63 s; ETIMEDOUT at 127 s."""
    p = Pair()
    p.a_link.imp.loss = 1.0
    p.a_link.record = True
    cli = p.a_tcp.endpoint(AF_INET)
    cli.connect((B4, 5000))
    start = p.clock.now
    assert p.clock.run_until(lambda: cli.state == CLOSED, 300 * SEC)
    assert p.clock.now - start == 127 * SEC
    assert len(p.a_link.sent) == 7
    try:
        cli.connect_result()
    except OSError as e:
        assert e.errno == errno.ETIMEDOUT
    else:
        raise AssertionError("connect did not fail")


def test_port_unreachable_style_refusal_no_listener():
    p = Pair()
    cli = p.a_tcp.endpoint(AF_INET)
    cli.connect((B4, 5999))
    p.clock.advance(10 * MS)
    assert cli.state == CLOSED
    try:
        cli.connect_result()
    except OSError as e:
        assert e.errno == errno.ECONNREFUSED
    else:
        raise AssertionError("connect did not fail")
