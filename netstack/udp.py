"""UDP: the protocol handler (demultiplexing by Linux's scoring, port
unreachable for nobody, ICMP errors to their sender) and UDPEndpoint, the
SOCK_DGRAM endpoint sockets are made of (docs/netstack.md).

    udp = UDPProtocol(stack)            # or Stack.with_loopback(clock)
    ep = UDPEndpoint(stack, AF_INET6)   # uses stack.handlers[IPPROTO_UDP]
    lite = UDPLiteEndpoint(stack, AF_INET)   # UDP-Lite: IPPROTO_UDPLITE's own table

Addresses inside are as the network sees them (IPv4 4 bytes, IPv6 16);
an AF_INET6 endpoint shows IPv4 peers and its own IPv4 address as
v4-mapped. The semantics follow Linux's udp.c where they show: bind and
autobind, connect and AF_UNSPEC disconnect (which unbinds an autobound
port), sk_err reported by the next send or recv, SHUT_RD, SO_RCVBUF
accounting by (approximate) skb truesize.
"""
from __future__ import annotations

import collections
import errno
import struct

from .core import (AF_INET, AF_INET6, ANY4, ANY6, IPPROTO_IP, IPPROTO_IPV6,
                   IPPROTO_UDP, POLLERR, POLLHUP, POLLIN, POLLOUT, POLLRDHUP,
                   V4MAPPED, PacketInfo, WaitQueue, WouldBlock, to_v6)
from .icmp import HARD_ERRORS, UNREACH_PORT
from .ports import ANY4_MAPPED, PortTable
from .stack import is_multicast
from .wire.udp import HEADER, IPPROTO_UDPLITE, Datagram, LiteDatagram, parse_lite
from .wire.udp import parse as _parse

SOCK_DGRAM = 2
MSG_OOB, MSG_PEEK, MSG_TRUNC, MSG_DONTWAIT, MSG_ERRQUEUE = 0x1, 0x2, 0x20, 0x40, 0x2000
SHUT_RD, SHUT_WR = 1, 2         # bits of self.shut (how + 1, as Linux keeps it)

SOL_SOCKET, SOL_UDP, SOL_UDPLITE = 1, 17, 136
UDPLITE_SEND_CSCOV, UDPLITE_RECV_CSCOV, UDP_SEGMENT = 10, 11, 103
UDP_MAX_SEGMENTS = 128                   # what one GSO send may split into
SO_REUSEADDR, SO_ERROR, SO_DONTROUTE, SO_BROADCAST = 2, 4, 5, 6
SO_SNDBUF, SO_RCVBUF, SO_NO_CHECK, SO_REUSEPORT = 7, 8, 11, 15
SO_BINDTODEVICE, SO_SNDBUFFORCE, SO_RCVBUFFORCE = 25, 32, 33
SO_RXQ_OVFL, SO_BINDTOIFINDEX = 40, 62
IP_TOS, IP_TTL, IP_PKTINFO, IP_MTU_DISCOVER, IP_RECVERR = 1, 2, 8, 10, 11
IP_RECVTTL, IP_RECVTOS, IP_MTU, IP_FREEBIND, IP_TRANSPARENT = 12, 13, 14, 15, 19
IP_RECVORIGDSTADDR, IP_NODEFRAG = 20, 22
IP_MULTICAST_IF, IP_MULTICAST_TTL, IP_MULTICAST_LOOP = 32, 33, 34
IP_ADD_MEMBERSHIP, IP_DROP_MEMBERSHIP, IP_MULTICAST_ALL = 35, 36, 49
IPV6_2292PKTINFO, IPV6_2292HOPLIMIT, IPV6_RECVORIGDSTADDR = 2, 8, 74
IPV6_UNICAST_HOPS, IPV6_MULTICAST_IF, IPV6_MULTICAST_HOPS = 16, 17, 18
IPV6_MULTICAST_LOOP, IPV6_JOIN_GROUP, IPV6_LEAVE_GROUP = 19, 20, 21
IPV6_MTU_DISCOVER, IPV6_MTU, IPV6_RECVERR, IPV6_V6ONLY = 23, 24, 25, 26
IPV6_RECVPKTINFO, IPV6_RECVHOPLIMIT, IPV6_DONTFRAG = 49, 51, 62
IPV6_RECVTCLASS, IPV6_TCLASS, IPV6_FREEBIND = 66, 67, 78

RMEM_DEFAULT = WMEM_DEFAULT = 212992     # net.core.[rw]mem_default
RMEM_MAX = WMEM_MAX = 212992             # net.core.[rw]mem_max
MIN_RCVBUF, MIN_SNDBUF = 2304, 4608      # SOCK_MIN_RCVBUF / SOCK_MIN_SNDBUF
INT_MAX = 0x7FFFFFFF
MAX_PAYLOAD4 = 65535 - 20 - 8            # 65507
MAX_PAYLOAD6 = 65535 - 8                 # 65527
DEFAULT_TTL = 64
IP_PMTUDISC_DONT, IP_PMTUDISC_WANT = 0, 1

_PORTS = struct.Struct("!HH")

# Options only remembered (answered by getsockopt as set): (level, name) -> default
_STORED = {
    (SOL_SOCKET, SO_DONTROUTE): 0, (SOL_SOCKET, SO_NO_CHECK): 0,
    (SOL_SOCKET, SO_RXQ_OVFL): 0,
    (IPPROTO_IP, IP_PKTINFO): 0, (IPPROTO_IP, IP_RECVTTL): 0,
    (IPPROTO_IP, IP_RECVTOS): 0, (IPPROTO_IP, IP_RECVORIGDSTADDR): 0,
    (IPPROTO_IP, IP_NODEFRAG): 0, (IPPROTO_IP, IP_MULTICAST_LOOP): 1,
    (IPPROTO_IP, IP_MULTICAST_ALL): 1,
    (IPPROTO_IPV6, IPV6_RECVPKTINFO): 0, (IPPROTO_IPV6, IPV6_RECVHOPLIMIT): 0,
    (IPPROTO_IPV6, IPV6_RECVTCLASS): 0, (IPPROTO_IPV6, IPV6_MULTICAST_LOOP): 1,
    (IPPROTO_IPV6, IPV6_2292PKTINFO): 0, (IPPROTO_IPV6, IPV6_2292HOPLIMIT): 0,
    (IPPROTO_IPV6, IPV6_RECVORIGDSTADDR): 0,
    (IPPROTO_IPV6, IPV6_DONTFRAG): 0,
}


def truesize(n: int) -> int:
    """An approximation of the skb truesize Linux charges a received
    datagram of n bytes to SO_RCVBUF: the data area (headroom and
    skb_shared_info included) rounded up to a power of two by the
    allocator, plus struct sk_buff."""
    size = n + 448
    alloc = 512
    while alloc < size:
        alloc <<= 1
    return alloc + 256


def _optint(value, allow_char: bool = False) -> int:
    """An option's value as Linux reads it: an int of at least 4 bytes, or
    (for the IP options that allow it) one unsigned byte."""
    if isinstance(value, int):
        return value
    if len(value) >= 4:
        return int.from_bytes(value[:4], "little", signed=True)
    if allow_char and len(value) >= 1:
        return value[0]
    raise OSError(errno.EINVAL, "option value too short")


def _may_share(old: "UDPEndpoint", new: "UDPEndpoint") -> bool:
    """udp_lib_lport_inuse: both SO_REUSEADDR, or both SO_REUSEPORT by the
    same user, or bound to different devices."""
    if old.reuseaddr and new.reuseaddr:
        return True
    if old.reuseport and new.reuseport and old.uid == new.uid:
        return True
    return bool(old.bound_dev and new.bound_dev and old.bound_dev != new.bound_dev)


class UDPProtocol:
    number = IPPROTO_UDP
    name = "udp"                    # prefix of its stats counters

    def __init__(self, stack):
        self.stack = stack
        self.ports = PortTable(_may_share)
        stack.register(self)

    parse = staticmethod(_parse)

    def lookup(self, src: bytes, sport: int, dst: bytes, dport: int,
               ifindex: int = 0, every: bool = False):
        """The endpoint a datagram from (src, sport) to (dst, dport) goes to,
        by Linux's compute_score: a specific local address, a matching
        connected peer and a bound device each add 4; AF_INET beats a
        dual-stack AF_INET6 for IPv4. Among equals the newest wins, or an
        SO_REUSEPORT group shares by flow hash. every: all that match (a
        broadcast's receivers)."""
        holders = self.ports.ports.get(dport)
        if not holders:
            return [] if every else None
        v4 = len(dst) == 4
        if v4:
            dst16, src16 = V4MAPPED + dst, V4MAPPED + src
        else:
            dst16, src16 = dst, src
        best, best_score, ties, found = None, -1, None, []
        for b in holders:
            ep = b.owner
            if v4:
                if ep.family == AF_INET:
                    score = 2
                elif ep.v6only:
                    continue
                else:
                    score = 1
            elif ep.family == AF_INET:
                continue
            else:
                score = 0
            a = b.addr
            if a == ANY6:
                pass
            elif a == ANY4_MAPPED:
                if not v4:
                    continue
            elif a != dst16:
                continue
            else:
                score += 4
            peer = ep.peer16
            if peer is not None:
                if peer[0] != src16:
                    continue
                score += 4
                if peer[1]:
                    if peer[1] != sport:
                        continue
                    score += 4
            if ep.bound_dev and ifindex:
                if ep.bound_dev != ifindex:
                    continue
                score += 4
            if every:
                found.append(ep)
            elif score > best_score:
                best, best_score, ties = ep, score, None
            elif score == best_score:
                if ties is None:
                    ties = [best]
                ties.append(ep)
                best = ep
        if every:
            return found
        if ties is not None and best.reuseport:
            group = [ep for ep in ties if ep.reuseport and ep.uid == best.uid]
            if len(group) > 1:
                return group[hash((src, sport)) % len(group)]
        return best

    def deliver(self, info: PacketInfo, dg: Datagram) -> None:
        stack = self.stack
        dst = info.dst
        nic = info.nic
        ifindex = nic.index if nic is not None else 0
        if stack.is_broadcast(dst):
            eps = self.lookup(info.src, dg.sport, dst, dg.dport, ifindex, every=True)
            if not eps:
                stack.stats[self.name + ".no_port_broadcast"] += 1
            for ep in eps:
                ep._receive(dg, info)
            return
        ep = self.lookup(info.src, dg.sport, dst, dg.dport, ifindex)
        if ep is None:
            stack.stats[self.name + ".no_port"] += 1
            stack.icmp_unreachable(info, dg.encode(info.src, dst), UNREACH_PORT)
            return
        ep._receive(dg, info)

    def error(self, info: PacketInfo, kind: str, errno_: int, quoted) -> None:
        """An ICMP error about a datagram we sent from (info.src, sport) to
        (info.dst, dport): the sending socket hears of it as Linux's
        __udp4_lib_err decides."""
        if len(quoted) < 4:
            return
        sport, dport = _PORTS.unpack_from(quoted)
        ep = self.lookup(info.dst, dport, info.src, sport)
        if ep is None:
            self.stack.stats[self.name + ".error_no_socket"] += 1
            return
        hard = kind in HARD_ERRORS or (kind == "too_big" and ep.pmtudisc != IP_PMTUDISC_DONT)
        if ep.recverr or (hard and ep.peer is not None):
            ep._set_error(errno_)


class UDPLiteProtocol(UDPProtocol):
    """UDP-Lite (RFC 3828): UDP's demultiplexing and errors over its own
    port table (Linux's udplite_table, shared by IPv4 and IPv6), with the
    partial-coverage wire form."""
    number = IPPROTO_UDPLITE
    name = "udplite"
    parse = staticmethod(parse_lite)


class UDPEndpoint:
    stype = SOCK_DGRAM
    protocol = IPPROTO_UDP

    def __init__(self, stack, family: int, uid: int = 0):
        if family not in (AF_INET, AF_INET6):
            raise OSError(errno.EAFNOSUPPORT, "address family not supported")
        self.stack = stack
        self.proto: UDPProtocol = stack.handlers[self.protocol]
        self.family = family
        self.uid = uid                  # SO_REUSEPORT groups are per user
        self._any = ANY6 if family == AF_INET6 else ANY4
        self.binding = None
        self.local_net = self._any      # bound address (4 bytes for IPv4)
        self.port = 0
        self.addr_locked = False        # SOCK_BINDADDR_LOCK / SOCK_BINDPORT_LOCK:
        self.port_locked = False        # what disconnect keeps
        self.peer = None                # (addr as the family shows it, port)
        self.peer_net = None            # (addr as the network sees it, port)
        self.peer16 = None              # (16-byte form, port), for demux
        self.v6only = False             # net.ipv6.bindv6only
        self.reuseaddr = self.reuseport = self.broadcast = False
        self.freebind = False
        self.recverr = False
        self.pmtudisc = IP_PMTUDISC_WANT
        self.bound_dev = 0
        self.rcvbuf, self.sndbuf = RMEM_DEFAULT, WMEM_DEFAULT
        self.ttl = -1                   # IP_TTL (-1: the default)
        self.hops = -1                  # IPV6_UNICAST_HOPS
        self.mcast_ttl, self.mcast_hops = 1, 1
        self.tos = 0
        self.tclass = 0
        self.pcslen = self.pcrlen = 0   # UDP-Lite's coverages: always 0 on UDP
        self.gso_size = 0               # UDP_SEGMENT
        self.mcast_if = b""             # IP_MULTICAST_IF as set
        self.mcast_if6 = 0              # IPV6_MULTICAST_IF
        self.groups: set = set()
        self.opts = dict(_STORED)
        self.error = 0
        self.shut = 0
        self.rxq: collections.deque = collections.deque()
        self.rmem = 0                   # truesize charged for rxq
        self.drops = 0
        self.q = WaitQueue()
        self.last_info: PacketInfo | None = None
        self.last_stamp_ns = 0          # when that datagram arrived (stack.clock)
        self.closed = False

    # --- addresses ----------------------------------------------------------

    def _show(self, addr: bytes) -> bytes:
        """An address as this family's sockaddr carries it."""
        return to_v6(addr) if self.family == AF_INET6 else addr

    def _dst_net(self, addr: bytes) -> bytes:
        if self.family == AF_INET6 and addr[:12] == V4MAPPED:
            if self.v6only:
                raise OSError(errno.ENETUNREACH, "IPv4 peer on an IPv6-only socket")
            return addr[12:]
        return addr

    def _route(self, dst: bytes, anc=None):
        """The route a datagram to dst takes: from the bound address and
        device, or those a send's IP_PKTINFO/IPV6_PKTINFO names (checked as
        Linux's route lookup and ip6_datagram_send_ctl check them)."""
        local = self.local_net
        ifindex = self.bound_dev
        if anc:
            src = anc.get("src")
            want = anc.get("ifindex", 0)
            if want:
                if self.stack.nic_by_index(want) is None:
                    raise OSError(errno.ENODEV, "no such device")
                if len(dst) == 16 and self.bound_dev and want != self.bound_dev:
                    raise OSError(errno.EINVAL, "interface other than the bound device")
                ifindex = want
            if src is not None and len(src) == len(dst):
                if len(src) == 4:
                    # ip_cmsg_send: the address replaces the bound one, even 0
                    if src != ANY4 and (is_multicast(src) or src == b"\xff\xff\xff\xff"):
                        raise OSError(errno.EINVAL, "bad source address")
                    if src != ANY4 and not self.stack.is_local(src):
                        raise OSError(errno.ENETUNREACH, "source address not ours")
                    local = src
                elif src != ANY6:
                    if src[0] == 0xFE and src[1] & 0xC0 == 0x80 and not ifindex:
                        raise OSError(errno.EINVAL, "link-local source without an interface")
                    if not self.stack.is_local(src) and not self.freebind:
                        raise OSError(errno.EINVAL, "source address not ours")
                    local = src
        if len(local) != len(dst) and local != ANY6:
            raise OSError(errno.ENETUNREACH, "peer of another family than the bound address")
        specific = local != ANY4 and local != ANY6
        return self.stack.route(dst, local if specific else None, ifindex)

    def _autobind(self) -> None:
        self.binding = self.proto.ports.bind(self._any, 0, self, self.v6only)
        self.port = self.binding.port

    def bind(self, addr_port) -> None:
        addr, port = addr_port
        if self.binding is not None:
            raise OSError(errno.EINVAL, "already bound")
        net = addr
        if self.family == AF_INET6 and addr[:12] == V4MAPPED:
            if self.v6only:
                raise OSError(errno.EINVAL, "IPv4-mapped address on an IPv6-only socket")
            net = addr[12:]
        if net != ANY4 and net != ANY6 and not self.freebind:
            stack = self.stack
            if not (stack.is_local(net) or stack.is_broadcast(net)):
                raise OSError(errno.EADDRNOTAVAIL, "cannot assign requested address")
        self.binding = self.proto.ports.bind(net, port, self,
                                             self.family == AF_INET6 and self.v6only)
        self.local_net = net
        self.port = self.binding.port
        self.addr_locked = net != ANY4 and net != ANY6
        self.port_locked = port != 0

    def connect(self, addr_port) -> None:
        addr, port = addr_port
        dst = self._dst_net(addr)
        if self.binding is None:
            self._autobind()
        route = self._route(dst)
        if route.broadcast and not self.broadcast:
            raise OSError(errno.EACCES, "broadcast without SO_BROADCAST")
        if self.local_net == ANY4 or self.local_net == ANY6:
            # Linux binds the socket to the route's source (a rehash, no
            # conflict check).
            self.local_net = route.local
            self.binding.addr = to_v6(route.local)
        remote = route.remote
        self.peer_net = (remote, port)
        self.peer16 = (to_v6(remote), port)
        self.peer = (self._show(remote), port)

    def disconnect(self) -> None:
        """connect(AF_UNSPEC): forget the peer; an address or port that bind
        did not set explicitly goes too (__udp_disconnect)."""
        self.peer = self.peer_net = self.peer16 = None
        if not self.addr_locked:
            self.local_net = self._any
            if self.binding is not None:
                self.binding.addr = to_v6(self._any)
        if not self.port_locked and self.binding is not None:
            self.proto.ports.release(self.binding)
            self.binding = None
            self.port = 0

    def connect_result(self) -> int:
        return 0

    def listen(self, backlog: int) -> None:
        raise OSError(errno.EOPNOTSUPP, "not a stream socket")

    def accept(self):
        raise OSError(errno.EOPNOTSUPP, "not a stream socket")

    def getsockname(self):
        return (self._show(self.local_net), self.port)

    def getpeername(self):
        if self.peer is None or not self.peer[1]:
            raise OSError(errno.ENOTCONN, "not connected")
        return self.peer

    # --- data ---------------------------------------------------------------

    def send(self, data, flags: int = 0, to=None, ancillary=None) -> int:
        """ancillary: what a send's control messages ask for this datagram
        alone (docs/netstack.md): "ttl", "tos", "src", "ifindex", "gso"."""
        if flags & MSG_OOB:
            raise OSError(errno.EOPNOTSUPP, "no out-of-band data on UDP")
        if self.binding is None:
            self._autobind()        # inet_send_prepare, before any check
        n = len(data)
        if n > 65535:
            raise OSError(errno.EMSGSIZE, "message too long")
        if to is None:
            if self.peer_net is None:
                raise OSError(errno.EDESTADDRREQ, "destination address required")
            dst, dport = self.peer_net
        else:
            addr, dport = to
            dst = self._dst_net(addr)
            if dport == 0:
                raise OSError(errno.EINVAL, "port 0")
        route = self._route(dst, ancillary)
        if route.broadcast and not self.broadcast:
            raise OSError(errno.EACCES, "broadcast without SO_BROADCAST")
        if n > (MAX_PAYLOAD4 if len(dst) == 4 else MAX_PAYLOAD6):
            raise OSError(errno.EMSGSIZE, "message too long")
        ttl, tos = self._ttl_tos(route, len(dst), ancillary)
        if self.error:
            self._raise_error()
        if self.shut & SHUT_WR:
            raise OSError(errno.EPIPE, "socket shut down for writing")
        if type(data) is not bytes:
            data = bytes(data)      # the loopback peer keeps the object
        gso = ancillary.get("gso", self.gso_size) if ancillary else self.gso_size
        if gso:
            # UDP GSO (udp_send_skb): the data leaves as datagrams of gso bytes
            if (20 if len(dst) == 4 else 40) + HEADER + gso > route.mtu or n > gso * UDP_MAX_SEGMENTS:
                raise OSError(errno.EINVAL, "bad segment size")
            if self.protocol == IPPROTO_UDPLITE:
                raise OSError(errno.EIO, "no segmentation offload for UDP-Lite")
            for off in range(0, n, gso):
                route.send(self.protocol, self._datagram(dport, data[off:off + gso]), ttl, tos)
            return n
        route.send(self.protocol, self._datagram(dport, data), ttl, tos)
        return n

    def _ttl_tos(self, route, alen: int, anc) -> tuple:
        """The hop limit (None: the default) and TOS / traffic class a
        datagram goes out with: a send's IP_TTL/IPV6_HOPLIMIT and
        IP_TOS/IPV6_TCLASS first, then the socket's options."""
        if alen == 4:
            ttl = self.mcast_ttl if route.multicast else self.ttl
            tos = self.tos
        else:
            ttl = self.mcast_hops if route.multicast else self.hops
            tos = self.tclass
        if anc:
            ttl = anc.get("ttl", ttl)
            tos = anc.get("tos", tos)
        return (ttl if ttl >= 0 else None), tos

    def _datagram(self, dport: int, data: bytes):
        return Datagram(self.port, dport, data)

    def recv(self, size: int, flags: int = 0):
        if flags & MSG_ERRQUEUE:
            raise OSError(errno.EAGAIN, "no queued errors")
        if self.error:
            self._raise_error()
        rxq = self.rxq
        if not rxq:
            if self.shut & SHUT_RD and not flags & MSG_DONTWAIT:
                return (b"", 0, None)
            raise WouldBlock(self.q, POLLIN)
        if flags & MSG_PEEK:
            payload, src, sport, info, _, stamp = rxq[0]
        else:
            payload, src, sport, info, ts, stamp = rxq.popleft()
            self.rmem -= ts
        self.last_info = info
        self.last_stamp_ns = stamp
        n = len(payload)
        return (payload if size >= n else payload[:max(size, 0)], n,
                (self._show(src), sport))

    def _enqueue(self, payload: bytes, src: bytes, sport: int, info: PacketInfo) -> None:
        if self.rmem > self.rcvbuf:
            # __udp_enqueue_schedule_skb: full only once past the limit, so
            # one datagram always fits an empty queue.
            self.drops += 1
            self.stack.stats["udp.rcvbuf_drop"] += 1
            return
        ts = truesize(len(payload))
        self.rmem += ts
        self.rxq.append((payload, src, sport, info, ts, self.stack.clock.now_ns()))
        self.q.notify()

    def _receive(self, dg, info: PacketInfo) -> None:
        """A datagram the protocol demultiplexed to this socket."""
        self._enqueue(dg.payload, info.src, dg.sport, info)

    def _set_error(self, err: int) -> None:
        self.error = err
        self.q.notify()

    def _raise_error(self):
        err, self.error = self.error, 0
        raise OSError(err, "pending socket error")

    def shutdown(self, how: int) -> None:
        if how not in (0, 1, 2):
            raise OSError(errno.EINVAL, "bad shutdown mode")
        # inet_shutdown records the shutdown even when it then says
        # ENOTCONN for an unconnected socket.
        self.shut |= how + 1
        self.q.notify()
        if self.peer is None:
            raise OSError(errno.ENOTCONN, "not connected")

    def readiness(self) -> int:
        mask = POLLOUT
        if self.rxq:
            mask |= POLLIN
        if self.error:
            mask |= POLLERR
        if self.shut & SHUT_RD:
            mask |= POLLIN | POLLRDHUP
            if self.shut & SHUT_WR:
                mask |= POLLHUP
        return mask

    def queues(self):
        return (self.q,)

    def take_error(self) -> int:
        err, self.error = self.error, 0
        return err

    def pending_in(self) -> int:
        """FIONREAD: the size of the next datagram."""
        return len(self.rxq[0][0]) if self.rxq else 0

    def pending_out(self) -> int:
        return 0        # datagrams leave at once

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.binding is not None:
            self.proto.ports.release(self.binding)
            self.binding = None
        self.rxq.clear()
        self.rmem = 0
        self.q.notify()

    # --- options ------------------------------------------------------------

    def setsockopt(self, level: int, name: int, value) -> None:
        if level == SOL_SOCKET:
            self._set_socket(name, value)
        elif level in (SOL_UDP, SOL_UDPLITE) and self.protocol in (IPPROTO_UDP, IPPROTO_UDPLITE):
            self._set_udp(name, _optint(value))
        elif level == IPPROTO_IP:
            self._set_ip(name, value)
        elif level == IPPROTO_IPV6 and self.family == AF_INET6:
            self._set_ipv6(name, value)
        else:
            raise OSError(errno.ENOPROTOOPT, "protocol not available")

    def getsockopt(self, level: int, name: int):
        if level in (SOL_UDP, SOL_UDPLITE) and self.protocol in (IPPROTO_UDP, IPPROTO_UDPLITE):
            # udp_lib_getsockopt answers the coverages on UDP too (0: full)
            if name == UDPLITE_SEND_CSCOV:
                return self.pcslen
            if name == UDPLITE_RECV_CSCOV:
                return self.pcrlen
            if name == UDP_SEGMENT:
                return self.gso_size
            raise OSError(errno.ENOPROTOOPT, "protocol not available")
        if level == SOL_SOCKET:
            if name == SO_REUSEADDR:
                return int(self.reuseaddr)
            if name == SO_REUSEPORT:
                return int(self.reuseport)
            if name == SO_BROADCAST:
                return int(self.broadcast)
            if name == SO_RCVBUF:
                return self.rcvbuf
            if name == SO_SNDBUF:
                return self.sndbuf
            if name == SO_ERROR:
                return self.take_error()
            if name == SO_BINDTODEVICE:
                nic = self.stack.nic_by_index(self.bound_dev) if self.bound_dev else None
                return nic.name.encode() + b"\0" if nic is not None else b""
            if name == SO_BINDTOIFINDEX:
                return self.bound_dev
        elif level == IPPROTO_IP:
            if name == IP_TTL:
                return self.ttl if self.ttl >= 0 else DEFAULT_TTL
            if name == IP_TOS:
                return self.tos
            if name == IP_MULTICAST_TTL:
                return self.mcast_ttl
            if name == IP_RECVERR:
                return int(self.recverr)
            if name == IP_MTU_DISCOVER:
                return self.pmtudisc
            if name == IP_FREEBIND:
                return int(self.freebind)
            if name == IP_MTU:
                return self._path_mtu()
            if name == IP_MULTICAST_IF:
                return self.mcast_if or bytes(4)
        elif level == IPPROTO_IPV6 and self.family == AF_INET6:
            if name == IPV6_V6ONLY:
                return int(self.v6only)
            if name == IPV6_UNICAST_HOPS:
                return self.hops if self.hops >= 0 else DEFAULT_TTL
            if name == IPV6_MULTICAST_HOPS:
                return self.mcast_hops
            if name == IPV6_TCLASS:
                return self.tclass
            if name == IPV6_RECVERR:
                return int(self.recverr)
            if name == IPV6_MTU_DISCOVER:
                return self.pmtudisc
            if name == IPV6_FREEBIND:
                return int(self.freebind)
            if name == IPV6_MTU:
                return self._path_mtu()
            if name == IPV6_MULTICAST_IF:
                return self.mcast_if6
        v = self.opts.get((level, name))
        if v is not None and (level != IPPROTO_IPV6 or self.family == AF_INET6):
            return v
        raise OSError(errno.ENOPROTOOPT, "protocol not available")

    def _path_mtu(self) -> int:
        if self.peer_net is None:
            raise OSError(errno.ENOTCONN, "not connected")
        return self._route(self.peer_net[0]).mtu

    def _set_socket(self, name: int, value) -> None:
        if name == SO_BINDTODEVICE:
            self._bind_device(value)
            return
        v = _optint(value)
        if name == SO_REUSEADDR:
            self.reuseaddr = bool(v)
        elif name == SO_REUSEPORT:
            self.reuseport = bool(v)
        elif name == SO_BROADCAST:
            self.broadcast = bool(v)
        elif name == SO_RCVBUF:
            self.rcvbuf = max(min(v & 0xFFFFFFFF, RMEM_MAX) * 2, MIN_RCVBUF)
        elif name == SO_SNDBUF:
            self.sndbuf = max(min(v & 0xFFFFFFFF, WMEM_MAX) * 2, MIN_SNDBUF)
        elif name == SO_RCVBUFFORCE:        # CAP_NET_ADMIN: the sentry checks
            self.rcvbuf = max(min(max(v, 0), INT_MAX // 2) * 2, MIN_RCVBUF)
        elif name == SO_SNDBUFFORCE:
            self.sndbuf = max(min(max(v, 0), INT_MAX // 2) * 2, MIN_SNDBUF)
        elif name == SO_BINDTOIFINDEX:
            if v and self.stack.nic_by_index(v) is None:
                raise OSError(errno.ENODEV, "no such device")
            self.bound_dev = max(v, 0)
        elif (SOL_SOCKET, name) in self.opts:
            self.opts[(SOL_SOCKET, name)] = int(bool(v))
        else:
            raise OSError(errno.ENOPROTOOPT, "protocol not available")

    def _set_udp(self, name: int, v: int) -> None:
        """SOL_UDP / SOL_UDPLITE (one level to Linux): UDP_SEGMENT here,
        the checksum coverages on UDP-Lite alone."""
        if name != UDP_SEGMENT:
            raise OSError(errno.ENOPROTOOPT, "protocol not available")
        if not 0 <= v <= 0xFFFF:
            raise OSError(errno.EINVAL, "bad segment size")
        self.gso_size = v

    def _bind_device(self, value) -> None:
        if isinstance(value, int):
            raise OSError(errno.EINVAL, "SO_BINDTODEVICE takes a name")
        name = bytes(value[:16]).split(b"\0", 1)[0]
        if not name:
            self.bound_dev = 0
            return
        nic = self.stack.nic_by_name(name.decode(errors="replace"))
        if nic is None:
            raise OSError(errno.ENODEV, "no such device")
        self.bound_dev = nic.index

    def _set_ip(self, name: int, value) -> None:
        if name in (IP_ADD_MEMBERSHIP, IP_DROP_MEMBERSHIP):
            self._membership(name == IP_ADD_MEMBERSHIP, value)
            return
        if name == IP_MULTICAST_IF:
            if isinstance(value, int) or len(value) < 4:
                raise OSError(errno.EINVAL, "bad multicast interface")
            # struct in_addr, or ip_mreqn whose address follows the group
            self.mcast_if = bytes(value[4:8] if len(value) >= 8 else value[:4])
            return
        v = _optint(value, allow_char=name in (IP_TOS, IP_TTL, IP_MULTICAST_TTL,
                                                IP_MULTICAST_LOOP, IP_RECVERR,
                                                IP_PKTINFO, IP_RECVTTL, IP_RECVTOS))
        if name == IP_TTL:
            if v != -1 and not 1 <= v <= 255:
                raise OSError(errno.EINVAL, "bad TTL")
            self.ttl = v
        elif name == IP_TOS:
            self.tos = v & 0xFF
        elif name == IP_MULTICAST_TTL:
            if v == -1:
                v = 1
            if not 0 <= v <= 255:
                raise OSError(errno.EINVAL, "bad multicast TTL")
            self.mcast_ttl = v
        elif name == IP_RECVERR:
            self.recverr = bool(v)
        elif name == IP_MTU_DISCOVER:
            if not 0 <= v <= 5:
                raise OSError(errno.EINVAL, "bad PMTU discovery mode")
            self.pmtudisc = v
        elif name in (IP_FREEBIND, IP_TRANSPARENT):
            self.freebind = bool(v)
        elif (IPPROTO_IP, name) in self.opts:
            self.opts[(IPPROTO_IP, name)] = int(bool(v))
        else:
            raise OSError(errno.ENOPROTOOPT, "protocol not available")

    def _membership(self, join: bool, value) -> None:
        """ip_mreq / ip_mreqn: the group must be multicast and reachable
        through some interface (ENODEV otherwise, as Linux's
        ip_mc_find_dev). Memberships are remembered; the stack does not yet
        receive multicast beyond all-hosts."""
        if isinstance(value, int) or len(value) < 8:
            raise OSError(errno.EINVAL, "bad ip_mreq")
        group, iface = bytes(value[:4]), bytes(value[4:8])
        ifindex = int.from_bytes(value[8:12], "little") if len(value) >= 12 else 0
        if not is_multicast(group):
            raise OSError(errno.EINVAL, "not a multicast group")
        key = (group, ifindex, iface)
        if not join:
            if key not in self.groups:
                raise OSError(errno.EADDRNOTAVAIL, "not a member")
            self.groups.discard(key)
            return
        if ifindex:
            if self.stack.nic_by_index(ifindex) is None:
                raise OSError(errno.ENODEV, "no such device")
        elif iface != ANY4:
            if not self.stack.is_local(iface):
                raise OSError(errno.ENODEV, "no such device")
        else:
            try:
                self.stack.route(group)
            except OSError:
                raise OSError(errno.ENODEV, "no device for the group") from None
        if key in self.groups:
            raise OSError(errno.EADDRINUSE, "already a member")
        self.groups.add(key)

    def _set_ipv6(self, name: int, value) -> None:
        if name in (IPV6_JOIN_GROUP, IPV6_LEAVE_GROUP):
            raise OSError(errno.ENODEV if name == IPV6_JOIN_GROUP else errno.EADDRNOTAVAIL,
                          "no IPv6 multicast")
        v = _optint(value)
        if name == IPV6_V6ONLY:
            if self.binding is not None:
                raise OSError(errno.EINVAL, "already bound")
            self.v6only = bool(v)
        elif name == IPV6_UNICAST_HOPS:
            if not -1 <= v <= 255:
                raise OSError(errno.EINVAL, "bad hop limit")
            self.hops = v
        elif name == IPV6_MULTICAST_HOPS:
            if not -1 <= v <= 255:
                raise OSError(errno.EINVAL, "bad hop limit")
            self.mcast_hops = 1 if v == -1 else v
        elif name == IPV6_TCLASS:
            if not -1 <= v <= 255:
                raise OSError(errno.EINVAL, "bad traffic class")
            self.tclass = 0 if v == -1 else v
        elif name == IPV6_RECVERR:
            self.recverr = bool(v)
        elif name == IPV6_MTU_DISCOVER:
            if not 0 <= v <= 5:
                raise OSError(errno.EINVAL, "bad PMTU discovery mode")
            self.pmtudisc = v
        elif name == IPV6_FREEBIND:
            self.freebind = bool(v)
        elif name == IPV6_MULTICAST_IF:
            if v and self.stack.nic_by_index(v) is None:
                raise OSError(errno.ENXIO, "no such device")
            self.mcast_if6 = v
        elif (IPPROTO_IPV6, name) in self.opts:
            self.opts[(IPPROTO_IPV6, name)] = int(bool(v))
        else:
            raise OSError(errno.ENOPROTOOPT, "protocol not available")


class UDPLiteEndpoint(UDPEndpoint):
    """SOCK_DGRAM IPPROTO_UDPLITE (RFC 3828): a UDP socket whose datagrams
    may cover only their first bytes by the checksum. UDPLITE_SEND_CSCOV
    sets what a send covers (0: all), UDPLITE_RECV_CSCOV the least a
    partially covered arrival must cover (0: only full coverage), as
    Linux's udp_lib_setsockopt and udp_queue_rcv_one_skb have it."""
    protocol = IPPROTO_UDPLITE

    def __init__(self, stack, family: int, uid: int = 0):
        if IPPROTO_UDPLITE not in stack.handlers:
            UDPLiteProtocol(stack)
        super().__init__(stack, family, uid)
        self.send_cc = self.recv_cc = False     # each option was ever set

    def _set_udp(self, name: int, v: int) -> None:
        if name not in (UDPLITE_SEND_CSCOV, UDPLITE_RECV_CSCOV):
            super()._set_udp(name, v)
            return
        v = 8 if v != 0 and v < 8 else min(v, 0xFFFF)   # no coverage short of the header
        if name == UDPLITE_SEND_CSCOV:
            self.pcslen, self.send_cc = v, True
        else:
            self.pcrlen, self.recv_cc = v, True

    def _datagram(self, dport: int, data: bytes) -> LiteDatagram:
        length = HEADER + len(data)
        cov = self.pcslen if self.send_cc and self.pcslen < length else length
        return LiteDatagram(self.port, dport, data, cov)

    def _receive(self, dg: LiteDatagram, info: PacketInfo) -> None:
        if self.recv_cc and dg.partial and (self.pcrlen == 0 or dg.cscov < self.pcrlen):
            self.stack.stats["udplite.coverage_drop"] += 1
            return
        super()._receive(dg, info)
