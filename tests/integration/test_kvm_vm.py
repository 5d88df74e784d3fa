"""A KVM VM built from Python runs hand-written guest code in ring 3: its
syscalls come out as events the test answers like a sentry would, the
answers show up in the guest's registers, and faults, privileged
instructions and endless loops come back as events, never a hang.

Guest code is assembled with binutils' `as`; tests skip where it or a
usable /dev/kvm is missing."""
import errno
import mmap
import os
import signal
import shutil
import subprocess
import tempfile
import time

import pytest

from platforms.kvm.events import BudgetExhausted, Fault, Shutdown, Syscall, Timeout
from platforms.kvm.vm import Kvm, KvmError, KvmUnusable, Vm

R, W, X = mmap.PROT_READ, mmap.PROT_WRITE, mmap.PROT_EXEC
CODE, DATA, STACK_TOP = 0x40_0000, 0x60_0000, 0x80_0000
SYS_GETPID, SYS_WRITE, SYS_READ, SYS_EXIT = 39, 1, 0, 60


def _kvm_unusable_reason():
    if not os.path.exists("/dev/kvm"):
        return "no /dev/kvm on this host"
    try:
        Vm(1 << 20).close()
    except (KvmError, KvmUnusable) as e:
        return f"/dev/kvm unusable: {e}"
    return None


_REASON = _kvm_unusable_reason()
pytestmark = [
    pytest.mark.skipif(_REASON is not None, reason=_REASON or ""),
    pytest.mark.skipif(not (shutil.which("as") and shutil.which("objcopy")),
                       reason="needs binutils (as, objcopy) to assemble guest code"),
]


def asm(source: str) -> bytes:
    """Flat machine code for Intel-syntax x86-64 assembly."""
    with tempfile.TemporaryDirectory(dir="/var/tmp") as d:
        with open(os.path.join(d, "g.s"), "w") as f:
            f.write(".intel_syntax noprefix\n.text\n" + source + "\n")
        subprocess.run(["as", "--64", "-o", os.path.join(d, "g.o"), os.path.join(d, "g.s")], check=True)
        subprocess.run(["objcopy", "-O", "binary", "-j", ".text", os.path.join(d, "g.o"),
                        os.path.join(d, "g.bin")], check=True)
        with open(os.path.join(d, "g.bin"), "rb") as f:
            return f.read()


@pytest.fixture
def vm():
    with Vm(16 << 20) as v:
        yield v


def start(vm, source: str, data: bytes = b"", **regs):
    """Load code at CODE (r-x), data at DATA (rw-), a stack below STACK_TOP;
    return a vCPU about to run the code."""
    vm.load(CODE, asm(source), R | X)
    vm.load(DATA, data, R | W, length=4096)
    vm.load(STACK_TOP - 4 * 4096, b"", R | W, length=4 * 4096)
    cpu = vm.create_vcpu()
    cpu.set_regs(rip=CODE, rsp=STACK_TOP, **regs)
    return cpu


def expect_syscall(cpu, nr):
    event = cpu.run(timeout=5)
    assert type(event) is Syscall and event.nr == nr, event
    return event


def test_getpid_answer_lands_in_a_register(vm):
    cpu = start(vm, """
        mov eax, 39
        syscall
        mov rbx, rax
        mov rdi, rax
        mov eax, 60
        syscall
    """)
    getpid = expect_syscall(cpu, SYS_GETPID)
    assert getpid.rip == CODE + 7 and getpid.rsp == STACK_TOP
    cpu.answer(4242)
    exit_ = expect_syscall(cpu, SYS_EXIT)
    assert exit_.args[0] == 4242 and cpu.regs.rbx == 4242
    assert cpu.get_sregs().cs.selector == 0x33 and cpu.get_sregs().cs.dpl == 3  # still ring 3


def test_write_and_read_move_bytes_through_the_memfd(vm):
    cpu = start(vm, f"""
        mov eax, 1
        mov edi, 1
        mov esi, {DATA}
        mov edx, 10
        syscall
        mov r12, rax
        xor eax, eax
        xor edi, edi
        mov esi, {DATA + 64}
        mov edx, 8
        syscall
        mov rbx, [{DATA + 64}]
        mov rdi, r12
        mov eax, 60
        syscall
    """, data=b"hello kvm\n")
    write = expect_syscall(cpu, SYS_WRITE)
    assert write.args[:3] == (1, DATA, 10)
    assert vm.read_virt(write.args[1], write.args[2]) == b"hello kvm\n"
    cpu.answer(10)
    read = expect_syscall(cpu, SYS_READ)
    assert read.args[:3] == (0, DATA + 64, 8)
    vm.write_virt(read.args[1], b"sentry!\n")
    cpu.answer(8)
    exit_ = expect_syscall(cpu, SYS_EXIT)
    assert exit_.args[0] == 10 and cpu.regs.rbx.to_bytes(8, "little") == b"sentry!\n"


def test_a_loop_of_syscalls_accumulates_the_answers(vm):
    n = 500
    cpu = start(vm, f"""
        xor ebx, ebx
        mov r12d, {n}
    1:  mov eax, 39
        syscall
        add rbx, rax
        dec r12
        jnz 1b
        mov rdi, rbx
        mov eax, 60
        syscall
    """)
    answers = iter(range(1, n + 1))
    last = cpu.serve(lambda ev: next(answers) if ev.nr == SYS_GETPID else None, timeout=30)
    assert type(last) is Syscall and last.nr == SYS_EXIT
    assert last.args[0] == n * (n + 1) // 2 == cpu.regs.rbx


def test_serve_stops_at_its_budget(vm):
    cpu = start(vm, "1: mov eax, 39\n syscall\n jmp 1b")
    assert cpu.serve(lambda ev: 0, max_exits=7, timeout=10) == BudgetExhausted(7)


def test_registers_and_flags_survive_a_syscall_like_on_linux(vm):
    cpu = start(vm, """
        stc
        mov eax, 39
        syscall
        jc 1f
        ud2
    1:  mov eax, 60
        syscall
    """, rbx=11, rbp=12, r8=13, r9=14, r10=15, r12=16, r13=17, r14=18, r15=19, rdx=20, rsi=21, rdi=22)
    getpid = expect_syscall(cpu, SYS_GETPID)
    assert getpid.args == (22, 21, 20, 15, 13, 14)
    cpu.answer(0)
    exit_ = expect_syscall(cpu, SYS_EXIT)  # the carry flag came back: no #UD
    r = cpu.get_regs()
    assert (r["rbx"], r["rbp"], r["r12"], r["r13"], r["r14"], r["r15"]) == (11, 12, 16, 17, 18, 19)
    assert r["rcx"] == exit_.rip == CODE + 19  # syscall's return address, as Linux leaves it
    assert r["r11"] & 0x202 == 0x202  # rflags (IF and the fixed bit) in r11


def test_unmapped_page_faults_with_its_address_and_resumes_once_mapped(vm):
    cpu = start(vm, """
        mov rdi, [0x12345678]
        mov eax, 60
        syscall
    """)
    fault = cpu.run(timeout=5)
    assert type(fault) is Fault and fault.name == "#PF" and fault.vector == 14
    assert fault.address == 0x12345678 and fault.rip == CODE and fault.rsp == STACK_TOP
    assert fault.error_code == 0b100  # user-mode read of a not-present page
    vm.load(0x1234_5000, b"\0" * 0x678 + (77).to_bytes(8, "little"), R)
    assert expect_syscall(cpu, SYS_EXIT).args[0] == 77  # the load was retried


def test_write_to_a_read_only_page_and_fetch_from_nx_fault(vm):
    cpu = start(vm, f"mov qword ptr [{CODE}], 1")
    fault = cpu.run(timeout=5)
    assert fault.name == "#PF" and fault.address == CODE and fault.error_code == 0b111  # P|W|U
    cpu2 = vm.create_vcpu()
    cpu2.set_regs(rip=DATA, rsp=STACK_TOP)   # data pages are NX
    fault = cpu2.run(timeout=5)
    assert fault.name == "#PF" and fault.address == DATA and fault.error_code & 0b10101 == 0b10101  # P|U|I


@pytest.mark.parametrize("source, name", [
    ("hlt", "#GP"), ("cli", "#GP"), ("out dx, al", "#GP"), ("in al, dx", "#GP"),
    ("mov cr3, rax", "#GP"), ("wrmsr", "#GP"), ("ud2", "#UD"),
])
def test_privileged_and_invalid_instructions_fault(vm, source, name):
    cpu = start(vm, source)
    fault = cpu.run(timeout=5)
    assert type(fault) is Fault and fault.name == name and fault.rip == CODE, fault


def test_int3_is_a_breakpoint_after_the_instruction(vm):
    fault = start(vm, "int3").run(timeout=5)
    assert fault.name == "#BP" and fault.rip == CODE + 1


def test_a_fault_can_resume_elsewhere(vm):
    """What signal delivery will do: rewrite the frame the handler irets to."""
    cpu = start(vm, """
        ud2
        mov eax, 60
        mov edi, 1
        syscall
    handler:
        mov eax, 60
        mov edi, 2
        syscall
    """)
    fault = cpu.run(timeout=5)
    assert fault.name == "#UD"
    cpu.set_fault_return(rip=CODE + 2 + 12, rsp=STACK_TOP - 128)
    exit_ = expect_syscall(cpu, SYS_EXIT)
    assert exit_.args[0] == 2 and exit_.rsp == STACK_TOP - 128


def test_an_endless_loop_is_stopped_by_the_guard_and_the_vcpu_lives_on(vm):
    cpu = start(vm, """
        jmp .
        mov eax, 60
        syscall
    """)
    t = time.monotonic()
    event = cpu.run(timeout=0.3)
    elapsed = time.monotonic() - t
    assert event == Timeout(0.3) and 0.25 < elapsed < 3 and cpu.kicks >= 1
    cpu.set_regs(rip=CODE + 2)
    expect_syscall(cpu, SYS_EXIT)


def test_a_remapped_page_is_seen_after_unmap(vm):
    """Changing a live PTE needs the MMU-notifier poke (Vm.unmap does it)."""
    cpu = start(vm, """
        mov rdi, [0x500000]
        mov eax, 500
        syscall
        mov rdi, [0x500000]
        mov eax, 501
        syscall
    """)
    vm.load(0x50_0000, (1).to_bytes(8, "little"), R)
    assert expect_syscall(cpu, 500).args[0] == 1
    vm.unmap(0x50_0000, 4096)
    vm.load(0x50_0000, (2).to_bytes(8, "little"), R)
    cpu.answer(0)
    assert expect_syscall(cpu, 501).args[0] == 2


def test_an_unanswered_syscall_is_refused(vm):
    cpu = start(vm, "mov eax, 39\n syscall\n jmp .")
    expect_syscall(cpu, SYS_GETPID)
    with pytest.raises(RuntimeError, match="not been answered"):
        cpu.run(timeout=1)


def test_kvm_errors_name_the_operation_and_errno():
    with pytest.raises(KvmError, match="open /nonexistent/kvm") as e:
        Kvm("/nonexistent/kvm")
    assert e.value.errno == errno.ENOENT
    with pytest.raises(KvmError, match="KVM_GET_API_VERSION") as e:
        Kvm("/dev/null")
    assert e.value.errno == errno.ENOTTY


def test_a_python_signal_during_a_run_neither_ends_it_early_nor_is_lost(vm):
    cpu = start(vm, "jmp .")
    seen = []
    old = signal.signal(signal.SIGALRM, lambda *a: seen.append(time.monotonic()))
    try:
        t = time.monotonic()
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        event = cpu.run(timeout=0.4)
        elapsed = time.monotonic() - t
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert seen and seen[0] - t < 0.3  # the handler ran while the guest looped
    assert event == Timeout(0.4) and elapsed >= 0.35


def test_a_broken_idt_is_a_shutdown_not_a_hang(vm):
    cpu = start(vm, "ud2")
    L = vm.layout
    vm.mem.write(L.pa(L.IDT), bytes(4096))  # no gate present: #UD -> #NP -> #DF -> triple fault
    event = cpu.run(timeout=5)
    assert type(event) is Shutdown, event


def test_sse_and_avx_run_in_the_guest(vm):
    """CPUID, CR4 and XCR0 are set up as a Linux program expects them."""
    cpu = start(vm, f"""
        movdqu xmm0, [{DATA}]
        paddq xmm0, xmm0
        movdqu [{DATA}], xmm0
        mov eax, 1
        cpuid
        bt ecx, 28
        jnc 1f
        vmovdqu ymm1, [{DATA}]
        vpaddq ymm1, ymm1, ymm1
        vmovdqu [{DATA}], ymm1
    1:  mov edi, ecx
        mov eax, 60
        syscall
    """, data=(21).to_bytes(8, "little"))
    exit_ = expect_syscall(cpu, SYS_EXIT)
    has_avx = bool(exit_.args[0] & (1 << 28))
    assert exit_.args[0] & (1 << 27)  # OSXSAVE: the guest sees XSAVE enabled
    assert int.from_bytes(vm.read_virt(DATA, 8), "little") == (84 if has_avx else 42)
