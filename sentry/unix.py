"""AF_UNIX sockets inside the sentry: pairs, named sockets, listeners.

A connected stream socket is two pipes, one per direction; a seqpacket
connection two message queues; a datagram socket owns its receive queue
and senders append to it (with the sender, for recvfrom's address).

Names follow Linux (net/unix/af_unix.c): bind to a path makes an S_IFSOCK
file in the sandbox's VFS (mode 0777 less the umask) and the socket is
found again by that file's identity (st_dev, st_ino), whatever name leads
to it; abstract names (leading NUL) live in the sandbox's own table and
never reach the host. connect to a listener makes the server's end at
once and queues it for accept, so the client may write before accept, as
on Linux; a full backlog makes connectors wait.
"""
from __future__ import annotations

import collections
import errno
import itertools
import random
import stat as S

from vfs import ops
from vfs.file import WouldBlock
from vfs.inode import FileDescriptionImpl, Stat, fserr, now_ns
from vfs.path import W_OK, may_access

from .pipe import Pipe
from .waiter import WaitQueue

SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET = 1, 2, 5
AF_UNIX = 1
POLLIN, POLLOUT, POLLERR, POLLHUP, POLLRDHUP = 1, 4, 8, 16, 0x2000
SNDBUF = 212992        # the default socket buffer size
SOMAXCONN = 4096       # listen's backlog is capped here
MAX_DGRAM_QLEN = 10    # net.unix.max_dgram_qlen: queued datagrams from strangers
PAIR_QUEUE = 64        # datagrams queued between the two ends of a pair
SUN_PATH = 108
_ino = itertools.count(1)


class _Messages:
    """A queue of messages: a datagram socket's receive queue, or one
    direction of a seqpacket connection. Entries are (bytes, sender)."""

    def __init__(self):
        self.queue = collections.deque()
        self.readable = WaitQueue()
        self.writable = WaitQueue()
        self.readers = self.writers = 1


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
        self._auto = random.randrange(1 << 20)

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


class UnixSocket(FileDescriptionImpl):
    seekable = False

    def __init__(self, stype: int, cred: tuple = (0, 0, 0)):
        self.stype = stype
        self.ino = next(_ino)
        self.ctime = now_ns()
        self.cred = cred           # (pid, uid, gid) of the creator; of the caller of listen or connect
        self.peer_cred: tuple | None = None  # what SO_PEERCRED reports
        self.name: bytes | None = None
        self.unbind = None         # drops the bound name from its table
        self.peer: UnixSocket | None = None
        self.rx = self.tx = None   # stream: Pipes; seqpacket: _Messages; dgram: rx only
        self.shut_rd = self.shut_wr = False
        self.closed = False
        self.err = 0               # pending error (ECONNRESET), reported once
        self.listening = False
        self.backlog = 0
        self.pending: collections.deque[UnixSocket] = collections.deque()
        self.accept_q = WaitQueue()   # a connection arrived (a listener is readable)
        self.peer_wait = WaitQueue()  # room in a listener's backlog or a datagram queue
        if stype == SOCK_DGRAM:
            self.rx = _Messages()

    # --- identity ---
    def stat(self) -> Stat:
        return Stat(mode=S.S_IFSOCK | 0o777, ino=self.ino, dev=0x8, atime_ns=self.ctime,
                    mtime_ns=self.ctime, ctime_ns=self.ctime)

    def link_name(self) -> bytes:
        return b"socket:[%d]" % self.ino

    @property
    def connected(self) -> bool:
        if self.stype == SOCK_DGRAM:
            return self.peer is not None
        return self.rx is not None

    def take_error(self) -> int:
        err, self.err = self.err, 0
        return err

    # --- connections (stream and seqpacket) ---
    def listen(self, backlog: int, cred: tuple) -> None:
        if self.stype == SOCK_DGRAM:
            raise fserr(errno.EOPNOTSUPP)
        if self.name is None or self.connected:
            raise fserr(errno.EINVAL)
        backlog = backlog if 0 <= backlog <= SOMAXCONN else SOMAXCONN
        if backlog > self.backlog:
            self.peer_wait.notify()
        self.backlog = backlog
        self.listening = True
        self.cred = cred  # what connecting clients will see

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
        server = UnixSocket(self.stype, other.cred)
        server.name = other.name
        self.cred = server.peer_cred = cred
        self.peer_cred = other.cred
        _wire(self, server)
        other.pending.append(server)
        other.accept_q.notify()
        self.accept_q.notify()  # pollers of the unconnected socket see it connected

    def accept(self) -> "UnixSocket":
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
        return server

    # --- datagrams ---
    def connect_dgram(self, other: "UnixSocket | None") -> None:
        """connect on a datagram socket: the default destination (None:
        AF_UNSPEC, disconnect). EPERM if other is connected elsewhere."""
        if other is not None and not _may_send(self, other):
            raise fserr(errno.EPERM)
        self.peer = other

    def send_to(self, other: "UnixSocket | None", data: bytes) -> int:
        """A datagram (dgram, or seqpacket over its connection) to other, or
        to the connected peer when other is None."""
        if self.stype != SOCK_DGRAM:
            return self.send(data)  # a connection's send (the address was checked)
        if len(data) > SNDBUF - 32:
            raise fserr(errno.EMSGSIZE)
        if self.shut_wr:
            raise fserr(errno.EPIPE)
        if other is None:
            other = self.peer
            if other is None:
                raise fserr(errno.ENOTCONN)
            if other.closed:  # the peer went away: report it once, then forget it
                self.peer = None
                raise fserr(errno.ECONNREFUSED)
        elif other.closed:
            raise fserr(errno.ECONNREFUSED)
        if not _may_send(self, other):
            raise fserr(errno.EPERM)
        if other.shut_rd:
            raise fserr(errno.EPIPE)
        q = other.rx
        if _queue_full(self, other):
            raise WouldBlock(q.writable, POLLOUT)
        q.queue.append((bytes(data), self))
        q.readable.notify()
        return len(data)

    # --- data ---
    def recv_msg(self, size: int, peek: bool = False) -> tuple[bytes, int, "UnixSocket | None"]:
        """(data, the message's full length, sender)."""
        if self.stype == SOCK_STREAM:
            if not self.connected:
                raise fserr(errno.EINVAL)
            p = self.rx
            if not p.buf:
                if self.err:
                    raise fserr(self.take_error())
                if p.writers == 0 or self.shut_rd or size == 0:
                    return b"", 0, self.peer
                raise WouldBlock(p.readable, POLLIN)
            data = bytes(p.buf[:size])
            if not peek:
                del p.buf[:size]
                p.writable.notify()
            return data, len(data), self.peer
        if not self.connected and self.stype == SOCK_SEQPACKET:
            raise fserr(errno.ENOTCONN)
        if self.err:
            raise fserr(self.take_error())
        q = self.rx
        if not q.queue:
            if self.shut_rd or (self.stype == SOCK_SEQPACKET and q.writers == 0):
                return b"", 0, None
            raise WouldBlock(q.readable, POLLIN)
        msg, sender = q.queue[0] if peek else q.queue.popleft()
        if not peek:
            q.writable.notify()
        return msg[:size], len(msg), sender

    def recv(self, size: int, peek: bool = False) -> bytes:
        return self.recv_msg(size, peek)[0]

    def send(self, data: bytes) -> int:
        if self.stype == SOCK_DGRAM:
            return self.send_to(None, data)
        if not self.connected:
            raise fserr(errno.ENOTCONN)
        if self.shut_wr or self.tx.readers == 0:
            raise fserr(errno.EPIPE)
        if self.stype == SOCK_STREAM:
            p = self.tx
            if not data:
                return 0
            room = p.capacity - len(p.buf)
            if room <= 0:
                raise WouldBlock(p.writable, POLLOUT)
            p.buf += data[:room]
            p.readable.notify()
            return min(room, len(data))
        q = self.tx
        if len(data) > SNDBUF - 32:
            raise fserr(errno.EMSGSIZE)
        if len(q.queue) >= PAIR_QUEUE:
            raise WouldBlock(q.writable, POLLOUT)
        q.queue.append((bytes(data), self))
        q.readable.notify()
        return len(data)

    def send_room(self) -> tuple[int, WaitQueue | None]:
        """For sendfile and splice from a stream: what a stream send takes
        now, and the queue to wait on when that is nothing."""
        if self.stype == SOCK_STREAM and self.connected and self.tx.readers and not self.shut_wr:
            return max(0, self.tx.capacity - len(self.tx.buf)), self.tx.writable
        return SNDBUF, None  # the send itself decides (a message, or an error)

    def pread(self, size, offset):
        return self.recv(size)

    def pwrite(self, data, offset):
        return self.send(data)

    def shutdown(self, how: int) -> None:
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
            if self.rx.queue:
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
        if rx.buf if self.stype == SOCK_STREAM else rx.queue:
            r |= POLLIN
        if rcv_down and snd_down:
            r |= POLLHUP
        # Linux reports a socket whose peer is gone writable: the write fails at once
        room = tx.capacity - len(tx.buf) if self.stype == SOCK_STREAM else PAIR_QUEUE - len(tx.queue)
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
        self.closed = True
        if self.unbind is not None:
            self.unbind()
            self.unbind = None
        while self.pending:  # connections never accepted: their clients see ECONNRESET
            self.pending.popleft()._drop(reset=True)
        self.peer_wait.notify()
        self.accept_q.notify()
        if self.stype == SOCK_DGRAM:
            self.rx.queue.clear()
            self.rx.writable.notify()
            self.peer = None
            return
        if self.connected:
            self._drop(reset=bool(self.rx.buf if self.stype == SOCK_STREAM else self.rx.queue))

    def _drop(self, reset: bool) -> None:
        """Close a connected end; with reset the peer gets ECONNRESET
        (data left unread here, or a connection never accepted)."""
        self.closed = True
        if reset and self.peer is not None:
            self.peer.err = errno.ECONNRESET
        if not self.shut_rd:
            self.rx.readers -= 1
            self.rx.writable.notify()
        if not self.shut_wr:
            self.tx.writers -= 1
            self.tx.readable.notify()
        self.shut_rd = self.shut_wr = True


def _may_send(sock: UnixSocket, other: UnixSocket) -> bool:
    """unix_may_send: other takes datagrams from anyone unless it is
    connected to someone else."""
    return other.peer is None or other.peer is sock


def _queue_full(sock: UnixSocket, other: UnixSocket) -> bool:
    """A datagram queue takes max_dgram_qlen + 1 messages from strangers;
    between the two ends of a pair only the send buffer limits it."""
    if other.peer is sock:
        return len(other.rx.queue) >= PAIR_QUEUE
    return len(other.rx.queue) > MAX_DGRAM_QLEN


def _wire(a: UnixSocket, b: UnixSocket) -> None:
    """Connect a and b (stream: two pipes; seqpacket: two queues)."""
    if a.stype == SOCK_STREAM:
        ab, ba = Pipe(), Pipe()
        for p in (ab, ba):
            p.readers = p.writers = 1
            p.capacity = SNDBUF
    else:
        ab, ba = _Messages(), _Messages()
    a.tx, a.rx, b.tx, b.rx = ab, ba, ba, ab
    a.peer, b.peer = b, a


def socketpair(stype: int, cred: tuple = (0, 0, 0)) -> tuple[UnixSocket, UnixSocket]:
    a, b = UnixSocket(stype, cred), UnixSocket(stype, cred)
    a.peer_cred = b.peer_cred = cred
    if stype == SOCK_DGRAM:
        a.peer, b.peer = b, a
    else:
        _wire(a, b)
    return a, b
