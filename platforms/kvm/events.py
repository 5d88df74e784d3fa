"""What a vCPU's run() reports: the guest's syscalls, exceptions and the
exits that end a run."""
from dataclasses import dataclass


@dataclass(slots=True)  # not frozen: built once per syscall, frozen's __init__ costs
class Syscall:
    """The guest executed `syscall`; answer it with Vcpu.answer()."""
    nr: int
    args: tuple
    rip: int   # where the guest resumes (after its syscall instruction)
    rsp: int


@dataclass(frozen=True, slots=True)
class Fault:
    """An exception in ring 3. `address` is CR2 for #PF, else None. rip/rsp/
    rflags/cs are the interrupted state from the ring-0 frame; running again
    resumes there (retrying the instruction) unless Vcpu.set_fault_return()
    changes it."""
    vector: int
    name: str
    error_code: int | None
    address: int | None
    rip: int
    rsp: int
    rflags: int
    cs: int


@dataclass(frozen=True, slots=True)
class Halt:
    rip: int


@dataclass(frozen=True, slots=True)
class Timeout:
    """The wall-clock guard stopped the guest."""
    seconds: float


@dataclass(frozen=True, slots=True)
class BudgetExhausted:
    """serve() handled its maximum number of exits."""
    exits: int


@dataclass(frozen=True, slots=True)
class Shutdown:
    """Triple fault: the guest's system state is broken."""
    rip: int


@dataclass(frozen=True, slots=True)
class Unexpected:
    """An exit this VM does not expect (stray MMIO, port I/O, entry failure,
    KVM internal error); `detail` holds the raw words."""
    kind: str
    detail: tuple
