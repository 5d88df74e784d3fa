"""Can the ptrace platform run here? What it needs from the host (see
cffi_build/ptrace_build.py's pt_spawn): the _ptrace extension built,
ptrace not forbidden by Yama, seccomp filters that can kill a process,
user namespaces, PTRACE_SYSEMU, process_vm_writev and /proc/pid/mem
working. The last
two are tried for real on a forked child (a few milliseconds, bounded by
a deadline), the rest read from /proc. Pure Python (ctypes for ptrace), so
it answers even where the extension is missing.
"""
from __future__ import annotations

import ctypes
import errno
import os
import signal
import time

from ..probe import ProbeResult

PTRACE_TRACEME, PTRACE_PEEKUSER, PTRACE_SYSEMU = 0, 3, 31  # <sys/ptrace.h>
ORIG_RAX_OFFSET = 15 * 8  # struct user_regs_struct's orig_rax
CLONE_NEWUSER = 0x10000000
CAP_SYS_PTRACE = 19
LIVE_DEADLINE = 2.0  # seconds the forked child may take before it is killed
# The child's exit codes: which step failed (like pt_spawn's 120+step).
CHILD_UNSHARE, CHILD_TRACEME = 121, 122
MARK = b"pyrunsc-ptrace-probe"


class _Iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


def probe(*, live: bool = True) -> ProbeResult:
    """The ptrace platform's verdict; live=False skips the forked child."""
    facts: dict = {}
    result = ProbeResult("ptrace", False, "", facts)
    result.reason = _check(facts, live)
    result.usable = not result.reason
    return result


def _check(facts: dict, live: bool) -> str:
    try:
        __import__("platforms.ptrace._ptrace")
        facts["extension"] = "built"
    except ImportError as e:
        facts["extension"] = f"not importable: {e}"
        return "the _ptrace extension is not built (`pip install -e .` builds it)"
    scope = _read("/proc/sys/kernel/yama/ptrace_scope")
    facts["yama_ptrace_scope"] = "no Yama" if scope is None else int(scope)
    has_cap = _has_cap(CAP_SYS_PTRACE)
    facts["cap_sys_ptrace"] = has_cap
    if scope == "3":
        return "ptrace is disabled (kernel.yama.ptrace_scope=3)"
    if scope == "2" and not has_cap:
        return "kernel.yama.ptrace_scope=2 allows ptrace only with CAP_SYS_PTRACE, which we lack"
    actions = _read("/proc/sys/kernel/seccomp/actions_avail")
    facts["seccomp_actions"] = actions
    if actions is None:
        return "no seccomp filters (/proc/sys/kernel/seccomp/actions_avail is missing)"
    if "kill_process" not in actions.split():
        return "seccomp cannot kill a process (no kill_process action)"
    max_userns = _read("/proc/sys/user/max_user_namespaces")
    facts["max_user_namespaces"] = None if max_userns is None else int(max_userns)
    if max_userns == "0":
        return "user namespaces are disabled (user.max_user_namespaces=0)"
    if live:
        reason = _live_check(facts)
        if reason:
            return reason
    return ""


def _live_check(facts: dict) -> str:
    """Fork a child that makes a user namespace, asks to be traced and
    stops; resume it with PTRACE_SYSEMU until its next syscall, and write
    and read its memory. Always reaped; never outlives
    LIVE_DEADLINE."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.restype = ctypes.c_long
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    libc.unshare.argtypes = [ctypes.c_int]
    libc.process_vm_writev.restype = ctypes.c_ssize_t
    marker = ctypes.create_string_buffer(MARK)  # at the same address in the child
    pid = os.fork()
    if pid == 0:  # the child: only a few calls, then _exit whatever happens
        code = 0
        try:
            if libc.unshare(CLONE_NEWUSER) != 0:
                code = CHILD_UNSHARE
            elif libc.ptrace(PTRACE_TRACEME, 0, None, None) != 0:
                code = CHILD_TRACEME
            else:
                os.kill(os.getpid(), signal.SIGSTOP)
                os.getppid()  # under SYSEMU this stops and never runs
        finally:
            os._exit(code)
    deadline = time.monotonic() + LIVE_DEADLINE
    try:
        status = _wait(pid, deadline)
        if status is None:
            return "ptrace probe: the child did not stop in time"
        if os.WIFEXITED(status):
            code = os.WEXITSTATUS(status)
            if code == CHILD_UNSHARE:
                return "cannot create a user namespace (unshare(CLONE_NEWUSER) failed)"
            if code == CHILD_TRACEME:
                return "PTRACE_TRACEME failed in a child"
            return f"ptrace probe: the child exited with {code} before stopping"
        if not os.WIFSTOPPED(status) or os.WSTOPSIG(status) != signal.SIGSTOP:
            return f"ptrace probe: unexpected wait status {status:#x}"
        if libc.ptrace(PTRACE_SYSEMU, pid, None, None) != 0:
            return f"PTRACE_SYSEMU: {_errno_text(ctypes.get_errno())}"
        status = _wait(pid, deadline)
        if status is None or not os.WIFSTOPPED(status) or os.WSTOPSIG(status) != signal.SIGTRAP:
            return f"PTRACE_SYSEMU did not stop the child at a syscall (status {status!r})"
        ctypes.set_errno(0)
        nr = libc.ptrace(PTRACE_PEEKUSER, pid, ctypes.c_void_p(ORIG_RAX_OFFSET), None)
        facts["sysemu_stop"] = f"syscall {nr}" if ctypes.get_errno() == 0 else "stopped"
        reason = _poke_and_peek(libc, pid, ctypes.addressof(marker))
        if reason:
            return reason
        facts["live_check"] = "ok"
        return ""
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass


def _poke_and_peek(libc, pid: int, addr: int) -> str:
    """Write the child's memory as the platform does (process_vm_writev)
    and read it back as the platform does (/proc/pid/mem)."""
    data = MARK[::-1]
    src = ctypes.create_string_buffer(data, len(data))
    local = _Iovec(ctypes.addressof(src), len(data))
    remote = _Iovec(addr, len(data))
    n = libc.process_vm_writev(pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
    if n != len(data):
        return f"process_vm_writev: {_errno_text(ctypes.get_errno()) if n < 0 else f'wrote {n} bytes'}"
    try:
        fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY | os.O_CLOEXEC)
        try:
            got = os.pread(fd, len(data), addr)
        finally:
            os.close(fd)
    except OSError as e:
        return f"reading /proc/{pid}/mem: {_errno_text(e.errno)}"
    if got != data:
        return f"/proc/{pid}/mem gave {got!r}, not what process_vm_writev wrote"
    return ""


def _wait(pid: int, deadline: float):
    """waitpid without hanging: the status, or None past the deadline."""
    while True:
        got, status = os.waitpid(pid, os.WNOHANG | os.WUNTRACED)
        if got == pid:
            return status
        if time.monotonic() > deadline:
            return None
        time.sleep(0.001)


def _has_cap(cap: int) -> bool:
    status = _read("/proc/self/status") or ""
    for line in status.splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> cap & 1)
    return False


def _errno_text(num: int) -> str:
    return f"{errno.errorcode.get(num, str(num))} ({os.strerror(num)})"


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except OSError:
        return None
