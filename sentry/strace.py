"""--strace: one line per syscall, like strace(1).

Argument types come from python-ptrace's prototype table; strings are
read from guest memory when the call completes (so a buffer the call
itself filled shows as a pointer).
"""
from __future__ import annotations

import errno as errnomod
import os

from ptrace.syscall.prototypes import SYSCALL_PROTOTYPES

from .monitor import SyscallMonitor
from .syscalls.table import name as syscall_name

STRING_TYPES = ("const char *", "char *")
STRING_NAMES = {"filename", "pathname", "path", "oldname", "newname", "name", "oldpath",
                "newpath", "target", "linkpath", "specialfile", "library"}
MAX_STR = 48


def _quote(b: bytes) -> str:
    s = b[:MAX_STR].decode("latin-1").encode("unicode_escape").decode("ascii").replace('"', '\\"')
    return f'"{s}"' + ("..." if len(b) > MAX_STR else "")


class Strace(SyscallMonitor):
    def __init__(self, out):
        self.out = out

    def _args(self, t, name: str, args: tuple) -> str:
        proto = SYSCALL_PROTOTYPES.get(name)
        if proto is None:
            return ", ".join(hex(a) for a in args[:3])
        parts = []
        for (ctype, aname), value in zip(proto[1], args):
            if ctype in STRING_TYPES and aname in STRING_NAMES and value:
                try:
                    parts.append(_quote(t.thread.read_cstr(value, 4096)))
                    continue
                except OSError:
                    pass
            if "*" in ctype:
                parts.append("NULL" if value == 0 else hex(value))
            elif ctype in ("int", "pid_t", "uid_t", "gid_t", "unsigned int", "long", "size_t", "off_t", "loff_t"):
                v = value & 0xFFFFFFFF if ctype in ("int", "pid_t", "unsigned int") else value
                if ctype in ("int", "pid_t") and v & 0x80000000:
                    v -= 1 << 32
                elif ctype in ("long", "off_t", "loff_t") and v >= 1 << 63:
                    v -= 1 << 64
                parts.append(str(v))
            else:
                parts.append(hex(value))
        return ", ".join(parts)

    def _emit(self, t, nr, args, tail: str) -> None:
        name = syscall_name(nr)
        line = f"[pid {t.tid}] {name}({self._args(t, name, args)}) {tail}\n"
        try:
            self.out.write(line)
            self.out.flush()
        except (OSError, ValueError):
            pass

    def done(self, t, nr, args, result, sentry_ns=0) -> None:
        if result is None:
            self._emit(t, nr, args, "= ?")
        elif -4096 < result < 0:
            code = -result
            ename = errnomod.errorcode.get(code, str(code))
            self._emit(t, nr, args, f"= -1 {ename} ({os.strerror(code)})")
        elif result > 0xFFFF:
            self._emit(t, nr, args, f"= {result:#x}")
        else:
            self._emit(t, nr, args, f"= {result}")

    def blocked(self, t, nr, args) -> None:
        self._emit(t, nr, args, "<unfinished ...>")
