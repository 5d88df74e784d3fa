"""TCP behaviour over time: zero-window probes (persist timer), keepalive,
listen backlog and SYN queue bounds, Nagle / TCP_NODELAY / TCP_CORK,
congestion response (NewReno and CUBIC), SACK-driven recovery and ICMP
errors. The clock is fake, so minutes pass in milliseconds."""
import errno

from netstack.core import AF_INET, LOOPBACK4, PacketInfo, WouldBlock
from netstack.tcp import CLOSED, ESTABLISHED, SYN_RECV, SYN_SENT
from netstack.wire.tcp import ACK, SYN
from tcp_harness import (A4, B4, MS, SEC, Pair, RawPeer, connect_pair,
                         loopback_stack, seg, transfer)

SOL_SOCKET, IPPROTO_TCP = 1, 6


def fill(ep, chunk=4096):
    """Send until the send buffer refuses; the bytes taken."""
    total = 0
    while True:
        try:
            total += ep.send(bytes(chunk))
        except WouldBlock:
            return total


def drain(ep):
    out = b""
    while True:
        try:
            d = ep.recv(1 << 20)[0]
        except WouldBlock:
            return out
        if not d:
            return out
        out += d


# --- zero window ----------------------------------------------------------------

def test_zero_window_probes_until_reader_returns():
    p = Pair()
    cli, srv, _ = connect_pair(p.a_tcp, p.b_tcp, p.clock, B4,
                               setup=lambda ep: ep.setsockopt(SOL_SOCKET, 8, 4096))
    sent = fill(cli)
    p.clock.advance(100 * MS)
    assert cli.persist and cli.snd_max == cli.snd_una
    p.clock.advance(2000 * SEC)                  # the peer keeps saying "zero"
    assert cli.state == ESTABLISHED and cli.snd_wnd == 0
    assert p.a.stats["tcp.window_probe"] >= 5
    got = b""
    while len(got) < sent:
        got += drain(srv)
        p.clock.advance(200 * MS)
    assert got == bytes(sent) and cli.state == ESTABLISHED


def test_lost_window_update_recovered_by_probe():
    p = Pair()
    cli, srv, _ = connect_pair(p.a_tcp, p.b_tcp, p.clock, B4,
                               setup=lambda ep: ep.setsockopt(SOL_SOCKET, 8, 4096))
    fill(cli)
    p.clock.advance(5 * SEC)
    assert cli.snd_wnd == 0
    dropped = []
    p.b_link.imp.drop = lambda s: (not dropped and s.window > 0 and not s.payload
                                   and dropped.append(s) is None)
    got = drain(srv)                             # sends the window update: lost
    p.clock.advance(50 * MS)
    assert dropped and cli.snd_wnd == 0
    assert p.clock.run_until(lambda: cli.snd_wnd > 0, 10 * SEC)
    assert p.a.stats["tcp.window_probe"] >= 1
    p.clock.advance(50 * MS)
    got += drain(srv)
    assert len(got) > 4096


def test_persist_gives_up_on_silent_peer():
    p = Pair()
    cli, srv, _ = connect_pair(p.a_tcp, p.b_tcp, p.clock, B4,
                               setup=lambda ep: ep.setsockopt(SOL_SOCKET, 8, 4096))
    fill(cli)
    p.clock.advance(50 * MS)
    assert cli.persist
    p.b_link.imp.loss = 1.0                      # the peer vanishes
    assert p.clock.run_until(lambda: cli.state == CLOSED, 5000 * SEC)
    assert cli.take_error() == errno.ETIMEDOUT


# --- keepalive ------------------------------------------------------------------

def keepalive(ep, idle=10, intvl=2, cnt=3):
    ep.setsockopt(SOL_SOCKET, 9, 1)
    ep.setsockopt(IPPROTO_TCP, 4, idle)
    ep.setsockopt(IPPROTO_TCP, 5, intvl)
    ep.setsockopt(IPPROTO_TCP, 6, cnt)


def test_keepalive_probes_a_live_peer():
    p = Pair()
    cli, srv, _ = connect_pair(p.a_tcp, p.b_tcp, p.clock, B4)
    keepalive(cli)
    p.clock.advance(9 * SEC)
    assert p.a.stats["tcp.keepalive_probe"] == 0
    p.clock.advance(2 * SEC)
    assert p.a.stats["tcp.keepalive_probe"] == 1
    p.clock.advance(100 * SEC)
    assert cli.state == ESTABLISHED and srv.state == ESTABLISHED
    assert 9 <= p.a.stats["tcp.keepalive_probe"] <= 11      # one per idle period


def test_keepalive_times_out_dead_peer():
    p = Pair()
    cli, srv, _ = connect_pair(p.a_tcp, p.b_tcp, p.clock, B4)
    keepalive(cli, idle=10, intvl=2, cnt=3)
    p.b_link.imp.loss = 1.0
    start = p.clock.now
    assert p.clock.run_until(lambda: cli.state == CLOSED, 100 * SEC)
    assert abs(p.clock.now - start - (10 * SEC + 3 * 2 * SEC)) < 10 * MS
    assert cli.take_error() == errno.ETIMEDOUT
    assert p.a.stats["tcp.keepalive_probe"] == 3


def test_no_keepalive_by_default():
    p = Pair()
    cli, srv, _ = connect_pair(p.a_tcp, p.b_tcp, p.clock, B4)
    p.clock.advance(3 * 3600 * SEC)
    assert p.a.stats["tcp.keepalive_probe"] == 0 and cli.state == ESTABLISHED


# --- listen queues ----------------------------------------------------------------

def test_accept_queue_holds_backlog_plus_one():
    clock, stack, tcp = loopback_stack()
    lst = tcp.endpoint(AF_INET)
    lst.bind((LOOPBACK4, 7000))
    lst.listen(1)
    cs = [tcp.endpoint(AF_INET) for _ in range(3)]
    for c in cs:
        c.connect((LOOPBACK4, 7000))
    assert [c.state for c in cs] == [ESTABLISHED, ESTABLISHED, SYN_SENT]
    assert len(lst.accept_queue) == 2 and stack.stats["tcp.listen_overflow"] == 1
    lst.accept()
    clock.advance(1100 * MS)                     # the third one's SYN comes again
    assert cs[2].state == ESTABLISHED and len(lst.accept_queue) == 2


def test_syn_flood_hits_syn_queue_bound_and_expires():
    p = Pair()
    peer = RawPeer(p.b)
    lst = p.a_tcp.endpoint(AF_INET)
    lst.bind((bytes(4), 80))
    lst.listen(4)
    for i in range(100):
        peer.send(seg(10000 + i, 80, 1000 * i, 0, SYN))
    p.clock.advance(5 * MS)
    assert len(lst.syn_queue) == 8
    assert p.a.stats["tcp.syn_queue_full"] == 92
    assert all(c.state == SYN_RECV for c in lst.syn_queue)
    # SYN-ACKs are resent 5 times (1+2+4+8+16+32 s), then the requests go
    p.clock.advance(62 * SEC)
    assert len(lst.syn_queue) == 8
    p.clock.advance(2 * SEC)
    assert len(lst.syn_queue) == 0 and p.a_tcp.count(SYN_RECV) == 0
    peer.send(seg(20000, 80, 5, 0, SYN))          # and the listener still serves
    p.clock.advance(5 * MS)
    assert len(lst.syn_queue) == 1


def test_accept_queue_full_drops_final_ack_then_recovers():
    p = Pair()
    peer = RawPeer(p.b)
    lst = p.a_tcp.endpoint(AF_INET)
    lst.bind((bytes(4), 80))
    lst.listen(0)                                # one may wait
    synacks = []
    for port in (3000, 3001):
        peer.send(seg(port, 80, 100, 0, SYN))
        p.clock.advance(2 * MS)
        synacks.append(peer.take()[-1])
    for port, sa in zip((3000, 3001), synacks):
        peer.send(seg(port, 80, 101, sa.seq + 1, ACK))
    p.clock.advance(2 * MS)
    assert len(lst.accept_queue) == 1 and len(lst.syn_queue) == 1
    assert p.a.stats["tcp.listen_overflow"] == 1
    lst.accept()
    p.clock.advance(1100 * MS)                   # the SYN-ACK is resent...
    resent = [s for s in peer.take() if s.flags == SYN | ACK]
    assert resent and resent[0].dport == 3001
    peer.send(seg(3001, 80, 101, resent[0].seq + 1, ACK))   # ...and acked again
    p.clock.advance(2 * MS)
    assert len(lst.accept_queue) == 1


# --- Nagle, TCP_NODELAY, TCP_CORK ---------------------------------------------------

def wire_payloads(p):
    from tcp_harness import tcp_of
    out = [tcp_of(e, pkt) for e, pkt in p.a_link.sent]
    return [s.payload for s in out if s is not None and s.payload]


def small_writes(nodelay=False, cork=False):
    p = Pair()
    cli, srv, _ = connect_pair(p.a_tcp, p.b_tcp, p.clock, B4)
    srv.quick_acks = 0
    if nodelay:
        cli.setsockopt(IPPROTO_TCP, 1, 1)
    if cork:
        cli.setsockopt(IPPROTO_TCP, 3, 1)
    p.a_link.record = True
    for ch in b"abc":
        cli.send(bytes((ch,)))
    return p, cli, srv


def test_nagle_holds_small_segments_until_acked():
    p, cli, srv = small_writes()
    assert wire_payloads(p) == [b"a"]
    p.clock.advance(100 * MS)                    # the delayed ACK frees the rest
    assert wire_payloads(p) == [b"a", b"bc"]
    assert drain(srv) == b"abc"


def test_nodelay_sends_each_write():
    p, cli, srv = small_writes(nodelay=True)
    assert wire_payloads(p) == [b"a", b"b", b"c"]


def test_cork_holds_until_uncorked():
    p, cli, srv = small_writes(cork=True)
    assert wire_payloads(p) == []
    cli.setsockopt(IPPROTO_TCP, 3, 0)
    assert wire_payloads(p) == [b"abc"]


def test_cork_sends_full_segments():
    p, cli, srv = small_writes(cork=True)
    cli.send(bytes(cli.mss))
    assert [len(x) for x in wire_payloads(p)] == [cli.mss]


# --- congestion control ----------------------------------------------------------------

def _loss_once(cc, monkeypatch):
    """A bulk transfer with one segment lost once cwnd is 20 segments:
    (pair, sender, (cwnd, flight) when the third duplicate ACK came)."""
    from netstack.tcp.connection import Connection
    p = Pair()
    cli, srv, _ = connect_pair(p.a_tcp, p.b_tcp, p.clock, B4,
                               setup=lambda ep: ep.setsockopt(IPPROTO_TCP, 13, cc))
    at_loss = []
    orig = Connection._dupack

    def spy(self, now):
        if self is cli and self.dupacks == 2 and not self.in_recovery:
            at_loss.append((self.cwnd, self.snd_max - self.snd_una))
        orig(self, now)
    monkeypatch.setattr(Connection, "_dupack", spy)
    hit = []

    def drop(s):
        if not hit and s.payload and cli.cwnd >= 20 * cli.mss:
            hit.append(s)
            return True
        return False
    p.a_link.imp.drop = drop
    data = bytes(2_000_000)
    assert transfer(p.clock, cli, srv, data, close=False) == data
    assert hit and p.a.stats["tcp.fast_retransmit"] == 1 and p.a.stats["tcp.rto"] == 0
    return p, cli, at_loss[0]


def test_newreno_halves_on_fast_retransmit(monkeypatch):
    p, cli, (cwnd, flight) = _loss_once(b"reno", monkeypatch)
    assert cli.ssthresh == max(flight // 2, 2 * cli.mss)
    assert cli.cc.name == "reno"


def test_cubic_backs_off_by_beta(monkeypatch):
    p, cli, (cwnd, flight) = _loss_once(b"cubic", monkeypatch)
    assert cli.cc.name == "cubic"
    assert cli.ssthresh == max(int(cwnd * 0.7), 2 * cli.mss)


def test_two_losses_in_one_window_recovered_without_timeout():
    p = Pair()
    cli, srv, _ = connect_pair(p.a_tcp, p.b_tcp, p.clock, B4)
    n = [0]

    def drop(s):
        if s.payload and cli.cwnd >= 20 * cli.mss:
            n[0] += 1
            return n[0] in (3, 6)
        return False
    p.a_link.imp.drop = drop
    data = bytes(range(256)) * 4000
    assert transfer(p.clock, cli, srv, data, close=False) == data
    assert p.a.stats["tcp.rto"] == 0 and p.a.stats["tcp.fast_retransmit"] == 1


# --- ICMP errors ---------------------------------------------------------------------

def _quote(ep):
    import struct
    return struct.pack("!HHI", ep.lport, ep.rport, ep.snd_una & 0xFFFFFFFF)


def test_icmp_unreachable_fails_connect():
    p = Pair()
    p.b_link.imp.loss = 1.0
    cli = p.a_tcp.endpoint(AF_INET)
    cli.connect((B4, 80))
    p.a_tcp.error(PacketInfo(A4, B4, 6), "host_unreach", errno.EHOSTUNREACH, _quote(cli))
    assert cli.state == CLOSED
    try:
        cli.connect_result()
    except OSError as e:
        assert e.errno == errno.EHOSTUNREACH
    else:
        raise AssertionError("connect did not fail")


def test_icmp_soft_error_reported_on_timeout():
    p = Pair()
    cli, srv, _ = connect_pair(p.a_tcp, p.b_tcp, p.clock, B4)
    p.a_link.imp.loss = 1.0
    cli.send(b"x")
    p.a_tcp.error(PacketInfo(A4, B4, 6), "host_unreach", errno.EHOSTUNREACH, _quote(cli))
    assert cli.state == ESTABLISHED
    assert p.clock.run_until(lambda: cli.state == CLOSED, 2000 * SEC)
    assert cli.take_error() == errno.EHOSTUNREACH


def test_icmp_quoting_unsent_sequence_ignored():
    p = Pair()
    p.b_link.imp.loss = 1.0
    cli = p.a_tcp.endpoint(AF_INET)
    cli.connect((B4, 80))
    import struct
    bogus = struct.pack("!HHI", cli.lport, 80, (cli.snd_una + 99999) & 0xFFFFFFFF)
    p.a_tcp.error(PacketInfo(A4, B4, 6), "port_unreach", errno.ECONNREFUSED, bogus)
    assert cli.state == SYN_SENT


def test_path_mtu_shrinks_mss():
    p = Pair()
    cli, srv, _ = connect_pair(p.a_tcp, p.b_tcp, p.clock, B4)
    assert cli.mss == 1448
    p.a.set_path_mtu(B4, 1000)
    cli.send(bytes(5000))
    p.a_tcp.error(PacketInfo(A4, B4, 6), "too_big", errno.EMSGSIZE, _quote(cli))
    assert cli.mss == 1000 - 40 - 12
    p.clock.advance(50 * MS)
    assert len(drain(srv)) == 5000


# --- SACK ---------------------------------------------------------------------------

def _three_holes(sack):
    p = Pair()
    cli, srv, _ = connect_pair(p.a_tcp, p.b_tcp, p.clock, B4)
    if not sack:
        cli.sack_ok = srv.sack_ok = False
    n = [0]

    def drop(s):
        if s.payload and cli.cwnd >= 30 * cli.mss:
            n[0] += 1
            return n[0] in (2, 5, 8)
        return False
    p.a_link.imp.drop = drop
    data = bytes(range(256)) * 6000
    start = p.clock.now
    assert transfer(p.clock, cli, srv, data, close=False) == data
    assert p.a.stats["tcp.rto"] == 0
    return p, p.clock.now - start


def test_sack_repairs_several_holes_per_round_trip():
    p, t_sack = _three_holes(True)
    assert p.a.stats["tcp.sack_retransmit"] >= 2
    assert p.b.stats["tcp.out_of_order"] > 0
    p2, t_newreno = _three_holes(False)
    assert p2.a.stats["tcp.sack_retransmit"] == 0
    assert t_sack <= t_newreno


# --- ACK timing ------------------------------------------------------------------------

def test_read_opens_window_with_an_update():
    p = Pair()
    cli, srv, _ = connect_pair(p.a_tcp, p.b_tcp, p.clock, B4,
                               setup=lambda ep: ep.setsockopt(SOL_SOCKET, 8, 16384))
    fill(cli)
    p.clock.advance(50 * MS)
    assert srv.rcv_adv - srv.rcv_nxt < cli.mss     # window (nearly) used up
    p.b_link.record = True
    drain(srv)
    from tcp_harness import tcp_of
    (update,) = [tcp_of(e, pkt) for e, pkt in p.b_link.sent]
    assert update.window > 0 and not update.payload


def test_quickack_sends_pending_ack():
    p = Pair()
    cli, srv, _ = connect_pair(p.a_tcp, p.b_tcp, p.clock, B4)
    srv.quick_acks = 0
    cli.send(b"x")
    p.clock.advance(5 * MS)
    assert srv.ack_pending
    p.b_link.record = True
    srv.setsockopt(IPPROTO_TCP, 12, 1)
    assert not srv.ack_pending and len(p.b_link.sent) == 1
