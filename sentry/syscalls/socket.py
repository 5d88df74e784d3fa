"""Socket syscalls. For now AF_UNIX socket pairs (sentry.unix); other
families wait for the netstack and get EAFNOSUPPORT."""
from __future__ import annotations

import errno
import struct

from vfs.file import O_CLOEXEC, O_NONBLOCK, O_RDWR, FileDescription, WouldBlock
from vfs.inode import fserr

from ..unix import SOCK_DGRAM, SOCK_SEQPACKET, SOCK_STREAM, UnixSocket, socketpair
from ..waiter import Block
from .file import write_all
from .table import PARTIAL, syscall
from .util import s32

AF_UNIX = 1
SOCK_TYPE_MASK = 0xF
MSG_PEEK, MSG_TRUNC, MSG_DONTWAIT, MSG_NOSIGNAL, MSG_WAITALL = 2, 0x20, 0x40, 0x4000, 0x100
SOL_SOCKET = 1
SO_TYPE, SO_ERROR, SO_SNDBUF, SO_RCVBUF, SO_DOMAIN, SO_ACCEPTCONN, SO_PROTOCOL = 3, 4, 7, 8, 39, 30, 38
MSGHDR = struct.Struct("<QI4xQQQQi4x")  # name, namelen, iov, iovlen, control, controllen, flags
IOV = struct.Struct("<QQ")


def _sock(t, fd) -> tuple:
    desc = t.tg.fdtable.get(s32(fd))
    if not isinstance(desc.impl, UnixSocket):
        raise fserr(errno.ENOTSOCK)
    return desc, desc.impl


def _check_type(family, stype):
    if family != AF_UNIX:
        raise fserr(errno.EAFNOSUPPORT)
    kind = stype & SOCK_TYPE_MASK
    if kind not in (SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET) or stype & ~(SOCK_TYPE_MASK | O_NONBLOCK | O_CLOEXEC):
        raise fserr(errno.EINVAL)
    return kind


@syscall("socket", support=PARTIAL, note="AF_UNIX only (named sockets cannot connect yet); other families EAFNOSUPPORT")
def sys_socket(k, t, family, stype, protocol, *_):
    kind = _check_type(family, stype)
    desc = FileDescription(UnixSocket(kind), O_RDWR | (stype & O_NONBLOCK))
    return t.tg.fdtable.install(desc, cloexec=bool(stype & O_CLOEXEC))


@syscall("socketpair", support=PARTIAL, note="AF_UNIX; no SCM_RIGHTS/SCM_CREDENTIALS yet")
def sys_socketpair(k, t, family, stype, protocol, sv, *_):
    kind = _check_type(family, stype)
    a, b = socketpair(kind)
    table = t.tg.fdtable
    flags = O_RDWR | (stype & O_NONBLOCK)
    fa = table.install(FileDescription(a, flags), cloexec=bool(stype & O_CLOEXEC))
    fb = table.install(FileDescription(b, flags), cloexec=bool(stype & O_CLOEXEC))
    t.thread.write(sv, struct.pack("<ii", fa, fb))
    return 0


@syscall("connect", support=PARTIAL, note="no named AF_UNIX listeners exist yet: ENOENT")
def sys_connect(k, t, fd, addr, addrlen, *_):
    _, sock = _sock(t, fd)
    if sock.connected:
        raise fserr(errno.EISCONN)
    raise fserr(errno.ENOENT)


@syscall("bind", "listen", support=PARTIAL, note="named AF_UNIX sockets: not yet (EOPNOTSUPP)")
def sys_bind(k, t, fd, *_):
    _sock(t, fd)
    raise fserr(errno.EOPNOTSUPP)


@syscall("accept", "accept4", support=PARTIAL, note="no listeners yet: EINVAL")
def sys_accept(k, t, fd, *_):
    _sock(t, fd)
    raise fserr(errno.EINVAL)


def _io(desc, sock, flags, op):
    try:
        return op()
    except WouldBlock as wb:
        if desc.nonblocking or flags & MSG_DONTWAIT:
            raise fserr(errno.EAGAIN) from None
        raise Block(wb.waitable) from None


def _send(k, t, fd, data, flags):
    desc, sock = _sock(t, fd)
    try:
        if sock.stype == SOCK_STREAM and not flags & MSG_DONTWAIT:
            return write_all(t, desc, data)  # a blocking stream send sends it all
        return _io(desc, sock, flags, lambda: sock.send(data))
    except OSError as e:
        if e.errno == errno.EPIPE and not flags & MSG_NOSIGNAL:
            from ..signals import send_signal_to_task
            send_signal_to_task(k, t, 13)
        raise


def _recv(k, t, fd, size, flags):
    desc, sock = _sock(t, fd)
    return _io(desc, sock, flags, lambda: sock.recv(size, peek=bool(flags & MSG_PEEK)))


@syscall("sendto")
def sys_sendto(k, t, fd, buf, length, flags, addr, addrlen):
    if addr:
        _, sock = _sock(t, fd)
        raise fserr(errno.EISCONN if sock.connected else errno.ENOENT)
    return _send(k, t, fd, t.thread.read(buf, min(length, 1 << 24)), flags)


@syscall("recvfrom")
def sys_recvfrom(k, t, fd, buf, length, flags, addr, addrlen):
    data = _recv(k, t, fd, min(length, 1 << 24), flags)
    if data:
        t.thread.write(buf, data)
    if addr and addrlen:
        t.thread.write(addrlen, struct.pack("<I", 0))
    return len(data)


def _iovecs(t, iov, n):
    if n > 1024:
        raise fserr(errno.EMSGSIZE)
    raw = t.thread.read(iov, 16 * n) if n else b""
    return [IOV.unpack_from(raw, 16 * i) for i in range(n)]


@syscall("sendmsg", support=PARTIAL, note="control messages are ignored")
def sys_sendmsg(k, t, fd, msg, flags, *_):
    name, namelen, iov, iovlen, control, controllen, _f = MSGHDR.unpack(t.thread.read(msg, MSGHDR.size))
    data = b"".join(t.thread.read(b, n) for b, n in _iovecs(t, iov, iovlen) if n)
    return _send(k, t, fd, data, flags)


@syscall("recvmsg", support=PARTIAL, note="no control messages are returned")
def sys_recvmsg(k, t, fd, msg, flags, *_):
    name, namelen, iov, iovlen, control, controllen, _f = MSGHDR.unpack(t.thread.read(msg, MSGHDR.size))
    vecs = _iovecs(t, iov, iovlen)
    data = _recv(k, t, fd, sum(n for _, n in vecs), flags)
    pos = 0
    for base, n in vecs:
        if pos >= len(data):
            break
        t.thread.write(base, data[pos:pos + n])
        pos += n
    # namelen and controllen report nothing received; msg_flags cleared
    hdr = MSGHDR.pack(name, 0, iov, iovlen, control, 0, 0)
    t.thread.write(msg, hdr)
    return len(data)


@syscall("shutdown")
def sys_shutdown(k, t, fd, how, *_):
    _, sock = _sock(t, fd)
    if how not in (0, 1, 2):
        raise fserr(errno.EINVAL)
    sock.shutdown(how)
    return 0


@syscall("getsockopt", support=PARTIAL, note="SO_TYPE, SO_ERROR, SO_DOMAIN, SO_PROTOCOL, buffer sizes")
def sys_getsockopt(k, t, fd, level, name, val, lenp, *_):
    _, sock = _sock(t, fd)
    if level != SOL_SOCKET:
        raise fserr(errno.ENOPROTOOPT)
    values = {SO_TYPE: sock.stype, SO_ERROR: 0, SO_DOMAIN: AF_UNIX, SO_PROTOCOL: 0,
              SO_SNDBUF: 212992, SO_RCVBUF: 212992, SO_ACCEPTCONN: 0}
    if name not in values:
        raise fserr(errno.ENOPROTOOPT)
    t.thread.write(val, struct.pack("<i", values[name]))
    t.thread.write(lenp, struct.pack("<I", 4))
    return 0


@syscall("setsockopt", support=PARTIAL, note="accepted without effect")
def sys_setsockopt(k, t, fd, level, name, *_):
    _sock(t, fd)
    return 0


@syscall("getsockname", "getpeername")
def sys_getsockname(k, t, fd, addr, lenp, *_):
    _, sock = _sock(t, fd)
    if t.syscall_nr == 52 and not sock.connected:  # getpeername
        raise fserr(errno.ENOTCONN)
    t.thread.write(addr, struct.pack("<H", AF_UNIX))
    t.thread.write(lenp, struct.pack("<I", 2))
    return 0
