"""The IPv4 header (RFC 791)."""
from __future__ import annotations

import dataclasses
import errno
import struct

from ..core import Malformed
from .checksum import checksum

HEADER = 20
MAX_PACKET = 65535
DF = 0x4000
MF = 0x2000
OPT_EOL = 0
OPT_NOP = 1
OPT_COPIED = 0x80      # option type bit: copy into every fragment
OPT_LSRR = 0x83
OPT_SSRR = 0x89

_HDR = struct.Struct("!BBHHHBBH4s4s")
_unpack = _HDR.unpack_from


@dataclasses.dataclass(slots=True)
class IPv4Header:
    tos: int
    ident: int
    df: bool
    mf: bool
    frag_offset: int        # in bytes (a multiple of 8)
    ttl: int
    proto: int
    src: bytes
    dst: bytes
    options: bytes = b""
    total_length: int = 0   # as received; build computes its own

    @property
    def header_length(self) -> int:
        return HEADER + ((len(self.options) + 3) & ~3)


def check_options(options) -> None:
    """Raise Malformed unless options is a well-formed option list: single
    byte EOL/NOP, others type, length >= 2, within the area. Source-routed
    packets are dropped, as Linux does by default (accept_source_route=0):
    a host routes nothing."""
    i, n = 0, len(options)
    while i < n:
        t = options[i]
        if t == OPT_EOL:
            return
        if t == OPT_NOP:
            i += 1
            continue
        if i + 1 >= n:
            raise Malformed("ipv4.bad_options")
        ln = options[i + 1]
        if ln < 2 or i + ln > n:
            raise Malformed("ipv4.bad_options")
        if t == OPT_LSRR or t == OPT_SSRR:
            raise Malformed("ipv4.source_route")
        i += ln


def parse(data) -> tuple[IPv4Header, bytes]:
    """The header and the payload of an IPv4 packet. Bytes past the total
    length (Ethernet's minimum-frame padding) are trimmed."""
    n = len(data)
    if n < HEADER:
        raise Malformed("ipv4.short")
    vi, tos, total, ident, ff, ttl, proto, _, src, dst = _unpack(data)
    if vi >> 4 != 4:
        raise Malformed("ipv4.bad_version")
    hl = (vi & 15) << 2
    if hl < HEADER:
        raise Malformed("ipv4.bad_ihl")
    if total > n or total < hl:
        raise Malformed("ipv4.bad_length")
    if checksum(data[:hl]) != 0:
        raise Malformed("ipv4.bad_checksum")
    if hl > HEADER:
        options = bytes(data[HEADER:hl])
        check_options(options)
    else:
        options = b""
    hdr = IPv4Header(tos, ident, bool(ff & DF), bool(ff & MF),
                     (ff & 0x1FFF) << 3, ttl, proto, src, dst, options, total)
    return hdr, bytes(data[hl:total])


def build(hdr: IPv4Header, payload) -> bytes:
    """The packet: header (options padded with EOL to 4 bytes, total length
    and checksum computed) and payload. OSError(EMSGSIZE) past 65535."""
    opts = hdr.options
    if len(opts) & 3:
        opts = opts + bytes(4 - (len(opts) & 3))
    hl = HEADER + len(opts)
    if hl > 60:
        raise ValueError("IPv4 options longer than 40 bytes")
    total = hl + len(payload)
    if total > MAX_PACKET:
        raise OSError(errno.EMSGSIZE, "IPv4 packet too long")
    ff = (hdr.frag_offset >> 3) | (DF if hdr.df else 0) | (MF if hdr.mf else 0)
    h = bytearray(hl)
    _HDR.pack_into(h, 0, 0x40 | (hl >> 2), hdr.tos, total, hdr.ident, ff,
                   hdr.ttl, hdr.proto, 0, hdr.src, hdr.dst)
    if opts:
        h[HEADER:] = opts
    c = checksum(h)
    h[10] = c >> 8
    h[11] = c & 0xFF
    return b"".join((h, payload))
