"""Scheduling attributes of a task: policy, real-time priority, nice value
and CPU affinity. The sentry runs every guest thread on one host CPU, so
these are recorded and reported, with Linux's validation and permission
rules, but change nothing about when a thread runs."""
from __future__ import annotations

import errno
import os
from dataclasses import dataclass, replace

from vfs.inode import fserr

from .caps import CAP_SYS_NICE, capable

SCHED_OTHER, SCHED_FIFO, SCHED_RR, SCHED_BATCH, SCHED_IDLE, SCHED_DEADLINE = 0, 1, 2, 3, 5, 6
SCHED_RESET_ON_FORK = 0x40000000
REALTIME = (SCHED_FIFO, SCHED_RR)
NORMAL = (SCHED_OTHER, SCHED_BATCH, SCHED_IDLE)
NICE_MIN, NICE_MAX = -20, 19
NCPUS = os.cpu_count() or 1


@dataclass
class SchedAttrs:
    policy: int = SCHED_OTHER
    priority: int = 0          # sched_priority: 1..99 for FIFO/RR, else 0
    nice: int = 0
    affinity: int = (1 << NCPUS) - 1
    reset_on_fork: bool = False

    def forked(self) -> "SchedAttrs":
        if not self.reset_on_fork:
            return replace(self)
        # SCHED_RESET_ON_FORK: a child starts as a normal, non-negative-nice task
        policy = SCHED_OTHER if self.policy in REALTIME else self.policy
        return replace(self, policy=policy, priority=0, nice=max(self.nice, 0), reset_on_fork=False)


def priority_range(policy: int) -> tuple[int, int]:
    if policy in REALTIME:
        return 1, 99
    if policy in NORMAL or policy == SCHED_DEADLINE:
        return 0, 0
    raise fserr(errno.EINVAL)


def target(k, t, pid: int):
    """The task a sched_* call names: 0 is the caller; negative is EINVAL."""
    if pid < 0:
        raise fserr(errno.EINVAL)
    if pid == 0:
        return t
    found = k.pidns.tasks.get(pid)
    if found is None:
        raise fserr(errno.ESRCH)
    return found


def _may_change(t, victim) -> None:
    c, v = t.tg.creds, victim.tg.creds
    if c.euid not in (v.uid, v.euid) and not capable(c, CAP_SYS_NICE):
        raise fserr(errno.EPERM)


def set_scheduler(t, victim, policy: int, priority: int) -> None:
    reset = bool(policy & SCHED_RESET_ON_FORK)
    policy &= ~SCHED_RESET_ON_FORK
    if policy == SCHED_DEADLINE:  # needs sched_setattr's runtime/deadline/period
        raise fserr(errno.EINVAL)
    lo, hi = priority_range(policy)
    if not lo <= priority <= hi:
        raise fserr(errno.EINVAL)
    _may_change(t, victim)
    if policy in REALTIME and not capable(t.tg.creds, CAP_SYS_NICE):
        raise fserr(errno.EPERM)  # RLIMIT_RTPRIO is 0: only CAP_SYS_NICE may
    victim.sched = replace(victim.sched, policy=policy, priority=priority, reset_on_fork=reset)


def set_nice(t, victim, nice: int) -> None:
    nice = min(max(nice, NICE_MIN), NICE_MAX)
    _may_change(t, victim)
    if nice < victim.sched.nice and not capable(t.tg.creds, CAP_SYS_NICE):
        raise fserr(errno.EACCES)  # raising priority needs CAP_SYS_NICE
    victim.sched = replace(victim.sched, nice=nice)


def set_affinity(t, victim, mask: int) -> None:
    mask &= (1 << NCPUS) - 1
    if not mask:
        raise fserr(errno.EINVAL)
    _may_change(t, victim)
    victim.sched = replace(victim.sched, affinity=mask)
