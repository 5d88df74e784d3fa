"""AF_NETLINK sockets (netlink(7)): NETLINK_ROUTE answered by
sentry/rtnetlink.py from the sandbox's netstack, NETLINK_KOBJECT_UEVENT
as a socket no event ever reaches.

A netlink socket is datagram-like (SOCK_RAW and SOCK_DGRAM alike): each
send to the kernel (port id 0) is a buffer of requests the kernel runs at
once (netlink_rcv_skb: messages too short or overrunning the buffer end the
walk silently), queuing its answers on the sender's receive queue; each
recv returns one queued datagram. Dumps are answered in batches as Linux
does: the first at the request, the next whenever a read leaves the queue
at most half full, each batch as large as the biggest read buffer seen
(between NLMSG_GOODSIZE and 32 KiB), then NLMSG_DONE on its own.

Port ids are per protocol and sandbox-wide: bind(nl_pid=0) or the first
send takes the caller's tgid, or a random negative id when that is taken.
Sockets may also unicast to one another, or multicast to a group with
CAP_NET_ADMIN (netlink_sendmsg's checks); the kernel raises no events.

Memory is bounded by SO_RCVBUF: a kernel answer that finds the queue over
it is dropped and the socket reports ENOBUFS once (netlink_overrun),
unless NETLINK_NO_ENOBUFS; a dump never holds more than one batch queued
beyond what the reader has taken.
"""
from __future__ import annotations

import collections
import errno
import random
import struct

from vfs.file import WouldBlock
from vfs.inode import fserr

from . import rtnetlink
from .rtnetlink import (NLM_F_ACK, NLM_F_ACK_TLVS, NLM_F_CAPPED, NLM_F_MULTI, NLM_F_REQUEST,
                        NLMSG_DONE, NLMSG_ERROR, NLMSG_HDR, NLMSG_MIN_TYPE, Dump, NetlinkError, Request)
from .socketfile import (AF_NETLINK, POLLIN, POLLOUT, SCM_CREDENTIALS, SCM_RIGHTS, SOCK_DGRAM, SOCK_RAW,
                         SOL_SOCKET, SocketFile, privileged)
from .waiter import WaitQueue

NETLINK_ROUTE, NETLINK_KOBJECT_UEVENT, MAX_LINKS = 0, 15, 32
SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP, NETLINK_DROP_MEMBERSHIP, NETLINK_PKTINFO, NETLINK_BROADCAST_ERROR = 1, 2, 3, 4
NETLINK_NO_ENOBUFS, NETLINK_LISTEN_ALL_NSID, NETLINK_LIST_MEMBERSHIPS = 5, 8, 9
NETLINK_CAP_ACK, NETLINK_EXT_ACK, NETLINK_GET_STRICT_CHK = 10, 11, 12
# the options that are a flag (getsockopt answers 0 or 1)
_FLAG_OPTS = (NETLINK_PKTINFO, NETLINK_BROADCAST_ERROR, NETLINK_NO_ENOBUFS, NETLINK_LISTEN_ALL_NSID,
              NETLINK_CAP_ACK, NETLINK_EXT_ACK, NETLINK_GET_STRICT_CHK)
NLMSGERR_ATTR_MSG = 1
SOCKADDR_NL = struct.Struct("<HHII")    # family, pad, pid, groups
I32 = struct.Struct("<i")
UCRED = struct.Struct("<iII")
MSG_OOB, MSG_PEEK, MSG_TRUNC, MSG_DONTWAIT = 0x1, 0x2, 0x20, 0x40
# groups per protocol (rtnetlink: RTNLGRP_MAX; at least 32, as netlink_kernel_create makes it)
NGROUPS = {NETLINK_ROUTE: 39, NETLINK_KOBJECT_UEVENT: 32}
NLMSG_GOODSIZE = 3776                   # SKB_WITH_OVERHEAD(PAGE_SIZE)
DUMP_MAX = 32448                        # SKB_WITH_OVERHEAD(32768): the largest batch
SKB_OVERHEAD = 576                      # what a queued skb costs beside its data (its truesize)


class NetlinkPorts:
    """The sandbox's netlink sockets: the bound ones by (protocol, port
    id), and all of them (an unbound socket may still be in groups)."""

    def __init__(self):
        self.ports: dict[tuple[int, int], NetlinkSocket] = {}
        self.sockets: set[NetlinkSocket] = set()

    def insert(self, sock: "NetlinkSocket", portid: int) -> None:
        key = (sock.protocol, portid)
        if key in self.ports:
            raise fserr(errno.EADDRINUSE)
        self.ports[key] = sock
        sock.portid = portid
        sock.bound = True

    def autobind(self, sock: "NetlinkSocket", tgid: int) -> None:
        """netlink_autobind: the caller's tgid, else a random negative id."""
        portid = tgid & 0xFFFFFFFF
        while (sock.protocol, portid) in self.ports:
            portid = random.randint(-(1 << 31), -4097) & 0xFFFFFFFF
        self.insert(sock, portid)

    def remove(self, sock: "NetlinkSocket") -> None:
        self.sockets.discard(sock)
        if self.ports.get((sock.protocol, sock.portid)) is sock:
            del self.ports[(sock.protocol, sock.portid)]

    def lookup(self, protocol: int, portid: int) -> "NetlinkSocket | None":
        return self.ports.get((protocol, portid))

    def members(self, protocol: int, group: int) -> list:
        bit = 1 << (group - 1)
        return [s for s in self.sockets if s.protocol == protocol and s.groups & bit]


def ports_of(k) -> NetlinkPorts:
    ports = getattr(k, "netlink_ports", None)
    if ports is None:
        ports = k.netlink_ports = NetlinkPorts()
    return ports


def _stack(k):
    from .inet import stack_of
    return stack_of(k)


def _nlmsg(mtype: int, flags: int, seq: int, pid: int, body: bytes) -> bytes:
    n = NLMSG_HDR.size + len(body)
    return NLMSG_HDR.pack(n, mtype, flags, seq, pid) + body + bytes(-n % 4)


class _Datagram:
    """One queued skb: its bytes and who sent it."""
    __slots__ = ("data", "sender", "group", "cred")

    def __init__(self, data: bytes, sender: int = 0, group: int = 0, cred: tuple = (0, 0, 0)):
        self.data, self.sender, self.group, self.cred = data, sender, group, cred


class _DumpState:
    """A dump under way: its messages, how far it has got, and its DONE."""
    __slots__ = ("messages", "pos", "seq", "flags", "error", "text", "done_flags", "done_inline")

    def __init__(self, dump: Dump, seq: int):
        self.messages = dump.messages
        self.pos = 0
        self.seq = seq
        self.flags = dump.flags
        self.error = dump.error
        self.text = dump.text
        self.done_flags = dump.flags if dump.done_flags is None else dump.done_flags
        self.done_inline = dump.done_inline


class NetlinkSocket(SocketFile):
    family = AF_NETLINK
    scm_capable = True

    def __init__(self, k, stype: int, protocol: int):
        super().__init__(k, stype, protocol)
        self.portid = 0
        self.bound = False
        self.groups = 0                 # bit g-1 set: member of group g
        self.connected = False          # NETLINK_CONNECTED: only dst_portid may send to it
        self.dst_portid = 0
        self.dst_group = 0
        self.nlopts: set[int] = set()   # the _FLAG_OPTS that are on
        self.rxq: collections.deque[_Datagram] = collections.deque()
        self.rmem = 0
        self.err = 0
        self.congested = False
        self.dump: _DumpState | None = None
        self.max_recvmsg_len = 0
        self.readq = WaitQueue()
        self.closed = False
        ports_of(k).sockets.add(self)

    # --- addresses ---
    def _autobind(self, k, t) -> None:
        if not self.bound:
            ports_of(k).autobind(self, t.tg.tgid if t is not None else 0)

    def bind(self, k, t, raw: bytes) -> None:
        if len(raw) < SOCKADDR_NL.size:
            raise fserr(errno.EINVAL)
        fam, _pad, pid, groups = SOCKADDR_NL.unpack_from(raw)
        if fam != AF_NETLINK:
            raise fserr(errno.EINVAL)
        ngroups = NGROUPS[self.protocol]
        if ngroups < 64:
            groups &= (1 << ngroups) - 1
        if self.bound and pid != self.portid:
            raise fserr(errno.EINVAL)
        if not self.bound:
            if pid:
                ports_of(k).insert(self, pid)
            else:
                self._autobind(k, t)
        # bind sets the first 32 groups; ADD_MEMBERSHIP reaches the rest
        self.groups = (self.groups & ~0xFFFFFFFF) | groups

    def connect(self, k, t, raw: bytes, nonblocking: bool) -> None:
        if len(raw) < 2:
            raise fserr(errno.EINVAL)
        fam = int.from_bytes(raw[:2], "little")
        if fam == 0:                    # AF_UNSPEC: back to the kernel, unconnected
            self.connected = False
            self.dst_portid = self.dst_group = 0
            return
        if fam != AF_NETLINK or len(raw) < SOCKADDR_NL.size:
            raise fserr(errno.EINVAL)
        _fam, _pad, pid, groups = SOCKADDR_NL.unpack_from(raw)
        if (pid or groups) and not privileged(t):
            raise fserr(errno.EPERM)
        self._autobind(k, t)
        self.connected = True
        self.dst_portid = pid
        self.dst_group = _ffs(groups)

    def getsockname(self, k, t) -> bytes:
        return SOCKADDR_NL.pack(AF_NETLINK, 0, self.portid, self.groups & 0xFFFFFFFF)

    def getpeername(self, k, t) -> bytes:
        group = 1 << (self.dst_group - 1) if self.dst_group else 0
        return SOCKADDR_NL.pack(AF_NETLINK, 0, self.dst_portid, group)

    def pair(self, k, t, other) -> None:
        raise fserr(errno.EOPNOTSUPP)

    # --- sending ---
    def sendmsg(self, k, t, data: bytes, raw_to: bytes | None, control: list, flags: int) -> int:
        if flags & MSG_OOB:
            raise fserr(errno.EOPNOTSUPP)
        if not data:
            raise fserr(errno.ENODATA)  # "zero length message leads to an empty skb"
        for level, ctype, _payload in control:
            if level == SOL_SOCKET and ctype == SCM_RIGHTS:
                raise fserr(errno.EINVAL)   # __scm_send: fds travel on AF_UNIX only
        if raw_to:                      # (a zero-length address is none)
            if len(raw_to) < SOCKADDR_NL.size:
                raise fserr(errno.EINVAL)
            fam, _pad, dst_pid, groups = SOCKADDR_NL.unpack_from(raw_to)
            if fam != AF_NETLINK:
                raise fserr(errno.EINVAL)
            dst_group = _ffs(groups)
            if (dst_group or dst_pid) and not privileged(t):
                raise fserr(errno.EPERM)
        else:
            dst_pid, dst_group = self.dst_portid, self.dst_group
        self._autobind(k, t)
        if len(data) > self.sndbuf - 32:
            raise fserr(errno.EMSGSIZE)
        cred = (t.tg.tgid, t.tg.creds.euid, t.tg.creds.egid) if t is not None else (0, 0, 0)
        ports = ports_of(k)
        other = None
        if dst_pid:
            other = ports.lookup(self.protocol, dst_pid)
            if other is None or not other.accepts(self.portid):
                raise fserr(errno.ECONNREFUSED)
            if other.rmem > other.rcvbuf or other.congested:
                # netlink_attachskb waits for room (checked before any copy
                # goes out, so a re-run after the wait sends nothing twice)
                raise WouldBlock(other.readq, POLLOUT)
        if dst_group:
            # netlink_broadcast skips the sender and the unicast target's
            # port id (0: the kernel, so an unbound member gets nothing)
            for s in ports.members(self.protocol, dst_group):
                if s is not self and s.portid != dst_pid:
                    s._deliver(_Datagram(data, self.portid, dst_group, cred))
        if other is not None:
            other._deliver(_Datagram(data, self.portid, 0, cred))
        else:
            self._kernel_receive(k, t, data)
        return len(data)

    def _kernel_receive(self, k, t, data: bytes) -> None:
        """netlink_rcv_skb: run each request in the buffer; control
        messages and non-requests are only acked (when asked)."""
        for msg, mtype, mflags, seq in messages(data):
            err, text = 0, None
            if mflags & NLM_F_REQUEST and mtype >= NLMSG_MIN_TYPE:
                try:
                    err = self._request(k, t, mtype, mflags, seq, msg[NLMSG_HDR.size:])
                except NetlinkError as e:
                    err, text = e.errno, e.text
            if err is not None and (mflags & NLM_F_ACK or err):
                self._ack(msg, seq, err, text)

    def _request(self, k, t, mtype: int, mflags: int, seq: int, body: bytes):
        """One request; the errno to ack (0), or None for a dump started
        (which is never acked)."""
        if self.protocol != NETLINK_ROUTE:
            # uevent_net_rcv_skb wants CAP_SYS_ADMIN; nothing here acts on uevents
            raise NetlinkError(errno.EOPNOTSUPP if privileged(t) else errno.EPERM)
        req = Request(mtype, mflags, seq, body, strict=NETLINK_GET_STRICT_CHK in self.nlopts,
                      privileged=privileged(t), uid=t.tg.creds.euid if t is not None else 0)
        answer = rtnetlink.handle(_stack(k), req)
        if isinstance(answer, Dump):
            if self.dump is not None:
                raise NetlinkError(errno.EBUSY)
            self.dump = _DumpState(answer, seq)
            if self.rmem >= self.rcvbuf:
                raise NetlinkError(errno.ENOBUFS)   # the dump goes on once the reader makes room
            self._dump_batch()
            return None
        for rtype, rbody in answer:
            self._from_kernel(_nlmsg(rtype, 0, seq, self.portid, rbody))
        return 0

    def _ack(self, msg: bytes, seq: int, err: int, text: str | None) -> None:
        """netlink_ack: an NLMSG_ERROR carrying the request's header, all of
        the request for an error (unless NETLINK_CAP_ACK), and with
        NETLINK_EXT_ACK the error's text."""
        flags = 0
        if err and NETLINK_CAP_ACK not in self.nlopts:
            body = I32.pack(-err) + msg
        else:
            body = I32.pack(-err) + msg[:NLMSG_HDR.size]
            flags |= NLM_F_CAPPED
        if text and err and NETLINK_EXT_ACK in self.nlopts:
            body += bytes(-len(body) % 4) + rtnetlink.cstr(NLMSGERR_ATTR_MSG, text.encode())
            flags |= NLM_F_ACK_TLVS
        self._from_kernel(_nlmsg(NLMSG_ERROR, flags, seq, self.portid, body))

    def _dump_batch(self) -> None:
        """netlink_dump: as many messages as the batch holds, or, once they
        are all out, NLMSG_DONE with the dump's errno."""
        d = self.dump
        limit = max(NLMSG_GOODSIZE, min(self.max_recvmsg_len, DUMP_MAX))
        parts, size = [], 0
        while d.pos < len(d.messages):
            rtype, rbody = d.messages[d.pos]
            m = _nlmsg(rtype, NLM_F_MULTI | d.flags, d.seq, self.portid, rbody)
            if parts and size + len(m) > limit:
                break
            parts.append(m)
            size += len(m)
            d.pos += 1
        if d.pos == len(d.messages) and (not parts or d.done_inline):
            body = I32.pack(-d.error)
            flags = NLM_F_MULTI | d.done_flags
            if d.text and NETLINK_EXT_ACK in self.nlopts:
                body += rtnetlink.cstr(NLMSGERR_ATTR_MSG, d.text.encode())
                flags |= NLM_F_ACK_TLVS
            done = _nlmsg(NLMSG_DONE, flags, d.seq, self.portid, body)
            if not parts or size + len(done) <= limit:
                parts.append(done)
                self.dump = None
        self._queue(_Datagram(b"".join(parts)))

    def accepts(self, portid: int) -> bool:
        """netlink_getsockbyportid: a connected socket takes unicasts from
        its peer only (the kernel is port 0)."""
        return not self.connected or self.dst_portid == portid

    def _from_kernel(self, data: bytes) -> None:
        """netlink_unicast from the kernel: refused by a socket connected
        elsewhere; dropped, with ENOBUFS, when the receive queue is already
        over SO_RCVBUF."""
        if not self.accepts(0):
            return
        if self.rmem > self.rcvbuf or self.congested:
            self._overrun()
            return
        self._queue(_Datagram(data))

    def _deliver(self, dgram: _Datagram) -> None:
        """A datagram from another socket (a multicast copy is dropped,
        with ENOBUFS, when the queue is full)."""
        if self.closed:
            return
        if self.rmem > self.rcvbuf or self.congested:
            self._overrun()
            return
        self._queue(dgram)

    def _overrun(self) -> None:
        if NETLINK_NO_ENOBUFS not in self.nlopts and not self.congested:
            self.congested = True
            self.err = errno.ENOBUFS
            self.readq.notify()

    def _queue(self, dgram: _Datagram) -> None:
        self.rxq.append(dgram)
        self.rmem += len(dgram.data) + SKB_OVERHEAD
        self.readq.notify()

    # --- receiving ---
    def recvmsg(self, k, t, size: int, flags: int):
        if flags & MSG_OOB:
            raise fserr(errno.EOPNOTSUPP)
        if self.err:
            err, self.err = self.err, 0
            raise fserr(err)
        if not self.rxq:
            raise WouldBlock(self.readq, POLLIN)
        self.max_recvmsg_len = min(max(self.max_recvmsg_len, size), DUMP_MAX)
        dgram = self.rxq[0]
        if not flags & MSG_PEEK:
            self.rxq.popleft()
            self.rmem -= len(dgram.data) + SKB_OVERHEAD
            if not self.rxq:
                self.congested = False
            self.readq.notify()         # a sender waiting for room
        full = len(dgram.data)
        data = dgram.data[:size]
        if self.dump is not None and self.rmem <= self.rcvbuf // 2:
            self._dump_batch()
        group = 1 << (dgram.group - 1) if dgram.group else 0
        raw_from = SOCKADDR_NL.pack(AF_NETLINK, 0, dgram.sender, group)
        control = []
        if NETLINK_PKTINFO in self.nlopts:
            control.append((SOL_NETLINK, NETLINK_PKTINFO, struct.pack("<I", dgram.group)))
        if self.passcred:
            control.append((SOL_SOCKET, SCM_CREDENTIALS, UCRED.pack(*dgram.cred)))
        ret = full if flags & MSG_TRUNC else len(data)
        return data, ret, raw_from, control, MSG_TRUNC if full > len(data) else 0

    def readiness(self) -> int:
        mask = POLLOUT
        if self.rxq or self.err:
            mask |= POLLIN
        if self.err:
            mask |= 0x8                 # POLLERR
        return mask

    def wait_queues(self) -> tuple:
        return (self.readq,)

    def release(self) -> None:
        self.closed = True
        ports_of(self.kernel).remove(self)
        self.rxq.clear()
        self.rmem = 0
        self.dump = None
        self.readq.notify()

    # --- options ---
    def setsockopt(self, k, t, level: int, name: int, value: bytes) -> None:
        if level == SOL_SOCKET:
            return super().setsockopt(k, t, level, name, value)
        if level != SOL_NETLINK:
            raise fserr(errno.ENOPROTOOPT)
        val = I32.unpack_from(value)[0] if len(value) >= 4 else 0
        if name in (NETLINK_ADD_MEMBERSHIP, NETLINK_DROP_MEMBERSHIP):
            group = val & 0xFFFFFFFF
            if not group or group - 1 >= NGROUPS[self.protocol]:
                raise fserr(errno.EINVAL)
            if name == NETLINK_ADD_MEMBERSHIP:
                self.groups |= 1 << (group - 1)
            else:
                self.groups &= ~(1 << (group - 1))
            return
        if name not in _FLAG_OPTS:
            raise fserr(errno.ENOPROTOOPT)
        if name == NETLINK_LISTEN_ALL_NSID and val and not privileged(t):
            raise fserr(errno.EPERM)
        if val:
            self.nlopts.add(name)
        else:
            self.nlopts.discard(name)
        if name == NETLINK_NO_ENOBUFS and val:
            self.congested = False      # netlink_setsockopt clears the congestion
            self.readq.notify()

    def getsockopt(self, k, t, level: int, name: int, optlen: int) -> bytes:
        if level == SOL_SOCKET:
            return super().getsockopt(k, t, level, name, optlen)
        if level != SOL_NETLINK:
            raise fserr(errno.ENOPROTOOPT)
        if optlen < 0:
            raise fserr(errno.EINVAL)
        if name == NETLINK_LIST_MEMBERSHIPS:
            ngroups = NGROUPS[self.protocol]
            nbytes = ((ngroups + 7) // 8 + 3) & ~3
            return self.groups.to_bytes(nbytes, "little")
        if name not in _FLAG_OPTS:
            raise fserr(errno.ENOPROTOOPT)
        if optlen < 4:
            raise fserr(errno.EINVAL)
        return I32.pack(int(name in self.nlopts))


def messages(data: bytes):
    """netlink_rcv_skb's walk over a sent buffer: (message, type, flags,
    seq) per message. A header cut short, or a length below the header's
    or past the buffer's end, ends the walk without an error."""
    off = 0
    while len(data) - off >= NLMSG_HDR.size:
        ln, mtype, mflags, seq, _pid = NLMSG_HDR.unpack_from(data, off)
        if ln < NLMSG_HDR.size or ln > len(data) - off:
            return
        yield data[off:off + ln], mtype, mflags, seq
        off += min((ln + 3) & ~3, len(data) - off)


def _ffs(v: int) -> int:
    """The 1-based index of the lowest bit set (0 for none)."""
    return (v & -v).bit_length()


def factory(k, t, stype: int, protocol: int) -> NetlinkSocket:
    """netlink_create: SOCK_RAW or SOCK_DGRAM, a protocol the kernel has."""
    if stype not in (SOCK_RAW, SOCK_DGRAM):
        raise fserr(errno.ESOCKTNOSUPPORT)
    if protocol < 0 or protocol >= MAX_LINKS:
        raise fserr(errno.EPROTONOSUPPORT)
    if protocol not in NGROUPS:
        raise fserr(errno.EPROTONOSUPPORT)
    return NetlinkSocket(k, stype, protocol)
