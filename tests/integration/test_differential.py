"""Differential tests for issue 3's process model: each C fixture runs
natively and under `pyrunsc do --`; stdout and the exit status must be
the same. The fixtures print counts, errnos, flags and yes/no answers,
never timings, pids or addresses, and synchronise through pipes, /proc
states and waitid rather than sleeps; alarm() bounds each.

Job-control stop and continue is tests/fixtures/jobctl.c, run by
tests/integration/test_process.py.
"""
import subprocess

import pytest

from conftest import run_do

# fixture, extra gcc flags, a line the native run must print (so a fixture
# that silently stopped testing anything fails here, not just differs)
FIXTURES = [
    ("futex_requeue", ("-pthread",), b"  CMP_REQUEUE wake 1 move 1: 2\n"),
    ("restart", ("-pthread",), b"  read(pipe), signal from a thread             -> 1 , handlers 1\n"),
    ("sigaltstack", ("-pthread",), b"  caught on the alternate stack: 1, si_code 1\n"),
    ("sigchld_waitid", (), b"  SIGCHLD still sent: count 1 code CLD_EXITED\n"),
    ("pty_eio", (), b"  then read: -1 Input/output error\n"),
]


@pytest.mark.parametrize("name,flags,landmark", FIXTURES, ids=[f[0] for f in FIXTURES])
def test_same_as_native(cbin, name, flags, landmark):
    prog = cbin(name, *flags)
    native = subprocess.run([prog], capture_output=True, timeout=120)
    assert native.returncode == 0, native.stderr[-2000:]
    assert landmark in native.stdout, native.stdout.decode(errors="replace")
    r = run_do([prog], timeout=180)
    assert r.stdout.decode(errors="replace") == native.stdout.decode(errors="replace"), r.stderr[-3000:]
    assert r.returncode == native.returncode, r.stderr[-3000:]
