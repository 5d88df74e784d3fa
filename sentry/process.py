"""Process lifecycle operations: clone (fork, vfork, threads), execve and
wait. Handlers in sentry.syscalls.process decode arguments and call these.

fork is a host clone injected into the parent thread (the host copies
the address space); the child host thread starts stopped, gets the
parent's registers with rax = 0, and joins the kernel as a new task.
"""
from __future__ import annotations

import errno
import stat as S
import struct
import time

from platforms.ptrace.platform import NR_CLONE
from vfs.inode import fserr
from vfs.path import MS_NOSUID

from . import caps, futex, posixtimer
from .loader import exec as loader
from .mm.mm import MemoryManager
from .task import ZOMBIE, Task, ThreadGroup
from .waiter import Block

CLONE_VM, CLONE_FS, CLONE_FILES, CLONE_SIGHAND = 0x100, 0x200, 0x400, 0x800
CLONE_PIDFD, CLONE_PTRACE, CLONE_VFORK, CLONE_PARENT = 0x1000, 0x2000, 0x4000, 0x8000
CLONE_THREAD, CLONE_NEWNS, CLONE_SYSVSEM, CLONE_SETTLS = 0x10000, 0x20000, 0x40000, 0x80000
CLONE_PARENT_SETTID, CLONE_CHILD_CLEARTID, CLONE_DETACHED = 0x100000, 0x200000, 0x400000
CLONE_UNTRACED, CLONE_CHILD_SETTID, CLONE_NEWCGROUP = 0x800000, 0x1000000, 0x2000000
CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = (
    0x4000000, 0x8000000, 0x10000000, 0x20000000, 0x40000000)
CLONE_IO = 0x80000000
NAMESPACE_FLAGS = CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET
I32 = struct.Struct("<i")


def clone(k, t: Task, flags: int, stack: int, ptid: int, ctid: int, tls: int) -> int:
    if flags & NAMESPACE_FLAGS:
        raise fserr(errno.EPERM)  # new namespaces inside the sandbox: not yet
    if flags & CLONE_THREAD and not flags & CLONE_SIGHAND:
        raise fserr(errno.EINVAL)
    if flags & CLONE_SIGHAND and not flags & CLONE_VM:
        raise fserr(errno.EINVAL)
    _check_nproc(k, t)
    parent_thread = t.thread
    regs = parent_thread.get_regs()
    host_flags = flags & (CLONE_VM | CLONE_THREAD | CLONE_SIGHAND)
    plat = k.platform
    plat.last_new_child = 0
    r = parent_thread.inject(NR_CLONE, host_flags, 0, 0, 0, 0, regs=regs)
    if r < 0:
        raise fserr(-r)
    child_hpid = plat.last_new_child
    plat.new_children.pop(child_hpid, None)
    plat.wait_child_start(child_hpid)
    child_thread = plat.thread(child_hpid)
    cregs = parent_thread.copy_regs(regs)
    cregs.rax = 0
    cregs.orig_rax = 0xFFFFFFFFFFFFFFFF
    if stack:
        cregs.rsp = stack
    if flags & CLONE_SETTLS:
        cregs.fs_base = tls
    child_thread.set_regs(cregs)

    tid = k.pidns.alloc()
    if flags & CLONE_THREAD:
        tg = t.tg
    else:
        ptg = t.tg
        mm = ptg.mm if flags & CLONE_VM else ptg.mm.fork()
        tg = ThreadGroup(tid, ptg.parent if flags & CLONE_PARENT else ptg,
                         ptg.fs if flags & CLONE_FS else ptg.fs.copy(),
                         ptg.fdtable.fork(),  # CLONE_FILES sharing between processes: copied (partial)
                         ptg.creds.copy(), mm,
                         ptg.handlers if flags & CLONE_SIGHAND else ptg.handlers.copy())
        tg.pgid, tg.sid = ptg.pgid, ptg.sid
        tg.ctty = ptg.ctty
        tg.rlimits = dict(ptg.rlimits)
        tg.exe, tg.argv, tg.envp = ptg.exe, ptg.argv, ptg.envp
        tg.no_new_privs = ptg.no_new_privs
        tg.start_ns = time.monotonic_ns()
        (tg.parent or k.init_tg).children.append(tg)
    child = Task(tid, tg, child_thread)
    child.sigmask = t.sigmask
    child.seccomp = t.seccomp
    child.ioprio = t.ioprio
    child.sched = t.sched.forked()
    if flags & (CLONE_VM | CLONE_VFORK) != CLONE_VM:  # fork and vfork keep the alternate stack
        child.sigaltstack = t.sigaltstack
    child.comm = t.comm
    if flags & CLONE_CHILD_CLEARTID:
        child.clear_child_tid = ctid
    k._register(child)
    if flags & CLONE_PARENT_SETTID:
        parent_thread.write(ptid, I32.pack(tid))
    if flags & CLONE_CHILD_SETTID:
        child_thread.write(ctid, I32.pack(tid))
    k.ready.append((child, 0, 0, 0))
    if flags & CLONE_VFORK:
        tg.vfork_parent = t
        # the parent sleeps until the child execs or exits; the clone is done
        raise Block(tg.exec_done, result=tid, interruptible=False)
    return tid


RLIMIT_STACK, RLIMIT_NPROC = 3, 6
DEFAULT_NPROC = 4096


def _check_nproc(k, t: Task) -> None:
    """RLIMIT_NPROC counts the tasks (threads too) of the caller's real
    uid. Departure: the sandbox's root is bound by it as well, so a guest
    spawning without bound gets EAGAIN instead of exhausting the host."""
    soft = t.tg.rlimits.get(RLIMIT_NPROC, (DEFAULT_NPROC,))[0]
    if len(k.pidns.tasks) < soft:
        return
    uid = t.tg.creds.uid
    if sum(1 for x in k.pidns.tasks.values() if x.tg.creds.uid == uid) >= soft:
        raise fserr(errno.EAGAIN)


def execve(k, t: Task, path: bytes, argv: list[bytes], envp: list[bytes], start=None) -> None:
    """Replace t's process image. Errors before the point of no return
    raise OSError; after it the process is killed on failure."""
    ctx = k.path_context(t)
    stack_rlimit = t.tg.rlimits.get(RLIMIT_STACK, (loader.STACK_SIZE,))[0]
    plan = loader.prepare(k.mounts, ctx, path, argv, envp, start, stack_rlimit)
    tg = t.tg
    # Other threads die first (de_thread); the host exec kills them too.
    for other in [x for x in tg.tasks if x is not t]:
        futex.exit_robust_list(k, other)
        k._bury(other)
    futex.exit_robust_list(k, t)
    r = t.thread.exec_stub()
    if r < 0:
        raise fserr(-r)
    old_mm = tg.mm
    tg.mm = MemoryManager(k.platform.reserved)
    tg.mm.users += 1
    k.drop_mm_user(old_mm)
    _exec_creds(tg, plan)
    try:
        k._load(t, plan)
    except OSError:
        k.exit_group(tg, 9)  # SIGKILL, as Linux does past the point of no return
        return
    # the new image's actions are its own, even if the old ones were shared
    # (CLONE_SIGHAND without CLONE_THREAD)
    tg.handlers = tg.handlers.copy()
    tg.handlers.reset_for_exec()
    tg.fdtable.on_exec()
    posixtimer.delete_all(tg)  # POSIX timers do not survive exec (itimers do)
    t.sigaltstack = (0, 2, 0)
    t.clear_child_tid = 0
    if tg.vfork_parent is not None:
        tg.vfork_parent = None
        tg.exec_done.notify()
    k.ready.append((t, 0, 0, 0))


def _exec_creds(tg: ThreadGroup, plan) -> None:
    """The credentials the new program runs with: the file's set-user-ID
    and set-group-ID bits (not on a nosuid mount) and the capability
    transformation of execve (sentry/caps.py)."""
    loc = plan.main.loc
    st = loc.inode.stat()
    suid = sgid = None
    if not loc.mount.flags & MS_NOSUID:
        if st.mode & S.S_ISUID:
            suid = st.uid
        if st.mode & S.S_ISGID and st.mode & S.S_IXGRP:
            sgid = st.gid
    c = tg.creds
    plan.secure = caps.on_exec(c, suid, sgid, tg.no_new_privs)
    # a set-ID program may not be inspected or dumped by its old owner
    tg.dumpable = int(c.euid == c.uid and c.egid == c.gid)


WNOHANG, WUNTRACED, WEXITED, WCONTINUED, WNOWAIT = 1, 2, 4, 8, 0x1000000
WNOTHREAD, WALL, WCLONE = 0x20000000, 0x40000000, 0x80000000
P_ALL, P_PID, P_PGID, P_PIDFD = 0, 1, 2, 3


def _matches(k, waiter: ThreadGroup, child: ThreadGroup, idtype: int, ident: int) -> bool:
    if idtype == P_ALL:
        return True
    if idtype == P_PID:
        return child.tgid == ident
    if idtype == P_PGID:
        return child.pgid == (ident or waiter.pgid)
    return False


def wait_child(k, t: Task, idtype: int, ident: int, options: int):
    """Find a child that exited (or stopped/continued, if asked). Returns
    (tg, wait status) or None (WNOHANG)."""
    tg = t.tg
    kids = [c for c in tg.children if _matches(k, tg, c, idtype, ident)]
    if not kids:
        raise fserr(errno.ECHILD)
    for c in kids:
        if c.state == ZOMBIE and options & WEXITED:
            if not options & WNOWAIT:
                k.reap(c)
            return c, c.exit_status
        if options & WUNTRACED and c.stopped and c.stop_to_report:
            if not options & WNOWAIT:
                c.stop_to_report = False
            return c, (c.stop_sig << 8) | 0x7F
        if options & WCONTINUED and c.cont_to_report:
            if not options & WNOWAIT:
                c.cont_to_report = False
            return c, 0xFFFF
    if options & WNOHANG:
        return None
    raise Block(tg.child_events)

