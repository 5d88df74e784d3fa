"""Sessions, process groups and controlling terminals, as Linux keeps them.

A process's controlling terminal is `tg.ctty` (inherited by fork, dropped
by setsid); a terminal names its session and foreground group (`sid`,
`fg_pgid`, 0 for none). This module holds the rules that reach past one
terminal operation: what a session leader's exit or TIOCNOTTY does to its
terminal, what a hang-up does, and the check a read, write or change
makes when its process may be in a background group (SIGTTIN/SIGTTOU).
Orphaned groups are the kernel's (Kernel.pgrp_orphaned; the SIGHUP and
SIGCONT to one left with a stopped member is Kernel._hang_up_orphans).
"""
from __future__ import annotations

import errno

from vfs.inode import fserr

from .signals import ERESTARTSYS, SIG_IGN, bit, send_signal_to_group

SIGHUP, SIGCONT, SIGTTIN, SIGTTOU = 1, 18, 21, 22


def session_clear_tty(k, sid: int) -> None:
    for g in k.pidns.groups.values():
        if g.sid == sid:
            g.ctty = None


def disassociate_ctty(k, tg, on_exit: bool) -> None:
    """A session leader lets go of its controlling terminal: by TIOCNOTTY
    (its foreground group gets SIGHUP and SIGCONT) or by exiting (SIGHUP
    only: our terminals are ptys). The whole session loses the terminal."""
    if tg.sid != tg.tgid:
        return
    term = tg.ctty
    if term is None:
        # the terminal hung up earlier: the group that was in the foreground then
        if on_exit and tg.tty_old_pgrp:
            pgid, tg.tty_old_pgrp = tg.tty_old_pgrp, 0
            k.signal_process_group(pgid, SIGHUP)
            k.signal_process_group(pgid, SIGCONT)
        return
    pgid = term.fg_pgid
    # forget first: the signals may end processes (this one too), whose
    # exits must find the terminal already let go
    term.sid = term.fg_pgid = 0
    tg.tty_old_pgrp = 0
    session_clear_tty(k, tg.sid)
    if pgid:
        k.signal_process_group(pgid, SIGHUP)
        if not on_exit:
            k.signal_process_group(pgid, SIGCONT)


def hangup(k, term) -> None:
    """The terminal hung up (its master closed): its session loses it, and
    the session leader gets SIGHUP and SIGCONT."""
    sid, pgid = term.sid, term.fg_pgid
    term.sid = term.fg_pgid = 0
    if not sid or k is None:
        return
    leaders = []
    for g in list(k.pidns.groups.values()):
        if g.sid != sid:
            continue
        if g.ctty is term:
            g.ctty = None
        if g.tgid == sid and g.state == "R":
            leaders.append(g)
    for g in leaders:
        g.tty_old_pgrp = pgid
        send_signal_to_group(k, g, SIGHUP, from_kernel=True)
        send_signal_to_group(k, g, SIGCONT, from_kernel=True)


def background_check(k, t, term, sig: int) -> None:
    """Before t reads (SIGTTIN), or writes with TOSTOP or changes (SIGTTOU)
    the terminal: a process in a background group of its controlling
    terminal gets the signal and the call restarts once it is continued.
    EIO instead for an orphaned group, or for SIGTTIN ignored or blocked;
    an ignored or blocked SIGTTOU lets the change through."""
    tg = t.tg
    if tg.ctty is not term or not term.fg_pgid or tg.pgid == term.fg_pgid:
        return
    if t.sigmask & bit(sig) or tg.handlers.actions[sig].handler == SIG_IGN:
        if sig == SIGTTIN:
            raise fserr(errno.EIO)
        return
    if k.pgrp_orphaned(tg.pgid):
        raise fserr(errno.EIO)
    k.signal_process_group(tg.pgid, sig)
    if t.alive and not tg.stopped and not (t.pending_signals | tg.pending_signals) & ~t.sigmask:
        raise fserr(errno.EIO)  # the signal went nowhere: do not spin restarting
    raise fserr(ERESTARTSYS)


def session_of_pgrp(k, pgid: int) -> int:
    """The session of process group pgid (or of process pgid); ESRCH if the
    id names neither."""
    for g in k.pidns.groups.values():
        if g.pgid == pgid and g.state in ("R", "Z"):
            return g.sid
    t = k.pidns.tasks.get(pgid)
    if t is not None:
        return t.tg.sid
    raise fserr(errno.ESRCH)
