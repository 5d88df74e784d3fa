import os
import shutil
import subprocess
import sys
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Tests run against the checkout (pip install -e . builds the extensions in place).
sys.path.insert(0, ROOT)
FIXTURES = os.path.join(ROOT, "tests", "fixtures")


def pyrunsc_cmd(*args):
    return [sys.executable, "-m", "pyrunsc.cli", *args]


def run_do(args, *, strace=False, timeout=120, input=None, do_opts=()):
    """Run `pyrunsc do [opts] -- args`; returns CompletedProcess (bytes)."""
    opts = list(do_opts) + (["--strace"] if strace else [])
    return subprocess.run(pyrunsc_cmd("do", *opts, "--", *args), capture_output=True,
                          timeout=timeout, input=input, cwd="/", env=os.environ.copy())


@pytest.fixture(scope="session")
def cbin():
    """Compile a C fixture statically (cached per session): cbin('escape').
    Built under /var/tmp: the sandbox's /tmp is its own tmpfs."""
    out = tempfile.mkdtemp(prefix="pyrunsc-cbin-", dir="/var/tmp")
    built = {}

    def build(name, *flags):
        if name not in built:
            exe = os.path.join(out, name)
            subprocess.run(["gcc", "-O1", "-static", "-o", exe, os.path.join(FIXTURES, name + ".c"), *flags],
                           check=True)
            built[name] = exe
        return built[name]
    yield build
    shutil.rmtree(out, ignore_errors=True)


@pytest.fixture(scope="session")
def guest_fixture():
    """A copy of a fixture script the sandbox can read: guest_fixture('x.py').
    The checkout may live under the host's /tmp, which the sandbox's own
    /tmp hides, so scripts are copied under /var/tmp first."""
    out = tempfile.mkdtemp(prefix="pyrunsc-fixtures-", dir="/var/tmp")
    os.chmod(out, 0o755)  # guests running as other users read them too

    def copy(name):
        dst = os.path.join(out, name)
        if not os.path.exists(dst):
            shutil.copy(os.path.join(FIXTURES, name), dst)
            os.chmod(dst, 0o644)
        return dst
    yield copy
    shutil.rmtree(out, ignore_errors=True)


@pytest.fixture(params=[False, True], ids=["plain", "strace"])
def strace(request):
    return request.param


def have(cmd):
    return shutil.which(cmd) is not None
