"""Control messages (struct cmsghdr) as sendmsg reads them and recvmsg
writes them, and the SOL_SOCKET ones the socket layer itself handles
(net/core/scm.c): SCM_RIGHTS (fds in, open file descriptions across,
fds out) and SCM_CREDENTIALS (checked on the way in).

In the sentry a control message is (level, type, payload); SCM_RIGHTS'
payload is a list of FileDescriptions, SCM_CREDENTIALS' the 12 bytes of a
struct ucred, anything else bytes.
"""
from __future__ import annotations

import errno
import struct

from vfs.inode import fserr
from vfs.locks import LOCKS

from .caps import CAP_SETGID, CAP_SETUID, CAP_SYS_ADMIN, capable
from .socketfile import SCM_CREDENTIALS, SCM_RIGHTS, SOL_SOCKET

HDR = struct.Struct("<Qii")   # cmsg_len, cmsg_level, cmsg_type
UCRED = struct.Struct("<iII")  # pid, uid, gid
I32 = struct.Struct("<i")
SCM_MAX_FD = 253
OPTMEM_MAX = 131072           # net.core.optmem_max: the most control data a send may carry
INVALID_ID = 0xFFFFFFFF
OVERFLOW_ID = 65534           # what an id the receiver cannot see reads as
MSG_CTRUNC = 0x8


def align(n: int) -> int:
    return (n + 7) & ~7


def cmsg_len(n: int) -> int:
    return HDR.size + n


def cmsg_space(n: int) -> int:
    return HDR.size + align(n)


def parse(raw: bytes) -> list[tuple[int, int, bytes]]:
    """The messages of a sendmsg control buffer (for_each_cmsghdr with
    CMSG_OK): a header whose length is short or runs past the buffer is
    EINVAL; fewer than a header's bytes left end the list."""
    out, off = [], 0
    while len(raw) - off >= HDR.size:
        length, level, ctype = HDR.unpack_from(raw, off)
        if length < HDR.size or length > len(raw) - off:
            raise fserr(errno.EINVAL)
        out.append((level, ctype, raw[off + HDR.size:off + length]))
        off += align(length)
    return out


def drop_description(desc) -> None:
    """Let go of an in-flight reference (a message never received, or an fd
    that did not fit the receiver's buffer)."""
    desc.decref()
    if desc.refs == 0:
        LOCKS.release_description(desc)


def drop_control(control: list) -> None:
    for level, ctype, payload in control:
        if level == SOL_SOCKET and ctype == SCM_RIGHTS:
            for desc in payload:
                drop_description(desc)


def from_guest(k, t, messages: list[tuple[int, int, bytes]]) -> list:
    """__scm_send: SCM_RIGHTS fds become the descriptions they name (all
    SCM_RIGHTS messages of one send merge into one; EBADF for a bad fd,
    EINVAL past SCM_MAX_FD), SCM_CREDENTIALS is checked against what the
    sender may claim. Other messages pass through for the family."""
    out, rights = [], None
    for level, ctype, payload in messages:
        if level == SOL_SOCKET and ctype == SCM_RIGHTS:
            n = len(payload) // 4
            if n <= 0:
                continue
            if rights is None:
                rights = []
                out.append((SOL_SOCKET, SCM_RIGHTS, rights))
            if len(rights) + n > SCM_MAX_FD:
                raise fserr(errno.EINVAL)
            for i in range(n):
                rights.append(t.tg.fdtable.get(I32.unpack_from(payload, 4 * i)[0]))
        elif level == SOL_SOCKET and ctype == SCM_CREDENTIALS:
            if len(payload) != UCRED.size:
                raise fserr(errno.EINVAL)
            check_creds(k, t, *UCRED.unpack(payload))
            out.append((level, ctype, payload))
        else:
            out.append((level, ctype, payload))
    return out


def check_creds(k, t, pid: int, uid: int, gid: int) -> None:
    """scm_check_creds: a sender may claim its own pid (any, with
    CAP_SYS_ADMIN) and one of its real, effective or saved ids (any, with
    CAP_SETUID/CAP_SETGID); the pid must exist."""
    if uid == INVALID_ID or gid == INVALID_ID:
        raise fserr(errno.EINVAL)
    c = t.tg.creds
    if not ((pid == t.tg.tgid or capable(c, CAP_SYS_ADMIN))
            and (uid in (c.uid, c.euid, c.suid) or capable(c, CAP_SETUID))
            and (gid in (c.gid, c.egid, c.sgid) or capable(c, CAP_SETGID))):
        raise fserr(errno.EPERM)
    if pid != t.tg.tgid and k.pidns.tasks.get(pid) is None:
        raise fserr(errno.ESRCH)


class ControlWriter:
    """put_cmsg and scm_detach_fds: fill the receiver's control buffer,
    setting MSG_CTRUNC where it is short."""

    def __init__(self, t, addr: int, length: int, cloexec: bool):
        self.t = t
        self.addr = addr if length > 0 else 0
        self.left = length if addr else 0
        self.used = 0
        self.flags = 0
        self.cloexec = cloexec

    def put(self, level: int, ctype: int, data: bytes) -> None:
        if not self.addr or self.left < HDR.size:
            self.flags |= MSG_CTRUNC
            return
        length = cmsg_len(len(data))
        if self.left < length:
            self.flags |= MSG_CTRUNC
            length = self.left
        self.t.thread.write(self.addr + self.used, HDR.pack(length, level, ctype) + data[:length - HDR.size])
        self._advance(min(cmsg_space(len(data)), self.left))

    def put_rights(self, descs: list) -> None:
        """Install as many fds as fit (each takes its own reference); the
        rest are dropped (closed) and MSG_CTRUNC says so."""
        room = (self.left - HDR.size) // 4 if self.addr and self.left > HDR.size else 0
        fds = []
        try:
            for desc in descs[:max(room, 0)]:
                try:
                    fds.append(self.t.tg.fdtable.install(desc, cloexec=self.cloexec))
                except OSError:
                    break
        finally:
            for desc in descs:
                drop_description(desc)
        if fds:
            length = cmsg_len(4 * len(fds))
            self.t.thread.write(self.addr + self.used, HDR.pack(length, SOL_SOCKET, SCM_RIGHTS)
                                + b"".join(I32.pack(fd) for fd in fds))
            self._advance(min(cmsg_space(4 * len(fds)), self.left))
        if len(fds) < len(descs):
            self.flags |= MSG_CTRUNC

    def _advance(self, n: int) -> None:
        self.used += n
        self.left -= n

    def write(self, control: list) -> None:
        for level, ctype, payload in control:
            if level == SOL_SOCKET and ctype == SCM_RIGHTS:
                self.put_rights(payload)
            else:
                self.put(level, ctype, payload)

