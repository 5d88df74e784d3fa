"""inotify and dnotify (fcntl F_NOTIFY) under the real sentry:
tests/fixtures/inotify.c runs natively in a host directory, then in the
sandbox on its /tmp (tmpfs) and in a directory of the overlay root (new
files in the upper layer, plus a file of the lower layer that gets copied
up); every output must be the native one."""
import os
import shutil
import subprocess
import tempfile

import pytest

from conftest import run_do


@pytest.fixture
def host_dir():
    d = tempfile.mkdtemp(prefix="pyrunsc-inotify-", dir="/var/tmp")
    os.chmod(d, 0o755)  # the fixture's unprivileged child walks through it
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _subdir(base, name):
    path = os.path.join(base, name)
    os.mkdir(path, 0o755)
    return path


def native_output(prog, base):
    r = subprocess.run([prog, _subdir(base, "native")], capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def sandboxed_output(*args):
    r = run_do(list(args), timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def test_inotify_on_tmpfs(cbin, host_dir):
    prog = cbin("inotify")
    expect = native_output(prog, host_dir)
    assert b"== dnotify" in expect and b"Q_OVERFLOW" in expect
    assert sandboxed_output(prog, "/tmp") == expect


def test_inotify_on_overlay(cbin, host_dir):
    """In an overlay directory; the lower layer's file pre/f is watched,
    appended to (copy-up keeps its watch) and deleted. The host's files
    stay as they were."""
    prog = cbin("inotify")
    expect = native_output(prog, host_dir)
    upper_dir = _subdir(host_dir, "ov")
    lower = _subdir(host_dir, "lower")
    os.mkdir(os.path.join(lower, "pre"))
    with open(os.path.join(lower, "pre", "f"), "w") as f:
        f.write("old\n")
    assert sandboxed_output(prog, upper_dir, lower) == expect
    assert os.listdir(upper_dir) == []
    with open(os.path.join(lower, "pre", "f")) as f:
        assert f.read() == "old\n"


def test_python_watches_its_own_changes(host_dir):
    """An inotify user in a high-level language (ctypes from Python): a
    blocking read wakes for a file a child process creates."""
    script = r"""
import ctypes, os, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
d = sys.argv[1] + "/py"
os.mkdir(d)
fd = libc.inotify_init1(os.O_CLOEXEC)
wd = libc.inotify_add_watch(fd, d.encode(), 0x100 | 0x8)  # IN_CREATE | IN_CLOSE_WRITE
if os.fork() == 0:
    open(d + "/new", "w").write("x")
    os._exit(0)
seen = []
while len(seen) < 2:
    buf = os.read(fd, 4096)
    while buf:
        w, mask, cookie, n = struct.unpack_from("iIII", buf)
        seen.append((w == wd, hex(mask), buf[16:16 + n].rstrip(b"\0").decode()))
        buf = buf[16 + n:]
os.wait()
print(seen)
"""
    expect = subprocess.run(["python3", "-c", script, host_dir], capture_output=True, timeout=60)
    assert expect.returncode == 0, expect.stderr
    assert b"'0x100', 'new'" in expect.stdout
    assert sandboxed_output("/usr/bin/python3", "-c", script, "/tmp") == expect.stdout
