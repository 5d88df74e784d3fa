"""The coverage recorder: a SyscallMonitor that counts every guest
syscall a workload makes (calls, results by errno, the sentry's handler
time, the argument shapes that say what the call was for) and sums it
up as plain data for pyrunsc.coverage_report.

Counting happens in done(), which sees every call once, with the
arguments the handler ran with (or that an earlier monitor answered);
a call parked when its task died never reaches done(): blocked()
remembers it and the summary counts it as unfinished.
"""
from __future__ import annotations

from .monitor import SyscallMonitor
from .syscalls import table
from .syscalls.numbers import SYSCALL_NUMBERS

# Syscalls whose arguments name what kind of call it was: name -> the
# (decode kind, argument index, mask) triples that make up its shape.
INT = 0xFFFFFFFF
SOCKTYPE = 0xF   # SOCK_NONBLOCK and SOCK_CLOEXEC are flags, not a kind of socket
SHAPE_ARGS = {
    "ioctl": (("ioctl", 1, INT),),
    "fcntl": (("fcntl", 1, INT),),
    "prctl": (("prctl", 0, INT),),
    "socket": (("family", 0, INT), ("socktype", 1, SOCKTYPE)),
    "socketpair": (("family", 0, INT), ("socktype", 1, SOCKTYPE)),
    "rt_sigaction": (("signal", 0, INT),),
    "kill": (("signal", 1, INT),),
    "tkill": (("signal", 1, INT),),
    "tgkill": (("signal", 2, INT),),
    "rt_sigqueueinfo": (("signal", 1, INT),),
}
SHAPES = {SYSCALL_NUMBERS[n]: spec for n, spec in SHAPE_ARGS.items() if n in SYSCALL_NUMBERS}
MAX_SHAPES = 256   # per syscall: a fuzzer's random ioctl numbers stop here ("other")


class CallStats:
    __slots__ = ("calls", "noreturn", "sentry_ns", "errors", "shapes", "by_loader")

    def __init__(self):
        self.calls = 0
        self.noreturn = 0
        self.sentry_ns = 0
        self.errors = {}     # errno -> count
        self.shapes = {}     # tuple of raw argument values -> [calls, {errno: count}]
        self.by_loader = 0


def _is_error(result) -> bool:
    return result is not None and -4096 < result < 0


class CoverageRecorder(SyscallMonitor):
    def __init__(self):
        self.stats: dict[int, CallStats] = {}   # in the order first seen
        self.parked = {}                        # task -> (nr, args) of its blocked call

    def _stats(self, nr: int) -> CallStats:
        s = self.stats.get(nr)
        if s is None:
            s = self.stats[nr] = CallStats()
        return s

    def blocked(self, t, nr, args):
        self.parked[t] = (nr, args)

    def done(self, t, nr, args, result, sentry_ns):
        if self.parked:
            self.parked.pop(t, None)
        s = self._stats(nr)
        s.calls += 1
        s.sentry_ns += sentry_ns
        if result is None:
            s.noreturn += 1
        elif -4096 < result < 0:
            s.errors[-result] = s.errors.get(-result, 0) + 1
        spec = SHAPES.get(nr)
        if spec is not None:
            key = tuple(args[i] & mask for _, i, mask in spec)
            shape = s.shapes.get(key)
            if shape is None:
                if len(s.shapes) >= MAX_SHAPES:
                    key = None
                shape = s.shapes.setdefault(key, [0, {}])
            shape[0] += 1
            if _is_error(result):
                shape[1][-result] = shape[1].get(-result, 0) + 1

    def loader_exec(self, result: int = 0) -> None:
        """The first process's execve, done by the sentry's loader rather
        than by a guest syscall: counted as the workload's first call and
        marked as the loader's."""
        nr = SYSCALL_NUMBERS["execve"]
        s = self._stats(nr)
        s.calls += 1
        s.by_loader += 1
        if result < 0:
            s.errors[-result] = s.errors.get(-result, 0) + 1
        self.stats = {nr: s, **{k: v for k, v in self.stats.items() if k != nr}}

    def summary(self) -> dict:
        """Per syscall name, JSON-able: calls, ok, errors by errno name,
        noreturn (exit, execve of a task that is gone...), unfinished
        (parked when its task died), sentry_ns, shapes, and the support
        level as `pyrunsc syscalls` gives it (table.level)."""
        from .decode import name_of
        unfinished = {}
        for nr, _ in self.parked.values():
            unfinished[nr] = unfinished.get(nr, 0) + 1
            self._stats(nr)
        out = {}
        for nr, s in self.stats.items():
            entry = table.ENTRIES.get(nr)
            calls = s.calls + unfinished.get(nr, 0)
            nerr = sum(s.errors.values())
            rec = {
                "nr": nr,
                "support": table.level(entry) if entry else table.UNIMPLEMENTED,
                "note": entry.note if entry else "",
                "calls": calls,
                "ok": s.calls - nerr - s.noreturn,
                "errors": {name_of("errno", e): n for e, n in sorted(s.errors.items())},
                "noreturn": s.noreturn,
                "unfinished": unfinished.get(nr, 0),
                "sentry_ns": s.sentry_ns,
            }
            if s.by_loader:
                rec["by_loader"] = s.by_loader
            if s.shapes:
                rec["shapes"] = {_shape_name(SHAPES[nr], key, name_of): {
                    "calls": n, "errors": {name_of("errno", e): c for e, c in sorted(errs.items())}}
                    for key, (n, errs) in s.shapes.items()}
            out[table.name(nr)] = rec
        return out


def _shape_name(spec, key, name_of) -> str:
    if key is None:
        return "other"
    return " ".join(name_of(kind, value) for (kind, _, _), value in zip(spec, key))
