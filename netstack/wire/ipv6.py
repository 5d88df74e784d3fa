"""The IPv6 header (RFC 8200) and the extension headers a host must walk:
hop-by-hop and destination options, routing, fragment."""
from __future__ import annotations

import dataclasses
import errno
import struct

from ..core import Malformed

HEADER = 40
FRAG_HEADER = 8
MIN_MTU = 1280
MAX_PAYLOAD = 65535

NH_HOPOPTS = 0
NH_ROUTING = 43
NH_FRAGMENT = 44
NH_NONE = 59
NH_DSTOPTS = 60
_EXT = frozenset((NH_HOPOPTS, NH_ROUTING, NH_FRAGMENT, NH_DSTOPTS))
_SR_TYPES = frozenset((3, 4))       # RPL source route, segment routing (SRH)

OPT_PAD1 = 0
OPT_PADN = 1
OPT_ROUTER_ALERT = 5

_HDR = struct.Struct("!IHBB16s16s")
_FRAG = struct.Struct("!BBHI")
_unpack = _HDR.unpack_from


@dataclasses.dataclass(slots=True)
class IPv6Header:
    tclass: int
    flow: int
    hop_limit: int
    next_header: int        # parse: the upper-layer protocol after the walk
    src: bytes
    dst: bytes
    payload_length: int = 0  # as received (extension headers included)
    frag: tuple | None = None   # (offset in bytes, more, ident) of a fragment


def _check_options(data, i: int, end: int) -> None:
    """The TLV options of a hop-by-hop or destination options header.
    Unknown options whose type's top two bits ask for it mean discard
    (RFC 8200 4.2; we answer no ICMP parameter problem)."""
    while i < end:
        t = data[i]
        if t == OPT_PAD1:
            i += 1
            continue
        if i + 1 >= end:
            raise Malformed("ipv6.bad_options")
        j = i + 2 + data[i + 1]
        if j > end:
            raise Malformed("ipv6.bad_options")
        if t >> 6 and t != OPT_PADN and t != OPT_ROUTER_ALERT:
            raise Malformed("ipv6.unknown_option")
        i = j


def _walk(data, off: int, end: int, nh: int, hbh_ok: bool):
    """Walk extension headers from off; return (next_header, offset of what
    follows, frag) where frag is set when a (non-atomic) fragment header
    stopped the walk: what follows it is fragment data."""
    while nh in _EXT:
        if off + 8 > end:
            raise Malformed("ipv6.short_ext")
        if nh == NH_FRAGMENT:
            nxt, _, om, ident = _FRAG.unpack_from(data, off)
            off += FRAG_HEADER
            offset, more = om & 0xFFF8, bool(om & 1)
            if offset or more:
                return nxt, off, (offset, more, ident)
            nh = nxt        # an atomic fragment (RFC 6946): not reassembled
            hbh_ok = False
            continue
        nxt = data[off]
        hl = (data[off + 1] + 1) << 3
        if off + hl > end:
            raise Malformed("ipv6.short_ext")
        if nh == NH_ROUTING:
            # We route nothing: a header still naming hops (segments left)
            # is not ours to process (RFC 8200 4.4; RH0 included, RFC 5095);
            # with none left it is ignored, but for the segment routing
            # types Linux drops unless seg6/rpl is enabled (off by default).
            if data[off + 3] != 0 or data[off + 2] in _SR_TYPES:
                raise Malformed("ipv6.routing_header")
        elif nh == NH_HOPOPTS and not hbh_ok:
            raise Malformed("ipv6.hbh_not_first")
        else:
            _check_options(data, off + 2, off + hl)
        hbh_ok = False
        off += hl
        nh = nxt
    return nh, off, None


def parse(data) -> tuple[IPv6Header, bytes]:
    """The header and the upper-layer payload of an IPv6 packet, extension
    headers walked: hdr.next_header is the upper-layer protocol, or for a
    fragment (hdr.frag set) the protocol that follows the fragment header
    and the payload is the fragment's data. Bytes past the payload length
    (Ethernet padding) are trimmed."""
    n = len(data)
    if n < HEADER:
        raise Malformed("ipv6.short")
    vtf, plen, nh, hlim, src, dst = _unpack(data)
    if vtf >> 28 != 6:
        raise Malformed("ipv6.bad_version")
    end = HEADER + plen
    if end > n:
        raise Malformed("ipv6.bad_length")
    frag = None
    off = HEADER
    if nh in _EXT:
        nh, off, frag = _walk(data, off, end, nh, True)
    hdr = IPv6Header((vtf >> 20) & 0xFF, vtf & 0xFFFFF, hlim, nh, src, dst,
                     plen, frag)
    return hdr, bytes(data[off:end])


def walk(next_header: int, data) -> tuple[int, bytes]:
    """The extension headers at the start of a reassembled payload walked:
    (upper-layer protocol, its data). A second fragment header is
    malformed."""
    if next_header not in _EXT:
        return next_header, data
    nh, off, frag = _walk(data, 0, len(data), next_header, False)
    if frag is not None:
        raise Malformed("ipv6.nested_fragment")
    return nh, data[off:]


def _pack(hdr: IPv6Header, nh: int, plen: int) -> bytes:
    return _HDR.pack(0x60000000 | (hdr.tclass << 20) | hdr.flow, plen, nh,
                     hdr.hop_limit, hdr.src, hdr.dst)


def build(hdr: IPv6Header, payload) -> bytes:
    """A packet without extension headers: hdr.next_header is the payload's
    protocol."""
    if len(payload) > MAX_PAYLOAD:
        raise OSError(errno.EMSGSIZE, "IPv6 payload too long")
    return b"".join((_pack(hdr, hdr.next_header, len(payload)), payload))


def build_fragment(hdr: IPv6Header, fragment, offset: int, more: bool,
                   ident: int) -> bytes:
    """One fragment: the IPv6 header, a fragment header whose next header is
    hdr.next_header, and the fragment's data (offset in bytes, a multiple
    of 8)."""
    plen = FRAG_HEADER + len(fragment)
    if plen > MAX_PAYLOAD:
        raise OSError(errno.EMSGSIZE, "IPv6 payload too long")
    return b"".join((_pack(hdr, NH_FRAGMENT, plen),
                     _FRAG.pack(hdr.next_header, 0, offset | bool(more), ident),
                     fragment))
