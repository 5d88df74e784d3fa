"""The ptrace platform: guests are host processes stopped by PTRACE_SYSEMU
at every syscall, which never runs on the host.

Each guest host process starts from pt_spawn (fresh user/pid/mount/net/
ipc/uts namespaces, an empty read-only root, no host fds but the stub and
the image store (images.py), no_new_privs, a seccomp filter allowing only
what the sentry injects) and execs the stub. The sentry and every guest thread share one CPU: a ptrace
stop that has to wake another CPU costs five times more here.
"""
from __future__ import annotations

import errno
import os
import struct
import time

from .. import platform as P
from ._ptrace import ffi, lib
from sentry.mm.filecache import FileCache

from .images import ImageStore
from .stub import GADGET, NULLS, STUB_BASE, STUB_SIZE, stub_memfd

SYSCALL_STOP = 0x80 | 5  # SIGTRAP | 0x80 with PTRACE_O_TRACESYSGOOD
SYSCALL_STOP_STATUS = SYSCALL_STOP << 8 | 0x7F  # its wait status (low 16 bits)
SSI_PID = struct.Struct("<I")  # struct signalfd_siginfo's ssi_pid, at offset 12
OPTIONS = (lib.PTRACE_O_TRACESYSGOOD | lib.PTRACE_O_EXITKILL | lib.PTRACE_O_TRACEEXEC
           | lib.PTRACE_O_TRACECLONE | lib.PTRACE_O_TRACEFORK | lib.PTRACE_O_TRACEVFORK)

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x20000, 0x4000000, 0x8000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
ALL_NAMESPACES = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET

# The host syscalls the sentry injects into guests: the seccomp filter
# allows these and nothing else.
NR_MMAP, NR_MPROTECT, NR_MUNMAP, NR_MREMAP, NR_MADVISE = 9, 10, 11, 25, 28
NR_CLONE, NR_EXIT, NR_EXIT_GROUP, NR_EXECVEAT = 56, 60, 231, 322
NR_MSYNC, NR_MINCORE, NR_MLOCK, NR_MUNLOCK = 26, 27, 149, 150
INJECTABLE = (NR_MMAP, NR_MPROTECT, NR_MUNMAP, NR_MREMAP, NR_MADVISE, NR_MSYNC, NR_MINCORE,
              NR_MLOCK, NR_MUNLOCK, NR_CLONE, NR_EXIT, NR_EXIT_GROUP, NR_EXECVEAT)
AT_EMPTY_PATH = 0x1000
# prctl is allowed by the filter (cffi_build/ptrace_build.py) for these
# options only, not by number: show_as's calls.
NR_PRCTL, PR_SET_NAME, PR_SET_MM, PR_SET_MM_MAP = 157, 15, 35, 14
PRCTL_MM_MAP = struct.Struct("<11QQII")  # struct prctl_mm_map: 11 bounds, auxv, auxv_size, exe_fd


class GuestGone(Exception):
    """The host thread died (killed) while the sentry worked on it."""

    def __init__(self, pid: int, status: int):
        super().__init__(pid, status)
        self.pid = pid
        self.status = status


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _check(ret: int, what: str) -> int:
    if ret < 0:
        raise OSError(-ret, f"{what}: {os.strerror(-ret)}")
    return ret


class PtraceThread(P.GuestThread):
    __slots__ = ("pid", "platform", "_mem_fd")

    def __init__(self, platform: "PtracePlatform", pid: int):
        self.platform = platform
        self.pid = pid
        self._mem_fd = -1  # /proc/pid/mem, for writing read-only pages

    # --- registers ---
    def get_regs(self):
        regs = ffi.new("struct user_regs_struct *")
        _check(lib.pt_getregs(self.pid, regs), "PTRACE_GETREGS")
        return regs

    def set_regs(self, regs) -> None:
        _check(lib.pt_setregs(self.pid, regs), "PTRACE_SETREGS")

    def copy_regs(self, regs):
        new = ffi.new("struct user_regs_struct *")
        new[0] = regs[0]
        return new

    # --- memory ---
    def _mem(self) -> int:
        if self._mem_fd < 0:
            self._mem_fd = os.open(f"/proc/{self.pid}/mem", os.O_RDWR | os.O_CLOEXEC)
        return self._mem_fd

    # Reads go through /proc/pid/mem (faster here than process_vm_readv);
    # writes through process_vm_writev, which honours page protections, so
    # a guest buffer it may not write gives EFAULT as on Linux.
    def read(self, addr: int, size: int) -> bytes:
        if size == 0:
            return b""
        buf = self.platform.str_buf if size <= 4096 else ffi.new("char[]", size)
        n = lib.pt_mem_read(self._mem(), addr, buf, size)
        if n < 0:
            raise OSError(errno.EFAULT, "bad address")
        if n < size:
            raise OSError(errno.EFAULT, "bad address")
        return ffi.buffer(buf, n)[:]

    def write(self, addr: int, data: bytes) -> None:
        if not data:
            return
        # process_vm_writev honours page protections: a guest handing a
        # read-only buffer to read(2) gets EFAULT, as on Linux. (The loader
        # and mmap fill read-only pages with force_write.)
        n = lib.pt_write(self.pid, addr, data, len(data))
        if n != len(data):
            raise OSError(errno.EFAULT, "bad address")

    def force_write(self, addr: int, data: bytes) -> None:
        try:
            n = os.pwrite(self._mem(), data, addr)
        except OSError:
            raise OSError(errno.EFAULT, "bad address") from None
        if n != len(data):
            raise OSError(errno.EFAULT, "bad address")

    def forget_mm(self) -> None:
        """After exec the old /proc/pid/mem names the old address space."""
        if self._mem_fd >= 0:
            os.close(self._mem_fd)
            self._mem_fd = -1

    def read_cstr(self, addr: int, limit: int = 4096) -> bytes:
        buf = self.platform.str_buf if limit <= 4096 else ffi.new("char[]", limit)
        n = lib.pt_mem_read_cstr(self._mem(), addr, buf, limit)
        if n == -1:
            raise OSError(errno.ENAMETOOLONG, "string too long")
        if n < 0:
            raise OSError(errno.EFAULT, "bad address")
        return ffi.buffer(buf, n)[:]

    # --- running host syscalls in the guest ---
    def inject(self, nr: int, *args: int, regs=None) -> int:
        """Run host syscall nr at the stub's `syscall; int3` gadget. The
        thread must be stopped; its registers are restored afterwards."""
        saved = regs if regs is not None else self.get_regs()
        work = self.copy_regs(saved)
        work.rax = nr
        work.orig_rax = 0xFFFFFFFFFFFFFFFF  # not in a syscall: no restart games
        work.rip = GADGET
        for name, value in zip(("rdi", "rsi", "rdx", "r10", "r8", "r9"), args):
            setattr(work, name, value & 0xFFFFFFFFFFFFFFFF)
        self.set_regs(work)
        _check(lib.pt_request(lib.PTRACE_CONT, self.pid, 0, 0), "PTRACE_CONT")
        result = self._finish_injection(nr)
        self.set_regs(saved)
        return result

    def _finish_injection(self, nr: int) -> int:
        """Wait for the gadget's int3; return the syscall's rax."""
        while True:
            status = self.platform.wait_for(self.pid)
            sig = (status >> 8) & 0xFF
            event = status >> 16
            if sig == 5 and event == 0:
                regs = self.get_regs()
                return _signed(regs.rax)
            if event in (lib.PTRACE_EVENT_FORK, lib.PTRACE_EVENT_VFORK, lib.PTRACE_EVENT_CLONE):
                self.platform.note_new_child(self.pid, lib.pt_geteventmsg(self.pid))
                sig = 0
            elif sig == 5 or sig == 19:  # stray trap/stop while injecting
                sig = 0
            _check(lib.pt_request(lib.PTRACE_CONT, self.pid, 0, sig), "PTRACE_CONT")

    def show_as(self, comm: bytes, regs, host_stack: int, args: tuple, env: tuple, brk: int) -> tuple[int, int]:
        """Make the host's ps (docker top) show this freshly loaded process
        as the guest sees it: comm by PR_SET_NAME, and argv/environment
        (/proc/pid/cmdline, environ) by PR_SET_MM_MAP pointing the host mm
        at the guest's strings. regs: the registers the guest starts with
        (restored after); the call arguments are written below its stack
        pointer (past the red zone), then zeroed. host_stack: an address in
        the stub's stack, which the host's maps keep naming [stack] (the
        sentry hides that one from the guest). args, env: (start, end) of
        the strings, or (0, 0). Display only: returns both results (0 or
        -errno) and never raises for them."""
        sp = regs.rsp
        scratch = (sp - 256) & ~15
        args = args if args[0] else (sp, sp)  # every bound must be a user address
        env = env if env[0] else (args[1], args[1])
        mm_map = PRCTL_MM_MAP.pack(
            STUB_BASE, STUB_BASE + STUB_SIZE, STUB_BASE, STUB_BASE + STUB_SIZE,  # code, data: the stub's
            brk, brk, host_stack, args[0], args[1], env[0], env[1],
            0, 0, 0xFFFFFFFF)  # auxv unchanged (the sentry reads the vdso from it), no exe_fd
        block = comm[:15].ljust(16, b"\0") + mm_map
        self.write(scratch, block)
        named = self.inject(NR_PRCTL, PR_SET_NAME, scratch, regs=regs)
        mapped = self.inject(NR_PRCTL, PR_SET_MM, PR_SET_MM_MAP, scratch + 16, PRCTL_MM_MAP.size, regs=regs)
        self.write(scratch, bytes(len(block)))  # the guest's fresh stack reads as zeros
        return named, mapped

    def set_name(self, addr: int) -> int:
        """The guest renamed this thread (prctl PR_SET_NAME) with the string
        at addr: the host's comm follows (display only; 0 or -errno)."""
        return self.inject(NR_PRCTL, PR_SET_NAME, addr)

    def exec_stub(self, regs=None) -> int:
        """Replace the address space with a fresh stub one. Returns 0 when
        the thread now sits at the stub's entry (exec stop), or -errno."""
        saved = regs if regs is not None else self.get_regs()
        work = self.copy_regs(saved)
        work.rax = NR_EXECVEAT
        work.orig_rax = 0xFFFFFFFFFFFFFFFF
        work.rip = GADGET
        work.rdi, work.rsi, work.rdx, work.r10, work.r8 = 3, NULLS, NULLS, NULLS, AT_EMPTY_PATH
        self.set_regs(work)
        _check(lib.pt_request(lib.PTRACE_CONT, self.pid, 0, 0), "PTRACE_CONT")
        while True:
            status = self.platform.wait_for(self.pid)
            sig, event = (status >> 8) & 0xFF, status >> 16
            if event == lib.PTRACE_EVENT_EXEC:
                self.forget_mm()
                self.platform.settle_after_exec(self.pid)
                return 0
            if sig == 5 and event == 0:  # int3: execveat failed
                rax = _signed(self.get_regs().rax)
                self.set_regs(saved)
                return rax
            _check(lib.pt_request(lib.PTRACE_CONT, self.pid, 0, 0), "PTRACE_CONT")

    def kill(self) -> None:
        lib.pt_kill(self.pid, 9)


class PtracePlatform(P.Platform):
    name = "ptrace"
    reserved = [(STUB_BASE, STUB_BASE + STUB_SIZE)]

    def __init__(self, cpu: int | None = None, namespaces: int = ALL_NAMESPACES):
        self.cpu = cpu
        self.namespaces = namespaces
        self.stub_fd = stub_memfd()
        self.images = ImageStore()
        self.file_cache = FileCache()
        self.allow = ffi.new("unsigned short[]", list(INJECTABLE))
        # Events for pids seen by targeted waits or before they were known.
        self.pending: dict[int, list[int]] = {}
        self.new_children: dict[int, int] = {}  # child host pid -> parent host pid
        self.out = ffi.new("unsigned long[10]")
        self.status = ffi.new("int *")
        self.sigchld_fd = _check(lib.pt_sigchld_fd(), "signalfd")
        # Which stop came first (see take_first): the host tid the SIGCHLD
        # read since the last sweep named; 0: none yet; -1: a stop was
        # taken since the last read (not by a sweep), so the SIGCHLD
        # pending may be its own and says nothing.
        self.first_stop = -1
        self.stop_info: dict[int, tuple] = {}  # pid -> syscall info of its queued syscall stop
        self.status2 = ffi.new("int *")  # a sweep's stops land here
        self.out2 = ffi.new("unsigned long[10]")
        self.reaped = False  # step's event was taken from the host now (not from self.pending)
        self.threads: dict[int, PtraceThread] = {}
        self.last_new_child = 0
        self.str_buf = ffi.new("char[]", 4096)  # reused by read_cstr (one thread)
        self.spawned: set[int] = set()  # pid-namespace inits we started

    # --- process creation ---
    def new_process(self) -> PtraceThread:
        pid = _check(lib.pt_spawn(self.stub_fd, self.images.fd, self.file_cache.fd, self.namespaces, -1 if self.cpu is None else self.cpu,
                                  self.allow, len(INJECTABLE)), "spawn")
        status = self.wait_for(pid)
        if (status & 0xFF) != 0x7F:
            raise OSError(errno.ECHILD, f"guest failed to start (wait status {status:#x})")
        _check(lib.pt_request(lib.PTRACE_SETOPTIONS, pid, 0, OPTIONS), "PTRACE_SETOPTIONS")
        _check(lib.pt_request(lib.PTRACE_CONT, pid, 0, 0), "PTRACE_CONT")
        status = self.wait_for(pid)
        if (status >> 16) != lib.PTRACE_EVENT_EXEC:
            code = (status >> 8) & 0xFF if (status & 0x7F) == 0 else status
            raise OSError(errno.ECHILD, f"guest failed to exec the stub (status {status:#x}, step {code})")
        self.spawned.add(pid)
        self.settle_after_exec(pid)
        thread = PtraceThread(self, pid)
        self.threads[pid] = thread
        return thread

    def settle_after_exec(self, pid: int) -> None:
        """At the exec event stop the kernel has yet to store execve's
        return value into rax; let the stub run to its int3 so registers
        set afterwards stick."""
        _check(lib.pt_request(lib.PTRACE_CONT, pid, 0, 0), "PTRACE_CONT")
        while True:
            status = self.wait_for(pid)
            if (status >> 8) & 0xFF == 5 and status >> 16 == 0:
                return
            _check(lib.pt_request(lib.PTRACE_CONT, pid, 0, 0), "PTRACE_CONT")

    def thread(self, pid: int) -> PtraceThread:
        t = PtraceThread(self, pid)
        self.threads[pid] = t
        return t

    def note_new_child(self, parent: int, child: int) -> None:
        """An injected clone made child (a host pid: the clone's own return
        value is the pid in the guest's namespace, meaningless here)."""
        self.new_children[child] = parent
        self.last_new_child = child

    def wait_child_start(self, child: int) -> None:
        """A just-cloned host child starts in a ptrace stop (SIGSTOP)."""
        status = self.wait_for(child)
        if (status & 0xFF) != 0x7F:
            raise GuestGone(child, status)

    # --- waiting ---
    def wait_for(self, pid: int) -> int:
        """Wait for the next event of one host thread (other threads'
        events stay queued in the kernel)."""
        q = self.pending.get(pid)
        if q:
            status = q.pop(0)
            if not q:
                del self.pending[pid]
            self.stop_info.pop(pid, None)
        else:
            while True:
                try:
                    _, status = os.waitpid(pid, os.__dict__.get("__WALL", 0x40000000))
                    break
                except ChildProcessError:
                    raise GuestGone(pid, 0x9) from None
                except InterruptedError:
                    continue
            self.took_stop()
        if (status & 0x7F) != 0x7F and (status & 0xFF) != 0x7F:
            # exited or killed while we were driving it
            self.pending.setdefault(pid, []).insert(0, status)
            raise GuestGone(pid, status)
        return status

    def step(self, pid: int, set_rax: int, rax: int, req: int, sig: int, block: bool) -> int:
        """Resume pid (if > 0), then wait for any event. Returns the pid
        that reported, 0 if none (non-blocking), with self.status[0] and,
        for syscall stops, self.out filled."""
        if self.pending:
            if pid > 0:
                self.resume(pid, set_rax, rax, req, sig)
            wpid = next(iter(self.pending))
            q = self.pending[wpid]
            self.status[0] = q.pop(0)
            if not q:
                del self.pending[wpid]
            if self.status[0] & 0xFFFF == SYSCALL_STOP_STATUS and wpid in self.stop_info:
                self.out[0:10] = self.stop_info.pop(wpid)  # a syscall stop a sweep queued
            self.reaped = False
            return wpid
        r = lib.pt_step(pid, set_rax, rax, req, sig, 1 if block else 0, self.status, self.out)
        if r == -errno.EINTR:
            return 0
        self.reaped = r > 0
        return _check(r, "ptrace step")

    # --- the order of stops ---
    # waitpid(-1) reports a thread group leader (a child of ours) before
    # the other threads (tracees), and newer tracees before older ones,
    # whenever they stopped: on the one CPU, a thread could stop in a call
    # and wait while the leader ran on and had a later call served first.
    # A SIGCHLD goes with every stop and is not queued again while one is
    # pending, so a read names the first stop since the previous read.
    def took_stop(self) -> None:
        """A stop was taken outside a sweep: the SIGCHLD pending may be
        its own."""
        self.first_stop = -1

    def read_sigchld(self) -> None:
        """Drain the SIGCHLD signalfd, keeping the first stopper it names
        when that can be trusted."""
        try:
            raw = os.read(self.sigchld_fd, 128)
        except (BlockingIOError, InterruptedError):
            raw = b""
        if self.first_stop < 0:
            self.first_stop = 0
        elif raw and not self.first_stop:
            self.first_stop = SSI_PID.unpack_from(raw, 12)[0]

    def take_first(self, wpid: int) -> int:
        """wpid's stop was just taken (self.status, self.out) while other
        guest threads ran: take the stops already waiting too and return
        the pid of the one that came first, its stop now in self.status
        and self.out; the others wait in self.pending, in the kernel's
        order, ahead of anything later."""
        self.read_sigchld()  # before the sweep: a stop after it is the next read's
        first, self.first_stop = self.first_stop, 0
        taken = []
        while (r := lib.pt_step(0, 0, 0, 0, 0, 0, self.status2, self.out2)) > 0:
            taken.append((r, self.status2[0], tuple(self.out2[0:10])))
        if not taken:
            return wpid
        # A stop the sweep took may have come after the read: its SIGCHLD
        # is stale; one not taken is the first of those still to come.
        self.read_sigchld()
        if any(e[0] == self.first_stop for e in taken):
            self.first_stop = 0
        taken.insert(0, (wpid, self.status[0], tuple(self.out[0:10])))
        pick = next((i for i, e in enumerate(taken) if e[0] == first), 0)
        pid, self.status[0], self.out[0:10] = taken.pop(pick)
        for other, status, info in taken:
            self.pending.setdefault(other, []).append(status)
            if status & 0xFFFF == SYSCALL_STOP_STATUS:
                self.stop_info[other] = info
        return pid

    def forget(self, pid: int) -> None:
        """pid's task is gone for the sentry: stops queued for it are
        void (after a non-leader's exec its pid may name another)."""
        self.pending.pop(pid, None)
        self.stop_info.pop(pid, None)

    def resume(self, pid: int, set_rax: int, rax: int, req: int, sig: int) -> None:
        _check(lib.pt_resume(pid, set_rax, rax, req, sig), "ptrace resume")

    def close(self) -> None:
        pids = set(self.threads) | set(self.new_children)
        for pid in pids:
            lib.pt_kill(pid, 9)
        # The namespace's init exits only after every other process in it
        # is reaped, and as their tracer we must reap them first.
        pids = sorted(pids, key=lambda p: p in self.spawned)
        deadline = time.monotonic() + 5
        for pid in pids:  # reap: SIGKILL ends them at once
            while time.monotonic() < deadline:
                try:
                    got, status = os.waitpid(pid, 0x40000000 | os.WNOHANG)
                except ChildProcessError:
                    break
                if got == 0:
                    time.sleep(0.001)
                    continue
                if (status & 0xFF) != 0x7F:
                    break
        self.threads.clear()
        self.new_children.clear()
        for fd in (self.stub_fd, self.sigchld_fd):
            try:
                os.close(fd)
            except OSError:
                pass
        self.stub_fd = self.sigchld_fd = -1  # closed once: a second close() must not hit reused numbers
        self.images.close()
        self.file_cache.close()
