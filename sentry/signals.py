"""Guest signals: generation, default actions, and delivery to handlers.

Signals are the sentry's own: the host never delivers one to a guest.
Delivery builds the x86-64 rt_sigframe on the guest stack (saved
registers, the interrupted signal mask, the extended FP state, siginfo)
and points the thread at the handler; rt_sigreturn undoes it.
"""
from __future__ import annotations

import errno
import struct

from platforms.ptrace._ptrace import ffi, lib

SIG_DFL, SIG_IGN = 0, 1
SA_NOCLDSTOP, SA_NOCLDWAIT, SA_SIGINFO, SA_ONSTACK = 1, 2, 4, 0x08000000
SA_RESTART, SA_NODEFER, SA_RESETHAND, SA_RESTORER = 0x10000000, 0x40000000, 0x80000000, 0x04000000
SIGHUP, SIGKILL, SIGSTOP, SIGCHLD, SIGCONT, SIGPIPE, SIGRTMIN = 1, 9, 19, 17, 18, 13, 32
STOP_SIGNALS = {19, 20, 21, 22}
IGNORED_BY_DEFAULT = {17, 18, 23, 28}  # SIGCHLD SIGCONT SIGURG SIGWINCH
UNBLOCKABLE = (1 << (SIGKILL - 1)) | (1 << (SIGSTOP - 1))
ERESTARTSYS = 512  # internal: restart the syscall if the handler has SA_RESTART
SI_USER, SI_KERNEL, SI_TKILL = 0, 0x80, -6
SS_ONSTACK, SS_DISABLE, SS_AUTODISARM = 1, 2, 1 << 31
MINSIGSTKSZ = 2048  # Linux's floor for sigaltstack (not AT_MINSIGSTKSZ)

MCONTEXT_REGS = ("r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rdi", "rsi", "rbp",
                 "rbx", "rdx", "rax", "rcx", "rsp", "rip", "eflags")
UCONTEXT = struct.Struct("<QQQi4xQ18QHHHHQQQQQ8QQ")  # flags link stack mcontext sigmask
XSTATE_MAX = 8192


def bit(sig: int) -> int:
    return 1 << (sig - 1)


def _init_immune(k, tg, sig: int, act, force: bool) -> bool:
    """Linux's SIGNAL_UNKILLABLE (sig_task_ignored): the pid namespace's
    init takes no signal whose action is the default, unless it is SIGKILL
    or SIGSTOP and forced (sent from outside the namespace, or by the
    kernel). A fault is not a sent signal: it kills init (deliver_fault,
    Kernel.guest_fault), as Linux's force_sig lifts the protection."""
    return tg is k.init_tg and act.handler == SIG_DFL and not (force and sig in (SIGKILL, SIGSTOP))


def _forced(from_kernel: bool, from_outside: bool, info) -> bool:
    """Linux's `force` (send_signal_locked): the sender is outside the
    target's pid namespace, or the kernel (SEND_SIG_PRIV, or a siginfo
    with si_code SI_KERNEL)."""
    return from_outside or from_kernel or (type(info) is tuple and info[2] == SI_KERNEL)


def send_signal_to_group(k, tg, sig: int, from_kernel: bool = False, info: tuple | None = None,
                         from_outside: bool = False) -> None:
    """A process-directed signal. from_kernel: the kernel sends it (si_code
    SI_KERNEL); from_outside: a sender outside the sandbox's pid namespace
    (the OCI runtime's kill), which alone may SIGKILL or SIGSTOP init."""
    if sig == 0 or tg.exiting or not tg.tasks:
        return
    act = tg.handlers.actions[sig]
    immune = _init_immune(k, tg, sig, act, _forced(from_kernel, from_outside, info))
    if sig == SIGKILL:
        if not immune:
            k.exit_group(tg, SIGKILL)
        return
    if sig == SIGCONT:
        k.continue_group(tg)  # whatever its disposition, SIGCONT resumes
    if sig in STOP_SIGNALS and (sig == SIGSTOP or act.handler == SIG_DFL) and not immune:
        if sig == SIGSTOP or not any(t.sigmask & bit(sig) for t in tg.tasks):
            k.stop_group(tg, sig)
        return
    if sig == SIGSTOP:
        return  # init's, from inside
    # An ignored signal is dropped, unless blocked: then it stays pending
    # for sigwait and signalfd (Linux checks the target's mask, here the
    # leader's). Init's default actions count as ignored; deliver_pending
    # drops such a signal if it is unblocked later.
    ignored = immune or act.handler == SIG_IGN or (act.handler == SIG_DFL and sig in IGNORED_BY_DEFAULT)
    if ignored and not tg.tasks[0].sigmask & bit(sig):
        return
    if not ignored and act.handler == SIG_DFL and any(not t.sigmask & bit(sig) for t in tg.tasks):
        k.exit_group(tg, k.signal_status(sig))
        return
    if sig < SIGRTMIN and tg.pending_signals & bit(sig):
        return  # a standard signal already pending is not queued twice; its first siginfo stays
    tg.pending_signals |= bit(sig)
    tg.signal_info[sig] = info or (sig, 0, SI_KERNEL if from_kernel else SI_USER, 0, 0)
    if tg.signalfd_queue is not None:  # signalfds of this process see it now
        tg.signalfd_queue.notify()
    for t in tg.tasks:
        if t.sigwait_set & bit(sig):  # sigtimedwait takes it, blocked or not
            t.sigwait_queue.notify()
            return
    if ignored:
        return  # no handler to run
    for t in tg.tasks:
        if not t.sigmask & bit(sig):
            wake_for_signal(k, t, act)
            break


def send_signal_to_task(k, t, sig: int, info: tuple | None = None, from_kernel: bool = False,
                        from_outside: bool = False) -> None:
    """A thread-directed signal (tkill, tgkill, SIGPIPE). from_kernel and
    from_outside as for send_signal_to_group."""
    tg = t.tg
    if sig == 0 or tg.exiting:
        return
    act = tg.handlers.actions[sig]
    immune = _init_immune(k, tg, sig, act, _forced(from_kernel, from_outside, info))
    blocked = t.sigmask & bit(sig)
    if sig == SIGKILL or (act.handler == SIG_DFL and sig not in IGNORED_BY_DEFAULT
                          and sig not in STOP_SIGNALS and not blocked):
        if not immune:
            k.exit_group(tg, k.signal_status(sig))
            return
        if sig == SIGKILL:
            return
    if sig == SIGCONT:
        k.continue_group(tg)
    if sig in STOP_SIGNALS and (sig == SIGSTOP or act.handler == SIG_DFL):
        if not immune and (sig == SIGSTOP or not blocked):  # stops the whole process, as Linux
            k.stop_group(tg, sig)
            return
        if sig == SIGSTOP:
            return
    ignored = immune or act.handler == SIG_IGN or \
        (act.handler == SIG_DFL and (sig in IGNORED_BY_DEFAULT or sig in STOP_SIGNALS))
    if ignored and not blocked:
        return  # ignored and not blocked (a blocked one waits for sigwait/signalfd)
    if sig < SIGRTMIN and t.pending_signals & bit(sig):
        return
    t.pending_signals |= bit(sig)
    tg.signal_info[sig] = info or (sig, 0, SI_KERNEL if from_kernel else SI_TKILL, 0, 0)
    if tg.signalfd_queue is not None:
        tg.signalfd_queue.notify()
    if t.sigwait_set & bit(sig):
        t.sigwait_queue.notify()
    elif not blocked:
        wake_for_signal(k, t, act)


def force_signal_to_task(k, t, sig: int, info: tuple | None = None) -> None:
    """Linux's force_sig: a signal the task's own action caused (a seccomp
    trap). Ignored or blocked, it is reset to the default action and
    unblocked; a default action then kills, init included."""
    act = t.tg.handlers.actions[sig]
    if act.handler == SIG_IGN or t.sigmask & bit(sig):
        act.handler = SIG_DFL
        t.sigmask &= ~bit(sig)
    if act.handler == SIG_DFL and sig not in IGNORED_BY_DEFAULT and sig not in STOP_SIGNALS:
        k.exit_group(t.tg, k.signal_status(sig))
        return
    send_signal_to_task(k, t, sig, info=info, from_kernel=True)


def wake_for_signal(k, t, act) -> None:
    """Make t stop soon so the handler can run: end its parked syscall, or
    stop it on the host if it is running guest code."""
    if t.parked is not None:
        k.interrupt(t, -ERESTARTSYS if act.flags & SA_RESTART else -errno.EINTR)
    elif t.on_cpu:
        lib.pt_tgkill(t.tg.tasks[0].thread.pid, t.thread.pid, SIGSTOP)


def next_signal(t) -> int:
    pending = (t.pending_signals | t.tg.pending_signals) & ~t.sigmask
    if not pending:
        return 0
    return (pending & -pending).bit_length()


def dequeue(t, mask: int):
    """Take the lowest pending signal in mask (thread's first, then the
    process's); returns (sig, info) or None."""
    for holder in (t, t.tg):
        pending = holder.pending_signals & mask
        if pending:
            sig = (pending & -pending).bit_length()
            holder.pending_signals &= ~bit(sig)
            return sig, take_info(t.tg, sig, (sig, 0, SI_USER, 0, 0))
    return None


def with_call_mask(k, t, mask_addr: int, size: int, run):
    """ppoll, pselect6, epoll_pwait: run the call with the guest's mask in
    place of t's. The old mask returns when the call does, or, if a signal
    ends it, when that signal's handler returns (its frame saves the old one)."""
    if not mask_addr:
        return run()
    if size != 8:
        return -errno.EINVAL
    mask = struct.unpack("<Q", t.thread.read(mask_addr, 8))[0]
    if t.saved_sigmask is None:
        t.saved_sigmask = t.sigmask
    t.sigmask = mask & ~UNBLOCKABLE
    if next_signal(t):
        return -errno.EINTR
    try:
        r = run()
    except OSError:
        t.sigmask, t.saved_sigmask = t.saved_sigmask, None
        raise
    t.sigmask, t.saved_sigmask = t.saved_sigmask, None
    return r


def take_info(tg, sig: int, default: tuple) -> tuple:
    """Pop the siginfo of a signal being dequeued. A POSIX timer's
    stands in as an object (sentry.posixtimer.QueuedSignal) that gives
    the final siginfo now: its overrun counts until delivery."""
    info = tg.signal_info.pop(sig, default)
    return info if type(info) is tuple else info.taken()


def encode_siginfo(info) -> bytes:
    signo, errno_, code, a, b = info
    return struct.pack("<iii4xQQ", signo, errno_, code, a, b).ljust(128, b"\0")


def deliver_pending(k, t, regs) -> bool:
    """If t has a deliverable signal, set up its handler frame in regs
    (which the caller writes back). Returns True if it did (or the signal
    killed the process); pending signals with nothing to run are dropped."""
    tg = t.tg
    while True:
        sig = next_signal(t)
        if not sig:
            return False
        if t.pending_signals & bit(sig):
            t.pending_signals &= ~bit(sig)
        else:
            tg.pending_signals &= ~bit(sig)
        info = take_info(tg, sig, (sig, 0, SI_KERNEL, 0, 0))
        act = tg.handlers.actions[sig]
        if act.handler == SIG_IGN:
            continue
        if act.handler == SIG_DFL:
            # init drops a default action here too (Linux's get_signal): it
            # was blocked when sent, or its handler was reset meanwhile
            if sig not in IGNORED_BY_DEFAULT and sig not in STOP_SIGNALS and tg is not k.init_tg:
                k.exit_group(tg, k.signal_status(sig))
                return True
            continue
        try:
            _setup_frame(k, t, regs, sig, act, info)
        except OSError:  # no room for the frame: Linux's force_sigsegv
            k.exit_group(tg, k.signal_status(11))
        return True


def _on_altstack(t, sp: int) -> bool:
    """Linux's on_sig_stack: never true for an SS_AUTODISARM stack."""
    ss_sp, ss_flags, ss_size = t.sigaltstack
    return not ss_flags & SS_AUTODISARM and ss_sp < sp <= ss_sp + ss_size


def altstack_flags(t, sp: int) -> int:
    """ss_flags as sigaltstack(2) reports them for a thread at sp."""
    ss_sp, ss_flags, ss_size = t.sigaltstack
    mode = SS_DISABLE if not ss_size else (SS_ONSTACK if _on_altstack(t, sp) else 0)
    return mode | (ss_flags & SS_AUTODISARM)


def set_altstack(t, sp: int, nsp: int, nflags: int, nsize: int) -> int:
    """Linux's do_sigaltstack for a thread at sp; 0 or an errno."""
    nflags &= 0xFFFFFFFF
    if _on_altstack(t, sp):
        return errno.EPERM
    mode = nflags & ~SS_AUTODISARM
    if mode not in (0, SS_ONSTACK, SS_DISABLE):
        return errno.EINVAL
    if mode == SS_DISABLE:
        nsp = nsize = 0
    elif nsize < MINSIGSTKSZ:
        return errno.ENOMEM
    t.sigaltstack = (nsp, nflags, nsize)  # the flags as given, as Linux keeps them
    return 0


def _setup_frame(k, t, regs, sig, act, info) -> None:
    thread = t.thread
    ss_sp, ss_flags, ss_size = t.sigaltstack
    sp = regs.rsp - 128  # the red zone
    nested = _on_altstack(t, sp)
    entering = act.flags & SA_ONSTACK and altstack_flags(t, sp) & ~SS_AUTODISARM == 0
    if entering:
        sp = ss_sp + ss_size
    xbuf = ffi.new("char[]", XSTATE_MAX)
    xlen = lib.pt_getxstate(thread.pid, xbuf, XSTATE_MAX)
    fp_addr = 0
    if xlen > 0:
        sp = (sp - xlen) & ~63
        fp_addr = sp
        thread.write(fp_addr, ffi.buffer(xbuf, xlen)[:])
    frame_size = 8 + UCONTEXT.size + 128
    sp = ((sp - frame_size) & ~15) - 8
    if (nested or entering) and not ss_sp < sp <= ss_sp + ss_size:
        raise OSError(errno.EFAULT, "the frame overflows the alternate stack")
    uc_addr = sp + 8
    info_addr = uc_addr + UCONTEXT.size
    mregs = [getattr(regs, r) for r in MCONTEXT_REGS]
    # the mask sigreturn restores: the one before sigsuspend, if that is what waited
    old_mask = t.sigmask if t.saved_sigmask is None else t.saved_sigmask
    t.saved_sigmask = None
    # uc_stack: the stack as set (flags as given), which sigreturn re-applies
    uc_flags = ss_flags - (1 << 32) if ss_flags & 0x80000000 else ss_flags
    uc = UCONTEXT.pack(0, 0, ss_sp, uc_flags, ss_size,
                       *mregs, regs.cs, regs.gs, regs.fs, regs.ss, 0, 0, old_mask & 0xFFFFFFFF, 0,
                       fp_addr, *([0] * 8), old_mask)
    thread.write(sp, struct.pack("<Q", act.restorer) + uc + encode_siginfo(info))
    t.xstate_len = xlen if xlen > 0 else 0
    if ss_flags & SS_AUTODISARM:
        t.sigaltstack = (0, SS_DISABLE, 0)
    regs.rdi, regs.rsi, regs.rdx, regs.rax = sig, info_addr, uc_addr, 0
    regs.rsp, regs.rip = sp, act.handler
    regs.eflags &= ~(0x400 | 0x100)  # DF, TF
    regs.orig_rax = 0xFFFFFFFFFFFFFFFF
    t.sigmask |= act.mask | (0 if act.flags & SA_NODEFER else bit(sig))
    t.sigmask &= ~UNBLOCKABLE
    if act.flags & SA_RESETHAND:
        act.handler, act.flags = SIG_DFL, act.flags & ~SA_SIGINFO


def sigreturn(k, t) -> None:
    """rt_sigreturn: restore what _setup_frame saved. Segment registers
    are not taken from the frame: a guest must not switch to a 32-bit
    code segment."""
    thread = t.thread
    regs = thread.get_regs()
    uc_addr = regs.rsp
    vals = UCONTEXT.unpack(thread.read(uc_addr, UCONTEXT.size))
    mregs = vals[5:5 + len(MCONTEXT_REGS)]
    for name, v in zip(MCONTEXT_REGS, mregs):
        setattr(regs, name, v)
    fp_addr = vals[5 + len(MCONTEXT_REGS) + 8]
    t.sigmask = vals[-1] & ~UNBLOCKABLE
    regs.orig_rax = 0xFFFFFFFFFFFFFFFF
    thread.set_regs(regs)
    # the frame's uc_stack is set again, from the restored sp; errors ignored
    set_altstack(t, regs.rsp, vals[2], vals[3], vals[4])
    xlen = t.xstate_len
    if fp_addr and xlen:
        data = thread.read(fp_addr, xlen)
        lib.pt_setxstate(thread.pid, data, len(data))


def deliver_fault(k, t, sig: int) -> bool:
    """A host fault in guest code. Returns False if it kills the process."""
    act = t.tg.handlers.actions[sig]
    if act.handler in (SIG_DFL, SIG_IGN) or t.sigmask & bit(sig):
        return False
    si = ffi.new("long[4]")
    lib.pt_getsiginfo(t.thread.pid, si)
    regs = t.thread.get_regs()
    try:
        _setup_frame(k, t, regs, sig, act, (sig, 0, si[1], si[2], 0))
    except OSError:  # no room for the frame: Linux's force_sigsegv
        k.exit_group(t.tg, k.signal_status(11))
        return True
    t.thread.set_regs(regs)
    k.ready.append((t, 0, 0, 0))
    return True
