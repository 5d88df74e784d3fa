"""IPv6's network-layer pieces beyond the header codec: fragmenting a packet
at its source (RFC 8200 4.5; routers never fragment IPv6) and reassembling
received fragments (the family-agnostic Reassembler of netstack.ipv4)."""
from __future__ import annotations

import errno

from .ipv4 import Reassembler, packet_of
from .wire import ipv6 as wire6
from .wire.ipv6 import IPv6Header

__all__ = ["Reassembler", "Reassembler6", "fragment6", "packet_of"]

MIN_MTU = wire6.MIN_MTU


class Reassembler6(Reassembler):
    """The Reassembler with IPv6's timeout: 60 s (RFC 8200 4.5, Linux's
    net.ipv6.ip6frag_time), where IPv4's is 30 s."""

    def __init__(self, clock_now=None, limit_bytes: int = 4 << 20,
                 timeout_ns: int = 60_000_000_000,
                 max_fragments_per_packet: int = 64, stats=None):
        super().__init__(clock_now, limit_bytes, timeout_ns,
                         max_fragments_per_packet, stats)


def fragment6(hdr: IPv6Header, payload, mtu: int, ident: int,
              dontfrag: bool = False) -> list[bytes]:
    """hdr+payload (hdr.next_header: the payload's protocol, no extension
    headers) as packets no larger than mtu: itself when it fits, else
    fragments each with a fragment header carrying ident, data a multiple of
    8 bytes but the last. OSError(EMSGSIZE) when it does not fit and
    dontfrag (IPV6_DONTFRAG) is set, when the payload exceeds 65535 bytes or
    the MTU cannot carry 8 data bytes."""
    n = len(payload)
    if wire6.HEADER + n <= mtu:
        return [wire6.build(hdr, payload)]
    if dontfrag:
        raise OSError(errno.EMSGSIZE, "packet larger than the MTU")
    if n > wire6.MAX_PAYLOAD:
        raise OSError(errno.EMSGSIZE, "IPv6 payload too long")
    size = (mtu - wire6.HEADER - wire6.FRAG_HEADER) & ~7
    if size < 8:
        raise OSError(errno.EMSGSIZE, "MTU too small to fragment")
    mv = memoryview(payload)
    out = []
    for off in range(0, n, size):
        end = min(off + size, n)
        out.append(wire6.build_fragment(hdr, mv[off:end], off, end < n, ident))
    return out
