"""Process syscalls: ids, fork/clone, execve, exit, wait, groups,
sessions, limits."""
from __future__ import annotations

import errno
import struct

from vfs.inode import fserr

from .. import caps, process
from ..kernel import NORESUME
from .table import PARTIAL, syscall
from .util import AT_EMPTY_PATH, AT_SYMLINK_NOFOLLOW, dir_start, read_path, read_str_array, s32

SIGCHLD = 17


@syscall("getpid")
def sys_getpid(k, t, *_):
    return t.tg.tgid


@syscall("gettid")
def sys_gettid(k, t, *_):
    return t.tid


@syscall("getppid")
def sys_getppid(k, t, *_):
    p = t.tg.parent
    return p.tgid if p is not None else 0


@syscall("fork")
def sys_fork(k, t, *_):
    return process.clone(k, t, SIGCHLD, 0, 0, 0, 0)


@syscall("vfork")
def sys_vfork(k, t, *_):
    return process.clone(k, t, process.CLONE_VM | process.CLONE_VFORK | SIGCHLD, 0, 0, 0, 0)


@syscall("clone", support=PARTIAL, note="new namespaces (CLONE_NEW*) give EPERM")
def sys_clone(k, t, flags, stack, ptid, ctid, tls, *_):
    return process.clone(k, t, flags, stack, ptid, ctid, tls)


@syscall("clone3", support=PARTIAL, note="set_tid and cgroup fields unsupported")
def sys_clone3(k, t, args, size, *_):
    if size < 64:
        raise fserr(errno.EINVAL)
    (flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size,
     tls) = struct.unpack("<8Q", t.thread.read(args, 64))
    if flags & process.CLONE_PIDFD:
        raise fserr(errno.EINVAL)
    sp = stack + stack_size if stack else 0
    return process.clone(k, t, (flags & ~0xFF) | (exit_signal & 0xFF), sp, parent_tid, child_tid, tls)


def _execve(k, t, dirfd, path_addr, argv_addr, envp_addr, flags):
    path = read_path(t, path_addr)
    argv = read_str_array(t, argv_addr)
    envp = read_str_array(t, envp_addr)
    if not path:
        if not flags & AT_EMPTY_PATH:
            raise fserr(errno.ENOENT)
        desc = t.tg.fdtable.get(s32(dirfd))
        if desc.location is None:
            raise fserr(errno.EBADF)
        path = k.mounts.path_of(desc.location, t.tg.fs.root)
        start = None
    else:
        start = dir_start(k, t, dirfd, path)
        if flags & AT_SYMLINK_NOFOLLOW:
            loc = k.mounts.resolve(k.path_context(t), path, start=start, follow=False)
            if loc.inode.is_symlink():
                raise fserr(errno.ELOOP)
    process.execve(k, t, path, argv, envp, start)
    return NORESUME


@syscall("execve")
def sys_execve(k, t, path, argv, envp, *_):
    return _execve(k, t, -100, path, argv, envp, 0)


@syscall("execveat")
def sys_execveat(k, t, dirfd, path, argv, envp, flags, *_):
    return _execve(k, t, dirfd, path, argv, envp, flags)


@syscall("exit")
def sys_exit(k, t, code, *_):
    k.exit_thread(t, code)
    return NORESUME


@syscall("exit_group")
def sys_exit_group(k, t, code, *_):
    k.exit_group(t.tg, (code & 0xFF) << 8)
    return NORESUME


def _rusage_zero(t, addr):
    if addr:
        t.thread.write(addr, bytes(144))


@syscall("wait4")
def sys_wait4(k, t, pid, status_addr, options, rusage, *_):
    pid = s32(pid)
    if options & ~(process.WNOHANG | process.WUNTRACED | process.WCONTINUED
                   | process.WNOTHREAD | process.WALL | process.WCLONE):
        raise fserr(errno.EINVAL)
    if pid < -1:
        idtype, ident = process.P_PGID, -pid
    elif pid == -1:
        idtype, ident = process.P_ALL, 0
    elif pid == 0:
        idtype, ident = process.P_PGID, 0
    else:
        idtype, ident = process.P_PID, pid
    found = process.wait_child(k, t, idtype, ident, options | process.WEXITED)
    if found is None:
        return 0
    child, status = found
    if status_addr:
        t.thread.write(status_addr, struct.pack("<i", status))
    _rusage_zero(t, rusage)
    return child.tgid


def _waitid_info(t, infop, signo=0, code=0, pid=0, uid=0, status=0) -> None:
    """The six siginfo fields Linux's waitid writes, whatever it returns."""
    t.thread.write(infop, struct.pack("<iii", signo, 0, code))
    t.thread.write(infop + 16, struct.pack("<iIi", pid, uid, status))


def _waitid(k, t, idtype, ident, options):
    if options & ~(process.WNOHANG | process.WNOWAIT | process.WEXITED | process.WUNTRACED
                   | process.WCONTINUED | process.WNOTHREAD | process.WALL | process.WCLONE) or \
            not options & (process.WEXITED | process.WUNTRACED | process.WCONTINUED):
        raise fserr(errno.EINVAL)
    if idtype == process.P_PIDFD:
        if ident < 0:
            raise fserr(errno.EINVAL)
        from .signal import PidFD
        desc = t.tg.fdtable.get(ident)
        if not isinstance(desc.impl, PidFD):
            raise fserr(errno.EBADF)
        if desc.nonblocking:
            options |= process.WNOHANG
        idtype, ident = process.P_PID, desc.impl.tg.tgid
    elif idtype not in (process.P_ALL, process.P_PID, process.P_PGID) or \
            (idtype == process.P_PID and ident <= 0) or (idtype == process.P_PGID and ident < 0):
        raise fserr(errno.EINVAL)
    return process.wait_child(k, t, idtype, ident, options)


@syscall("waitid")
def sys_waitid(k, t, idtype, ident, infop, options, rusage, *_):
    try:
        found = _waitid(k, t, idtype, s32(ident), options)
    except OSError:
        if infop:
            _waitid_info(t, infop)
        raise
    if found is None:
        if infop:
            _waitid_info(t, infop)
        return 0
    child, status = found
    if status == 0xFFFF:
        code, si_status = 6, 18  # CLD_CONTINUED, SIGCONT
    elif status & 0xFF == 0x7F:
        code, si_status = 5, status >> 8  # CLD_STOPPED
    elif status & 0x7F:
        code = 3 if status & 0x80 else 2  # CLD_DUMPED, CLD_KILLED
        si_status = status & 0x7F
    else:
        code, si_status = 1, (status >> 8) & 0xFF  # CLD_EXITED
    if infop:
        _waitid_info(t, infop, SIGCHLD, code, child.tgid, child.creds.uid, si_status)
    _rusage_zero(t, rusage)
    return 0


@syscall("set_tid_address")
def sys_set_tid_address(k, t, addr, *_):
    t.clear_child_tid = addr
    return t.tid


@syscall("arch_prctl", support=PARTIAL, note="ARCH_SET_FS/GET_FS/SET_GS/GET_GS; CPUID faulting refused")
def sys_arch_prctl(k, t, code, addr, *_):
    ARCH_SET_GS, ARCH_SET_FS, ARCH_GET_FS, ARCH_GET_GS = 0x1001, 0x1002, 0x1003, 0x1004
    if code in (ARCH_SET_FS, ARCH_SET_GS):
        if addr >= 0x7FFF_FFFF_F000:
            raise fserr(errno.EPERM)
        regs = t.thread.get_regs()
        if code == ARCH_SET_FS:
            regs.fs_base = addr
        else:
            regs.gs_base = addr
        t.thread.set_regs(regs)
        return 0
    if code in (ARCH_GET_FS, ARCH_GET_GS):
        regs = t.thread.get_regs()
        t.thread.write(addr, struct.pack("<Q", regs.fs_base if code == ARCH_GET_FS else regs.gs_base))
        return 0
    raise fserr(errno.EINVAL)


# --- process groups and sessions ---
def _group(k, pid, t):
    if pid == 0:
        return t.tg
    tg = k.pidns.groups.get(pid)
    if tg is None:
        raise fserr(errno.ESRCH)
    return tg


@syscall("getpgid")
def sys_getpgid(k, t, pid, *_):
    return _group(k, s32(pid), t).pgid


@syscall("getpgrp")
def sys_getpgrp(k, t, *_):
    return t.tg.pgid


@syscall("setpgid")
def sys_setpgid(k, t, pid, pgid, *_):
    pid, pgid = s32(pid), s32(pgid)
    if pgid < 0:
        raise fserr(errno.EINVAL)
    tg = _group(k, pid, t)
    if tg is not t.tg and tg.parent is not t.tg:
        raise fserr(errno.ESRCH)
    if tg.sid == tg.tgid:
        raise fserr(errno.EPERM)
    if tg.sid != t.tg.sid:
        raise fserr(errno.EPERM)
    target = pgid or tg.tgid
    if target != tg.tgid and not any(g.pgid == target and g.sid == tg.sid
                                     for g in k.pidns.groups.values()):
        raise fserr(errno.EPERM)
    tg.pgid = target
    return 0


@syscall("getsid")
def sys_getsid(k, t, pid, *_):
    return _group(k, s32(pid), t).sid


@syscall("setsid")
def sys_setsid(k, t, *_):
    tg = t.tg
    if any(g.pgid == tg.tgid for g in k.pidns.groups.values()):
        raise fserr(errno.EPERM)
    tg.sid = tg.pgid = tg.tgid
    tg.ctty = None  # a new session has no controlling terminal
    return tg.tgid


# --- credentials: root inside by default; the ids are the sentry's ---
@syscall("getuid")
def sys_getuid(k, t, *_):
    return t.tg.creds.uid


@syscall("geteuid")
def sys_geteuid(k, t, *_):
    return t.tg.creds.euid


@syscall("getgid")
def sys_getgid(k, t, *_):
    return t.tg.creds.gid


@syscall("getegid")
def sys_getegid(k, t, *_):
    return t.tg.creds.egid


@syscall("getresuid")
def sys_getresuid(k, t, r, e, s, *_):
    c = t.tg.creds
    for addr, v in ((r, c.uid), (e, c.euid), (s, c.suid)):
        t.thread.write(addr, struct.pack("<I", v))
    return 0


@syscall("getresgid")
def sys_getresgid(k, t, r, e, s, *_):
    c = t.tg.creds
    for addr, v in ((r, c.gid), (e, c.egid), (s, c.sgid)):
        t.thread.write(addr, struct.pack("<I", v))
    return 0


UNCHANGED = 0xFFFFFFFF  # -1: leave the id as it is (and never a valid id)


def _uid_changed(c, old: tuple) -> None:
    caps.on_setuid(c, *old)


@syscall("setuid")
def sys_setuid(k, t, uid, *_):
    c = t.tg.creds
    uid &= 0xFFFFFFFF
    if uid == UNCHANGED:
        raise fserr(errno.EINVAL)
    old = (c.uid, c.euid, c.suid)
    if caps.capable(c, caps.CAP_SETUID):
        c.uid = c.suid = uid
    elif uid not in (c.uid, c.suid):
        raise fserr(errno.EPERM)
    c.euid = c.fsuid = uid
    _uid_changed(c, old)
    return 0


@syscall("setgid")
def sys_setgid(k, t, gid, *_):
    c = t.tg.creds
    gid &= 0xFFFFFFFF
    if gid == UNCHANGED:
        raise fserr(errno.EINVAL)
    if caps.capable(c, caps.CAP_SETGID):
        c.gid = c.sgid = gid
    elif gid not in (c.gid, c.sgid):
        raise fserr(errno.EPERM)
    c.egid = c.fsgid = gid
    return 0


def _set_re(c, real: str, eff: str, saved: str, fs: str, r: int, e: int, cap: int) -> None:
    """setre[ug]id: the real id may become the old real or effective one,
    the effective id any of the three (anything with cap); the saved id
    follows the new effective id when the real id is set or the effective
    one moves away from the old real id."""
    r, e = r & 0xFFFFFFFF, e & 0xFFFFFFFF
    old_r, old_e, old_s = getattr(c, real), getattr(c, eff), getattr(c, saved)
    privileged = caps.capable(c, cap)
    if r != UNCHANGED and r not in (old_r, old_e) and not privileged:
        raise fserr(errno.EPERM)
    if e != UNCHANGED and e not in (old_r, old_e, old_s) and not privileged:
        raise fserr(errno.EPERM)
    if r != UNCHANGED:
        setattr(c, real, r)
    if e != UNCHANGED:
        setattr(c, eff, e)
    if r != UNCHANGED or (e != UNCHANGED and e != old_r):
        setattr(c, saved, getattr(c, eff))
    setattr(c, fs, getattr(c, eff))


def _set_res(c, real: str, eff: str, saved: str, fs: str, values, cap: int) -> None:
    """setres[ug]id: each of (real, effective, saved) unless -1; without
    cap only to one of the current three. The fs id follows the effective."""
    vals = [v & 0xFFFFFFFF for v in values]
    allowed = (getattr(c, real), getattr(c, eff), getattr(c, saved))
    if any(v != UNCHANGED and v not in allowed for v in vals) and not caps.capable(c, cap):
        raise fserr(errno.EPERM)
    for name, v in zip((real, eff, saved), vals):
        if v != UNCHANGED:
            setattr(c, name, v)
    setattr(c, fs, getattr(c, eff))


@syscall("setreuid")
def sys_setreuid(k, t, r, e, *_):
    c = t.tg.creds
    old = (c.uid, c.euid, c.suid)
    _set_re(c, "uid", "euid", "suid", "fsuid", r, e, caps.CAP_SETUID)
    _uid_changed(c, old)
    return 0


@syscall("setregid")
def sys_setregid(k, t, r, e, *_):
    _set_re(t.tg.creds, "gid", "egid", "sgid", "fsgid", r, e, caps.CAP_SETGID)
    return 0


@syscall("setresuid")
def sys_setresuid(k, t, r, e, s, *_):
    c = t.tg.creds
    old = (c.uid, c.euid, c.suid)
    _set_res(c, "uid", "euid", "suid", "fsuid", (r, e, s), caps.CAP_SETUID)
    _uid_changed(c, old)
    return 0


@syscall("setresgid")
def sys_setresgid(k, t, r, e, s, *_):
    _set_res(t.tg.creds, "gid", "egid", "sgid", "fsgid", (r, e, s), caps.CAP_SETGID)
    return 0


@syscall("setfsuid")
def sys_setfsuid(k, t, uid, *_):
    """Returns the old fsuid whether or not it changed (Linux's interface)."""
    c = t.tg.creds
    old = c.fsuid
    uid &= 0xFFFFFFFF
    if uid != UNCHANGED and (uid in (c.uid, c.euid, c.suid, c.fsuid)
                             or caps.capable(c, caps.CAP_SETUID)):
        c.fsuid = uid
        caps.on_setfsuid(c, old)
    return old


@syscall("setfsgid")
def sys_setfsgid(k, t, gid, *_):
    c = t.tg.creds
    old = c.fsgid
    gid &= 0xFFFFFFFF
    if gid != UNCHANGED and (gid in (c.gid, c.egid, c.sgid, c.fsgid)
                             or caps.capable(c, caps.CAP_SETGID)):
        c.fsgid = gid
    return old


@syscall("getgroups")
def sys_getgroups(k, t, size, lst, *_):
    groups = t.tg.creds.groups
    size = s32(size)
    if size < 0:
        raise fserr(errno.EINVAL)
    if size == 0:
        return len(groups)
    if size < len(groups):
        raise fserr(errno.EINVAL)
    if groups:
        t.thread.write(lst, struct.pack(f"<{len(groups)}I", *groups))
    return len(groups)


@syscall("setgroups")
def sys_setgroups(k, t, size, lst, *_):
    if not caps.capable(t.tg.creds, caps.CAP_SETGID):
        raise fserr(errno.EPERM)
    if s32(size) < 0 or size > 65536:
        raise fserr(errno.EINVAL)
    groups = struct.unpack(f"<{size}I", t.thread.read(lst, 4 * size)) if size else ()
    t.tg.creds.groups = tuple(sorted(groups))  # Linux keeps them sorted (groups_sort)
    return 0


# --- capabilities: capget/capset headers {version, pid}, then 1 (v1) or 2
# (v2, v3) data words {effective, permitted, inheritable} of 32 bits each ---
CAP_VERSIONS = {0x19980330: 1, 0x20071026: 2, 0x20080522: 2}
CAP_VERSION_3 = 0x20080522


def _cap_header(t, hdr) -> tuple[int, int]:
    """(data words, pid); a version Linux does not know is answered with
    its own, written back, and EINVAL."""
    version, pid = struct.unpack("<Ii", t.thread.read(hdr, 8))
    words = CAP_VERSIONS.get(version)
    if words is None:
        t.thread.write(hdr, struct.pack("<I", CAP_VERSION_3))
        raise fserr(errno.EINVAL)
    return words, pid


@syscall("capget", support=PARTIAL, note="per process, not per thread")
def sys_capget(k, t, hdr, data, *_):
    try:
        words, pid = _cap_header(t, hdr)
    except OSError as e:
        if e.errno == errno.EINVAL and not data:
            return 0  # asking for the preferred version
        raise
    if not data:
        return 0
    if pid < 0:
        raise fserr(errno.EINVAL)
    target = t if pid in (0, t.tid) else k.pidns.tasks.get(pid)
    if target is None:
        raise fserr(errno.ESRCH)
    c = target.tg.creds
    out = b"".join(struct.pack("<III", c.cap_effective >> (32 * i) & 0xFFFFFFFF,
                               c.cap_permitted >> (32 * i) & 0xFFFFFFFF,
                               c.cap_inheritable >> (32 * i) & 0xFFFFFFFF) for i in range(words))
    t.thread.write(data, out)
    return 0


@syscall("capset", support=PARTIAL, note="per process, not per thread")
def sys_capset(k, t, hdr, data, *_):
    words, pid = _cap_header(t, hdr)
    if pid not in (0, t.tid):
        raise fserr(errno.EPERM)  # only the caller's own sets
    raw = struct.unpack(f"<{3 * words}I", t.thread.read(data, 12 * words))
    effective, permitted, inheritable = (
        sum(raw[3 * i + j] << (32 * i) for i in range(words)) & caps.ALL_CAPS for j in range(3))
    caps.capset(t.tg.creds, effective, permitted, inheritable)
    return 0
