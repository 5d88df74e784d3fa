"""AF_INET and AF_INET6 sockets: socket files over the sandbox's netstack.

This module turns the guest's sockaddr_in/sockaddr_in6 bytes into the
netstack's (address, port) pairs and back with Linux's checks, keeps the
socket-level connect state (inet_stream_connect's SS_* states), and maps
netstack.core.WouldBlock onto the VFS's so the syscall layer can park the
caller. Everything about the protocols is the netstack endpoint's.
"""
from __future__ import annotations

import errno
import struct
import time

from netstack import core
from vfs.file import WouldBlock
from vfs.inode import fserr

from .socketfile import (AF_INET, AF_INET6, AF_UNSPEC, SCM_CREDENTIALS, SCM_RIGHTS, SO_BROADCAST, SO_KEEPALIVE,
                         SO_LINGER, SO_MARK, SO_OOBINLINE, SO_PRIORITY, SO_RCVBUF, SO_REUSEADDR, SO_REUSEPORT,
                         SO_SNDBUF, SO_TIMESTAMP_NEW, SO_TIMESTAMP_OLD, SO_TIMESTAMPING_NEW, SO_TIMESTAMPING_OLD,
                         SO_TIMESTAMPNS_NEW, SO_TIMESTAMPNS_OLD, SO_TXTIME, SOCK_DGRAM, SOCK_STREAM, SOL_SOCKET,
                         NET_BIND_SERVICE, NET_ADMIN, NET_RAW, SocketFile, privileged)

IPPROTO_IP, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_IPV6 = 0, 1, 6, 17, 41
IPPROTO_ICMPV6, IPPROTO_UDPLITE = 58, 136
# net.ipv4.ping_group_range: the groups that may open ICMP echo sockets.
# Linux's built-in default is "1 0" (nobody), but the sandbox has no raw
# sockets for ping to fall back on, so every group may, as gVisor and
# systemd's sysctl defaults have it.
PING_GROUP_RANGE = (0, 2147483647)
SIN = struct.Struct("<H2s4s8x")          # family, port (big-endian bytes), address
SIN6 = struct.Struct("<H2s4s16sI")       # family, port, flowinfo, address, scope id
SIN6_LEN_RFC2133 = 24                     # an old sockaddr_in6 without sin6_scope_id
PROT_SOCK = 1024                          # ports below need CAP_NET_BIND_SERVICE
MSG_TRUNC = 0x20
# The SOL_SOCKET options the protocol itself acts on: pushed into the endpoint.
_ENDPOINT_SOL = (SO_REUSEADDR, SO_REUSEPORT, SO_KEEPALIVE, SO_BROADCAST, SO_OOBINLINE, SO_LINGER,
                 SO_SNDBUF, SO_RCVBUF)
UNCONNECTED, CONNECTING, CONNECTED = 0, 1, 2

# Control messages (net/ipv4/ip_sockglue.c, net/ipv6/datagram.c)
SOL_UDP, UDP_SEGMENT = 17, 103
IP_TOS, IP_TTL, IP_RETOPTS, IP_PKTINFO, IP_RECVTTL, IP_RECVTOS = 1, 2, 7, 8, 12, 13
IP_ORIGDSTADDR, IP_PROTOCOL = 20, 52                   # IP_RECVORIGDSTADDR is IP_ORIGDSTADDR
IPV6_2292PKTINFO, IPV6_2292HOPLIMIT, IPV6_FLOWINFO = 2, 8, 11
IPV6_RECVPKTINFO, IPV6_PKTINFO, IPV6_RECVHOPLIMIT, IPV6_HOPLIMIT = 49, 50, 51, 52
IPV6_DONTFRAG, IPV6_RECVTCLASS, IPV6_TCLASS, IPV6_ORIGDSTADDR = 62, 66, 67, 74
I32 = struct.Struct("<i")
IN_PKTINFO = struct.Struct("<i4s4s")      # ipi_ifindex, ipi_spec_dst, ipi_addr
IN6_PKTINFO = struct.Struct("<16si")      # ipi6_addr, ipi6_ifindex
TIMESTAMP = struct.Struct("<qq")          # timeval or timespec (old and new alike on 64-bit)
TX_RECORD_MASK = 0x303 | 1 << 18          # SOF_TIMESTAMPING_TX_RECORD_MASK
TC_PRIO_INTERACTIVE = 6
_TSTAMP_OPTS = (SO_TIMESTAMP_OLD, SO_TIMESTAMPNS_OLD, SO_TIMESTAMP_NEW, SO_TIMESTAMPNS_NEW)
# The receive options that ask for control messages (the endpoint keeps them)
_RX_OPTS = ((IPPROTO_IP, IP_PKTINFO), (IPPROTO_IP, IP_RECVTTL), (IPPROTO_IP, IP_RECVTOS),
            (IPPROTO_IP, IP_ORIGDSTADDR), (IPPROTO_IPV6, IPV6_RECVPKTINFO),
            (IPPROTO_IPV6, IPV6_RECVHOPLIMIT), (IPPROTO_IPV6, IPV6_RECVTCLASS),
            (IPPROTO_IPV6, IPV6_2292PKTINFO), (IPPROTO_IPV6, IPV6_2292HOPLIMIT),
            (IPPROTO_IPV6, IPV6_ORIGDSTADDR))


def stack_of(k):
    """The sandbox's netstack, made with loopback alone if the sandbox's
    network setup has not made one (a kernel run without pyrunsc.network)."""
    if k.netstack is None:
        from netstack.stack import Stack
        k.netstack = Stack.with_loopback(k.netclock)
    return k.netstack


def encode(family: int, addr: bytes, port: int) -> bytes:
    """The sockaddr a guest gets back for (addr, port)."""
    pb = port.to_bytes(2, "big")
    if family == AF_INET:
        return SIN.pack(AF_INET, pb, core.unmap(addr))
    return SIN6.pack(AF_INET6, pb, bytes(4), core.to_v6(addr), 0)


def decode(family: int, raw: bytes) -> tuple[bytes, int]:
    """A guest's sockaddr for a socket of `family`: (address, port) with
    an IPv4 address 4 bytes long, an IPv6 one 16 (v4-mapped kept)."""
    if family == AF_INET:
        if len(raw) < SIN.size:
            raise fserr(errno.EINVAL)
        fam, pb, addr = SIN.unpack_from(raw)
        if fam != AF_INET:
            # inet_bind's compatibility case: AF_UNSPEC with INADDR_ANY
            if not (fam == AF_UNSPEC and addr == core.ANY4):
                raise fserr(errno.EAFNOSUPPORT)
        return addr, int.from_bytes(pb, "big")
    if len(raw) < SIN6_LEN_RFC2133:
        raise fserr(errno.EINVAL)
    fam, pb, _flow, addr = struct.unpack_from("<H2s4s16s", raw)
    if fam != AF_INET6:
        raise fserr(errno.EAFNOSUPPORT)
    return addr, int.from_bytes(pb, "big")


def _family_of(raw: bytes) -> int:
    if len(raw) < 2:
        raise fserr(errno.EINVAL)
    return int.from_bytes(raw[:2], "little")


def _new_endpoint(stack, family: int, protocol: int, uid: int):
    if protocol == IPPROTO_UDP:
        from netstack.udp import UDPEndpoint
        return UDPEndpoint(stack, family, uid)
    if protocol == IPPROTO_UDPLITE:
        from netstack.udp import UDPLiteEndpoint
        return UDPLiteEndpoint(stack, family, uid)
    if protocol in (IPPROTO_ICMP, IPPROTO_ICMPV6):
        from netstack.ping import PingEndpoint
        return PingEndpoint(stack, family, uid)
    from netstack.tcp.endpoint import TCPEndpoint
    return TCPEndpoint(stack, family, uid)


def _may_ping(t) -> bool:
    """ping_init_sock: the effective group or a supplementary one lies in
    net.ipv4.ping_group_range (no capability overrides it)."""
    low, high = PING_GROUP_RANGE
    c = t.tg.creds
    return any(low <= g <= high for g in (c.egid, *c.groups))


def factory(family: int):
    def make(k, t, stype: int, protocol: int) -> "InetSocket":
        if stype == SOCK_STREAM:
            if protocol not in (0, IPPROTO_TCP):
                raise fserr(errno.EPROTONOSUPPORT)
            protocol = IPPROTO_TCP
        elif stype == SOCK_DGRAM:
            ping = IPPROTO_ICMPV6 if family == AF_INET6 else IPPROTO_ICMP
            if protocol not in (0, IPPROTO_UDP, IPPROTO_UDPLITE, ping):
                raise fserr(errno.EPROTONOSUPPORT)
            if protocol == ping and not _may_ping(t):
                raise fserr(errno.EACCES)
            protocol = protocol or IPPROTO_UDP
        elif stype == 3:  # SOCK_RAW: not in the sandbox (no raw packets to the host either)
            raise fserr(errno.EPERM if not privileged(t, NET_RAW) else errno.EPROTONOSUPPORT)
        else:
            raise fserr(errno.ESOCKTNOSUPPORT)
        ep = _new_endpoint(stack_of(k), family, protocol, t.tg.creds.euid)
        return InetSocket(k, family, stype, protocol, ep)
    return make


def _netstack_call(fn, *args):
    """Run an endpoint call, turning its WouldBlock into the VFS's."""
    try:
        return fn(*args)
    except core.WouldBlock as wb:
        raise WouldBlock(wb.queue, wb.events) from None


class InetSocket(SocketFile):
    connect_timeout_errno = errno.EINPROGRESS  # SO_SNDTIMEO ran out during a blocking connect
    def __init__(self, k, family: int, stype: int, protocol: int, ep):
        super().__init__(k, stype, protocol)
        self.family = family
        self.ep = ep
        self.sstate = UNCONNECTED
        self._rx: frozenset = frozenset()     # the _RX_OPTS the endpoint has on
        self._tstamp: tuple | None = None     # (nanoseconds, new) of SO_TIMESTAMP*

    # --- addresses ---
    def bind(self, k, t, raw: bytes) -> None:
        addr, port = decode(self.family, raw)
        if 0 < port < PROT_SOCK and not privileged(t, NET_BIND_SERVICE):
            raise fserr(errno.EACCES)
        self.ep.bind((addr, port))

    def getsockname(self, k, t) -> bytes:
        return encode(self.family, *self.ep.getsockname())

    def getpeername(self, k, t) -> bytes:
        return encode(self.family, *self.ep.getpeername())

    # --- connections ---
    def connect(self, k, t, raw: bytes, nonblocking: bool) -> None:
        if _family_of(raw) == AF_UNSPEC:
            self.ep.disconnect()
            self.sstate = UNCONNECTED
            return
        if self.stype != SOCK_STREAM:
            if self.family == AF_INET6 and _family_of(raw) == AF_INET:
                # ip6_datagram_connect takes a sockaddr_in as its v4-mapped address
                addr, port = decode(AF_INET, raw)
                addr = core.to_v6(addr)
            else:
                addr, port = decode(self.family, raw)
            self.ep.connect((addr, port))
            return
        addr, port = decode(self.family, raw)
        if self.sstate == CONNECTED:
            raise fserr(errno.EISCONN)
        if self.sstate == UNCONNECTED:
            self.ep.connect((addr, port))
            self.sstate = CONNECTING
            if nonblocking:
                # as on Linux, where even loopback completes the handshake later
                raise fserr(errno.EINPROGRESS)
        try:
            _netstack_call(self.ep.connect_result)
        except WouldBlock:
            if nonblocking:
                raise fserr(errno.EALREADY) from None
            raise
        except OSError:
            self.sstate = UNCONNECTED
            raise
        self.sstate = CONNECTED

    def listen(self, k, t, backlog: int) -> None:
        if self.stype != SOCK_STREAM:
            raise fserr(errno.EOPNOTSUPP)
        if self.sstate != UNCONNECTED:
            raise fserr(errno.EINVAL)
        self.ep.listen(backlog)

    @property
    def listening(self) -> bool:
        return bool(getattr(self.ep, "listening", False))

    def accept(self, k, t) -> tuple["InetSocket", bytes]:
        if self.stype != SOCK_STREAM:
            raise fserr(errno.EOPNOTSUPP)
        ep = _netstack_call(self.ep.accept)
        sock = InetSocket(k, self.family, self.stype, self.protocol, ep)
        sock.sstate = CONNECTED
        # an accepted socket inherits the listener's socket-level options
        sock.opts = dict(self.opts)
        sock._tstamp = self._tstamp
        sock.sndbuf, sock.rcvbuf, sock.linger = self.sndbuf, self.rcvbuf, self.linger
        try:
            peer = encode(self.family, *ep.getpeername())
        except OSError:  # reset between the handshake and accept: still a socket
            peer = encode(self.family, core.ANY6 if self.family == AF_INET6 else core.ANY4, 0)
        return sock, peer

    def shutdown(self, k, t, how: int) -> None:
        self.ep.shutdown(how)

    # --- data ---
    def sendmsg(self, k, t, data: bytes, raw_to: bytes | None, control: list, flags: int) -> int:
        to = None
        if raw_to is not None and self.stype != SOCK_STREAM:
            if _family_of(raw_to) != AF_UNSPEC or self.family == AF_INET6:
                to = decode(self.family, raw_to)
        if control:
            if self.stype == SOCK_STREAM:
                try:  # tcp_sendmsg: SOL_SOCKET ones are checked, any failure is EINVAL
                    for level, ctype, payload in control:
                        if level == SOL_SOCKET:
                            _socket_cmsg(self, t, ctype, payload)
                except OSError:
                    raise fserr(errno.EINVAL) from None
            else:
                dst = to[0] if to is not None else self._peer_addr()
                if dst is not None:  # else the endpoint's EDESTADDRREQ comes first
                    anc = self._send_control(t, control, dst)
                    if anc:
                        return _netstack_call(self.ep.send, data, flags, to, anc)
        return _netstack_call(self.ep.send, data, flags, to)

    def recvmsg(self, k, t, size: int, flags: int):
        data, full, sender = _netstack_call(self.ep.recv, size, flags)
        if self.stype == SOCK_STREAM:  # MSG_TRUNC on a stream: what was discarded
            # tcp_recv_timestamp: the stamp of the data read, here the time it is read
            control = [self._timestamp(None)] if self._tstamp is not None and full else []
            return data, full if flags & MSG_TRUNC else len(data), None, control, 0
        ret = full if flags & MSG_TRUNC else len(data)
        raw_from = encode(self.family, *sender) if sender is not None else None
        control = self._recv_control() if sender is not None and (self._rx or self._tstamp) else []
        return data, ret, raw_from, control, MSG_TRUNC if full > len(data) else 0

    # --- control messages ---
    def _peer_addr(self) -> bytes | None:
        try:
            return self.ep.getpeername()[0]
        except OSError:
            return None

    def _send_control(self, t, control: list, dst: bytes) -> dict:
        """What a datagram's control messages ask for it alone, as the
        endpoint's send takes it ("ttl", "tos", "src", "ifindex", "gso"), checked
        as Linux does: SOL_UDP first over all (udp_cmsg_send), then in
        order ip_cmsg_send for an IPv4 destination (an AF_INET6 socket's
        v4-mapped one too: it may pass IPV6_PKTINFO) or
        ip6_datagram_send_ctl for an IPv6 one. Other levels are ignored."""
        anc: dict = {}
        if self.protocol in (IPPROTO_UDP, IPPROTO_UDPLITE):
            for level, ctype, p in control:
                if level == SOL_UDP:
                    if ctype != UDP_SEGMENT or len(p) != 2:
                        raise fserr(errno.EINVAL)
                    anc["gso"] = int.from_bytes(p, "little")
        v4 = self.family == AF_INET or dst[:12] == core.V4MAPPED
        for level, ctype, p in control:
            if level == SOL_SOCKET:
                _socket_cmsg(self, t, ctype, p)
            elif v4 and level == IPPROTO_IPV6 and ctype == IPV6_PKTINFO and self.family == AF_INET6:
                if len(p) < IN6_PKTINFO.size:
                    raise fserr(errno.EINVAL)
                addr, ifindex = IN6_PKTINFO.unpack_from(p)
                if addr[:12] != core.V4MAPPED:
                    raise fserr(errno.EINVAL)
                if ifindex:
                    anc["ifindex"] = ifindex
                anc["src"] = addr[12:]
            elif v4 and level == IPPROTO_IP:
                _ip_cmsg(anc, ctype, p)
            elif not v4 and level == IPPROTO_IPV6:
                _ipv6_cmsg(anc, ctype, p)
        return anc

    def _recv_control(self) -> list:
        """The control messages of the datagram just received, in Linux's
        order: the timestamp (sock_recv_cmsgs), IPV6_PKTINFO on an AF_INET6
        socket (ip6_datagram_recv_common_ctl), then ip_cmsg_recv's for an
        IPv4 packet or ip6_datagram_recv_specific_ctl's for an IPv6 one."""
        out = []
        ep = self.ep
        if self._tstamp is not None:
            out.append(self._timestamp(ep.last_stamp_ns))
        rx = self._rx
        info = ep.last_info
        if not rx or info is None:
            return out
        ifindex = info.nic.index if info.nic is not None else 0
        if (IPPROTO_IPV6, IPV6_RECVPKTINFO) in rx:
            out.append((IPPROTO_IPV6, IPV6_PKTINFO, IN6_PKTINFO.pack(core.to_v6(info.dst), ifindex)))
        # the original destination's port is the socket's own (not so for ping)
        udp = self.protocol in (IPPROTO_UDP, IPPROTO_UDPLITE)
        if len(info.dst) == 4:
            if (IPPROTO_IP, IP_PKTINFO) in rx:
                out.append((IPPROTO_IP, IP_PKTINFO, IN_PKTINFO.pack(ifindex, self._spec_dst(info), info.dst)))
            if (IPPROTO_IP, IP_RECVTTL) in rx:
                out.append((IPPROTO_IP, IP_TTL, I32.pack(info.ttl)))
            if (IPPROTO_IP, IP_RECVTOS) in rx:
                out.append((IPPROTO_IP, IP_TOS, bytes((info.tos,))))
            if (IPPROTO_IP, IP_ORIGDSTADDR) in rx and udp:
                out.append((IPPROTO_IP, IP_ORIGDSTADDR, encode(AF_INET, info.dst, ep.getsockname()[1])))
            return out
        if (IPPROTO_IPV6, IPV6_RECVHOPLIMIT) in rx:
            out.append((IPPROTO_IPV6, IPV6_HOPLIMIT, I32.pack(info.ttl)))
        if (IPPROTO_IPV6, IPV6_RECVTCLASS) in rx:
            out.append((IPPROTO_IPV6, IPV6_TCLASS, I32.pack(info.tos)))
        if (IPPROTO_IPV6, IPV6_2292PKTINFO) in rx:
            out.append((IPPROTO_IPV6, IPV6_2292PKTINFO, IN6_PKTINFO.pack(info.dst, ifindex)))
        if (IPPROTO_IPV6, IPV6_2292HOPLIMIT) in rx:
            out.append((IPPROTO_IPV6, IPV6_2292HOPLIMIT, I32.pack(info.ttl)))
        if (IPPROTO_IPV6, IPV6_ORIGDSTADDR) in rx and udp:
            scope = ifindex if info.dst[:2] == b"\xfe\x80" else 0
            out.append((IPPROTO_IPV6, IPV6_ORIGDSTADDR, SIN6.pack(
                AF_INET6, ep.getsockname()[1].to_bytes(2, "big"), bytes(4), info.dst, scope)))
        return out

    def _timestamp(self, stamp_ns: int | None) -> tuple:
        """SCM_TIMESTAMP(NS) of a packet that arrived at stamp_ns on the
        stack's clock (None: now), in wall-clock time."""
        ns, new = self._tstamp
        when = time.time_ns()
        if stamp_ns is not None:
            when -= stack_of(self.kernel).clock.now_ns() - stamp_ns
        sec, frac = divmod(when, 1_000_000_000)
        kind = (SO_TIMESTAMPNS_NEW if new else SO_TIMESTAMPNS_OLD) if ns else \
            (SO_TIMESTAMP_NEW if new else SO_TIMESTAMP_OLD)
        return (SOL_SOCKET, kind, TIMESTAMP.pack(sec, frac if ns else frac // 1000))

    def _spec_dst(self, info) -> bytes:
        """fib_compute_spec_dst: the address a reply would come from, the
        packet's destination when that is one of ours."""
        stack = stack_of(self.kernel)
        if stack.is_local(info.dst) and not stack.is_broadcast(info.dst):
            return info.dst
        try:
            return stack.route(info.src).local
        except OSError:
            return core.ANY4

    def _set_tstamp(self, name: int, value: bytes) -> None:
        """sock_set_timestamp: SO_TIMESTAMP* on asks for that kind (the last
        one set wins), off turns any off."""
        if I32.unpack_from(value)[0]:
            self._tstamp = (name in (SO_TIMESTAMPNS_OLD, SO_TIMESTAMPNS_NEW),
                            name in (SO_TIMESTAMP_NEW, SO_TIMESTAMPNS_NEW))
        else:
            self._tstamp = None

    def _rx_flags(self) -> frozenset:
        on = set()
        for level, name in _RX_OPTS:
            try:
                if self.ep.getsockopt(level, name):
                    on.add((level, name))
            except OSError:
                pass
        return frozenset(on)

    # --- state ---
    def take_error(self) -> int:
        return self.ep.take_error()

    def pending_in(self) -> int:
        return self.ep.pending_in()

    def pending_out(self) -> int:
        return self.ep.pending_out()

    def readiness(self) -> int:
        return self.ep.readiness()

    def wait_queues(self) -> tuple:
        return self.ep.queues()

    def release(self) -> None:
        self.ep.close()

    # --- options ---
    def setsockopt(self, k, t, level: int, name: int, value: bytes) -> None:
        if level == SOL_SOCKET:
            super().setsockopt(k, t, level, name, value)  # checks and stores it
            if name in _TSTAMP_OPTS:
                self._set_tstamp(name, value)
            if name not in _ENDPOINT_SOL:
                return
        self.ep.setsockopt(level, name, value)  # the protocol acts on the guest's own bytes
        if (level, name) in _RX_OPTS:
            self._rx = self._rx_flags()

    def getsockopt(self, k, t, level: int, name: int, optlen: int) -> bytes:
        if level == SOL_SOCKET:
            return super().getsockopt(k, t, level, name, optlen)
        v = self.ep.getsockopt(level, name)
        return struct.pack("<i", v) if isinstance(v, int) else v


def _socket_cmsg(sock, t, ctype: int, p) -> None:
    """__sock_cmsg_send: the SOL_SOCKET messages an inet send may carry
    (SCM_RIGHTS and SCM_CREDENTIALS are unix's: ignored here)."""
    if ctype == SO_MARK:
        if not privileged(t, NET_RAW, NET_ADMIN):
            raise fserr(errno.EPERM)
        if len(p) != 4:
            raise fserr(errno.EINVAL)
    elif ctype == SO_PRIORITY:
        if len(p) != 4:
            raise fserr(errno.EINVAL)
        if I32.unpack(p)[0] & 0xFFFFFFFF > TC_PRIO_INTERACTIVE and not privileged(t, NET_RAW, NET_ADMIN):
            raise fserr(errno.EPERM)
    elif ctype in (SO_TIMESTAMPING_OLD, SO_TIMESTAMPING_NEW):
        if len(p) != 4 or I32.unpack(p)[0] & ~TX_RECORD_MASK:
            raise fserr(errno.EINVAL)
    elif ctype == SO_TXTIME:  # SCM_TXTIME
        if SO_TXTIME not in sock.opts or len(p) != 8:
            raise fserr(errno.EINVAL)
    elif ctype not in (SCM_RIGHTS, SCM_CREDENTIALS):
        raise fserr(errno.EINVAL)


def _int_in(p, low: int, high: int) -> int:
    """A message holding exactly one int within [low, high]; else EINVAL."""
    if len(p) != 4:
        raise fserr(errno.EINVAL)
    v = I32.unpack(p)[0]
    if not low <= v <= high:
        raise fserr(errno.EINVAL)
    return v


def _ip_cmsg(anc: dict, ctype: int, p) -> None:
    """ip_cmsg_send's SOL_IP messages."""
    if ctype == IP_PKTINFO:
        if len(p) != IN_PKTINFO.size:
            raise fserr(errno.EINVAL)
        ifindex, spec_dst, _ = IN_PKTINFO.unpack(p)
        if ifindex:
            anc["ifindex"] = ifindex
        anc["src"] = spec_dst           # replaces the bound address, even with 0.0.0.0
    elif ctype == IP_TTL:
        anc["ttl"] = _int_in(p, 1, 255)
    elif ctype == IP_TOS:
        anc["tos"] = p[0] if len(p) == 1 else _int_in(p, 0, 255)
    elif ctype == IP_PROTOCOL:
        _int_in(p, 1, 255)              # a raw socket's; UDP has no use for it
    elif ctype == IP_RETOPTS:
        # IP options are not sent; only the no-op ones (EOL, NOP) pass
        if any(b not in (0, 1) for b in p[:40]):
            raise fserr(errno.EINVAL)
    else:
        raise fserr(errno.EINVAL)


def _ipv6_cmsg(anc: dict, ctype: int, p) -> None:
    """ip6_datagram_send_ctl's SOL_IPV6 messages (hop limit -1: the default).
    Extension headers (HOPOPTS, DSTOPTS, RTHDR) are not sent: EINVAL."""
    if ctype in (IPV6_PKTINFO, IPV6_2292PKTINFO):
        if len(p) < IN6_PKTINFO.size:
            raise fserr(errno.EINVAL)
        addr, ifindex = IN6_PKTINFO.unpack_from(p)
        if ifindex:
            anc["ifindex"] = ifindex
        if addr != core.ANY6:
            anc["src"] = addr
    elif ctype in (IPV6_HOPLIMIT, IPV6_2292HOPLIMIT):
        v = _int_in(p, -1, 255)
        if v >= 0:
            anc["ttl"] = v
    elif ctype == IPV6_TCLASS:
        # -1 is not the socket's value here: Linux's cork keeps it as a u8 (0xff)
        anc["tos"] = _int_in(p, -1, 255) & 0xFF
    elif ctype == IPV6_DONTFRAG:
        _int_in(p, 0, 1)                # as the socket option, not acted on
    elif ctype == IPV6_FLOWINFO:
        if len(p) < 4:                  # flow labels are not sent
            raise fserr(errno.EINVAL)
    else:
        raise fserr(errno.EINVAL)


def register() -> None:
    from .syscalls.socket import register_family
    register_family(AF_INET, factory(AF_INET))
    register_family(AF_INET6, factory(AF_INET6))
