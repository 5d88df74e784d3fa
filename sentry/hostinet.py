"""--network=host: AF_INET/AF_INET6 sockets proxied to host sockets, as
runsc's hostinet. WEAKER ISOLATION: the guest's packets go through the
host kernel's TCP/IP, and it reaches whatever the host reaches (the host's
own 127.0.0.1 included).

Each guest socket is one non-blocking host socket held by the sentry.
Addresses travel as raw sockaddr bytes, so the host kernel validates them
with Linux's own errors; a call that would block parks the task on the
socket's wait queue, which the kernel's loop wakes from the host fd. What the guest may ask of the host
is fenced: SOCK_STREAM (TCP) and SOCK_DGRAM (UDP, ICMP echo) only (no raw
sockets), socket options from an allow-list, control messages from an
allow-list (never SCM_RIGHTS), ports below 1024 for guest root only, and
read-only interface ioctls.
"""
from __future__ import annotations

import ctypes
import errno
import os
import select
import socket
import struct

from vfs.file import WouldBlock
from vfs.inode import fserr

from .waiter import WaitQueue

from .socketfile import (AF_INET, AF_INET6, SO_ACCEPTCONN, SO_BROADCAST, SO_DONTROUTE, SO_ERROR,
                         SO_KEEPALIVE, SO_LINGER, SO_OOBINLINE, SO_RCVBUF, SO_RCVLOWAT, SO_REUSEADDR,
                         SO_REUSEPORT, SO_SNDBUF, SO_TIMESTAMP_NEW, SO_TIMESTAMP_OLD, SO_TIMESTAMPNS_NEW,
                         SO_TIMESTAMPNS_OLD, SOCK_DGRAM, SOCK_STREAM, SOL_SOCKET, SocketFile, privileged,
                         NET_BIND_SERVICE)

IPPROTO_IP, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_IPV6, IPPROTO_ICMPV6 = 0, 1, 6, 17, 41, 58
POLLIN, POLLPRI, POLLOUT, POLLERR, POLLHUP, POLLRDHUP = 0x1, 0x2, 0x4, 0x8, 0x10, 0x2000
MSG_OOB, MSG_PEEK, MSG_DONTROUTE, MSG_TRUNC, MSG_DONTWAIT, MSG_EOR = 0x1, 0x2, 0x4, 0x20, 0x40, 0x80
MSG_WAITALL, MSG_CONFIRM, MSG_ERRQUEUE, MSG_NOSIGNAL, MSG_MORE = 0x100, 0x800, 0x2000, 0x4000, 0x8000
SOCK_NONBLOCK, SOCK_CLOEXEC = os.O_NONBLOCK, os.O_CLOEXEC
PROT_PORT_MAX = 1024        # net.ipv4.ip_unprivileged_port_start
SOCKADDR_MAX = 128
CONTROL_MAX = 4096
OPTLEN_MAX = 1024

# Protocols a guest may open per socket type (0: the type's default).
PROTOCOLS = {SOCK_STREAM: {0, IPPROTO_TCP},
             SOCK_DGRAM: {0, IPPROTO_UDP, IPPROTO_ICMP, IPPROTO_ICMPV6}}

# Options passed to the host socket: (level, name) -> settable. Anything
# else at SOL_SOCKET is the sentry's own (socketfile.SocketFile: timeouts,
# SO_PRIORITY, SO_BINDTODEVICE...); at other levels ENOPROTOOPT. Left out
# on purpose: what needs privileges the sentry has and the guest may not
# (IP_TRANSPARENT, SO_MARK, SO_*BUFFORCE, IP_FREEBIND, TCP_CONGESTION's
# module loading), filters, and raw-socket options.
_SOL = {SO_REUSEADDR, SO_REUSEPORT, SO_KEEPALIVE, SO_BROADCAST, SO_LINGER, SO_OOBINLINE, SO_RCVLOWAT,
        SO_SNDBUF, SO_RCVBUF, SO_DONTROUTE, SO_TIMESTAMP_OLD, SO_TIMESTAMPNS_OLD, SO_TIMESTAMP_NEW,
        SO_TIMESTAMPNS_NEW}
_SOL_GET_ONLY = {SO_ERROR, SO_ACCEPTCONN}
_TCP = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 18, 23, 25}   # NODELAY MAXSEG CORK KEEPIDLE KEEPINTVL KEEPCNT
# SYNCNT LINGER2 DEFER_ACCEPT WINDOW_CLAMP QUICKACK USER_TIMEOUT FASTOPEN NOTSENT_LOWAT
_TCP_GET_ONLY = {11, 13}                                  # TCP_INFO, TCP_CONGESTION
_IP = {1, 2, 8, 10, 11, 12, 13, 24, 32, 33, 34, 35, 36}   # TOS TTL PKTINFO MTU_DISCOVER RECVERR RECVTTL
# RECVTOS BIND_ADDRESS_NO_PORT MULTICAST_IF MULTICAST_TTL MULTICAST_LOOP ADD/DROP_MEMBERSHIP
_IP_GET_ONLY = {14}                                       # IP_MTU
_IPV6 = {16, 17, 18, 19, 20, 21, 23, 25, 26, 49, 51, 66, 67}  # UNICAST_HOPS MULTICAST_IF/HOPS/LOOP
# JOIN/LEAVE_GROUP MTU_DISCOVER RECVERR V6ONLY RECVPKTINFO RECVHOPLIMIT RECVTCLASS TCLASS
_IPV6_GET_ONLY = {24}                                     # IPV6_MTU
_SETTABLE = {SOL_SOCKET: _SOL, IPPROTO_TCP: _TCP, IPPROTO_IP: _IP, IPPROTO_IPV6: _IPV6}
_GETTABLE = {SOL_SOCKET: _SOL | _SOL_GET_ONLY, IPPROTO_TCP: _TCP | _TCP_GET_ONLY,
             IPPROTO_IP: _IP | _IP_GET_ONLY, IPPROTO_IPV6: _IPV6 | _IPV6_GET_ONLY}
# Control messages a guest may send: IP_TOS, IP_TTL, IP_PKTINFO; IPV6_PKTINFO, HOPLIMIT, TCLASS.
_SEND_CMSG = {(IPPROTO_IP, 1), (IPPROTO_IP, 2), (IPPROTO_IP, 8),
              (IPPROTO_IPV6, 50), (IPPROTO_IPV6, 52), (IPPROTO_IPV6, 67)}
SCM_RIGHTS = 1
# ioctls: (request, argument size) read from the guest, handed to the host, copied back
FIONREAD, SIOCOUTQ, SIOCATMARK, SIOCOUTQNSD = 0x541B, 0x5411, 0x8905, 0x894B
_INT_IOCTLS = {FIONREAD, SIOCOUTQ, SIOCATMARK, SIOCOUTQNSD}
IFREQ_SIZE = 40
_IFREQ_IOCTLS = {0x8910, 0x8913, 0x8915, 0x8917, 0x8919, 0x891B, 0x8921, 0x8927, 0x8933}
# SIOCGIFNAME FLAGS ADDR DSTADDR BRDADDR NETMASK MTU HWADDR INDEX (reads of the host's interfaces)

_libc = ctypes.CDLL(None, use_errno=True)
_libc.sendmsg.restype = _libc.recvmsg.restype = ctypes.c_ssize_t


class _IOVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32),
                ("iov", ctypes.POINTER(_IOVec)), ("iovlen", ctypes.c_size_t),
                ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
                ("flags", ctypes.c_int)]


def _check(r: int) -> int:
    if r < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return r


def _sockaddr_call(fn, fd: int, raw: bytes) -> None:
    buf = ctypes.create_string_buffer(raw, len(raw))
    _check(fn(fd, buf, ctypes.c_uint32(len(raw))))


def _name_call(fn, fd: int) -> bytes:
    buf = ctypes.create_string_buffer(SOCKADDR_MAX)
    n = ctypes.c_uint32(SOCKADDR_MAX)
    _check(fn(fd, buf, ctypes.byref(n)))
    return buf.raw[:min(n.value, SOCKADDR_MAX)]


def _cmsg_align(n: int) -> int:
    return (n + 7) & ~7


def _pack_control(control: list) -> bytes:
    out = b""
    for level, kind, payload in control:
        out += struct.pack("<QiI", 16 + len(payload), level, kind) + payload
        out += bytes(_cmsg_align(len(out)) - len(out))
    return out


def _unpack_control(raw: bytes) -> list:
    out, pos = [], 0
    while pos + 16 <= len(raw):
        length, level, kind = struct.unpack_from("<QiI", raw, pos)
        if length < 16 or pos + length > len(raw):
            break
        payload = raw[pos + 16:pos + length]
        if level == SOL_SOCKET and kind == SCM_RIGHTS:  # never on an inet socket: close, never pass on
            for i in range(0, len(payload) - 3, 4):
                os.close(struct.unpack_from("<i", payload, i)[0])
        else:
            out.append((level, kind, payload))
        pos += _cmsg_align(length)
    return out


class _HostReadiness(WaitQueue):
    """The tasks waiting on a host socket. While any waits, the kernel's
    loop watches the host fd for the readiness the socket lacks (a socket
    that is writable is watched for input only, so a task waiting for
    data does not wake at every loop turn because the fd is writable);
    the first change wakes them all to look again."""
    __slots__ = ("sock", "watch")

    def __init__(self, sock: "HostSocket"):
        super().__init__()
        self.sock = sock
        self.watch = None

    def add_waiter(self, callback) -> None:
        super().add_waiter(callback)
        self._arm()

    def remove_waiter(self, callback) -> None:
        super().remove_waiter(callback)
        if not self:
            self._disarm()

    def _arm(self) -> None:
        self._disarm()
        k = self.sock.kernel
        ready = self.sock.poll_now()
        missing = 0
        if not ready & (POLLERR | POLLHUP):
            if not ready & POLLIN:
                missing |= POLLIN | POLLPRI | POLLRDHUP
            if not ready & POLLOUT:
                missing |= POLLOUT
        if ready != self.sock.seen or not missing:
            # it changed since the waiter last looked (a loopback connect
            # completes before the task is parked): let it look again
            k.add_timer(0, self._changed)
        else:
            self.watch = k.watch_fd(self.sock.fd, missing, self._changed)

    def _disarm(self) -> None:
        if self.watch is not None:
            self.sock.kernel.unwatch_fd(self.watch)
            self.watch = None

    def _changed(self, revents: int = 0) -> None:
        self._disarm()
        self.notify()


class HostSocket(SocketFile):
    """A guest AF_INET/AF_INET6 socket that is a host socket."""

    def __init__(self, k, family: int, stype: int, protocol: int, sock: socket.socket):
        super().__init__(k, stype, protocol)
        self.family = family
        self.sock = sock
        self.fd = sock.fileno()
        self._poll = select.poll()
        self._poll.register(self.fd, POLLIN | POLLPRI | POLLOUT | POLLRDHUP)
        self.queue = _HostReadiness(self)
        self.seen = 0   # the readiness a caller last saw before deciding to wait

    def _would_block(self, events: int):
        # the caller saw `events` missing (EAGAIN, EINPROGRESS), whatever the
        # fd says by now: if they are there when it parks, it looks again
        self.seen = self.poll_now() & ~events
        return WouldBlock(self.queue, events)

    def wait_queues(self) -> tuple:
        return (self.queue,)

    # --- naming and connecting ---
    def bind(self, k, t, raw: bytes) -> None:
        fam = int.from_bytes(raw[:2], "little") if len(raw) >= 2 else -1
        need = 16 if self.family == AF_INET else 24
        if fam == self.family and len(raw) >= need:
            port = int.from_bytes(raw[2:4], "big")
            if 0 < port < PROT_PORT_MAX and not privileged(t, NET_BIND_SERVICE):
                raise fserr(errno.EACCES)   # CAP_NET_BIND_SERVICE is the guest's, not the sentry's
        _sockaddr_call(_libc.bind, self.fd, raw)

    def connect(self, k, t, raw: bytes, nonblocking: bool) -> None:
        # A blocking connect waits while the host says it is under way
        # (EINPROGRESS, then EALREADY); the re-run after the wait gets the
        # host's verdict (0 once, or the error), as Linux's own connect does.
        try:
            _sockaddr_call(_libc.connect, self.fd, raw)
        except OSError as e:
            if e.errno in (errno.EINPROGRESS, errno.EALREADY) and not nonblocking:
                raise self._would_block(POLLOUT) from None
            raise

    def listen(self, k, t, backlog: int) -> None:
        self.sock.listen(max(backlog, 0))

    def accept(self, k, t):
        buf = ctypes.create_string_buffer(SOCKADDR_MAX)
        n = ctypes.c_uint32(SOCKADDR_MAX)
        try:
            fd = _check(_libc.accept4(self.fd, buf, ctypes.byref(n), SOCK_NONBLOCK | SOCK_CLOEXEC))
        except BlockingIOError:
            raise self._would_block(POLLIN) from None
        conn = socket.socket(fileno=fd)
        return (HostSocket(k, self.family, self.stype, self.protocol, conn),
                buf.raw[:min(n.value, SOCKADDR_MAX)])

    def shutdown(self, k, t, how: int) -> None:
        self.sock.shutdown(how)

    def getsockname(self, k, t) -> bytes:
        return _name_call(_libc.getsockname, self.fd)

    def getpeername(self, k, t) -> bytes:
        return _name_call(_libc.getpeername, self.fd)

    # --- data ---
    def sendmsg(self, k, t, data: bytes, raw_to: bytes | None, control: list, flags: int) -> int:
        for level, kind, _ in control:
            if (level, kind) not in _SEND_CMSG:
                raise fserr(errno.EINVAL)   # Linux: an unknown cmsg (SCM_RIGHTS included) on inet
        flags = flags & (MSG_OOB | MSG_DONTROUTE | MSG_EOR | MSG_CONFIRM | MSG_MORE) \
            | MSG_DONTWAIT | MSG_NOSIGNAL
        payload = ctypes.create_string_buffer(data, len(data))
        iov = _IOVec(ctypes.cast(payload, ctypes.c_void_p), len(data))
        hdr = _MsgHdr()
        hdr.iov, hdr.iovlen = ctypes.pointer(iov), 1
        if raw_to is not None:
            name = ctypes.create_string_buffer(raw_to, len(raw_to))
            hdr.name, hdr.namelen = ctypes.cast(name, ctypes.c_void_p), len(raw_to)
        if control:
            cbuf = _pack_control(control)
            ctl = ctypes.create_string_buffer(cbuf, len(cbuf))
            hdr.control, hdr.controllen = ctypes.cast(ctl, ctypes.c_void_p), len(cbuf)
        try:
            return _check(_libc.sendmsg(self.fd, ctypes.byref(hdr), flags))
        except BlockingIOError:
            raise self._would_block(POLLOUT) from None

    def recvmsg(self, k, t, size: int, flags: int):
        host_flags = flags & (MSG_OOB | MSG_PEEK | MSG_TRUNC | MSG_ERRQUEUE) | MSG_DONTWAIT
        buf = ctypes.create_string_buffer(max(size, 1))
        iov = _IOVec(ctypes.cast(buf, ctypes.c_void_p), size)
        name = ctypes.create_string_buffer(SOCKADDR_MAX)
        ctl = ctypes.create_string_buffer(CONTROL_MAX)
        hdr = _MsgHdr()
        hdr.iov, hdr.iovlen = ctypes.pointer(iov), 1
        hdr.name, hdr.namelen = ctypes.cast(name, ctypes.c_void_p), SOCKADDR_MAX
        hdr.control, hdr.controllen = ctypes.cast(ctl, ctypes.c_void_p), CONTROL_MAX
        try:
            n = _check(_libc.recvmsg(self.fd, ctypes.byref(hdr), host_flags))
        except BlockingIOError:
            if flags & MSG_ERRQUEUE:
                raise fserr(errno.EAGAIN) from None   # the error queue never waits
            raise self._would_block(POLLIN) from None
        if self.stype == SOCK_STREAM and flags & MSG_TRUNC:
            data = b""   # TCP's MSG_TRUNC discards the bytes
        else:
            data = buf.raw[:min(n, size)]
        raw_from = name.raw[:min(hdr.namelen, SOCKADDR_MAX)] if hdr.namelen else None
        control = _unpack_control(ctl.raw[:hdr.controllen])
        return data, n, raw_from, control, hdr.flags

    # --- state for the syscall layer ---
    def take_error(self) -> int:
        return self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)

    @property
    def listening(self) -> bool:
        return bool(self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))

    def pending_in(self) -> int:
        return self._int_ioctl(FIONREAD)

    def pending_out(self) -> int:
        return self._int_ioctl(SIOCOUTQ)

    def _int_ioctl(self, request: int) -> int:
        import fcntl
        return struct.unpack("<i", fcntl.ioctl(self.fd, request, bytes(4)))[0]

    def ioctl(self, request: int, arg: int, mem) -> int:
        import fcntl
        if request in _INT_IOCTLS:
            mem.write(arg, struct.pack("<i", self._int_ioctl(request)))
            return 0
        if request in _IFREQ_IOCTLS:   # the host's interfaces: host mode shows them
            mem.write(arg, fcntl.ioctl(self.fd, request, mem.read(arg, IFREQ_SIZE)))
            return 0
        return super().ioctl(request, arg, mem)

    def poll_now(self) -> int:
        r = 0
        for _, ev in self._poll.poll(0):
            r |= ev
        return r

    def readiness(self) -> int:
        self.seen = self.poll_now()
        return self.seen

    # --- options ---
    def setsockopt(self, k, t, level: int, name: int, value: bytes) -> None:
        if name in _SETTABLE.get(level, ()):
            if len(value) > OPTLEN_MAX:
                raise fserr(errno.EINVAL)
            buf = ctypes.create_string_buffer(value, len(value))
            _check(_libc.setsockopt(self.fd, level, name, buf, ctypes.c_uint32(len(value))))
            return
        if level == SOL_SOCKET:
            super().setsockopt(k, t, level, name, value)
            return
        raise fserr(errno.ENOPROTOOPT)

    def getsockopt(self, k, t, level: int, name: int, optlen: int) -> bytes:
        if name in _GETTABLE.get(level, ()):
            size = max(0, min(optlen, OPTLEN_MAX))
            buf = ctypes.create_string_buffer(max(size, 1))
            n = ctypes.c_uint32(size)
            _check(_libc.getsockopt(self.fd, level, name, buf, ctypes.byref(n)))
            return buf.raw[:min(n.value, size)]
        if level == SOL_SOCKET:
            return super().getsockopt(k, t, level, name, optlen)
        raise fserr(errno.ENOPROTOOPT)

    def release(self) -> None:
        if self.sock is not None:
            self.queue._disarm()
            self.sock.close()
            self.sock = None


def factory(family: int):
    """socket(family, ...) in host mode: a HostSocket."""
    def make(k, t, stype: int, protocol: int) -> HostSocket:
        kind = stype & 0xF
        if kind not in PROTOCOLS:
            # raw sockets would be the sentry's (root on the host) privilege
            raise fserr(errno.EPERM if kind == socket.SOCK_RAW else errno.ESOCKTNOSUPPORT)
        if protocol not in PROTOCOLS[kind]:
            raise fserr(errno.EPROTONOSUPPORT)
        sock = socket.socket(family, kind | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol)
        if not protocol:
            protocol = IPPROTO_TCP if kind == SOCK_STREAM else IPPROTO_UDP
        return HostSocket(k, family, kind, protocol, sock)
    return make


def install(k) -> None:
    """Make AF_INET and AF_INET6 sockets host sockets (the sandbox decides,
    once per sentry process: the family table is the socket layer's)."""
    from .syscalls import socket as sockcalls
    saved = k.__dict__.setdefault("_hostinet_saved", {})
    for fam in (AF_INET, AF_INET6):
        saved[fam] = sockcalls.FAMILIES.get(fam)
        sockcalls.register_family(fam, factory(fam))


def uninstall(k) -> None:
    """Give the families back to whoever had them before install."""
    from .syscalls import socket as sockcalls
    for fam, previous in k.__dict__.pop("_hostinet_saved", {}).items():
        if previous is None:
            sockcalls.FAMILIES.pop(fam, None)
        else:
            sockcalls.register_family(fam, previous)
