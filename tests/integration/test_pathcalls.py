"""Path and metadata calls as Linux answers them (tests/fixtures/pathcalls.c):
openat2's RESOLVE_* rules and argument checks, statx, faccessat2, fchownat,
utimensat, fadvise, readahead, sync_file_range, FIFOs made by mknod
(blocking opens, EOF, POLLHUP, EPIPE, EINTR) and getdents64 across
unlinks. The fixture runs natively in a scratch directory under /var/tmp,
and in the sandbox on its /tmp (tmpfs) and on the overlay root (a host
directory: the sandbox's writes land in the overlay's upper layer). The
outputs must be the same. Then FIFOs between two processes of a shell."""
import os
import shutil
import signal
import subprocess
import tempfile

import pytest

from conftest import have, run_do


def _scratch(prefix):
    return tempfile.mkdtemp(prefix=prefix, dir="/var/tmp")


def native_run(prog):
    where = _scratch("pyrunsc-pathcalls-")
    # its own session: a timeout kills the fixture and any child it forked
    p = subprocess.Popen([prog, where], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         start_new_session=True)
    try:
        out, err = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        raise
    finally:
        shutil.rmtree(where, ignore_errors=True)
    assert p.returncode == 0, err[-2000:]
    return out.decode().splitlines()


@pytest.fixture(scope="module")
def pathcalls(cbin):
    prog = cbin("pathcalls")
    want = native_run(prog)
    assert len(want) > 100 and "openat2 BENEATH ..                           Invalid cross-device link" in want
    return prog, want


def test_pathcalls_on_tmpfs(pathcalls):
    prog, want = pathcalls
    r = run_do(["/bin/sh", "-c", f"mkdir /tmp/pc && exec {prog} /tmp/pc"])
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.decode().splitlines() == want


def test_pathcalls_on_overlay_root(pathcalls):
    prog, want = pathcalls
    where = _scratch("pyrunsc-pathcalls-ovl-")
    try:
        r = run_do([prog, where])
        assert os.listdir(where) == []  # the files, fifo included, went to the upper layer
    finally:
        shutil.rmtree(where, ignore_errors=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.decode().splitlines() == want


# Whichever end opens first waits for the other; 100 KB and more do not fit
# in the pipe, so the writer also waits for room.
FIFO_SCRIPT = """
{mkfifo} {d}/f
{cat} {d}/f > {d}/out & {seq} 1 20000 > {d}/f; wait
{wc} -l < {d}/out; {tail} -n 1 {d}/out
({seq} 1 30000 > {d}/f) & {wc} -l < {d}/f; wait
({echo} one; {echo} two) > {d}/f & {cat} {d}/f; wait
"""
WANT = b"20000\n20000\n30000\none\ntwo\n"


def _fifo_script(d, busybox=False):
    tools = {c: (f"busybox {c}" if busybox else c) for c in ("mkfifo", "cat", "seq", "wc", "tail", "echo")}
    return FIFO_SCRIPT.format(d=d, **tools)


@pytest.mark.parametrize("shell", ["sh", "busybox"])
def test_fifo_between_processes(shell):
    if shell == "busybox" and not have("busybox"):
        pytest.skip("no busybox")
    argv = ["busybox", "sh", "-c", _fifo_script("/tmp", busybox=True)] if shell == "busybox" \
        else ["/bin/sh", "-c", _fifo_script("/tmp")]
    r = run_do(argv)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout == WANT


def test_fifo_on_overlay_root_and_host_fifo():
    """A fifo made in a host directory (overlay upper layer), and a fifo the
    host made (lower layer, which the gofer never opens): both are the
    sandbox's own pipes."""
    where = _scratch("pyrunsc-fifo-ovl-")
    try:
        os.mkfifo(os.path.join(where, "hostfifo"))
        script = _fifo_script(where) + f"(echo via host fifo > {where}/hostfifo) & cat {where}/hostfifo; wait\n"
        r = run_do(["/bin/sh", "-c", script])
        assert sorted(os.listdir(where)) == ["hostfifo"]
    finally:
        shutil.rmtree(where, ignore_errors=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout == WANT + b"via host fifo\n"
