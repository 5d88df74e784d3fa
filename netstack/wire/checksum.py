"""The internet checksum (RFC 1071) and the pseudo-header partial sums of
TCP, UDP and ICMPv6.

The ones'-complement sum of 16-bit big-endian words equals the buffer read
as one big integer modulo 0xFFFF (because 0x10000 == 1 mod 0xFFFF), so the
whole buffer is summed by one int.from_bytes and one modulo instead of a
Python loop per word. The one place the two differ: a nonzero sum that is a
multiple of 0xFFFF is 0xFFFF (ones'-complement "negative zero") in the
end-around-carry sum, 0 in the modulo; the fold below restores that.
"""
from __future__ import annotations

_from_bytes = int.from_bytes


def ones_sum(data, initial: int = 0) -> int:
    """The folded 16-bit ones'-complement sum of data (an odd final byte
    padded with a zero byte) plus the partial sum initial."""
    n = _from_bytes(data, "big")
    if len(data) & 1:
        n <<= 8
    n += initial
    r = n % 0xFFFF
    return 0xFFFF if r == 0 and n else r


def checksum(data, initial: int = 0) -> int:
    """The internet checksum of data with the partial sum initial folded in:
    what goes in the checksum field; a packet that carries a correct one
    checks to 0."""
    n = _from_bytes(data, "big")
    if len(data) & 1:
        n <<= 8
    n += initial
    r = n % 0xFFFF
    if r == 0 and n:
        return 0
    return 0xFFFF - r


def pseudo_sum(src: bytes, dst: bytes, proto: int, length: int) -> int:
    """The partial sum of the pseudo-header: IPv4's (RFC 793/768: addresses,
    zero, protocol, 16-bit length) when src is 4 bytes, IPv6's (RFC 8200
    8.1: addresses, 32-bit length, zeros, next header) when 16. Both come to
    the same words-sum: addresses + protocol + length (a 32-bit length's
    halves add the same modulo 0xFFFF as the whole). The result is small
    (under 2**33), so callers may add to it freely."""
    n = _from_bytes(src + dst, "big")
    r = n % 0xFFFF
    # addresses summing to a multiple of 0xFFFF are "negative zero", as in ones_sum
    return (0xFFFF if r == 0 and n else r) + proto + length
