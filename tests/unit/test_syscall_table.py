"""Every x86-64 syscall number has exactly one table entry."""
import re

from sentry.syscalls import table
from sentry.syscalls.numbers import SYSCALL_NAMES


def test_every_number_has_an_entry():
    header = open("/usr/include/x86_64-linux-gnu/asm/unistd_64.h").read()
    host = {int(n): name for name, n in re.findall(r"#define __NR_(\w+)\s+(\d+)", header)}
    for nr, name in host.items():
        assert SYSCALL_NAMES.get(nr) == name, (nr, name)


def test_entries_are_consistent():
    handlers = table.handlers()
    for nr, e in table.ENTRIES.items():
        assert e.support in (table.FULL, table.PARTIAL, table.UNIMPLEMENTED)
        assert (e.handler is None) == (e.support == table.UNIMPLEMENTED), e
        assert handlers[nr] is e.handler
        if e.support == table.PARTIAL:
            assert e.note, f"{e.name}: partial support needs a note"


def test_core_calls_are_handled():
    handlers = table.handlers()
    for name in ("read", "write", "openat", "mmap", "clone", "execve", "wait4", "exit_group",
                 "getdents64", "newfstatat", "statx", "pipe2", "dup3", "rt_sigaction", "futex",
                 "getrandom", "prlimit64", "arch_prctl", "set_tid_address", "uname"):
        nr = next(n for n, x in SYSCALL_NAMES.items() if x == name)
        assert handlers[nr] is not None, name


def test_handlers_take_six_arguments():
    """The kernel calls every handler as h(kernel, task, a0..a5)."""
    import inspect
    table.handlers()
    for e in table.ENTRIES.values():
        if e.handler is not None:
            inspect.signature(e.handler).bind(None, None, 0, 0, 0, 0, 0, 0)
