"""Issue 3's C fixtures, each run natively and under the sandbox: the
outputs (counts, errnos, siginfo fields; never timings) must be the same.
Job-control stop/continue is tests/integration/test_process.py's jobctl."""
import subprocess

import pytest

from conftest import run_do

FIXTURES = [
    ("futex_ops", ("-pthread",), b"private requeue: returned 3, woken 1"),
    ("restarts", (), b"read(pipe)                   -> 1 , handled 1"),
    ("altstack", (), b"stack overflow caught on the alternate stack: 1"),
    ("sigchld", (), b"nocldwait  SIGCHLD count 1 code CLD_EXITED status 3 pid ok 1"),
    ("pty_hangup", (), b"read after hang-up: -1 Input/output error"),
    ("ttyjobs", (), b"background read: stopped by 21"),
]


@pytest.mark.parametrize("name,flags,landmark", FIXTURES, ids=[f[0] for f in FIXTURES])
def test_same_output_as_native(cbin, name, flags, landmark):
    prog = cbin(name, *flags)
    want = subprocess.run([prog], capture_output=True, timeout=60)
    assert want.returncode == 0 and landmark in want.stdout  # the fixture itself is sound
    r = run_do([prog])
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout == want.stdout
