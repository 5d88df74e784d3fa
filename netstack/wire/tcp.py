"""The TCP header (RFC 9293 3.1) and its options: MSS, window scale and
timestamps (RFC 7323), SACK-permitted and SACK blocks (RFC 2018).

A Segment is what TCP hands to Route.send: on loopback the object itself
reaches the peer (never encoded), so it holds everything, options parsed
into fields, and nobody changes it once sent. seq and ack are the 32-bit
wire values; window is the raw 16-bit field (the receiver scales it).
"""
from __future__ import annotations

import struct

from ..core import Malformed
from .checksum import checksum, ones_sum, pseudo_sum

FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 1, 2, 4, 8, 16, 32, 64, 128
HEADER = 20
PROTO = 6

OPT_EOL, OPT_NOP, OPT_MSS, OPT_WSCALE = 0, 1, 2, 3
OPT_SACK_PERM, OPT_SACK, OPT_TS = 4, 5, 8

_HDR = struct.Struct("!HHIIBBHHH")
_unpack = _HDR.unpack_from
_pack_into = _HDR.pack_into
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_TS = struct.Struct("!II")
_TS_OPT = struct.Struct("!BBBBII")      # NOP NOP kind len val ecr


class Segment:
    """One TCP segment. sack is a tuple of (start, end) 32-bit edges;
    ts is (val, ecr) or None; mss/wscale are None when absent."""
    __slots__ = ("sport", "dport", "seq", "ack", "flags", "window",
                 "payload", "ts", "sack", "urg", "mss", "wscale", "sack_ok")

    def __init__(self, sport: int, dport: int, seq: int, ack: int,
                 flags: int, window: int, payload=b"", ts=None, sack=(),
                 urg: int = 0, mss=None, wscale=None, sack_ok: bool = False):
        self.sport = sport
        self.dport = dport
        self.seq = seq
        self.ack = ack
        self.flags = flags
        self.window = window
        self.payload = payload
        self.ts = ts
        self.sack = sack
        self.urg = urg
        self.mss = mss
        self.wscale = wscale
        self.sack_ok = sack_ok

    def __repr__(self) -> str:
        names = "".join(c for c, b in zip("FSRPAUEC", (1, 2, 4, 8, 16, 32, 64, 128))
                        if self.flags & b)
        return (f"Segment({self.sport}->{self.dport} {names} seq={self.seq} "
                f"ack={self.ack} win={self.window} len={len(self.payload)})")

    def __eq__(self, other) -> bool:
        if not isinstance(other, Segment):
            return NotImplemented
        return all(getattr(self, k) == getattr(other, k) for k in self.__slots__)

    __hash__ = None

    def options(self) -> bytes:
        """The option bytes, padded to a multiple of 4, laid out as Linux
        does (MSS, SACK-permitted with timestamps, window scale last)."""
        out = bytearray()
        if self.mss is not None:
            out += bytes((OPT_MSS, 4)) + _U16.pack(self.mss)
        if self.ts is not None:
            if self.sack_ok:
                out += bytes((OPT_SACK_PERM, 2, OPT_TS, 10))
            else:
                out += bytes((OPT_NOP, OPT_NOP, OPT_TS, 10))
            out += _TS.pack(self.ts[0], self.ts[1])
        elif self.sack_ok:
            out += bytes((OPT_NOP, OPT_NOP, OPT_SACK_PERM, 2))
        if self.wscale is not None:
            out += bytes((OPT_NOP, OPT_WSCALE, 3, self.wscale))
        if self.sack:
            out += bytes((OPT_NOP, OPT_NOP, OPT_SACK, 2 + 8 * len(self.sack)))
            for a, b in self.sack:
                out += _TS.pack(a, b)
        if len(out) & 3:
            out += bytes(4 - (len(out) & 3))
        return bytes(out)

    def encode(self, src: bytes, dst: bytes) -> bytes:
        """The wire form with the checksum over the pseudo header."""
        if self.mss is None and self.wscale is None and not self.sack \
                and not self.sack_ok:
            if self.ts is None:
                opts = b""
            else:   # the common case: NOP NOP TS
                opts = _TS_OPT.pack(1, 1, OPT_TS, 10, self.ts[0], self.ts[1])
        else:
            opts = self.options()
        hl = HEADER + len(opts)
        if hl > 60:
            raise ValueError("TCP options longer than 40 bytes")
        h = bytearray(hl)
        _pack_into(h, 0, self.sport, self.dport, self.seq, self.ack,
                   hl << 2, self.flags, self.window, 0, self.urg)
        if opts:
            h[HEADER:] = opts
        payload = self.payload
        c = checksum(h, pseudo_sum(src, dst, PROTO, hl + len(payload))
                     + (ones_sum(payload) if payload else 0))
        h[16] = c >> 8
        h[17] = c & 0xFF
        return b"".join((h, payload)) if payload else bytes(h)


def parse_options(opts) -> tuple:
    """(mss, wscale, sack_ok, ts, sack) from the option bytes; Malformed
    "tcp.bad_options" for a truncated option or a wrong length."""
    mss = wscale = ts = None
    sack_ok = False
    sack = ()
    i, n = 0, len(opts)
    while i < n:
        kind = opts[i]
        if kind == OPT_EOL:
            break
        if kind == OPT_NOP:
            i += 1
            continue
        if i + 1 >= n:
            raise Malformed("tcp.bad_options")
        ln = opts[i + 1]
        if ln < 2 or i + ln > n:
            raise Malformed("tcp.bad_options")
        if kind == OPT_MSS:
            if ln != 4:
                raise Malformed("tcp.bad_options")
            mss = (opts[i + 2] << 8) | opts[i + 3]
        elif kind == OPT_WSCALE:
            if ln != 3:
                raise Malformed("tcp.bad_options")
            wscale = opts[i + 2]
        elif kind == OPT_SACK_PERM:
            if ln != 2:
                raise Malformed("tcp.bad_options")
            sack_ok = True
        elif kind == OPT_TS:
            if ln != 10:
                raise Malformed("tcp.bad_options")
            ts = _TS.unpack_from(opts, i + 2)
        elif kind == OPT_SACK:
            if ln < 10 or (ln - 2) % 8:
                raise Malformed("tcp.bad_options")
            sack = tuple(_TS.unpack_from(opts, j) for j in range(i + 2, i + ln, 8))
        i += ln
    return mss, wscale, sack_ok, ts, sack


def parse(data, src: bytes, dst: bytes) -> Segment:
    """The segment in data (the IP payload); raises Malformed."""
    n = len(data)
    if n < HEADER:
        raise Malformed("tcp.short")
    sport, dport, seq, ack, off, flags, window, _, urg = _unpack(data)
    hl = (off >> 4) << 2
    if hl < HEADER or hl > n:
        raise Malformed("tcp.bad_offset")
    if checksum(data, pseudo_sum(src, dst, PROTO, n)) != 0:
        raise Malformed("tcp.bad_checksum")
    if flags & SYN and flags & (FIN | RST):
        raise Malformed("tcp.bad_flags")
    seg = Segment(sport, dport, seq, ack, flags, window, bytes(data[hl:]),
                  None, (), urg)
    if hl > HEADER:
        opts = data[HEADER:hl]
        if hl == 32 and opts[0] == 1 and opts[1] == 1 and opts[2] == OPT_TS \
                and opts[3] == 10:
            seg.ts = _TS.unpack_from(opts, 4)
        else:
            seg.mss, seg.wscale, seg.sack_ok, seg.ts, seg.sack = parse_options(opts)
    return seg
