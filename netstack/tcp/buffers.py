"""The byte queues of a connection. Data is kept as the immutable chunks
the application wrote (or the payloads that arrived), so a segment's
payload is usually a chunk or a memoryview slice of one: no copy per
segment, and a chunk a sent segment refers to can never change under it.
"""
from __future__ import annotations

from bisect import bisect_right

_SMALL = 8192   # small writes are merged into the previous chunk up to this


class SendQueue:
    """Bytes from sequence number `base` (the oldest unacknowledged byte)
    to `end`, addressed by absolute (unwrapped) sequence numbers."""
    __slots__ = ("starts", "chunks", "head", "base", "end")

    def __init__(self, seq: int = 0):
        self.starts: list[int] = []
        self.chunks: list = []
        self.head = 0          # index of the chunk holding base
        self.base = seq
        self.end = seq

    def reset(self, seq: int) -> None:
        self.starts.clear()
        self.chunks.clear()
        self.head = 0
        self.base = self.end = seq

    def __len__(self) -> int:
        return self.end - self.base

    def append(self, data: bytes) -> None:
        n = len(data)
        if not n:
            return
        chunks = self.chunks
        if n < _SMALL and len(chunks) > self.head:
            last = chunks[-1]
            if len(last) + n <= _SMALL:
                chunks[-1] = last + data
                self.end += n
                return
        self.starts.append(self.end)
        chunks.append(data)
        self.end += n

    def ack(self, seq: int) -> None:
        """Forget the bytes before seq."""
        if seq <= self.base:
            return
        if seq >= self.end:
            self.starts.clear()
            self.chunks.clear()
            self.head = 0
            self.base = self.end
            return
        starts = self.starts
        h = self.head
        n = len(starts)
        while h + 1 < n and starts[h + 1] <= seq:
            self.chunks[h] = None
            h += 1
        self.base = seq
        if h > 64 and h * 2 > n:
            del starts[:h]
            del self.chunks[:h]
            h = 0
        self.head = h

    def peek(self, seq: int, n: int):
        """n bytes from seq (seq >= base, seq + n <= end): a chunk itself,
        a memoryview into one, or a joined copy across chunks."""
        starts = self.starts
        i = bisect_right(starts, seq, self.head) - 1
        chunk = self.chunks[i]
        off = seq - starts[i]
        clen = len(chunk)
        if off + n <= clen:
            if off == 0 and n == clen:
                return chunk
            return memoryview(chunk)[off:off + n]
        parts = [memoryview(chunk)[off:]]
        left = n - (clen - off)
        chunks = self.chunks
        while left > 0:
            i += 1
            chunk = chunks[i]
            if len(chunk) <= left:
                parts.append(chunk)
                left -= len(chunk)
            else:
                parts.append(memoryview(chunk)[:left])
                left = 0
        return b"".join(parts)


class RecvQueue:
    """In-order received bytes waiting for the application."""
    __slots__ = ("chunks", "off", "size")

    def __init__(self):
        from collections import deque
        self.chunks = deque()
        self.off = 0           # bytes of chunks[0] already read
        self.size = 0

    def append(self, data) -> None:
        self.chunks.append(data)
        self.size += len(data)

    def clear(self) -> None:
        self.chunks.clear()
        self.off = 0
        self.size = 0

    def read(self, n: int, peek: bool = False) -> bytes:
        """Up to n bytes from the front (consumed unless peek)."""
        chunks = self.chunks
        if not chunks or n <= 0:
            return b""
        first = chunks[0]
        off = self.off
        flen = len(first) - off
        if n <= flen:
            if off == 0 and n == flen:
                out = first if type(first) is bytes else bytes(first)
            else:
                out = bytes(memoryview(first)[off:off + n])
            if not peek:
                if n == flen:
                    chunks.popleft()
                    self.off = 0
                else:
                    self.off = off + n
                self.size -= n
            return out
        parts = []
        left = n
        full = 0               # chunks wholly read
        new_off = 0
        for c in chunks:
            avail = len(c) - off
            if avail <= left:
                parts.append(memoryview(c)[off:] if off else c)
                left -= avail
                full += 1
                off = 0
                if not left:
                    break
            else:
                parts.append(memoryview(c)[off:off + left])
                new_off = off + left
                left = 0
                break
        out = b"".join(parts)
        if not peek:
            self.size -= len(out)
            for _ in range(full):
                chunks.popleft()
            self.off = new_off
        return out

    def discard(self, n: int) -> int:
        """Drop up to n bytes unread (MSG_TRUNC); the count dropped."""
        return len(self.read(n))


class Reassembly:
    """Out-of-order segments: disjoint [start, end) ranges with their data,
    kept sorted. `last` is the range the newest segment landed in (the
    first SACK block, RFC 2018 4)."""
    __slots__ = ("ranges", "size", "last")

    def __init__(self):
        self.ranges: list = []     # [start, end, [chunks]]
        self.size = 0
        self.last = None

    def __bool__(self) -> bool:
        return bool(self.ranges)

    def clear(self) -> None:
        self.ranges.clear()
        self.size = 0
        self.last = None

    def add(self, seq: int, data) -> None:
        """Keep data at seq (above rcv_nxt), trimming what is held."""
        end = seq + len(data)
        ranges = self.ranges
        i = 0
        n = len(ranges)
        while i < n and ranges[i][1] < seq:
            i += 1
        # ranges[i:] end at or after seq; merge every one that touches
        new_start, new_end = seq, end
        pieces = [(seq, data)]
        j = i
        while j < n and ranges[j][0] <= end:
            r = ranges[j]
            if r[0] < new_start:
                new_start = r[0]
            if r[1] > new_end:
                new_end = r[1]
            j += 1
        if j == i + 1 and ranges[i][0] <= seq and ranges[i][1] >= end:
            self.last = ranges[i]
            return           # wholly a duplicate
        if j > i:
            # rebuild the merged range: old pieces win where they overlap
            merged = []
            pos = new_start
            old = []
            for r in ranges[i:j]:
                s = r[0]
                for c in r[2]:
                    old.append((s, c))
                    s += len(c)
            allp = sorted(old + pieces, key=lambda p: p[0])
            for s, c in allp:
                e = s + len(c)
                if e <= pos:
                    continue
                if s < pos:
                    c = memoryview(c)[pos - s:]
                    s = pos
                merged.append(c)
                pos = e
            held = sum(r[1] - r[0] for r in ranges[i:j])
            rng = [new_start, new_end, merged]
            ranges[i:j] = [rng]
            self.size += (new_end - new_start) - held
        else:
            rng = [seq, end, [data]]
            ranges.insert(i, rng)
            self.size += end - seq
        self.last = rng

    def pop_ready(self, rcv_nxt: int):
        """The chunks that now follow rcv_nxt in order, and the new
        rcv_nxt; ranges wholly below rcv_nxt are dropped."""
        out = []
        ranges = self.ranges
        while ranges and ranges[0][0] <= rcv_nxt:
            s, e, chunks = ranges.pop(0)
            self.size -= e - s
            if self.last is not None and self.last[0] == s:
                self.last = None
            if e <= rcv_nxt:
                continue
            pos = s
            for c in chunks:
                ce = pos + len(c)
                if ce > rcv_nxt:
                    out.append(c if pos >= rcv_nxt else memoryview(c)[rcv_nxt - pos:])
                pos = ce
            rcv_nxt = e
        return out, rcv_nxt

    def blocks(self, limit: int) -> list:
        """Up to limit (start, end) ranges, the newest first."""
        out = []
        last = self.last
        if last is not None and any(r is last for r in self.ranges):
            out.append((last[0], last[1]))
        for r in reversed(self.ranges):
            if len(out) >= limit:
                break
            if r is not last:
                out.append((r[0], r[1]))
        return out[:limit]
