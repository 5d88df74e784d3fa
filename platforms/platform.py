"""The interface between the sentry and whatever runs guest code.

A Platform runs guest threads and reports what they do as events; the
sentry answers. It knows nothing of files, processes or signals beyond
"this thread stopped for this reason". The ptrace platform runs guests as
host processes; a KVM platform runs them in a virtual machine.

Event kinds (Event.kind):
  SYSCALL   the thread made a syscall, not yet executed: nr, args
  SIGNAL    a host signal stopped it (a fault: SIGSEGV, SIGBUS, SIGFPE,
            SIGILL, SIGTRAP; or SIGSTOP/SIGKILL from outside): signo, info
  EXITED    the host thread is gone: status is the raw wait status
  NEWCHILD  (internal) a host clone/fork the sentry injected finished
"""
from __future__ import annotations

SYSCALL, SIGNAL, EXITED, OTHER = 1, 2, 3, 4


class Unsupported(Exception):
    """The guest needs something this platform does not provide (the
    message names it); the sandbox ends with it rather than guessing."""


class GuestThread:
    """One guest thread as the platform runs it. Registers are exposed as
    an object with x86-64 user_regs_struct field names."""

    def get_regs(self):
        raise NotImplementedError

    def set_regs(self, regs) -> None:
        raise NotImplementedError

    def read(self, addr: int, size: int) -> bytes:
        raise NotImplementedError

    def write(self, addr: int, data: bytes) -> None:
        raise NotImplementedError

    def read_cstr(self, addr: int, limit: int) -> bytes:
        raise NotImplementedError

    def inject(self, nr: int, *args: int) -> int:
        """Run one host syscall in this thread's address space (mmap and
        friends) and return its raw result; the thread's registers are
        preserved."""
        raise NotImplementedError

    def kill(self) -> None:
        raise NotImplementedError


class Platform:
    name = "none"

    def new_process(self) -> GuestThread:
        """A new guest thread in a fresh, empty address space (only the
        platform's own hidden pages), stopped, ready for the loader."""
        raise NotImplementedError

    def close(self) -> None:
        """Kill every guest thread and release host resources."""
        raise NotImplementedError
