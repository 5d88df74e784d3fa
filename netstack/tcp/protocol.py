"""The TCP protocol handler a Stack registers: segment demux to
connections (by 4-tuple) and listeners (by port, best address match,
SO_REUSEPORT groups by flow hash), RST for segments nobody owns, ICMP
errors, the port table with Linux's bind-sharing rules, keyed ISNs
(RFC 6528) and the tunables Linux keeps in sysctls."""
from __future__ import annotations

import errno
import os
import struct

# hashlib.blake2s is this one; hashlib itself would load OpenSSL (4 ms) for hashes not used here
from _blake2 import blake2s

from ..core import AF_INET, AF_INET6, to_v6
from ..ports import PortTable, overlaps
from ..wire import tcp as wire
from ..wire.tcp import ACK, FIN, RST, SYN, Segment
from . import congestion
from .connection import CLOSED, LISTEN, MASK, SEC, TIME_WAIT
from .rto import RTO_MIN

_PORTS = struct.Struct("!HH")


class TCPProtocol:
    number = 6

    def __init__(self, stack, register: bool = True):
        self.stack = stack
        self.clock = stack.clock
        self.conns: dict[tuple, object] = {}        # (laddr, lport, raddr, rport)
        self.listeners: dict[int, list] = {}        # port -> listening endpoints
        self.ports = PortTable(self._may_share)
        self._secret = os.urandom(32)
        # Linux's defaults (net.ipv4.tcp_* and net.core.*)
        self.msl = 30 * SEC                  # TIME-WAIT lasts 2*MSL = 60 s
        self.fin_timeout = 60 * SEC          # tcp_fin_timeout (orphans in FIN-WAIT-2)
        self.syn_retries = 6
        self.synack_retries = 5
        self.retries2 = 15
        self.rto_min = RTO_MIN
        self.keepalive_time = 7200 * SEC
        self.keepalive_intvl = 75 * SEC
        self.keepalive_probes = 9
        self.rmem = (4096, 131072, 6291456)  # tcp_rmem
        self.wmem = (4096, 16384, 4194304)   # tcp_wmem
        self.rmem_max = 212992               # net.core.rmem_max (SO_RCVBUF cap)
        self.wmem_max = 212992
        self.somaxconn = 4096
        self.max_syn_backlog = 4096
        self.window_scaling = True
        self.congestion = congestion.DEFAULT
        if register:
            stack.register(self)

    # --- what the stack calls -------------------------------------------

    def parse(self, data, src: bytes, dst: bytes) -> Segment:
        return wire.parse(data, src, dst)

    def deliver(self, info, seg: Segment) -> None:
        conn = self.conns.get((info.dst, seg.dport, info.src, seg.sport))
        if conn is not None:
            conn.input(seg, info)
            return
        lst = self.find_listener(info.dst, seg.dport, info.src, seg.sport)
        if lst is not None:
            lst.listen_input(seg, info)
            return
        self.stack.stats["tcp.no_socket"] += 1
        self.send_reset_for(info, seg)

    def error(self, info, kind, errno_: int, quoted) -> None:
        """An ICMP error about a segment we sent: info.src/info.dst are that
        segment's source (us) and destination; quoted starts with its TCP
        header (ports, then seq)."""
        if len(quoted) < 8:
            return
        sport, dport = _PORTS.unpack_from(quoted)
        conn = self.conns.get((info.src, sport, info.dst, dport))
        if conn is not None:
            conn.icmp_error(kind, errno_, int.from_bytes(quoted[4:8], "big"))

    # --- connections and listeners ---------------------------------------

    def add_connection(self, conn) -> None:
        key = (conn.laddr, conn.lport, conn.raddr, conn.rport)
        old = self.conns.get(key)
        if old is not None and old is not conn:
            old._finish()        # a TIME-WAIT being reused
        self.conns[key] = conn
        conn.key = key

    def remove_connection(self, conn) -> None:
        key = conn.key
        if key is not None and self.conns.get(key) is conn:
            del self.conns[key]

    def add_listener(self, ep) -> None:
        lst = self.listeners.setdefault(ep.binding.port, [])
        if ep not in lst:
            lst.append(ep)

    def remove_listener(self, ep) -> None:
        b = ep.binding
        if b is None:
            return
        lst = self.listeners.get(b.port)
        if lst and ep in lst:
            lst.remove(ep)
            if not lst:
                del self.listeners[b.port]

    def find_listener(self, dst: bytes, port: int, src: bytes, sport: int):
        """The listener for a SYN to (dst, port): an exact address beats a
        wildcard, a socket of the packet's own family beats a dual-stack
        one, and a SO_REUSEPORT group is chosen from by flow hash."""
        lst = self.listeners.get(port)
        if not lst:
            return None
        d6 = to_v6(dst)
        fam = AF_INET if len(dst) == 4 else AF_INET6
        best, cands = -1, []
        for ep in lst:
            b = ep.binding
            if b.addr == d6:
                score = 4
            elif overlaps(b.addr, b.v6only, d6, False):
                score = 1
            else:
                continue
            if ep.family == fam:
                score += 1
            if score > best:
                best, cands = score, [ep]
            elif score == best:
                cands.append(ep)
        if not cands:
            return None
        if len(cands) == 1:
            return cands[0]
        h = blake2s(src + dst + _PORTS.pack(sport, port), digest_size=4,
                    key=self._secret[:16]).digest()
        return cands[int.from_bytes(h, "big") % len(cands)]

    def send_reset_for(self, info, seg: Segment) -> None:
        """RFC 9293 3.10.7.1: the RST answering a segment nobody (or no
        acceptable state) wants; never one for an RST."""
        flags = seg.flags
        if flags & RST:
            return
        if flags & ACK:
            rst = Segment(seg.dport, seg.sport, seg.ack, 0, RST, 0)
        else:
            n = len(seg.payload) + (1 if flags & SYN else 0) + (flags & FIN)
            rst = Segment(seg.dport, seg.sport, 0, (seg.seq + n) & MASK, RST | ACK, 0)
        try:
            route = self.stack.route(info.src, info.dst)
        except OSError:
            return
        self.stack.stats["tcp.rst_sent"] += 1
        route.send(6, rst)

    # --- ports -----------------------------------------------------------

    @staticmethod
    def _may_share(old, new) -> bool:
        """Linux's inet_bind_conflict for TCP: both SO_REUSEADDR and the
        holder not listening, or both SO_REUSEPORT of one user (or the holder in TIME-WAIT). An
        accepted connection takes its listener's port unconditionally."""
        if new.inherited:
            return True
        if new.reuse and old.reuse and old.state != LISTEN:
            return True
        return bool(new.reuseport and old.reuseport and (
            old.state == TIME_WAIT or getattr(old, "uid", 0) == getattr(new, "uid", 0)))

    def release_port(self, conn) -> None:
        b = conn.binding
        if b is not None:
            self.ports.release(b)
            conn.binding = None
            if not conn.bind_locked:
                conn.lport = 0
                if conn.state == CLOSED:
                    conn.laddr = None

    # --- numbers ---------------------------------------------------------

    def isn(self, laddr: bytes, lport: int, raddr: bytes, rport: int) -> int:
        """RFC 6528: a keyed hash of the 4-tuple plus a 4 us clock."""
        h = blake2s(laddr + raddr + _PORTS.pack(lport, rport),
                    key=self._secret[:16], digest_size=4).digest()
        return (int.from_bytes(h, "big") + self.clock.now_ns() // 4000) & MASK

    def ts_offset(self, laddr: bytes, raddr: bytes) -> int:
        """A per-pair random timestamp origin (Linux's secure_tcp_ts_off)."""
        h = blake2s(laddr + raddr, key=self._secret[16:], digest_size=4).digest()
        return int.from_bytes(h, "big")

    def wscale_for(self, rcvbuf: int) -> int:
        """Our window scale: enough for the largest buffer we may grow to."""
        space = max(rcvbuf, self.rmem[2])
        s = 0
        while s < 14 and (65535 << s) < space:
            s += 1
        return s

    def endpoint(self, family: int = AF_INET):
        from .endpoint import TCPEndpoint
        if family not in (AF_INET, AF_INET6):
            raise OSError(errno.EAFNOSUPPORT, "address family not supported")
        return TCPEndpoint(self, family)

    # --- introspection (tests, /proc/net/tcp) ----------------------------

    def connections(self, state: int | None = None) -> list:
        return [c for c in self.conns.values() if state is None or c.state == state]

    def count(self, state: int) -> int:
        return sum(1 for c in self.conns.values() if c.state == state)


def endpoint(stack, family: int = AF_INET):
    """A new TCP endpoint on stack (registering TCP there on first use)."""
    proto = stack.handlers.get(6)
    if proto is None:
        proto = TCPProtocol(stack)
    return proto.endpoint(family)

