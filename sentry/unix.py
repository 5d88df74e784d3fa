"""AF_UNIX sockets inside the sentry: pairs, named sockets, listeners, and
the control messages only they carry (SCM_RIGHTS, SCM_CREDENTIALS).

Every socket receives into a _Queue of messages: a connected stream or
seqpacket end reads the queue its peer writes (one per direction); a
datagram socket owns its queue and senders append to it. A message keeps
its sender (for recvfrom's address and SIOCOUTQ), the open file
descriptions it carries (one reference each while in flight) and the
credentials attached to it. A stream reader joins messages as Linux does
(net/unix/af_unix.c, unix_stream_read_generic): a read ends after a
message that carries fds, and with SO_PASSCRED never joins messages of
different senders.

Names follow Linux: bind to a path makes an S_IFSOCK file in the
sandbox's VFS (mode 0777 less the umask) and the socket is found again by
that file's identity (st_dev, st_ino), whatever name leads to it;
abstract names (leading NUL) live in the sandbox's own table and never
reach the host. connect to a listener makes the server's end at once and
queues it for accept, so the client may write before accept, as on
Linux; a full backlog makes connectors wait.
"""
from __future__ import annotations

import collections
import errno
import os
import stat as S
import struct

from vfs import ops
from vfs.file import WouldBlock
from vfs.inode import fserr
from vfs.path import W_OK, may_access

from .cmsg import OVERFLOW_ID, drop_description
from .socketfile import (AF_UNIX, SCM_CREDENTIALS, SCM_RIGHTS, SO_PASSCRED, SO_PASSPIDFD, SO_PASSSEC,
                         SOCK_DGRAM, SOCK_RAW, SOCK_SEQPACKET, SOCK_STREAM, SOL_SOCKET, SocketFile)
from .waiter import WaitQueue

POLLIN, POLLOUT, POLLERR, POLLHUP, POLLRDHUP = 1, 4, 8, 16, 0x2000
AF_UNSPEC = 0
MSG_OOB, MSG_PEEK, MSG_TRUNC = 1, 2, 0x20
SNDBUF = 212992        # the default socket buffer size: a stream direction holds this much
SOMAXCONN = 4096       # listen's backlog is capped here
MAX_DGRAM_QLEN = 10    # net.unix.max_dgram_qlen: queued datagrams from strangers
PAIR_QUEUE = 64        # datagrams queued between the two ends of a pair
SUN_PATH = 108
GC_TRIGGER = 1024      # descriptions in flight past which a send with fds looks for cycles first
UCRED = struct.Struct("<iII")


class _Msg:
    __slots__ = ("data", "sender", "fds", "creds")

    def __init__(self, data, sender, fds, creds):
        self.data = data      # bytes (datagram, seqpacket) or bytearray (stream, read from the front)
        self.sender = sender
        self.fds = fds        # FileDescriptions in flight, or None
        self.creds = creds    # (pid, uid, gid) attached by the sender, or None


class _Queue:
    """A socket's receive queue (a connection's direction, or a datagram
    socket's own queue)."""

    def __init__(self):
        self.msgs: collections.deque[_Msg] = collections.deque()
        self.nbytes = 0
        self.readable = WaitQueue()
        self.writable = WaitQueue()
        self.readers = self.writers = 1
        self.capacity = SNDBUF

    def push(self, msg: _Msg) -> None:
        self.msgs.append(msg)
        self.nbytes += len(msg.data)
        msg.sender.wmem += len(msg.data)
        self.readable.notify()

    def consumed(self, msg: _Msg, n: int) -> None:
        self.nbytes -= n
        msg.sender.wmem -= n

    def clear(self) -> None:
        """Nobody will read these: the fds they carry are let go."""
        while self.msgs:
            msg = self.msgs.popleft()
            msg.sender.wmem -= len(msg.data)
            for desc in msg.fds or ():
                _land(desc)
                drop_description(desc)
        self.nbytes = 0
        self.writable.notify()


def encode_name(name: bytes | None) -> bytes:
    """A bound name as the sockaddr_un getsockname returns: a path gets its
    NUL, an abstract name is its bytes; unbound is the family alone."""
    head = AF_UNIX.to_bytes(2, "little")
    if not name:
        return head
    return head + name + (b"\0" if name[0] != 0 else b"")


def parse_addr(raw: bytes) -> bytes:
    """unix_validate_addr plus unix_mkname_bsd: the sun_path a guest's
    sockaddr_un names (a path ends at its first NUL)."""
    if len(raw) <= 2 or len(raw) > 2 + SUN_PATH or int.from_bytes(raw[:2], "little") != AF_UNIX:
        raise fserr(errno.EINVAL)
    path = raw[2:]
    if path[0] == 0:
        return path
    return path.split(b"\0", 1)[0]


class UnixNames:
    """The sandbox's bound names: filesystem sockets by the inode their
    bind made, abstract ones by (type, name): Linux hashes abstract names
    with the socket type, so only sockets of one type meet."""

    def __init__(self):
        self.by_inode: dict[tuple[int, int], UnixSocket] = {}
        self.abstract: dict[tuple[int, bytes], UnixSocket] = {}
        # autobind's first name, random as Linux's (os.urandom: the random
        # module would cost every sandbox's start a millisecond and a half)
        self._auto = int.from_bytes(os.urandom(3), "little") & 0xFFFFF

    def bind(self, sock: "UnixSocket", name: bytes, tree, ctx, umask: int) -> None:
        if name[0] == 0:
            if sock.name is not None:
                raise fserr(errno.EINVAL)
            key = (sock.stype, name)
            if key in self.abstract:
                raise fserr(errno.EADDRINUSE)
            self._register(sock, name, self.abstract, key)
            return
        try:
            ops.mknod(tree, ctx, name, S.S_IFSOCK | 0o777, 0, umask)
        except OSError as e:
            raise fserr(errno.EADDRINUSE if e.errno == errno.EEXIST else e.errno) from None
        if sock.name is not None:  # already bound: Linux made the file, then takes it back
            try:
                ops.unlink(tree, ctx, name)
            except OSError:
                pass
            raise fserr(errno.EINVAL)
        st = tree.resolve(ctx, name, follow=False).inode.stat()
        self._register(sock, name, self.by_inode, (st.dev, st.ino))

    def autobind(self, sock: "UnixSocket") -> None:
        """bind with the family alone: an abstract name of five hex digits."""
        if sock.name is not None:
            return
        for _ in range(1 << 20):
            self._auto = (self._auto + 1) & 0xFFFFF
            name = b"\0%05x" % self._auto
            if (sock.stype, name) not in self.abstract:
                self._register(sock, name, self.abstract, (sock.stype, name))
                return
        raise fserr(errno.ENOSPC)

    def _register(self, sock, name, table, key) -> None:
        table[key] = sock
        sock.name = name
        sock.unbind = lambda: table.pop(key, None) if table.get(key) is sock else None

    def find(self, name: bytes, stype: int, tree, ctx) -> "UnixSocket":
        """unix_find_other: the socket bound at name, of the caller's type."""
        if name[0] == 0:
            other = self.abstract.get((stype, name))
            if other is None:
                raise fserr(errno.ECONNREFUSED)
            return other
        loc = tree.resolve(ctx, name)
        st = loc.inode.stat()
        if not may_access(st, ctx.creds, W_OK):
            raise fserr(errno.EACCES)
        other = self.by_inode.get((st.dev, st.ino)) if S.S_ISSOCK(st.mode) else None
        if other is None:
            raise fserr(errno.ECONNREFUSED)
        if other.stype != stype:
            raise fserr(errno.EPROTOTYPE)
        return other


def names_of(k) -> UnixNames:
    """The sandbox's table of bound AF_UNIX names (one per kernel)."""
    names = getattr(k, "unix_names", None)
    if names is None:
        names = k.unix_names = UnixNames()
    return names


def task_cred(t) -> tuple:
    """(pid, uid, gid) as SO_PEERCRED reports the caller."""
    if t is None:
        return (0, 0, 0)
    c = t.tg.creds
    return (t.tg.tgid, c.euid, c.egid)


def unix_socket(k, t, stype: int, protocol: int) -> "UnixSocket":
    """unix_create: the socket type (SOCK_RAW is taken as SOCK_DGRAM)."""
    if protocol and protocol != AF_UNIX:
        raise fserr(errno.EPROTONOSUPPORT)
    if stype == SOCK_RAW:
        stype = SOCK_DGRAM
    if stype not in (SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET):
        raise fserr(errno.ESOCKTNOSUPPORT)
    return UnixSocket(k, stype, task_cred(t))


class UnixSocket(SocketFile):
    family = AF_UNIX
    scm_capable = True
    handles_errqueue = True   # Linux's AF_UNIX ignores MSG_ERRQUEUE

    def __init__(self, k, stype: int, cred: tuple = (0, 0, 0)):
        super().__init__(k, stype, 0)
        self.cred = cred           # (pid, uid, gid) of the creator; of the caller of listen or connect
        self.peer_creds: tuple | None = None  # what SO_PEERCRED reports
        self.name: bytes | None = None
        self.unbind = None         # drops the bound name from its table
        self.peer: UnixSocket | None = None
        self.rx: _Queue | None = None   # what this socket reads
        self.tx: _Queue | None = None   # a connection's other direction
        self.shut_rd = self.shut_wr = False
        self.closed = False
        self.err = 0               # pending error (ECONNRESET), reported once
        self.listening = False
        self.attached = True       # False for a server end not yet accepted (it takes credentials)
        self.wmem = 0              # bytes sent and not yet read (SIOCOUTQ)
        self.backlog = 0
        self.pending: collections.deque[UnixSocket] = collections.deque()
        self.accept_q = WaitQueue()   # a connection arrived (a listener is readable)
        self.peer_wait = WaitQueue()  # room in a listener's backlog
        if stype == SOCK_DGRAM:
            self.rx = _Queue()

    @property
    def connected(self) -> bool:
        if self.stype == SOCK_DGRAM:
            return self.peer is not None
        return self.rx is not None

    def take_error(self) -> int:
        err = super().take_error()
        if not err:
            err, self.err = self.err, 0
        return err

    def peer_cred(self):
        return self.peer_creds

    def supports_peek_off(self) -> bool:
        return True

    def pending_in(self) -> int:
        """unix_inq_len: a stream's or seqpacket's queued bytes, a datagram
        socket's next message."""
        if self.listening:
            raise fserr(errno.EINVAL)
        q = self.rx
        if q is None or not q.msgs:
            return 0
        return q.nbytes if self.stype != SOCK_DGRAM else len(q.msgs[0].data)

    def pending_out(self) -> int:
        return self.wmem  # Linux counts buffer overhead too; we count bytes

    # --- names ---
    def bind(self, k, t, raw: bytes) -> None:
        names = names_of(k)
        if raw == encode_name(None):
            names.autobind(self)
            return
        names.bind(self, parse_addr(raw), k.mounts, k.path_context(t), t.tg.fs.umask)

    def getsockname(self, k, t) -> bytes:
        return encode_name(self.name)

    def getpeername(self, k, t) -> bytes:
        if self.peer is None:
            raise fserr(errno.ENOTCONN)
        return encode_name(self.peer.name)

    def _find(self, k, t, raw: bytes) -> "UnixSocket":
        return names_of(k).find(parse_addr(raw), self.stype, k.mounts, k.path_context(t))

    def _autobind_for_creds(self, k) -> None:
        """A socket that passes credentials gets a name on connect and send,
        as Linux gives it one (the receiver can then answer)."""
        if (self.passcred or self.opts.get(SO_PASSPIDFD)) and self.name is None:
            names_of(k).autobind(self)

    # --- connections ---
    def connect(self, k, t, raw: bytes, nonblocking: bool) -> None:
        if self.stype == SOCK_DGRAM:
            if len(raw) < 2:
                raise fserr(errno.EINVAL)
            if int.from_bytes(raw[:2], "little") == AF_UNSPEC:
                self.connect_dgram(None)  # dissolve the association
                return
            parse_addr(raw)
            self._autobind_for_creds(k)
            self.connect_dgram(self._find(k, t, raw))
            return
        parse_addr(raw)
        self._autobind_for_creds(k)
        self.connect_to(self._find(k, t, raw), task_cred(t))

    def pair(self, k, t, other: "UnixSocket") -> None:
        cred = task_cred(t)
        self.peer_creds = other.peer_creds = cred
        if self.stype == SOCK_DGRAM:
            self.peer, other.peer = other, self
        else:
            _wire(self, other)

    def listen(self, k, t, backlog: int) -> None:
        if self.stype == SOCK_DGRAM:
            raise fserr(errno.EOPNOTSUPP)
        if self.name is None or self.connected:
            raise fserr(errno.EINVAL)
        backlog = backlog if 0 <= backlog <= SOMAXCONN else SOMAXCONN
        if backlog > self.backlog:
            self.peer_wait.notify()
        self.backlog = backlog
        self.listening = True
        self.cred = task_cred(t)  # what connecting clients will see

    def connect_to(self, other: "UnixSocket", cred: tuple) -> None:
        """unix_stream_connect: the server's end is made now and queued for
        accept. WouldBlock while other's backlog is full."""
        if not other.listening or other.shut_rd or other.closed:
            raise fserr(errno.ECONNREFUSED)
        if len(other.pending) > other.backlog:
            raise WouldBlock(other.peer_wait, POLLOUT)
        if self.connected:
            raise fserr(errno.EISCONN)
        if self.listening:
            raise fserr(errno.EINVAL)
        server = UnixSocket(self.kernel, self.stype, other.cred)
        server.name = other.name
        server.attached = False
        self.cred = server.peer_creds = cred
        self.peer_creds = other.cred
        _wire(self, server)
        other.pending.append(server)
        other.accept_q.notify()
        self.accept_q.notify()  # pollers of the unconnected socket see it connected

    def accept(self, k, t) -> tuple["UnixSocket", bytes]:
        if self.stype == SOCK_DGRAM:
            raise fserr(errno.EOPNOTSUPP)
        if not self.listening:
            raise fserr(errno.EINVAL)
        if not self.pending:
            if self.shut_rd:
                raise fserr(errno.EINVAL)
            raise WouldBlock(self.accept_q, POLLIN)
        server = self.pending.popleft()
        self.peer_wait.notify()
        server.attached = True
        for opt in (SO_PASSCRED, SO_PASSPIDFD, SO_PASSSEC):  # unix_sock_inherit_flags
            if opt in self.opts:
                server.opts[opt] = self.opts[opt]
        peer = server.peer
        return server, encode_name(peer.name if peer is not None else None)

    def connect_dgram(self, other: "UnixSocket | None") -> None:
        """connect on a datagram socket: the default destination (None:
        AF_UNSPEC, disconnect). EPERM if other is connected elsewhere."""
        if other is not None and not _may_send(self, other):
            raise fserr(errno.EPERM)
        self.peer = other

    # --- sending ---
    def sendmsg(self, k, t, data: bytes, raw_to, control: list, flags: int) -> int:
        fds, creds = _scm(control)
        if flags & MSG_OOB:
            raise fserr(errno.EOPNOTSUPP)
        if self.stype == SOCK_STREAM:
            if raw_to:
                raise fserr(errno.EISCONN if self.connected else errno.EOPNOTSUPP)
            return self._send_stream(t, data, fds, creds)
        if self.stype == SOCK_SEQPACKET:
            if self.err:
                raise fserr(self.take_error())
            if not self.connected:
                raise fserr(errno.ENOTCONN)
            return self._send_seqpacket(t, data, fds, creds)
        return self._send_dgram(k, t, data, raw_to or None, fds, creds)

    def _creds_for(self, t, other: "UnixSocket", claimed) -> tuple | None:
        """maybe_add_creds: the sender's (pid, uid, gid) go with a message
        when either end passes credentials, or the receiver is not yet
        accepted; credentials the sender claimed always go."""
        if claimed is not None:
            return claimed
        if self.passcred or other.passcred or not other.attached:
            c = t.tg.creds
            return (t.tg.tgid, c.uid, c.gid)
        return None

    def _message(self, t, data, other, fds, creds) -> _Msg:
        if fds:
            if len(_inflight) > GC_TRIGGER:
                collect_cycles()
            fds = [_fly(d) for d in fds]
        return _Msg(data, self, fds or None, self._creds_for(t, other, creds))

    def _send_stream(self, t, data: bytes, fds, creds) -> int:
        if not self.connected:
            raise fserr(errno.ENOTCONN)
        q = self.tx
        if self.shut_wr or q.readers == 0:
            raise fserr(errno.EPIPE)
        if not data:
            return 0  # nothing is queued, so fds sent with no bytes are not passed
        room = q.capacity - q.nbytes
        if room <= 0:
            raise WouldBlock(q.writable, POLLOUT)
        chunk = data[:room]
        q.push(self._message(t, bytearray(chunk), self.peer, fds, creds))
        return len(chunk)

    def _send_seqpacket(self, t, data: bytes, fds, creds) -> int:
        q = self.tx
        if self.shut_wr or q.readers == 0:
            raise fserr(errno.EPIPE)
        if len(data) > self.sndbuf - 32:
            raise fserr(errno.EMSGSIZE)
        if len(q.msgs) >= PAIR_QUEUE:
            raise WouldBlock(q.writable, POLLOUT)
        q.push(self._message(t, bytes(data), self.peer, fds, creds))
        return len(data)

    def _send_dgram(self, k, t, data: bytes, raw_to, fds, creds) -> int:
        """To the named socket, or the connected peer."""
        other = None
        if raw_to is not None:
            name = parse_addr(raw_to)
        elif self.peer is None:
            raise fserr(errno.ENOTCONN)
        self._autobind_for_creds(k)
        if len(data) > self.sndbuf - 32:
            raise fserr(errno.EMSGSIZE)
        if self.shut_wr:
            raise fserr(errno.EPIPE)
        if raw_to is not None:
            other = names_of(k).find(name, self.stype, k.mounts, k.path_context(t))
        else:
            other = self.peer
            if other.closed:  # the peer went away: report it once, then forget it
                self.peer = None
                raise fserr(errno.ECONNREFUSED)
        if other.closed:
            raise fserr(errno.ECONNREFUSED)
        if not _may_send(self, other):
            raise fserr(errno.EPERM)
        if other.shut_rd:
            raise fserr(errno.EPIPE)
        q = other.rx
        if _queue_full(self, other):
            raise WouldBlock(q.writable, POLLOUT)
        q.push(self._message(t, bytes(data), other, fds, creds))
        return len(data)

    # --- receiving ---
    def recvmsg(self, k, t, size: int, flags: int):
        if flags & MSG_OOB:
            raise fserr(errno.EOPNOTSUPP)
        if self.stype == SOCK_STREAM:
            return self._recv_stream(size, flags)
        return self._recv_message(size, flags)

    def _control(self, creds_seen: bool, creds, fds) -> list:
        """scm_recv: credentials first (with SO_PASSCRED), then the fds."""
        control = []
        if self.passcred:
            pid, uid, gid = creds if creds is not None else \
                ((0, OVERFLOW_ID, OVERFLOW_ID) if creds_seen else (0, 0, 0))
            control.append((SOL_SOCKET, SCM_CREDENTIALS, UCRED.pack(pid, uid, gid)))
        if fds:
            control.append((SOL_SOCKET, SCM_RIGHTS, fds))
        return control

    def _recv_stream(self, size: int, flags: int):
        if not self.connected:
            raise fserr(errno.EINVAL)
        q = self.rx
        peek = bool(flags & MSG_PEEK)
        skip = max(self.peek_off, 0) if peek else 0
        if q.nbytes <= skip:
            if self.err:
                raise fserr(self.take_error())
            if q.writers == 0 or self.shut_rd or size == 0:
                return b"", 0, None, self._control(False, None, None), 0
            raise WouldBlock(q.readable, POLLIN)
        out = bytearray()
        fds = None
        creds, creds_seen = None, False
        i = 0
        while True:
            while skip >= len(q.msgs[i].data):  # bytes a peek offset passes over
                skip -= len(q.msgs[i].data)
                i += 1
            m = q.msgs[i]
            if self.passcred:
                if creds_seen and m.creds != creds:
                    break  # never glue messages from different writers
                creds, creds_seen = m.creds, True
            chunk = m.data[skip:skip + size]
            out += chunk
            size -= len(chunk)
            if peek:
                if m.fds:
                    fds = [d.incref() for d in m.fds]  # a peek passes copies
                    break
                skip = 0
                i += 1
                if not size or i >= len(q.msgs):
                    break
                continue
            del m.data[:len(chunk)]
            q.consumed(m, len(chunk))
            if m.fds:
                fds, m.fds = _landed(m.fds), None
            if m.data:
                break
            q.msgs.popleft()
            if fds or not size or not q.msgs:
                break
        self._moved_peek(len(out), peek)
        if not peek:
            q.writable.notify()
        peer = self.peer
        frm = encode_name(peer.name) if out and peer is not None and peer.name else None
        return bytes(out), len(out), frm, self._control(True, creds, fds), 0

    def _moved_peek(self, n: int, peek: bool) -> None:
        """sk_peek_offset_fwd/bwd: SO_PEEK_OFF follows what is peeked and read."""
        if self.peek_off >= 0:
            self.peek_off = self.peek_off + n if peek else max(self.peek_off - n, 0)

    def _recv_message(self, size: int, flags: int):
        """unix_dgram_recvmsg (datagram and seqpacket)."""
        if not self.connected and self.stype == SOCK_SEQPACKET:
            raise fserr(errno.ENOTCONN)
        q = self.rx
        peek = bool(flags & MSG_PEEK)
        skip = max(self.peek_off, 0) if peek else 0
        i = 0
        while i < len(q.msgs) and skip and skip >= len(q.msgs[i].data):
            skip -= len(q.msgs[i].data)
            i += 1
        if i >= len(q.msgs):
            if self.err:
                raise fserr(self.take_error())
            if self.shut_rd or (self.stype == SOCK_SEQPACKET and q.writers == 0):
                return b"", 0, None, [], 0
            raise WouldBlock(q.readable, POLLIN)
        m = q.msgs[i]
        data = m.data[skip:skip + size]
        full = len(m.data) - skip
        if peek:
            fds = [d.incref() for d in m.fds] if m.fds else None
        else:
            q.msgs.popleft()
            q.consumed(m, len(m.data))
            fds, m.fds = _landed(m.fds), None
            q.writable.notify()
        self._moved_peek(len(data) if peek else len(m.data), peek)
        sender = m.sender
        frm = encode_name(sender.name) if sender.name is not None else None
        ret = full if flags & MSG_TRUNC else len(data)
        return bytes(data), ret, frm, self._control(True, m.creds, fds), MSG_TRUNC if full > len(data) else 0

    def shutdown(self, k, t, how: int) -> None:
        """unix_shutdown: allowed unconnected; on a connection the peer's
        opposite direction closes too."""
        if how in (0, 2):  # SHUT_RD
            if not self.shut_rd:
                self.shut_rd = True
                if self.rx is not None and self.stype != SOCK_DGRAM:
                    self.rx.readers -= 1
                if self.rx is not None:
                    self.rx.writable.notify()
                    self.rx.readable.notify()
        if how in (1, 2):  # SHUT_WR
            if not self.shut_wr:
                self.shut_wr = True
                if self.tx is not None and self.stype != SOCK_DGRAM:
                    self.tx.writers -= 1
                    self.tx.readable.notify()
        self.accept_q.notify()

    # --- readiness ---
    def readiness(self) -> int:
        r = POLLERR if self.err else 0
        if self.listening:
            return r | (POLLIN if self.pending else 0)
        if self.stype == SOCK_DGRAM:
            if self.rx.msgs:
                r |= POLLIN
            if self.shut_rd:
                r |= POLLIN | POLLRDHUP
                if self.shut_wr:
                    r |= POLLHUP
            other = self.peer
            if other is None or other.closed or not _queue_full(self, other):
                r |= POLLOUT
            return r
        if not self.connected:
            return r | POLLOUT | POLLHUP
        rx, tx = self.rx, self.tx
        rcv_down = self.shut_rd or rx.writers == 0
        snd_down = self.shut_wr or tx.readers == 0
        if rcv_down:
            r |= POLLIN | POLLRDHUP
        if rx.msgs:
            r |= POLLIN
        if rcv_down and snd_down:
            r |= POLLHUP
        # Linux reports a socket whose peer is gone writable: the write fails at once
        room = tx.capacity - tx.nbytes if self.stype == SOCK_STREAM else PAIR_QUEUE - len(tx.msgs)
        if room > 0 or tx.readers == 0:
            r |= POLLOUT
        return r

    def wait_queues(self):
        if self.listening or not self.connected and self.stype != SOCK_DGRAM:
            return (self.accept_q,)
        if self.stype == SOCK_DGRAM:
            other = self.peer
            return (self.rx.readable,) + ((other.rx.writable,) if other is not None else ())
        return (self.rx.readable, self.tx.writable)

    def release(self) -> None:
        self._release()
        if _inflight:
            collect_cycles()

    def _release(self) -> None:
        self.closed = True
        if self.unbind is not None:
            self.unbind()
            self.unbind = None
        while self.pending:  # connections never accepted: their clients see ECONNRESET
            self.pending.popleft()._drop(reset=True)
        self.peer_wait.notify()
        self.accept_q.notify()
        if self.stype == SOCK_DGRAM:
            self.rx.clear()
            self.peer = None
            return
        if self.connected:
            self._drop(reset=bool(self.rx.msgs))

    def _drop(self, reset: bool) -> None:
        """Close a connected end; with reset the peer gets ECONNRESET
        (data left unread here, or a connection never accepted). What
        was sent here is let go."""
        self.closed = True
        if reset and self.peer is not None:
            self.peer.err = errno.ECONNRESET
        if not self.shut_rd:
            self.rx.readers -= 1
        if not self.shut_wr:
            self.tx.writers -= 1
            self.tx.readable.notify()
        self.shut_rd = self.shut_wr = True
        self.rx.clear()


# Open file descriptions in flight (queued in a message) -> how many times.
# A unix socket whose every reference is in flight can only be reached
# through the queues of other sockets; collect_cycles finds the ones that
# no socket outside such a cycle can reach (Linux's unix_gc).
_inflight: dict = {}
_collecting = False


def _fly(desc):
    _inflight[desc] = _inflight.get(desc, 0) + 1
    return desc.incref()


def _land(desc) -> None:
    n = _inflight.get(desc, 0) - 1
    if n > 0:
        _inflight[desc] = n
    else:
        _inflight.pop(desc, None)


def _landed(fds):
    """fds leave the queue for a receiver (their references go with them)."""
    for desc in fds or ():
        _land(desc)
    return fds


def _queues(sock: "UnixSocket"):
    """What sock will receive: its queue, and a listener's unaccepted connections'."""
    if sock.rx is not None:
        yield sock.rx
    for server in sock.pending:
        yield server.rx


def _carried(sock: "UnixSocket"):
    for q in _queues(sock):
        for m in q.msgs:
            yield from m.fds or ()


def collect_cycles() -> None:
    global _collecting
    if _collecting:
        return
    _collecting = True
    try:
        cands = {d for d, n in _inflight.items() if d.refs == n and isinstance(d.impl, UnixSocket)}
        inner: dict = {}
        for d in cands:
            for x in _carried(d.impl):
                if x in cands:
                    inner[x] = inner.get(x, 0) + 1
        # reachable from outside: more references in flight than the candidates' queues hold
        live = [d for d in cands if inner.get(d, 0) < _inflight[d]]
        while live:
            d = live.pop()
            if d in cands:
                cands.discard(d)
                live.extend(x for x in _carried(d.impl) if x in cands)
        for d in cands:  # garbage: empty its queues; what they carried is let go
            for q in list(_queues(d.impl)):
                q.clear()
    finally:
        _collecting = False


def _scm(control: list) -> tuple[list | None, tuple | None]:
    """The fds and claimed credentials of a send; other SOL_SOCKET messages
    are EINVAL, other levels are ignored."""
    fds = creds = None
    for level, ctype, payload in control:
        if level != SOL_SOCKET:
            continue
        if ctype == SCM_RIGHTS:
            fds = payload
        elif ctype == SCM_CREDENTIALS:
            creds = UCRED.unpack(payload)
        else:
            raise fserr(errno.EINVAL)
    return fds, creds


def _may_send(sock: UnixSocket, other: UnixSocket) -> bool:
    """unix_may_send: other takes datagrams from anyone unless it is
    connected to someone else."""
    return other.peer is None or other.peer is sock


def _queue_full(sock: UnixSocket, other: UnixSocket) -> bool:
    """A datagram queue takes max_dgram_qlen + 1 messages from strangers;
    between the two ends of a pair only the send buffer limits it."""
    if other.peer is sock:
        return len(other.rx.msgs) >= PAIR_QUEUE
    return len(other.rx.msgs) > MAX_DGRAM_QLEN


def _wire(a: UnixSocket, b: UnixSocket) -> None:
    """Connect a and b: one queue per direction."""
    ab, ba = _Queue(), _Queue()
    a.tx, a.rx, b.tx, b.rx = ab, ba, ba, ab
    a.peer, b.peer = b, a
