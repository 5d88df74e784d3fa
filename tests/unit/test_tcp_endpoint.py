"""The socket-facing TCP endpoint over the real Stack's loopback: Linux's
errnos for calls in the wrong state, tcp_poll's readiness bits, bind and
SO_REUSEADDR/SO_REUSEPORT rules, dual-stack, buffers, options and
TCP_INFO. (The expected values are what Linux 6.x answers.)"""
import errno
import struct

import pytest

from netstack.core import (AF_INET, AF_INET6, ANY4, ANY6, LOOPBACK4, LOOPBACK6,
                           POLLHUP, POLLIN, POLLOUT, POLLRDHUP, V4MAPPED, WouldBlock)
from netstack.tcp import (CLOSE_WAIT, CLOSED, ESTABLISHED, FIN_WAIT2, LISTEN,
                          TIME_WAIT, TCPEndpoint)
from tcp_harness import MS, SEC, connect_pair, loopback_stack, transfer

SOL_SOCKET, IPPROTO_TCP, IPPROTO_IP, IPPROTO_IPV6 = 1, 6, 0, 41
SO_REUSEADDR, SO_ERROR, SO_SNDBUF, SO_RCVBUF, SO_KEEPALIVE = 2, 4, 7, 8, 9
SO_LINGER, SO_REUSEPORT, SO_ACCEPTCONN = 13, 15, 30
TCP_NODELAY, TCP_MAXSEG, TCP_CORK, TCP_KEEPIDLE, TCP_KEEPINTVL = 1, 2, 3, 4, 5
TCP_KEEPCNT, TCP_INFO, TCP_QUICKACK, TCP_CONGESTION, TCP_USER_TIMEOUT = 6, 11, 12, 13, 18
IP_TTL, IPV6_V6ONLY = 2, 26


def err(fn, *args):
    with pytest.raises(OSError) as e:
        fn(*args)
    return e.value.errno


@pytest.fixture
def lo():
    clock, stack, tcp = loopback_stack()
    return clock, stack, tcp


def pair(lo, port=7000, family=AF_INET):
    clock, stack, tcp = lo
    return connect_pair(tcp, tcp, clock, LOOPBACK4 if family == AF_INET else LOOPBACK6,
                        port, family)


def test_endpoint_from_stack_registers_tcp():
    clock, stack, _ = loopback_stack()
    ep = TCPEndpoint(stack, AF_INET, 1000)
    assert stack.handlers[6] is ep.proto and ep.uid == 1000
    assert ep.family == AF_INET and ep.stype == 1 and ep.protocol == 6


def test_fresh_socket_errnos_and_readiness(lo):
    clock, stack, tcp = lo
    s = tcp.endpoint(AF_INET)
    assert s.readiness() == POLLOUT | POLLHUP
    assert err(s.send, b"x") == errno.EPIPE
    assert err(s.recv, 1) == errno.ENOTCONN
    assert err(s.shutdown, 1) == errno.ENOTCONN
    assert err(s.getpeername) == errno.ENOTCONN
    assert s.getsockname() == (ANY4, 0)
    assert err(s.accept) == errno.EINVAL
    assert err(s.shutdown, 7) == errno.EINVAL
    assert s.getsockopt(SOL_SOCKET, SO_SNDBUF) == 16384
    assert s.getsockopt(SOL_SOCKET, SO_RCVBUF) == 131072
    assert s.getsockopt(IPPROTO_TCP, TCP_MAXSEG) == 536
    assert s.getsockopt(IPPROTO_TCP, TCP_QUICKACK) == 1
    assert s.getsockopt(IPPROTO_TCP, TCP_KEEPIDLE) == 7200
    assert s.getsockopt(IPPROTO_TCP, TCP_USER_TIMEOUT) == 0
    assert s.getsockopt(SOL_SOCKET, SO_LINGER) == bytes(8)
    assert s.getsockopt(IPPROTO_IP, IP_TTL) == 64
    assert s.getsockopt(IPPROTO_TCP, TCP_CONGESTION).rstrip(b"\0") == b"reno"
    info = s.getsockopt(IPPROTO_TCP, TCP_INFO)
    assert len(info) == 248 and info[0] == 7                    # TCP_CLOSE
    assert struct.unpack_from("I", info, 8)[0] == 1_000_000     # initial RTO, us


def test_listening_socket_errnos(lo):
    clock, stack, tcp = lo
    l = tcp.endpoint(AF_INET)
    l.bind((LOOPBACK4, 0))
    l.listen(1)
    assert l.readiness() == 0
    assert err(l.connect, (LOOPBACK4, 1)) == errno.EISCONN
    assert err(l.send, b"x") == errno.EPIPE
    assert err(l.recv, 1) == errno.ENOTCONN
    l.shutdown(1)                                    # SHUT_WR on a listener: nothing
    assert l.state == LISTEN
    assert l.getsockopt(SOL_SOCKET, SO_ACCEPTCONN) == 1
    assert l.getsockopt(IPPROTO_TCP, TCP_INFO)[0] == 10         # TCP_LISTEN
    assert l.listening
    l.listen(5)                                      # listen again: new backlog only
    assert l.backlog == 5


def test_connected_socket_errnos(lo):
    c, a, l = pair(lo)
    assert c.readiness() == POLLOUT
    assert err(c.listen, 1) == errno.EINVAL
    assert err(c.bind, (LOOPBACK4, 0)) == errno.EINVAL
    assert err(c.connect, l.getsockname()) == errno.EISCONN
    assert c.getsockopt(SOL_SOCKET, SO_SNDBUF) > 16384          # autotuned
    assert c.send(b"x", 0, (LOOPBACK4, 9)) == 1                # a stream ignores `to`
    assert a.recv(10)[0] == b"x"
    with pytest.raises(WouldBlock) as wb:
        a.recv(10)
    assert wb.value.events == POLLIN and wb.value.queue in a.queues()


def test_shutdown_rd_and_wr(lo):
    c, a, l = pair(lo)
    c.shutdown(1)
    assert err(c.send, b"x") == errno.EPIPE
    assert c.readiness() == POLLOUT
    assert a.readiness() == POLLIN | POLLOUT | POLLRDHUP
    assert a.recv(10)[0] == b""
    c.shutdown(0)
    assert c.recv(10)[0] == b""
    assert c.readiness() == POLLIN | POLLOUT | POLLHUP | POLLRDHUP
    a.send(b"late")                     # FIN-WAIT-2 with SHUT_RD: data resets (Linux)
    assert c.state == CLOSED and a.state == CLOSED
    assert err(c.recv, 10) == errno.ECONNRESET


def test_refused_then_retry(lo):
    clock, stack, tcp = lo
    s = tcp.endpoint(AF_INET)
    s.connect((LOOPBACK4, 1))
    assert err(s.connect_result) == errno.ECONNREFUSED
    assert s.readiness() == POLLOUT | POLLHUP
    assert err(s.send, b"x") == errno.EPIPE
    assert s.getsockname() == (ANY4, 0)              # the implicit port went back
    s.connect((LOOPBACK4, 1))                        # a new attempt
    assert err(s.connect_result) == errno.ECONNREFUSED


def test_second_connect_after_failure_seen_by_so_error(lo):
    clock, stack, tcp = lo
    s = tcp.endpoint(AF_INET)
    s.connect((LOOPBACK4, 1))
    assert s.getsockopt(SOL_SOCKET, SO_ERROR) == errno.ECONNREFUSED
    assert s.getsockopt(SOL_SOCKET, SO_ERROR) == 0
    assert err(s.connect, (LOOPBACK4, 1)) == errno.ECONNABORTED


def test_nonblocking_style_connect_sequence(lo):
    clock, stack, tcp = lo
    l = tcp.endpoint(AF_INET)
    l.bind((LOOPBACK4, 0))
    l.listen(4)
    s = tcp.endpoint(AF_INET)
    s.connect(l.getsockname())
    assert s.state == ESTABLISHED                    # loopback: done already
    s.connect(l.getsockname())                       # Linux: 0 the second time
    assert err(s.connect, l.getsockname()) == errno.EISCONN


def test_disconnect_with_af_unspec(lo):
    c, a, l = pair(lo)
    c.disconnect()
    assert c.state == CLOSED and a.state == CLOSED
    assert a.take_error() == errno.ECONNRESET
    assert c.getsockname()[1] == 0
    c.connect(l.getsockname())                       # reusable
    assert c.connect_result() == 0


def test_bind_rules(lo):
    clock, stack, tcp = lo
    a = tcp.endpoint(AF_INET)
    a.bind((LOOPBACK4, 7100))
    assert a.getsockname() == (LOOPBACK4, 7100)
    assert err(a.bind, (LOOPBACK4, 7101)) == errno.EINVAL
    b = tcp.endpoint(AF_INET)
    assert err(b.bind, (ANY4, 7100)) == errno.EADDRINUSE
    assert err(b.bind, (bytes((10, 9, 9, 9)), 0)) == errno.EADDRNOTAVAIL
    b.bind((bytes((127, 0, 0, 2)), 7100 + 1))        # all of 127/8 is ours
    # SO_REUSEADDR: allowed while neither listens; the second listen fails
    c = tcp.endpoint(AF_INET)
    d = tcp.endpoint(AF_INET)
    for s in (c, d):
        s.setsockopt(SOL_SOCKET, SO_REUSEADDR, 1)
    c.bind((LOOPBACK4, 7200))
    d.bind((LOOPBACK4, 7200))
    c.listen(1)
    assert err(d.listen, 1) == errno.EADDRINUSE
    e = tcp.endpoint(AF_INET)
    e.setsockopt(SOL_SOCKET, SO_REUSEADDR, 1)
    assert err(e.bind, (LOOPBACK4, 7200)) == errno.EADDRINUSE   # c listens


def test_reuseport_group_shares_connections(lo):
    clock, stack, tcp = lo
    ls = []
    for _ in range(2):
        s = tcp.endpoint(AF_INET)
        s.setsockopt(SOL_SOCKET, SO_REUSEPORT, 1)
        s.bind((LOOPBACK4, 7300))
        s.listen(64)
        ls.append(s)
    other_user = TCPEndpoint(tcp, AF_INET, uid=5)
    other_user.setsockopt(SOL_SOCKET, SO_REUSEPORT, 1)
    assert err(other_user.bind, (LOOPBACK4, 7300)) == errno.EADDRINUSE
    for _ in range(40):
        tcp.endpoint(AF_INET).connect((LOOPBACK4, 7300))
    counts = [len(s.accept_queue) for s in ls]
    assert sum(counts) == 40 and all(counts)


def test_reuseaddr_binds_over_time_wait(lo):
    clock, stack, tcp = lo
    l = tcp.endpoint(AF_INET)
    l.setsockopt(SOL_SOCKET, SO_REUSEADDR, 1)
    l.bind((LOOPBACK4, 7400))
    l.listen(4)
    c = tcp.endpoint(AF_INET)
    c.connect((LOOPBACK4, 7400))
    a = l.accept()
    a.close()                                        # server closes first: TIME-WAIT
    c.close()
    l.close()
    assert a.state == TIME_WAIT
    plain = tcp.endpoint(AF_INET)
    assert err(plain.bind, (LOOPBACK4, 7400)) == errno.EADDRINUSE
    again = tcp.endpoint(AF_INET)
    again.setsockopt(SOL_SOCKET, SO_REUSEADDR, 1)
    again.bind((LOOPBACK4, 7400))
    again.listen(4)
    clock.advance(61 * SEC)
    assert a.state == CLOSED
    plain2 = tcp.endpoint(AF_INET)
    plain2.setsockopt(SOL_SOCKET, SO_REUSEADDR, 1)
    again.close()
    plain2.bind((LOOPBACK4, 7400))


def test_dual_stack_v4_mapped(lo):
    clock, stack, tcp = lo
    l = tcp.endpoint(AF_INET6)
    l.bind((ANY6, 7500))
    l.listen(4)
    c = tcp.endpoint(AF_INET)
    c.connect((LOOPBACK4, 7500))
    a = l.accept()
    assert a.family == AF_INET6
    assert a.getpeername() == (V4MAPPED + LOOPBACK4, c.getsockname()[1])
    assert a.getsockname() == (V4MAPPED + LOOPBACK4, 7500)
    c6 = tcp.endpoint(AF_INET6)
    c6.connect((V4MAPPED + LOOPBACK4, 7500))
    assert c6.connect_result() == 0
    assert c6.getsockname()[0] == V4MAPPED + LOOPBACK4
    c6b = tcp.endpoint(AF_INET6)
    c6b.connect((LOOPBACK6, 7500))
    assert l.accept().getpeername()[0] in (V4MAPPED + LOOPBACK4, LOOPBACK6)


def test_v6only(lo):
    clock, stack, tcp = lo
    l = tcp.endpoint(AF_INET6)
    l.setsockopt(IPPROTO_IPV6, IPV6_V6ONLY, 1)
    l.bind((ANY6, 7600))
    assert err(l.setsockopt, IPPROTO_IPV6, IPV6_V6ONLY, 0) == errno.EINVAL
    l.listen(4)
    four = tcp.endpoint(AF_INET)
    four.bind((ANY4, 7600))                          # no overlap with a v6-only ::
    c = tcp.endpoint(AF_INET)
    c.connect((LOOPBACK4, 7600))
    assert err(c.connect_result) == errno.ECONNREFUSED
    m = tcp.endpoint(AF_INET6)
    m.setsockopt(IPPROTO_IPV6, IPV6_V6ONLY, 1)
    assert err(m.bind, (V4MAPPED + LOOPBACK4, 0)) == errno.EINVAL


def test_send_buffer_bound_and_pollout(lo):
    c, a, l = pair(lo)
    c.setsockopt(SOL_SOCKET, SO_SNDBUF, 8192)
    assert c.getsockopt(SOL_SOCKET, SO_SNDBUF) == 16384
    a.setsockopt(SOL_SOCKET, SO_RCVBUF, 4096)        # small window
    total = 0
    with pytest.raises(WouldBlock) as wb:
        while True:
            total += c.send(bytes(5000))
    assert wb.value.events == POLLOUT
    assert c.pending_out() <= 16384
    assert not c.readiness() & POLLOUT
    got = b""
    while len(got) < total:
        try:
            got += a.recv(65536)[0]
        except WouldBlock:
            clock = lo[0]
            clock.advance(300 * MS)
    assert len(got) == total
    assert c.readiness() & POLLOUT


def test_buffer_option_doubling_and_minimums(lo):
    clock, stack, tcp = lo
    s = tcp.endpoint(AF_INET)
    s.setsockopt(SOL_SOCKET, SO_RCVBUF, 1000)
    s.setsockopt(SOL_SOCKET, SO_SNDBUF, 1000)
    assert s.getsockopt(SOL_SOCKET, SO_RCVBUF) == 2304
    assert s.getsockopt(SOL_SOCKET, SO_SNDBUF) == 4608
    s.setsockopt(SOL_SOCKET, SO_RCVBUF, 1 << 30)
    assert s.getsockopt(SOL_SOCKET, SO_RCVBUF) == 2 * tcp.rmem_max


def test_option_validation(lo):
    clock, stack, tcp = lo
    s = tcp.endpoint(AF_INET)
    assert err(s.setsockopt, IPPROTO_TCP, TCP_MAXSEG, 10) == errno.EINVAL
    s.setsockopt(IPPROTO_TCP, TCP_MAXSEG, 100)
    assert s.getsockopt(IPPROTO_TCP, TCP_MAXSEG) == 100
    assert err(s.setsockopt, IPPROTO_TCP, TCP_CONGESTION, b"bogus") == errno.ENOENT
    s.setsockopt(IPPROTO_TCP, TCP_CONGESTION, b"cubic\0")
    assert s.getsockopt(IPPROTO_TCP, TCP_CONGESTION).rstrip(b"\0") == b"cubic"
    assert err(s.setsockopt, IPPROTO_TCP, TCP_KEEPIDLE, 0) == errno.EINVAL
    assert err(s.setsockopt, IPPROTO_TCP, TCP_KEEPCNT, 0) == errno.EINVAL
    assert err(s.setsockopt, IPPROTO_TCP, TCP_USER_TIMEOUT, -1) == errno.EINVAL
    assert err(s.setsockopt, IPPROTO_TCP, 999, 1) == errno.ENOPROTOOPT
    assert err(s.getsockopt, IPPROTO_TCP, 999) == errno.ENOPROTOOPT
    assert err(s.setsockopt, SOL_SOCKET, 999, 1) == errno.ENOPROTOOPT
    assert err(s.setsockopt, IPPROTO_IP, IP_TTL, 0) == errno.EINVAL
    s.setsockopt(IPPROTO_IP, IP_TTL, 7)
    assert s.getsockopt(IPPROTO_IP, IP_TTL) == 7
    s.setsockopt(IPPROTO_TCP, TCP_NODELAY, struct.pack("i", 1))   # raw guest bytes
    assert s.getsockopt(IPPROTO_TCP, TCP_NODELAY) == 1
    assert err(s.setsockopt, IPPROTO_TCP, TCP_NODELAY, b"\1") == errno.EINVAL


def test_tcp_info_connected(lo):
    c, a, l = pair(lo)
    c.send(b"x" * 1000)
    a.recv(2000)
    info = c.getsockopt(IPPROTO_TCP, TCP_INFO)
    state, ca, retrans, probes, backoff, opts, wscale = struct.unpack_from("7B", info)
    rto, ato, snd_mss, rcv_mss = struct.unpack_from("4I", info, 8)
    assert state == 1 and ca == 0 and retrans == 0
    assert opts == 7                                  # timestamps, SACK, window scale
    assert wscale & 15 == c.snd_wscale and wscale >> 4 == c.rcv_wscale
    assert 200_000 <= rto <= 1_000_000
    assert snd_mss == c.mss == 65483                  # as Linux on lo
    pmtu, rcv_ssthresh, rtt, rttvar, ssthresh, cwnd = struct.unpack_from("6I", info, 8 + 4 * 13)
    assert pmtu == 65535 and cwnd == 10 and ssthresh == 0x7FFFFFFF
    bytes_acked, bytes_received = struct.unpack_from("2Q", info, 120)
    assert bytes_acked >= 1000
    assert struct.unpack_from("Q", info, 200)[0] == 1000          # bytes_sent


def test_keepalive_and_linger_options_round_trip(lo):
    clock, stack, tcp = lo
    s = tcp.endpoint(AF_INET)
    s.setsockopt(SOL_SOCKET, SO_KEEPALIVE, 1)
    s.setsockopt(IPPROTO_TCP, TCP_KEEPIDLE, 30)
    s.setsockopt(IPPROTO_TCP, TCP_KEEPINTVL, 5)
    s.setsockopt(IPPROTO_TCP, TCP_KEEPCNT, 3)
    s.setsockopt(SOL_SOCKET, SO_LINGER, struct.pack("ii", 1, 7))
    assert s.getsockopt(SOL_SOCKET, SO_KEEPALIVE) == 1
    assert (s.getsockopt(IPPROTO_TCP, TCP_KEEPIDLE), s.getsockopt(IPPROTO_TCP, TCP_KEEPINTVL),
            s.getsockopt(IPPROTO_TCP, TCP_KEEPCNT)) == (30, 5, 3)
    assert struct.unpack("ii", s.getsockopt(SOL_SOCKET, SO_LINGER)) == (1, 7)


def test_accepted_socket_inherits_options(lo):
    clock, stack, tcp = lo
    l = tcp.endpoint(AF_INET)
    l.setsockopt(IPPROTO_TCP, TCP_NODELAY, 1)
    l.setsockopt(SOL_SOCKET, SO_KEEPALIVE, 1)
    l.setsockopt(IPPROTO_TCP, TCP_CONGESTION, b"cubic")
    l.bind((LOOPBACK4, 0))
    l.listen(1)
    tcp.endpoint(AF_INET).connect(l.getsockname())
    a = l.accept()
    assert a.nodelay and a.keepalive and a.cc.name == "cubic"


def test_peek_and_trunc(lo):
    c, a, l = pair(lo)
    c.send(b"0123456789")
    assert a.recv(4, 0x2) == (b"0123", 4, None)          # MSG_PEEK
    assert a.pending_in() == 10
    assert a.recv(3, 0x20) == (b"", 3, None)             # MSG_TRUNC: discarded
    assert a.recv(100)[0] == b"3456789"
    assert err(a.recv, 1, 0x1) == errno.EINVAL           # MSG_OOB: urgent data is inline


def test_big_transfer_over_loopback(lo):
    clock, stack, tcp = lo
    c, a, l = pair(lo)
    data = bytes(range(256)) * 20000
    assert transfer(clock, c, a, data) == data
    assert a.getsockopt(SOL_SOCKET, SO_RCVBUF) > 131072      # grew while busy


def test_ipv6_loopback_transfer(lo):
    clock, stack, tcp = lo
    c, a, l = pair(lo, family=AF_INET6)
    assert c.mss == 65536 - 60 - 12
    data = bytes(range(256)) * 2000
    assert transfer(clock, a, c, data) == data


def test_close_wait_and_fin_wait2_orphan_timeout(lo):
    clock, stack, tcp = lo
    c, a, l = pair(lo)
    c.close()
    assert c.state == FIN_WAIT2 and a.state == CLOSE_WAIT
    clock.advance(59 * SEC)
    assert c.state == FIN_WAIT2
    clock.advance(2 * SEC)                    # tcp_fin_timeout for an orphan
    assert c.state == CLOSED
    assert a.state == CLOSE_WAIT
