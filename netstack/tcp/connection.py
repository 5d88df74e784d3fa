"""The TCP connection: RFC 9293's state machine and event processing
(3.10), with RFC 5961's defences, RFC 7323 window scaling, timestamps and
PAWS, SACK (RFC 2018), RFC 6298 retransmission timing with Karn's rule,
NewReno fast recovery (RFC 6582), delayed ACKs, Nagle (Minshall's variant,
as Linux), zero-window probes and keepalive.

Sequence numbers are kept unwrapped (Python ints that only grow): a
received seq is unwrapped against rcv_nxt, an ack against snd_una, and
only the wire sees them modulo 2**32, so every comparison below is a
plain integer comparison.

TCPEndpoint (endpoint.py) is a Connection with the socket calls on top;
the socket-facing state (buffers' sizes, options, pending error, shutdown
bits) lives here because the state machine reads it.
"""
from __future__ import annotations

import errno

from ..core import Timer, WaitQueue
from ..wire.tcp import ACK, FIN, PSH, RST, SYN, URG, Segment
from .buffers import Reassembly, RecvQueue, SendQueue
from .congestion import ALGORITHMS, INFINITE, INIT_CWND
from .rto import RTO, model_timeout

# Linux's state numbers (include/net/tcp_states.h), which TCP_INFO reports.
ESTABLISHED, SYN_SENT, SYN_RECV, FIN_WAIT1, FIN_WAIT2 = 1, 2, 3, 4, 5
TIME_WAIT, CLOSED, CLOSE_WAIT, LAST_ACK, LISTEN, CLOSING = 6, 7, 8, 9, 10, 11
STATE_NAMES = {ESTABLISHED: "ESTABLISHED", SYN_SENT: "SYN-SENT",
               SYN_RECV: "SYN-RECEIVED", FIN_WAIT1: "FIN-WAIT-1",
               FIN_WAIT2: "FIN-WAIT-2", TIME_WAIT: "TIME-WAIT",
               CLOSED: "CLOSED", CLOSE_WAIT: "CLOSE-WAIT",
               LAST_ACK: "LAST-ACK", LISTEN: "LISTEN", CLOSING: "CLOSING"}

MASK = 0xFFFFFFFF
HALF = 0x80000000
MS = 1_000_000
SEC = 1_000_000_000
DELACK = 40 * MS                # Linux's TCP_DELACK_MIN
PAWS_IDLE = 24 * 86400 * SEC    # RFC 7323 5.5: ts_recent goes stale
MAX_QUICKACKS = 16
TS_LEN = 12                     # NOP NOP TS(10)
LOOPBACK_GOAL = 256 * 1024      # largest segment sent over loopback

# where data may be queued by the application / where it still flows out
_SEND_STATES = frozenset((ESTABLISHED, CLOSE_WAIT))
_OUTPUT_STATES = frozenset((ESTABLISHED, CLOSE_WAIT, FIN_WAIT1, CLOSING, LAST_ACK))
_RECV_DATA_STATES = frozenset((ESTABLISHED, FIN_WAIT1, FIN_WAIT2))
_KEEPALIVE_STATES = frozenset((ESTABLISHED, CLOSE_WAIT, FIN_WAIT2))
_NEED_RESET = frozenset((ESTABLISHED, CLOSE_WAIT, FIN_WAIT1, FIN_WAIT2, SYN_RECV))


def _ts_before(a: int, b: int) -> bool:
    """Timestamp a is older than b (modulo 2**32)."""
    return ((a - b) & MASK) >= HALF


class Connection:
    __slots__ = (
        "proto", "stack", "clock", "family", "state", "route", "laddr", "lport",
        "raddr", "rport", "key", "wq",
        # send side
        "iss", "snd_una", "snd_nxt", "snd_max", "snd_wnd", "snd_wl1", "snd_wl2",
        "max_snd_wnd", "sndq", "fin_queued", "snd_sml", "snd_up",
        # receive side
        "irs", "rcv_nxt", "rcv_adv", "rcv_wup", "rcvq", "ooo", "fin_seq",
        "ack_pending", "quick_acks", "rcv_mss",
        # negotiated options
        "mss", "size_goal", "adv_mss", "peer_mss", "user_mss", "snd_wscale", "rcv_wscale",
        "ts_ok", "ts_recent", "ts_recent_stamp", "ts_offset", "sack_ok",
        "sacked", "peer_ws", "soft_err",
        # timers and timing
        "t_rtx", "t_dack", "t_keep", "t_wait", "rto", "rtt_seq", "rtt_start",
        "retransmits", "retrans_stamp", "persist", "probes", "keep_probes",
        "last_rcv", "last_data_rcv", "last_data_snd", "last_ack_rcv",
        # congestion
        "cc", "cwnd", "ssthresh", "dupacks", "in_recovery", "recover",
        "rexmit_hi",
        # socket-level settings and status
        "sndbuf", "rcvbuf", "snd_locked", "rcv_locked", "nodelay", "cork",
        "keepalive", "keep_idle", "keep_intvl", "keep_cnt", "user_timeout",
        "linger", "ttl", "tos", "reuse", "reuseport", "v6only", "defer_accept",
        "err", "shut_rd", "shut_wr", "done", "orphan", "passive", "parent",
        "binding", "bind_locked", "inherited",
        # counters (TCP_INFO)
        "segs_in", "segs_out", "data_segs_in", "data_segs_out", "bytes_acked",
        "bytes_received", "bytes_sent", "bytes_retrans", "total_retrans",
        "__weakref__",
    )

    def __init__(self, proto, family: int):
        self.proto = proto
        stack = self.stack = proto.stack
        clock = self.clock = stack.clock
        self.family = family
        self.state = CLOSED
        self.route = None
        self.laddr = self.raddr = None
        self.lport = self.rport = 0
        self.key = None
        self.wq = WaitQueue()
        self.iss = self.snd_una = self.snd_nxt = self.snd_max = 0
        self.snd_wnd = self.snd_wl1 = self.snd_wl2 = self.max_snd_wnd = 0
        self.sndq = SendQueue()
        self.fin_queued = False
        self.snd_sml = 0
        self.snd_up = 0
        self.irs = self.rcv_nxt = self.rcv_adv = self.rcv_wup = 0
        self.rcvq = RecvQueue()
        self.ooo = Reassembly()
        self.fin_seq = None
        self.ack_pending = False
        self.quick_acks = 0
        self.rcv_mss = 536
        self.mss = 536
        self.size_goal = 536
        self.adv_mss = 536
        self.peer_mss = 536
        self.user_mss = 0
        self.snd_wscale = self.rcv_wscale = 0
        self.ts_ok = self.sack_ok = False
        self.ts_recent = self.ts_recent_stamp = self.ts_offset = 0
        self.sacked = []
        self.peer_ws = False
        self.soft_err = 0
        self.t_rtx = Timer(clock, self._on_rtx)
        self.t_dack = Timer(clock, self._on_delack)
        self.t_keep = Timer(clock, self._on_keepalive)
        self.t_wait = Timer(clock, self._on_wait)
        self.rto = RTO(proto.rto_min)
        self.rtt_seq = None
        self.rtt_start = 0
        self.retransmits = self.retrans_stamp = 0
        self.persist = False
        self.probes = self.keep_probes = 0
        self.last_rcv = self.last_data_rcv = self.last_data_snd = self.last_ack_rcv = 0
        self.cc = ALGORITHMS[proto.congestion](self)
        self.cwnd = INIT_CWND * 536
        self.ssthresh = INFINITE
        self.dupacks = 0
        self.in_recovery = False
        self.recover = 0
        self.rexmit_hi = 0
        self.sndbuf = proto.wmem[1]
        self.rcvbuf = proto.rmem[1]
        self.snd_locked = self.rcv_locked = False
        self.nodelay = self.cork = False
        self.keepalive = False
        self.keep_idle = proto.keepalive_time
        self.keep_intvl = proto.keepalive_intvl
        self.keep_cnt = proto.keepalive_probes
        self.user_timeout = 0
        self.linger = None
        self.ttl = None
        self.tos = 0
        self.reuse = self.reuseport = self.v6only = False
        self.defer_accept = 0
        self.err = 0
        self.shut_rd = self.shut_wr = self.done = False
        self.orphan = False
        self.passive = False
        self.parent = None
        self.binding = None
        self.bind_locked = False
        self.inherited = False
        self.segs_in = self.segs_out = self.data_segs_in = self.data_segs_out = 0
        self.bytes_acked = self.bytes_received = self.bytes_sent = 0
        self.bytes_retrans = self.total_retrans = 0

    def __repr__(self) -> str:
        return (f"<TCP {STATE_NAMES.get(self.state)} {self.laddr and self.laddr.hex()}:"
                f"{self.lport} -> {self.raddr and self.raddr.hex()}:{self.rport}>")

    # --- helpers ------------------------------------------------------------

    def _wake(self) -> None:
        if self.wq:
            self.wq.notify()

    def _error(self, code: int) -> None:
        self.err = code
        self._wake()

    def _tsval(self, now: int) -> int:
        return (now // MS + self.ts_offset) & MASK

    def _mss_for_route(self) -> int:
        route = self.route
        if len(route.local) == 4:
            mss = min(route.mtu, 65535) - 40      # IPv4 packets stop at 65535
        else:
            mss = route.mtu - 60
        if self.user_mss and self.user_mss < mss:
            mss = self.user_mss
        return max(mss, 88 if len(route.local) == 4 else 1220)

    def _set_mss(self) -> None:
        """The sending MSS: the peer's, bounded by our path, less the
        timestamp option when in use."""
        mss = min(self.peer_mss, self._mss_for_route())
        if self.ts_ok:
            mss -= TS_LEN
        self.mss = mss = max(mss, 64)
        # Loopback hands segments across whole, like a GSO device that
        # never segments: one segment per large write, not MSS-sized ones.
        self.size_goal = max(mss, LOOPBACK_GOAL) if self.route.loopback else mss

    def _select_window(self) -> int:
        """The window to advertise from rcv_nxt (bytes, a multiple of the
        scale unit): the free buffer, but the right edge only moves on by
        at least min(MSS, buffer/2) (receiver SWS avoidance, RFC 1122
        4.2.3.3) and never back."""
        nxt = self.rcv_nxt
        cur = self.rcv_adv - nxt
        if cur < 0:
            cur = 0
        free = self.rcvbuf - self.rcvq.size - self.ooo.size
        if free > cur:
            thresh = self.rcvbuf >> 1
            if self.adv_mss < thresh:
                thresh = self.adv_mss
            win = free if free - cur >= thresh else cur
        else:
            win = cur
        ws = self.rcv_wscale
        if win > 65535 << ws:
            win = 65535 << ws
        win = (win >> ws) << ws
        if nxt + win > self.rcv_adv:
            self.rcv_adv = nxt + win
        return win

    def _send(self, seg: Segment) -> None:
        route = self.route
        if route.generation != self.stack.generation:
            try:
                route = self.route = self.stack.route(self.raddr, self.laddr)
            except OSError:
                return
        self.segs_out += 1
        route.send(6, seg, self.ttl, self.tos)

    def _make(self, seq: int, flags: int, payload=b"", now: int = 0) -> Segment:
        """A segment from us at seq carrying our ACK and window."""
        win = self._select_window()
        self.rcv_wup = self.rcv_nxt
        if self.ack_pending:
            self.ack_pending = False
            self.t_dack.disarm()
        seg = Segment(self.lport, self.rport, seq & MASK, self.rcv_nxt & MASK,
                      flags, win >> self.rcv_wscale, payload)
        if self.ts_ok:
            seg.ts = ((now or self.clock.now_ns()) // MS + self.ts_offset & MASK,
                      self.ts_recent)
        if self.sack_ok and self.ooo:
            seg.sack = tuple((a & MASK, b & MASK) for a, b in
                             self.ooo.blocks(3 if self.ts_ok else 4))
        return seg

    def send_ack(self) -> None:
        """A pure ACK now (also the answer to an unacceptable segment)."""
        if self.state in (CLOSED, LISTEN, SYN_SENT):
            return
        self._send(self._make(self.snd_nxt, ACK))

    def _send_rst(self) -> None:
        """An RST for our side of the connection (abort, linger 0)."""
        seg = Segment(self.lport, self.rport, self.snd_max & MASK,
                      self.rcv_nxt & MASK, RST | ACK, 0)
        self._send(seg)

    def _send_syn(self, now: int) -> None:
        seg = Segment(self.lport, self.rport, self.iss & MASK, 0, SYN,
                      min(self.rcvbuf, 65535))
        seg.mss = self._mss_for_route()
        seg.wscale = self.rcv_wscale
        seg.sack_ok = True
        seg.ts = (self._tsval(now), 0)
        self._send(seg)

    def _send_synack(self, now: int) -> None:
        seg = Segment(self.lport, self.rport, self.iss & MASK, self.rcv_nxt & MASK,
                      SYN | ACK, min(self.rcvbuf, 65535))
        seg.mss = self._mss_for_route()
        if self.peer_ws:
            seg.wscale = self.rcv_wscale
        seg.sack_ok = self.sack_ok
        if self.ts_ok:
            seg.ts = (self._tsval(now), self.ts_recent)
        self.rcv_adv = self.rcv_nxt + seg.window
        self.rcv_wup = self.rcv_nxt
        self._send(seg)

    def _take_syn_options(self, seg: Segment) -> None:
        """Negotiate from the peer's SYN (or SYN-ACK): MSS, window scale,
        SACK-permitted and timestamps are in use only if both sent them."""
        v4 = len(self.route.local) == 4
        self.peer_mss = seg.mss if seg.mss else (536 if v4 else 1220)
        self.peer_ws = seg.wscale is not None and self.proto.window_scaling
        if self.peer_ws:
            self.snd_wscale = min(seg.wscale, 14)
            if self.passive:
                self.rcv_wscale = self.proto.wscale_for(self.rcvbuf)
        else:
            self.snd_wscale = self.rcv_wscale = 0
        self.sack_ok = bool(seg.sack_ok)
        if seg.ts is not None:
            self.ts_ok = True
            self.ts_recent = seg.ts[0]
            self.ts_recent_stamp = self.clock.now_ns()
        else:
            self.ts_ok = False
        self._set_mss()
        self.adv_mss = self._mss_for_route() - (TS_LEN if self.ts_ok else 0)
        self.rcv_mss = min(self.mss, 536)

    # --- opening ------------------------------------------------------------

    def open_active(self, now: int) -> None:
        """connect: choose an ISS and send the SYN (SYN-SENT)."""
        self.iss = self.proto.isn(self.laddr, self.lport, self.raddr, self.rport)
        self.ts_offset = self.proto.ts_offset(self.laddr, self.raddr)
        self.snd_una = self.iss
        self.snd_nxt = self.snd_max = self.iss + 1
        self.sndq.reset(self.iss + 1)
        self.rcv_wscale = self.proto.wscale_for(self.rcvbuf)
        self.state = SYN_SENT
        self.proto.add_connection(self)
        self.retransmits = 0
        self.rtt_seq = self.iss
        self.rtt_start = now
        self.t_rtx.arm(now + self.rto.rto)
        self._send_syn(now)

    def open_passive(self, seg: Segment, now: int) -> None:
        """A SYN reached our listener: this child answers it (SYN-RECEIVED)."""
        self.passive = True
        self.irs = seg.seq
        self.rcv_nxt = self.rcv_wup = self.rcv_adv = seg.seq + 1
        self._take_syn_options(seg)
        self.iss = self.proto.isn(self.laddr, self.lport, self.raddr, self.rport)
        self.ts_offset = self.proto.ts_offset(self.laddr, self.raddr)
        self.snd_una = self.iss
        self.snd_nxt = self.snd_max = self.iss + 1
        self.sndq.reset(self.iss + 1)
        self.snd_wnd = seg.window          # never scaled in a SYN
        self.max_snd_wnd = seg.window
        self.snd_wl1 = seg.seq
        self.snd_wl2 = self.iss
        self.state = SYN_RECV
        self.last_rcv = now
        self.proto.add_connection(self)
        self.rtt_seq = self.iss
        self.rtt_start = now
        self.t_rtx.arm(now + self.rto.rto)
        self._send_synack(now)

    def _established(self, now: int) -> None:
        """Enter ESTABLISHED: size the buffers, start keepalive, and tell
        whoever waits (connect, or the listener's accept queue)."""
        self.state = ESTABLISHED
        self.cwnd = INIT_CWND * self.mss
        self.quick_acks = MAX_QUICKACKS
        if not self.snd_locked:
            want = 4 * max(self.cwnd, 4 * self.mss)
            self.sndbuf = min(self.proto.wmem[2], max(self.sndbuf, want))
        if self.keepalive:
            self.t_keep.arm(now + self.keep_idle)
        if self.fin_queued:              # shut down while the handshake ran
            self.state = FIN_WAIT1
            self._output(now)
        parent = self.parent
        if parent is not None:
            parent.child_established(self)
        self._wake()

    # --- segment arrival ----------------------------------------------------

    def input(self, seg: Segment, info) -> None:
        """RFC 9293 3.10.7: a segment for this connection arrived."""
        st = self.state
        if st == SYN_SENT:
            self._input_syn_sent(seg)
            return
        if st == CLOSED or st == LISTEN:
            return
        now = self.clock.now_ns()
        self.segs_in += 1
        self.last_rcv = now
        flags = seg.flags
        rcv_nxt = self.rcv_nxt
        seq = rcv_nxt + ((seg.seq - rcv_nxt + HALF) & MASK) - HALF
        payload = seg.payload
        plen = len(payload)
        seglen = plen + (1 if flags & SYN else 0) + (flags & FIN)

        if st == TIME_WAIT and flags & SYN and not flags & (ACK | RST):
            ts = seg.ts
            if seq > rcv_nxt or (ts is not None and self.ts_ok
                                 and _ts_before(self.ts_recent, ts[0])):
                # a new incarnation (RFC 6191): let a listener take it
                self._finish()
                self.proto.deliver(info, seg)
                return

        # PAWS (RFC 7323 5.3); a reordered pure duplicate ACK passes, as
        # on Linux (tcp_disordered_ack), so fast retransmit still counts it
        ts = seg.ts
        if self.ts_ok and ts is not None and not flags & RST:
            if _ts_before(ts[0], self.ts_recent) and \
                    now - self.ts_recent_stamp < PAWS_IDLE and not (
                        not seglen and seq == rcv_nxt and flags & ACK and
                        (seg.ack - self.snd_una) & MASK == 0):
                self.stack.stats["tcp.paws_reject"] += 1
                self.send_ack()
                return

        # first: the sequence number (Linux's test, RFC 9293 3.10.7.4)
        wnd = self.rcv_adv - rcv_nxt
        if wnd < 0:
            wnd = 0
        if flags & RST:
            self._input_rst(seq, wnd)
            return
        if seq + seglen < self.rcv_wup or seq > rcv_nxt + wnd:
            if not (st == SYN_RECV and flags & SYN and seq == self.irs):
                self.stack.stats["tcp.out_of_window"] += 1
                self.send_ack()
                return

        # fourth: SYN (RFC 5961 4)
        if flags & SYN:
            if st == SYN_RECV and seq == self.irs and not flags & ACK:
                self._send_synack(now)       # our SYN-ACK was lost
                return
            if st == SYN_RECV and self.passive:
                self.proto.send_reset_for(info, seg)
                self._drop_embryonic()
                return
            self.stack.stats["tcp.challenge_ack"] += 1
            self.send_ack()
            return

        # fifth: the ACK field
        if not flags & ACK:
            return
        snd_una = self.snd_una
        ack = snd_una + ((seg.ack - snd_una + HALF) & MASK) - HALF
        if st == SYN_RECV:
            if not snd_una < ack <= self.snd_max:
                self.proto.send_reset_for(info, seg)
                return
            parent = self.parent
            if parent is not None and not parent.can_accept():
                # accept queue full: drop the ACK as Linux; the SYN-ACK
                # timer resends and the peer's ACK comes again
                self.stack.stats["tcp.listen_overflow"] += 1
                return
            self.snd_una = snd_una = ack
            if self.rtt_seq is not None and self.retransmits == 0:
                self.rto.sample(now - self.rtt_start)
            self.rtt_seq = None
            self.retransmits = 0
            self.t_rtx.disarm()
            self.snd_wnd = seg.window << self.snd_wscale
            self.max_snd_wnd = self.snd_wnd
            self.snd_wl1 = seq
            self.snd_wl2 = ack
            self._established(now)
            st = self.state
            if ts is not None and self.ts_ok and seq <= self.rcv_wup and \
                    not _ts_before(ts[0], self.ts_recent):
                self.ts_recent = ts[0]
                self.ts_recent_stamp = now
        else:
            if ack > self.snd_max:
                self.stack.stats["tcp.ack_unsent"] += 1
                self.send_ack()
                return
            if ack < snd_una - self.max_snd_wnd:
                self.stack.stats["tcp.challenge_ack"] += 1
                self.send_ack()
                return
            if ts is not None and self.ts_ok and seq <= self.rcv_wup and \
                    not _ts_before(ts[0], self.ts_recent):
                self.ts_recent = ts[0]
                self.ts_recent_stamp = now
            self.probes = 0
            self.keep_probes = 0
            self._process_ack(seg, seq, ack, plen, now)
            st = self.state
            if st == CLOSED:
                return
            if st == TIME_WAIT:
                # only a retransmitted FIN can come: ACK it, restart 2MSL
                if flags & FIN:
                    self.send_ack()
                    self.t_wait.arm(now + 2 * self.proto.msl)
                return

        # seventh: the segment text
        if plen and st in _RECV_DATA_STATES:
            if self.orphan or (self.shut_rd and st != ESTABLISHED):
                if seq + plen > self.rcv_nxt:
                    # data for a closed socket: RFC 1122 4.2.2.13, as Linux
                    self.stack.stats["tcp.data_after_close"] += 1
                    self._send_rst()
                    self._reset(errno.ECONNRESET)
                    return
            elif not self._queue_data(seq, payload, plen, now):
                flags &= ~FIN

        # eighth: FIN
        if flags & FIN:
            fin_at = seq + plen
            if self.done or fin_at < self.rcv_nxt:
                self._ack_now(now)          # a retransmitted FIN
            elif fin_at == self.rcv_nxt:
                self._fin_arrived(now)
            else:
                self.fin_seq = fin_at       # beyond a hole
                self._ack_now(now)

        if self.state in _OUTPUT_STATES and (
                self.sndq.end > self.snd_nxt or self.fin_queued):
            self._output(now)
        if self.ack_pending and not self.t_dack.armed:
            self.send_ack()

    def _input_syn_sent(self, seg: Segment) -> None:
        """RFC 9293 3.10.7.3."""
        flags = seg.flags
        now = self.clock.now_ns()
        self.segs_in += 1
        ack = None
        if flags & ACK:
            una = self.snd_una
            ack = una + ((seg.ack - una + HALF) & MASK) - HALF
            if ack <= self.iss or ack > self.snd_max:
                if not flags & RST:
                    self._send(Segment(self.lport, self.rport, seg.ack, 0, RST, 0))
                return
        if flags & RST:
            if ack is not None:
                self._reset(errno.ECONNREFUSED)
            return
        if not flags & SYN:
            return
        self.irs = seg.seq
        self.rcv_nxt = self.rcv_wup = self.rcv_adv = seg.seq + 1
        self._take_syn_options(seg)
        self.snd_wnd = self.max_snd_wnd = seg.window
        self.snd_wl1 = seg.seq
        self.last_rcv = now
        if ack is not None:
            self.snd_wl2 = ack
            self.snd_una = ack
            if self.retransmits == 0:
                self.rto.sample(now - self.rtt_start)
            self.rtt_seq = None
            self.retransmits = 0
            self.t_rtx.disarm()
            self._established(now)
            self.send_ack()
            # data or FIN on a SYN-ACK is rare: the peer will resend it
        else:
            # simultaneous open (RFC 9293 figure 7)
            self.snd_wl2 = self.iss
            self.state = SYN_RECV
            self.retransmits = 0
            self._send_synack(now)
            self.t_rtx.arm(now + self.rto.rto)

    def _input_rst(self, seq: int, wnd: int) -> None:
        """RFC 5961 3.2: only an RST at exactly rcv_nxt resets; one inside
        the window earns a challenge ACK; others are dropped."""
        if seq == self.rcv_nxt:
            st = self.state
            if st == SYN_RECV and self.passive:
                self._drop_embryonic()
            elif st == SYN_RECV:
                self._reset(errno.ECONNREFUSED)
            elif st == CLOSE_WAIT:
                self._reset(errno.EPIPE)
            elif st == TIME_WAIT:
                self._finish()
            else:
                self._reset(errno.ECONNRESET)
        elif self.rcv_nxt < seq < self.rcv_nxt + max(wnd, 1):
            self.stack.stats["tcp.challenge_ack"] += 1
            self.send_ack()
        else:
            self.stack.stats["tcp.rst_out_of_window"] += 1

    def _process_ack(self, seg: Segment, seq: int, ack: int, plen: int, now: int) -> None:
        """RFC 9293 3.10.7.4 fifth, ESTABLISHED and later: advance snd_una,
        time the round trip, grow or cut cwnd, and move the closing
        states on when our FIN is acknowledged."""
        snd_una = self.snd_una
        self.last_ack_rcv = now
        if self.sack_ok and seg.sack:
            self._take_sack(seg.sack)
        if ack > snd_una:
            acked = ack - snd_una
            flight = self.snd_max - snd_una
            end = self.sndq.end
            self.sndq.ack(ack if ack <= end else end)
            self.snd_una = ack
            if self.snd_nxt < ack:
                self.snd_nxt = ack
            self.bytes_acked += acked
            rtt_seq = self.rtt_seq
            if rtt_seq is not None and ack > rtt_seq:
                self.rto.sample(now - self.rtt_start)
                self.rtt_seq = None
            elif self.rto.backoff:
                self.rto.backoff = 0
            self.soft_err = 0
            self.retransmits = 0
            self.retrans_stamp = 0
            if self.in_recovery:
                if ack >= self.recover:
                    # full ACK: deflate (RFC 6582 3.2 step 3, option 1)
                    self.in_recovery = False
                    self.dupacks = 0
                    out = self.snd_max - ack
                    self.cwnd = min(self.ssthresh, max(out, self.mss) + self.mss)
                else:
                    # partial ACK: resend the next hole, deflate by what left
                    self._retransmit_head(now)
                    cwnd = self.cwnd - acked
                    if acked >= self.mss:
                        cwnd += self.mss
                    self.cwnd = max(cwnd, self.mss)
                    self.t_rtx.arm(now + self.rto.rto)
            else:
                self.dupacks = 0
                if flight * 2 >= self.cwnd:
                    self.cc.on_ack(acked, now)
                    if not self.snd_locked and 4 * self.cwnd > self.sndbuf:
                        self.sndbuf = min(self.proto.wmem[2], 4 * self.cwnd)
            if self.sacked:
                self._trim_sack(ack)
            if self.snd_max <= ack:
                self.t_rtx.disarm()
            else:
                self.t_rtx.arm(now + self.rto.rto)
            if self.fin_queued and ack > end:
                self._fin_acked(now)
            if self.wq:
                self.wq.notify()
        elif ack == snd_una and not plen and self.snd_max > snd_una and \
                not seg.flags & (SYN | FIN) and \
                (seg.window << self.snd_wscale) == self.snd_wnd:
            self._dupack(now)
        # window update (RFC 9293 3.10.7.4: SND.WL1/WL2 guard old segments)
        wl1 = self.snd_wl1
        if wl1 < seq or (wl1 == seq and self.snd_wl2 <= ack):
            wnd = seg.window << self.snd_wscale
            old = self.snd_wnd
            self.snd_wnd = wnd
            self.snd_wl1 = seq
            self.snd_wl2 = ack
            if wnd > self.max_snd_wnd:
                self.max_snd_wnd = wnd
            if wnd and self.persist:
                self.persist = False
                self.t_rtx.disarm()
                self.rto.backoff = 0
            if wnd > old and self.wq:
                self.wq.notify()

    def _dupack(self, now: int) -> None:
        self.dupacks += 1
        if self.in_recovery:
            self.cwnd += self.mss               # inflate: one left the network
            if self.sacked:
                self._retransmit_sack_hole(now)
            self._output(now)
            return
        if self.dupacks == 3:
            if self.snd_una < self.recover:
                return      # RFC 6582 4.1: ACKs of what was sent before the last loss
            self.stack.stats["tcp.fast_retransmit"] += 1
            self.ssthresh = self.cc.ssthresh()
            self.cc.on_loss(now)
            self.in_recovery = True
            self.recover = self.snd_max
            self.rexmit_hi = self.snd_una
            self._retransmit_head(now)
            self.cwnd = self.ssthresh + 3 * self.mss
            self.t_rtx.arm(now + self.rto.rto)
        elif self.dupacks < 3:
            self._output(now, limited=self.dupacks)   # limited transmit (RFC 3042)

    def _fin_acked(self, now: int) -> None:
        st = self.state
        if st == FIN_WAIT1:
            self.state = FIN_WAIT2
            if self.orphan:
                self.t_wait.arm(now + self.proto.fin_timeout)
            self._wake()
        elif st == CLOSING:
            self._enter_time_wait(now)
        elif st == LAST_ACK:
            self._finish()

    def _queue_data(self, seq: int, payload, plen: int, now: int) -> bool:
        """The text of an acceptable segment: in order into the receive
        queue (with whatever reassembly it releases), ahead of a hole into
        reassembly. False if the tail was cut at the window edge."""
        rcv_nxt = self.rcv_nxt
        whole = True
        wnd_end = self.rcv_adv if self.rcv_adv > rcv_nxt else rcv_nxt
        if seq + plen > wnd_end:
            keep = wnd_end - seq
            if keep <= 0:
                self.stack.stats["tcp.beyond_window"] += 1
                self._ack_now(now)
                return False
            payload = memoryview(payload)[:keep]
            plen = keep
            whole = False
        if seq < rcv_nxt:
            cut = rcv_nxt - seq
            if cut >= plen:
                self._ack_now(now)            # a duplicate: tell them now
                return whole
            payload = memoryview(payload)[cut:]
            plen -= cut
            seq = rcv_nxt
        self.data_segs_in += 1
        if plen > self.rcv_mss:
            self.rcv_mss = plen if plen < self.adv_mss else self.adv_mss
        if seq == rcv_nxt:
            self.rcvq.append(payload)
            rcv_nxt += plen
            self.bytes_received += plen
            self.last_data_rcv = now
            if self.ooo:
                chunks, new_nxt = self.ooo.pop_ready(rcv_nxt)
                for c in chunks:
                    self.rcvq.append(c)
                self.bytes_received += new_nxt - rcv_nxt
                rcv_nxt = new_nxt
                self.rcv_nxt = rcv_nxt
                self._ack_now(now)
            else:
                self.rcv_nxt = rcv_nxt
                if self.quick_acks:
                    self.quick_acks -= 1
                    self._ack_now(now)
                elif rcv_nxt - self.rcv_wup > self.rcv_mss:
                    self._ack_now(now)
                elif not self.ack_pending:
                    self.ack_pending = True
                    self.t_dack.arm(now + DELACK)
            if self.fin_seq is not None and self.fin_seq == rcv_nxt:
                self.fin_seq = None
                self._fin_arrived(now)
            if self.wq:
                self.wq.notify()
        else:
            self.ooo.add(seq, payload)
            self.stack.stats["tcp.out_of_order"] += 1
            self._ack_now(now)
        return whole

    def _ack_now(self, now: int) -> None:
        """Send an ACK before this segment's processing ends."""
        self.ack_pending = True
        self.t_dack.disarm()

    def _fin_arrived(self, now: int) -> None:
        """RFC 9293 3.10.7.4 eighth."""
        self.rcv_nxt += 1
        self.done = True
        self.fin_seq = None
        st = self.state
        if st in (SYN_RECV, ESTABLISHED):
            self.state = CLOSE_WAIT
        elif st == FIN_WAIT1:
            if self.snd_una > self.sndq.end:
                self._enter_time_wait(now)
            else:
                self.state = CLOSING
        elif st == FIN_WAIT2:
            self._enter_time_wait(now)
        self._ack_now(now)
        self.send_ack()
        self._wake()

    def _enter_time_wait(self, now: int) -> None:
        self.state = TIME_WAIT
        self.t_rtx.cancel()
        self.t_keep.cancel()
        self.t_dack.disarm()
        self.t_wait.arm(now + 2 * self.proto.msl)
        self.sndq.reset(self.sndq.end)
        self._wake()

    # --- SACK (RFC 2018) as the sender sees it ------------------------------

    def _take_sack(self, blocks) -> None:
        una = self.snd_una
        smax = self.snd_max
        sacked = self.sacked
        for a, b in blocks:
            s = una + ((a - una + HALF) & MASK) - HALF
            e = una + ((b - una + HALF) & MASK) - HALF
            if s >= e or e <= una or e > smax:
                continue
            if s < una:
                s = una
            sacked.append([s, e])
        if len(sacked) > 1:
            sacked.sort()
            merged = [sacked[0]]
            for s, e in sacked[1:]:
                if s <= merged[-1][1]:
                    if e > merged[-1][1]:
                        merged[-1][1] = e
                else:
                    merged.append([s, e])
            self.sacked = merged[:32]

    def _trim_sack(self, una: int) -> None:
        self.sacked = [[max(s, una), e] for s, e in self.sacked if e > una]

    def _retransmit_sack_hole(self, now: int) -> None:
        """In recovery with SACK: resend the next hole below the highest
        SACKed byte (a simplified RFC 6675 NextSeg), one per ACK."""
        if not self.sacked:
            return
        seq = max(self.rexmit_hi, self.snd_una)
        top = self.sacked[-1][1]
        for s, e in self.sacked:
            if seq < s:
                break
            if seq < e:
                seq = e
        if seq >= top or seq >= self.snd_max:
            return
        nxt_sacked = top
        for s, e in self.sacked:
            if s > seq:
                nxt_sacked = s
                break
        n = min(self.mss, nxt_sacked - seq, self.sndq.end - seq)
        if n <= 0:
            return
        self.stack.stats["tcp.sack_retransmit"] += 1
        self.rexmit_hi = seq + n
        self._xmit(seq, n, False, now)

    # --- output -------------------------------------------------------------

    def _xmit(self, seq: int, n: int, fin: bool, now: int) -> None:
        """Send n bytes of data from seq (and the FIN after them)."""
        payload = self.sndq.peek(seq, n) if n else b""
        flags = ACK | FIN if fin else ACK
        end = seq + n
        if n and end == self.sndq.end:
            flags |= PSH
        seg = self._make(seq, flags, payload, now)
        if self.snd_up > seq:
            seg.flags |= URG
            seg.urg = min(self.snd_up - seq, 0xFFFF)
        if fin:
            end += 1
        if seq < self.snd_max:
            self.bytes_retrans += n
            self.total_retrans += 1
            if self.rtt_seq is not None and self.rtt_seq >= seq:
                self.rtt_seq = None             # Karn: no sample from it
        elif self.rtt_seq is None:
            self.rtt_seq = seq
            self.rtt_start = now
        if end > self.snd_max:
            self.snd_max = end
        if n:
            self.data_segs_out += 1
            self.bytes_sent += n
            self.last_data_snd = now
        self._send(seg)

    def _retransmit_head(self, now: int) -> None:
        """Resend the first unacknowledged segment (or the FIN alone)."""
        seq = self.snd_una
        end = self.sndq.end
        n = min(self.mss, end - seq)
        if n < 0:
            n = 0
        fin = self.fin_queued and seq + n == end and self.snd_max > end
        if n or fin:
            self._xmit(seq, n, fin, now)
            if seq + n + fin > self.rexmit_hi:
                self.rexmit_hi = seq + n + fin

    def _output(self, now: int = 0, push: bool = False, limited: int = 0) -> None:
        """Send what the windows, Nagle and cork allow from snd_nxt; the
        FIN when the data before it has gone; arm the retransmission or
        persist timer; a pending ACK rides on whatever goes out."""
        if self.state not in _OUTPUT_STATES:
            return
        if not now:
            now = self.clock.now_ns()
        mss = self.mss
        goal = self.size_goal
        sent = False
        # State is re-read on every turn: on loopback the peer's ACK (and
        # anything it triggers here) is processed before _xmit returns.
        while True:
            nxt = self.snd_nxt
            sndq_end = self.sndq.end
            avail = sndq_end - nxt
            if avail <= 0:
                if self.fin_queued and nxt == sndq_end:
                    self.snd_nxt = nxt + 1
                    self._xmit(nxt, 0, True, now)
                    sent = True
                break
            wnd = self.snd_wnd
            cwnd = self.cwnd + limited * mss
            if cwnd < wnd:
                wnd = cwnd
            room = self.snd_una + wnd - nxt
            n = avail if avail < goal else goal
            if room < n:
                if room <= 0 or (not push and room < (self.max_snd_wnd >> 1)
                                 and room < mss):
                    break        # sender SWS avoidance: wait for a real window
                n = room
            fin = self.fin_queued and n == avail
            if n < mss and n == avail and not fin and not push:
                if self.cork:
                    break
                if not self.nodelay and self.snd_sml > self.snd_una \
                        and self.snd_max > self.snd_una:
                    break        # Nagle (Minshall): a small segment is unacked
            end = nxt + n + fin
            self.snd_nxt = end
            if n < mss:
                self.snd_sml = end
            self._xmit(nxt, n, fin, now)
            sent = True
            if fin or self.state not in _OUTPUT_STATES:
                break
        una = self.snd_una
        if sent:
            if self.snd_max > una and (not self.t_rtx.armed or self.persist):
                self.persist = False
                self.t_rtx.arm(now + self.rto.rto)
        elif self.ack_pending and not self.t_dack.armed:
            self.send_ack()
        elif self.snd_max == una and not self.t_rtx.armed and self.state in _OUTPUT_STATES \
                and (self.sndq.end > self.snd_nxt or (
                    self.fin_queued and self.snd_nxt <= self.sndq.end)):
            # nothing in flight and the window shut: probe it (RFC 9293 3.8.6.1)
            self.persist = True
            self.t_rtx.arm(now + self.rto.rto)

    # --- timers -------------------------------------------------------------

    def _timed_out(self, now: int, boundary: int, base: int) -> bool:
        if not self.retrans_stamp:
            return False
        elapsed = now - self.retrans_stamp
        if self.user_timeout:
            return elapsed >= self.user_timeout
        return elapsed >= model_timeout(boundary, base)

    def _on_rtx(self) -> None:
        now = self.clock.now_ns()
        st = self.state
        proto = self.proto
        if st == SYN_SENT or st == SYN_RECV:
            limit = proto.synack_retries if self.passive else proto.syn_retries
            if self.retransmits >= limit or (
                    self.user_timeout and self.retrans_stamp
                    and now - self.retrans_stamp >= self.user_timeout):
                if self.passive:
                    self._drop_embryonic()
                else:
                    self._reset(errno.ETIMEDOUT)
                return
            if not self.retransmits:
                self.retrans_stamp = now
            self.retransmits += 1
            self.total_retrans += 1
            self.rto.back_off()
            self.rtt_seq = None
            self.t_rtx.arm(now + self.rto.rto)
            if st == SYN_SENT:
                self._send_syn(now)
            else:
                self._send_synack(now)
            return
        if st not in _OUTPUT_STATES:
            return
        if self.persist:
            self._window_probe(now)
            return
        if self.snd_max <= self.snd_una:
            return
        if self._timed_out(now, proto.retries2, self.rto.min_rto):
            self._reset(self.soft_err or errno.ETIMEDOUT)
            return
        if not self.retransmits:
            # Linux counts from the head segment's (original) send time
            self.retrans_stamp = now - self.rto.rto
            self.ssthresh = self.cc.ssthresh()
            self.cc.on_rto(now)
        self.retransmits += 1
        self.stack.stats["tcp.rto"] += 1
        self.cwnd = self.mss
        self.in_recovery = False
        self.dupacks = 0
        self.recover = self.snd_max
        self.sacked = []
        self.rtt_seq = None
        self.rto.back_off()
        # go back N: resend from the oldest unacknowledged byte
        self.snd_nxt = self.snd_una
        self.t_rtx.arm(now + self.rto.rto)
        self._output(now, push=True)

    def _window_probe(self, now: int) -> None:
        """The persist timer: a zero-length segment below the window makes
        the peer say its window (Linux's tcp_xmit_probe_skb)."""
        if self.probes > self.proto.retries2:
            self._reset(self.soft_err or errno.ETIMEDOUT)
            return
        self.probes += 1
        self.stack.stats["tcp.window_probe"] += 1
        if self.snd_wnd:
            self.persist = False
            self._output(now, push=True)
            return
        self.rto.back_off()
        self.t_rtx.arm(now + self.rto.rto)
        self._send(self._make(self.snd_una - 1, ACK, b"", now))

    def _on_delack(self) -> None:
        if self.ack_pending and self.state not in (CLOSED, LISTEN, SYN_SENT):
            self.send_ack()

    def _on_keepalive(self) -> None:
        if not self.keepalive or self.state not in _KEEPALIVE_STATES:
            return
        now = self.clock.now_ns()
        if self.snd_max > self.snd_una or self.sndq.end > self.snd_nxt:
            self.t_keep.arm(now + self.keep_idle)     # retransmission covers it
            return
        idle = now - self.last_rcv
        if idle < self.keep_idle and not self.keep_probes:
            self.t_keep.arm(self.last_rcv + self.keep_idle)
            return
        if (self.user_timeout and self.keep_probes and idle >= self.user_timeout) or (
                not self.user_timeout and self.keep_probes >= self.keep_cnt):
            self._send_rst()
            self._reset(errno.ETIMEDOUT)
            return
        self.keep_probes += 1
        self.stack.stats["tcp.keepalive_probe"] += 1
        self.t_keep.arm(now + self.keep_intvl)
        self._send(self._make(self.snd_una - 1, ACK, b"", now))

    def _on_wait(self) -> None:
        """TIME-WAIT's 2*MSL, or an orphan's FIN-WAIT-2 timeout, is over."""
        if self.state in (TIME_WAIT, FIN_WAIT2):
            self._finish()

    # --- endings ------------------------------------------------------------

    def _reset(self, code: int) -> None:
        """The connection is gone (RST received, timeout, abort): error
        code for the socket (0: none), queues closed for writing; what was
        received in order stays readable."""
        self.sndq.reset(self.sndq.end)
        self.ooo.clear()
        if code:
            self.err = code
        self.shut_rd = self.shut_wr = True
        self._finish()

    def _drop_embryonic(self) -> None:
        """A child still in SYN-RECEIVED goes away unseen."""
        parent = self.parent
        if parent is not None:
            parent.child_dropped(self)
            self.parent = None
        self.orphan = True
        self._finish()

    def _finish(self) -> None:
        """Enter CLOSED: stop timers, leave the demux table, and give the
        port back if nobody holds the socket (or it was bound implicitly)."""
        if self.state == CLOSED:
            return
        self.state = CLOSED
        self.t_rtx.cancel()
        self.t_dack.cancel()
        self.t_keep.cancel()
        self.t_wait.cancel()
        self.ack_pending = False
        self.persist = False
        self.proto.remove_connection(self)
        if self.orphan or not self.bind_locked:
            self.proto.release_port(self)
        self._wake()

    def abort(self) -> None:
        """Send an RST if the state calls for one and close at once (close
        with unread data, SO_LINGER 0, a listener closing its queue)."""
        if self.state in _NEED_RESET:
            self._send_rst()
        self.rcvq.clear()
        self._reset(0)
