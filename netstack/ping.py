"""Unprivileged ICMP echo sockets: socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP)
and its ICMPv6 twin, as `ping` uses them when net.ipv4.ping_group_range
lets it (the sentry decides who may create one).

Linux's net/ipv4/ping.c in short: the "port" is the echo identifier,
unique per stack whatever the address (SO_REUSEADDR on both to share);
what is sent must be an echo request header plus data, whose identifier
the stack replaces and whose checksum it computes; what is received is the
whole echo reply, from (address, 0). Addressing, options, buffers,
errors and shutdown are a datagram socket's, so the endpoint is a
UDPEndpoint with a different table and wire form.
"""
from __future__ import annotations

import errno

from .core import AF_INET, AF_INET6, IPPROTO_ICMP, IPPROTO_ICMPV6, V4MAPPED
from .icmp import HARD_ERRORS
from .ports import PortTable
from .udp import IP_PMTUDISC_DONT, MSG_OOB, SHUT_WR, UDPEndpoint
from .wire import icmp as wire
from .wire.icmp import IcmpMessage


class IdentTable(PortTable):
    """Echo identifiers in use: any two bindings of one identifier
    conflict, whatever their addresses (ping_get_port), unless both set
    SO_REUSEADDR; identifier 0 picks a free one from 1 up."""

    def __init__(self):
        super().__init__(lambda old, new: old.reuseaddr and new.reuseaddr)
        self._rover = 1

    def _free(self, addr, port, v6only, owner) -> bool:
        return all(b.owner is owner or self.may_share(b.owner, owner)
                   for b in self.ports.get(port, ()))

    def bind(self, addr, port, owner, v6only=False):
        if port == 0:
            for i in range(0xFFFF):
                p = 1 + (self._rover - 1 + i) % 0xFFFF
                if self._free(addr, p, v6only, owner):
                    self._rover = p % 0xFFFF + 1
                    port = p
                    break
            else:
                raise OSError(errno.EAGAIN, "no echo identifier left")
        return super().bind(addr, port, owner, v6only)


class PingProtocol:
    """The ping sockets of a stack: the ICMP handlers hand echo replies and
    errors about echo requests here."""

    def __init__(self, stack):
        self.stack = stack
        self.ports = IdentTable()

    def lookup(self, ident: int, family: int, dst: bytes, ifindex: int):
        """ping_lookup: the newest socket of the family holding ident whose
        bound address is dst or the wildcard (the peer is not checked)."""
        found = None
        for b in self.ports.ports.get(ident, ()):
            ep = b.owner
            if ep.family != family:
                continue
            local = ep.local_net
            if local != ep._any and local != dst:
                continue
            if ep.bound_dev and ifindex and ep.bound_dev != ifindex:
                continue
            found = ep
        return found

    def echo_reply(self, info, msg: IcmpMessage) -> bool:
        family = AF_INET6 if len(info.dst) == 16 else AF_INET
        nic = info.nic
        ep = self.lookup(msg.ident, family, info.dst, nic.index if nic is not None else 0)
        if ep is None:
            return False
        ep._enqueue(msg.encode(info.src, info.dst), info.src, 0, info)
        return True

    def error(self, info, kind: str, errno_: int, quoted) -> None:
        """An ICMP error quoting one of our echo requests."""
        if len(quoted) < 8:
            return
        family = AF_INET6 if len(info.src) == 16 else AF_INET
        ep = self.lookup((quoted[4] << 8) | quoted[5], family, info.src, 0)
        if ep is None:
            return
        hard = kind in HARD_ERRORS or (kind == "too_big" and ep.pmtudisc != IP_PMTUDISC_DONT)
        if ep.recverr or (hard and ep.peer is not None):
            ep._set_error(errno_)


def ping_protocol(stack) -> PingProtocol:
    """The stack's ping sockets table, made on first use and known to its
    ICMP handlers."""
    p = stack.ping
    if p is None:
        p = stack.ping = PingProtocol(stack)
    return p


class PingEndpoint(UDPEndpoint):
    def __init__(self, stack, family: int, uid: int = 0):
        super().__init__(stack, family, uid)
        self.protocol = IPPROTO_ICMPV6 if family == AF_INET6 else IPPROTO_ICMP
        self.proto = ping_protocol(stack)
        self._echo = wire.ECHO_REQUEST6 if family == AF_INET6 else wire.ECHO_REQUEST

    def _dst_net(self, addr: bytes) -> bytes:
        if self.family == AF_INET6 and addr[:12] == V4MAPPED:
            raise OSError(errno.EINVAL, "IPv4-mapped address on an ICMPv6 socket")
        return addr

    def bind(self, addr_port) -> None:
        addr, _ = addr_port
        if self.family == AF_INET6 and addr[:12] == V4MAPPED:
            raise OSError(errno.EINVAL, "IPv4-mapped address on an ICMPv6 socket")
        super().bind(addr_port)

    def send(self, data, flags: int = 0, to=None, ancillary=None) -> int:
        if self.binding is None:
            self._autobind()
        n = len(data)
        if n > 0xFFFF:
            raise OSError(errno.EMSGSIZE, "message too long")
        if n < wire.HEADER:
            raise OSError(errno.EINVAL, "shorter than an ICMP header")
        if flags & MSG_OOB:
            raise OSError(errno.EOPNOTSUPP, "no out-of-band data")
        data = bytes(data)
        if data[0] != self._echo or data[1] != 0:
            raise OSError(errno.EINVAL, "not an echo request")
        if to is None:
            if self.peer_net is None:
                raise OSError(errno.EDESTADDRREQ, "destination address required")
            dst = self.peer_net[0]
        else:
            dst = self._dst_net(to[0])
        route = self._route(dst, ancillary)
        if route.broadcast and not self.broadcast:
            raise OSError(errno.EACCES, "broadcast without SO_BROADCAST")
        if self.error:
            self._raise_error()
        if self.shut & SHUT_WR:
            raise OSError(errno.EPIPE, "socket shut down for writing")
        ttl, tos = self._ttl_tos(route, len(dst), ancillary)
        rest = self.port.to_bytes(2, "big") + data[6:8]     # our identifier, their sequence
        route.send(self.protocol, IcmpMessage(self._echo, 0, rest, data[8:]), ttl, tos)
        return n
