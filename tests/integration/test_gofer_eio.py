"""A gofer that dies gives the guest EIO on that mount, never a hang, and
the sandbox stays up: the guest (tests/fixtures/gofer_eio.c) lists
directories, looks up fresh names and reads a file in a loop; the test
kills the gofer's host process under it, either while the guest waits for
the word (sync) or while it is busy (the gofer may die mid-request); the
guest must see EIO from every kind of operation and exit normally, and
pyrunsc with it."""
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time

import psutil
import pytest

from conftest import pyrunsc_cmd


def gofers_serving(pid: int, root: str) -> list[psutil.Process]:
    out = []
    for p in psutil.Process(pid).children(recursive=True):
        try:
            argv = p.cmdline()
        except psutil.NoSuchProcess:
            continue
        if "vfs.gofer.server" in argv and argv[argv.index("--root") + 1] == root:
            out.append(p)
    return out


def read_line(proc: subprocess.Popen, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    line = b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([proc.stdout], [], [], left)[0]:
            break
        ch = os.read(proc.stdout.fileno(), 1)
        if not ch:
            break
        line += ch
    return line


def mount_supported() -> bool:
    out = subprocess.run(pyrunsc_cmd("do", "--help"), capture_output=True, timeout=60).stdout
    return b"--mount" in out


@pytest.fixture
def export():
    d = tempfile.mkdtemp(prefix="gofer-eio-", dir="/var/tmp")
    os.mkdir(os.path.join(d, "dir"))
    for i in range(3000):  # one fresh directory to list per round
        os.mkdir(os.path.join(d, "dir", f"sub{i}"))
    for i in range(5):
        with open(os.path.join(d, "dir", f"f{i}"), "w") as f:
            f.write(f"file {i}\n")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def run_and_kill(argv, opts, served_root) -> tuple[int, bytes, bytes]:
    p = subprocess.Popen(pyrunsc_cmd("do", *opts, "--", *argv), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, stdin=subprocess.PIPE, cwd="/")
    try:
        first = read_line(p, 60)
        assert first == b"ready\n", (first, p.stderr.read1(4000) if p.poll() is not None else b"")
        victims = gofers_serving(p.pid, served_root)
        assert len(victims) == 1, victims
        victims[0].send_signal(signal.SIGKILL)
        victims[0].wait(10)
        out, err = p.communicate(b"go\n", timeout=90)
        return p.returncode, first + out, err
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


EXPECTED = b"ready\nlist: Input/output error\nstat: Input/output error\n" \
           b"open: Input/output error\nread: Input/output error\n"


@pytest.mark.parametrize("mode", ["sync", "busy"])
def test_root_gofer_dies_under_a_guest(cbin, export, mode):
    """The root file system's gofer (the overlay's lower layer) dies."""
    prog = cbin("gofer_eio")
    rc, out, err = run_and_kill([prog, f"{export}/dir", f"{export}/dir/f3", mode], [], "/")
    assert (rc, out) == (0, EXPECTED), err[-3000:]
    assert b"Traceback" not in err


@pytest.mark.parametrize("mode", ["sync", "busy"])
def test_mount_gofer_dies_under_a_guest(cbin, export, mode):
    """A --mount bind's gofer dies: only that mount fails (the shell then
    reads a file of the root file system, through its own gofer)."""
    if not mount_supported():
        pytest.skip("pyrunsc do has no --mount yet")
    prog = cbin("gofer_eio")
    script = f'{prog} /mnt/eio/dir /mnt/eio/dir/f3 {mode}; echo "rc=$?"; read -r line < /etc/passwd; echo "$line"'
    rc, out, err = run_and_kill(["/bin/sh", "-c", script], ["--mount", f"{export}:/mnt/eio:ro"], export)
    with open("/etc/passwd", "rb") as f:
        first_line = f.readline()
    assert (rc, out) == (0, EXPECTED + b"rc=0\n" + first_line), err[-3000:]
    assert b"Traceback" not in err
