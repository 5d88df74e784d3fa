"""The syscall table: every x86-64 number, its name, handler and support.

Handler modules register with @syscall("name", ...); numbers with no
handler are listed as unimplemented and answered with ENOSYS by the kernel
(counted, and named in the debug log). The same table feeds strace and the
coverage reports.
"""
from __future__ import annotations

import errno
import importlib
from dataclasses import dataclass

from .numbers import SYSCALL_NAMES, SYSCALL_NUMBERS

FULL, PARTIAL, UNIMPLEMENTED = "full", "partial", "unimplemented"
REFUSED = "refused"   # a level only level() gives: a handler that just returns a fixed errno
HANDLER_MODULES = ("fs", "file", "mm", "process", "signal", "time", "misc", "poll", "events", "socket", "timers",
                   "mount", "xattr", "inotify", "memfd", "splice")


@dataclass
class Entry:
    nr: int
    name: str
    handler: object = None
    support: str = UNIMPLEMENTED
    note: str = ""
    errno: int = errno.ENOSYS


ENTRIES: dict[int, Entry] = {nr: Entry(nr, name) for nr, name in SYSCALL_NAMES.items()}


def syscall(*names: str, support: str = FULL, note: str = ""):
    """Register the decorated function as the handler of `names`."""
    def register(fn):
        for n in names:
            e = ENTRIES[SYSCALL_NUMBERS[n]]
            e.handler, e.support, e.note = fn, support, note
        return fn
    return register


def unimplemented(name: str, err: int = errno.ENOSYS, note: str = "") -> None:
    """A call we answer with a fixed errno on purpose (e.g. EPERM for
    privileged calls no sandbox should make)."""
    e = ENTRIES[SYSCALL_NUMBERS[name]]
    e.errno, e.note = err, note

    def refuse(k, t, *args):
        return -err
    refuse.refuses = err
    if err != errno.ENOSYS:
        e.handler, e.support = refuse, PARTIAL


def name(nr: int) -> str:
    e = ENTRIES.get(nr)
    return e.name if e else f"syscall_{nr}"


def number(name: str) -> int:
    return SYSCALL_NUMBERS[name]


def level(e: Entry) -> str:
    """The support a call gets from the handler registered for it:
    unimplemented without one, refused when the handler only answers a
    fixed errno (unimplemented(name, EPERM)), else its registered level."""
    if e.handler is None:
        return UNIMPLEMENTED
    if getattr(e.handler, "refuses", None):
        return REFUSED
    return e.support


def support_summary() -> dict:
    """How many calls have each level(), every handler module loaded."""
    handlers()
    counts = dict.fromkeys((FULL, PARTIAL, REFUSED, UNIMPLEMENTED), 0)
    for e in ENTRIES.values():
        counts[level(e)] += 1
    return counts


def handlers() -> list:
    """Handlers indexed by number (None where unimplemented)."""
    for mod in HANDLER_MODULES:
        importlib.import_module(f"{__package__}.{mod}")
    top = max(ENTRIES) + 1
    return [ENTRIES[nr].handler if nr in ENTRIES else None for nr in range(top)]
