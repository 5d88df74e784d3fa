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
                         SocketFile, privileged)

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
            raise fserr(errno.EPERM if not privileged(t) else errno.EPROTONOSUPPORT)
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

    # --- addresses ---
    def bind(self, k, t, raw: bytes) -> None:
        addr, port = decode(self.family, raw)
        if 0 < port < PROT_SOCK and not privileged(t):
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
        return _netstack_call(self.ep.send, data, flags, to)

    def recvmsg(self, k, t, size: int, flags: int):
        data, full, sender = _netstack_call(self.ep.recv, size, flags)
        if self.stype == SOCK_STREAM:  # MSG_TRUNC on a stream: what was discarded
            return data, full if flags & MSG_TRUNC else len(data), None, [], 0
        ret = full if flags & MSG_TRUNC else len(data)
        raw_from = encode(self.family, *sender) if sender is not None else None
        return data, ret, raw_from, [], MSG_TRUNC if full > len(data) else 0

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
            if name not in _ENDPOINT_SOL:
                return
        self.ep.setsockopt(level, name, value)  # the protocol acts on the guest's own bytes

    def getsockopt(self, k, t, level: int, name: int, optlen: int) -> bytes:
        if level == SOL_SOCKET:
            return super().getsockopt(k, t, level, name, optlen)
        v = self.ep.getsockopt(level, name)
        return struct.pack("<i", v) if isinstance(v, int) else v


def register() -> None:
    from .syscalls.socket import register_family
    register_family(AF_INET, factory(AF_INET))
    register_family(AF_INET6, factory(AF_INET6))
