"""CPython's own regression tests under the sandbox (Debian's
libpython3.11-testsuite), compared with the same modules run natively.

Issue 3's and issue 4's modules run by default; a single test that cannot
pass yet is listed in KNOWN_FAILURES with its reason, and any other
failure, or a test count that differs from the native run, fails.
"""
import os
import re
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
from conftest import pyrunsc_cmd  # noqa: E402

PYTHON = "/usr/bin/python3.11"
pytestmark = pytest.mark.skipif(not os.path.exists("/usr/lib/python3.11/test/regrtest.py"),
                                reason="needs libpython3.11-testsuite")

DEFAULT = ["test_select", "test_time", "test_threading", "test_subprocess", "test_pty", "test_signal",
           # issue 4: filesystems
           "test_os", "test_posix", "test_fcntl", "test_shutil", "test_tempfile", "test_pathlib",
           "test_mmap", "test_glob", "test_io",
           # issue 5: sockets
           "test_socket"]
# Extra regrtest arguments per module: test_socket's VSOCK tests need a
# host vsock device, which neither side has.
ARGS = {"test_socket": ["-i", "*VSOCK*"]}
SLOW: list[str] = []

# Single tests that cannot pass yet, each with its reason; any other
# failure fails the run.
KNOWN_FAILURES = {
    "test_socket": {},
}


def run_regrtest(module, sandboxed, timeout=1800):
    args = [PYTHON, "-m", "test", "-v", module, *ARGS.get(module, ())]
    cmd = pyrunsc_cmd("do", "--", *args) if sandboxed else args
    return subprocess.run(cmd, capture_output=True, timeout=timeout, cwd="/")


def failed_tests(output: bytes) -> set[str]:
    """Names of the tests unittest reports as ERROR or FAIL."""
    return set(re.findall(r"^(?:ERROR|FAIL): (\w+) ", output.decode(errors="replace"), re.M))


def failure_reports(output: bytes, names) -> str:
    """unittest's own report (traceback and message) of each named failed
    test: what a failure in CI needs to be understood without a rerun."""
    text = output.decode(errors="replace")
    # a report runs from its ERROR/FAIL line to the next report's ==== rule
    # or the ---- rule before "Ran N tests"
    found = re.finditer(r"^(?:ERROR|FAIL): (\w+) .*?(?=^={20,}|^-{20,}\nRan |\Z)", text, re.M | re.S)
    return "\n".join(m.group(0)[-3000:] for m in found if m.group(1) in names)


def check(module):
    native = run_regrtest(module, sandboxed=False)
    if native.returncode != 0:
        pytest.skip(f"{module} fails natively here")
    r = run_regrtest(module, sandboxed=True)
    known = KNOWN_FAILURES.get(module, {})
    failed = failed_tests(r.stdout)
    assert failed <= set(known), (failed - set(known), failure_reports(r.stdout, failed - set(known)),
                                  r.stdout[-4000:].decode(errors="replace"))
    if not known:
        assert r.returncode == 0, r.stdout[-4000:].decode(errors="replace")
        assert b"Tests result: SUCCESS" in r.stdout
    # every test ran: as many as natively
    ran = re.search(rb"^Ran (\d+) tests?", r.stdout, re.M)
    ran_native = re.search(rb"^Ran (\d+) tests?", native.stdout, re.M)
    assert ran and ran_native and ran.group(1) == ran_native.group(1)


@pytest.mark.parametrize("module", DEFAULT)
def test_regrtest(module):
    check(module)


@pytest.mark.slow
@pytest.mark.parametrize("module", SLOW)
def test_regrtest_slow(module):
    check(module)


def test_failed_tests_are_read_from_unittest_output():
    out = b"ERROR: test_a (m.C.test_a)\nFAIL: test_b (m.C.test_b)\nok\n"
    assert failed_tests(out) == {"test_a", "test_b"}


def test_failure_reports_quote_unittest_tracebacks():
    out = (b"test_a (m.C.test_a) ... ERROR\ntest_b (m.C.test_b) ... ok\n\n"
           b"======================================================================\n"
           b"ERROR: test_a (m.C.test_a)\n"
           b"----------------------------------------------------------------------\n"
           b"Traceback (most recent call last):\n  File \"m.py\", line 3, in test_a\n"
           b"OSError: [Errno 98] Address already in use\n\n"
           b"======================================================================\n"
           b"FAIL: test_c (m.C.test_c)\n"
           b"----------------------------------------------------------------------\n"
           b"AssertionError: 1 != 2\n\n"
           b"----------------------------------------------------------------------\n"
           b"Ran 3 tests in 0.1s\n")
    got = failure_reports(out, {"test_a"})
    assert got.startswith("ERROR: test_a (m.C.test_a)") and "Address already in use" in got
    assert "test_c" not in got
    both = failure_reports(out, {"test_a", "test_c"})
    assert "AssertionError: 1 != 2" in both and "Ran 3" not in both
