"""Python syscall hooks: the SyscallMonitor behind pyrunsc.Sandbox.on_syscall
and `pyrunsc do --inject`.

A hook is a pair of callbacks for some syscalls. Each is called on the
kernel's loop thread with a SyscallCall, the call as the guest made it:

* before(call), once per call before the handler: it may read the
  guest's memory, rewrite call.args, and return None to let the handler
  run, or an int to be the call's result without running the handler
  (-errno for an error; call.error("ENOSPC") makes one).
* after(call), when the call finishes, with call.result set: it returns
  None to keep the result, or an int that the guest gets instead.

A callback that raises fails the guest's call with EIO (before: the
handler does not run; after: the result is replaced); the first
traceback of each callback is written to the report stream, later ones
are only counted (SyscallHooks.errors). Hooks run in the order they were
added: the first before that answers ends the others' before; every
after runs, each seeing the result the previous one left.
"""
from __future__ import annotations

import difflib
import errno as errnomod
import os
import sys

from .monitor import SyscallMonitor
from .syscalls import table

MASK64 = (1 << 64) - 1
# string arguments a prototype calls "const char *" that are buffers, not paths
_BUFFER_NAMES = {"buf", "ubuf", "data", "value", "optval", "msg", "buff"}
_BUFFER_CAP = 1 << 16  # the most of a buffer decoded shows
# after a successful exec the old memory is gone: decoded stays what before saw
_EXEC_NRS = (59, 322)


def syscall_number(name) -> int:
    """The number of a syscall given by name (or number); ValueError naming
    close matches for an unknown one."""
    if isinstance(name, int) and not isinstance(name, bool):
        if name in table.ENTRIES:
            return name
        raise ValueError(f"unknown syscall number {name}")
    if not isinstance(name, str):
        raise TypeError(f"a syscall is a name or a number, not {name!r}")
    try:
        return table.number(name)
    except (KeyError, ValueError):
        pass
    names = sorted(e.name for e in table.ENTRIES.values())
    close = difflib.get_close_matches(name, names, n=4, cutoff=0.6)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise ValueError(f"unknown syscall {name!r}{hint}")


def errno_value(code) -> int:
    """An errno given as a name ("ENOSPC") or a number: its positive number."""
    if isinstance(code, int) and not isinstance(code, bool):
        if 0 < code < 4096:
            return code
        raise ValueError(f"errno {code} is out of range (1..4095)")
    value = getattr(errnomod, str(code).upper(), None)
    if not isinstance(value, int) or not str(code).upper().startswith("E"):
        close = difflib.get_close_matches(str(code).upper(), list(errnomod.errorcode.values()), n=4)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ValueError(f"unknown errno {code!r}{hint}")
    return value


def _prototype(name: str):
    """((type, name), ...) of a syscall's arguments, from python-ptrace's
    tables (imported only when a hook decodes arguments)."""
    try:
        from ptrace.syscall.prototypes import SYSCALL_PROTOTYPES
    except ImportError:
        return ()
    proto = SYSCALL_PROTOTYPES.get(name)
    return proto[1] if proto else ()


def _signed(value: int, ctype: str) -> int:
    """An argument as its C type reads it: ints are 32-bit, longs 64."""
    if ctype in ("int", "pid_t", "uid_t", "gid_t", "key_t", "clockid_t", "timer_t", "mqd_t"):
        value &= 0xFFFFFFFF
        return value - (1 << 32) if value >= 1 << 31 else value
    if ctype in ("long", "off_t", "loff_t", "ssize_t", "__s32"):
        return value - (1 << 64) if value >= 1 << 63 else value
    return value


class SyscallCall:
    """One guest syscall as a hook sees it. args is a list of six ints
    that before() may change (what the handler then gets); result is set
    for after() (None for a call that does not return)."""
    __slots__ = ("task", "nr", "name", "args", "result", "answered", "_orig", "_decoded")

    def __init__(self, task, nr: int, args: tuple):
        self.task = task
        self.nr = nr
        self.name = table.name(nr)
        self.args = list(args)
        self._orig = tuple(args)
        self.result = None
        self.answered = False   # a before() gave the result: no handler ran
        self._decoded = None

    def __repr__(self) -> str:
        shown = f"{self.name}({', '.join(hex(a) for a in self.args)})"
        return shown if self.result is None else f"{shown} = {self.result}"

    # --- who made it ---
    @property
    def pid(self) -> int:
        return self.task.tg.tgid

    @property
    def tid(self) -> int:
        return self.task.tid

    @property
    def comm(self) -> str:
        return os.fsdecode(self.task.comm)

    # --- the guest's memory ---
    def read(self, addr: int, size: int) -> bytes:
        return self.task.thread.read(addr, size)

    def read_str(self, addr: int, limit: int = 4096) -> str:
        """A NUL-terminated string (a path) at addr, decoded as os.fsdecode does."""
        return os.fsdecode(self.task.thread.read_cstr(addr, limit))

    def write(self, addr: int, data: bytes) -> None:
        self.task.thread.write(addr, bytes(data))

    # --- results ---
    @staticmethod
    def error(code) -> int:
        """The result for an error: call.error("ENOSPC") is -28."""
        return -errno_value(code)

    def open_virtual_file(self, data: bytes, name: str | None = None) -> int:
        """Install an in-memory file holding data in the calling process's
        fd table and return its fd, the result for an open that serves a
        virtual file: `return call.open_virtual_file(b"...")`. Its access
        mode and close-on-exec come from the call's flags (open, openat,
        creat); it reads back as the guest wrote it (a memfd, which
        /proc/self/fd names memfd:NAME)."""
        from vfs.file import O_ACCMODE, O_CLOEXEC, O_LARGEFILE, O_RDONLY, FileDescription
        from . import memfd
        flags = {"open": 1, "openat": 2, "openat2": -1}.get(self.name)
        if flags is None:
            oflags = O_RDONLY
        elif flags < 0:  # openat2: struct open_how's first field
            oflags = int.from_bytes(self.read(self.args[2], 8), "little")
        else:
            oflags = self.args[flags]
        creds = self.task.tg.creds
        label = os.fsencode(name if name is not None else (self.path or "virtual"))[:memfd.NAME_MAX_LEN]
        impl, loc, inode = memfd.create(label, 0, creds.fsuid, creds.fsgid)
        try:
            inode.write_at(bytes(data), 0)
            desc = FileDescription(impl, (oflags & O_ACCMODE) | O_LARGEFILE, loc, inode)
            return self.task.tg.fdtable.install(desc, cloexec=bool(oflags & O_CLOEXEC))
        except OSError:
            impl.release()
            raise

    # --- decoded arguments ---
    @property
    def decoded(self) -> dict:
        """The arguments by their names in the syscall's prototype: paths
        as str, string arrays (execve's argv) as lists, a buffer the
        guest passes in (write's buf) as bytes (up to 64 KiB; after a
        read-like call, the bytes it got), ints as the C type reads them,
        other pointers as ints. Decoded when first asked."""
        if self._decoded is None:
            self._decoded = self._decode()
        return self._decoded

    @property
    def path(self) -> str | None:
        """The call's first path argument, decoded (None if it has none)."""
        for ctype, argname in _prototype(self.name):
            if "char *" in ctype and "* const" not in ctype and "*const" not in ctype \
                    and argname not in _BUFFER_NAMES:
                value = self.decoded.get(argname)
                return value if isinstance(value, str) else None
        return None

    def _decode(self) -> dict:
        out = {}
        proto = _prototype(self.name)
        for i, (ctype, argname) in enumerate(proto[:6]):
            value = self.args[i]
            try:
                out[argname] = self._decode_one(i, ctype, argname, value, proto)
            except OSError:
                out[argname] = value  # a bad pointer: shown as the number
        return out

    def _decode_one(self, i: int, ctype: str, argname: str, value: int, proto):
        if "*const *" in ctype or "* const *" in ctype:
            return self._read_strings(value) if value else None
        if "char *" in ctype or "void *" in ctype:
            if not value:
                return None
            if argname in _BUFFER_NAMES:
                size = self._buffer_size(i, proto, ctype)
                return value if size is None else self.read(value, min(size, _BUFFER_CAP))
            if "char *" in ctype:
                return self.read_str(value)
            return value
        return _signed(value, ctype.replace("unsigned ", "u").strip())

    def _buffer_size(self, i: int, proto, ctype: str):
        """How much of buffer argument i holds data: for what the guest
        passes in, the count after it; for what it gets (read), the result."""
        count = self.args[i + 1] if i + 1 < len(proto) and "size" in proto[i + 1][0] else None
        if "const" in ctype:
            return count
        if self.result is not None and 0 < self.result and not self.answered:
            return self.result if count is None else min(self.result, count)
        return None

    def _read_strings(self, addr: int, limit: int = 256) -> list:
        items = []
        for k in range(limit):
            ptr = int.from_bytes(self.read(addr + 8 * k, 8), "little")
            if not ptr:
                break
            items.append(self.read_str(ptr))
        return items


class Hook:
    """A registered pair of callbacks; remove() takes it out."""
    __slots__ = ("nrs", "before", "after", "errors", "owner")

    def __init__(self, owner, nrs, before, after):
        self.owner, self.nrs, self.before, self.after = owner, tuple(nrs), before, after
        self.errors = 0  # how many times its callbacks raised

    def remove(self) -> None:
        self.owner.remove(self)


class HookError:
    """A callback that raised: where, and its first traceback."""
    __slots__ = ("hook", "callback", "syscall", "traceback", "count")

    def __init__(self, hook, callback, syscall, text):
        self.hook, self.callback, self.syscall, self.traceback, self.count = hook, callback, syscall, text, 1

    def __repr__(self) -> str:
        return f"<HookError {self.syscall} {self.callback!r} x{self.count}>"


class SyscallHooks(SyscallMonitor):
    """The monitor running the hooks; report: where the first traceback of
    each failing callback is written (None: sys.stderr at the time)."""

    def __init__(self, report=None):
        self.report = report
        self.by_nr: dict[int, list[Hook]] = {}
        self.errors: list[HookError] = []
        self._calls: dict = {}   # task -> its SyscallCall between enter and done

    def add(self, names, before=None, after=None) -> Hook:
        if isinstance(names, (str, int)):
            names = [names]
        nrs = [syscall_number(n) for n in names]
        if not nrs:
            raise ValueError("on_syscall needs at least one syscall")
        for fn in (before, after):
            if fn is not None and not callable(fn):
                raise TypeError(f"a hook callback must be callable, not {fn!r}")
        if before is None and after is None:
            raise ValueError("on_syscall needs before=, after= or both")
        hook = Hook(self, nrs, before, after)
        for nr in dict.fromkeys(nrs):
            self.by_nr.setdefault(nr, []).append(hook)
        return hook

    def remove(self, hook: Hook) -> None:
        for nr in hook.nrs:
            lst = self.by_nr.get(nr, [])
            if hook in lst:
                lst.remove(hook)
            if not lst:
                self.by_nr.pop(nr, None)

    def __bool__(self) -> bool:
        return bool(self.by_nr)

    # --- the monitor ---
    def enter(self, t, nr, args):
        hooks = self.by_nr.get(nr)
        if not hooks:
            return None
        call = SyscallCall(t, nr, args)
        self._calls[t] = call
        for hook in hooks:
            if hook.before is None:
                continue
            r = self._invoke(hook, hook.before, call)
            if r is not None:
                call.answered = True
                call.result = r
                return r
        if call.args != list(call._orig):
            if len(call.args) != 6:
                call.answered = True
                call.result = self._failed(hook, hook.before, call, ValueError(
                    f"call.args must hold six ints, not {len(call.args)}"))
                return call.result
            return tuple(a & MASK64 for a in call.args)
        return None

    def done(self, t, nr, args, result, sentry_ns):
        call = self._calls.pop(t, None)
        if call is None or call.nr != nr:
            return None
        call.result = result
        if nr not in _EXEC_NRS:
            call._decoded = None   # decoded afresh: what the call wrote (read's buf)
        replaced = None
        for hook in self.by_nr.get(nr, ()):
            if hook.after is None:
                continue
            r = self._invoke(hook, hook.after, call)
            if r is not None and result is not None:
                call.result = replaced = r
        return replaced

    def _invoke(self, hook: Hook, fn, call: SyscallCall):
        try:
            r = fn(call)
            if r is None:
                return None
            if isinstance(r, bool) or not isinstance(r, int):
                import reprlib
                raise TypeError(f"a hook returns None or an int result, not {reprlib.repr(r)}")
            if not -(1 << 63) <= r < 1 << 64:
                raise ValueError(f"result {r} does not fit a register")
            return r
        except Exception as e:
            return self._failed(hook, fn, call, e)

    def _failed(self, hook: Hook, fn, call: SyscallCall, exc: BaseException) -> int:
        hook.errors += 1
        for err in self.errors:
            if err.hook is hook and err.callback is fn:
                err.count += 1
                return -errnomod.EIO
        import traceback
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        self.errors.append(HookError(hook, fn, call.name, text))
        out = self.report if self.report is not None else sys.stderr
        try:
            out.write(f"pyrunsc: syscall hook {getattr(fn, '__qualname__', fn)!s} raised in {call.name} "
                      f"of pid {call.pid}: the call fails with EIO (reported once per callback)\n{text}")
            out.flush()
        except (OSError, ValueError):
            pass
        return -errnomod.EIO

    def forget_tasks(self) -> None:
        """Drop calls left open by tasks that died mid-call (end of a run)."""
        self._calls.clear()
