"""UDP endpoints on real stacks: loopback (v4, v6, dual-stack), and two
stacks joined in memory where packets cross as bytes (IP header,
checksums, fragments). Expected behaviour is Linux's (udp.c, and gVisor's
udp_socket tests, which run against Linux too)."""
import errno

import pytest

from netstack.core import (AF_INET, AF_INET6, ANY4, ANY6, IPPROTO_IP,
                           IPPROTO_IPV6, LOOPBACK4, LOOPBACK6, POLLERR,
                           POLLHUP, POLLIN, POLLOUT, POLLRDHUP, WouldBlock,
                           to_v6)
from netstack.ports import EPHEMERAL
from netstack.stack import Stack
from netstack.udp import (IP_TOS, IP_TTL, IPV6_UNICAST_HOPS, IPV6_V6ONLY,
                          MIN_RCVBUF, MIN_SNDBUF, MSG_DONTWAIT, MSG_PEEK,
                          RMEM_MAX, SO_BROADCAST, SO_RCVBUF, SO_REUSEADDR,
                          SO_REUSEPORT, SO_SNDBUF, SOL_SOCKET, UDPEndpoint,
                          truesize)
from netstack.wire import ipv4 as wire4
from netstack.wire import udp as wire_udp
from netstack_testkit import A4, B4, B6, ManualClock, joined_stacks

MAPPED_LO = to_v6(LOOPBACK4)


@pytest.fixture
def stack():
    return Stack.with_loopback(ManualClock())


def ep(stack, family=AF_INET, **opts):
    e = UDPEndpoint(stack, family)
    for name, v in opts.items():
        e.setsockopt(SOL_SOCKET, {"reuseaddr": SO_REUSEADDR, "reuseport": SO_REUSEPORT,
                                  "broadcast": SO_BROADCAST}[name], v)
    return e


def bound(stack, family=AF_INET, addr=None, port=0, **opts):
    e = ep(stack, family, **opts)
    e.bind((addr if addr is not None else (LOOPBACK4 if family == AF_INET else LOOPBACK6), port))
    return e


def errno_of(fn, *args):
    with pytest.raises(OSError) as ei:
        fn(*args)
    return ei.value.errno


# --- send and receive -------------------------------------------------------

@pytest.mark.parametrize("family,lo", [(AF_INET, LOOPBACK4), (AF_INET6, LOOPBACK6)])
def test_send_recv_loopback(stack, family, lo):
    r = bound(stack, family)
    s = ep(stack, family)
    assert s.getsockname() == (ANY4 if family == AF_INET else ANY6, 0)
    assert s.send(b"hello", 0, r.getsockname()) == 5
    # sendto autobinds to the wildcard and an ephemeral port
    addr, port = s.getsockname()
    assert addr == (ANY4 if family == AF_INET else ANY6)
    assert EPHEMERAL[0] <= port <= EPHEMERAL[1]
    data, full, frm = r.recv(100)
    assert (data, full, frm) == (b"hello", 5, (lo, port))
    assert r.last_info.dst == lo and r.last_info.nic is stack.lo
    with pytest.raises(WouldBlock) as wb:
        r.recv(100)
    assert wb.value.queue in r.queues() and wb.value.events == POLLIN


def test_boundaries_preserved_and_order(stack):
    r = bound(stack)
    s = ep(stack)
    for i in range(3):
        s.send(bytes([i]) * (100 + i), 0, r.getsockname())
    assert [r.recv(1000)[0] for _ in range(3)] == [bytes([i]) * (100 + i) for i in range(3)]


def test_waiters_notified_on_arrival(stack):
    r = bound(stack)
    woke = []
    r.queues()[0].add_waiter(lambda: woke.append(r.readiness()))
    ep(stack).send(b"x", 0, r.getsockname())
    assert woke and woke[0] & POLLIN


def test_zero_length_datagram(stack):
    r = bound(stack)
    s = ep(stack)
    s.connect(r.getsockname())
    assert s.send(b"") == 0
    assert r.readiness() & POLLIN
    assert r.pending_in() == 0
    assert r.recv(10)[:2] == (b"", 0)
    with pytest.raises(WouldBlock):
        r.recv(10)


def test_over_the_wire_v4_and_v6():
    a, b, la, _ = joined_stacks()
    for fam, dst in ((AF_INET, B4), (AF_INET6, B6)):
        r = bound(b, fam, dst, 4000)
        s = ep(a, fam)
        s.send(b"q" * 3000, 0, (dst, 4000))   # fragmented on the 1500 MTU
        data, full, frm = r.recv(5000)
        assert data == b"q" * 3000 and full == 3000
        assert frm[1] == s.getsockname()[1]
    assert b.stats["ipv4.frag_reassembled"] == 1 and b.stats["ipv6.frag_reassembled"] == 1


def test_wire_form_is_a_checksummed_udp_packet():
    a, b, la, _ = joined_stacks()
    r = bound(b, AF_INET, B4, 4000)
    s = bound(a, AF_INET, A4, 4001)
    s.setsockopt(IPPROTO_IP, IP_TTL, 7)
    s.setsockopt(IPPROTO_IP, IP_TOS, 0x10)
    s.send(b"abc", 0, (B4, 4000))
    ethertype, pkt, hop = la.sent[-1]
    assert ethertype == 0x0800 and hop == B4
    hdr, payload = wire4.parse(pkt)
    assert (hdr.ttl, hdr.tos, hdr.proto, hdr.src, hdr.dst, hdr.df) == (7, 0x10, 17, A4, B4, True)
    dg = wire_udp.parse(payload, A4, B4)
    assert (dg.sport, dg.dport, dg.payload) == (4001, 4000, b"abc")
    assert r.recv(10)[0] == b"abc" and r.last_info.ttl == 7 and r.last_info.tos == 0x10


def test_emsgsize_limits(stack):
    for fam in (AF_INET, AF_INET6):
        r = bound(stack, fam)
        s = ep(stack, fam)
        limit = 65507 if fam == AF_INET else 65527
        assert errno_of(s.send, bytes(limit + 1), 0, r.getsockname()) == errno.EMSGSIZE
        assert s.send(bytes(limit), 0, r.getsockname()) == limit
        assert r.recv(1 << 17)[1] == limit
    # a dual-stack socket sending to an IPv4 peer has IPv4's limit
    r4 = bound(stack)
    s6 = ep(stack, AF_INET6)
    assert errno_of(s6.send, bytes(65508), 0, (MAPPED_LO, r4.port)) == errno.EMSGSIZE


def test_send_to_port_zero_and_unconnected(stack):
    s = ep(stack)
    assert errno_of(s.send, b"x", 0, (LOOPBACK4, 0)) == errno.EINVAL
    assert s.port != 0      # autobound before the checks, as Linux's inet_send_prepare
    assert errno_of(s.send, b"x") == errno.EDESTADDRREQ


# --- dual stack ---------------------------------------------------------------

def test_dual_stack_receives_ipv4_as_mapped(stack):
    r6 = bound(stack, AF_INET6, ANY6)
    s4 = ep(stack)
    s4.send(b"v4", 0, (LOOPBACK4, r6.port))
    data, _, (addr, port) = r6.recv(10)
    assert data == b"v4" and addr == MAPPED_LO and port == s4.port
    # and answers to the mapped address reach the AF_INET socket
    r6.send(b"back", 0, (addr, port))
    assert s4.recv(10)[0] == b"back"


def test_v6only_socket_sees_no_ipv4(stack):
    r6 = ep(stack, AF_INET6)
    r6.setsockopt(IPPROTO_IPV6, IPV6_V6ONLY, 1)
    r6.bind((ANY6, 0))
    s4 = ep(stack)
    s4.connect((LOOPBACK4, r6.port))
    s4.send(b"x")
    with pytest.raises(WouldBlock):
        r6.recv(10)
    assert s4.take_error() == errno.ECONNREFUSED
    assert errno_of(r6.send, b"x", 0, (MAPPED_LO, 9)) == errno.ENETUNREACH
    other = ep(stack, AF_INET6)
    other.setsockopt(IPPROTO_IPV6, IPV6_V6ONLY, 1)
    assert errno_of(other.bind, (MAPPED_LO, 0)) == errno.EINVAL


def test_v6only_only_before_bind(stack):
    s = bound(stack, AF_INET6)
    assert errno_of(s.setsockopt, IPPROTO_IPV6, IPV6_V6ONLY, 1) == errno.EINVAL
    assert errno_of(ep(stack).setsockopt, IPPROTO_IPV6, IPV6_V6ONLY, 1) == errno.ENOPROTOOPT


def test_ipv4_prefers_af_inet_socket(stack):
    r6 = bound(stack, AF_INET6, ANY6, 0, reuseaddr=1)
    r4 = bound(stack, AF_INET, ANY4, r6.port, reuseaddr=1)
    ep(stack).send(b"x", 0, (LOOPBACK4, r6.port))
    assert r4.recv(10)[0] == b"x"
    with pytest.raises(WouldBlock):
        r6.recv(10)


# --- binding -----------------------------------------------------------------

def test_bind_conflicts(stack):
    a = bound(stack)
    assert errno_of(bound, stack, AF_INET, LOOPBACK4, a.port) == errno.EADDRINUSE
    assert errno_of(bound, stack, AF_INET, ANY4, a.port) == errno.EADDRINUSE
    # IPv6 :: covers IPv4 unless v6only
    assert errno_of(bound, stack, AF_INET6, ANY6, a.port) == errno.EADDRINUSE
    v6only = ep(stack, AF_INET6)
    v6only.setsockopt(IPPROTO_IPV6, IPV6_V6ONLY, 1)
    v6only.bind((ANY6, a.port))
    # bound twice
    assert errno_of(a.bind, (LOOPBACK4, 0)) == errno.EINVAL
    # not one of our addresses
    assert errno_of(ep(stack).bind, (bytes((10, 9, 9, 9)), 0)) == errno.EADDRNOTAVAIL
    assert errno_of(ep(stack, AF_INET6).bind, (bytes.fromhex("20010db8" + "00" * 11 + "01"), 0)) \
        == errno.EADDRNOTAVAIL
    # any address of lo's 127/8 is ours
    bound(stack, AF_INET, bytes((127, 1, 2, 3)), 0)


def test_reuseaddr_needs_both(stack):
    a = bound(stack, reuseaddr=1)
    assert errno_of(bound, stack, AF_INET, LOOPBACK4, a.port) == errno.EADDRINUSE
    b = bound(stack, AF_INET, LOOPBACK4, a.port, reuseaddr=1)
    # unicast goes to the newest of equals
    ep(stack).send(b"x", 0, (LOOPBACK4, a.port))
    assert b.recv(10)[0] == b"x"
    with pytest.raises(WouldBlock):
        a.recv(10)


def test_reuseport_group_shares_by_flow(stack):
    a = bound(stack, reuseport=1)
    b = bound(stack, AF_INET, LOOPBACK4, a.port, reuseport=1)
    assert errno_of(bound, stack, AF_INET, LOOPBACK4, a.port) == errno.EADDRINUSE
    senders = [ep(stack) for _ in range(24)]
    got = {}
    for _ in range(2):
        for i, s in enumerate(senders):
            s.send(bytes([i]), 0, (LOOPBACK4, a.port))
    for r in (a, b):
        while r.rxq:
            data, _, frm = r.recv(10)
            got.setdefault(frm, set()).add(id(r))
    assert len(got) == 24
    assert all(len(v) == 1 for v in got.values())   # a flow sticks to one socket
    assert {id(a), id(b)} == set().union(*got.values())


def test_ephemeral_ports_distinct(stack):
    eps = [bound(stack) for _ in range(200)]
    ports = {e.port for e in eps}
    assert len(ports) == 200
    assert all(EPHEMERAL[0] <= p <= EPHEMERAL[1] for p in ports)


def test_close_releases_port(stack):
    a = bound(stack)
    port = a.port
    a.close()
    bound(stack, AF_INET, LOOPBACK4, port)


# --- connect -----------------------------------------------------------------

def test_connect_sets_peer_and_source(stack):
    r = bound(stack)
    s = ep(stack)
    assert errno_of(s.getpeername) == errno.ENOTCONN
    s.bind((ANY4, 0))
    s.connect((LOOPBACK4, r.port))
    assert s.getpeername() == (LOOPBACK4, r.port)
    # bound to the wildcard and connected to loopback: the route's source
    assert s.getsockname() == (LOOPBACK4, s.port)
    s.send(b"x")
    assert r.recv(10)[2] == (LOOPBACK4, s.port)


def test_connected_socket_filters_other_peers(stack):
    a = bound(stack)
    peer = bound(stack)
    other = bound(stack)
    a.connect(peer.getsockname())
    other.send(b"no", 0, a.getsockname())
    peer.send(b"yes", 0, a.getsockname())
    assert a.recv(10)[0] == b"yes"
    with pytest.raises(WouldBlock):
        a.recv(10)
    # sendto another address while connected is allowed
    a.send(b"to other", 0, other.getsockname())
    assert other.recv(20)[0] == b"to other"


def test_received_before_connect_stays(stack):
    a = bound(stack)
    other = bound(stack)
    other.send(b"early", 0, a.getsockname())
    a.connect((LOOPBACK4, 9))
    assert a.recv(10)[0] == b"early"


def test_disconnect_keeps_explicit_binding(stack):
    r = bound(stack)
    s = bound(stack, AF_INET, ANY4, 0)
    s.connect(r.getsockname())
    s.disconnect()
    assert errno_of(s.getpeername) == errno.ENOTCONN
    # the address came from connect: reset; the port was chosen by bind(0):
    # Linux unhashes it too (SOCK_BINDPORT_LOCK unset)
    assert s.getsockname() == (ANY4, 0)
    # an explicit port stays
    gone = bound(stack)
    explicit = gone.port
    gone.close()
    e = ep(stack)
    e.bind((ANY4, explicit))
    e.connect(r.getsockname())
    e.disconnect()
    assert e.getsockname() == (ANY4, explicit)
    # and so does an explicit address
    lo_bound = bound(stack)
    lo_bound.connect(r.getsockname())
    lo_bound.disconnect()
    assert lo_bound.getsockname() == (LOOPBACK4, lo_bound.port)


def test_connect_autobinds_and_disconnect_unbinds(stack):
    r = bound(stack)
    s = ep(stack, AF_INET6)
    s.connect((MAPPED_LO, r.port))
    assert s.getsockname() == (MAPPED_LO, s.port) and s.port
    s.disconnect()
    assert s.getsockname() == (ANY6, 0)


def test_connect_any_port_zero(stack):
    s = ep(stack)
    s.connect((ANY4, 0))
    assert errno_of(s.getpeername) == errno.ENOTCONN
    s6 = ep(stack, AF_INET6)
    r6 = bound(stack, AF_INET6)
    s6.connect((ANY6, r6.port))         # :: means ourselves
    assert s6.getpeername() == (LOOPBACK6, r6.port)


def test_unreachable_network():
    a, b, la, _ = joined_stacks()
    s = ep(a)
    assert errno_of(s.connect, (bytes((192, 0, 2, 1)), 9)) == errno.ENETUNREACH
    assert errno_of(s.send, b"x", 0, (bytes((192, 0, 2, 1)), 9)) == errno.ENETUNREACH


# --- errors --------------------------------------------------------------------

@pytest.mark.parametrize("family", [AF_INET, AF_INET6])
def test_port_unreachable_refuses_connected_socket(stack, family):
    gone = bound(stack, family)
    addr = gone.getsockname()
    gone.close()
    s = ep(stack, family)
    s.connect(addr)
    assert s.send(b"x") == 1
    assert s.readiness() & POLLERR
    assert errno_of(s.send, b"x") == errno.ECONNREFUSED     # reported and cleared
    assert s.send(b"x") == 1                                  # and raised again
    assert s.getsockopt(SOL_SOCKET, 4) == errno.ECONNREFUSED  # SO_ERROR clears it
    assert s.take_error() == 0
    s.send(b"x")
    assert errno_of(s.recv, 10) == errno.ECONNREFUSED
    # an unconnected socket hears nothing
    u = ep(stack, family)
    u.send(b"x", 0, addr)
    assert u.take_error() == 0 and not u.readiness() & POLLERR


def test_port_unreachable_across_the_wire():
    a, b, la, lb = joined_stacks()
    for fam, dst in ((AF_INET, B4), (AF_INET6, B6)):
        s = ep(a, fam)
        s.connect((dst, 9))
        s.send(b"x")
        assert s.take_error() == errno.ECONNREFUSED
    assert b.stats["udp.no_port"] == 2


def test_host_unreachable_reported_with_recverr():
    a, b, la, _ = joined_stacks()
    s = ep(a)
    s.setsockopt(IPPROTO_IP, 11, 1)     # IP_RECVERR
    s.connect((B4, 9))
    la.drop = lambda et, p: True
    s.send(b"x")
    ethertype, pkt, _ = la.sent[-1]
    la.nic.neighbour_unreachable(ethertype, pkt)
    assert s.take_error() == errno.EHOSTUNREACH
    # without IP_RECVERR a soft error is not reported
    t = ep(a)
    t.connect((B4, 9))
    t.send(b"x")
    la.nic.neighbour_unreachable(*la.sent[-1][:2])
    assert t.take_error() == 0


# --- queue limits, peek, trunc ------------------------------------------------

def test_rcvbuf_limit_drops_and_counts(stack):
    r = bound(stack)
    r.setsockopt(SOL_SOCKET, SO_RCVBUF, 0)
    assert r.getsockopt(SOL_SOCKET, SO_RCVBUF) == MIN_RCVBUF
    s = ep(stack)
    size = 1000
    for _ in range(10):
        s.send(bytes(size), 0, r.getsockname())
    kept = len(r.rxq)
    # accepted while what is queued is within the limit, so one more than fits
    assert kept == MIN_RCVBUF // truesize(size) + 1
    assert stack.stats["udp.rcvbuf_drop"] == 10 - kept and r.drops == 10 - kept
    for _ in range(kept):
        r.recv(size)
    assert r.rmem == 0
    # an empty queue takes a datagram larger than the whole buffer
    s.send(bytes(20000), 0, r.getsockname())
    assert r.recv(1 << 16)[1] == 20000


def test_peek_and_trunc(stack):
    r = bound(stack)
    s = ep(stack)
    s.send(b"abcdef", 0, r.getsockname())
    s.send(b"gh", 0, r.getsockname())
    assert r.pending_in() == 6
    assert r.recv(3, MSG_PEEK)[:2] == (b"abc", 6)
    assert r.recv(100, MSG_PEEK)[:2] == (b"abcdef", 6)
    assert r.recv(4)[:2] == (b"abcd", 6)     # the rest of the datagram is gone
    assert r.pending_in() == 2
    assert r.recv(100)[:2] == (b"gh", 2)
    assert r.pending_in() == 0


# --- broadcast ---------------------------------------------------------------

def test_broadcast_needs_so_broadcast():
    a, b, la, lb = joined_stacks()
    r = bound(b, AF_INET, ANY4, 5353)
    local = bound(a, AF_INET, ANY4, 5353)
    s = ep(a)
    bcast = bytes((10, 0, 0, 255))
    assert errno_of(s.send, b"x", 0, (bcast, 5353)) == errno.EACCES
    assert errno_of(s.connect, (bcast, 5353)) == errno.EACCES
    s.setsockopt(SOL_SOCKET, SO_BROADCAST, 1)
    assert s.getsockopt(SOL_SOCKET, SO_BROADCAST) == 1
    s.send(b"hi all", 0, (bcast, 5353))
    assert la.sent[-1][2] == b"\xff\xff\xff\xff"     # the link broadcasts it
    assert r.recv(10)[0] == b"hi all"
    assert local.recv(10)[0] == b"hi all"            # and it loops back, as Linux
    # limited broadcast needs a route (as on Linux) and goes out of its interface
    assert errno_of(s.send, b"x", 0, (b"\xff\xff\xff\xff", 5353)) == errno.ENETUNREACH
    a.add_route(ANY4, 0, gateway=bytes((10, 0, 0, 254)))
    s.send(b"again", 0, (b"\xff\xff\xff\xff", 5353))
    assert r.recv(10)[0] == b"again"
    # no ICMP about broadcasts nobody listens to
    s.send(b"x", 0, (bcast, 9))
    assert b.stats["udp.no_port_broadcast"] == 1 and not b.stats["icmp.errors_sent"]


# --- shutdown -----------------------------------------------------------------

def test_shutdown_unconnected_is_enotconn(stack):
    s = bound(stack)
    assert errno_of(s.shutdown, 1) == errno.ENOTCONN
    assert errno_of(s.shutdown, 5) == errno.EINVAL


def test_shutdown_read(stack):
    a = bound(stack)
    b = bound(stack)
    a.connect(b.getsockname())
    b.connect(a.getsockname())
    b.send(b"abc")
    a.shutdown(0)
    assert a.readiness() & (POLLIN | POLLRDHUP) == POLLIN | POLLRDHUP
    assert a.pending_in() == 3
    assert a.recv(2)[0] == b"ab"            # queued data is still read
    with pytest.raises(WouldBlock):
        a.recv(10, MSG_DONTWAIT)            # non-blocking: EAGAIN
    assert a.recv(10) == (b"", 0, None)     # blocking: 0 at once


def test_shutdown_write(stack):
    a = bound(stack)
    b = bound(stack)
    a.connect(b.getsockname())
    a.shutdown(1)
    assert errno_of(a.send, b"x") == errno.EPIPE
    assert not a.readiness() & POLLHUP
    a.shutdown(0)
    assert a.readiness() & POLLHUP


# --- options ------------------------------------------------------------------

def test_buffer_sizes_doubled_and_clamped(stack):
    s = ep(stack)
    assert s.getsockopt(SOL_SOCKET, SO_RCVBUF) == 212992
    s.setsockopt(SOL_SOCKET, SO_RCVBUF, 10000)
    assert s.getsockopt(SOL_SOCKET, SO_RCVBUF) == 20000
    s.setsockopt(SOL_SOCKET, SO_RCVBUF, 1 << 30)
    assert s.getsockopt(SOL_SOCKET, SO_RCVBUF) == 2 * RMEM_MAX
    s.setsockopt(SOL_SOCKET, SO_RCVBUF, (-1).to_bytes(4, "little", signed=True))
    assert s.getsockopt(SOL_SOCKET, SO_RCVBUF) == 2 * RMEM_MAX
    s.setsockopt(SOL_SOCKET, SO_SNDBUF, 1)
    assert s.getsockopt(SOL_SOCKET, SO_SNDBUF) == MIN_SNDBUF
    assert errno_of(s.setsockopt, SOL_SOCKET, SO_SNDBUF, b"\x01") == errno.EINVAL


def test_ttl_and_hops_options(stack):
    s = ep(stack, AF_INET6)
    assert s.getsockopt(IPPROTO_IP, IP_TTL) == 64
    s.setsockopt(IPPROTO_IP, IP_TTL, 5)
    assert s.getsockopt(IPPROTO_IP, IP_TTL) == 5
    s.setsockopt(IPPROTO_IP, IP_TTL, -1)
    assert s.getsockopt(IPPROTO_IP, IP_TTL) == 64
    for bad in (0, 256, -2):
        assert errno_of(s.setsockopt, IPPROTO_IP, IP_TTL, bad) == errno.EINVAL
    s.setsockopt(IPPROTO_IP, IP_TTL, b"\x09")          # one byte is accepted
    assert s.getsockopt(IPPROTO_IP, IP_TTL) == 9
    assert s.getsockopt(IPPROTO_IPV6, IPV6_UNICAST_HOPS) == 64
    s.setsockopt(IPPROTO_IPV6, IPV6_UNICAST_HOPS, 3)
    r = bound(stack, AF_INET6)
    s.send(b"x", 0, r.getsockname())
    r.recv(10)
    assert r.last_info.ttl == 3
    assert errno_of(s.setsockopt, IPPROTO_IPV6, IPV6_UNICAST_HOPS, 256) == errno.EINVAL


def test_unknown_options(stack):
    s = ep(stack)
    assert errno_of(s.setsockopt, SOL_SOCKET, 999, 1) == errno.ENOPROTOOPT
    assert errno_of(s.getsockopt, IPPROTO_IP, 999) == errno.ENOPROTOOPT
    assert errno_of(s.setsockopt, 17, 1, 1) == errno.ENOPROTOOPT
    assert s.getsockopt(IPPROTO_IP, 8) == 0        # IP_PKTINFO stored
    s.setsockopt(IPPROTO_IP, 8, 1)
    assert s.getsockopt(IPPROTO_IP, 8) == 1


def test_readiness_and_listen(stack):
    s = bound(stack)
    assert s.readiness() == POLLOUT
    assert errno_of(s.listen, 5) == errno.EOPNOTSUPP
    assert errno_of(s.accept) == errno.EOPNOTSUPP
    assert s.connect_result() == 0 and s.pending_out() == 0


def test_loopback_subnet_broadcast(stack):
    # As in a Linux network namespace with only lo: 127.255.255.255 is a
    # broadcast address (EACCES without SO_BROADCAST), delivered to sockets
    # bound to the wildcard, not to 127.0.0.1; 255.255.255.255 has no route.
    bc = bytes((127, 255, 255, 255))
    anyr = bound(stack, AF_INET, ANY4, 0)
    s = ep(stack)
    assert errno_of(s.send, b"x", 0, (bc, anyr.port)) == errno.EACCES
    assert errno_of(s.send, b"x", 0, (b"\xff" * 4, anyr.port)) == errno.ENETUNREACH
    s.setsockopt(SOL_SOCKET, SO_BROADCAST, 1)
    s.send(b"x", 0, (bc, anyr.port))
    assert anyr.recv(10)[:2] == (b"x", 1)
    lo_only = bound(stack)
    s.send(b"y", 0, (bc, lo_only.port))
    with pytest.raises(WouldBlock):
        lo_only.recv(10)
    s.send(b"z", 0, (bc, 9))                 # nobody: no ICMP, no error
    assert s.take_error() == 0 and not stack.stats["icmp.errors_sent"]


def test_limited_broadcast_from_a_bound_source(stack):
    # With a source address, Linux sends 255.255.255.255 out of the
    # interface holding it, here lo: EACCES without SO_BROADCAST, and
    # wildcard listeners hear it.
    r = bound(stack, AF_INET, ANY4, 0)
    s = bound(stack)
    assert errno_of(s.send, b"x", 0, (b"\xff" * 4, r.port)) == errno.EACCES
    s.setsockopt(SOL_SOCKET, SO_BROADCAST, 1)
    s.send(b"x", 0, (b"\xff" * 4, r.port))
    assert r.recv(10)[:3] == (b"x", 1, (LOOPBACK4, s.port))
    # or out of the device it is bound to
    t = ep(stack, broadcast=1)
    t.setsockopt(SOL_SOCKET, 25, b"lo\0")       # SO_BINDTODEVICE
    t.send(b"y", 0, (b"\xff" * 4, r.port))
    assert r.recv(10)[::2] == (b"y", (ANY4, t.port))     # lo has no link-scope source
