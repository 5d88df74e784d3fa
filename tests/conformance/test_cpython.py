"""CPython's own regression tests under the sandbox (Debian's
libpython3.11-testsuite), compared with the same modules run natively.

The default slice is what passes today and runs quickly; the whole list of
issue 3's modules runs with `python -m pytest -m slow`.
"""
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
from conftest import pyrunsc_cmd  # noqa: E402

PYTHON = "/usr/bin/python3.11"
pytestmark = pytest.mark.skipif(not os.path.exists("/usr/lib/python3.11/test/regrtest.py"),
                                reason="needs libpython3.11-testsuite")

DEFAULT = ["test_select", "test_time", "test_threading", "test_subprocess", "test_pty"]
SLOW = ["test_signal"]  # its wakeup-fd tests need AF_INET sockets (issue 5)


def run_regrtest(module, sandboxed, timeout=1800):
    args = [PYTHON, "-m", "test", module]
    cmd = pyrunsc_cmd("do", "--", *args) if sandboxed else args
    return subprocess.run(cmd, capture_output=True, timeout=timeout, cwd="/")


def check(module):
    native = run_regrtest(module, sandboxed=False)
    if native.returncode != 0:
        pytest.skip(f"{module} fails natively here")
    r = run_regrtest(module, sandboxed=True)
    assert r.returncode == 0, r.stdout[-4000:].decode(errors="replace")
    assert b"Tests result: SUCCESS" in r.stdout


@pytest.mark.parametrize("module", DEFAULT)
def test_regrtest(module):
    check(module)


@pytest.mark.slow
@pytest.mark.parametrize("module", SLOW)
def test_regrtest_slow(module):
    check(module)
