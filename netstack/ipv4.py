"""IPv4's network-layer pieces beyond the header codec: fragmenting a packet
for a link's MTU (RFC 791 3.2) and reassembling received fragments (RFC 791,
RFC 815) within bounded memory. The Reassembler serves IPv6 too (netstack.ipv6
re-exports it): the families differ only in where a header keeps its
fragment fields."""
from __future__ import annotations

import bisect
import collections
import dataclasses
import errno

from .core import Malformed
from .wire import ipv4 as wire4
from .wire import ipv6 as wire6
from .wire.ipv4 import IPv4Header
from .wire.ipv6 import IPv6Header

MIN_MTU = 68


def copied_options(options: bytes) -> bytes:
    """The options every fragment after the first repeats: those whose type
    has the copied bit (RFC 791: e.g. security, source routes; not record
    route or timestamps)."""
    out = []
    i, n = 0, len(options)
    while i < n:
        t = options[i]
        if t == wire4.OPT_EOL:
            break
        if t == wire4.OPT_NOP:
            i += 1
            continue
        if i + 1 >= n or options[i + 1] < 2:
            break       # parse has checked received options; ours are sane
        ln = options[i + 1]
        if t & wire4.OPT_COPIED:
            out.append(options[i:i + ln])
        i += ln
    return b"".join(out)


def fragment(hdr: IPv4Header, payload, mtu: int) -> list[bytes]:
    """hdr+payload as whole IPv4 packets no larger than mtu: itself when it
    fits, else fragments whose data is a multiple of 8 bytes (the last
    excepted), the first with all options, the others with the copied ones.
    OSError(EMSGSIZE) when it does not fit and DF is set, when the packet
    is larger than 65535 bytes or the MTU too small to carry 8 data bytes."""
    hl = hdr.header_length
    n = len(payload)
    if hl + n <= mtu:
        return [wire4.build(hdr, payload)]
    if hdr.df:
        raise OSError(errno.EMSGSIZE, "packet larger than the MTU with DF set")
    if hl + n > wire4.MAX_PACKET:
        raise OSError(errno.EMSGSIZE, "IPv4 packet too long")
    h = dataclasses.replace(hdr)
    first = (mtu - hl) & ~7
    h_rest = dataclasses.replace(hdr, options=copied_options(hdr.options))
    rest = (mtu - h_rest.header_length) & ~7
    if first < 8 or rest < 8:
        raise OSError(errno.EMSGSIZE, "MTU too small to fragment")
    base, last_mf = hdr.frag_offset, hdr.mf
    mv = memoryview(payload)
    out = []
    off, size = 0, first
    while off < n:
        end = min(off + size, n)
        h.frag_offset = base + off
        h.mf = end < n or last_mf
        out.append(wire4.build(h, mv[off:end]))
        off, size, h = end, rest, h_rest
    return out


def packet_of(hdr, payload) -> bytes:
    """A received fragment's packet rebuilt (for quoting in an ICMP error)."""
    if isinstance(hdr, IPv6Header):
        if hdr.frag is None:
            return wire6.build(hdr, payload)
        offset, more, ident = hdr.frag
        return wire6.build_fragment(hdr, payload, offset, more, ident)
    return wire4.build(hdr, payload)


class _Datagram:
    """One datagram being reassembled: fragments sorted by offset, never
    overlapping."""
    __slots__ = ("starts", "frags", "have", "total", "max_end", "born",
                 "size", "hdr", "first")

    def __init__(self, now: int):
        self.starts: list[int] = []     # fragment offsets (for bisect)
        self.frags: list[tuple] = []    # (offset, end, data)
        self.have = 0                   # data bytes held
        self.total = -1                 # datagram length once the last came
        self.max_end = 0
        self.born = now
        self.size = 0                   # memory charged
        self.hdr = None                 # the offset-0 fragment's header
        self.first = b""                # and its data


class Reassembler:
    """Fragments in, whole datagrams out, for IPv4 (keyed by source,
    destination, protocol and identification) or IPv6 (source, destination,
    identification of the fragment header).

    A fragment that overlaps held data is an attack or a broken sender: the
    whole datagram is discarded (RFC 5722 for IPv6, and what Linux does for
    both); one whose data is already held entirely is a duplicate and only
    itself is dropped. Memory is bounded by limit_bytes (the oldest datagram
    is evicted), each datagram by max_fragments_per_packet, and time by
    timeout_ns: expire() returns the first fragments of timed-out datagrams
    so the stack can send ICMP time exceeded (fragment reassembly)."""

    OVERHEAD = 128      # memory charged per fragment beyond its data
    PENDING_MAX = 64    # timed-out first fragments kept for expire()

    def __init__(self, clock_now=None, limit_bytes: int = 4 << 20,
                 timeout_ns: int = 30_000_000_000,
                 max_fragments_per_packet: int = 64, stats=None):
        self.clock_now = clock_now
        self.limit_bytes = limit_bytes
        self.timeout_ns = timeout_ns
        self.max_fragments = max_fragments_per_packet
        self.stats = stats if stats is not None else collections.Counter()
        self.used = 0
        self._datagrams: dict[tuple, _Datagram] = {}   # oldest first
        self._timed_out: list[tuple] = []

    def __len__(self) -> int:
        return len(self._datagrams)

    def add(self, hdr, payload, now_ns: int | None = None):
        """Take one fragment (hdr from wire.ipv4.parse with mf or
        frag_offset set, or wire.ipv6.parse with hdr.frag set). Returns
        (hdr, payload) of the whole datagram when this one completed it
        (hdr of the first fragment with its fragment fields cleared; for
        IPv6 the extension headers after the fragment header walked), else
        None."""
        if now_ns is None:
            now_ns = self.clock_now()
        if type(hdr) is IPv6Header:
            prefix = "ipv6."
            offset, more, ident = hdr.frag
            key = (hdr.src, hdr.dst, ident)
            limit = wire6.MAX_PAYLOAD
        else:
            prefix = "ipv4."
            offset, more = hdr.frag_offset, hdr.mf
            key = (hdr.src, hdr.dst, hdr.proto, hdr.ident)
            limit = wire4.MAX_PACKET - hdr.header_length
        stats = self.stats
        if self._datagrams:
            self._expire(now_ns)
        n = len(payload)
        if more and n & 7:
            if prefix == "ipv6.":   # RFC 8200 4.5: a parameter problem
                stats["ipv6.frag_unaligned"] += 1
                return None
            n &= ~7                 # Linux trims an IPv4 one
            payload = payload[:n]
        end = offset + n
        d = self._datagrams.get(key)
        if end > limit:
            stats[prefix + "frag_too_big"] += 1
            self._discard(key, d)
            return None
        if d is None:
            if n == 0:
                stats[prefix + "frag_empty"] += 1
                return None
            d = self._datagrams[key] = _Datagram(now_ns)
        if not more:
            if end < d.max_end or (d.total >= 0 and end != d.total):
                stats[prefix + "frag_bad_length"] += 1
                self._discard(key, d)
                return None
            d.total = end
        elif d.total >= 0 and end > d.total:
            stats[prefix + "frag_bad_length"] += 1
            self._discard(key, d)
            return None
        if n == 0:
            stats[prefix + "frag_empty"] += 1
            self._discard(key, d)
            return None

        starts, frags = d.starts, d.frags
        i = bisect.bisect_right(starts, offset)
        j = i - 1 if i and frags[i - 1][1] > offset else i
        if j < len(frags) and frags[j][0] < end:
            # Touches held data: a duplicate if held data covers all of it.
            pos = offset
            while j < len(frags) and frags[j][0] <= pos < end:
                pos = frags[j][1]
                j += 1
            if pos >= end:
                stats[prefix + "frag_duplicate"] += 1
                return None
            stats[prefix + "frag_overlap"] += 1
            self._discard(key, d)
            return None
        if len(frags) >= self.max_fragments:
            stats[prefix + "frag_too_many"] += 1
            self._discard(key, d)
            return None

        starts.insert(i, offset)
        frags.insert(i, (offset, end, payload))
        d.have += n
        if end > d.max_end:
            d.max_end = end
        if offset == 0:
            d.hdr, d.first = hdr, payload
        charge = n + self.OVERHEAD
        d.size += charge
        self.used += charge
        if d.have == d.total:
            return self._complete(key, d, prefix)
        if self.used > self.limit_bytes:
            self._evict(prefix)
        return None

    def _complete(self, key, d: _Datagram, prefix: str):
        del self._datagrams[key]
        self.used -= d.size
        data = b"".join([f[2] for f in d.frags])
        hdr = d.hdr
        if prefix == "ipv6.":
            try:
                nh, data = wire6.walk(hdr.next_header, data)
            except Malformed as e:
                self.stats[str(e)] += 1
                return None
            hdr = dataclasses.replace(hdr, next_header=nh, frag=None,
                                      payload_length=len(data))
        else:
            hdr = dataclasses.replace(hdr, mf=False, frag_offset=0,
                                      total_length=hdr.header_length + len(data))
        self.stats[prefix + "frag_reassembled"] += 1
        return hdr, data

    def _discard(self, key, d) -> None:
        if d is not None:
            del self._datagrams[key]
            self.used -= d.size

    def _evict(self, prefix: str) -> None:
        dgs = self._datagrams
        while self.used > self.limit_bytes and dgs:
            key = next(iter(dgs))
            self.used -= dgs.pop(key).size
            self.stats[prefix + "frag_evicted"] += 1

    def _expire(self, now_ns: int) -> None:
        dgs = self._datagrams
        cutoff = now_ns - self.timeout_ns
        while dgs:
            key = next(iter(dgs))
            d = dgs[key]
            if d.born > cutoff:
                break
            del dgs[key]
            self.used -= d.size
            hdr = d.hdr
            self.stats[("ipv6." if len(key) == 3 else "ipv4.")
                       + "frag_timeout"] += 1
            if hdr is not None and len(self._timed_out) < self.PENDING_MAX:
                self._timed_out.append((hdr, d.first))

    def expire(self, now_ns: int | None = None) -> list[tuple]:
        """Drop datagrams older than the timeout. Returns (hdr, data) of the
        first fragment of each dropped since the last call that had one
        (packet_of rebuilds its packet for an ICMP time exceeded quote)."""
        if now_ns is None:
            now_ns = self.clock_now()
        self._expire(now_ns)
        out, self._timed_out = self._timed_out, []
        return out

    def next_deadline(self) -> int | None:
        """When the oldest datagram times out (for the stack's timer)."""
        for d in self._datagrams.values():
            return d.born + self.timeout_ns
        return None
