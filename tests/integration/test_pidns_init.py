"""The sandbox's pid 1 takes signals as a pid namespace's init does on Linux
(SIGNAL_UNKILLABLE): tests/fixtures/pidns_init.c runs natively as pid 1 of
a fresh pid namespace (unshare) and as the sandbox's first process, and
both runs must print the same and end the same way."""
import subprocess

import pytest

from conftest import run_do

UNSHARE = ["unshare", "-m", "-p", "-f", "--mount-proc"]


def _native(args):
    try:
        r = subprocess.run(UNSHARE + args, capture_output=True, timeout=60, cwd="/var/tmp")
    except FileNotFoundError:
        pytest.skip("no unshare")
    if r.returncode != 0 and b"unshare:" in r.stderr:
        pytest.skip(f"cannot make a pid namespace here: {r.stderr.decode().strip()}")
    return r


def _status(rc: int) -> int:
    """unshare re-raises its child's fatal signal; pyrunsc exits 128+N."""
    return 128 - rc if rc < 0 else rc


def test_init_survives_default_actions_and_runs_handlers(cbin):
    prog = cbin("pidns_init")
    native = _native([prog])
    assert native.returncode == 0, native.stderr
    r = run_do([prog], timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout == native.stdout
    assert r.stdout.endswith(b"done\n")


@pytest.mark.parametrize("mode", ["fault", "abort", "seccomp"])
def test_a_fault_kills_init(cbin, mode):
    """A synchronous fault (and a seccomp trap's forced SIGSYS) is not a
    sent signal: it kills init, which ends the namespace."""
    prog = cbin("pidns_init")
    native = _native([prog, mode])
    r = run_do([prog, mode], timeout=120)
    assert _status(native.returncode) > 128, native
    assert r.stdout == native.stdout
    assert _status(r.returncode) == _status(native.returncode), r.stderr[-2000:]
