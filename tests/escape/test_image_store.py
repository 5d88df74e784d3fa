"""The image store (platforms/ptrace/images.py) lets the host kernel map
file bytes into guests. A guest must not reach it (its fd 4 is the host
process's, not the guest's), and views of it must behave as private file
mappings. Compared with a native run of the same fixture."""
import os
import subprocess

from conftest import run_do


def test_image_store_is_out_of_reach_and_private(cbin):
    # under /var/tmp: the sandbox's /tmp is its own tmpfs
    path = "/var/tmp/pyrunsc-imagestore-small"
    with open(path, "wb") as f:
        f.write(b"\xff" * 20000)  # more than the store's minimum, not page-aligned
    try:
        prog = cbin("imagestore")
        args = [prog, "/usr/bin/python3.11", path]
        want = subprocess.run(args, capture_output=True, timeout=60).stdout
        r = run_do(args)
        assert r.returncode == 0, r.stderr[-2000:]
        assert r.stdout == want
        assert r.stdout.count(b"Bad file descriptor") == 3
        assert b"child sees the original: 1" in r.stdout and b"tail of the last page is zero: 1" in r.stdout
    finally:
        os.unlink(path)
