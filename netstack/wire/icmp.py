"""ICMPv4 (RFC 792) and ICMPv6 (RFC 4443) messages, and the option format
of IPv6 neighbor discovery (RFC 4861). The family is chosen by the length
of the addresses: ICMPv6's checksum covers the pseudo-header, ICMPv4's
does not."""
from __future__ import annotations

import dataclasses
import struct

from ..core import IPPROTO_ICMPV6, Malformed
from .checksum import checksum, ones_sum, pseudo_sum

HEADER = 8

# ICMPv4 types and codes
ECHO_REPLY = 0
DEST_UNREACH = 3
SOURCE_QUENCH = 4
REDIRECT = 5
ECHO_REQUEST = 8
TIME_EXCEEDED = 11
PARAM_PROBLEM = 12
TIMESTAMP = 13
TIMESTAMP_REPLY = 14
NET_UNREACH = 0         # DEST_UNREACH codes
HOST_UNREACH = 1
PROTO_UNREACH = 2
PORT_UNREACH = 3
FRAG_NEEDED = 4
SR_FAILED = 5
NET_UNKNOWN = 6
HOST_UNKNOWN = 7
NET_ANO = 9
HOST_ANO = 10
PKT_FILTERED = 13
EXC_TTL = 0             # TIME_EXCEEDED codes
EXC_FRAGTIME = 1
_ERRORS4 = frozenset((DEST_UNREACH, SOURCE_QUENCH, REDIRECT, TIME_EXCEEDED,
                      PARAM_PROBLEM))

# ICMPv6 types and codes
DEST_UNREACH6 = 1
PACKET_TOO_BIG6 = 2
TIME_EXCEEDED6 = 3
PARAM_PROBLEM6 = 4
ECHO_REQUEST6 = 128
ECHO_REPLY6 = 129
MLD_QUERY = 130
MLD_REPORT = 131
MLD_DONE = 132
ROUTER_SOLICIT = 133
ROUTER_ADVERT = 134
NEIGHBOR_SOLICIT = 135
NEIGHBOR_ADVERT = 136
REDIRECT6 = 137
MLD2_REPORT = 143
NOROUTE6 = 0            # DEST_UNREACH6 codes
ADM_PROHIBITED6 = 1
NOT_NEIGHBOUR6 = 2
ADDR_UNREACH6 = 3
PORT_UNREACH6 = 4
EXC_HOPLIMIT6 = 0       # TIME_EXCEEDED6 codes
EXC_FRAGTIME6 = 1
PARAM_HEADER6 = 0       # PARAM_PROBLEM6 codes
PARAM_NEXT_HEADER6 = 1
PARAM_OPTION6 = 2

# Neighbor discovery: option types and neighbor advertisement flags (the
# first byte of `rest`)
OPT_SOURCE_LLADDR = 1
OPT_TARGET_LLADDR = 2
OPT_PREFIX_INFO = 3
OPT_REDIRECTED = 4
OPT_MTU = 5
NA_ROUTER = 0x80
NA_SOLICITED = 0x40
NA_OVERRIDE = 0x20

# What an error quotes of the offending packet: Linux's amounts (RFC 1812
# 4.3.2.3: up to 576 bytes in all for IPv4; RFC 4443 2.4(c): up to the
# minimum MTU for IPv6), beyond RFC 792's header + 8 bytes.
QUOTE4 = 576 - 20 - HEADER
QUOTE6 = 1280 - 40 - HEADER

_HDR = struct.Struct("!BBH")
_ECHO = struct.Struct("!HH")
_U32 = struct.Struct("!I")
NO_REST = bytes(4)


@dataclasses.dataclass(slots=True)
class IcmpMessage:
    type: int
    code: int
    rest: bytes = NO_REST    # the 4 bytes after the checksum: id/seq, mtu...
    body: bytes = b""

    def encode(self, src: bytes, dst: bytes) -> bytes:
        head = _HDR.pack(self.type, self.code, 0) + self.rest
        if len(src) == 16:
            init = pseudo_sum(src, dst, IPPROTO_ICMPV6,
                              HEADER + len(self.body))
        else:
            init = 0
        c = checksum(self.body, ones_sum(head) + init)
        return b"".join((_HDR.pack(self.type, self.code, c), self.rest,
                         self.body))

    # echo request/reply fields
    @property
    def ident(self) -> int:
        return _ECHO.unpack(self.rest)[0]

    @property
    def seq(self) -> int:
        return _ECHO.unpack(self.rest)[1]

    @property
    def mtu(self) -> int:
        """The next-hop MTU of IPv4 frag-needed (low 16 bits) or IPv6
        packet-too-big (all 32)."""
        v = _U32.unpack(self.rest)[0]
        return v if self.type == PACKET_TOO_BIG6 else v & 0xFFFF


def parse(data, src: bytes, dst: bytes) -> IcmpMessage:
    """A message with its checksum verified (ICMPv6 when src is 16 bytes)."""
    n = len(data)
    if n < HEADER:
        raise Malformed("icmp.short")
    if len(src) == 16:
        if checksum(data, pseudo_sum(src, dst, IPPROTO_ICMPV6, n)) != 0:
            raise Malformed("icmp6.bad_checksum")
    elif checksum(data) != 0:
        raise Malformed("icmp.bad_checksum")
    return IcmpMessage(data[0], data[1], bytes(data[4:8]), bytes(data[8:]))


def is_error(type_: int, v6: bool) -> bool:
    """An error message (never answered with an error, RFC 1122/4443)."""
    return type_ < 128 if v6 else type_ in _ERRORS4


def echo_rest(ident: int, seq: int) -> bytes:
    return _ECHO.pack(ident & 0xFFFF, seq & 0xFFFF)


def mtu_rest(mtu: int, v6: bool) -> bytes:
    """`rest` of frag-needed (v4: unused 16 bits, MTU 16) or too-big (v6)."""
    return _U32.pack(mtu if v6 else mtu & 0xFFFF)


def quote(packet, limit: int | None = None) -> bytes:
    """What an error message about `packet` (a whole IP packet, header
    first) carries: its start, at most `limit` bytes (by default as much as
    Linux sends: 548 bytes for IPv4, 1232 for IPv6)."""
    if limit is None:
        limit = QUOTE6 if packet and packet[0] >> 4 == 6 else QUOTE4
    return bytes(packet[:limit])


def ndp_options(data) -> dict[int, bytes]:
    """Neighbor discovery options (type, length in 8-byte units, value) as
    {type: value}; the first of a repeated type wins. Value is what follows
    the 2-byte type/length, padding included (a link-layer address option on
    Ethernet is exactly the 6-byte MAC). A zero length is malformed (RFC
    4861 4.6)."""
    opts: dict[int, bytes] = {}
    i, n = 0, len(data)
    while i < n:
        if i + 2 > n:
            raise Malformed("ndp.bad_option")
        ln = data[i + 1]
        j = i + (ln << 3)
        if ln == 0 or j > n:
            raise Malformed("ndp.bad_option")
        opts.setdefault(data[i], bytes(data[i + 2:j]))
        i = j
    return opts


def build_ndp_options(options) -> bytes:
    """Options from {type: value} or (type, value) pairs, each padded with
    zeros to a multiple of 8 bytes."""
    items = options.items() if isinstance(options, dict) else options
    out = []
    for t, value in items:
        units = (len(value) + 2 + 7) >> 3
        if units > 255:
            raise ValueError("NDP option too long")
        out.append(bytes((t, units)) + value + bytes((units << 3) - 2 - len(value)))
    return b"".join(out)


def parse_neighbor(msg: IcmpMessage) -> tuple[bytes, dict[int, bytes]]:
    """(target address, options) of a neighbor solicitation or
    advertisement (RFC 4861 4.3, 4.4)."""
    if len(msg.body) < 16:
        raise Malformed("ndp.short")
    return msg.body[:16], ndp_options(msg.body[16:])


def neighbor_message(type_: int, target: bytes, lladdr: bytes | None = None,
                     flags: int = 0) -> IcmpMessage:
    """A neighbor solicitation (lladdr: our source link-layer address) or
    advertisement (lladdr: the target's; flags: NA_* bits)."""
    body = target
    if lladdr is not None:
        opt = OPT_SOURCE_LLADDR if type_ == NEIGHBOR_SOLICIT else OPT_TARGET_LLADDR
        body += build_ndp_options(((opt, lladdr),))
    return IcmpMessage(type_, 0, bytes((flags & 0xFF, 0, 0, 0)), body)
