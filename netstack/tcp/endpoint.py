"""The socket-facing TCP endpoint (docs/netstack.md): bind, connect,
listen/accept, send/recv, shutdown, close, options and readiness, with
Linux's errnos and tcp_poll's readiness bits. The connection state
machine underneath is connection.Connection."""
from __future__ import annotations

import collections
import errno
import struct

from ..core import (AF_INET, AF_INET6, ANY4, ANY6, IPPROTO_IP, IPPROTO_IPV6,
                    IPPROTO_TCP, POLLERR, POLLHUP, POLLIN, POLLOUT, POLLRDHUP,
                    WouldBlock, to_v6, unmap)
from ..wire.tcp import ACK, RST, SYN
from ..icmp import HARD_ERRORS
from .congestion import ALGORITHMS
from .connection import (CLOSE_WAIT, CLOSED, CLOSING, ESTABLISHED, FIN_WAIT1,
                         FIN_WAIT2, LAST_ACK, LISTEN, MASK, MAX_QUICKACKS, MS, SEC,
                         SYN_RECV, SYN_SENT, TIME_WAIT, Connection)

SOCK_STREAM = 1
SOL_SOCKET = 1
MSG_OOB, MSG_PEEK, MSG_TRUNC = 0x1, 0x2, 0x20

SO_REUSEADDR, SO_TYPE, SO_ERROR, SO_BROADCAST, SO_SNDBUF, SO_RCVBUF = 2, 3, 4, 6, 7, 8
SO_KEEPALIVE, SO_OOBINLINE, SO_LINGER, SO_REUSEPORT = 9, 10, 13, 15
SO_ACCEPTCONN, SO_SNDBUFFORCE, SO_RCVBUFFORCE = 30, 32, 33
SO_PROTOCOL, SO_DOMAIN = 38, 39
TCP_NODELAY, TCP_MAXSEG, TCP_CORK, TCP_KEEPIDLE, TCP_KEEPINTVL = 1, 2, 3, 4, 5
TCP_KEEPCNT, TCP_SYNCNT, TCP_LINGER2, TCP_DEFER_ACCEPT = 6, 7, 8, 9
TCP_WINDOW_CLAMP, TCP_INFO, TCP_QUICKACK, TCP_CONGESTION = 10, 11, 12, 13
TCP_USER_TIMEOUT, TCP_NOTSENT_LOWAT = 18, 25
IP_TOS, IP_TTL = 1, 2
IPV6_UNICAST_HOPS, IPV6_V6ONLY, IPV6_TCLASS = 16, 26, 67

SOCK_MIN_RCVBUF, SOCK_MIN_SNDBUF = 2304, 4608
TCP_MIN_MSS, TCP_MAX_WINDOW = 88, 65535

# socket-level connection state (Linux's SS_*, which connect's errnos follow)
SS_UNCONNECTED, SS_CONNECTING, SS_CONNECTED = 0, 1, 2
DELACK_US = 40_000

_LINGER = struct.Struct("ii")
_INT = struct.Struct("i")
# struct tcp_info as Linux 6.x lays it out (include/uapi/linux/tcp.h)
_TCP_INFO = struct.Struct("=8B" "4I" "5I" "4I" "8I" "2I" "I" "4Q2I" "4I" "Q"
                          "3Q" "2I" "2Q2I" "I" "I" "2I" "2HI")


def _protocol_of(stack):
    proto = stack.handlers.get(IPPROTO_TCP)
    if proto is None:
        from .protocol import TCPProtocol
        proto = TCPProtocol(stack)
    return proto


def _int(value) -> int:
    if isinstance(value, int):
        return value
    if len(value) < 4:
        raise OSError(errno.EINVAL, "option too short")
    return _INT.unpack_from(value)[0]


class TCPEndpoint(Connection):
    __slots__ = ("stype", "protocol", "sock_state", "backlog", "syn_queue",
                 "accept_queue", "opts", "uid")

    def __init__(self, stack, family: int = AF_INET, uid: int = 0):
        """stack: a Stack (its TCP handler is registered on first use) or
        the TCPProtocol itself; uid: the owner, for SO_REUSEPORT groups."""
        proto = stack if hasattr(stack, "conns") else _protocol_of(stack)
        if family not in (AF_INET, AF_INET6):
            raise OSError(errno.EAFNOSUPPORT, "address family not supported")
        super().__init__(proto, family)
        self.uid = uid
        self.stype = SOCK_STREAM
        self.protocol = IPPROTO_TCP
        self.sock_state = SS_UNCONNECTED
        self.backlog = 0
        self.syn_queue: set | None = None
        self.accept_queue: collections.deque | None = None
        self.opts: dict = {}

    # --- addresses ----------------------------------------------------------

    def _any(self) -> bytes:
        return ANY4 if self.family == AF_INET else ANY6

    def _user_addr(self, addr: bytes) -> bytes:
        """An address as this socket's family shows it."""
        if addr is None:
            return self._any()
        return to_v6(addr) if self.family == AF_INET6 else addr

    def _net_addr(self, addr: bytes, for_bind: bool = False) -> bytes:
        """The network form of a user address (IPv4-mapped -> 4 bytes)."""
        if self.family == AF_INET:
            if len(addr) != 4:
                raise OSError(errno.EINVAL, "bad address length")
            return addr
        if len(addr) != 16:
            raise OSError(errno.EINVAL, "bad address length")
        a = unmap(addr)
        if len(a) == 4 and self.v6only:
            raise OSError(errno.EINVAL if for_bind else errno.ENETUNREACH,
                          "v4-mapped address on a v6-only socket")
        return a

    def bind(self, addr) -> None:
        host, port = addr
        if self.binding is not None or self.state != CLOSED:
            raise OSError(errno.EINVAL, "already bound")
        a = self._net_addr(host, for_bind=True)
        if a != ANY4 and a != ANY6 and not self.stack.is_local(a):
            raise OSError(errno.EADDRNOTAVAIL, "address not local")
        v6only = self.v6only if len(a) == 16 else False
        self.binding = self.proto.ports.bind(a, port, self, v6only)
        self.bind_locked = True
        self.laddr = None if a in (ANY4, ANY6) else a
        self.lport = self.binding.port

    def _bound_addr(self):
        """The specific local address bound, or None for a wildcard."""
        b = self.binding
        if b is None:
            return None
        a = unmap(b.addr)
        return None if a in (ANY4, ANY6) else a

    def getsockname(self):
        if self.laddr is not None:
            return (self._user_addr(self.laddr), self.lport)
        b = self.binding
        if b is not None:
            a = unmap(b.addr)
            return (self._any() if a == ANY6 else self._user_addr(a), b.port)
        return (self._any(), self.lport)

    def getpeername(self):
        if self.state in (CLOSED, LISTEN, SYN_SENT) or self.raddr is None or \
                (self.state == SYN_RECV and self.passive):
            raise OSError(errno.ENOTCONN, "not connected")
        return (self._user_addr(self.raddr), self.rport)

    # --- connect ------------------------------------------------------------

    def connect(self, addr) -> None:
        if self.sock_state == SS_CONNECTED:
            raise OSError(errno.EISCONN, "already connected")
        if self.sock_state == SS_CONNECTING:
            st = self.state
            if st in (SYN_SENT, SYN_RECV):
                raise OSError(errno.EALREADY, "connection in progress")
            if st == CLOSED:
                self._connect_failed()
            self.sock_state = SS_CONNECTED
            return
        if self.state != CLOSED:
            raise OSError(errno.EISCONN, "already connected")
        host, port = addr
        raddr = self._net_addr(host)
        local = self._bound_addr()
        if local is not None and len(local) != len(raddr):
            raise OSError(errno.ENETUNREACH, "address family mismatch")
        route = self.stack.route(raddr, local)       # ENETUNREACH
        raddr = route.remote                         # 0.0.0.0 means ourselves
        laddr = local if local is not None else route.local
        proto = self.proto
        if self.binding is None:
            self.binding = proto.ports.bind(laddr, 0, self, False)
            self.bind_locked = False
        lport = self.binding.port
        old = proto.conns.get((laddr, lport, raddr, port))
        if old is not None:
            if old.state != TIME_WAIT:
                raise OSError(errno.EADDRNOTAVAIL, "4-tuple in use")
            old._finish()
        self.route = route
        self.laddr, self.lport, self.raddr, self.rport = laddr, lport, raddr, port
        self.err = 0
        self.done = self.shut_rd = self.shut_wr = False
        self.fin_queued = False
        self.rcvq.clear()
        self.sock_state = SS_CONNECTING
        self.open_active(self.clock.now_ns())

    def connect_result(self) -> int:
        st = self.state
        if st in (SYN_SENT, SYN_RECV):
            raise WouldBlock(self.wq, POLLOUT)
        if st == CLOSED and self.sock_state != SS_CONNECTED:
            self._connect_failed()
        self.sock_state = SS_CONNECTED
        return 0

    def _connect_failed(self):
        """connect reports the failure; as inet_stream_connect, the socket
        is then disconnected (its shutdown bits cleared) for a new try."""
        self.sock_state = SS_UNCONNECTED
        code = self.take_error() or errno.ECONNABORTED
        self.shut_rd = self.shut_wr = self.done = False
        self.rcvq.clear()
        raise OSError(code, "connect failed")

    # --- listen / accept ----------------------------------------------------

    def listen(self, backlog: int) -> None:
        if self.sock_state != SS_UNCONNECTED or self.state not in (CLOSED, LISTEN):
            raise OSError(errno.EINVAL, "not a closed socket")
        if backlog < 0 or backlog > self.proto.somaxconn:
            backlog = self.proto.somaxconn
        if self.state == LISTEN:
            self.backlog = backlog
            return
        proto = self.proto
        if self.binding is None:
            a = self._any()
            self.binding = proto.ports.bind(a, 0, self, self.v6only and a == ANY6)
            self.bind_locked = False
            self.lport = self.binding.port
        else:
            self.state = LISTEN          # Linux re-checks conflicts as a listener
            ok = proto.ports.rebind_ok(self.binding)
            self.state = CLOSED
            if not ok:
                raise OSError(errno.EADDRINUSE, "address in use")
        self.backlog = backlog
        self.syn_queue = set()
        self.accept_queue = collections.deque()
        self.state = LISTEN
        proto.add_listener(self)
        self._wake()

    @property
    def listening(self) -> bool:
        return self.state == LISTEN

    def can_accept(self) -> bool:
        """Room in the accept queue (Linux lets backlog + 1 wait)."""
        return self.state == LISTEN and len(self.accept_queue) <= self.backlog

    def listen_input(self, seg, info) -> None:
        """RFC 9293 3.10.7.2: a segment for the listener itself."""
        flags = seg.flags
        if flags & RST:
            return
        if flags & ACK:
            self.proto.send_reset_for(info, seg)
            return
        if not flags & SYN:
            return
        stats = self.stack.stats
        limit = min(max(self.backlog, 8), self.proto.max_syn_backlog)
        if len(self.syn_queue) >= limit:
            stats["tcp.syn_queue_full"] += 1
            return
        if not self.can_accept():
            stats["tcp.listen_overflow"] += 1
            return
        try:
            route = self.stack.route(info.src, info.dst)
        except OSError:
            return
        child = TCPEndpoint(self.proto, self.family, self.uid)
        child._inherit(self)
        child.route = route
        child.laddr, child.lport = info.dst, seg.dport
        child.raddr, child.rport = info.src, seg.sport
        child.inherited = True
        child.binding = self.proto.ports.bind(info.dst, seg.dport, child)
        child.bind_locked = self.bind_locked
        child.parent = self
        self.syn_queue.add(child)
        stats["tcp.passive_opens"] += 1
        child.open_passive(seg, self.clock.now_ns())

    def _inherit(self, parent: "TCPEndpoint") -> None:
        for name in ("sndbuf", "rcvbuf", "snd_locked", "rcv_locked", "nodelay",
                     "cork", "keepalive", "keep_idle", "keep_intvl", "keep_cnt",
                     "user_timeout", "linger", "ttl", "tos", "reuse", "reuseport",
                     "v6only", "user_mss", "defer_accept"):
            setattr(self, name, getattr(parent, name))
        self.opts = dict(parent.opts)
        if type(parent.cc) is not type(self.cc):
            self.cc = type(parent.cc)(self)

    def child_established(self, child) -> None:
        self.syn_queue.discard(child)
        if self.state != LISTEN:
            child.parent = None
            child.orphan = True
            child.abort()
            return
        self.accept_queue.append(child)
        self._wake()

    def child_dropped(self, child) -> None:
        if self.syn_queue is not None:
            self.syn_queue.discard(child)

    def accept(self):
        if self.state != LISTEN:
            raise OSError(errno.EINVAL, "not listening")
        q = self.accept_queue
        if not q:
            raise WouldBlock(self.wq, POLLIN)
        child = q.popleft()
        child.parent = None
        child.sock_state = SS_CONNECTED
        return child

    def _stop_listening(self) -> None:
        self.proto.remove_listener(self)
        for child in list(self.syn_queue or ()):
            child.parent = None
            child._drop_embryonic()
        for child in list(self.accept_queue or ()):
            child.parent = None
            child.orphan = True
            child.abort()
        self.syn_queue = None
        self.accept_queue = None
        self.state = CLOSED

    # --- data ---------------------------------------------------------------

    def send(self, data, flags: int = 0, to=None) -> int:
        st = self.state
        if st != ESTABLISHED and st != CLOSE_WAIT:
            if self.err:
                raise OSError(self.take_error(), "connection error")
            if st in (SYN_SENT, SYN_RECV) and not self.fin_queued:
                raise WouldBlock(self.wq, POLLOUT)
            raise OSError(errno.EPIPE, "not connected")
        if self.err:
            raise OSError(self.take_error(), "connection error")
        if self.shut_wr:
            raise OSError(errno.EPIPE, "shut down for writing")
        n = len(data)
        if not n:
            return 0
        sndq = self.sndq
        room = self.sndbuf - (sndq.end - sndq.base)
        if room <= 0:
            raise WouldBlock(self.wq, POLLOUT)
        if n > room:
            data = data[:room]
            n = room
        if type(data) is not bytes:
            data = bytes(data)
        sndq.append(data)
        if flags & MSG_OOB:
            self.snd_up = sndq.end
        self._output()
        return n

    def recv(self, size: int, flags: int = 0):
        st = self.state
        if st == LISTEN:
            raise OSError(errno.ENOTCONN, "listening socket")
        if flags & MSG_OOB:
            raise OSError(errno.EINVAL, "no urgent data")     # urgent data is inline
        q = self.rcvq
        if q.size:
            peek = bool(flags & MSG_PEEK)
            if flags & MSG_TRUNC:
                n = min(size, q.size)
                if not peek:
                    q.read(n)
                    self._after_read(n)
                return (b"", n, None)
            data = q.read(size, peek)
            if not peek and data:
                self._after_read(len(data))
            return (data, len(data), None)
        if size == 0 and st not in (CLOSED, SYN_SENT):
            return (b"", 0, None)
        if self.done:
            return (b"", 0, None)
        if self.err:
            raise OSError(self.take_error(), "connection error")
        if self.shut_rd:
            return (b"", 0, None)
        if st == CLOSED:
            raise OSError(errno.ENOTCONN, "not connected")
        raise WouldBlock(self.wq, POLLIN)

    def _after_read(self, n: int) -> None:
        """The application took n bytes: grow the buffer if the sender was
        filling it (a little dynamic right-sizing), and send a window
        update once the window has at least doubled (Linux's
        tcp_cleanup_rbuf)."""
        st = self.state
        if st not in (ESTABLISHED, FIN_WAIT1, FIN_WAIT2) or self.shut_rd:
            return
        if not self.rcv_locked and self.rcvbuf < self.proto.rmem[2]:
            # the reader is here and the window it had offered was (nearly)
            # used up: the sender was waiting on us, so offer more
            left = self.rcv_adv - self.rcv_nxt
            if left < self.rcv_mss or (self.rcvq.size + n) * 2 >= self.rcvbuf:
                self.rcvbuf = min(self.proto.rmem[2], self.rcvbuf * 2)
        cur = self.rcv_adv - self.rcv_nxt
        free = self.rcvbuf - self.rcvq.size - self.ooo.size
        if free >= 2 * cur and free - cur >= min(self.adv_mss, self.rcvbuf >> 1):
            self.send_ack()
        elif self.ack_pending and self.rcv_nxt - self.rcv_wup > self.rcv_mss:
            self.send_ack()

    # --- shutdown and close -------------------------------------------------

    def shutdown(self, how: int) -> None:
        if how not in (0, 1, 2):
            raise OSError(errno.EINVAL, "bad how")
        if self.sock_state == SS_CONNECTING and self.state not in (SYN_SENT, SYN_RECV, CLOSED):
            self.sock_state = SS_CONNECTED
        st = self.state
        rd = how in (0, 2)
        wr = how in (1, 2)
        if st == CLOSED:
            self.shut_rd |= rd
            self.shut_wr |= wr
            self._wake()
            raise OSError(errno.ENOTCONN, "not connected")
        if st == LISTEN:
            if rd:
                self._stop_listening()
                self._release_if_auto()
                self.sock_state = SS_UNCONNECTED
                self._wake()
            return
        if st == SYN_SENT:
            self._reset(0)
            self.shut_rd = self.shut_wr = False
            self.sock_state = SS_UNCONNECTED
            return
        if rd:
            self.shut_rd = True
        if wr and not self.shut_wr:
            self.shut_wr = True
            self._send_fin()
        self._wake()

    def _send_fin(self) -> None:
        """Queue our FIN (RFC 9293 CLOSE / shutdown(SHUT_WR))."""
        st = self.state
        if st == ESTABLISHED:
            self.state = FIN_WAIT1
        elif st == CLOSE_WAIT:
            self.state = LAST_ACK
        elif st != SYN_RECV:
            return
        self.fin_queued = True
        if self.state != SYN_RECV:
            self._output(push=True)

    def disconnect(self) -> None:
        """connect(AF_UNSPEC): Linux's tcp_disconnect: abort whatever is
        going on (RST if the state calls for one; ECONNRESET then pending)
        and return to a closed, reusable socket."""
        st = self.state
        if st == LISTEN:
            self._stop_listening()
        elif st != CLOSED:
            if st in (ESTABLISHED, CLOSE_WAIT, FIN_WAIT1, FIN_WAIT2, SYN_RECV) or (
                    st in (CLOSING, LAST_ACK) and self.snd_max > self.snd_una):
                self._send_rst()
                self.err = errno.ECONNRESET
            elif st == SYN_SENT:
                self.err = errno.ECONNRESET
            self.sndq.reset(self.sndq.end)
            self.ooo.clear()
            self._finish()
        self.rcvq.clear()
        self.fin_queued = False
        self.done = self.shut_rd = self.shut_wr = False
        self.sock_state = SS_UNCONNECTED
        if not self.bind_locked:
            self.proto.release_port(self)
        self.raddr = None
        self.rport = 0
        self._wake()

    def _release_if_auto(self) -> None:
        if not self.bind_locked:
            self.proto.release_port(self)

    def close(self) -> None:
        """The last file reference is gone: RST if unread data or SO_LINGER
        0 (as Linux), else a FIN; the connection finishes on its own."""
        self.orphan = True
        st = self.state
        if st == LISTEN:
            self._stop_listening()
            self.proto.release_port(self)
            return
        if st == CLOSED:
            self.proto.release_port(self)
            return
        if st == SYN_SENT:
            self._reset(0)
            return
        self.shut_rd = True
        if self.rcvq.size or (self.linger is not None and self.linger == 0):
            self.stack.stats["tcp.close_unread" if self.rcvq.size else "tcp.linger_abort"] += 1
            self.abort()
            return
        if not self.shut_wr:
            self.shut_wr = True
            self._send_fin()
        if self.state == FIN_WAIT2:
            self.t_wait.arm(self.clock.now_ns() + self.proto.fin_timeout)

    # --- status -------------------------------------------------------------

    def readiness(self) -> int:
        """tcp_poll's bits."""
        st = self.state
        if st == LISTEN:
            return POLLIN if self.accept_queue else 0
        mask = 0
        shut_rd, shut_wr = self.shut_rd or self.done, self.shut_wr
        if (shut_rd and shut_wr) or st == CLOSED:
            mask |= POLLHUP
        if shut_rd:
            mask |= POLLIN | POLLRDHUP
        if st != SYN_SENT and not (st == SYN_RECV):
            if self.rcvq.size:
                mask |= POLLIN
            if not shut_wr:
                used = self.sndq.end - self.sndq.base
                if self.sndbuf - used >= used >> 1 and used < self.sndbuf:
                    mask |= POLLOUT
            else:
                mask |= POLLOUT
        if self.err:
            mask |= POLLERR
        return mask

    def queues(self) -> tuple:
        return (self.wq,)

    def take_error(self) -> int:
        e, self.err = self.err, 0
        return e

    def pending_in(self) -> int:
        if self.state == LISTEN:
            raise OSError(errno.EINVAL, "listening socket")
        return self.rcvq.size

    def pending_out(self) -> int:
        if self.state == LISTEN:
            raise OSError(errno.EINVAL, "listening socket")
        return self.sndq.end - self.sndq.base

    def icmp_error(self, kind, errno_: int, seq: int) -> None:
        """An ICMP error about a segment of ours (Linux's tcp_v4_err): one
        quoting a sequence number we have not sent is ignored; during
        the handshake it is fatal (a child in SYN-RECEIVED just goes);
        later it is only remembered, reported if we time out. A smaller
        path MTU (the stack has recorded it) shrinks the MSS."""
        if (seq - self.snd_una) & MASK > self.snd_max - self.snd_una:
            self.stack.stats["tcp.icmp_out_of_window"] += 1
            return
        if kind == "too_big":
            if self.route is not None and self.state not in (CLOSED, LISTEN):
                try:
                    self.route = self.stack.route(self.raddr, self.laddr)
                except OSError:
                    return
                old = self.mss
                self._set_mss()
                if self.mss < old and self.snd_max > self.snd_una:
                    self.snd_nxt = self.snd_una      # resend in smaller pieces
                    self._output(push=True)
            return
        st = self.state
        if st == SYN_SENT or (st == SYN_RECV and not self.passive):
            self._reset(errno_)
        elif st == SYN_RECV:
            if kind in HARD_ERRORS:
                self._drop_embryonic()
        else:
            self.soft_err = errno_

    # --- options ------------------------------------------------------------

    def setsockopt(self, level: int, name: int, value) -> None:
        proto = self.proto
        if level == SOL_SOCKET:
            if name == SO_REUSEADDR:
                self.reuse = bool(_int(value))
            elif name == SO_REUSEPORT:
                self.reuseport = bool(_int(value))
            elif name == SO_KEEPALIVE:
                on = bool(_int(value))
                self.keepalive = on
                if on and self.state in (ESTABLISHED, CLOSE_WAIT, FIN_WAIT2):
                    self.t_keep.arm(self.clock.now_ns() + self.keep_idle)
                elif not on:
                    self.t_keep.disarm()
            elif name in (SO_RCVBUF, SO_RCVBUFFORCE):
                v = _int(value)
                if name == SO_RCVBUF:
                    v = min(v, proto.rmem_max)
                self.rcvbuf = max(v * 2, SOCK_MIN_RCVBUF) if v >= 0 else SOCK_MIN_RCVBUF
                self.rcv_locked = True
            elif name in (SO_SNDBUF, SO_SNDBUFFORCE):
                v = _int(value)
                if name == SO_SNDBUF:
                    v = min(v, proto.wmem_max)
                self.sndbuf = max(v * 2, SOCK_MIN_SNDBUF) if v >= 0 else SOCK_MIN_SNDBUF
                self.snd_locked = True
                self._wake()
            elif name == SO_LINGER:
                if isinstance(value, int) or len(value) < _LINGER.size:
                    raise OSError(errno.EINVAL, "struct linger expected")
                onoff, secs = _LINGER.unpack_from(value)
                self.linger = max(secs, 0) if onoff else None
            elif name in (SO_OOBINLINE, SO_BROADCAST):
                self.opts[name] = bool(_int(value))
            elif name in (SO_ERROR, SO_TYPE, SO_PROTOCOL, SO_DOMAIN, SO_ACCEPTCONN):
                raise OSError(errno.ENOPROTOOPT, "read-only option")
            else:
                raise OSError(errno.ENOPROTOOPT, "unknown option")
            return
        if level == IPPROTO_TCP:
            self._set_tcp(name, value)
            return
        if level == IPPROTO_IP:
            v = _int(value)
            if name == IP_TTL:
                if v == -1:
                    self.ttl = None
                elif 1 <= v <= 255:
                    self.ttl = v
                else:
                    raise OSError(errno.EINVAL, "bad TTL")
            elif name == IP_TOS:
                self.tos = v & 0xFC
            else:
                raise OSError(errno.ENOPROTOOPT, "unknown option")
            return
        if level == IPPROTO_IPV6 and self.family == AF_INET6:
            v = _int(value)
            if name == IPV6_V6ONLY:
                if self.binding is not None or self.state != CLOSED:
                    raise OSError(errno.EINVAL, "already bound")
                self.v6only = bool(v)
            elif name == IPV6_UNICAST_HOPS:
                if v == -1:
                    self.ttl = None
                elif 0 <= v <= 255:
                    self.ttl = v
                else:
                    raise OSError(errno.EINVAL, "bad hop limit")
            elif name == IPV6_TCLASS:
                if not -1 <= v <= 255:
                    raise OSError(errno.EINVAL, "bad traffic class")
                self.tos = 0 if v == -1 else v & 0xFC
            else:
                raise OSError(errno.ENOPROTOOPT, "unknown option")
            return
        raise OSError(errno.ENOPROTOOPT, "unknown level")

    def _set_tcp(self, name: int, value) -> None:
        if name == TCP_CONGESTION:
            if isinstance(value, int):
                raise OSError(errno.EINVAL, "name expected")
            algo = bytes(value).split(b"\0", 1)[0].decode("ascii", "replace")
            cls = ALGORITHMS.get(algo)
            if cls is None:
                raise OSError(errno.ENOENT, "no such congestion control")
            if type(self.cc) is not cls:
                self.cc = cls(self)
            return
        v = _int(value)
        if name == TCP_NODELAY:
            self.nodelay = bool(v)
            if v and self.state in (ESTABLISHED, CLOSE_WAIT):
                self._output(push=True)
        elif name == TCP_CORK:
            was = self.cork
            self.cork = bool(v)
            if was and not v and self.state in (ESTABLISHED, CLOSE_WAIT):
                self._output(push=True)
        elif name == TCP_MAXSEG:
            if v and (v < TCP_MIN_MSS or v > TCP_MAX_WINDOW):
                raise OSError(errno.EINVAL, "bad MSS")
            self.user_mss = v
        elif name == TCP_KEEPIDLE:
            if not 1 <= v <= 32767:
                raise OSError(errno.EINVAL, "bad keepidle")
            self.keep_idle = v * SEC
            if self.keepalive and self.state in (ESTABLISHED, CLOSE_WAIT, FIN_WAIT2):
                self.t_keep.cancel()
                self.t_keep.arm(self.last_rcv + self.keep_idle)
        elif name == TCP_KEEPINTVL:
            if not 1 <= v <= 32767:
                raise OSError(errno.EINVAL, "bad keepintvl")
            self.keep_intvl = v * SEC
        elif name == TCP_KEEPCNT:
            if not 1 <= v <= 127:
                raise OSError(errno.EINVAL, "bad keepcnt")
            self.keep_cnt = v
        elif name == TCP_SYNCNT:
            if not 1 <= v <= 127:
                raise OSError(errno.EINVAL, "bad syncnt")
            self.opts[name] = v
        elif name == TCP_USER_TIMEOUT:
            if v < 0:
                raise OSError(errno.EINVAL, "bad user timeout")
            self.user_timeout = v * MS
        elif name == TCP_QUICKACK:
            self.opts[name] = 1 if v else 0
            if v:
                self.quick_acks = MAX_QUICKACKS
                if self.ack_pending:
                    self.send_ack()
        elif name == TCP_DEFER_ACCEPT:
            self.defer_accept = max(v, 0)
        elif name in (TCP_LINGER2, TCP_WINDOW_CLAMP, TCP_NOTSENT_LOWAT):
            self.opts[name] = v
        elif name == TCP_INFO:
            raise OSError(errno.ENOPROTOOPT, "read-only option")
        else:
            raise OSError(errno.ENOPROTOOPT, "unknown option")

    def getsockopt(self, level: int, name: int):
        if level == SOL_SOCKET:
            if name == SO_REUSEADDR:
                return int(self.reuse)
            if name == SO_REUSEPORT:
                return int(self.reuseport)
            if name == SO_KEEPALIVE:
                return int(self.keepalive)
            if name == SO_RCVBUF:
                return self.rcvbuf
            if name == SO_SNDBUF:
                return self.sndbuf
            if name == SO_LINGER:
                return _LINGER.pack(self.linger is not None, self.linger or 0)
            if name == SO_ACCEPTCONN:
                return int(self.state == LISTEN)
            if name == SO_ERROR:
                return self.take_error()
            if name == SO_TYPE:
                return SOCK_STREAM
            if name == SO_PROTOCOL:
                return IPPROTO_TCP
            if name == SO_DOMAIN:
                return self.family
            if name in (SO_OOBINLINE, SO_BROADCAST):
                return int(self.opts.get(name, False))
            raise OSError(errno.ENOPROTOOPT, "unknown option")
        if level == IPPROTO_TCP:
            return self._get_tcp(name)
        if level == IPPROTO_IP:
            if name == IP_TTL:
                return 64 if self.ttl is None else self.ttl
            if name == IP_TOS:
                return self.tos
            raise OSError(errno.ENOPROTOOPT, "unknown option")
        if level == IPPROTO_IPV6 and self.family == AF_INET6:
            if name == IPV6_V6ONLY:
                return int(self.v6only)
            if name == IPV6_UNICAST_HOPS:
                return 64 if self.ttl is None else self.ttl
            if name == IPV6_TCLASS:
                return self.tos
            raise OSError(errno.ENOPROTOOPT, "unknown option")
        raise OSError(errno.ENOPROTOOPT, "unknown level")

    def _get_tcp(self, name: int):
        if name == TCP_NODELAY:
            return int(self.nodelay)
        if name == TCP_CORK:
            return int(self.cork)
        if name == TCP_MAXSEG:
            if self.state in (CLOSED, LISTEN):
                return self.user_mss or 536
            return self.mss
        if name == TCP_KEEPIDLE:
            return self.keep_idle // SEC
        if name == TCP_KEEPINTVL:
            return self.keep_intvl // SEC
        if name == TCP_KEEPCNT:
            return self.keep_cnt
        if name == TCP_SYNCNT:
            return self.opts.get(name, self.proto.syn_retries)
        if name == TCP_LINGER2:
            return self.opts.get(name, self.proto.fin_timeout // SEC)
        if name == TCP_DEFER_ACCEPT:
            return self.defer_accept
        if name == TCP_WINDOW_CLAMP:
            return self.opts.get(name, 0)
        if name == TCP_INFO:
            return self.tcp_info()
        if name == TCP_QUICKACK:
            return self.opts.get(name, 1)
        if name == TCP_CONGESTION:
            return self.cc.name.encode().ljust(16, b"\0")
        if name == TCP_USER_TIMEOUT:
            return self.user_timeout // MS
        if name == TCP_NOTSENT_LOWAT:
            return self.opts.get(name, 0)
        raise OSError(errno.ENOPROTOOPT, "unknown option")

    def tcp_info(self) -> bytes:
        """struct tcp_info (Linux's layout, times in microseconds, windows
        in segments)."""
        now = self.clock.now_ns()
        st = self.state
        synced = st not in (CLOSED, LISTEN, SYN_SENT)
        opts = 0
        if self.ts_ok:
            opts |= 1
        if self.sack_ok:
            opts |= 2
        if self.peer_ws:
            opts |= 4
        mss = self.mss
        ca_state = 3 if self.in_recovery else (4 if self.retransmits else 0)

        def ago(t):
            return (now - t) // MS if t else 0
        unacked = (self.snd_max - self.snd_una + mss - 1) // mss if synced else 0
        ssthresh = self.ssthresh // mss if self.ssthresh < 0x7FFFFFFF else 0x7FFFFFFF
        rto = self.rto
        rcv_wnd = max(self.rcv_adv - self.rcv_nxt, 0)
        fields = (
            st, ca_state, self.retransmits & 0xFF, self.probes & 0xFF,
            rto.backoff & 0xFF, opts,
            (self.snd_wscale & 15) | ((self.rcv_wscale & 15) << 4), 1,
            rto.rto // 1000, DELACK_US if self.ack_pending else 0,
            mss, self.rcv_mss if synced else 0,
            unacked, 0, 0, 1 if self.retransmits and unacked else 0, 0,
            ago(self.last_data_snd), 0, ago(self.last_data_rcv),
            ago(self.last_ack_rcv),
            (min(self.route.mtu, 65535) if len(self.route.local) == 4 else self.route.mtu)
            if self.route is not None else 0,
            self.rcvbuf, rto.srtt // 1000, rto.rttvar // 1000, ssthresh,
            self.cwnd // mss if synced else 10,
            self.adv_mss, 3,
            0, self.rcvbuf >> 1,
            self.total_retrans,
            0xFFFFFFFFFFFFFFFF, 0xFFFFFFFFFFFFFFFF, self.bytes_acked,
            self.bytes_received, self.segs_out & 0xFFFFFFFF, self.segs_in & 0xFFFFFFFF,
            max(self.sndq.end - self.snd_nxt, 0) & 0xFFFFFFFF, rto.srtt // 1000,
            self.data_segs_in & 0xFFFFFFFF, self.data_segs_out & 0xFFFFFFFF,
            0,
            0, 0, 0,
            (self.bytes_acked // mss) & 0xFFFFFFFF, 0,
            self.bytes_sent, self.bytes_retrans, 0, 0,
            0,
            self.snd_wnd & 0xFFFFFFFF,
            rcv_wnd & 0xFFFFFFFF, 0,
            0, 0, 0,
        )
        return _TCP_INFO.pack(*fields)

