"""Syscalls of threads that race, under the real sentry, against native runs.

The sentry serves the stops of threads that ran at once in the order they
stopped (sentry/kernel.py _first_stop, PtracePlatform.take_first), not in
waitpid's order, which lists a thread group leader first: CPython's
test_socket NetworkConnectionAttributesTest.testSourceAddress failed 1 run
in 4 with EBADF from getsockname, because the main thread's close(), made
after the client thread's getsockname() on the same fd, was served first."""
import subprocess

from conftest import run_do


def native(args):
    return subprocess.run(args, capture_output=True, timeout=60)


def same_as_native(args):
    r = run_do(args)
    assert r.returncode == 0, r.stderr[-2000:]
    n = native(args)
    assert n.returncode == 0, n.stderr[-2000:]
    assert r.stdout == n.stdout, (r.stdout, n.stdout)
    return r


def test_a_call_made_first_is_served_first(cbin):
    # Natively none of the 100 getsockname calls fails; served in waitpid's
    # order about half did (the close overtook them).
    r = same_as_native([cbin("fd_races", "-pthread"), "order"])
    assert r.stdout == b"order: 0 of 100 calls failed (none)\n"


def test_calls_served_out_of_waitpid_order_keep_their_own_arguments(cbin):
    # Three threads at once: stops taken together and served one by one
    # must each keep their syscall's arguments and result.
    r = same_as_native([cbin("fd_races", "-pthread"), "mix"])
    assert r.stdout == b"mix: 0 of 3 threads saw a wrong result\n"
