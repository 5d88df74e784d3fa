"""Socket syscalls, generic over address families (docs/netstack.md,
"Sentry socket files").

These handlers read and write guest memory (sockaddrs, msghdrs, iovecs,
control buffers) and decide how a call waits; the socket itself is a
sentry.socketfile.SocketFile of the family registered for its domain
(AF_UNIX: sentry.unix, registered below; others by the modules the
kernel wiring imports).

Waiting: a family raises vfs.file.WouldBlock. A non-blocking file or
MSG_DONTWAIT makes that EAGAIN; otherwise the task parks on the queue,
with SO_RCVTIMEO/SO_SNDTIMEO as a deadline whose expiry returns EAGAIN
(or the count moved so far). Progress of a call that parks after moving
some bytes (a stream send, a MSG_WAITALL receive, sendmmsg/recvmmsg)
survives the re-runs in t.write_done.
"""
from __future__ import annotations

import errno
import struct
import time

from vfs.file import O_CLOEXEC, O_NONBLOCK, O_RDWR, FileDescription, WouldBlock
from vfs.inode import fserr

from .. import cmsg
from ..signals import SIGPIPE, send_signal_to_task
from ..socketfile import AF_UNIX, SOCK_STREAM, SocketFile
from ..waiter import Block
from .table import PARTIAL, syscall
from .util import install_pair, s32

# family -> factory(k, t, stype, protocol) -> SocketFile
FAMILIES: dict = {}


def register_family(family: int, factory) -> None:
    """A socket family's constructor; socket() and socketpair() dispatch here."""
    FAMILIES[family] = factory


NPROTO, SOCK_MAX, SOCK_TYPE_MASK = 46, 11, 0xF
MSG_OOB, MSG_PEEK, MSG_TRUNC, MSG_DONTWAIT, MSG_EOR = 1, 2, 0x20, 0x40, 0x80
MSG_WAITALL, MSG_ERRQUEUE, MSG_NOSIGNAL, MSG_WAITFORONE = 0x100, 0x2000, 0x4000, 0x10000
MSG_CMSG_CLOEXEC, MSG_CMSG_COMPAT = 0x40000000, 0x80000000
SOMAXCONN = 4096
SOCKADDR_MAX = 128     # sizeof(struct sockaddr_storage)
UIO_MAXIOV = 1024
MAX_RW = 0x7FFFF000    # the most one call moves (MAX_RW_COUNT)
WINDOW = 1 << 20       # a blocking stream send reads the guest's buffer a window at a time
NR_ACCEPT, NR_GETPEERNAME = 43, 52
MSGHDR = struct.Struct("<QI4xQQQQi4x")  # name, namelen, iov, iovlen, control, controllen, flags
MMSGHDR_SIZE = 64                       # struct mmsghdr: a msghdr and msg_len
IOV = struct.Struct("<QQ")
I32 = struct.Struct("<i")
U32 = struct.Struct("<I")
TIMESPEC = struct.Struct("<qq")


def _sock(t, fd) -> tuple[FileDescription, SocketFile]:
    desc = t.tg.fdtable.get(s32(fd))
    if not isinstance(desc.impl, SocketFile):
        raise fserr(errno.ENOTSOCK)
    return desc, desc.impl


# --- sockaddrs ---
def _read_addr(t, addr, addrlen) -> bytes:
    """move_addr_to_kernel."""
    n = s32(addrlen)
    if n < 0 or n > SOCKADDR_MAX:
        raise fserr(errno.EINVAL)
    return t.thread.read(addr, n) if n else b""


def _put_addr(t, addr, lenp, raw: bytes) -> None:
    """move_addr_to_user: as much of raw as the buffer takes; the length
    written back is raw's own."""
    n = min(I32.unpack(t.thread.read(lenp, 4))[0], len(raw))
    if n < 0:
        raise fserr(errno.EINVAL)
    if n:
        t.thread.write(addr, raw[:n])
    t.thread.write(lenp, I32.pack(len(raw)))


# --- msghdrs and iovecs ---
class _MsgHdr:
    __slots__ = ("name", "namelen", "vecs", "control", "controllen", "size")

    def __init__(self, t, addr: int):
        name, namelen, iov, iovlen, control, controllen, _ = MSGHDR.unpack(t.thread.read(addr, MSGHDR.size))
        namelen = s32(namelen)
        if name == 0:
            namelen = 0
        if namelen < 0:
            raise fserr(errno.EINVAL)
        self.name, self.namelen = name, min(namelen, SOCKADDR_MAX)
        if iovlen > UIO_MAXIOV:
            raise fserr(errno.EMSGSIZE)
        raw = t.thread.read(iov, IOV.size * iovlen) if iovlen else b""
        self.vecs, self.size = _clip([IOV.unpack_from(raw, IOV.size * i) for i in range(iovlen)])
        self.control, self.controllen = control, controllen

    def to(self, t) -> bytes | None:
        """The destination a send names (None: none)."""
        return _read_addr(t, self.name, self.namelen) if self.name and self.namelen else None

    def control_in(self, k, t, scm: bool = True) -> list:
        """The control messages a send carries, fds turned into descriptions
        (scm: the family runs __scm_send; others, inet, see raw bytes)."""
        n = self.controllen
        if n > 0x7FFFFFFF or n >= cmsg.OPTMEM_MAX:
            raise fserr(errno.ENOBUFS)
        if not n:
            return []
        messages = cmsg.parse(t.thread.read(self.control, n))
        return cmsg.from_guest(k, t, messages) if scm else messages


def _clip(vecs) -> tuple[list, int]:
    """import_iovec: a negative length is EINVAL; the total is capped at
    MAX_RW_COUNT (the vectors past it are cut)."""
    out, total = [], 0
    for base, n in vecs:
        if n >= 1 << 63:
            raise fserr(errno.EINVAL)
        n = min(n, MAX_RW - total)
        out.append((base, n))
        total += n
    return out, total


def _gather(t, vecs, off: int, n: int) -> bytes:
    """Bytes [off, off + n) of the buffers vecs describe."""
    parts, pos = [], 0
    for base, length in vecs:
        if n <= 0:
            break
        if pos + length > off:
            start = max(off - pos, 0)
            take = min(length - start, n)
            if take:
                parts.append(t.thread.read(base + start, take))
            n -= take
        pos += length
    return b"".join(parts)


def _scatter(t, vecs, off: int, data: bytes) -> None:
    """data written into the buffers from byte off on."""
    pos, done = 0, 0
    for base, length in vecs:
        if done >= len(data):
            break
        if pos + length > off:
            start = max(off - pos, 0)
            piece = data[done:done + length - start]
            t.thread.write(base + start, piece)
            done += len(piece)
        pos += length


# --- waiting ---
def _park(t, desc, sock, wb: WouldBlock, flags: int, sending: bool, progress: int = 0):
    """What a call that cannot go on does: EAGAIN (or the count so far) when
    it may not wait, else park until the queue moves, the socket's timeout
    expires (EAGAIN or the count) or a signal comes (the count, EINTR
    under a timeout, else a restart)."""
    timeo = sock.sndtimeo_ns if sending else sock.rcvtimeo_ns
    t.write_done = progress
    if desc.nonblocking or flags & MSG_DONTWAIT or timeo == 0:
        t.write_done = 0
        if progress:
            return progress
        raise fserr(errno.EAGAIN) from None
    deadline = None
    if timeo is not None:
        deadline = t.call_start() + timeo
        if time.monotonic_ns() >= deadline:
            t.write_done = 0
            if progress:
                return progress
            raise fserr(errno.EAGAIN) from None
    interrupted = progress or (-errno.EINTR if timeo is not None else None)
    if wb.host_fd is not None:
        raise Block(host_fd=wb.host_fd, host_events=wb.events, deadline_ns=deadline,
                    on_timeout=progress or -errno.EAGAIN, interrupt_result=interrupted) from None
    raise Block(wb.waitable, deadline_ns=deadline, on_timeout=progress or -errno.EAGAIN,
                interrupt_result=interrupted) from None


def _send(k, t, desc, sock, fetch, total: int, to, control: list, flags: int, done: int = 0) -> int:
    """sendmsg's core: fetch(off, n) gives the message's bytes. A datagram
    goes whole; a blocking stream send goes on until all is sent (a
    signal or SO_SNDTIMEO ends it with the count so far). Control
    messages travel with the first bytes."""
    if desc.nonblocking:
        flags |= MSG_DONTWAIT
    stream = sock.stype == SOCK_STREAM
    try:
        while True:
            data = fetch(done, min(total - done, WINDOW) if stream else total)
            try:
                n = sock.sendmsg(k, t, data, to, control if done == 0 else [], flags)
            except WouldBlock as wb:
                return _park(t, desc, sock, wb, flags, True, done)
            done += n
            if not stream or done >= total or (n < len(data) and flags & MSG_DONTWAIT):
                t.write_done = 0
                return done
    except OSError as e:
        t.write_done = 0
        if done:
            return done
        if e.errno == errno.EPIPE and sock.stype == SOCK_STREAM and not flags & MSG_NOSIGNAL:
            send_signal_to_task(k, t, SIGPIPE)
        raise


def _recv(k, t, desc, sock, vecs, size: int, flags: int, done: int = 0):
    """recvmsg's core: the data lands in vecs. Returns (count, sender's
    sockaddr or None, control, msg_flags). MSG_WAITALL on a stream goes on
    receiving until size bytes, EOF, an error, a signal or control data."""
    if flags & MSG_ERRQUEUE and not sock.handles_errqueue:
        raise fserr(errno.EAGAIN)  # nothing ever lands on an error queue here
    if desc.nonblocking:
        flags |= MSG_DONTWAIT
    waitall = (sock.stype == SOCK_STREAM and flags & MSG_WAITALL
               and not flags & (MSG_PEEK | MSG_DONTWAIT))
    frm, control, mflags = None, [], 0
    while True:
        try:
            data, ret, frm, control, mflags = sock.recvmsg(k, t, size - done, flags)
        except WouldBlock as wb:
            return _park(t, desc, sock, wb, flags, False, done), frm, [], 0
        except OSError:
            t.write_done = 0
            if done:
                return done, frm, [], 0
            raise
        if data:
            _scatter(t, vecs, done, data)
        done += ret
        rights = any(c[0] == cmsg.SOL_SOCKET and c[1] == cmsg.SCM_RIGHTS for c in control)
        if not waitall or ret == 0 or rights or done >= size:
            t.write_done = 0
            return done, frm, control, mflags
        cmsg.drop_control(control)  # credentials of all but the last piece go
        t.write_done = done


# --- the calls ---
def _new_socket(k, t, family, stype, protocol) -> tuple[SocketFile, int]:
    """__sys_socket and __sock_create's checks, then the family's factory."""
    family, stype = s32(family), s32(stype)
    flags = stype & ~SOCK_TYPE_MASK
    if flags & ~(O_NONBLOCK | O_CLOEXEC):
        raise fserr(errno.EINVAL)
    kind = stype & SOCK_TYPE_MASK
    if not 0 <= family < NPROTO:
        raise fserr(errno.EAFNOSUPPORT)
    if kind >= SOCK_MAX:
        raise fserr(errno.EINVAL)
    factory = FAMILIES.get(family)
    if factory is None:
        raise fserr(errno.EAFNOSUPPORT)
    return factory(k, t, kind, s32(protocol)), flags


@syscall("socket", support=PARTIAL, note="the families registered (AF_UNIX here; others by their "
                                         "modules); unknown ones EAFNOSUPPORT")
def sys_socket(k, t, family, stype, protocol, *_):
    sock, flags = _new_socket(k, t, family, stype, protocol)
    desc = FileDescription(sock, O_RDWR | (flags & O_NONBLOCK))
    return t.tg.fdtable.install(desc, cloexec=bool(flags & O_CLOEXEC))


@syscall("socketpair", note="families with pairs (AF_UNIX); others EOPNOTSUPP")
def sys_socketpair(k, t, family, stype, protocol, sv, *_):
    a, flags = _new_socket(k, t, family, stype, protocol)
    b, _ = _new_socket(k, t, family, stype, protocol)
    try:
        a.pair(k, t, b)
    except OSError:
        a.release()
        b.release()
        raise
    mode = O_RDWR | (flags & O_NONBLOCK)
    return install_pair(t, sv, FileDescription(a, mode), FileDescription(b, mode), bool(flags & O_CLOEXEC))


@syscall("bind", note="the family parses the sockaddr")
def sys_bind(k, t, fd, addr, addrlen, *_):
    _, sock = _sock(t, fd)
    sock.bind(k, t, _read_addr(t, addr, addrlen))
    return 0


@syscall("listen", note="the backlog is capped at somaxconn (4096)")
def sys_listen(k, t, fd, backlog, *_):
    _, sock = _sock(t, fd)
    backlog = s32(backlog)
    sock.listen(k, t, backlog if 0 <= backlog <= SOMAXCONN else SOMAXCONN)
    return 0


@syscall("connect", note="a blocking connect waits (SO_SNDTIMEO bounds it)")
def sys_connect(k, t, fd, addr, addrlen, *_):
    desc, sock = _sock(t, fd)
    raw = _read_addr(t, addr, addrlen)
    try:
        if t.write_done:  # re-run after a wait this call began
            sock.connect_continue(k, t, raw, desc.nonblocking)
        else:
            sock.connect(k, t, raw, desc.nonblocking)
    except WouldBlock as wb:
        timeo = sock.sndtimeo_ns
        deadline = t.call_start() + timeo if timeo else None
        if desc.nonblocking or timeo == 0 or deadline is not None and time.monotonic_ns() >= deadline:
            raise fserr(sock.connect_timeout_errno) from None
        t.write_done = 1
        raise Block(*((wb.waitable,) if wb.host_fd is None else ()), host_fd=wb.host_fd,
                    host_events=wb.events, deadline_ns=deadline, on_timeout=-sock.connect_timeout_errno,
                    interrupt_result=-errno.EINTR if timeo else None) from None
    return 0


@syscall("accept", "accept4", note="SO_RCVTIMEO bounds the wait; the address is the peer's")
def sys_accept(k, t, fd, addr, lenp, flags=0, *_):
    desc, sock = _sock(t, fd)
    flags = 0 if t.syscall_nr == NR_ACCEPT else s32(flags)
    if flags & ~(O_NONBLOCK | O_CLOEXEC):
        raise fserr(errno.EINVAL)
    try:
        new, peer = sock.accept(k, t)
    except WouldBlock as wb:
        _park(t, desc, sock, wb, 0, False)
    try:
        if addr:
            _put_addr(t, addr, lenp, peer)
        return t.tg.fdtable.install(FileDescription(new, O_RDWR | (flags & O_NONBLOCK)),
                                    cloexec=bool(flags & O_CLOEXEC))
    except OSError:
        new.release()  # the connection is dropped, as Linux drops it
        raise


@syscall("sendto", support=PARTIAL, note="stream sends block until all is sent; SIGPIPE unless MSG_NOSIGNAL; "
                                         "MSG_OOB is EOPNOTSUPP on AF_UNIX streams (Linux has it)")
def sys_sendto(k, t, fd, buf, length, flags, addr, addrlen):
    desc, sock = _sock(t, fd)
    to = _read_addr(t, addr, addrlen) if addr else None
    total = min(length, MAX_RW)
    return _send(k, t, desc, sock, lambda off, n: t.thread.read(buf + off, n) if n else b"",
                 total, to, [], s32(flags), t.write_done)


@syscall("recvfrom", support=PARTIAL, note="SO_RCVTIMEO, MSG_WAITALL, MSG_PEEK, MSG_TRUNC; control data is "
                                           "dropped; no MSG_OOB on AF_UNIX; SO_RCVLOWAT not honoured")
def sys_recvfrom(k, t, fd, buf, length, flags, addr, addrlen):
    desc, sock = _sock(t, fd)
    size = min(length, MAX_RW)
    n, frm, control, _ = _recv(k, t, desc, sock, [(buf, size)], size, s32(flags), t.write_done)
    cmsg.ControlWriter(t, 0, 0, False).write(control)  # no buffer: fds are closed
    if addr:
        _put_addr(t, addr, addrlen, frm or b"")
    return n


@syscall("sendmsg", support=PARTIAL, note="SCM_RIGHTS and SCM_CREDENTIALS (per family); inet: IP_TTL, "
                                          "IP_TOS, IP_PKTINFO, IPV6_HOPLIMIT/TCLASS/PKTINFO, UDP_SEGMENT "
                                          "(no IP options or IPv6 extension headers); SIGPIPE unless "
                                          "MSG_NOSIGNAL; no MSG_OOB on AF_UNIX")
def sys_sendmsg(k, t, fd, msg, flags, *_):
    desc, sock = _sock(t, fd)
    if flags & MSG_CMSG_COMPAT:
        raise fserr(errno.EINVAL)
    return _sendmsg(k, t, desc, sock, msg, s32(flags), t.write_done)


def _sendmsg(k, t, desc, sock, msg, flags, done=0) -> int:
    hdr = _MsgHdr(t, msg)
    to = hdr.to(t)
    control = hdr.control_in(k, t, sock.scm_capable)
    return _send(k, t, desc, sock, lambda off, n: _gather(t, hdr.vecs, off, n), hdr.size, to, control,
                 flags, done)


@syscall("recvmsg", support=PARTIAL, note="SCM_RIGHTS (MSG_CMSG_CLOEXEC), SCM_CREDENTIALS, MSG_CTRUNC, "
                                          "MSG_TRUNC, MSG_WAITALL, SO_RCVTIMEO; inet: SCM_TIMESTAMP(NS), "
                                          "IP_PKTINFO/TTL/TOS/ORIGDSTADDR, IPV6_PKTINFO/HOPLIMIT/TCLASS/"
                                          "ORIGDSTADDR; no SCM_TIMESTAMPING, SCM_PIDFD, MSG_OOB on AF_UNIX")
def sys_recvmsg(k, t, fd, msg, flags, *_):
    desc, sock = _sock(t, fd)
    if flags & MSG_CMSG_COMPAT:
        raise fserr(errno.EINVAL)
    flags = s32(flags)
    return _recvmsg(k, t, desc, sock, msg, flags, t.write_done)


def _recvmsg(k, t, desc, sock, msg, flags, done=0) -> int:
    hdr = _MsgHdr(t, msg)
    n, frm, control, mflags = _recv(k, t, desc, sock, hdr.vecs, hdr.size, flags, done)
    writer = cmsg.ControlWriter(t, hdr.control, hdr.controllen, bool(flags & MSG_CMSG_CLOEXEC))
    writer.write(control)
    if hdr.name:
        _put_addr(t, hdr.name, msg + 8, frm or b"")
    t.thread.write(msg + 40, struct.pack("<Q", writer.used))
    t.thread.write(msg + 48, I32.pack(mflags | writer.flags))
    return n


@syscall("sendmmsg", note="each message as sendmsg; stops at the first error or short send")
def sys_sendmmsg(k, t, fd, vec, vlen, flags, *_):
    desc, sock = _sock(t, fd)
    if flags & MSG_CMSG_COMPAT:
        raise fserr(errno.EINVAL)
    vlen = min(vlen & 0xFFFFFFFF, UIO_MAXIOV)
    sent, done = t.write_done or (0, 0)  # (messages sent, bytes of the next one) across re-runs
    flags = s32(flags)
    while sent < vlen:
        entry = vec + MMSGHDR_SIZE * sent
        try:
            n = _sendmsg(k, t, desc, sock, entry, flags, done)
        except Block as b:
            part = t.write_done
            t.write_done = (sent, part)
            _mmsg_on_wait(t, b, entry, sent, part)
            raise
        except OSError:
            t.write_done = 0
            if sent:
                return sent
            raise
        t.thread.write(entry + 56, U32.pack(n))
        sent, done = sent + 1, 0
        if n < _MsgHdr(t, entry).size:
            break
    t.write_done = 0
    return sent


def _mmsg_on_wait(t, b: Block, entry: int, count: int, part: int) -> None:
    """A parked sendmmsg/recvmmsg ends, on a signal or timeout, with the
    messages done so far; a message partly moved counts (its msg_len set)."""
    if part:
        b.on_interrupt = lambda task: task.thread.write(entry + 56, U32.pack(part))
        b.interrupt_result = count + 1
        b.on_timeout = count + 1
        return
    if count:
        b.interrupt_result = count
        b.on_timeout = count


@syscall("recvmmsg", note="each message as recvmsg; MSG_WAITFORONE; the timeout is checked after "
                          "each message, as Linux does")
def sys_recvmmsg(k, t, fd, vec, vlen, flags, timeout, *_):
    desc, sock = _sock(t, fd)
    if flags & MSG_CMSG_COMPAT:
        raise fserr(errno.EINVAL)
    flags = s32(flags)
    end = None
    if timeout:
        sec, nsec = TIMESPEC.unpack(t.thread.read(timeout, TIMESPEC.size))
        if sec < 0 or not 0 <= nsec < 10**9:
            raise fserr(errno.EINVAL)
        end = t.call_start() + sec * 10**9 + nsec
    vlen = min(vlen & 0xFFFFFFFF, UIO_MAXIOV)
    got, done = t.write_done or (0, 0)
    if not got and not done and not flags & MSG_ERRQUEUE:
        err = sock.take_error()
        if err:
            raise fserr(err)
    err = 0
    while got < vlen:
        entry = vec + MMSGHDR_SIZE * got
        f = flags & ~MSG_WAITFORONE | (MSG_DONTWAIT if got and flags & MSG_WAITFORONE else 0)
        try:
            n = _recvmsg(k, t, desc, sock, entry, f, done)
        except Block as b:
            part = t.write_done
            t.write_done = (got, part)
            _mmsg_on_wait(t, b, entry, got, part)
            raise
        except OSError as e:
            err = e.errno
            break
        t.thread.write(entry + 56, U32.pack(n))
        got, done = got + 1, 0
        if end is not None and time.monotonic_ns() >= end:
            break
    t.write_done = 0
    if got == 0:
        raise fserr(err)
    if err and err != errno.EAGAIN:
        sock.stash_error(err)  # reported by the next call, as Linux does
    if end is not None:
        left = max(end - time.monotonic_ns(), 0)
        t.thread.write(timeout, TIMESPEC.pack(left // 10**9, left % 10**9))
    return got


@syscall("shutdown")
def sys_shutdown(k, t, fd, how, *_):
    _, sock = _sock(t, fd)
    if s32(how) not in (0, 1, 2):
        raise fserr(errno.EINVAL)
    sock.shutdown(k, t, s32(how))
    return 0


@syscall("getsockopt", support=PARTIAL, note="SOL_SOCKET in sentry.socketfile (no socket filters, no "
                                             "SO_PEERSEC/SO_PEERGROUPS/SO_MEMINFO); other levels per family")
def sys_getsockopt(k, t, fd, level, name, val, lenp, *_):
    _, sock = _sock(t, fd)
    n = I32.unpack(t.thread.read(lenp, 4))[0]
    raw = sock.getsockopt(k, t, s32(level), s32(name), n)  # a negative n: EINVAL from the level's code
    n = min(n, len(raw))
    if n:
        t.thread.write(val, raw[:n])
    t.thread.write(lenp, I32.pack(n))
    return 0


@syscall("setsockopt", support=PARTIAL, note="SOL_SOCKET stored in sentry.socketfile (socket filters are "
                                             "ENOPROTOOPT); other levels per family")
def sys_setsockopt(k, t, fd, level, name, val, optlen, *_):
    _, sock = _sock(t, fd)
    optlen = s32(optlen)
    if optlen < 0:
        raise fserr(errno.EINVAL)
    try:
        value = t.thread.read(val, min(optlen, 1 << 16)) if optlen else b""
    except OSError:
        value = t.thread.read(val, min(optlen, 16))  # options read only a prefix of a long buffer
    sock.setsockopt(k, t, s32(level), s32(name), value)
    return 0


@syscall("getsockname", "getpeername", note="the family's sockaddr")
def sys_getsockname(k, t, fd, addr, lenp, *_):
    _, sock = _sock(t, fd)
    raw = sock.getpeername(k, t) if t.syscall_nr == NR_GETPEERNAME else sock.getsockname(k, t)
    _put_addr(t, addr, lenp, raw)
    return 0


def _register_unix() -> None:
    from ..unix import unix_socket
    register_family(AF_UNIX, unix_socket)


_register_unix()
