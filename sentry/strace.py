"""--strace: an entry line and an exit line per guest syscall, like runsc's.

    [   1:   1] cat E openat(AT_FDCWD, "/etc/hostname", O_RDONLY, 0)
    [   1:   1] cat X openat(AT_FDCWD, "/etc/hostname", O_RDONLY, 0) = 3 (12.3µs)

The bracket holds the guest pid and tid, then the task's comm. E lines
show the arguments as the call enters (buffers the call will fill as
pointers); X lines show them when it returns, with what it filled, its
result (errors by name) and its wall time from entry to exit (a call that
blocked included). sentry/decode.py renders the arguments.
"""
from __future__ import annotations

import difflib
import time

from .decode import Decoder, joined
from .monitor import SyscallMonitor
from .syscalls.numbers import SYSCALL_NUMBERS
from .syscalls.table import name as syscall_name

DEFAULT_LOG_SIZE = 1024   # bytes of a string or buffer shown (runsc's default)


def syscall_numbers(names) -> frozenset:
    """The numbers of syscall names (a list, or one "a,b,c" string); an
    unknown name is a ValueError listing the close ones."""
    if isinstance(names, str):
        names = names.split(",")
    out = set()
    for n in (x.strip() for x in names):
        if not n:
            continue
        nr = SYSCALL_NUMBERS.get(n)
        if nr is None:
            close = difflib.get_close_matches(n, SYSCALL_NUMBERS, n=4, cutoff=0.6)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ValueError(f"unknown syscall {n!r}{hint}")
        out.add(nr)
    if not out:
        raise ValueError("no syscall names given")
    return frozenset(out)


def duration(ns: int) -> str:
    if ns < 1000:
        return f"{ns}ns"
    if ns < 1_000_000:
        return f"{ns / 1000:.1f}µs"
    if ns < 1_000_000_000:
        return f"{ns / 1e6:.3f}ms"
    return f"{ns / 1e9:.3f}s"


class Strace(SyscallMonitor):
    """out: a text file (stderr or the debug log); syscalls: names to trace
    (None: all); log_size: bytes of strings and buffers shown."""

    def __init__(self, out, syscalls=None, log_size: int = DEFAULT_LOG_SIZE):
        self.out = out
        self.only = None if syscalls is None else syscall_numbers(syscalls)
        self.decoder = Decoder(log_size)
        self.pending = {}   # task -> (entry time, entry argument texts)

    def enter(self, t, nr, args):
        if self.only is not None and nr not in self.only:
            return None
        name = syscall_name(nr)
        parts = self.decoder.entry(t, name, args)
        self._emit(t, f"E {name}({joined(parts)})")
        self.pending[t] = (time.perf_counter_ns(), parts)
        return None

    def done(self, t, nr, args, result, sentry_ns=0) -> None:
        if self.only is not None and nr not in self.only:
            return
        start, entered = self.pending.pop(t, (None, None))
        name = syscall_name(nr)
        parts = self.decoder.exit(t, name, args, result, entered)
        took = "" if start is None else f" ({duration(time.perf_counter_ns() - start)})"
        self._emit(t, f"X {name}({joined(parts)}) = {self.decoder.result(name, result)}{took}")

    def _emit(self, t, text: str) -> None:
        comm = t.comm.decode("utf-8", "replace")
        try:
            self.out.write(f"[{t.tg.tgid:4d}:{t.tid:4d}] {comm} {text}\n")
            self.out.flush()
        except (OSError, ValueError):
            pass   # the log is gone: tracing must not stop the guest
