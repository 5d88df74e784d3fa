"""ICMP for IPv4 and IPv6 as transport protocol handlers: echo replies,
the errors the stack sends (destination unreachable, reassembly time
exceeded) under Linux's global rate limit, and received errors handed to
the transport that sent the quoted packet (handler.error, with Linux's
errno for each type and code). Echo replies go to ping sockets
(netstack.ping) by their identifier.
"""
from __future__ import annotations

import errno
import struct

from .core import ANY4, ANY6, PacketInfo
from .wire import icmp as wire
from .wire import ipv4 as wire4
from .wire import ipv6 as wire6
from .wire.icmp import IcmpMessage

# Destination-unreachable codes the stack and transports ask for (ICMPv4's
# numbering; the ICMPv6 handler maps them).
UNREACH_NET, UNREACH_HOST, UNREACH_PROTO, UNREACH_PORT = 0, 1, 2, 3
UNREACH_ADMIN = 13

# The kinds Linux treats as hard errors (icmp_err_convert's "fatal"; a
# connected UDP socket reports only these without IP_RECVERR).
HARD_ERRORS = frozenset(("proto_unreach", "port_unreach", "net_unknown",
                         "host_unknown", "host_isolated", "admin_prohibited",
                         "param_problem"))

# ICMPv4 destination unreachable code -> (kind, errno): Linux's icmp_err_convert.
_UNREACH4 = {
    0: ("net_unreach", errno.ENETUNREACH),
    1: ("host_unreach", errno.EHOSTUNREACH),
    2: ("proto_unreach", errno.ENOPROTOOPT),
    3: ("port_unreach", errno.ECONNREFUSED),
    4: ("too_big", errno.EMSGSIZE),
    5: ("source_route_failed", errno.EOPNOTSUPP),
    6: ("net_unknown", errno.ENETUNREACH),
    7: ("host_unknown", errno.EHOSTDOWN),
    8: ("host_isolated", errno.ENONET),
    9: ("admin_prohibited", errno.ENETUNREACH),
    10: ("admin_prohibited", errno.EHOSTUNREACH),
    11: ("net_unreach", errno.ENETUNREACH),
    12: ("host_unreach", errno.EHOSTUNREACH),
    13: ("admin_prohibited", errno.EHOSTUNREACH),
    14: ("admin_prohibited", errno.EHOSTUNREACH),
    15: ("admin_prohibited", errno.EHOSTUNREACH),
}
# ICMPv6 destination unreachable code -> (kind, errno): icmpv6_err_convert.
_UNREACH6 = {
    0: ("net_unreach", errno.ENETUNREACH),
    1: ("admin_prohibited", errno.EACCES),
    2: ("host_unreach", errno.EHOSTUNREACH),
    3: ("host_unreach", errno.EHOSTUNREACH),
    4: ("port_unreach", errno.ECONNREFUSED),
    5: ("admin_prohibited", errno.EACCES),
    6: ("admin_prohibited", errno.EACCES),
}
# What we send for an ICMPv4 unreachable code over IPv6.
_CODE4TO6 = {UNREACH_NET: wire.NOROUTE6, UNREACH_HOST: wire.ADDR_UNREACH6,
             UNREACH_PORT: wire.PORT_UNREACH6, 9: wire.ADM_PROHIBITED6,
             10: wire.ADM_PROHIBITED6, UNREACH_ADMIN: wire.ADM_PROHIBITED6}

_ERRORS4 = frozenset((wire.DEST_UNREACH, wire.SOURCE_QUENCH, wire.REDIRECT,
                      wire.TIME_EXCEEDED, wire.PARAM_PROBLEM))
_PREC_INTERNETCONTROL = 0xC0
_U32 = struct.Struct("!I")
_EXT6 = frozenset((wire6.NH_HOPOPTS, wire6.NH_ROUTING, wire6.NH_FRAGMENT, wire6.NH_DSTOPTS))


def _skip_ext6(nh: int, data):
    """The transport header after the extension headers of a quoted IPv6
    packet, as (protocol, bytes); (nh, None) when it is not reachable (a
    non-first fragment, a truncated header). Like Linux's ipv6_skip_exthdr,
    options are not judged here."""
    while nh in _EXT6:
        if len(data) < 8:
            return nh, None
        if nh == wire6.NH_FRAGMENT:
            if (data[2] << 8 | data[3]) & 0xFFF8:
                return nh, None
            nh, data = data[0], data[8:]
        else:
            hl = (data[1] + 1) << 3
            nh, data = data[0], data[hl:]
    return nh, data


class RateLimiter:
    """Linux's global ICMP limit (net.ipv4.icmp_msgs_per_sec = 1000,
    icmp_msgs_burst = 50): a token bucket shared by ICMPv4 and ICMPv6
    errors. Echo replies are not limited (icmp_ratemask)."""

    def __init__(self, clock, per_sec: int = 1000, burst: int = 50):
        self.clock = clock
        self.per_sec = per_sec
        self.burst = burst
        self.credit = burst
        self.stamp = clock.now_ns()

    def allow(self) -> bool:
        now = self.clock.now_ns()
        if self.credit < self.burst:
            add = (now - self.stamp) * self.per_sec // 1_000_000_000
            if add > 0:
                self.credit = min(self.burst, self.credit + add)
                self.stamp = now
        else:
            self.stamp = now
        if self.credit > 0:
            self.credit -= 1
            return True
        return False


def _limiter(stack) -> RateLimiter:
    lim = stack.icmp_limiter
    if lim is None:
        lim = stack.icmp_limiter = RateLimiter(stack.clock)
    return lim


class _ICMPBase:
    number = 0
    v6 = False

    def __init__(self, stack):
        self.stack = stack
        self.limiter = _limiter(stack)
        stack.register(self)

    @staticmethod
    def parse(data, src, dst) -> IcmpMessage:
        return wire.parse(data, src, dst)

    # --- echo ---------------------------------------------------------------

    def _reply(self, info: PacketInfo, msg: IcmpMessage, local) -> None:
        try:
            route = self.stack.route(info.src, local)
        except OSError:
            self.stack.stats["icmp.reply_unroutable"] += 1
            return
        route.send(self.number, msg, tos=info.tos)

    def _echo_reply_in(self, info: PacketInfo, msg: IcmpMessage) -> None:
        ping = self.stack.ping
        if ping is None or not ping.echo_reply(info, msg):
            self.stack.stats["icmp.echo_reply_unmatched"] += 1

    # --- errors received ----------------------------------------------------

    def _pass_error(self, info, kind, err, src, dst, proto, quoted) -> None:
        stack = self.stack
        if not stack.is_local(src):
            stack.stats["icmp.error_not_ours"] += 1
            return
        h = stack.handlers.get(proto)
        if h is None or not hasattr(h, "error"):
            stack.stats["icmp.error_no_handler"] += 1
            return
        h.error(PacketInfo(src, dst, proto, info.ttl, info.tos, info.nic), kind, err, quoted)

    # --- errors sent --------------------------------------------------------

    def _send_error(self, info: PacketInfo, packet: bytes, type_: int, code: int,
                    rest: bytes = wire.NO_REST) -> None:
        """An error about `packet` (a received IP packet, header first) to
        its source, unless RFC 1122 / RFC 4443 forbid one or the rate
        limit says no."""
        stack = self.stack
        src, dst = info.src, info.dst
        if src == ANY4 or src == ANY6 or stack.is_broadcast(src):
            return
        if not self._may_answer(info, packet, type_, code):
            return
        if not self.limiter.allow():
            stack.stats["icmp.ratelimited"] += 1
            return
        msg = IcmpMessage(type_, code, rest, wire.quote(packet))
        try:
            route = stack.route(src, dst if stack.is_local(dst) else None)
        except OSError:
            stack.stats["icmp.error_unroutable"] += 1
            return
        stack.stats["icmp.errors_sent"] += 1
        route.send(self.number, msg, tos=(info.tos & 0x1E) | _PREC_INTERNETCONTROL)

    def error(self, info, kind, errno_, quoted) -> None:
        """An error about an echo request we sent: to its ping socket."""
        ping = self.stack.ping
        if ping is not None and len(quoted) >= 8 and quoted[0] == self._echo_request:
            ping.error(info, kind, errno_, quoted)

    def reassembly_timeout(self, info: PacketInfo, packet: bytes) -> None:
        """A datagram whose first fragment came timed out in reassembly."""
        if self.v6:
            self._send_error(info, packet, wire.TIME_EXCEEDED6, wire.EXC_FRAGTIME6)
        else:
            self._send_error(info, packet, wire.TIME_EXCEEDED, wire.EXC_FRAGTIME)


class ICMPv4(_ICMPBase):
    number = 1
    v6 = False
    _echo_request = wire.ECHO_REQUEST

    def deliver(self, info: PacketInfo, msg: IcmpMessage) -> None:
        t = msg.type
        stats = self.stack.stats
        if t == wire.ECHO_REQUEST:
            if self.stack.is_broadcast(info.dst):
                stats["icmp.echo_broadcast_ignored"] += 1    # icmp_echo_ignore_broadcasts
                return
            self._reply(info, IcmpMessage(wire.ECHO_REPLY, 0, msg.rest, msg.body), info.dst)
        elif t == wire.ECHO_REPLY:
            self._echo_reply_in(info, msg)
        elif t == wire.DEST_UNREACH or t == wire.TIME_EXCEEDED or t == wire.PARAM_PROBLEM:
            self._error_in(info, msg)
        else:
            stats["icmp.ignored"] += 1     # source quench, redirect, timestamps...

    def _error_in(self, info: PacketInfo, msg: IcmpMessage) -> None:
        stats = self.stack.stats
        body = msg.body
        if len(body) < 20 or body[0] >> 4 != 4:
            stats["icmp.bad_quote"] += 1
            return
        ihl = (body[0] & 15) << 2
        if ihl < 20 or len(body) < ihl + 8:     # Linux needs 8 transport bytes
            stats["icmp.bad_quote"] += 1
            return
        proto, src, dst = body[9], body[12:16], body[16:20]
        if msg.type == wire.DEST_UNREACH:
            kind, err = _UNREACH4.get(msg.code, ("host_unreach", errno.EHOSTUNREACH))
            if kind == "too_big":
                mtu = msg.mtu
                if mtu >= 68:
                    self.stack.set_path_mtu(dst, mtu)
        elif msg.type == wire.TIME_EXCEEDED:
            kind, err = "time_exceeded", errno.EHOSTUNREACH
        else:
            kind, err = "param_problem", errno.EPROTO
        self._pass_error(info, kind, err, src, dst, proto, body[ihl:])

    def _may_answer(self, info, packet, type_, code) -> bool:
        if self.stack.is_broadcast(info.dst):
            return False
        if len(packet) >= 20:
            ihl = (packet[0] & 15) << 2
            if (packet[6] << 8 | packet[7]) & 0x1FFF:
                return False            # not about a non-initial fragment
            if packet[9] == 1 and len(packet) > ihl and packet[ihl] in _ERRORS4:
                return False            # never about an ICMP error
        return True

    def unreachable(self, info: PacketInfo, data, code: int) -> None:
        hdr = wire4.IPv4Header(info.tos, 0, False, False, 0, info.ttl, info.proto,
                               info.src, info.dst)
        self._send_error(info, wire4.build(hdr, bytes(data[:wire.QUOTE4])),
                         wire.DEST_UNREACH, code)


class ICMPv6(_ICMPBase):
    number = 58
    v6 = True
    _echo_request = wire.ECHO_REQUEST6

    def deliver(self, info: PacketInfo, msg: IcmpMessage) -> None:
        t = msg.type
        stats = self.stack.stats
        if t == wire.ECHO_REQUEST6:
            # Linux answers multicast echo too (icmpv6 echo_ignore_multicast=0),
            # from an address of its own.
            local = None if info.dst[0] == 0xFF else info.dst
            self._reply(info, IcmpMessage(wire.ECHO_REPLY6, 0, msg.rest, msg.body), local)
        elif t == wire.ECHO_REPLY6:
            self._echo_reply_in(info, msg)
        elif t < 128:
            self._error_in(info, msg)
        else:
            stats["icmp6.ignored"] += 1    # NDP is answered by the link; MLD...

    def _error_in(self, info: PacketInfo, msg: IcmpMessage) -> None:
        stats = self.stack.stats
        body = msg.body
        if len(body) < 48 or body[0] >> 4 != 6:
            stats["icmp6.bad_quote"] += 1
            return
        nh, src, dst = body[6], body[8:24], body[24:40]
        quoted = body[40:]
        if nh in _EXT6:
            nh, quoted = _skip_ext6(nh, quoted)
            if quoted is None or len(quoted) < 8:
                stats["icmp6.bad_quote"] += 1
                return
        t = msg.type
        if t == wire.DEST_UNREACH6:
            kind, err = _UNREACH6.get(msg.code, ("host_unreach", errno.EHOSTUNREACH))
        elif t == wire.PACKET_TOO_BIG6:
            kind, err = "too_big", errno.EMSGSIZE
            mtu = msg.mtu
            if mtu >= wire6.MIN_MTU:
                self.stack.set_path_mtu(dst, mtu)
        elif t == wire.TIME_EXCEEDED6:
            kind, err = "time_exceeded", errno.EHOSTUNREACH
        elif t == wire.PARAM_PROBLEM6:
            kind, err = "param_problem", errno.EPROTO
        else:
            stats["icmp6.ignored"] += 1
            return
        self._pass_error(info, kind, err, src, dst, nh, quoted)

    def _may_answer(self, info, packet, type_, code) -> bool:
        # RFC 4443 2.4(e): not about a multicast destination (but too big
        # and unknown-option parameter problems), never about an error.
        if info.dst[0] == 0xFF and type_ != wire.PACKET_TOO_BIG6 and not (
                type_ == wire.PARAM_PROBLEM6 and code == wire.PARAM_OPTION6):
            return False
        if info.proto == 58 and len(packet) > 40 and packet[6] == 58 and packet[40] < 128:
            return False
        return True

    def unreachable(self, info: PacketInfo, data, code: int) -> None:
        if code == UNREACH_PROTO:
            # IPv6 says "unrecognized next header" (pointing at the field).
            type_, code6, rest = wire.PARAM_PROBLEM6, wire.PARAM_NEXT_HEADER6, _U32.pack(6)
        else:
            type_, code6, rest = wire.DEST_UNREACH6, _CODE4TO6.get(code, wire.NOROUTE6), wire.NO_REST
        hdr = wire6.IPv6Header(info.tos, 0, info.ttl, info.proto, info.src, info.dst)
        self._send_error(info, wire6.build(hdr, bytes(data[:wire.QUOTE6])), type_, code6, rest)
