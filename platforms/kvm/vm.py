"""A KVM virtual machine whose vCPU runs guest code in ring 3 of long mode
and stops at every syscall and exception for the sentry to answer.

Guest physical memory is one memfd, mapped MAP_SHARED here (the sentry
reads and writes it directly) and registered as KVM memory slot 0. The
system structures (page tables, GDT/TSS, IDT, stubs) are laid out by
layout.py. On this host a ring-3 `syscall` stays in ring 3 (kvm-pvm, see
docs/kvm.md), so LSTAR points at a ring-3 stub whose MMIO read is the exit:
the sentry answers by completing that read with the result. Exceptions go
through ring-0 handlers whose MMIO write names the vector.

Every KVM_RUN has a deadline enforced by a watchdog thread in the C helper,
so a guest can stall the sentry for at most its timeout.
"""
import errno
import os
import time

from platforms.kvm import _kvm
from platforms.kvm.events import (
    BudgetExhausted, Fault, Halt, Shutdown, Syscall, Timeout, Unexpected,
)
from platforms.kvm.layout import (
    EXCEPTION_NAMES, GDT_LIMIT, NUM_VECTORS, PAGE, TSS_SEL, TSS_SIZE, USER32_CS, USER_CS, USER_DS,
    KERNEL_CS, PageTables, SystemLayout, write_system_area,
)
from platforms.kvm.memory import GuestMemory

ffi, lib = _kvm.ffi, _kvm.lib

KVM_PATH = "/dev/kvm"
REQUIRED_CAPS = {
    "KVM_CAP_USER_MEMORY": lib.KVM_CAP_USER_MEMORY,
    "KVM_CAP_SYNC_REGS": lib.KVM_CAP_SYNC_REGS,
    "KVM_CAP_IMMEDIATE_EXIT": lib.KVM_CAP_IMMEDIATE_EXIT,
    "KVM_CAP_EXT_CPUID": lib.KVM_CAP_EXT_CPUID,
    "KVM_CAP_XCRS": lib.KVM_CAP_XCRS,   # the vCPU's XCR0 is set with KVM_SET_XCRS
}

# Control registers and MSRs (Intel SDM vol. 3A 2.5, vol. 4).
CR0_PE, CR0_MP, CR0_ET, CR0_NE, CR0_WP, CR0_AM, CR0_PG = 1, 2, 1 << 4, 1 << 5, 1 << 16, 1 << 18, 1 << 31
CR4_PAE, CR4_OSFXSR, CR4_OSXMMEXCPT, CR4_OSXSAVE = 1 << 5, 1 << 9, 1 << 10, 1 << 18
EFER_SCE, EFER_LME, EFER_LMA, EFER_NXE = 1, 1 << 8, 1 << 10, 1 << 11
MSR_STAR, MSR_LSTAR, MSR_CSTAR, MSR_SFMASK = 0xC0000081, 0xC0000082, 0xC0000083, 0xC0000084
MSR_KERNEL_GS_BASE = 0xC0000102
# XCR0 state components a user program may use: x87, SSE, AVX, AVX-512.
XCR0_USER = 0b1110_0111
USER_RFLAGS = 0x202  # IF set, as Linux starts a program

_MASK64 = (1 << 64) - 1
KV_SYSCALL = lib.KV_SYSCALL


class KvmError(OSError):
    """A /dev/kvm operation failed; the message names it and the errno."""

    def __init__(self, op: str, err: int):
        super().__init__(err, f"{op}: {os.strerror(err)} (errno {err})")
        self.op = op


class KvmUnusable(RuntimeError):
    """/dev/kvm is there but lacks what this VM needs."""


def _check(op: str, r: int) -> int:
    if r < 0:
        raise KvmError(op, -r)
    return r


# The device and the VM -----------------------------------------------------

class Kvm:
    """An open /dev/kvm that has what this VM needs."""

    def __init__(self, path: str = KVM_PATH):
        try:
            self.fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except OSError as e:
            raise KvmError(f"open {path}", e.errno) from None
        try:
            version = _check("KVM_GET_API_VERSION", lib.kv_ioctl_int(self.fd, lib.KVM_GET_API_VERSION, 0))
            if version != lib.KVM_API_VERSION:
                raise KvmUnusable(f"KVM API version {version}, need {lib.KVM_API_VERSION}")
            for name, cap in REQUIRED_CAPS.items():
                if _check(f"KVM_CHECK_EXTENSION({name})",
                          lib.kv_ioctl_int(self.fd, lib.KVM_CHECK_EXTENSION, cap)) <= 0:
                    raise KvmUnusable(f"{path} lacks {name}")
            self.vcpu_mmap_size = _check("KVM_GET_VCPU_MMAP_SIZE",
                                         lib.kv_ioctl_int(self.fd, lib.KVM_GET_VCPU_MMAP_SIZE, 0))
        except BaseException:
            os.close(self.fd)
            raise

    def supported_cpuid(self):
        """KVM_GET_SUPPORTED_CPUID as a struct kvm_cpuid2 * (grown on E2BIG)."""
        n = 128
        while True:
            buf = ffi.new("struct kvm_cpuid2 *", {"nent": n, "entries": n})
            r = lib.kv_ioctl(self.fd, lib.KVM_GET_SUPPORTED_CPUID, buf)
            if r == -errno.E2BIG and n < 4096:
                n *= 2
                continue
            _check("KVM_GET_SUPPORTED_CPUID", r)
            return buf

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Vm:
    """A VM with guest memory, page tables and the system area in place.
    Map guest pages with map()/load(), then create_vcpu()."""

    def __init__(self, mem_size: int = 64 << 20, *, layout: SystemLayout | None = None,
                 path: str = KVM_PATH):
        self.layout = layout or SystemLayout()
        if not self.layout.end_pa <= mem_size <= self.layout.sys_gpa:
            raise ValueError(f"guest memory must hold the system area ({self.layout.end_pa:#x} bytes) "
                             f"and end below {self.layout.sys_gpa:#x}")
        self.kvm = Kvm(path)
        self.fd = -1
        self.mem = None
        self.vcpus = []
        try:
            self.fd = _check("KVM_CREATE_VM", lib.kv_ioctl_int(self.kvm.fd, lib.KVM_CREATE_VM, 0))
            self.mem = GuestMemory(mem_size)
            region = ffi.new("struct kvm_userspace_memory_region *", {
                "slot": 0, "flags": 0, "guest_phys_addr": 0, "memory_size": mem_size,
                "userspace_addr": self.mem.host_addr})
            _check("KVM_SET_USER_MEMORY_REGION", lib.kv_ioctl(self.fd, lib.KVM_SET_USER_MEMORY_REGION, region))
            self._next_table = self.layout.pt_pool_pa
            self.tables = PageTables(self.mem.view, self._alloc_table)
            write_system_area(self.mem.view, self.layout, self.tables)
            self._next_free = self.layout.end_pa
        except BaseException:
            self.close()
            raise

    def _alloc_table(self) -> int:
        pa = self._next_table
        if pa >= self.layout.end_pa:
            raise MemoryError("page-table pool exhausted")
        self._next_table += PAGE
        self.mem.view[pa:pa + PAGE] = bytes(PAGE)
        return pa

    def alloc(self, length: int) -> int:
        """Physical pages for the guest program (a bump allocator)."""
        length = -(-length // PAGE) * PAGE
        pa = self._next_free
        if pa + length > self.mem.size:
            raise MemoryError(f"guest memory full ({self.mem.size:#x} bytes)")
        self._next_free += length
        return pa

    def map(self, va: int, pa: int, length: int, prot: int, *, user: bool = True) -> None:
        self.tables.map(va, pa, length, prot, user=user)

    def unmap(self, va: int, length: int) -> None:
        for pa in self.tables.unmap(va, length):
            if pa < self.mem.size:
                self.mem.poke(pa, PAGE)

    def load(self, va: int, data: bytes, prot: int, *, length: int | None = None) -> int:
        """Fresh pages at va holding data (zero-filled to length); returns their pa."""
        length = -(-(length or len(data)) // PAGE) * PAGE
        pa = self.alloc(length)
        self.mem.view[pa:pa + length] = data.ljust(length, b"\0")
        self.map(va, pa, length, prot)
        return pa

    def _phys(self, va: int) -> int:
        t = self.tables.translate(va)
        if t is None or t[0] >= self.mem.size:
            raise ValueError(f"guest address {va:#x} is not mapped to RAM")
        return t[0]

    def read_virt(self, va: int, n: int) -> bytes:
        out = bytearray()
        while n > 0:
            chunk = min(n, PAGE - va % PAGE)
            pa = self._phys(va)
            out += self.mem.view[pa:pa + chunk]
            va, n = va + chunk, n - chunk
        return bytes(out)

    def write_virt(self, va: int, data: bytes) -> None:
        data = memoryview(data)
        while data:
            chunk = min(len(data), PAGE - va % PAGE)
            pa = self._phys(va)
            self.mem.view[pa:pa + chunk] = data[:chunk]
            va, data = va + chunk, data[chunk:]

    def create_vcpu(self) -> "Vcpu":
        vcpu = Vcpu(self, len(self.vcpus))
        self.vcpus.append(vcpu)
        return vcpu

    def close(self) -> None:
        for vcpu in self.vcpus:
            vcpu.close()
        self.vcpus = []
        if self.mem is not None:
            self.mem.close()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        self.kvm.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# The vCPU -------------------------------------------------------------------

# The C state of every vCPU whose watchdog runs: an unclosed Vcpu leaks
# rather than leaving the thread reading freed memory.
_guarded = set()

_REG_NAMES = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp", "r8", "r9", "r10", "r11",
              "r12", "r13", "r14", "r15", "rip", "rflags")


class Vcpu:
    """One vCPU in long mode, ring 3, ready to run from set_regs(rip=...)."""

    def __init__(self, vm: Vm, index: int):
        self.vm = vm
        self.fd = _check("KVM_CREATE_VCPU", lib.kv_ioctl_int(vm.fd, lib.KVM_CREATE_VCPU, index))
        self._run = ffi.NULL
        self._v = None
        try:
            err = ffi.new("int *")
            run = lib.kv_map_run(self.fd, vm.kvm.vcpu_mmap_size, err)
            if run == ffi.NULL:
                raise KvmError("mmap(vcpu run area)", err[0])
            self._run = run
            self._v = ffi.new("struct kv_vcpu *", {"fd": self.fd, "run": run,
                                                    "sys_gpa": vm.layout.sys_gpa,
                                                    "fault_gpa": vm.layout.fault_gpa})
            self._out = ffi.new("uint64_t[]", lib.KV_OUT_WORDS)
            self.regs = lib.kv_sync_regs(run)
            run.kvm_valid_regs = lib.KVM_SYNC_X86_REGS
            self._awaiting = False   # a syscall's MMIO read waits for its answer
            self._answer = None
            self._frame_rsp = None
            self._setup_cpuid()
            self._setup_sregs()
            self._setup_xcr0()
            self._setup_msrs()
            # Zeroed general registers, as a program starts on Linux.
            self.set_regs(**dict.fromkeys(_REG_NAMES, 0) | {"rflags": USER_RFLAGS})
            _check("watchdog thread", lib.kv_guard_start(self._v))
            _guarded.add(self._v)
        except BaseException:
            self.close()
            raise

    # set-up
    def _setup_cpuid(self) -> None:
        self.cpuid = self.vm.kvm.supported_cpuid()
        _check("KVM_SET_CPUID2", lib.kv_ioctl(self.fd, lib.KVM_SET_CPUID2, self.cpuid))

    def _cpuid(self, function: int, index: int = 0):
        for i in range(self.cpuid.nent):
            e = self.cpuid.entries[i]
            if e.function == function and e.index == index:
                return e
        return None

    def _has_xsave(self) -> bool:
        leaf1 = self._cpuid(1)
        return bool(leaf1 and leaf1.ecx & (1 << 26))

    def _setup_sregs(self) -> None:
        L = self.vm.layout
        s = self.get_sregs()
        code = {"base": 0, "limit": 0xFFFFFFFF, "selector": USER_CS | 3, "type": 11, "present": 1,
                "dpl": 3, "db": 0, "s": 1, "l": 1, "g": 1, "avl": 0, "unusable": 0}
        data = dict(code, selector=USER_DS | 3, type=3, db=1, l=0)
        s.cs = code
        s.ds = s.es = s.fs = s.gs = s.ss = data
        s.tr = {"base": L.tss_va, "limit": TSS_SIZE - 1, "selector": TSS_SEL, "type": 11, "present": 1,
                "dpl": 0, "db": 0, "s": 0, "l": 0, "g": 0, "avl": 0, "unusable": 0}
        s.ldt = {"base": 0, "limit": 0, "selector": 0, "type": 2, "present": 0, "unusable": 1}
        s.gdt.base, s.gdt.limit = L.va(L.GDT), GDT_LIMIT
        s.idt.base, s.idt.limit = L.va(L.IDT), NUM_VECTORS * 16 - 1
        s.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_AM | CR0_PG
        s.cr3 = self.vm.tables.root
        s.cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT | (CR4_OSXSAVE if self._has_xsave() else 0)
        s.efer = EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE
        self.set_sregs(s)

    def _setup_xcr0(self) -> None:
        leaf = self._cpuid(0xD, 0)
        if not self._has_xsave() or leaf is None:
            return
        xcrs = ffi.new("struct kvm_xcrs *")
        xcrs.nr_xcrs = 1
        xcrs.xcrs[0].xcr = 0
        xcrs.xcrs[0].value = (leaf.eax | leaf.edx << 32) & XCR0_USER
        _check("KVM_SET_XCRS", lib.kv_ioctl(self.fd, lib.KVM_SET_XCRS, xcrs))

    def _setup_msrs(self) -> None:
        L = self.vm.layout
        stub = L.va(L.STUB)
        values = {
            MSR_STAR: USER32_CS << 48 | KERNEL_CS << 32,
            MSR_LSTAR: stub,
            MSR_CSTAR: stub,
            MSR_SFMASK: 0,  # the stub relies on RFLAGS surviving `syscall`
            MSR_KERNEL_GS_BASE: 0,
        }
        msrs = ffi.new("struct kvm_msrs *", {"nmsrs": len(values), "entries": len(values)})
        for i, (index, value) in enumerate(values.items()):
            msrs.entries[i].index = index
            msrs.entries[i].data = value
        n = _check("KVM_SET_MSRS", lib.kv_ioctl(self.fd, lib.KVM_SET_MSRS, msrs))
        if n != len(values):
            raise KvmError(f"KVM_SET_MSRS (MSR {list(values)[n]:#x} refused)", 22)

    # registers
    def get_sregs(self):
        s = ffi.new("struct kvm_sregs *")
        _check("KVM_GET_SREGS", lib.kv_ioctl(self.fd, lib.KVM_GET_SREGS, s))
        return s

    def set_sregs(self, s) -> None:
        self._complete()
        _check("KVM_SET_SREGS", lib.kv_ioctl(self.fd, lib.KVM_SET_SREGS, s))

    def get_regs(self) -> dict:
        """General registers as of the last exit."""
        r = self.regs
        return {name: getattr(r, name) for name in _REG_NAMES}

    def set_regs(self, **values) -> None:
        """Change general registers; they reach the vCPU with the next run.
        After a Fault the vCPU sits in its ring-0 handler: general registers
        may change, but rip/rsp/rflags go through set_fault_return()."""
        self._complete()
        r = self.regs
        for name, value in values.items():
            setattr(r, name, value & _MASK64)
        self._run.kvm_dirty_regs |= lib.KVM_SYNC_X86_REGS

    def _complete(self) -> None:
        """Finish an exit's pending MMIO so guest state is consistent and
        registers may change (for a syscall read this needs its answer)."""
        if not self._awaiting:
            return
        if self._answer is None:
            raise RuntimeError("the guest's syscall has not been answered")
        _check("KVM_RUN (completing MMIO)", lib.kv_complete(self._v, 1, self._answer))
        self._awaiting, self._answer = False, None

    # running
    def answer(self, result: int) -> None:
        """The result of the syscall the last run() returned (lands in rax)."""
        if not self._awaiting:
            raise RuntimeError("no syscall is waiting for an answer")
        self._answer = result & _MASK64

    def run(self, timeout: float = 1.0):
        """Run the guest until its next syscall, exception or other exit, or
        until `timeout` seconds have passed (Timeout)."""
        has, answer = 0, 0
        if self._awaiting:
            if self._answer is None:
                raise RuntimeError("the guest's syscall has not been answered")
            has, answer = 1, self._answer
            self._awaiting, self._answer = False, None
        out = self._out
        left = timeout
        deadline = time.monotonic() + timeout
        while True:
            if left <= 0:
                return Timeout(timeout)
            code = lib.kv_step(self._v, int(left * 1e9), has, answer, out)
            if code == KV_SYSCALL:
                self._awaiting = True
                return Syscall(out[0], (out[1], out[2], out[3], out[4], out[5], out[6]), out[7], out[8])
            has = 0
            if code == lib.KV_INTR:
                # A stray signal; Python ran its handlers, go on.
                left = deadline - time.monotonic()
                continue
            if code == lib.KV_TIMEOUT:
                return Timeout(timeout)
            if code == lib.KV_FAULT:
                return self._fault(out[0], out[1])
            if code == lib.KV_HLT:
                return Halt(out[0])
            if code == lib.KV_SHUTDOWN:
                return Shutdown(out[0])
            if code < 0:
                raise KvmError("KVM_RUN", -code)
            kinds = {lib.KV_MMIO: "mmio", lib.KV_IO: "io", lib.KV_FAIL_ENTRY: "fail-entry",
                     lib.KV_INTERNAL: "internal-error", lib.KV_OTHER: "exit"}
            return Unexpected(kinds.get(code, str(code)), tuple(out[0:lib.KV_OUT_WORDS]))

    def serve(self, handler, *, max_exits: int = 1_000_000, timeout: float = 10.0):
        """Answer syscalls with handler(Syscall) -> result until the handler
        returns None (that Syscall is returned, unanswered), another event
        occurs, max_exits syscalls were served, or timeout seconds passed."""
        deadline = time.monotonic() + timeout
        for _ in range(max_exits):
            event = self.run(deadline - time.monotonic())
            if type(event) is not Syscall:
                return event
            result = handler(event)
            if result is None:
                return event
            self._answer = result & _MASK64
        return BudgetExhausted(max_exits)

    # exceptions
    def _frame_pa(self, rsp: int) -> int:
        L = self.vm.layout
        return L.pa(L.STACK) + (rsp - L.va(L.STACK))

    def _fault(self, vector: int, rsp: int) -> Fault:
        L = self.vm.layout
        if not L.va(L.STACK) <= rsp < L.stack_top:
            return Unexpected("fault-frame", (vector, rsp))
        words = self.vm.mem.read(self._frame_pa(rsp), L.stack_top - rsp)
        frame = [int.from_bytes(words[i:i + 8], "little") for i in range(0, len(words), 8)]
        error_code = frame.pop(0) if len(frame) == 6 else None
        self._frame_rsp = rsp + (8 if error_code is not None else 0)
        rip, cs, rflags, user_rsp = frame[0], frame[1], frame[2], frame[3]
        address = self.get_sregs().cr2 if vector == 14 else None
        return Fault(vector, EXCEPTION_NAMES.get(vector, f"vector {vector}"), error_code, address,
                     rip, user_rsp, rflags, cs)

    def set_fault_return(self, *, rip: int | None = None, rsp: int | None = None,
                         rflags: int | None = None) -> None:
        """Where the guest resumes after the last Fault (its iret frame)."""
        pa = self._frame_pa(self._frame_rsp)
        mem = self.vm.mem
        for offset, value in ((0, rip), (16, rflags), (24, rsp)):
            if value is not None:
                mem.write(pa + offset, (value & _MASK64).to_bytes(8, "little"))

    @property
    def kicks(self) -> int:
        """How often the watchdog had to stop a guest that overran."""
        return self._v.kicks if self._v is not None else 0

    def close(self) -> None:
        if self._v is not None:
            lib.kv_guard_stop(self._v)
            _guarded.discard(self._v)
            self._v = None
        if self._run != ffi.NULL:
            lib.kv_unmap_run(self._run, self.vm.kvm.vcpu_mmap_size)
            self._run = ffi.NULL
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
