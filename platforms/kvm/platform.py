"""The KVM platform: the sentry's guest threads run on a vCPU of one VM.

KvmThread gives the sentry the GuestThread interface the ptrace platform
gives (registers with user_regs_struct names, memory access, inject() of
the mmap family), so the syscall table, VFS, memory manager and loader run
unchanged; the kernel drives it through its own loop (sentry/kvm_loop.py).

What exists: one process with one thread, static programs (no vDSO, no
image store or file cache: the loader and mmap copy file bytes in). What
does not (fork, clone, exec into a new image, signal handlers) ends the
sandbox with KvmUnsupported naming it, never a hang.
"""
from __future__ import annotations

import errno
import itertools

from platforms import platform as P
from platforms.kvm.addrspace import AddressSpace, PagePool
from platforms.kvm.events import Fault, Syscall
from platforms.kvm.layout import SystemLayout
from platforms.kvm.vm import Vm

DEFAULT_MEM = 2 << 30          # guest RAM (a sparse memfd: only touched pages cost)
PAGE_TABLE_POOL = 4096         # pages of page tables (16 MiB of guest RAM set aside)
ENOSYS_RESULT = -errno.ENOSYS & 0xFFFFFFFFFFFFFFFF
# Flags a program may change (CF PF AF ZF SF TF DF OF AC ID); IF and bit 1 stay set.
RFLAGS_USER, RFLAGS_FIXED = 0x240DD5, 0x202
# Host pids are keys of the kernel's tables. A KVM thread has no host
# process: its id is past the host's largest pid (2^22), so no host call
# the kernel makes with it (kill, /proc/pid, CPU clocks) can reach a real
# process, and small enough for a CPU clock id (~pid << 3 in an int).
_FAKE_PIDS = itertools.count(1 << 27)

REG_NAMES = ("r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx", "rdx",
             "rsi", "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss", "fs_base", "gs_base",
             "ds", "es", "fs", "gs")
_GENERAL = ("r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx", "rdx",
            "rsi", "rdi")
_MASK = 0xFFFFFFFFFFFFFFFF


class KvmUnsupported(P.Unsupported):
    """The program needs something the KVM platform does not have."""


class Regs:
    """user_regs_struct's fields as plain attributes."""
    __slots__ = REG_NAMES

    def __init__(self, **values):
        for name in REG_NAMES:
            setattr(self, name, values.get(name, 0))


class KvmThread(P.GuestThread):
    """The one thread of the VM's one process. `stop` is the event it sits
    at: None (not run yet, or resumed by set_regs), a Syscall (waiting for
    its answer) or a Fault (the vCPU is in its ring-0 handler)."""

    def __init__(self, platform: "KvmPlatform"):
        self.platform = platform
        self.pid = next(_FAKE_PIDS)
        self.cpu = platform.vm.create_vcpu()
        self.space = AddressSpace(platform.vm, platform.pool)
        self.stop = None
        self.fs_base = self.gs_base = 0

    # --- registers ---
    def get_regs(self) -> Regs:
        c = self.cpu.regs
        r = Regs(**{n: getattr(c, n) for n in _GENERAL}, rip=c.rip, rsp=c.rsp, eflags=c.rflags,
                 orig_rax=_MASK, cs=0x33, ss=0x2B, fs_base=self.fs_base, gs_base=self.gs_base)
        stop = self.stop
        if type(stop) is Syscall:
            # as ptrace shows a syscall stop: rip after the instruction,
            # the number in orig_rax, -ENOSYS in rax
            r.rip, r.rsp, r.eflags, r.orig_rax, r.rax = stop.rip, stop.rsp, c.r11, stop.nr, ENOSYS_RESULT
        elif type(stop) is Fault:
            r.rip, r.rsp, r.eflags = stop.rip, stop.rsp, stop.rflags
        return r

    def set_regs(self, regs) -> None:
        values = {n: getattr(regs, n) & _MASK for n in _GENERAL}
        flags = (regs.eflags & RFLAGS_USER) | RFLAGS_FIXED
        stop = self.stop
        if type(stop) is Fault:
            # the interrupted state lives in the ring-0 frame
            self.cpu.set_regs(**values)
            self.cpu.set_fault_return(rip=regs.rip, rsp=regs.rsp, rflags=flags)
        else:
            if type(stop) is Syscall:
                self.cpu.answer(values["rax"])  # completes the stub's read; then rip is ours again
                self.stop = None
            self.cpu.set_regs(**values, rip=regs.rip, rsp=regs.rsp, rflags=flags)
        if (regs.fs_base, regs.gs_base) != (self.fs_base, self.gs_base):
            s = self.cpu.get_sregs()
            s.fs.base, s.gs.base = regs.fs_base, regs.gs_base
            self.cpu.set_sregs(s)
            self.fs_base, self.gs_base = regs.fs_base, regs.gs_base

    def copy_regs(self, regs) -> Regs:
        return Regs(**{n: getattr(regs, n) for n in REG_NAMES})

    # --- memory ---
    def read(self, addr: int, size: int) -> bytes:
        return self.space.read(addr, size) if size else b""

    def write(self, addr: int, data: bytes) -> None:
        if data:
            self.space.write(addr, data, force=False)

    def force_write(self, addr: int, data: bytes) -> None:
        if data:
            self.space.write(addr, data, force=True)

    def read_cstr(self, addr: int, limit: int = 4096) -> bytes:
        s = self.space.read_cstr(addr, limit)
        if len(s) >= limit:
            raise OSError(errno.ENAMETOOLONG, "string too long")
        return s

    def inject(self, nr: int, *args: int, regs=None) -> int:
        r = self.space.inject(nr, args)
        if r == -errno.ENOSYS:
            raise KvmUnsupported(f"the sentry asked the kvm platform for host syscall {nr}, which it lacks")
        return r

    def forget_mm(self) -> None:
        pass

    # --- display (the host shows no process for a vCPU) ---
    def show_as(self, comm, regs, host_stack, args, env, brk):
        return 0, 0

    def set_name(self, addr: int) -> int:
        return 0

    # --- what the platform lacks ---
    def exec_stub(self, regs=None) -> int:
        raise KvmUnsupported("execve (a new program image in a running sandbox)")

    # --- running ---
    def resume(self, set_rax: int, rax: int, timeout: float):
        """Run until the next event (kvm events.py), at most timeout seconds."""
        stop = self.stop
        if type(stop) is Syscall:
            self.cpu.answer(rax if set_rax else ENOSYS_RESULT)
        elif set_rax:
            self.cpu.set_regs(rax=rax)
        self.stop = event = self.cpu.run(timeout)
        return event

    def kill(self) -> None:
        self.platform.forget(self.pid)


class KvmPlatform(P.Platform):
    name = "kvm"
    reserved = []       # the system area lies in the upper half, outside every program's range
    file_cache = None   # see addrspace.py: file bytes are copied into guest RAM
    images = None

    def __init__(self, mem_size: int = DEFAULT_MEM, time_limit: float | None = None):
        self.vm = Vm(mem_size, layout=SystemLayout(pt_pool_pages=PAGE_TABLE_POOL))
        self.pool = PagePool(self.vm)
        self.threads: dict[int, KvmThread] = {}
        self.time_limit = time_limit   # seconds for the whole run (None: no limit)

    def new_process(self) -> KvmThread:
        if self.threads:
            raise KvmUnsupported("a second process (one process per sandbox)")
        t = KvmThread(self)
        self.threads[t.pid] = t
        return t

    def forget(self, pid: int) -> None:
        t = self.threads.pop(pid, None)
        if t is not None:
            t.space.release()

    def close(self) -> None:
        self.threads.clear()
        if self.vm is not None:
            self.vm.close()
            self.vm = None
