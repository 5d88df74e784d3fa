"""Socket syscalls over sentry.unix: AF_UNIX socket pairs, named and
abstract sockets, listeners. Other families wait for the netstack and get
EAFNOSUPPORT."""
from __future__ import annotations

import errno
import struct

from vfs.file import O_CLOEXEC, O_NONBLOCK, O_RDWR, FileDescription, WouldBlock
from vfs.inode import fserr

from ..unix import (AF_UNIX, SNDBUF, SOCK_DGRAM, SOCK_SEQPACKET, SOCK_STREAM, UnixNames, UnixSocket,
                    encode_name, parse_addr, socketpair)
from ..waiter import Block
from .file import write_all
from .table import PARTIAL, syscall
from .util import install_pair, s32

AF_UNSPEC = 0
SOCK_RAW, SOCK_MAX = 3, 11
SOCK_TYPE_MASK = 0xF
MSG_PEEK, MSG_TRUNC, MSG_DONTWAIT, MSG_NOSIGNAL, MSG_WAITALL = 2, 0x20, 0x40, 0x4000, 0x100
SOL_SOCKET = 1
SO_TYPE, SO_ERROR, SO_SNDBUF, SO_RCVBUF, SO_PEERCRED = 3, 4, 7, 8, 17
SO_ACCEPTCONN, SO_PROTOCOL, SO_DOMAIN = 30, 38, 39
SOCKADDR_MAX = 128  # sizeof(struct sockaddr_storage)
NR_ACCEPT, NR_GETPEERNAME = 43, 52
MSGHDR = struct.Struct("<QI4xQQQQi4x")  # name, namelen, iov, iovlen, control, controllen, flags
IOV = struct.Struct("<QQ")
I32 = struct.Struct("<i")


def _names(k) -> UnixNames:
    """The sandbox's table of bound AF_UNIX names (one per kernel)."""
    names = getattr(k, "unix_names", None)
    if names is None:
        names = k.unix_names = UnixNames()
    return names


def _cred(t) -> tuple:
    """(pid, uid, gid) as SO_PEERCRED reports the caller."""
    c = t.tg.creds
    return (t.tg.tgid, c.euid, c.egid)


def _sock(t, fd) -> tuple:
    desc = t.tg.fdtable.get(s32(fd))
    if not isinstance(desc.impl, UnixSocket):
        raise fserr(errno.ENOTSOCK)
    return desc, desc.impl


def _kind(family, stype):
    """__sys_socket's checks, then unix_create's: the socket type."""
    if stype & ~SOCK_TYPE_MASK & ~(O_NONBLOCK | O_CLOEXEC):
        raise fserr(errno.EINVAL)
    kind = stype & SOCK_TYPE_MASK
    if family != AF_UNIX:
        raise fserr(errno.EAFNOSUPPORT)
    if kind >= SOCK_MAX:
        raise fserr(errno.EINVAL)
    if kind == SOCK_RAW:
        kind = SOCK_DGRAM  # Linux's AF_UNIX takes SOCK_RAW as SOCK_DGRAM
    if kind not in (SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET):
        raise fserr(errno.ESOCKTNOSUPPORT)
    return kind


def _read_addr(t, addr, addrlen) -> bytes:
    """move_addr_to_kernel."""
    n = s32(addrlen)
    if n < 0 or n > SOCKADDR_MAX:
        raise fserr(errno.EINVAL)
    return t.thread.read(addr, n) if n else b""


def _put_addr(t, addr, lenp, raw: bytes) -> None:
    """move_addr_to_user: as much of raw as the buffer takes; the length
    written back is raw's own."""
    n = I32.unpack(t.thread.read(lenp, 4))[0]
    n = min(n, len(raw))
    if n < 0:
        raise fserr(errno.EINVAL)
    if n:
        t.thread.write(addr, raw[:n])
    t.thread.write(lenp, I32.pack(len(raw)))


def _wait(desc, flags, wb: WouldBlock):
    if desc.nonblocking or flags & MSG_DONTWAIT:
        raise fserr(errno.EAGAIN) from None
    raise Block(wb.waitable) from None


def _io(desc, sock, flags, op):
    try:
        return op()
    except WouldBlock as wb:
        _wait(desc, flags, wb)


@syscall("socket", support=PARTIAL, note="AF_UNIX only; other families EAFNOSUPPORT")
def sys_socket(k, t, family, stype, protocol, *_):
    kind = _kind(family, stype)
    if protocol and protocol != AF_UNIX:
        raise fserr(errno.EPROTONOSUPPORT)
    desc = FileDescription(UnixSocket(kind, _cred(t)), O_RDWR | (stype & O_NONBLOCK))
    return t.tg.fdtable.install(desc, cloexec=bool(stype & O_CLOEXEC))


@syscall("socketpair", support=PARTIAL, note="AF_UNIX; no SCM_RIGHTS/SCM_CREDENTIALS yet")
def sys_socketpair(k, t, family, stype, protocol, sv, *_):
    kind = _kind(family, stype)
    if protocol and protocol != AF_UNIX:
        raise fserr(errno.EPROTONOSUPPORT)
    a, b = socketpair(kind, _cred(t))
    flags = O_RDWR | (stype & O_NONBLOCK)
    return install_pair(t, sv, FileDescription(a, flags), FileDescription(b, flags), bool(stype & O_CLOEXEC))


@syscall("bind", support=PARTIAL, note="AF_UNIX: paths (an S_IFSOCK file in the sandbox VFS), abstract "
                                       "names (the sandbox's own table), autobind")
def sys_bind(k, t, fd, addr, addrlen, *_):
    _, sock = _sock(t, fd)
    raw = _read_addr(t, addr, addrlen)
    names = _names(k)
    if raw == encode_name(None):
        names.autobind(sock)
        return 0
    names.bind(sock, parse_addr(raw), k.mounts, k.path_context(t), t.tg.fs.umask)
    return 0


@syscall("listen", note="AF_UNIX stream and seqpacket; the backlog is capped at 4096")
def sys_listen(k, t, fd, backlog, *_):
    _, sock = _sock(t, fd)
    sock.listen(s32(backlog), _cred(t))
    return 0


@syscall("connect", support=PARTIAL, note="AF_UNIX paths and abstract names inside the sandbox")
def sys_connect(k, t, fd, addr, addrlen, *_):
    desc, sock = _sock(t, fd)
    raw = _read_addr(t, addr, addrlen)
    names = _names(k)
    if sock.stype == SOCK_DGRAM:
        if len(raw) < 2:
            raise fserr(errno.EINVAL)
        if int.from_bytes(raw[:2], "little") == AF_UNSPEC:
            sock.connect_dgram(None)  # dissolve the association
            return 0
        sock.connect_dgram(names.find(parse_addr(raw), sock.stype, k.mounts, k.path_context(t)))
        return 0
    other = names.find(parse_addr(raw), sock.stype, k.mounts, k.path_context(t))
    _io(desc, sock, 0, lambda: sock.connect_to(other, _cred(t)))
    return 0


@syscall("accept", "accept4", note="AF_UNIX listeners; the address is the client's name")
def sys_accept(k, t, fd, addr, lenp, flags=0, *_):
    desc, sock = _sock(t, fd)
    if t.syscall_nr == NR_ACCEPT:
        flags = 0
    if flags & ~(O_NONBLOCK | O_CLOEXEC):
        raise fserr(errno.EINVAL)
    server = _io(desc, sock, 0, sock.accept)
    try:
        if addr:
            peer = server.peer
            _put_addr(t, addr, lenp, encode_name(peer.name if peer is not None else None))
        return t.tg.fdtable.install(FileDescription(server, O_RDWR | (flags & O_NONBLOCK)),
                                    cloexec=bool(flags & O_CLOEXEC))
    except OSError:
        server.release()  # the connection is dropped, as Linux drops it
        raise


def _destination(k, t, sock, name_raw: bytes | None, size: int):
    """The socket a datagram goes to: the named one, or None (the peer)."""
    if name_raw is None:
        return None
    if sock.stype == SOCK_STREAM:
        raise fserr(errno.EISCONN if sock.connected else errno.EOPNOTSUPP)
    if sock.stype == SOCK_SEQPACKET:
        return None  # seqpacket ignores the address
    name = parse_addr(name_raw)
    if size > SNDBUF - 32:
        raise fserr(errno.EMSGSIZE)
    if sock.shut_wr:
        raise fserr(errno.EPIPE)
    return _names(k).find(name, sock.stype, k.mounts, k.path_context(t))


def _send(k, t, fd, data, flags, name_raw=None):
    desc, sock = _sock(t, fd)
    try:
        other = _destination(k, t, sock, name_raw, len(data))
        if sock.stype == SOCK_STREAM and not flags & MSG_DONTWAIT:
            return write_all(t, desc, data)  # a blocking stream send sends it all
        return _io(desc, sock, flags, lambda: sock.send_to(other, data))
    except OSError as e:
        if e.errno == errno.EPIPE and sock.stype != SOCK_DGRAM and not flags & MSG_NOSIGNAL:
            from ..signals import send_signal_to_task
            send_signal_to_task(k, t, 13)
        raise


def _recv(k, t, fd, size, flags):
    """(data, what the call returns, the sender's address (b"": none), whether
    a message was cut short)."""
    desc, sock = _sock(t, fd)
    data, full, sender = _io(desc, sock, flags, lambda: sock.recv_msg(size, peek=bool(flags & MSG_PEEK)))
    ret = full if flags & MSG_TRUNC and sock.stype != SOCK_STREAM else len(data)
    name = b""
    if full and sender is not None and sender.name is not None:
        name = encode_name(sender.name)
    return data, ret, name, full > len(data)


@syscall("sendto", note="AF_UNIX: datagrams to a bound path or abstract name")
def sys_sendto(k, t, fd, buf, length, flags, addr, addrlen):
    name_raw = _read_addr(t, addr, addrlen) if addr else None
    return _send(k, t, fd, t.thread.read(buf, min(length, 1 << 24)), flags, name_raw or None)


@syscall("recvfrom", note="AF_UNIX: the sender's bound name")
def sys_recvfrom(k, t, fd, buf, length, flags, addr, addrlen):
    data, ret, name, _ = _recv(k, t, fd, min(length, 1 << 24), flags)
    if data:
        t.thread.write(buf, data)
    if addr and addrlen:
        _put_addr(t, addr, addrlen, name)
    return ret


def _iovecs(t, iov, n):
    if n > 1024:
        raise fserr(errno.EMSGSIZE)
    raw = t.thread.read(iov, 16 * n) if n else b""
    return [IOV.unpack_from(raw, 16 * i) for i in range(n)]


@syscall("sendmsg", support=PARTIAL, note="control messages are ignored")
def sys_sendmsg(k, t, fd, msg, flags, *_):
    name, namelen, iov, iovlen, control, controllen, _f = MSGHDR.unpack(t.thread.read(msg, MSGHDR.size))
    name_raw = _read_addr(t, name, namelen) if name else None
    data = b"".join(t.thread.read(b, n) for b, n in _iovecs(t, iov, iovlen) if n)
    return _send(k, t, fd, data, flags, name_raw or None)


@syscall("recvmsg", support=PARTIAL, note="no control messages are returned")
def sys_recvmsg(k, t, fd, msg, flags, *_):
    name, namelen, iov, iovlen, control, controllen, _f = MSGHDR.unpack(t.thread.read(msg, MSGHDR.size))
    vecs = _iovecs(t, iov, iovlen)
    data, ret, addr, truncated = _recv(k, t, fd, sum(n for _, n in vecs), flags)
    pos = 0
    for base, n in vecs:
        if pos >= len(data):
            break
        t.thread.write(base, data[pos:pos + n])
        pos += n
    if name and s32(namelen) < 0:
        raise fserr(errno.EINVAL)
    if name and addr:
        t.thread.write(name, addr[:namelen])
    # the name's full length, no control messages, MSG_TRUNC for a cut message
    hdr = MSGHDR.pack(name, len(addr) if name else namelen, iov, iovlen, control, 0,
                      MSG_TRUNC if truncated else 0)
    t.thread.write(msg, hdr)
    return ret


@syscall("shutdown")
def sys_shutdown(k, t, fd, how, *_):
    _, sock = _sock(t, fd)
    if s32(how) not in (0, 1, 2):
        raise fserr(errno.EINVAL)
    sock.shutdown(s32(how))
    return 0


@syscall("getsockopt", support=PARTIAL,
         note="SO_TYPE, SO_ERROR, SO_DOMAIN, SO_PROTOCOL, SO_ACCEPTCONN, SO_PEERCRED, buffer sizes")
def sys_getsockopt(k, t, fd, level, name, val, lenp, *_):
    _, sock = _sock(t, fd)
    if level != SOL_SOCKET:
        raise fserr(errno.ENOPROTOOPT)
    n = I32.unpack(t.thread.read(lenp, 4))[0]
    if n < 0:
        raise fserr(errno.EINVAL)
    if name == SO_PEERCRED:
        pid, uid, gid = sock.peer_cred or (0, -1, -1)
        raw = struct.pack("<iii", pid, uid, gid)
    else:
        values = {SO_TYPE: sock.stype, SO_DOMAIN: AF_UNIX, SO_PROTOCOL: 0,
                  SO_SNDBUF: SNDBUF, SO_RCVBUF: SNDBUF, SO_ACCEPTCONN: int(sock.listening)}
        if name == SO_ERROR:
            raw = I32.pack(sock.take_error())
        elif name in values:
            raw = I32.pack(values[name])
        else:
            raise fserr(errno.ENOPROTOOPT)
    n = min(n, len(raw))
    t.thread.write(val, raw[:n])
    t.thread.write(lenp, I32.pack(n))
    return 0


@syscall("setsockopt", support=PARTIAL, note="accepted without effect")
def sys_setsockopt(k, t, fd, level, name, *_):
    _sock(t, fd)
    return 0


@syscall("getsockname", "getpeername", note="AF_UNIX names as bound (paths as given to bind)")
def sys_getsockname(k, t, fd, addr, lenp, *_):
    _, sock = _sock(t, fd)
    if t.syscall_nr == NR_GETPEERNAME:
        peer = sock.peer
        if peer is None:
            raise fserr(errno.ENOTCONN)
        name = peer.name
    else:
        name = sock.name
    _put_addr(t, addr, lenp, encode_name(name))
    return 0
