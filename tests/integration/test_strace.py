"""pyrunsc do --strace: entry and exit lines with decoded arguments.

The golden test runs tests/fixtures/strace_calls.c and compares its lines
with tests/fixtures/strace_calls.golden once ids, addresses, inode
numbers, times and durations are blanked. After a deliberate change to
the output, regenerate the file with
    PYRUNSC_UPDATE_GOLDEN=1 python -m pytest -q tests/integration/test_strace.py -k golden
and review the diff."""
import hashlib
import os
import re
import shutil
import tempfile

import pytest

from conftest import FIXTURES, run_do

GOLDEN = os.path.join(FIXTURES, "strace_calls.golden")
LINE = re.compile(r"^\[\s*(\d+):\s*(\d+)\] (\S+) ([EX]) (\w+)\(")
NORMALIZE = [
    (re.compile(r"^\[\s*\d+:\s*\d+\]", re.M), "[pid:tid]"),
    (re.compile(r" \(\d+(\.\d+)?(ns|µs|ms|s)\)$", re.M), " (DUR)"),
    (re.compile(r"0x[0-9a-f]{5,}"), "0xADDR"),
    (re.compile(r"\b(dev|ino|uid|gid)=\d+"), r"\1=N"),
    (re.compile(r"\b([amc]time)=\d+\.\d+"), r"\1=T"),
]


def normalize(text: str) -> str:
    for pattern, repl in NORMALIZE:
        text = pattern.sub(repl, text)
    return text


@pytest.fixture
def logdir():
    d = tempfile.mkdtemp(prefix="pyrunsc-strace-", dir="/var/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_golden(cbin, logdir):
    log = os.path.join(logdir, "debug.log")
    r = run_do([cbin("strace_calls")], do_opts=["--strace", "--strace-log-size", "32", "--debug-log", log])
    assert r.returncode == 0, r.stderr
    assert b" E " not in r.stderr   # --debug-log takes the trace
    text = open(log, encoding="utf-8").read()
    start = text.index('E write(-1, "strace-fixture-begin"')
    ours = "".join(line for line in text[text.rindex("\n", 0, start) + 1:].splitlines(keepends=True)
                   if LINE.match(line))
    got = normalize(ours)
    if os.environ.get("PYRUNSC_UPDATE_GOLDEN"):
        with open(GOLDEN, "w", encoding="utf-8") as f:
            f.write(got)
        pytest.skip(f"rewrote {GOLDEN}")
    with open(GOLDEN, encoding="utf-8") as f:
        assert got == f.read()


def test_filter_and_buffers_match_the_file(logdir):
    """--strace-syscalls keeps only the named calls, each with an E and an X
    line; the read's X line shows the bytes the file holds (cut at the
    log size), the E line only the buffer's address."""
    with open("/etc/passwd", "rb") as f:
        content = f.read()
    r = run_do(["/bin/busybox", "md5sum", "/etc/passwd"],
               do_opts=["--strace-syscalls=openat,read", "--strace-log-size", "20"])
    assert r.returncode == 0 and r.stdout.split()[0].decode() == hashlib.md5(content).hexdigest()
    lines = [m for m in map(LINE.match, r.stderr.decode().splitlines()) if m]
    assert {m.group(5) for m in lines} == {"openat", "read"}
    assert [m.group(4) for m in lines] == ["E", "X"] * (len(lines) // 2)
    text = r.stderr.decode()
    assert 'X openat(AT_FDCWD, "/etc/passwd", O_RDONLY' in text
    first_read = next(line for line in text.splitlines() if " X read(" in line)
    shown = first_read.split(", ", 1)[1].rsplit(", ", 1)[0]
    escaped = "".join({10: "\\n", 34: '\\"', 92: "\\\\"}.get(b, chr(b)) for b in content[:20])
    assert shown == f'"{escaped}"' + ("..." if len(content) > 20 else "")
    assert re.search(r" E read\(3, 0x[0-9a-f]+, \d+\)$", text, re.M)


def test_blocked_call_shows_entry_then_exit(logdir):
    """A parked wait4 shows its E line, the child's calls, then its X
    line; ids are the guest's (shell pid 1, child a new pid)."""
    r = run_do(["/bin/busybox", "sh", "-c", "/bin/busybox sleep 0.1; echo"], do_opts=["--strace"])
    assert r.returncode == 0, r.stderr
    lines = [m for m in map(LINE.match, r.stderr.decode().splitlines()) if m]
    enter = next(i for i, m in enumerate(lines) if m.group(4) == "E" and m.group(5) == "wait4")
    leave = next(i for i, m in enumerate(lines) if i > enter and m.group(4) == "X" and m.group(5) == "wait4")
    assert lines[enter].group(1) == lines[leave].group(1) == "1"
    between = {m.group(1) for m in lines[enter + 1:leave]}
    assert between and "1" not in between
    assert re.search(r"X wait4\(-1, \{exited=0\}, 0, NULL\) = \d+ \(", r.stderr.decode())


def test_unknown_syscall_names_are_errors():
    r = run_do(["/bin/true"], do_opts=["--strace-syscalls=read,wirte"])
    assert r.returncode == 2
    assert "unknown syscall 'wirte' (did you mean write" in r.stderr.decode()
