"""The TCP state machine driven segment by segment: our stack (a) against
a scripted peer (a RawPeer owning TCP on stack b, over an in-memory
link), through every RFC 9293 transition, RST in each state (RFC 5961),
simultaneous open and close, TIME-WAIT, and the error each ending leaves."""
import errno

import pytest

from netstack.core import AF_INET, POLLERR, POLLHUP, POLLIN, POLLOUT, POLLRDHUP, WouldBlock
from netstack.tcp import (CLOSE_WAIT, CLOSED, CLOSING, ESTABLISHED, FIN_WAIT1,
                          FIN_WAIT2, LAST_ACK, LISTEN, SYN_RECV, SYN_SENT, TIME_WAIT)
from netstack.wire.tcp import ACK, FIN, PSH, RST, SYN
from tcp_harness import A4, B4, MS, SEC, Pair, RawPeer, connect_pair, seg

ISS = 7000
PORT = 80


class Ctx:
    """Our endpoint `ep` talking to the scripted peer; snd is the next
    sequence number we will send, rcv the peer's."""

    def __init__(self, p, peer, ep, lport, snd, rcv, ts=True):
        self.p, self.peer, self.ep = p, peer, ep
        self.lport, self.snd, self.rcv = lport, snd, rcv
        self.ts = ts
        self.tsval = 1000
        self.their_ts = 0

    def run(self, ns=2 * MS):
        self.p.clock.advance(ns)

    def send(self, flags, payload=b"", seq=None, ack=None, window=65535, **kw):
        if self.ts and "ts" not in kw:
            self.tsval += 1
            kw["ts"] = (self.tsval, self.their_ts)
        s = seg(PORT, self.lport, self.rcv if seq is None else seq,
                self.snd if ack is None else ack, flags, window, payload, **kw)
        if seq is None:
            self.rcv += len(payload) + (1 if flags & SYN else 0) + (1 if flags & FIN else 0)
        self.peer.send(s)
        self.run()

    def got(self):
        self.run()
        segs = self.peer.take()
        for s in segs:
            if s.ts:
                self.their_ts = s.ts[0]
        return segs


def client(ts=True, wscale=True):
    """Our side connects to the peer: SYN-SENT, answered, ESTABLISHED."""
    p = Pair()
    peer = RawPeer(p.b)
    ep = p.a_tcp.endpoint(AF_INET)
    ep.connect((B4, PORT))
    assert ep.state == SYN_SENT
    p.clock.advance(2 * MS)
    (syn,) = peer.take()
    c = Ctx(p, peer, ep, syn.sport, syn.seq + 1, ISS, ts)
    c.syn = syn
    return c


def established_client(ts=True):
    c = client(ts)
    kw = dict(mss=1460, wscale=7, sack_ok=True)
    if ts:
        kw["ts"] = (500, c.syn.ts[0])
    c.peer.send(seg(PORT, c.lport, ISS, c.snd, SYN | ACK, 65535, **kw))
    c.rcv = ISS + 1
    c.run()
    assert c.ep.state == ESTABLISHED
    assert c.ep.connect_result() == 0
    (ack,) = c.got()
    assert ack.flags == ACK and ack.ack == ISS + 1 and ack.seq == c.snd
    c.tsval = 500
    return c


def server(backlog=4):
    """Our side listens on A4:80; the peer plays the client from port 4000."""
    p = Pair()
    peer = RawPeer(p.b)
    lst = p.a_tcp.endpoint(AF_INET)
    lst.bind((bytes(4), PORT))
    lst.listen(backlog)
    return p, peer, lst


def syn_to_server(p, peer, lst, sport=4000, seq=ISS, **kw):
    kw.setdefault("ts", (10, 0))
    kw.setdefault("mss", 1460)
    kw.setdefault("wscale", 7)
    kw.setdefault("sack_ok", True)
    peer.send(seg(sport, PORT, seq, 0, SYN, 65535, **kw))
    p.clock.advance(2 * MS)
    synack = peer.take()[-1]
    assert synack.flags == SYN | ACK and synack.ack == seq + 1
    return synack


# --- opening -------------------------------------------------------------------

def test_active_open_syn_options():
    c = client()
    s = c.syn
    assert s.flags == SYN and s.mss == 1460 and s.sack_ok and s.wscale == 7
    assert s.ts is not None and s.ts[1] == 0 and s.window == 65535
    assert c.ep.readiness() == 0        # connecting: nothing yet
    with pytest.raises(WouldBlock):
        c.ep.connect_result()


def test_active_open_establishes_and_negotiates():
    c = established_client()
    ep = c.ep
    assert ep.ts_ok and ep.sack_ok and ep.snd_wscale == 7 and ep.rcv_wscale == 7
    assert ep.mss == 1460 - 12
    assert ep.readiness() == POLLOUT
    assert ep.getpeername() == (B4, PORT)


def test_active_open_without_options_uses_defaults():
    c = client(ts=False)
    c.peer.send(seg(PORT, c.lport, ISS, c.snd, SYN | ACK, 8192))
    c.rcv = ISS + 1
    c.run()
    ep = c.ep
    assert ep.state == ESTABLISHED
    assert not ep.ts_ok and not ep.sack_ok and ep.snd_wscale == ep.rcv_wscale == 0
    assert ep.mss == 536 and ep.snd_wnd == 8192
    (ack,) = c.got()
    assert ack.ts is None and ack.sack == ()


def test_syn_sent_bad_ack_answered_with_rst():
    c = client()
    c.peer.send(seg(PORT, c.lport, ISS, c.snd + 1000, SYN | ACK))
    c.run()
    (rst,) = c.got()
    assert rst.flags == RST and rst.seq == (c.snd + 1000) & 0xFFFFFFFF
    assert c.ep.state == SYN_SENT


def test_syn_sent_rst_refuses():
    c = client()
    c.peer.send(seg(PORT, c.lport, 0, c.snd, RST | ACK, 0))
    c.run()
    assert c.ep.state == CLOSED
    with pytest.raises(OSError) as e:
        c.ep.connect_result()
    assert e.value.errno == errno.ECONNREFUSED


def test_syn_sent_rst_with_unacceptable_ack_ignored():
    c = client()
    c.peer.send(seg(PORT, c.lport, 0, c.snd + 5, RST | ACK, 0))
    c.run()
    assert c.ep.state == SYN_SENT


def test_simultaneous_open_scripted():
    """SYN-SENT + SYN -> SYN-RECEIVED (we send SYN,ACK with our ISS) ->
    ESTABLISHED on the ACK of our SYN (RFC 9293 figure 7)."""
    c = client()
    c.peer.send(seg(PORT, c.lport, ISS, 0, SYN, 65535, mss=1460, wscale=7,
                    sack_ok=True, ts=(50, 0)))
    c.rcv = ISS + 1
    c.run()
    (synack,) = c.got()
    assert c.ep.state == SYN_RECV
    assert synack.flags == SYN | ACK and synack.seq == c.syn.seq and synack.ack == ISS + 1
    c.tsval = 50
    c.send(ACK)
    assert c.ep.state == ESTABLISHED
    assert c.ep.connect_result() == 0


def test_simultaneous_open_two_stacks():
    p = Pair()
    a = p.a_tcp.endpoint(AF_INET)
    b = p.b_tcp.endpoint(AF_INET)
    a.bind((A4, 6001))
    b.bind((B4, 6002))
    a.connect((B4, 6002))
    b.connect((A4, 6001))          # both SYNs are on the wire at once
    p.clock.advance(1 * SEC)
    assert a.state == b.state == ESTABLISHED
    assert a.connect_result() == 0 and b.connect_result() == 0
    a.send(b"ping")
    p.clock.advance(10 * MS)
    assert b.recv(10)[0] == b"ping"


def test_passive_open_to_accept():
    p, peer, lst = server()
    assert lst.state == LISTEN and lst.readiness() == 0
    synack = syn_to_server(p, peer, lst)
    assert synack.mss == 1460 and synack.wscale == 7 and synack.sack_ok
    assert synack.ts[1] == 10
    (child,) = lst.syn_queue
    assert child.state == SYN_RECV
    with pytest.raises(WouldBlock):
        lst.accept()
    peer.send(seg(4000, PORT, ISS + 1, synack.seq + 1, ACK, 65535, ts=(11, synack.ts[0])))
    p.clock.advance(2 * MS)
    assert lst.readiness() == POLLIN
    ep = lst.accept()
    assert ep is child and ep.state == ESTABLISHED and ep.getpeername() == (B4, 4000)


def test_passive_syn_without_options():
    p, peer, lst = server()
    peer.send(seg(4000, PORT, ISS, 0, SYN, 4096))
    p.clock.advance(2 * MS)
    (synack,) = peer.take()
    assert synack.wscale is None and synack.ts is None and not synack.sack_ok
    assert synack.mss == 1460


def test_listener_answers_ack_with_rst_and_ignores_rst():
    p, peer, lst = server()
    peer.send(seg(4000, PORT, 1, 12345, ACK))
    p.clock.advance(2 * MS)
    (rst,) = peer.take()
    assert rst.flags == RST and rst.seq == 12345
    peer.send(seg(4000, PORT, 1, 0, RST))
    p.clock.advance(2 * MS)
    assert peer.take() == [] and lst.state == LISTEN


def test_retransmitted_syn_in_syn_received_resends_synack():
    p, peer, lst = server()
    first = syn_to_server(p, peer, lst)
    second = syn_to_server(p, peer, lst)
    assert second.seq == first.seq
    assert len(lst.syn_queue) == 1


def test_syn_received_bad_ack_gets_rst():
    p, peer, lst = server()
    synack = syn_to_server(p, peer, lst)
    peer.send(seg(4000, PORT, ISS + 1, synack.seq + 50, ACK, ts=(11, 0)))
    p.clock.advance(2 * MS)
    (rst,) = peer.take()
    assert rst.flags == RST and rst.seq == (synack.seq + 50) & 0xFFFFFFFF


def test_closed_port_answers_rst():
    p = Pair()
    peer = RawPeer(p.b)
    peer.send(seg(4000, 9, ISS, 0, SYN, payload=b""))
    p.clock.advance(2 * MS)
    (rst,) = peer.take()
    assert rst.flags == RST | ACK and rst.ack == ISS + 1 and rst.seq == 0
    peer.send(seg(4000, 9, ISS, 777, ACK, payload=b"abc"))
    p.clock.advance(2 * MS)
    (rst,) = peer.take()
    assert rst.flags == RST and rst.seq == 777
    peer.send(seg(4000, 9, ISS, 777, RST))
    p.clock.advance(2 * MS)
    assert peer.take() == []
    assert p.a.stats["tcp.no_socket"] == 3


# --- data and acknowledgement ----------------------------------------------

def test_data_in_both_directions():
    c = established_client()
    c.send(ACK | PSH, b"hello")
    assert c.ep.recv(100)[0] == b"hello"
    c.ep.send(b"world")
    c.run()
    segs = c.got()
    data = [s for s in segs if s.payload]
    assert data[0].payload == b"world" and data[0].ack == c.rcv and data[0].seq == c.snd


def test_delayed_ack_and_every_second_segment():
    c = established_client()
    c.ep.quick_acks = 0
    full = bytes(c.ep.rcv_mss)
    c.send(ACK, full)
    assert c.got() == []                      # delayed
    c.run(40 * MS)
    (ack,) = c.got()
    assert ack.ack == c.rcv
    c.ep.rcv_mss = 1448
    c.send(ACK, bytes(1448))
    assert c.got() == []
    c.send(ACK, bytes(1448))                  # the second full segment: ACK now
    (ack,) = c.got()
    assert ack.ack == c.rcv


def test_out_of_order_data_acked_at_once_with_sack():
    c = established_client()
    c.ep.quick_acks = 0
    start = c.rcv
    c.send(ACK, b"B" * 100, seq=start + 100)
    (ack,) = c.got()
    assert ack.ack == start and ack.sack == ((start + 100, start + 200),)
    c.send(ACK, b"A" * 100, seq=start)
    (ack,) = c.got()
    assert ack.ack == start + 200 and ack.sack == ()
    c.rcv = start + 200
    assert c.ep.recv(1000)[0] == b"A" * 100 + b"B" * 100


def test_duplicate_data_acked_and_dropped():
    c = established_client()
    start = c.rcv
    c.send(ACK, b"x" * 10)
    c.got()
    c.send(ACK, b"x" * 10, seq=start)
    (ack,) = c.got()
    assert ack.ack == start + 10
    assert c.ep.recv(100)[0] == b"x" * 10


def test_unacceptable_segment_gets_ack():
    c = established_client()
    c.send(ACK, b"far", seq=c.rcv + 10_000_000)
    (ack,) = c.got()
    assert ack.flags == ACK and ack.ack == c.rcv
    assert c.ep.pending_in() == 0


def test_ack_for_unsent_data_gets_ack():
    c = established_client()
    c.send(ACK, ack=c.snd + 5000)
    (ack,) = c.got()
    assert ack.ack == c.rcv
    assert c.ep.snd_una == c.ep.snd_nxt


def test_paws_drops_old_timestamp():
    c = established_client()
    c.send(ACK, b"new")
    c.got()
    c.send(ACK, b"old", ts=(1, 0))
    (ack,) = c.got()
    assert ack.ack == c.rcv - 3               # the old-stamped data was refused
    assert c.ep.recv(100)[0] == b"new"
    assert c.p.a.stats["tcp.paws_reject"] == 1


def test_syn_in_established_gets_challenge_ack():
    c = established_client()
    c.send(SYN, seq=c.rcv + 100)
    (ack,) = c.got()
    assert ack.flags == ACK and ack.ack == c.rcv
    assert c.ep.state == ESTABLISHED


# --- closing -----------------------------------------------------------------

def test_active_close_fin_wait_to_time_wait_to_closed():
    c = established_client()
    c.ep.shutdown(1)
    assert c.ep.state == FIN_WAIT1
    (fin,) = c.got()
    assert fin.flags & FIN and fin.seq == c.snd
    c.snd += 1
    c.send(ACK)
    assert c.ep.state == FIN_WAIT2
    c.send(ACK | FIN)
    assert c.ep.state == TIME_WAIT
    (ack,) = c.got()
    assert ack.ack == c.rcv
    assert c.ep.recv(10)[0] == b""
    c.run(59 * SEC)
    assert c.ep.state == TIME_WAIT
    c.run(1 * SEC)
    assert c.ep.state == CLOSED


def test_fin_wait1_straight_to_time_wait():
    c = established_client()
    c.ep.shutdown(1)
    c.got()
    c.snd += 1
    c.send(ACK | FIN)                        # ACK of our FIN and their FIN at once
    assert c.ep.state == TIME_WAIT


def test_simultaneous_close_closing():
    c = established_client()
    c.ep.shutdown(1)
    c.got()
    c.send(ACK | FIN)                        # their FIN crosses ours, not acking it
    assert c.ep.state == CLOSING
    (ack,) = c.got()
    assert ack.ack == c.rcv
    c.snd += 1
    c.send(ACK)
    assert c.ep.state == TIME_WAIT


def test_simultaneous_close_two_stacks():
    p = Pair()
    cli, srv, lst = connect_pair(p.a_tcp, p.b_tcp, p.clock, B4)
    cli.close()
    srv.close()                              # both FINs in flight together
    p.clock.advance(5 * MS)
    assert cli.state == TIME_WAIT and srv.state == TIME_WAIT
    p.clock.advance(61 * SEC)
    assert cli.state == srv.state == CLOSED


def test_passive_close_close_wait_last_ack():
    c = established_client()
    c.send(ACK | FIN)
    assert c.ep.state == CLOSE_WAIT
    assert c.ep.readiness() == POLLIN | POLLOUT | POLLRDHUP
    assert c.ep.recv(10)[0] == b""
    c.ep.send(b"still")                      # half-close: we may still send
    c.run()
    c.ep.close()
    assert c.ep.state == LAST_ACK
    segs = c.got()
    assert segs[-1].flags & FIN
    c.snd += 5 + 1
    c.send(ACK)
    assert c.ep.state == CLOSED


def test_time_wait_reacks_retransmitted_fin_and_restarts():
    c = established_client()
    c.ep.shutdown(1)
    c.got()
    c.snd += 1
    c.send(ACK | FIN)
    c.got()
    c.run(30 * SEC)
    c.send(ACK | FIN, seq=c.rcv - 1)         # their FIN again (our ACK was lost)
    (ack,) = c.got()
    assert ack.ack == c.rcv
    c.run(59 * SEC)
    assert c.ep.state == TIME_WAIT           # 2*MSL counted from the last FIN
    c.run(2 * SEC)
    assert c.ep.state == CLOSED


def test_time_wait_msl_is_a_parameter():
    c = established_client()
    c.p.a_tcp.msl = 1 * SEC
    c.ep.shutdown(1)
    c.got()
    c.snd += 1
    c.send(ACK | FIN)
    c.run(2 * SEC)
    assert c.ep.state == CLOSED


def test_time_wait_new_syn_reopens_to_listener():
    p = Pair()
    peer = RawPeer(p.b)
    lst = p.a_tcp.endpoint(AF_INET)
    lst.setsockopt(1, 2, 1)
    lst.bind((bytes(4), PORT))
    lst.listen(4)
    synack = syn_to_server(p, peer, lst, ts=(10, 0))
    peer.send(seg(4000, PORT, ISS + 1, synack.seq + 1, ACK, ts=(11, synack.ts[0])))
    p.clock.advance(2 * MS)
    ep = lst.accept()
    ep.close()                                # we close first: we get TIME-WAIT
    p.clock.advance(2 * MS)
    (fin,) = peer.take()
    peer.send(seg(4000, PORT, ISS + 1, fin.seq + 1, ACK | FIN, ts=(12, fin.ts[0])))
    p.clock.advance(2 * MS)
    peer.take()
    assert ep.state == TIME_WAIT
    synack2 = syn_to_server(p, peer, lst, seq=ISS + 100_000, ts=(20, 0))
    assert ep.state == CLOSED
    assert len(lst.syn_queue) == 1 and synack2.ack == ISS + 100_001


def test_half_close_between_stacks():
    p = Pair()
    cli, srv, lst = connect_pair(p.a_tcp, p.b_tcp, p.clock, B4)
    cli.send(b"request")
    cli.shutdown(1)
    p.clock.advance(10 * MS)
    assert srv.recv(100)[0] == b"request"
    assert srv.recv(100)[0] == b""           # EOF
    assert srv.state == CLOSE_WAIT and cli.state == FIN_WAIT2
    with pytest.raises(OSError) as e:
        cli.send(b"x")
    assert e.value.errno == errno.EPIPE
    srv.send(b"response " * 100)
    p.clock.advance(10 * MS)
    assert cli.recv(10000)[0] == b"response " * 100
    srv.close()
    p.clock.advance(10 * MS)
    assert cli.recv(10)[0] == b"" and cli.state == TIME_WAIT and srv.state == CLOSED


# --- RST in every state (RFC 5961 3.2) -----------------------------------------

def _rst(c, off=0):
    c.send(RST | ACK, seq=c.rcv + off)


def test_rst_established_resets():
    c = established_client()
    c.send(ACK, b"unread")
    _rst(c)
    assert c.ep.state == CLOSED
    assert c.ep.readiness() == POLLIN | POLLOUT | POLLERR | POLLHUP | POLLRDHUP
    assert c.ep.recv(100)[0] == b"unread"    # what arrived stays readable
    with pytest.raises(OSError) as e:
        c.ep.recv(100)
    assert e.value.errno == errno.ECONNRESET
    assert c.ep.recv(100)[0] == b""
    with pytest.raises(OSError) as e:
        c.ep.send(b"x")
    assert e.value.errno == errno.EPIPE


def test_rst_in_window_but_not_exact_gets_challenge_ack():
    c = established_client()
    _rst(c, 10)
    assert c.ep.state == ESTABLISHED
    (ack,) = c.got()
    assert ack.flags == ACK and ack.ack == c.rcv
    assert c.p.a.stats["tcp.challenge_ack"] == 1


def test_rst_outside_window_ignored():
    c = established_client()
    _rst(c, 10_000_000)
    assert c.ep.state == ESTABLISHED and c.got() == []


@pytest.mark.parametrize("state", ["FIN_WAIT1", "FIN_WAIT2", "CLOSE_WAIT", "CLOSING",
                                   "LAST_ACK", "TIME_WAIT"])
def test_rst_in_closing_states(state):
    c = established_client()
    if state in ("FIN_WAIT1", "FIN_WAIT2", "CLOSING", "TIME_WAIT"):
        c.ep.shutdown(1)
        c.got()
        if state in ("FIN_WAIT2", "TIME_WAIT"):
            c.snd += 1
            c.send(ACK)
        if state == "CLOSING":
            c.send(ACK | FIN)
        if state == "TIME_WAIT":
            c.send(ACK | FIN)
    else:
        c.send(ACK | FIN)
        if state == "LAST_ACK":
            c.ep.shutdown(1)
    c.got()
    assert c.ep.state == globals()[state]
    _rst(c)
    assert c.ep.state == CLOSED
    err = c.ep.take_error()
    if state == "CLOSE_WAIT":
        assert err == errno.EPIPE
    elif state == "TIME_WAIT":
        assert err == 0
    else:
        assert err == errno.ECONNRESET


def test_rst_in_syn_received_passive_returns_to_listen():
    p, peer, lst = server()
    syn_to_server(p, peer, lst)
    (child,) = lst.syn_queue
    peer.send(seg(4000, PORT, ISS + 1, 0, RST))
    p.clock.advance(2 * MS)
    assert child.state == CLOSED and not lst.syn_queue and lst.state == LISTEN
    syn_to_server(p, peer, lst, sport=4001)          # still listening


def test_rst_in_syn_received_active_refuses():
    c = client()
    c.peer.send(seg(PORT, c.lport, ISS, 0, SYN, ts=(50, 0)))
    c.rcv = ISS + 1
    c.run()
    assert c.ep.state == SYN_RECV
    c.peer.send(seg(PORT, c.lport, ISS + 1, 0, RST))
    c.run()
    assert c.ep.state == CLOSED
    with pytest.raises(OSError) as e:
        c.ep.connect_result()
    assert e.value.errno == errno.ECONNREFUSED


def test_close_with_unread_data_sends_rst():
    p = Pair()
    cli, srv, lst = connect_pair(p.a_tcp, p.b_tcp, p.clock, B4)
    cli.send(b"never read")
    p.clock.advance(10 * MS)
    srv.close()
    p.clock.advance(10 * MS)
    assert srv.state == CLOSED and cli.state == CLOSED
    assert cli.take_error() == errno.ECONNRESET


def test_linger_zero_sends_rst():
    import struct
    p = Pair()
    cli, srv, lst = connect_pair(p.a_tcp, p.b_tcp, p.clock, B4)
    cli.setsockopt(1, 13, struct.pack("ii", 1, 0))
    cli.close()
    p.clock.advance(10 * MS)
    assert cli.state == CLOSED and srv.state == CLOSED
    assert srv.take_error() == errno.ECONNRESET
    assert p.a_tcp.count(TIME_WAIT) == 0


def test_data_to_closed_socket_answered_with_rst():
    c = established_client()
    c.ep.close()
    c.got()
    c.send(ACK, b"late data")
    assert c.ep.state == CLOSED
    assert any(s.flags & RST for s in c.got())


def test_listener_close_resets_queued_connections():
    p = Pair()
    lst = p.b_tcp.endpoint(AF_INET)
    lst.bind((bytes(4), PORT))
    lst.listen(4)
    cli = p.a_tcp.endpoint(AF_INET)
    cli.connect((B4, PORT))
    p.clock.advance(10 * MS)
    assert cli.state == ESTABLISHED and len(lst.accept_queue) == 1
    lst.close()
    p.clock.advance(10 * MS)
    assert cli.state == CLOSED and cli.take_error() == errno.ECONNRESET


# --- robustness: arbitrary segments never break the state machine --------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_u32 = st.integers(0, 0xFFFFFFFF)
_near = st.integers(-70000, 70000)
_segment = st.tuples(
    st.integers(0, 255).filter(lambda f: not (f & SYN and f & (FIN | RST))),
    st.one_of(_near.map(lambda d: ("rel", d)), _u32.map(lambda v: ("abs", v))),
    st.one_of(_near.map(lambda d: ("rel", d)), _u32.map(lambda v: ("abs", v))),
    st.integers(0, 0xFFFF), st.binary(max_size=3000),
    st.none() | st.tuples(_u32, _u32),
    st.lists(st.tuples(_u32, _u32), max_size=3).map(tuple))


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["established", "fin_wait", "close_wait", "listen"]),
       st.lists(_segment, min_size=1, max_size=25), st.booleans())
def test_random_segments_keep_invariants(where, segs, app):
    if where == "listen":
        p, peer, lst = server()
        ep, lport, snd, rcv = lst, 4000, 0, ISS
    else:
        c = established_client()
        if where == "fin_wait":
            c.ep.shutdown(1)
        elif where == "close_wait":
            c.send(ACK | FIN)
        p, peer, ep, lport, snd, rcv = c.p, c.peer, c.ep, c.lport, c.snd, c.rcv
    for flags, sq, ak, win, payload, ts, sack in segs:
        s = sq[1] if sq[0] == "abs" else rcv + sq[1]
        a = ak[1] if ak[0] == "abs" else snd + ak[1]
        sport, dport = (PORT, lport) if where != "listen" else (lport, PORT)
        peer.send(seg(sport, dport, s, a, flags, win, payload, ts=ts, sack=sack))
        p.clock.advance(1 * MS)
        if app and where != "listen":
            try:
                ep.recv(5000)
                ep.send(b"z" * 100)
            except (WouldBlock, OSError):
                pass
        if ep.state not in (LISTEN, CLOSED):
            assert ep.snd_una <= ep.snd_nxt <= ep.snd_max
            assert ep.rcvq.size + ep.ooo.size <= ep.rcvbuf + 65535
            assert ep.sndq.base == ep.snd_una or ep.snd_una == ep.sndq.end + 1 \
                or ep.state in (SYN_SENT, SYN_RECV)
    p.clock.advance(200 * SEC)
    ep.readiness()
    if where == "listen":
        assert len(lst.syn_queue) <= 8
