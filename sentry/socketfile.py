"""SocketFile: what every socket family's open file is (docs/netstack.md,
"Sentry socket files").

The socket syscalls (sentry/syscalls/socket.py) are generic: they decode
guest memory, then call the methods below. A family subclasses SocketFile,
overrides the calls it supports (the defaults fail as Linux's sock_no_*
do) and registers a factory with syscalls.socket.register_family.

The SOL_SOCKET options every family shares live here (net/core/sock.c's
sk_setsockopt/sk_getsockopt). A family extends them by overriding
getsockopt/setsockopt and calling super() for what it does not handle; it
reads the stored values (sndbuf, rcvbuf, rcvtimeo_ns, passcred...) as
plain attributes, and may react to a change in `sockopt_changed(name)`.
"""
from __future__ import annotations

import errno
import itertools
import stat as S
import struct
import time

from vfs.file import WouldBlock
from vfs.inode import FileDescriptionImpl, Stat, fserr, now_ns

from .caps import CAP_NET_ADMIN, CAP_NET_BIND_SERVICE, CAP_NET_RAW

AF_UNSPEC, AF_UNIX, AF_INET, AF_INET6, AF_NETLINK = 0, 1, 2, 10, 16
SOCK_STREAM, SOCK_DGRAM, SOCK_RAW, SOCK_RDM, SOCK_SEQPACKET = 1, 2, 3, 4, 5
POLLIN, POLLOUT, POLLERR, POLLHUP, POLLRDHUP = 1, 4, 8, 16, 0x2000

SOL_SOCKET = 1
SO_DEBUG, SO_REUSEADDR, SO_TYPE, SO_ERROR, SO_DONTROUTE, SO_BROADCAST = 1, 2, 3, 4, 5, 6
SO_SNDBUF, SO_RCVBUF, SO_KEEPALIVE, SO_OOBINLINE, SO_NO_CHECK, SO_PRIORITY = 7, 8, 9, 10, 11, 12
SO_LINGER, SO_BSDCOMPAT, SO_REUSEPORT, SO_PASSCRED, SO_PEERCRED = 13, 14, 15, 16, 17
SO_RCVLOWAT, SO_SNDLOWAT, SO_RCVTIMEO_OLD, SO_SNDTIMEO_OLD = 18, 19, 20, 21
SO_BINDTODEVICE, SO_ATTACH_FILTER, SO_DETACH_FILTER, SO_PEERNAME = 25, 26, 27, 28
SO_TIMESTAMP_OLD, SO_ACCEPTCONN, SO_PEERSEC, SO_SNDBUFFORCE, SO_RCVBUFFORCE = 29, 30, 31, 32, 33
SO_PASSSEC, SO_TIMESTAMPNS_OLD, SO_MARK, SO_TIMESTAMPING_OLD = 34, 35, 36, 37
SO_PROTOCOL, SO_DOMAIN, SO_RXQ_OVFL, SO_WIFI_STATUS, SO_PEEK_OFF, SO_NOFCS = 38, 39, 40, 41, 42, 43
SO_LOCK_FILTER, SO_SELECT_ERR_QUEUE, SO_BUSY_POLL, SO_MAX_PACING_RATE = 44, 45, 46, 47
SO_INCOMING_CPU, SO_COOKIE, SO_PEERGROUPS, SO_ZEROCOPY, SO_TXTIME = 49, 57, 59, 60, 61
SO_BINDTOIFINDEX, SO_TIMESTAMP_NEW, SO_TIMESTAMPNS_NEW, SO_TIMESTAMPING_NEW = 62, 63, 64, 65
SO_RCVTIMEO_NEW, SO_SNDTIMEO_NEW, SO_PREFER_BUSY_POLL, SO_BUSY_POLL_BUDGET = 66, 67, 69, 70
SO_BUF_LOCK, SO_RCVMARK, SO_PASSPIDFD = 72, 75, 76
SCM_RIGHTS, SCM_CREDENTIALS = 1, 2

# net.core.{w,r}mem_{default,max} as a stock Linux has them
WMEM_DEFAULT = RMEM_DEFAULT = WMEM_MAX = RMEM_MAX = 212992
SOCK_MIN_SNDBUF, SOCK_MIN_RCVBUF = 4608, 2304
INT_MAX = (1 << 31) - 1
HZ = 250                      # socket timeouts are kept in jiffies, as Linux does
JIFFY_NS = 10**9 // HZ
MAX_SCHEDULE_TIMEOUT = (1 << 63) - 1
IFNAMSIZ = 16

I32 = struct.Struct("<i")
TIMEVAL = struct.Struct("<qq")
LINGER = struct.Struct("<ii")
UCRED = struct.Struct("<iII")

# Options that are a flag or a plain int, stored as given (valbool: 0/1).
_FLAGS = {SO_DEBUG, SO_REUSEADDR, SO_DONTROUTE, SO_BROADCAST, SO_KEEPALIVE, SO_OOBINLINE,
          SO_NO_CHECK, SO_TIMESTAMP_OLD, SO_TIMESTAMPNS_OLD, SO_TIMESTAMP_NEW, SO_TIMESTAMPNS_NEW,
          SO_RXQ_OVFL, SO_WIFI_STATUS, SO_NOFCS, SO_SELECT_ERR_QUEUE, SO_RCVMARK, SO_PASSSEC,
          SO_REUSEPORT, SO_PASSCRED, SO_PASSPIDFD, SO_ZEROCOPY, SO_PREFER_BUSY_POLL, SO_LOCK_FILTER}
# SO_TIMESTAMP*_NEW read back under their old numbers
_ALIAS = {SO_TIMESTAMP_NEW: SO_TIMESTAMP_OLD, SO_TIMESTAMPNS_NEW: SO_TIMESTAMPNS_OLD,
          SO_TIMESTAMPING_NEW: SO_TIMESTAMPING_OLD}
_cookies = itertools.count(1)
_ino = itertools.count(1)


NET_ADMIN, NET_RAW, NET_BIND_SERVICE = CAP_NET_ADMIN, CAP_NET_RAW, CAP_NET_BIND_SERVICE


def privileged(t, *caps: int) -> bool:
    """Whether task t has any of caps (default CAP_NET_ADMIN) effective."""
    if t is None:
        return False
    eff = t.tg.creds.cap_effective
    return any(eff >> c & 1 for c in caps or (CAP_NET_ADMIN,))


def timeout_from_timeval(sec: int, usec: int) -> int | None:
    """sock_set_timeout: a timeval as jiffies, in ns (None: no timeout; 0:
    a negative time, which Linux treats as do-not-wait)."""
    if usec < 0 or usec >= 1_000_000:
        raise fserr(errno.EDOM)
    if sec < 0:
        return 0
    if sec == 0 and usec == 0:
        return None
    if sec >= MAX_SCHEDULE_TIMEOUT // HZ - 1:
        return None
    return (sec * HZ + -(-usec // (1_000_000 // HZ))) * JIFFY_NS


def timeval_of_timeout(ns: int | None) -> bytes:
    if not ns:
        return TIMEVAL.pack(0, 0)
    jiffies = ns // JIFFY_NS
    return TIMEVAL.pack(jiffies // HZ, (jiffies % HZ) * 1_000_000 // HZ)


class SocketFile(FileDescriptionImpl):
    """A socket's open file. Subclasses set `family` and implement the
    calls; `stype` and `protocol` are what socket() was given (protocol
    resolved: 0 becomes the family's default)."""
    seekable = False
    family = AF_UNSPEC
    scm_capable = False   # SO_PASSCRED/SO_PASSPIDFD are for unix and netlink sockets
    listening = False     # SO_ACCEPTCONN (an attribute or a property)
    handles_errqueue = False  # the family reads MSG_ERRQUEUE itself (else EAGAIN)
    connect_timeout_errno = errno.EAGAIN  # a blocking connect's SO_SNDTIMEO expired (TCP: EINPROGRESS)

    def __init__(self, k, stype: int, protocol: int = 0):
        self.kernel = k
        self.stype = stype
        self.protocol = protocol
        self.ino = next(_ino)
        self.ctime = now_ns()
        self.opts: dict[int, int] = {}        # the _FLAGS options and other plain ints
        self.sndbuf = WMEM_DEFAULT
        self.rcvbuf = RMEM_DEFAULT
        self.rcvtimeo_ns: int | None = None   # None: block forever; 0: never wait
        self.sndtimeo_ns: int | None = None
        self.linger: tuple[int, int] = (0, 0)  # (l_onoff, l_linger seconds)
        self.priority = 0
        self.mark = 0
        self.rcvlowat = 1
        self.peek_off = -1
        self.bound_dev = (0, b"")             # (ifindex, name) of SO_BINDTODEVICE
        self.cookie = 0
        self.so_error = 0

    # --- stored options, by name ---
    @property
    def passcred(self) -> bool:
        return bool(self.opts.get(SO_PASSCRED))

    @property
    def reuseaddr(self) -> bool:
        return bool(self.opts.get(SO_REUSEADDR))

    @property
    def reuseport(self) -> bool:
        return bool(self.opts.get(SO_REUSEPORT))

    @property
    def keepalive(self) -> bool:
        return bool(self.opts.get(SO_KEEPALIVE))

    @property
    def broadcast(self) -> bool:
        return bool(self.opts.get(SO_BROADCAST))

    @property
    def oobinline(self) -> bool:
        return bool(self.opts.get(SO_OOBINLINE))

    # --- identity ---
    def stat(self) -> Stat:
        return Stat(mode=S.S_IFSOCK | 0o777, ino=self.ino, dev=0x8, atime_ns=self.ctime,
                    mtime_ns=self.ctime, ctime_ns=self.ctime)

    def link_name(self) -> bytes:
        return b"socket:[%d]" % self.ino

    # --- the calls (defaults: Linux's sock_no_* answers) ---
    def bind(self, k, t, raw: bytes) -> None:
        raise fserr(errno.EOPNOTSUPP)

    def connect(self, k, t, raw: bytes, nonblocking: bool) -> None:
        """May raise WouldBlock (the syscall layer parks or says EAGAIN) or
        fserr(EINPROGRESS) for a non-blocking connection under way."""
        raise fserr(errno.EOPNOTSUPP)

    def connect_continue(self, k, t, raw: bytes, nonblocking: bool) -> None:
        """A blocking connect re-run after it parked on WouldBlock: 0 when the
        connection is up now, WouldBlock to wait on, or its error."""
        self.connect(k, t, raw, nonblocking)

    def pair(self, k, t, other: "SocketFile") -> None:
        """socketpair: connect self and other, both fresh from the factory."""
        raise fserr(errno.EOPNOTSUPP)

    def listen(self, k, t, backlog: int) -> None:
        raise fserr(errno.EOPNOTSUPP)

    def accept(self, k, t) -> tuple["SocketFile", bytes]:
        raise fserr(errno.EOPNOTSUPP)

    def sendmsg(self, k, t, data: bytes, raw_to: bytes | None, control: list, flags: int) -> int:
        """control: [(level, type, payload)]; SCM_RIGHTS' payload is a list of
        FileDescriptions (the caller holds a reference on each for the call:
        a family keeping them takes its own with incref). A stream send may
        take part of data; a blocking caller sends the rest later with an
        empty control list."""
        raise fserr(errno.EOPNOTSUPP)

    def recvmsg(self, k, t, size: int, flags: int) -> tuple[bytes, int, bytes | None, list, int]:
        """(data, what the call returns, the sender's sockaddr or None,
        control [(level, type, payload)], msg_flags such as MSG_TRUNC).
        An SCM_RIGHTS payload hands over one reference per description."""
        raise fserr(errno.EOPNOTSUPP)

    def shutdown(self, k, t, how: int) -> None:
        raise fserr(errno.EOPNOTSUPP)

    def getsockname(self, k, t) -> bytes:
        raise fserr(errno.EOPNOTSUPP)

    def getpeername(self, k, t) -> bytes:
        raise fserr(errno.ENOTCONN)

    # what SO_ERROR, SO_ACCEPTCONN, SO_PEERCRED, FIONREAD, SIOCOUTQ report
    def take_error(self) -> int:
        """SO_ERROR: the pending error, cleared. Families with errors of their
        own return super().take_error() first (recvmmsg stashes one here)."""
        err, self.so_error = self.so_error, 0
        return err

    def stash_error(self, err: int) -> None:
        """An error a call could not report (recvmmsg after some messages)."""
        self.so_error = err

    def peer_cred(self) -> tuple[int, int, int] | None:
        """(pid, uid, gid) of the peer, for SO_PEERCRED."""
        return None

    def pending_in(self) -> int:
        raise fserr(errno.ENOTTY)

    def pending_out(self) -> int:
        raise fserr(errno.ENOTTY)

    # read(2)/write(2) on a socket: recvmsg/sendmsg without address or
    # control, bounded by SO_RCVTIMEO/SO_SNDTIMEO as Linux bounds them
    def pread(self, size: int, offset: int) -> bytes:
        from .cmsg import drop_control
        k = self.kernel
        t = k.current if k is not None else None
        try:
            data, _, _, control, _ = self.recvmsg(k, t, size, 0)
        except WouldBlock as wb:
            raise _timed(k, t, wb, self.rcvtimeo_ns) from None
        drop_control(control)  # no control buffer: passed fds are closed
        return data

    def pwrite(self, data: bytes, offset: int) -> int:
        k = self.kernel
        t = k.current if k is not None else None
        try:
            return self.sendmsg(k, t, data, None, [], 0)
        except WouldBlock as wb:
            raise _timed(k, t, wb, self.sndtimeo_ns) from None

    def readiness(self) -> int:
        return 0

    def wait_queues(self) -> tuple:
        return ()

    # --- ioctl ---
    def ioctl(self, request: int, arg: int, mem) -> int:
        """FIONREAD/SIOCINQ and SIOCOUTQ from pending_in/pending_out;
        interface and routing requests (SIOCGIF*, SIOCADDRT... 0x890B on)
        are answered for every family by sentry.netdevice, as Linux's
        sock_ioctl hands them to dev_ioctl."""
        if request == FIONREAD:
            mem.write(arg, I32.pack(self.pending_in()))
            return 0
        if request == SIOCOUTQ:
            mem.write(arg, I32.pack(self.pending_out()))
            return 0
        if 0x8900 <= request <= 0x89FF:
            if request in (SIOCGSTAMP, SIOCGSTAMPNS):
                raise fserr(errno.ENOENT)
            if request < SIOCADDRT:
                raise fserr(errno.EINVAL)
            from .netdevice import net_ioctl
            return net_ioctl(self, request, arg, mem)
        raise fserr(errno.ENOTTY)

    # --- options ---
    def sockopt_changed(self, name: int) -> None:
        """Called after a SOL_SOCKET option was stored (a family pushes buffer
        sizes or keepalive into its endpoint here)."""

    def ifindex(self, name: bytes) -> int:
        """SO_BINDTODEVICE's device lookup among the netstack's interfaces."""
        from .netdevice import ifindex, kernel_stack
        return ifindex(kernel_stack(self.kernel), name)

    def setsockopt(self, k, t, level: int, name: int, value: bytes) -> None:
        if level != SOL_SOCKET:
            raise fserr(errno.EOPNOTSUPP)  # families with options of their own override
        self._set_sol_socket(t, name, value)
        self.sockopt_changed(name)

    def getsockopt(self, k, t, level: int, name: int, optlen: int) -> bytes:
        """The option's bytes; the syscall layer copies min(optlen, len) of
        them and writes that length back."""
        if level != SOL_SOCKET:
            raise fserr(errno.EOPNOTSUPP)
        return self._get_sol_socket(t, name, optlen)

    def _set_sol_socket(self, t, name: int, value: bytes) -> None:
        if name == SO_BINDTODEVICE:
            dev = value[:IFNAMSIZ - 1].split(b"\0", 1)[0]
            index = self.ifindex(dev) if dev else 0
            if self.bound_dev[0] and not privileged(t, NET_RAW):
                raise fserr(errno.EPERM)
            self.bound_dev = (index, dev)
            return
        if name in (SO_RCVTIMEO_OLD, SO_RCVTIMEO_NEW, SO_SNDTIMEO_OLD, SO_SNDTIMEO_NEW):
            if len(value) < TIMEVAL.size:
                raise fserr(errno.EINVAL)
            ns = timeout_from_timeval(*TIMEVAL.unpack_from(value))
            if name in (SO_RCVTIMEO_OLD, SO_RCVTIMEO_NEW):
                self.rcvtimeo_ns = ns
            else:
                self.sndtimeo_ns = ns
            return
        if name == SO_LINGER:
            if len(value) < LINGER.size:
                raise fserr(errno.EINVAL)
            onoff, secs = LINGER.unpack_from(value)
            if onoff:
                # a time past MAX_SCHEDULE_TIMEOUT/HZ (negatives included) means forever
                if secs & 0xFFFFFFFF >= MAX_SCHEDULE_TIMEOUT // HZ:
                    secs = _s32(MAX_SCHEDULE_TIMEOUT // HZ)
                self.linger = (1, secs)
            else:
                self.linger = (0, self.linger[1])
            return
        if len(value) < 4:
            raise fserr(errno.EINVAL)
        val = I32.unpack_from(value)[0]
        if name == SO_REUSEPORT and val and self.family not in (AF_INET, AF_INET6):
            raise fserr(errno.EOPNOTSUPP)
        if name in (SO_PASSCRED, SO_PASSPIDFD) and not self.scm_capable:
            raise fserr(errno.EOPNOTSUPP)
        if name == SO_ZEROCOPY and not (self.family in (AF_INET, AF_INET6) and self.stype in (SOCK_STREAM, SOCK_DGRAM)):
            raise fserr(errno.EOPNOTSUPP)
        if name == SO_DEBUG and val and not privileged(t):
            raise fserr(errno.EACCES)
        if name in _FLAGS:
            self.opts[_ALIAS.get(name, name)] = int(bool(val))
        elif name in (SO_SNDBUF, SO_SNDBUFFORCE):
            if name == SO_SNDBUFFORCE and not privileged(t):
                raise fserr(errno.EPERM)
            val = max(val, 0) if name == SO_SNDBUFFORCE else min(val & 0xFFFFFFFF, WMEM_MAX)
            self.sndbuf = max(min(val, INT_MAX // 2) * 2, SOCK_MIN_SNDBUF)
        elif name in (SO_RCVBUF, SO_RCVBUFFORCE):
            if name == SO_RCVBUFFORCE and not privileged(t):
                raise fserr(errno.EPERM)
            val = max(val, 0) if name == SO_RCVBUFFORCE else min(val & 0xFFFFFFFF, RMEM_MAX)
            self.rcvbuf = max(min(val, INT_MAX // 2) * 2, SOCK_MIN_RCVBUF)
        elif name == SO_PRIORITY:
            if not 0 <= val <= 6 and not privileged(t, NET_RAW, NET_ADMIN):
                raise fserr(errno.EPERM)
            self.priority = val
        elif name == SO_MARK:
            if not privileged(t, NET_RAW, NET_ADMIN):
                raise fserr(errno.EPERM)
            self.mark = val & 0xFFFFFFFF
        elif name == SO_RCVLOWAT:
            self.rcvlowat = (INT_MAX if val < 0 else val) or 1
        elif name == SO_PEEK_OFF:
            if not self.supports_peek_off():
                raise fserr(errno.EOPNOTSUPP)
            self.peek_off = val if val >= 0 else -1
        elif name in (SO_BSDCOMPAT, SO_TIMESTAMPING_OLD, SO_TIMESTAMPING_NEW, SO_TXTIME,
                      SO_BUSY_POLL, SO_BUSY_POLL_BUDGET, SO_MAX_PACING_RATE, SO_BUF_LOCK):
            if name != SO_BSDCOMPAT:
                self.opts[_ALIAS.get(name, name)] = val
        elif name == SO_BINDTOIFINDEX:
            if self.bound_dev[0] and not privileged(t, NET_RAW):
                raise fserr(errno.EPERM)
            self.bound_dev = (val, b"" if val == 0 else self._ifname(val))
        else:
            # SO_TYPE, SO_ERROR, SO_PEERCRED, SO_SNDLOWAT (read-only on Linux),
            # and filters (SO_ATTACH_FILTER...), which we do not run
            raise fserr(errno.ENOPROTOOPT)

    def _ifname(self, index: int) -> bytes:
        from .netdevice import ifname, kernel_stack
        return ifname(kernel_stack(self.kernel), index)

    def supports_peek_off(self) -> bool:
        """SO_PEEK_OFF exists where the family honours it (unix, TCP, UDP)."""
        return False

    def _get_sol_socket(self, t, name: int, optlen: int) -> bytes:
        if optlen < 0:
            raise fserr(errno.EINVAL)
        if name in (SO_RCVTIMEO_OLD, SO_RCVTIMEO_NEW):
            return timeval_of_timeout(self.rcvtimeo_ns)
        if name in (SO_SNDTIMEO_OLD, SO_SNDTIMEO_NEW):
            return timeval_of_timeout(self.sndtimeo_ns)
        if name == SO_LINGER:
            return LINGER.pack(*self.linger)
        if name == SO_PEERCRED:
            pid, uid, gid = self.peer_cred() or (0, 0xFFFFFFFF, 0xFFFFFFFF)
            return UCRED.pack(pid, uid & 0xFFFFFFFF, gid & 0xFFFFFFFF)
        if name == SO_BINDTODEVICE:
            if optlen < IFNAMSIZ:
                raise fserr(errno.EINVAL)
            return self.bound_dev[1] + b"\0" if self.bound_dev[0] else b""
        if name == SO_PEERNAME:
            raw = self.getpeername(self.kernel, t)
            if len(raw) < optlen:
                raise fserr(errno.EINVAL)
            return raw
        if name == SO_COOKIE:
            if not self.cookie:
                self.cookie = next(_cookies)
            return struct.pack("<Q", self.cookie)
        if name == SO_PEEK_OFF and not self.supports_peek_off():
            raise fserr(errno.EOPNOTSUPP)
        if name in (SO_PASSCRED, SO_PASSPIDFD) and not self.scm_capable:
            raise fserr(errno.EOPNOTSUPP)  # as Linux 6.x answers for TCP and UDP
        values = {
            SO_TYPE: self.stype, SO_DOMAIN: self.family, SO_PROTOCOL: self.protocol,
            SO_SNDBUF: self.sndbuf, SO_RCVBUF: self.rcvbuf, SO_PRIORITY: self.priority,
            SO_MARK: self.mark, SO_RCVLOWAT: self.rcvlowat, SO_SNDLOWAT: 1,
            SO_PEEK_OFF: self.peek_off, SO_INCOMING_CPU: -1, SO_BINDTOIFINDEX: self.bound_dev[0],
            SO_BSDCOMPAT: 0,
        }
        if name == SO_ERROR:
            return I32.pack(self.take_error())
        if name == SO_ACCEPTCONN:
            return I32.pack(int(self.listening))
        if name in values:
            return I32.pack(values[name])
        if name in _FLAGS or name in (SO_TIMESTAMPING_OLD, SO_TXTIME, SO_BUSY_POLL,
                                      SO_BUSY_POLL_BUDGET, SO_MAX_PACING_RATE, SO_BUF_LOCK):
            return I32.pack(self.opts.get(_ALIAS.get(name, name), 0))
        raise fserr(errno.ENOPROTOOPT)


class _TimedWait:
    """A wait queue with a deadline, for read(2)/write(2) on a socket with a
    timeout: the generic file path parks on it without a deadline of its
    own, so the deadline wakes the task through a kernel timer and the
    re-run finds the time up."""

    def __init__(self, k, queue, deadline_ns: int):
        self.k, self.queue, self.deadline_ns = k, queue, deadline_ns
        self.timers = {}

    def add_waiter(self, callback) -> None:
        self.queue.add_waiter(callback)
        self.timers[callback] = self.k.add_timer(self.deadline_ns, callback)

    def remove_waiter(self, callback) -> None:
        self.queue.remove_waiter(callback)
        timer = self.timers.pop(callback, None)
        if timer is not None:
            self.k.cancel_timer(timer)


def _timed(k, t, wb: WouldBlock, timeo_ns: int | None) -> Exception:
    """What a read or write that must wait raises: the WouldBlock itself
    (no timeout), EAGAIN (the time is up), or a WouldBlock whose queue
    also wakes at the deadline."""
    if timeo_ns is None or t is None or wb.host_fd is not None:
        return wb
    deadline = t.call_start() + timeo_ns
    if timeo_ns == 0 or time.monotonic_ns() >= deadline:
        return fserr(errno.EAGAIN)
    return WouldBlock(_TimedWait(k, wb.waitable, deadline), wb.events)


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


FIONREAD = SIOCINQ = 0x541B
SIOCOUTQ = 0x5411
SIOCGSTAMP, SIOCGSTAMPNS, SIOCADDRT = 0x8906, 0x8907, 0x890B

__all__ = ["SocketFile", "WouldBlock"]
