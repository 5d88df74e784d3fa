"""A parked pipe write that is woken thousands of times keeps the sentry's
memory bounded: each wake-up must not keep the previous attempt's buffer."""
import os
import resource
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
from conftest import pyrunsc_cmd  # noqa: E402

SENTRY_AS_LIMIT = 3 << 30  # the leak this guards against reached 24 GiB


def _limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (SENTRY_AS_LIMIT, SENTRY_AS_LIMIT))


def test_interrupted_pipe_write_retried_many_times(guest_fixture):
    script = guest_fixture("pipe_write_retry.py")
    r = subprocess.run(pyrunsc_cmd("do", "--", "/usr/bin/python3.11", script), capture_output=True,
                       timeout=120, preexec_fn=_limit_memory, cwd="/")
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == [b"written", b"4194305", b"4194305"]
