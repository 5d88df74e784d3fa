"""The kernel: one event loop on one thread.

The loop resumes guest threads and waits for the next platform event. A
syscall stop is answered by its handler (sentry.syscalls), which either
returns a result (written into rax as the thread resumes), parks the task
(Block), or takes over the thread itself (exec, exit, fork children).
Parked tasks are woken by wait queues, timers or host fds; the loop polls
host fds and timers only while someone waits on them, so the common case
is one fused C call per syscall: store result, resume, wait.
"""
from __future__ import annotations

import collections
import errno
import heapq
import itertools
import os
import select
import signal
import struct
import threading
import time

from platforms.ptrace._ptrace import ffi, lib
from platforms.ptrace.platform import GuestGone, PtracePlatform
from vfs.path import MountTree, PathContext

from .fdtable import FDTable
from .loader import exec as loader
from .mm.mm import MemoryManager
from .netclock import KernelClock
from .syscalls import table
from .syscalls.time import process_cpu_ns
from .task import (ZOMBIE, Credentials, FSContext, PIDNamespace, SignalHandlers,
                   Task, ThreadGroup)
from . import futex, inet, itimer, jobcontrol, posixtimer, seccomp, signals
from .signals import ERESTARTSYS
from .socketfile import AF_NETLINK
from .waiter import Block

SYSCALL_STOP = 0x85
_EXEC_NRS = (table.number("execve"), table.number("execveat"))
SIGKILL, SIGCHLD, SIGSTOP, SIGTRAP, SIGSEGV = 9, 17, 19, 5, 11
AUDIT_ARCH_X86_64 = 0xC000003E
CORE_SIGNALS = {3, 4, 5, 6, 7, 8, 11, 24, 25, 31}  # default action: dump core
IGNORED_SIGNALS = {17, 18, 23, 28}  # SIGCHLD, SIGCONT, SIGURG, SIGWINCH
HOST_FAULTS = {4, 5, 7, 8, 11, 31}  # SIGILL SIGTRAP SIGBUS SIGFPE SIGSEGV SIGSYS: raised by guest code
WAKE_SIGNAL = signal.SIGIO  # interrupts the loop's waitpid (poke_from_thread); nothing else uses it
NORESUME = object()  # handler result: the handler decided how the task goes on


class InternalError(Exception):
    pass


class Parked:
    __slots__ = ("task", "nr", "args", "block", "callback", "timed_out", "timer")

    def __init__(self, task, nr, args, block):
        self.task, self.nr, self.args, self.block = task, nr, args, block
        self.callback = None
        self.timed_out = False
        self.timer = None


class KernelTimer:
    """A timer of the kernel's own (itimers, POSIX timers); shares the
    heap with parked tasks' deadlines."""
    __slots__ = ("callback", "timer", "timed_out")

    def __init__(self, callback):
        self.callback = callback
        self.timer = None
        self.timed_out = False


class FdWatch:
    __slots__ = ("fd", "events", "callback")

    def __init__(self, fd, events, callback):
        self.fd, self.events, self.callback = fd, events, callback


def _crash_handler(k, t, *args):
    raise RuntimeError("crash requested by PYRUNSC_TEST_CRASH_IN")


def _netlink_socket(k, t, stype: int, protocol: int):
    """socket(AF_NETLINK): sentry.netlink and rtnetlink's tables are
    imported at a guest's first netlink socket, not at every sandbox's start."""
    from .netlink import factory
    return factory(k, t, stype, protocol)


def _host_auxv() -> dict[int, int]:
    data = open("/proc/self/auxv", "rb").read()
    vals = struct.unpack(f"<{len(data) // 8}Q", data)
    return {vals[i]: vals[i + 1] for i in range(0, len(vals) - 1, 2)}


class Kernel:
    def __init__(self, platform: PtracePlatform, mounts: MountTree, *, monitor=None,
                 debug_log=None, hostname: bytes = b"pyrunsc"):
        self.platform = platform
        self.mounts = mounts
        self.pidns = PIDNamespace()
        self.by_host: dict[int, Task] = {}
        self.ready = collections.deque()   # (task, set_rax, rax, sig)
        self.running: set[Task] = set()    # tasks with on_cpu set
        self.woken = collections.deque()   # Parked records to retry
        self.timers: list = []             # heap of (deadline_ns, seq, Parked)
        self.host_waits: dict[int, list] = {}  # host fd -> [(events, Parked)]
        self._seq = itertools.count()
        self.init_tg: ThreadGroup | None = None
        self.finished = False
        self.exit_status = 0
        self.monitor = monitor   # sentry.monitor.SyscallMonitor: strace, coverage, hooks
        self.debug_log = debug_log
        self.unimplemented = collections.Counter()
        self.hostname = hostname
        self.domainname = b"(none)"
        self.boot_ns = time.monotonic_ns()
        self.current: Task | None = None
        aux = _host_auxv()
        self.hwcap, self.hwcap2, self.minsigstksz = aux.get(16, 0), aux.get(26, 0), aux.get(51, 2048)
        self.handlers = table.handlers()
        self.syscall_counts = [0] * len(self.handlers)   # calls by number (events --stats)
        crash = os.environ.get("PYRUNSC_TEST_CRASH_IN")
        if crash:  # tests of the internal-error path: this handler raises
            self.handlers[table.number(crash)] = _crash_handler
        self.fg_pgid = 1
        # Outside feeders (the console's reader thread) poke the loop: it
        # then runs on_poke. The pipe wakes a poll; a signal, a waitpid.
        self.poked = False
        self.on_poke: list = []
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        # Host fds watched for as long as their owner lives (a tap device,
        # a published port's listener), unlike host_waits which belong to
        # one parked syscall: fd -> [FdWatch].
        self.watches: dict[int, list] = {}
        self.netclock = KernelClock(self)
        self.netstack = None   # netstack.stack.Stack, made by the sandbox's network setup
        self.held_starts: list[ThreadGroup] = []  # loaded, waiting for release() (OCI create)
        self.exit_watchers: dict = {}  # ThreadGroup -> on_exit(wait_status), for spawn()
        self.frozen = False            # OCI pause: no task is resumed until thaw()
        self.frozen_held: list = []    # ready entries taken while frozen
        self.loop_thread = threading.get_ident()
        inet.register()
        from .syscalls.socket import register_family
        register_family(AF_NETLINK, _netlink_socket)

    # --- process creation ---
    def start(self, argv: list[bytes], envp: list[bytes], cwd: bytes, fdtable: FDTable,
              creds: Credentials | None = None, *, hold: bool = False,
              filename: bytes | None = None) -> ThreadGroup:
        """Load the first process (pid 1): the program at filename (default
        argv[0]) given argv. With hold, it waits for release(): an OCI
        container is created, then started."""
        tg = self._new_process(argv, envp, cwd, fdtable, creds, filename)
        self.init_tg = tg
        if hold:
            self.held_starts.append(tg)
        else:
            self.ready.append((tg.tasks[0], 0, 0, 0))
        return tg

    def spawn(self, argv: list[bytes], envp: list[bytes], cwd: bytes, fdtable: FDTable,
              creds: Credentials | None, on_exit, filename: bytes | None = None) -> ThreadGroup:
        """Another process entering the sandbox from outside (OCI exec): a
        session of its own with no parent inside, as the process runc exec
        starts. on_exit(wait_status) is called when it exits; it is reaped
        at once (no parent will wait for it)."""
        tg = self._new_process(argv, envp, cwd, fdtable, creds, filename)
        self.exit_watchers[tg] = on_exit
        self.ready.append((tg.tasks[0], 0, 0, 0))
        return tg

    def _new_process(self, argv, envp, cwd, fdtable, creds, filename=None) -> ThreadGroup:
        creds = creds or Credentials()
        root = self.mounts.root
        ctx = PathContext(root, root, creds.vfs())
        cwd_loc = self.mounts.resolve(ctx, cwd)
        ctx.cwd = cwd_loc
        plan = loader.prepare(self.mounts, ctx, filename or argv[0], argv, envp)  # OSError: caller reports
        thread = self.platform.new_process()
        tgid = self.pidns.alloc()
        mm = MemoryManager(self.platform.reserved)
        tg = ThreadGroup(tgid, None, FSContext(root, cwd_loc), fdtable, creds, mm, SignalHandlers())
        tg.start_ns = time.monotonic_ns()
        t = Task(tgid, tg, thread)
        self._register(t)
        self._load(t, plan)
        return tg

    def release(self, tg: ThreadGroup) -> None:
        """Let a process loaded with hold=True run."""
        if tg in self.held_starts:
            self.held_starts.remove(tg)
            if tg.tasks and not tg.exiting:
                self.ready.append((tg.tasks[0], 0, 0, 0))

    def _register(self, t: Task) -> None:
        t.tg.tasks.append(t)
        self.pidns.tasks[t.tid] = t
        self.pidns.groups[t.tg.tgid] = t.tg
        self.by_host[t.thread.pid] = t
        t.tg.mm.users += 1

    def _vdso(self, hpid: int) -> int:
        data = open(f"/proc/{hpid}/auxv", "rb").read()
        vals = struct.unpack(f"<{len(data) // 8}Q", data)
        for i in range(0, len(vals) - 1, 2):
            if vals[i] == 33:
                return vals[i + 1]
        return 0

    def _load(self, t: Task, plan) -> None:
        """Fill t's fresh stub address space with the program of plan."""
        tg = t.tg
        thread = t.thread
        exe_path = self.mounts.path_of(plan.main.loc, tg.fs.root)
        vdso = self._vdso(thread.pid) if self.platform.name == "ptrace" else 0  # kvm: no vDSO
        loaded = loader.load(thread, tg.mm, plan, tg.creds, vdso,
                             self.hwcap, self.hwcap2, self.minsigstksz, exe_path,
                             getattr(self.platform, "images", None))
        regs = thread.get_regs()
        stub_stack = regs.rsp  # in the stub's own stack, which the host keeps calling [stack]
        for name in ("r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8",
                     "rax", "rcx", "rdx", "rsi", "rdi", "fs_base", "gs_base"):
            setattr(regs, name, 0)
        regs.orig_rax = 0xFFFFFFFFFFFFFFFF
        regs.rip = loaded.entry
        regs.rsp = loaded.sp
        regs.eflags = 0x202
        thread.set_regs(regs)
        tg.exe = plan.main.loc
        tg.argv = plan.argv
        tg.envp = plan.envp
        t.comm = os.path.basename(plan.filename)[:15]
        # the host's ps (docker top) shows the guest's command, not the stub's
        thread.show_as(t.comm, regs, stub_stack, tg.mm.arg_range, tg.mm.env_range, loaded.brk)

    # --- the loop ---
    def run(self) -> int:
        if self.platform.name == "kvm":  # its own loop; this one is ptrace's
            from .kvm_loop import run as run_on_kvm
            return run_on_kvm(self, self.platform)
        plat = self.platform
        SYSEMU = lib.PTRACE_SYSEMU
        status = plat.status
        out = plat.out
        ready = self.ready
        running = self.running
        pt_step = lib.pt_step
        unpack = ffi.unpack
        try:
            while not self.finished:
                # Fast path: one task to resume and nothing else to watch:
                # one C call stores its result, resumes it and waits.
                if len(ready) == 1 and not (self.woken or self.timers or self.host_waits or plat.pending
                                            or self.poked or self.watches or self.frozen):
                    t, set_rax, rax, sig = ready[0]
                    if t.alive and rax != -ERESTARTSYS and not t.tg.stopped and \
                            not (t.pending_signals | t.tg.pending_signals) & ~t.sigmask:
                        ready.popleft()
                        t.on_cpu = True
                        running.add(t)
                        wpid = pt_step(t.thread.pid, set_rax, rax, SYSEMU, sig, 1, status, out)
                        if wpid > 0:
                            if len(running) > 1:  # _first_stop, inline
                                wpid = plat.take_first(wpid)
                            else:
                                plat.first_stop = -1
                            t = self.by_host.get(wpid)
                            if t is None:
                                continue
                            t.on_cpu = False
                            running.discard(t)
                            if status[0] & 0xFFFF == 0x857F:  # syscall stop
                                a = unpack(out, 10)
                                if a[9] == AUDIT_ARCH_X86_64 and a[0] < 0x40000000:
                                    self.syscall(t, a[0], a[1:7])
                                    continue
                            # anything else: the general path below handles it
                            plat.pending.setdefault(wpid, []).append(status[0])
                            continue
                        if wpid != -errno.ESRCH and wpid != -errno.EINTR:
                            raise OSError(-wpid, f"ptrace step: {os.strerror(-wpid)}")
                        continue
                if self.woken:
                    self._retry_woken()
                    continue
                if self.poked:
                    self._run_pokes()
                    continue
                fused = None
                while self.ready:
                    entry = t, set_rax, rax, sig = self.ready.popleft()
                    if not t.alive:
                        continue
                    if self.frozen:  # OCI pause: held until thaw()
                        self.frozen_held.append(entry)
                        continue
                    if t.tg.stopped:  # job control: held until SIGCONT
                        t.tg.held.append(entry)
                        continue
                    if (t.pending_signals | t.tg.pending_signals) & ~t.sigmask or \
                            set_rax and rax == -ERESTARTSYS:
                        set_rax, rax = self._signal_before_resume(t, set_rax, rax)
                        if not t.alive:
                            continue
                    t.on_cpu = True
                    running.add(t)
                    if not self.ready and not self.woken and not self.timers and not self.host_waits \
                            and not self.watches:
                        fused = (t, set_rax, rax, sig)
                        break
                    try:
                        plat.resume(t.thread.pid, set_rax, rax, SYSEMU, sig)
                    except OSError:
                        pass  # died meanwhile: its exit event follows
                if fused is not None:
                    t, set_rax, rax, sig = fused
                    try:
                        wpid = plat.step(t.thread.pid, set_rax, rax, SYSEMU, sig, True)
                    except OSError as e:
                        if e.errno != errno.ESRCH:
                            raise
                        wpid = plat.step(0, 0, 0, 0, 0, True)
                elif self.timers or self.host_waits or self.on_poke or self.watches:
                    wpid = self._wait_with_host()
                else:
                    if not self.by_host:
                        raise InternalError("no guest left to wait for, but the sandbox has not ended")
                    wpid = plat.step(0, 0, 0, 0, 0, True)
                if wpid <= 0:
                    continue
                if plat.reaped:
                    plat.reaped = False
                    wpid = self._first_stop(wpid)
                t = self.by_host.get(wpid)
                st = status[0]
                if t is None:
                    continue  # a host thread we already buried (killed group)
                t.on_cpu = False
                running.discard(t)
                if (st & 0xFF) == 0x7F and (st >> 8) & 0xFF == SYSCALL_STOP:
                    if out[9] != AUDIT_ARCH_X86_64 or out[0] >= 0x40000000:
                        # i386 (int 0x80) or x32 entry: refused, never emulated
                        self._log_debug(f"refused non-x86-64 syscall {out[0]} (arch {out[9]:#x}) from {t}")
                        self.ready.append((t, 1, -errno.ENOSYS, 0))
                        continue
                    self.syscall(t, out[0], (out[1], out[2], out[3], out[4], out[5], out[6]))
                else:
                    self._other_event(t, st)
        finally:
            self.shutdown()
        return self.exit_status

    def _first_stop(self, wpid: int) -> int:
        """wpid's stop was just taken from the host. If other tasks ran
        meanwhile, their stops may be waiting too, and waitpid's order is
        not the order they stopped in: serve the first first (their calls
        may race on the same objects, as a close and a use of one fd)."""
        if len(self.running) > 1:
            return self.platform.take_first(wpid)
        self.platform.first_stop = -1  # took_stop(), inline: this runs at every stop
        return wpid

    def syscall(self, t: Task, nr: int, args: tuple, retry: bool = False) -> None:
        self.current = t
        t.syscall_nr = nr
        mon = self.monitor
        if not retry:
            t.syscall_start_ns = 0  # set by handlers that time out (see call_start)
            t.write_done = 0
            if mon is not None:
                t.sentry_ns = 0
                steer = mon.enter(t, nr, args)
                if steer is not None:
                    if type(steer) is tuple:
                        args = steer   # the monitor rewrote the arguments
                    else:              # the monitor answered: no handler runs
                        self._count(nr)
                        if (x := mon.done(t, nr, args, steer, 0)) is not None:
                            steer = x   # done() replaced the result
                        self.ready.append((t, 1, steer, 0))
                        return
        try:
            self.syscall_counts[nr] += 1
        except IndexError:
            pass   # past the table: counted as unimplemented below
        handler = self.handlers[nr] if nr < len(self.handlers) else None
        try:
            if t.seccomp is not None and not retry and (r := seccomp.enforce(self, t, nr, args)) is not None:
                if r is False:  # the filter killed it
                    if mon is not None:
                        mon.done(t, nr, args, None, t.sentry_ns)
                    return
            elif handler is None:
                self.unimplemented[nr] += 1
                self._log_debug(f"unimplemented syscall {table.name(nr)} ({nr}) from {t}")
                r = -errno.ENOSYS
            elif mon is None:
                r = handler(self, t, *args)
            else:
                r = self._timed_handler(t, handler, args)
        except OSError as e:
            r = -(e.errno or errno.EIO)
        except MemoryError:  # the sentry could not hold what the call needs: the call fails, not the sandbox
            r = -errno.ENOMEM
        except Block as b:
            self._park(t, nr, args, b)
            if mon is not None and not retry:
                mon.blocked(t, nr, args)
            return
        except GuestGone as gone:
            self._log_debug(f"host thread {gone.pid} gone (status {gone.status:#x}) during {table.name(nr)} of {t}")
            if gone.pid == t.thread.pid:
                if mon is not None:
                    mon.done(t, nr, args, None, t.sentry_ns)
                self.host_thread_gone(t, gone.status)
            else:
                r = -errno.EAGAIN
                if mon is not None and (x := mon.done(t, nr, args, r, t.sentry_ns)) is not None:
                    r = x
                self.ready.append((t, 1, r, 0))
            return
        except Exception as e:
            raise InternalError(f"in {table.name(nr)}({', '.join(hex(a) for a in args)}) of {t}: {e!r}") from e
        if r is NORESUME:
            if mon is not None:   # execve succeeded (0, as strace shows it), or the task is gone
                mon.done(t, nr, args, 0 if nr in _EXEC_NRS else None, t.sentry_ns)
            return
        if mon is not None and (x := mon.done(t, nr, args, r, t.sentry_ns)) is not None:
            r = x   # done() replaced the result
        self.ready.append((t, 1, r, 0))

    def _count(self, nr: int) -> None:
        if nr < len(self.syscall_counts):
            self.syscall_counts[nr] += 1

    @property
    def nsyscalls(self) -> int:
        """Every syscall the guests made (numbers past the table included)."""
        n = len(self.syscall_counts)
        return sum(self.syscall_counts) + sum(v for nr, v in self.unimplemented.items() if nr >= n)

    def _timed_handler(self, t: Task, handler, args: tuple):
        """handler's result, its run time added to t.sentry_ns (monitored sandboxes only)."""
        start = time.perf_counter_ns()
        try:
            return handler(self, t, *args)
        finally:
            t.sentry_ns += time.perf_counter_ns() - start

    def _signal_before_resume(self, t: Task, set_rax: int, rax: int) -> tuple[int, int]:
        """Deliver a pending signal to t (or settle a syscall a signal
        interrupted) before it runs again. Returns the new (set_rax, rax)."""
        regs = t.thread.get_regs()
        if set_rax:
            regs.rax = rax & 0xFFFFFFFFFFFFFFFF
        if set_rax and rax == -ERESTARTSYS:
            sig = signals.next_signal(t)
            act = t.tg.handlers.actions[sig] if sig else None
            if act is None or act.flags & signals.SA_RESTART:
                regs.rax = t.syscall_nr  # run the syscall again after the handler
                regs.rip -= 2
            else:
                regs.rax = (-errno.EINTR) & 0xFFFFFFFFFFFFFFFF
        if not signals.deliver_pending(self, t, regs) and t.saved_sigmask is not None:
            # a call that swapped the mask (ppoll, sigsuspend) ended without a handler
            t.sigmask, t.saved_sigmask = t.saved_sigmask, None
        if t.alive:
            t.thread.set_regs(regs)
        return 0, 0

    # --- parking ---
    def _park(self, t: Task, nr: int, args: tuple, b: Block) -> None:
        # A parked Block outlives its handler: drop its traceback, whose
        # frames would keep the handler's buffers (a 4 MiB write's data at
        # every retry) alive until a full garbage collection.
        b.__traceback__ = b.__context__ = b.__cause__ = None
        rec = Parked(t, nr, args, b)
        t.parked = rec

        def wake():
            if t.parked is rec:
                self._unpark(rec)
                self.woken.append(rec)
        rec.callback = wake
        for q in b.queues:
            q.add_waiter(wake)
        if b.deadline_ns is not None:
            self._push_timer(rec, b.deadline_ns)
        for fd, events in b.host_fds:
            self.host_waits.setdefault(fd, []).append((events, rec))

    def add_timer(self, deadline_ns: int, callback) -> "KernelTimer":
        """Call callback() at the monotonic deadline (from the loop)."""
        kt = KernelTimer(callback)
        self._push_timer(kt, deadline_ns)
        return kt

    def cancel_timer(self, kt: "KernelTimer") -> None:
        self._drop_timer(kt)

    # Timer holders (Parked records, KernelTimers) keep their heap entry
    # in .timer; the loop fires holder.callback() when it is due.
    def _push_timer(self, holder, deadline_ns: int) -> None:
        holder.timer = (deadline_ns, next(self._seq), holder)
        heapq.heappush(self.timers, holder.timer)

    def _drop_timer(self, holder) -> None:
        if holder.timer is not None:
            try:
                self.timers.remove(holder.timer)
                heapq.heapify(self.timers)
            except ValueError:
                pass
            holder.timer = None

    def _unpark(self, rec: Parked) -> None:
        rec.task.parked = None
        for q in rec.block.queues:
            q.remove_waiter(rec.callback)
        self._drop_timer(rec)
        for fd, _ in rec.block.host_fds:
            lst = [w for w in self.host_waits.get(fd, []) if w[1] is not rec]
            if lst:
                self.host_waits[fd] = lst
            else:
                self.host_waits.pop(fd, None)

    def interrupt(self, t: Task, result: int) -> bool:
        """End t's parked syscall for a signal: with `result` (-EINTR or
        -ERESTARTSYS), or what the wait itself says an interruption returns."""
        rec = t.parked
        if rec is None or not rec.block.interruptible:
            return False
        t.sigwait_set = 0
        self._unpark(rec)
        if rec.block.interrupt_result is not None:
            result = rec.block.interrupt_result
        if rec.block.on_interrupt is not None:
            try:
                rec.block.on_interrupt(t)
            except OSError as e:  # e.g. nanosleep's rem pointer is bad
                result = -(e.errno or errno.EFAULT)
        if self.monitor is not None and (x := self.monitor.done(t, rec.nr, rec.args, result, t.sentry_ns)) is not None:
            result = x
        self.ready.append((t, 1, result, 0))
        return True

    def _retry_woken(self) -> None:
        while self.woken:
            rec = self.woken.popleft()
            t = rec.task
            if not t.alive:
                continue
            b = rec.block
            result = b.on_timeout if rec.timed_out and b.on_timeout is not None else b.result
            if result is None:
                self.syscall(t, rec.nr, rec.args, retry=True)
                continue
            if self.monitor is not None and \
                    (x := self.monitor.done(t, rec.nr, rec.args, result, t.sentry_ns)) is not None:
                result = x
            self.ready.append((t, 1, result, 0))

    def host_fd_events(self) -> dict[int, int]:
        """The poll events wanted on each host fd that parked calls and
        watches wait on (for the platform's loop to poll)."""
        wanted: dict[int, int] = {}
        for fd, waits in self.host_waits.items():
            for events, _ in waits:
                wanted[fd] = wanted.get(fd, 0) | events
        for fd, watches in self.watches.items():
            for w in watches:
                wanted[fd] = wanted.get(fd, 0) | w.events
        return wanted

    def host_fd_ready(self, fd: int, revents: int) -> None:
        """poll reported revents on a host fd of host_fd_events: wake what waits on it."""
        for _, rec in list(self.host_waits.get(fd, [])):
            rec.callback()
        for w in list(self.watches.get(fd, ())):
            if w.events & revents or revents & (select.POLLHUP | select.POLLERR):
                w.callback(revents)

    def watch_fd(self, fd: int, events: int, callback) -> "FdWatch":
        """Call callback(revents) from the loop whenever host fd is ready
        for events, until unwatch_fd."""
        w = FdWatch(fd, events, callback)
        self.watches.setdefault(fd, []).append(w)
        return w

    def unwatch_fd(self, w: "FdWatch") -> None:
        lst = self.watches.get(w.fd)
        if lst is not None and w in lst:
            lst.remove(w)
            if not lst:
                del self.watches[w.fd]

    def poke(self) -> None:
        """From any thread: make the loop run on_poke soon."""
        self.poked = True
        try:
            os.write(self.wake_w, b"\0")
        except OSError:  # full (a wake-up is pending anyway) or closed at the end
            pass

    def poke_from_thread(self) -> None:
        """From another thread: poke, and interrupt the loop's waitpid with
        WAKE_SIGNAL (its owner installs a handler). A signal landing just
        before the loop enters waitpid does not interrupt it: repeat until
        the loop has run its pokes."""
        self.poke()
        for _ in range(100):
            try:
                signal.pthread_kill(self.loop_thread, WAKE_SIGNAL)
            except (ProcessLookupError, RuntimeError):
                return
            time.sleep(0.02)
            if not self.poked or self.finished:
                return

    def _run_pokes(self) -> None:
        self.poked = False
        try:
            while os.read(self.wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        for fn in self.on_poke:
            fn()

    def _wait_with_host(self) -> int:
        plat = self.platform
        wpid = plat.step(0, 0, 0, 0, 0, False)
        if wpid:
            return wpid
        now = time.monotonic_ns()
        timeout = None
        if self.timers:
            # poll() takes an int of ms: far deadlines wait a day at a time
            timeout = min(max(0, (self.timers[0][0] - now) // 1_000_000 + 1), 86_400_000)
        poller = select.poll()
        poller.register(plat.sigchld_fd, select.POLLIN)
        if self.on_poke:
            poller.register(self.wake_r, select.POLLIN)
        for fd, ev in self.host_fd_events().items():
            poller.register(fd, ev | select.POLLHUP | select.POLLERR)
        try:
            ready = poller.poll(timeout)
        except InterruptedError:
            ready = []
        for fd, ev in ready:
            if fd == self.wake_r:
                continue  # self.poked says it; _run_pokes drains the pipe
            if fd == plat.sigchld_fd:
                plat.read_sigchld()
                continue
            self.host_fd_ready(fd, ev)
        self.fire_due_timers()
        return plat.step(0, 0, 0, 0, 0, False)

    def fire_due_timers(self) -> None:
        """Run the callbacks of the timers whose deadline has passed."""
        now = time.monotonic_ns()
        while self.timers and self.timers[0][0] <= now:
            _, _, rec = heapq.heappop(self.timers)
            rec.timer = None
            rec.timed_out = True
            rec.callback()

    # --- non-syscall events ---
    def _other_event(self, t: Task, st: int) -> None:
        if (st & 0xFF) != 0x7F:
            self.host_thread_gone(t, st)
            return
        sig = (st >> 8) & 0xFF
        event = st >> 16
        if event or sig == SIGSTOP:
            # ptrace events we did not ask for here, or a stop: carry on
            self.ready.append((t, 0, 0, 0))
            return
        if sig not in HOST_FAULTS:
            # sent by the host, not raised by the guest's code: the host
            # terminal's SIGWINCH or SIGHUP to pyrunsc's process group, which
            # the guests' host processes share. The guest's signals are ours.
            self._log_debug(f"host signal {sig} to {t} dropped")
            self.ready.append((t, 0, 0, 0))
            return
        # A synchronous fault raised by the host (SIGSEGV, SIGBUS, SIGFPE,
        # SIGILL, SIGTRAP from int3): the guest's signal, not the host's.
        self.guest_fault(t, sig)

    def guest_fault(self, t: Task, sig: int) -> None:
        if not signals.deliver_fault(self, t, sig):
            self.exit_group(t.tg, self.signal_status(sig))

    @staticmethod
    def signal_status(sig: int) -> int:
        return sig | (0x80 if sig in CORE_SIGNALS else 0)

    # --- exits ---
    def host_thread_gone(self, t: Task, st: int | None) -> None:
        if not t.alive:
            return
        if not t.tg.exiting:
            # died on the host without the sentry deciding it (a seccomp kill,
            # an outside SIGKILL): the process dies of that signal
            sig = (st & 0x7F) if st is not None and (st & 0x7F) else SIGKILL
            self.exit_group(t.tg, self.signal_status(sig) if st is None or (st & 0x7F) else (st & 0xFF00))
            return
        self._bury(t)

    def _bury(self, t: Task) -> None:
        if not t.alive:
            return
        t.alive = False
        self.running.discard(t)
        self.platform.forget(t.thread.pid)
        if t.parked is not None:
            self._unpark(t.parked)
        t.thread.forget_mm()  # its /proc/pid/mem fd
        self.by_host.pop(t.thread.pid, None)
        self.pidns.tasks.pop(t.tid, None)
        if t in t.tg.tasks:
            t.tg.tasks.remove(t)
        self.drop_mm_user(t.tg.mm)

    def drop_mm_user(self, mm) -> None:
        """A task stopped using mm (exit, exec): when nobody does, the file
        pages only it mapped are written back and freed."""
        mm.users -= 1
        if mm.users <= 0 and any(l.slot is not None for l in mm.labels):
            self.release_file_pages()

    def release_file_pages(self) -> None:
        cache = getattr(self.platform, "file_cache", None)
        if cache is not None:
            cache.collect({id(x.tg.mm): x.tg.mm for x in self.pidns.tasks.values()}.values())

    def exit_thread(self, t: Task, code: int) -> None:
        """exit(2) of one thread; the last one ends the process."""
        tg = t.tg
        live = [x for x in tg.tasks if x.alive]
        if len(live) <= 1:
            self.exit_group(tg, (code & 0xFF) << 8)
            return
        futex.exit_robust_list(self, t)
        futex.clear_child_tid(self, t)
        # make the host thread alone exit: exit(2) at the gadget
        regs = t.thread.get_regs()
        from platforms.ptrace.stub import GADGET
        regs.rax, regs.rdi, regs.rip, regs.orig_rax = 60, 0, GADGET, 0xFFFFFFFFFFFFFFFF
        t.thread.set_regs(regs)
        self._bury(t)  # its host exit event is ignored: no task maps to it
        lib.pt_request(lib.PTRACE_CONT, t.thread.pid, 0, 0)

    def exit_group(self, tg: ThreadGroup, wait_status: int) -> None:
        if tg.exiting:
            return
        tg.exiting = True
        if wait_status & 0x80 and not tg.rlimits.get(4, (0,))[0]:
            wait_status &= ~0x80  # RLIMIT_CORE 0: Linux dumps no core, so none is reported
        tg.exit_status = wait_status
        tg.cpu_ns = process_cpu_ns(tg)  # while its host process still exists
        itimer.cancel_all(tg)
        posixtimer.delete_all(tg)
        host_pid = tg.tasks[0].thread.pid if tg.tasks else None
        for t in tg.tasks:  # while the memory is there (mutexes in shared memory)
            if t.robust_list[0]:
                futex.exit_robust_list(self, t)
        for t in list(tg.tasks):
            if t.parked is not None:
                self._unpark(t.parked)
            self._bury(t)
        if host_pid is not None:
            lib.pt_kill(host_pid, SIGKILL)
        tg.fdtable.close_all()
        if tg.vfork_parent is not None:
            tg.exec_done.notify()
        self._became_zombie(tg)

    def _became_zombie(self, tg: ThreadGroup) -> None:
        tg.state = ZOMBIE
        if tg is self.init_tg:
            # pid 1 is gone: the sandbox ends, as a pid namespace does
            self.exit_status = tg.exit_status
            self.finished = True
            return
        jobcontrol.disassociate_ctty(self, tg, on_exit=True)  # a session leader's terminal hangs up
        reaper = self._new_reaper(tg)
        # groups this exit may orphan: its own, and its children's in its session
        watch = {tg.pgid} | {c.pgid for c in tg.children if c.sid == tg.sid and c.pgid != tg.pgid}
        for child in tg.children:
            child.parent = reaper
            reaper.children.append(child)
            if child.state == ZOMBIE:
                reaper.child_events.notify()
            elif child.pdeathsig:
                signals.send_signal_to_group(self, child, child.pdeathsig, from_kernel=True)
        tg.children = []
        self._hang_up_orphans(watch)
        parent = tg.parent
        if parent is None:
            on_exit = self.exit_watchers.pop(tg, None)
            if on_exit is not None:  # spawned from outside: nobody inside waits for it
                self.reap(tg)
                on_exit(tg.exit_status)
            return
        act = parent.handlers.actions[SIGCHLD]
        if act.handler == 1:  # SIG_IGN: no zombie, no signal
            self.reap(tg)
            parent.child_events.notify()
            return
        code = 1 if not tg.exit_status & 0x7F else (3 if tg.exit_status & 0x80 else 2)
        value = (tg.exit_status >> 8) & 0xFF if code == 1 else tg.exit_status & 0x7F
        if act.flags & signals.SA_NOCLDWAIT:  # no zombie, but SIGCHLD still comes
            self.reap(tg)
        self._notify_parent(tg, code, value)

    def _new_reaper(self, tg: ThreadGroup) -> ThreadGroup:
        """Who adopts tg's children: the nearest living ancestor that asked
        to (PR_SET_CHILD_SUBREAPER), else pid 1."""
        p = tg.parent
        while p is not None and p is not self.init_tg:
            if p.subreaper and not p.exiting:
                return p
            p = p.parent
        return self.init_tg

    def reap(self, tg: ThreadGroup) -> None:
        if tg.parent is not None and tg in tg.parent.children:
            tg.parent.children.remove(tg)
            tg.parent.children_cpu_ns += tg.cpu_ns + tg.children_cpu_ns
        tg.state = "X"
        self.pidns.groups.pop(tg.tgid, None)

    def shutdown(self) -> None:
        """Kill every guest; used at the end and on internal errors."""
        self.finished = True
        cache = getattr(self.platform, "file_cache", None)
        try:
            if cache is not None:
                cache.flush()  # stores through shared mappings reach their files
        finally:
            self.platform.close()
        for fd in (self.wake_r, self.wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self.wake_r = self.wake_w = -1

    def stop_group(self, tg: ThreadGroup, sig: int) -> None:
        """Job-control stop: hold every task of tg until SIGCONT."""
        if tg.stopped or tg.exiting:
            return
        tg.stopped, tg.stop_sig = True, sig
        tg.stop_to_report, tg.cont_to_report = True, False
        for t in tg.tasks:
            if t.on_cpu:  # running guest code: make the host stop it
                lib.pt_tgkill(tg.tasks[0].thread.pid, t.thread.pid, SIGSTOP)
        self._notify_parent(tg, 5, sig, stop=True)  # CLD_STOPPED

    def continue_group(self, tg: ThreadGroup) -> None:
        if not tg.stopped:
            return
        tg.stopped = False
        tg.stop_to_report, tg.cont_to_report = False, True
        self.ready.extend(tg.held)
        tg.held = []
        self._notify_parent(tg, 6, 18, stop=True)  # CLD_CONTINUED

    def freeze(self) -> None:
        """OCI pause: every task stops where it is (running ones are made to
        stop on the host) and nothing resumes until thaw(). Unlike a
        job-control stop, the guests cannot observe it."""
        if self.frozen:
            return
        self.frozen = True
        for t in list(self.running):
            lib.pt_tgkill(t.tg.tasks[0].thread.pid, t.thread.pid, SIGSTOP)

    def thaw(self) -> None:
        if not self.frozen:
            return
        self.frozen = False
        self.ready.extend(self.frozen_held)
        self.frozen_held = []

    def _notify_parent(self, tg: ThreadGroup, code: int, value: int, stop: bool = False) -> None:
        parent = tg.parent
        if parent is None:
            return
        act = parent.handlers.actions[SIGCHLD]
        if not (stop and act.flags & signals.SA_NOCLDSTOP):
            signals.send_signal_to_group(self, parent, SIGCHLD,
                                         info=(SIGCHLD, 0, code, tg.tgid | (tg.creds.uid << 32), value))
        parent.child_events.notify()

    def signal_process_group(self, pgid: int, sig: int) -> None:
        """A signal to every process of a group (from a terminal)."""
        for tg in [g for g in self.pidns.groups.values() if g.pgid == pgid and g.state == "R"]:
            signals.send_signal_to_group(self, tg, sig, from_kernel=True)

    def _hang_up_orphans(self, pgids) -> None:
        """A process group newly orphaned with a stopped member gets SIGHUP
        then SIGCONT: nobody is left to continue it (POSIX)."""
        for pgid in pgids:
            members = [g for g in self.pidns.groups.values() if g.pgid == pgid and g.state == "R"]
            if any(g.stopped for g in members) and self.pgrp_orphaned(pgid):
                self.signal_process_group(pgid, signals.SIGHUP)
                self.signal_process_group(pgid, signals.SIGCONT)

    def pgrp_orphaned(self, pgid: int) -> bool:
        """POSIX: no member has a parent in another group of its session."""
        for g in self.pidns.groups.values():
            if g.pgid == pgid and g.state == "R":
                p = g.parent
                if p is not None and p.pgid != pgid and p.sid == g.sid:
                    return False
        return True

    # --- terminal foreground group (host stdio tty) ---
    def foreground_pgid(self, t: Task) -> int:
        return self.fg_pgid

    def set_foreground_pgid(self, pgid: int) -> None:
        self.fg_pgid = pgid

    # --- logging ---
    def _log_debug(self, msg: str) -> None:
        if self.debug_log is not None:
            self.debug_log.write(msg + "\n")
            self.debug_log.flush()

    def path_context(self, t: Task) -> PathContext:
        fs = t.tg.fs
        return PathContext(fs.root, fs.cwd, t.tg.creds, t)
