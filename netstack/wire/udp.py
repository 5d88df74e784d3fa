"""The UDP header (RFC 768; RFC 8200 8.1 for IPv6's mandatory checksum)."""
from __future__ import annotations

import dataclasses
import errno
import struct

from ..core import IPPROTO_UDP, Malformed
from .checksum import checksum, pseudo_sum

HEADER = 8
MAX_PAYLOAD = 65535 - HEADER

_HDR = struct.Struct("!HHHH")
_unpack = _HDR.unpack_from


@dataclasses.dataclass(slots=True)
class Datagram:
    sport: int
    dport: int
    payload: bytes

    def encode(self, src: bytes, dst: bytes) -> bytes:
        """Header (length, pseudo-header checksum; a computed 0 goes out as
        0xFFFF, since 0 means "none") and payload."""
        length = HEADER + len(self.payload)
        if length > 65535:
            raise OSError(errno.EMSGSIZE, "UDP datagram too long")
        sport, dport = self.sport, self.dport
        c = checksum(self.payload, pseudo_sum(src, dst, IPPROTO_UDP, length)
                     + sport + dport + length) or 0xFFFF
        return b"".join((_HDR.pack(sport, dport, length, c), self.payload))


def parse(data, src: bytes, dst: bytes) -> Datagram:
    """A datagram, its length and checksum checked. Bytes past the UDP
    length are trimmed (as Linux does); a zero checksum (none) is accepted
    on IPv4 only."""
    n = len(data)
    if n < HEADER:
        raise Malformed("udp.short")
    sport, dport, length, csum = _unpack(data)
    if length < HEADER or length > n:
        raise Malformed("udp.bad_length")
    if length < n:
        data = data[:length]
    if csum == 0:
        if len(src) == 16:
            raise Malformed("udp.zero_checksum")
    elif checksum(data, pseudo_sum(src, dst, IPPROTO_UDP, length)) != 0:
        raise Malformed("udp.bad_checksum")
    return Datagram(sport, dport, bytes(data[HEADER:]))


# --- UDP-Lite (RFC 3828): UDP's header with the length field turned into
# the checksum coverage; the datagram's length is the IP payload's.
IPPROTO_UDPLITE = 136


@dataclasses.dataclass(slots=True)
class LiteDatagram:
    sport: int
    dport: int
    payload: bytes
    cscov: int = 0      # the coverage field: 0 (or the whole length) covers all

    @property
    def partial(self) -> bool:
        """Coverage short of the whole datagram (UDP_SKB_CB's partial_cov)."""
        return 0 < self.cscov < HEADER + len(self.payload)

    def encode(self, src: bytes, dst: bytes) -> bytes:
        """Header and payload; the checksum (mandatory: a computed 0 goes
        out as 0xFFFF) covers the pseudo-header with the whole length and
        the first cscov bytes."""
        length = HEADER + len(self.payload)
        if length > 65535:
            raise OSError(errno.EMSGSIZE, "UDP-Lite datagram too long")
        sport, dport, cov = self.sport, self.dport, self.cscov
        covered = self.payload if not self.partial else self.payload[:cov - HEADER]
        c = checksum(covered, pseudo_sum(src, dst, IPPROTO_UDPLITE, length)
                     + sport + dport + cov) or 0xFFFF
        return b"".join((_HDR.pack(sport, dport, cov, c), self.payload))


def parse_lite(data, src: bytes, dst: bytes) -> LiteDatagram:
    """A UDP-Lite datagram as Linux's udplite_checksum_init takes it: the
    checksum must be present, the coverage 0 or 8..length, and the covered
    bytes must sum right; nothing is trimmed (the length is the packet's)."""
    n = len(data)
    if n < HEADER:
        raise Malformed("udplite.short")
    sport, dport, cov, csum = _unpack(data)
    if csum == 0:
        raise Malformed("udplite.zero_checksum")
    if cov == 0:
        covered = data
    elif cov < HEADER or cov > n:
        raise Malformed("udplite.bad_coverage")
    else:
        covered = data[:cov]
    if checksum(covered, pseudo_sum(src, dst, IPPROTO_UDPLITE, n)) != 0:
        raise Malformed("udplite.bad_checksum")
    return LiteDatagram(sport, dport, bytes(data[HEADER:]), cov)
