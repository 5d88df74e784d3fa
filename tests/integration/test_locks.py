"""File locks (vfs/locks.py): tests/fixtures/locks.c runs natively and in
the sandbox and must print the same; CPython's own locking tests pass."""
import os
import subprocess

import pytest

from conftest import run_do

# Lines the native run must print, so a fixture that silently stopped
# testing something fails here rather than only differing.
LANDMARKS = [
    b"  split: R[0,9]parent W[10,19]parent R[20,99]parent\n",
    b"  both: W[0,9]parent R[10,19]child\n",
    b"  closed another fd of the file: none\n",
    b"  parent closed, child holds the description: W[0,9]ofd\n",
    b"  classic GETLK W 25+1 -> 0: R[20,29]ofd\n",
    b"    -> POSIX  ADVISORY  WRITE child FILE 0 0\n",
    b"  parent SETLKW W 1+1 -> -1 Resource deadlock avoided\n",
    b"  parent SETLKW W 1+1 (cycle of three) -> -1 Resource deadlock avoided\n",
    b"  SETLKW, no SA_RESTART -> -1 Interrupted system call, handlers 1\n",
    b"  SETLKW, SA_RESTART -> 0, handlers 1\n",
    b"  flock SH, no SA_RESTART -> -1 Interrupted system call, handlers 1\n",
    b"  parent EX|NB -> 0\n",
    b"  child SH (waits) -> 0\n",
    b"  lock kept across exec: W[0,9]child\n",
    b"  an O_CLOEXEC fd of the file closed at exec: none\n",
    b"done\n",
]


def test_locks_same_as_native(cbin, tmp_path):
    prog = cbin("locks")
    native = subprocess.run([prog], capture_output=True, timeout=120,
                            env={**os.environ, "LOCKS_DIR": str(tmp_path)})
    assert native.returncode == 0, native.stdout[-3000:]
    for line in LANDMARKS:
        assert line in native.stdout, (line, native.stdout.decode(errors="replace"))
    r = run_do([prog], timeout=180)
    assert r.stdout.decode(errors="replace") == native.stdout.decode(errors="replace"), r.stderr[-3000:]
    assert r.returncode == 0, r.stderr[-3000:]


CPYTHON_LOCK_TESTS = ["test_flock", "test_lockf_exclusive", "test_lockf_share",
                      "test_fcntl_file_descriptor", "test_fcntl_fileno", "test_flock_overflow"]


@pytest.mark.skipif(not os.path.exists("/usr/lib/python3.11/test/test_fcntl.py"),
                    reason="needs libpython3.11-testsuite")
def test_cpython_fcntl_locking():
    """test_fcntl's locking tests (lockf across a child process, flock)."""
    args = ["/usr/bin/python3.11", "-m", "test", "-v", "test_fcntl"]
    for name in CPYTHON_LOCK_TESTS:
        args += ["-m", name]
    r = run_do(args, timeout=300)
    out = r.stdout.decode(errors="replace")
    assert r.returncode == 0, out[-4000:]
    for name in CPYTHON_LOCK_TESTS:
        assert f"{name} (test.test_fcntl.TestFcntl.{name}) ..." in out, out[-4000:]
    # all of them ran and passed, none skipped
    assert f"Ran {len(CPYTHON_LOCK_TESTS)} tests" in out and "\nOK\n" in out, out[-4000:]
