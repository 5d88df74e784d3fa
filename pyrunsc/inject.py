"""Fault injection specs for `pyrunsc do --inject`, a subset of strace's
--inject syntax:

    SYSCALL[,SYSCALL...]:ACTION[:when=EXPR]

ACTION is error=ERRNO (the call fails with that errno, by name or
number), retval=N (the call returns N), or a bare errno name (ENOSPC is
error=ENOSPC). EXPR picks which calls: N (the Nth only), N+ (the Nth and
every later one), N+S (the Nth and every Sth after it), N..M (the Nth to
the Mth), N..M+S; without when= every call is hit. Calls are counted
from 1, per syscall name, over the whole sandbox (every process), not per
process as strace does. An injected call never reaches its handler.
Not accepted: strace's syscall classes (%file), negation (!), regexes,
signal=, delay_enter=, delay_exit=, poke_enter=, syscall=.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

_WHEN = re.compile(r"^(\d+)(?:\.\.(\d+))?(?:\+(\d*))?$")


@dataclass
class InjectSpec:
    syscalls: tuple      # names, as given
    result: int          # what an injected call returns (-errno for an error)
    first: int = 1
    last: int | None = None   # None: no end
    step: int = 1
    text: str = ""

    def hits(self, n: int) -> bool:
        """Is the nth call (from 1) of a syscall injected?"""
        if n < self.first or (self.last is not None and n > self.last):
            return False
        return (n - self.first) % self.step == 0

    def install(self, hooks) -> object:
        """Add this spec to a sentry.syscall_hooks.SyscallHooks: a before
        callback counting each syscall's calls and answering the hit ones."""
        counts: dict[int, int] = {}
        result = self.result

        def inject(call):
            n = counts[call.nr] = counts.get(call.nr, 0) + 1
            return result if self.hits(n) else None
        return hooks.add([int(n) if n.isdigit() else n for n in self.syscalls], before=inject)


def parse(spec: str) -> InjectSpec:
    """One --inject value (ValueError saying what is wrong)."""
    from sentry.syscall_hooks import errno_value, syscall_number
    parts = spec.split(":")
    if len(parts) < 2 or not parts[0]:
        raise ValueError(f"{spec!r} is not SYSCALL[,SYSCALL...]:error=ERRNO|retval=N[:when=EXPR]")
    names = tuple(parts[0].split(","))
    for name in names:
        if not name or name[0] in "%!/?":
            raise ValueError(f"{spec!r}: {name!r}: only syscall names are accepted (no classes, "
                             f"negation or regexes)")
        try:
            syscall_number(int(name) if name.isdigit() else name)
        except ValueError as e:
            raise ValueError(f"{spec!r}: {e}") from None
    result = None
    first, last, step = 1, None, 1
    for opt in parts[1:]:
        key, eq, value = opt.partition("=")
        if not eq:
            key, value = "error", opt   # a bare errno name
        try:
            if key in ("error", "retval"):
                if result is not None:
                    raise ValueError("more than one error= or retval=")
                if key == "error":
                    result = -errno_value(int(value) if value.isdigit() else value)
                else:
                    result = int(value, 0)
                    if not -(1 << 63) <= result < 1 << 64:
                        raise ValueError(f"retval {value} does not fit a register")
            elif key == "when":
                m = _WHEN.match(value)
                if m is None:
                    raise ValueError(f"when={value}: not N, N+, N+S, N..M or N..M+S")
                first = int(m.group(1))
                last = int(m.group(2)) if m.group(2) else None
                plus = m.group(3)
                if plus is None and last is None:
                    last = first          # N: that call only
                step = int(plus) if plus else 1
                if first < 1 or (last is not None and last < first) or step < 1:
                    raise ValueError(f"when={value}: calls count from 1, N..M needs M >= N, steps from 1")
            else:
                raise ValueError(f"unknown option {key!r} (error=, retval=, when=)")
        except ValueError as e:
            raise ValueError(f"{spec!r}: {e}") from None
    if result is None:
        raise ValueError(f"{spec!r}: says neither error= nor retval=")
    return InjectSpec(names, result, first, last, step, spec)
