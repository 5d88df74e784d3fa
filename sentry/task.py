"""Tasks (threads), thread groups (processes) and the pid namespace.

A Task is one guest thread: its platform thread, its virtual tid, signal
mask and the syscall it is parked in. A ThreadGroup is a process: tgid,
parent and children, exit status, signal handlers, fd table, filesystem
context (root, cwd, umask), credentials and address space.
"""
from __future__ import annotations

import copy
import itertools
import time
from dataclasses import dataclass

from vfs.path import Creds, Location

from . import caps
from .fdtable import FDTable
from .sched import SchedAttrs
from .waiter import WaitQueue


@dataclass
class Credentials:
    uid: int = 0
    euid: int = 0
    suid: int = 0
    fsuid: int = 0
    gid: int = 0
    egid: int = 0
    sgid: int = 0
    fsgid: int = 0
    groups: tuple = ()
    # Capability sets (sentry/caps.py), bit N for capability N. Left None,
    # they are what an exec with these ids gives: everything for root,
    # nothing for others; a full bounding set.
    cap_effective: int | None = None
    cap_permitted: int | None = None
    cap_inheritable: int = 0
    cap_bounding: int = caps.ALL_CAPS
    cap_ambient: int = 0
    keepcaps: bool = False      # PR_SET_KEEPCAPS: keep permitted caps across leaving uid 0

    def __post_init__(self):
        effective, permitted = caps.initial(self.uid, self.euid)
        if self.cap_permitted is None:
            self.cap_permitted = permitted & self.cap_bounding
        if self.cap_effective is None:
            self.cap_effective = effective & self.cap_permitted

    def with_caps(self, effective: int, permitted: int, inheritable: int, bounding: int,
                  ambient: int) -> "Credentials":
        """Set the five capability sets as given (masks), as an OCI
        runtime does after changing to the container's user. Returns self."""
        self.cap_effective, self.cap_permitted = effective, permitted
        self.cap_inheritable, self.cap_bounding, self.cap_ambient = inheritable, bounding, ambient
        return self

    def set_oci_capabilities(self, sets: dict | None, no_new_privs: bool = False) -> "Credentials":
        """config.json's process.capabilities ({"bounding": ["CAP_KILL", ...],
        "effective": [...], "inheritable": [...], "permitted": [...],
        "ambient": [...]}) for credentials already holding the process's
        user, leaving them as runc leaves its init: the sets applied (a set
        left out is empty; ambient only within permitted and inheritable,
        effective within permitted), then the execve of the program, which
        gives root (bounding | inheritable) and others their ambient set.
        None (no capabilities object) leaves the sets as they are.
        ValueError names an unknown capability."""
        if sets is None:
            return self
        m = {name: caps.parse_names(sets.get(name) or ())
             for name in ("effective", "permitted", "inheritable", "bounding", "ambient")}
        permitted, inheritable = m["permitted"], m["inheritable"]
        self.with_caps(m["effective"] & permitted, permitted, inheritable, m["bounding"],
                       m["ambient"] & permitted & inheritable)
        caps.on_exec(self, no_new_privs=no_new_privs)
        return self

    # The VFS reads fs_uid, fs_gid, groups and cap_effective: Credentials
    # serve as its Creds.
    @property
    def fs_uid(self) -> int:
        return self.fsuid

    @property
    def fs_gid(self) -> int:
        return self.fsgid

    def vfs(self) -> Creds:
        """What path walks check. A fresh object: callers may adjust it
        (access(2) checks with the real ids)."""
        return Creds(uid=self.euid, gid=self.egid, groups=self.groups,
                     fsuid=self.fsuid, fsgid=self.fsgid, cap_effective=self.cap_effective)

    def copy(self) -> "Credentials":
        return copy.copy(self)


@dataclass
class FSContext:
    """Root, working directory and umask (shared under CLONE_FS)."""
    root: Location
    cwd: Location
    umask: int = 0o022

    def copy(self) -> "FSContext":
        return FSContext(self.root, self.cwd, self.umask)


class SigAction:
    __slots__ = ("handler", "flags", "restorer", "mask")

    def __init__(self, handler: int = 0, flags: int = 0, restorer: int = 0, mask: int = 0):
        self.handler = handler  # 0: SIG_DFL
        self.flags, self.restorer, self.mask = flags, restorer, mask


class SignalHandlers:
    """The 64 signal actions (shared under CLONE_SIGHAND)."""

    def __init__(self, actions=None):
        self.actions = actions or [SigAction() for _ in range(65)]

    def copy(self) -> "SignalHandlers":
        # every fork and exec copies: keep it a plain loop (no copy.copy)
        return SignalHandlers([SigAction(a.handler, a.flags, a.restorer, a.mask) for a in self.actions])

    def reset_for_exec(self) -> None:
        # Handled signals revert to default; ignored ones stay ignored.
        for a in self.actions:
            if a.handler not in (0, 1):
                a.handler, a.flags, a.restorer, a.mask = 0, 0, 0, 0


class PIDNamespace:
    PID_MAX = 4194304

    def __init__(self):
        self._next = itertools.count(1)
        self.tasks: dict[int, Task] = {}       # tid -> task
        self.groups: dict[int, ThreadGroup] = {}  # tgid -> thread group

    def alloc(self) -> int:
        while True:
            pid = next(self._next)
            if pid >= self.PID_MAX:
                self._next = itertools.count(300)
                continue
            if pid not in self.tasks and pid not in self.groups:
                return pid


RUNNING, ZOMBIE, DEAD = "R", "Z", "X"


class ThreadGroup:
    def __init__(self, tgid: int, parent: "ThreadGroup | None", fs: FSContext,
                 fdtable: FDTable, creds: Credentials, mm, handlers: SignalHandlers):
        self.tgid = tgid
        self.parent = parent
        self.children: list[ThreadGroup] = []
        self.tasks: list[Task] = []
        self.fs = fs
        self.fdtable = fdtable
        self.creds = creds
        self.mm = mm
        self.handlers = handlers
        self.pgid = tgid
        self.sid = tgid
        self.ctty = None          # controlling terminal (sentry.pty.Terminal), inherited by fork
        self.tty_old_pgrp = 0     # a session leader's foreground group when its terminal hung up
        self.state = RUNNING
        self.exit_status: int | None = None  # wait status once exiting
        self.child_events = WaitQueue()  # a child changed state (wait4)
        self.exec_done = WaitQueue()     # for vfork parents
        self.vfork_parent: Task | None = None
        self.exiting = False
        self.pending_signals = 0  # bitmask of process-directed pending signals
        self.signal_info: dict[int, tuple] = {}  # sig -> (signo, errno, code, a, b)
        self.rlimits: dict[int, tuple[int, int]] = {}
        self.exe: Location | None = None
        self.argv: list[bytes] = []
        self.envp: list[bytes] = []
        self.start_ns = 0
        self.subreaper = False
        self.pdeathsig = 0        # signal sent when the parent exits (prctl)
        self.dumpable = 1
        self.no_new_privs = False
        self.cpu_ns = 0           # CPU time, taken when it exits
        self.itimers = None       # sentry.itimer timers, made on first use
        self.posix_timers = None  # sentry.posixtimer.TimerTable, made on first timer_create
        self.signalfd_queue = None  # WaitQueue notified when a signal is queued (signalfd)
        # job control: a stopped group's tasks are held, not resumed
        self.stopped = False
        self.stop_sig = 0
        self.held: list = []           # ready entries waiting for SIGCONT
        self.stop_to_report = False    # for wait4(WUNTRACED)
        self.cont_to_report = False    # for wait4(WCONTINUED)
        self.children_cpu_ns = 0  # of reaped children and their reaped children

    @property
    def leader(self) -> "Task | None":
        return self.tasks[0] if self.tasks else None


class Task:
    __slots__ = ("tid", "tg", "thread", "sigmask", "comm", "clear_child_tid",
                 "robust_list", "parked", "alive", "syscall_nr", "syscall_args",
                 "pending_signals", "sigaltstack", "xstate_len", "on_cpu", "syscall_start_ns", "sentry_ns", "saved_sigmask", "sigwait_set", "sigwait_queue", "write_done", "seccomp", "ioprio", "sched",
                 "__weakref__")

    def __init__(self, tid: int, tg: ThreadGroup, thread):
        self.tid = tid
        self.tg = tg
        self.thread = thread  # platform GuestThread
        self.sigmask = 0
        self.comm = b""
        self.clear_child_tid = 0
        self.robust_list = (0, 0)
        self.parked = None  # the kernel's record of the syscall it waits in
        self.alive = True
        self.syscall_nr = -1
        self.syscall_args = (0, 0, 0, 0, 0, 0)
        self.pending_signals = 0
        self.sigaltstack = (0, 2, 0)  # sp, flags (SS_DISABLE), size
        self.xstate_len = 0  # FP state size saved by the last signal frame
        self.on_cpu = False  # resumed on the host and not yet stopped again
        self.syscall_start_ns = 0  # when the current syscall first ran (timeouts)
        self.sentry_ns = 0         # handler time of the current syscall (monitored sandboxes)
        self.saved_sigmask = None  # mask to restore after a handler (sigsuspend, ppoll)
        self.sigwait_set = 0  # signals a parked rt_sigtimedwait accepts
        self.write_done = 0   # bytes a parked blocking write has written so far
        self.sigwait_queue = WaitQueue()
        self.seccomp = None  # the guest's own filters (sentry.seccomp), inherited
        self.ioprio = 0      # ioprio_set's class and level (0: none set)
        self.sched = SchedAttrs()  # policy, priority, nice, affinity (recorded only)

    @property
    def pid(self) -> int:
        return self.tg.tgid

    def call_start(self) -> int:
        """When the current syscall first ran (monotonic ns); a re-run after
        a wake-up sees the same time, so timeouts do not stretch."""
        if not self.syscall_start_ns:
            self.syscall_start_ns = time.monotonic_ns()
        return self.syscall_start_ns

    def __repr__(self) -> str:
        return f"<Task {self.tid} of {self.tg.tgid} {self.comm.decode(errors='replace')}>"
