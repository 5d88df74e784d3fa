"""Signal syscalls: actions, masks, sending, sigreturn, altstack."""
from __future__ import annotations

import errno
import struct
import time

from vfs.file import O_NONBLOCK, O_RDWR, FileDescription
from vfs.inode import FileDescriptionImpl, fserr
from vfs.proc import TaskDir

from .. import caps, signals
from ..kernel import NORESUME
from ..waiter import Block, WaitQueue
from .table import PARTIAL, syscall
from .util import read_timespec_ns, s32

SIGACTION = struct.Struct("<QQQQ")  # handler, flags, restorer, mask
SIG_BLOCK, SIG_UNBLOCK, SIG_SETMASK = 0, 1, 2


def _check_sig(sig: int) -> int:
    sig = s32(sig)
    if not 1 <= sig <= 64:
        raise fserr(errno.EINVAL)
    return sig


@syscall("rt_sigaction")
def sys_rt_sigaction(k, t, sig, act, oact, sigsetsize, *_):
    sig = _check_sig(sig)
    if sigsetsize != 8:
        raise fserr(errno.EINVAL)
    cur = t.tg.handlers.actions[sig]
    old = SIGACTION.pack(cur.handler, cur.flags, cur.restorer, cur.mask)
    if act:
        if sig in (signals.SIGKILL, signals.SIGSTOP):
            raise fserr(errno.EINVAL)
        handler, flags, restorer, mask = SIGACTION.unpack(t.thread.read(act, 32))
        cur.handler, cur.flags, cur.restorer = handler, flags & 0xFFFFFFFF, restorer
        cur.mask = mask & ~signals.UNBLOCKABLE
        if handler == signals.SIG_IGN or (handler == signals.SIG_DFL and sig in signals.IGNORED_BY_DEFAULT):
            # setting SIG_IGN discards pending instances
            t.tg.pending_signals &= ~signals.bit(sig)
            for x in t.tg.tasks:
                x.pending_signals &= ~signals.bit(sig)
    if oact:
        t.thread.write(oact, old)
    return 0


@syscall("rt_sigprocmask")
def sys_rt_sigprocmask(k, t, how, set_addr, oset, sigsetsize, *_):
    if sigsetsize != 8:
        raise fserr(errno.EINVAL)
    old = t.sigmask
    if set_addr:
        new = struct.unpack("<Q", t.thread.read(set_addr, 8))[0]
        if how == SIG_BLOCK:
            t.sigmask |= new
        elif how == SIG_UNBLOCK:
            t.sigmask &= ~new
        elif how == SIG_SETMASK:
            t.sigmask = new
        else:
            raise fserr(errno.EINVAL)
        t.sigmask &= ~signals.UNBLOCKABLE
    if oset:
        t.thread.write(oset, struct.pack("<Q", old))
    return 0


@syscall("rt_sigpending")
def sys_rt_sigpending(k, t, set_addr, sigsetsize, *_):
    pending = (t.pending_signals | t.tg.pending_signals) & t.sigmask
    t.thread.write(set_addr, struct.pack("<Q", pending))
    return 0


@syscall("rt_sigreturn")
def sys_rt_sigreturn(k, t, *_):
    signals.sigreturn(k, t)
    k.ready.append((t, 0, 0, 0))
    return NORESUME


@syscall("sigaltstack")
def sys_sigaltstack(k, t, ss, old_ss, *_):
    new = struct.unpack("<QI4xQ", t.thread.read(ss, 24)) if ss else None
    sp, _, size = t.sigaltstack
    regs_sp = t.thread.get_regs().rsp if (ss or old_ss) else 0
    old = struct.pack("<QI4xQ", sp, signals.altstack_flags(t, regs_sp), size)
    if new is not None:
        err = signals.set_altstack(t, regs_sp, *new)
        if err:
            raise fserr(err)
    if old_ss:
        t.thread.write(old_ss, old)
    return 0


def _groups_for_kill(k, t, pid):
    groups = k.pidns.groups
    if pid > 0:
        tg = groups.get(pid)
        if tg is None:
            task = k.pidns.tasks.get(pid)
            tg = task.tg if task is not None else None
        if tg is None or tg.state != "R":
            if tg is not None and tg.state == "Z":
                return []
            raise fserr(errno.ESRCH)
        return [tg]
    if pid == 0:
        pgid = t.tg.pgid
        found = [g for g in groups.values() if g.pgid == pgid and g.state == "R"]
    elif pid == -1:
        found = [g for g in groups.values() if g.tgid != 1 and g is not t.tg and g.state == "R"]
        if not found:
            raise fserr(errno.ESRCH)
        return found
    else:
        found = [g for g in groups.values() if g.pgid == -pid and g.state == "R"]
    if not found:
        raise fserr(errno.ESRCH)
    return found


def _permitted(t, tgs, sig: int, pid: int) -> list:
    """The targets the caller may signal (caps.may_signal); EPERM if it may
    signal none of them, except for kill(-1), which skips them silently."""
    ok = [tg for tg in tgs if caps.may_signal(t.tg, tg, sig)]
    if tgs and not ok and pid != -1:
        raise fserr(errno.EPERM)
    return ok


def _check_permission(t, tg, sig: int) -> None:
    if not caps.may_signal(t.tg, tg, sig):
        raise fserr(errno.EPERM)


@syscall("kill")
def sys_kill(k, t, pid, sig, *_):
    sig = s32(sig)
    if not 0 <= sig <= 64:
        raise fserr(errno.EINVAL)
    for tg in _permitted(t, _groups_for_kill(k, t, s32(pid)), sig, s32(pid)):
        # init's protection (its default actions, SIGKILL, SIGSTOP) is send_signal_to_group's
        signals.send_signal_to_group(k, tg, sig, info=(sig, 0, signals.SI_USER, _sender(t), 0))
    return NORESUME if not t.alive else 0


def _task(k, tid):
    task = k.pidns.tasks.get(tid)
    if task is None or not task.alive:
        raise fserr(errno.ESRCH)
    return task


def _sender(t) -> int:
    """siginfo's si_pid and si_uid (the union's first 8 bytes)."""
    return t.tg.tgid | (t.tg.creds.uid << 32)


@syscall("tkill")
def sys_tkill(k, t, tid, sig, *_):
    sig = s32(sig)
    if s32(tid) <= 0 or not 0 <= sig <= 64:
        raise fserr(errno.EINVAL)
    task = _task(k, s32(tid))
    _check_permission(t, task.tg, sig)
    signals.send_signal_to_task(k, task, sig, info=(sig, 0, signals.SI_TKILL, _sender(t), 0))
    return NORESUME if not t.alive else 0


@syscall("tgkill")
def sys_tgkill(k, t, tgid, tid, sig, *_):
    sig = s32(sig)
    if s32(tid) <= 0 or s32(tgid) <= 0 or not 0 <= sig <= 64:
        raise fserr(errno.EINVAL)
    task = _task(k, s32(tid))
    if task.tg.tgid != s32(tgid):
        raise fserr(errno.ESRCH)
    _check_permission(t, task.tg, sig)
    signals.send_signal_to_task(k, task, sig, info=(sig, 0, signals.SI_TKILL, _sender(t), 0))
    return NORESUME if not t.alive else 0


def _queued_info(t, sig, uinfo, target_pid) -> tuple:
    """The siginfo a sigqueue caller supplies. Only the kernel may claim
    kernel codes (si_code >= 0) or tkill's, when signalling another process
    (checked before the target is looked up, as Linux does)."""
    _, err, code, a, b = struct.unpack("<iii4xQQ", t.thread.read(uinfo, 32))
    if (code >= 0 or code == signals.SI_TKILL) and target_pid != t.tg.tgid:
        raise fserr(errno.EPERM)
    return (sig, err, code, a, b)


@syscall("rt_sigqueueinfo")
def sys_rt_sigqueueinfo(k, t, pid, sig, uinfo, *_):
    sig = s32(sig)
    if not 0 <= sig <= 64:
        raise fserr(errno.EINVAL)
    info = _queued_info(t, sig, uinfo, s32(pid))
    if s32(pid) <= 0:
        raise fserr(errno.ESRCH)  # one process only, unlike kill(2)
    for tg in _permitted(t, _groups_for_kill(k, t, s32(pid)), sig, s32(pid)):
        signals.send_signal_to_group(k, tg, sig, info=info)
    return NORESUME if not t.alive else 0


@syscall("rt_tgsigqueueinfo")
def sys_rt_tgsigqueueinfo(k, t, tgid, tid, sig, uinfo, *_):
    sig = s32(sig)
    if s32(tid) <= 0 or s32(tgid) <= 0 or not 0 <= sig <= 64:
        raise fserr(errno.EINVAL)
    info = _queued_info(t, sig, uinfo, s32(tgid))
    task = _task(k, s32(tid))
    if task.tg.tgid != s32(tgid):
        raise fserr(errno.ESRCH)
    _check_permission(t, task.tg, sig)
    signals.send_signal_to_task(k, task, sig, info=info)
    return NORESUME if not t.alive else 0


_pause_queue = WaitQueue()  # never notified: only signals end pause()


@syscall("pause")
def sys_pause(k, t, *_):
    raise Block(_pause_queue, interrupt_result=-errno.EINTR)  # only a signal ends it


@syscall("rt_sigsuspend")
def sys_rt_sigsuspend(k, t, mask_addr, size, *_):
    if size != 8:
        raise fserr(errno.EINVAL)
    mask = struct.unpack("<Q", t.thread.read(mask_addr, 8))[0]
    if t.saved_sigmask is None:
        t.saved_sigmask = t.sigmask
    t.sigmask = mask & ~signals.UNBLOCKABLE
    if signals.next_signal(t):
        return -errno.EINTR
    raise Block(_pause_queue, interrupt_result=-errno.EINTR)


@syscall("rt_sigtimedwait")
def sys_rt_sigtimedwait(k, t, set_addr, info, timeout, sigsetsize, *_):
    if sigsetsize != 8:
        raise fserr(errno.EINVAL)
    wanted = struct.unpack("<Q", t.thread.read(set_addr, 8))[0] & ~signals.UNBLOCKABLE
    got = signals.dequeue(t, wanted)
    if got is not None:
        t.sigwait_set = 0
        sig, siginfo = got
        if info:
            t.thread.write(info, signals.encode_siginfo(siginfo))
        return sig
    deadline = None
    if timeout:
        deadline = t.call_start() + read_timespec_ns(t, timeout)
        if time.monotonic_ns() >= deadline:
            t.sigwait_set = 0
            raise fserr(errno.EAGAIN)
    t.sigwait_set = wanted  # senders of these signals wake t.sigwait_queue
    # another signal's handler ends it with EINTR, SA_RESTART or not (as Linux)
    raise Block(t.sigwait_queue, deadline_ns=deadline, interrupt_result=-errno.EINTR)


# --- pidfds ---
class PidFD(FileDescriptionImpl):
    """pidfd_open: names a process; readable once it has exited."""
    seekable = False

    def __init__(self, tg):
        self.tg = tg

    def link_name(self) -> bytes:
        return b"anon_inode:[pidfd]"

    def readiness(self) -> int:
        return 1 if self.tg.state != "R" else 0

    def wait_queues(self):
        return (self.tg.parent.child_events,) if self.tg.parent is not None else ()

    def pread(self, size, offset):
        raise fserr(errno.EINVAL)


@syscall("pidfd_open")
def sys_pidfd_open(k, t, pid, flags, *_):
    if flags & ~O_NONBLOCK:
        raise fserr(errno.EINVAL)
    tg = k.pidns.groups.get(s32(pid))
    if tg is None or s32(pid) <= 0:
        raise fserr(errno.ESRCH if s32(pid) > 0 else errno.EINVAL)
    return t.tg.fdtable.install(FileDescription(PidFD(tg), O_RDWR | flags), cloexec=True)


def _pidfd_target(k, desc):
    """The process a pidfd names: a pidfd_open fd, or an open /proc/<pid>
    directory (which Linux also accepts); EBADF for anything else."""
    if isinstance(desc.impl, PidFD):
        return desc.impl.tg
    if isinstance(desc.inode, TaskDir) and desc.inode.ref.tid is None:
        return k.pidns.groups.get(desc.inode.ref.pid)
    raise fserr(errno.EBADF)


@syscall("pidfd_send_signal", support=PARTIAL, note="the siginfo argument must be NULL")
def sys_pidfd_send_signal(k, t, pidfd, sig, info, flags, *_):
    desc = t.tg.fdtable.get(s32(pidfd))
    tg = _pidfd_target(k, desc)
    if flags or info:
        raise fserr(errno.EINVAL)
    sig = s32(sig)
    if not 0 <= sig <= 64:
        raise fserr(errno.EINVAL)
    if tg is None or tg.state != "R":
        raise fserr(errno.ESRCH)
    _check_permission(t, tg, sig)
    signals.send_signal_to_group(k, tg, sig)
    return NORESUME if not t.alive else 0
