"""Syscall hooks (Sandbox.on_syscall, sentry/syscall_hooks.py) and
`pyrunsc do --inject`: callbacks see the guest's calls decoded, count
them, rewrite arguments, answer calls (fault injection, virtual files)
and replace results; a callback that raises fails the call with EIO."""
import errno
import hashlib
import os
import subprocess

import pytest

import pyrunsc
from tests.conftest import pyrunsc_cmd

BUSYBOX = "/bin/busybox"
ECHO_FIVE = "for i in 1 2 3 4 5; do echo $i || echo failed $i >&2; done"


@pytest.fixture
def sb():
    with pyrunsc.Sandbox(cwd="/", env={"PATH": "/bin:/usr/bin"}) as box:
        yield box


def test_a_hook_counts_calls_and_sees_them_decoded(sb):
    """Counters a callback keeps are the caller's own objects."""
    execs, writes = [], []

    def on_exec(call):
        if call.result == 0:   # decoded before the call: after it the old memory is gone
            execs.append((call.pid, call.decoded["argv"]))

    sb.on_syscall("execve", before=lambda call: call.decoded and None, after=on_exec)
    sb.on_syscall("write", before=lambda call: writes.append((call.args[0], call.decoded["buf"])))
    p = sb.run([BUSYBOX, "sh", "-c", "for i in 1 2 3; do /bin/busybox echo $i; done"], capture_output=True)
    assert p.stdout == b"1\n2\n3\n"
    assert [argv for _, argv in execs] == [[BUSYBOX, "echo", str(i)] for i in (1, 2, 3)]
    assert len({pid for pid, _ in execs}) == 3 and 1 not in {pid for pid, _ in execs}  # children of pid 1
    assert writes == [(1, b"1\n"), (1, b"2\n"), (1, b"3\n")]


def test_injecting_enospc_into_the_third_write(sb):
    writes = []

    def third_write(call):
        writes.append(call.args[0])
        if len(writes) == 3:
            return call.error("ENOSPC")
    sb.on_syscall("write", before=third_write)
    p = sb.run([BUSYBOX, "sh", "-c", ECHO_FIVE], capture_output=True, text=True)
    assert p.stdout == "1\n2\n4\n5\n"   # the third line never reached the pipe
    # the guest saw the error: its libc's message for ENOSPC, and echo failed
    assert p.stderr.splitlines() == [f"sh: write error: {os.strerror(errno.ENOSPC)}", "failed 3"]


def test_after_replaces_a_result_and_before_rewrites_arguments(sb):
    def to_stderr(call):
        if call.args[0] == 1:
            call.args[0] = 2          # the handler writes to fd 2 instead
    sb.on_syscall("write", before=to_stderr, after=lambda call: call.result + 0 if call.result else None)
    sb.on_syscall("getppid", after=lambda call: 4242)
    p = sb.run([BUSYBOX, "sh", "-c", "echo $PPID; /bin/busybox sh -c 'echo $PPID'"], capture_output=True)
    assert p.stdout == b""
    # the shell's parent is outside the sandbox (0); the child's getppid was 1, replaced
    assert p.stderr == b"4242\n4242\n"


def test_a_hook_serves_a_virtual_file(sb):
    data = os.urandom(100_000)   # larger than a page, random: read back whole and in order

    def serve(call):
        if call.path == "/etc/virtual.bin":
            return call.open_virtual_file(data)
    sb.on_syscall(["open", "openat"], before=serve)
    p = sb.run([BUSYBOX, "sh", "-c", "md5sum /etc/virtual.bin; wc -c < /etc/virtual.bin; "
                "ls /etc/virtual.bin; cat /etc/virtual.bin"], capture_output=True)
    lines = p.stdout.split(b"\n", 2)
    assert lines[0].split()[0].decode() == hashlib.md5(data).hexdigest()
    assert lines[1].strip() == b"100000"
    assert p.stderr.startswith(b"ls: /etc/virtual.bin: No such file")   # only open serves it
    assert lines[2] == data


def test_a_hook_that_raises_fails_the_call_with_eio_and_reports_once(sb, capsys):
    def broken(call):
        if call.path == "/etc/hostname":
            raise RuntimeError("hook bug")
    sb.on_syscall(["open", "openat"], before=broken)
    p = sb.run([BUSYBOX, "sh", "-c", "cat /etc/hostname; cat /etc/hostname; echo done"],
               capture_output=True, text=True, timeout=60)
    assert p.stdout == "done\n"
    msg = f"can't open '/etc/hostname': {os.strerror(errno.EIO)}"
    assert p.stderr.count(msg) == 2
    reported = capsys.readouterr().err
    assert reported.count("RuntimeError: hook bug") == 1 and "broken" in reported
    [err] = sb.hook_errors
    assert err.count == 2 and err.syscall in ("open", "openat")


def test_a_result_that_is_not_an_int_is_an_error(sb, capsys):
    sb.on_syscall("getppid", before=lambda call: "zero")
    p = sb.run([BUSYBOX, "sh", "-c", "echo $PPID"], capture_output=True)
    # getppid cannot fail: the guest gets -EIO as its value (busybox shows it as a 32-bit unsigned)
    assert int(p.stdout) & 0xFFFFFFFF == -errno.EIO & 0xFFFFFFFF
    assert "not 'zero'" in capsys.readouterr().err


def test_unknown_names_list_close_matches(sb):
    with pytest.raises(ValueError, match=r"unknown syscall 'opnat' \(did you mean openat"):
        sb.on_syscall("opnat", before=print)
    with pytest.raises(ValueError, match="before=, after="):
        sb.on_syscall("openat")
    with pytest.raises(ValueError, match="unknown errno 'ENOSPACE'.*ENOSPC"):
        pyrunsc.api.Sandbox  # noqa: B018  (the module is loaded)
        from sentry.syscall_hooks import SyscallCall
        SyscallCall.error("ENOSPACE")


def test_removed_hooks_no_longer_run(sb):
    seen = []
    hook = sb.on_syscall("getppid", before=lambda call: seen.append(call.pid))
    sb.run([BUSYBOX, "sh", "-c", "echo $PPID"], capture_output=True)
    hook.remove()
    sb.run([BUSYBOX, "sh", "-c", "echo $PPID"], capture_output=True)
    assert seen == [1]


def _do(*args):
    return subprocess.run(pyrunsc_cmd("do", *args), capture_output=True, text=True, timeout=120, cwd="/",
                          stdin=subprocess.DEVNULL)


def test_do_inject_from_the_command_line():
    p = _do("--inject", "write:ENOSPC:when=3", "--", BUSYBOX, "sh", "-c", ECHO_FIVE)
    assert p.returncode == 0
    assert p.stdout == "1\n2\n4\n5\n" and "failed 3" in p.stderr
    # calls count over the sandbox: the shell's own getppid is the first, its children's the next five
    p = _do("--inject", "getppid:retval=77:when=2+2", "--", BUSYBOX, "sh", "-c",
            "echo $PPID; for i in 1 2 3 4 5; do /bin/busybox sh -c 'echo $PPID'; done")
    assert p.stdout.split() == ["0", "77", "1", "77", "1", "77"]
    p = _do("--inject", "getppid:retval=77", "--inject", "getppid:retval=78", "--", BUSYBOX, "sh", "-c", "echo $PPID")
    assert p.stdout == "77\n"   # the first spec that answers wins


def test_do_inject_bad_specs_are_one_line_errors():
    p = _do("--inject", "wrte:ENOSPC", "--", BUSYBOX, "true")
    assert p.returncode == 2
    assert "unknown syscall 'wrte' (did you mean write" in p.stderr
    p = _do("--inject", "write:when=0", "--", BUSYBOX, "true")
    assert p.returncode == 2 and "--inject" in p.stderr
