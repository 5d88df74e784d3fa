"""tmpfs semantics against Linux's own tmpfs: tests/fixtures/tmpfs_posix.c
mounts two tmpfs instances (a default one and a 64 KiB / 16-inode one)
under the directory it is given and prints what xattrs, fallocate, sparse
files, renameat2, O_TMPFILE, timestamps, link counts, statfs and a
non-root user's checks do there. Natively it runs as root in a private
mount namespace on a directory under /var/tmp; in the sandbox on /tmp.
The two outputs must be the same."""
import os
import shutil
import subprocess
import tempfile

import pytest

from conftest import run_do


def native_run(prog):
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("the native run mounts tmpfs: needs root and unshare(1)")
    where = tempfile.mkdtemp(prefix="pyrunsc-tmpfs-posix-", dir="/var/tmp")
    try:
        # the mounts die with the namespace when the program exits
        r = subprocess.run(["unshare", "--mount", "--propagation", "private", prog, where],
                           capture_output=True, timeout=120)
    finally:
        shutil.rmtree(where, ignore_errors=True)
    if r.returncode != 0 and b"mount:" in r.stdout:
        pytest.skip("cannot mount tmpfs here: " + r.stdout.decode(errors="replace"))
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def test_tmpfs_behaves_like_linux_tmpfs(cbin):
    prog = cbin("tmpfs_posix")
    want = native_run(prog)
    r = run_do([prog, "/tmp/tmpfs-posix"], timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    got = r.stdout.decode().splitlines()
    expected = want.decode().splitlines()
    assert len(got) > 200
    assert got == expected


def test_seek_data_and_hole_follow_the_sparse_store(cbin):
    prog = cbin("seek_holes")
    where = tempfile.mkdtemp(prefix="pyrunsc-seek-", dir="/var/tmp")
    try:
        native = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                                 f"mount -t tmpfs none {where} && {prog} {where}/f"],
                                capture_output=True, timeout=60)
    finally:
        shutil.rmtree(where, ignore_errors=True)
    if native.returncode != 0:
        pytest.skip("cannot mount tmpfs here")
    r = run_do([prog, "/tmp/f"])
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout == native.stdout
    assert b"12288: data 20480  hole 12288" in r.stdout
