"""File mappings coherent with read/write, as on Linux: MAP_SHARED stores
reach the file, write() reaches the mappings, separately mapping processes
share, private mappings see the file until they write. The same fixture
runs natively and in the sandbox on its tmpfs and on the overlay root."""
import os
import shutil
import subprocess
import tempfile

import pytest

from conftest import run_do


@pytest.fixture
def host_dir():
    d = tempfile.mkdtemp(prefix="pyrunsc-fmap-", dir="/var/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def native_output(prog, d):
    r = subprocess.run([prog, d], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.mark.parametrize("where", ["tmpfs", "overlay", "gofer"])
def test_shared_and_private_file_mappings(cbin, host_dir, where):
    prog = cbin("shared_file_map")
    want = native_output(prog, host_dir)
    # overlay: a host directory the sandbox sees through its root; gofer: bound read-write
    path = {"tmpfs": "/tmp", "overlay": host_dir, "gofer": "/data"}[where]
    opts = ["--mount", f"{host_dir}:/data:rw"] if where == "gofer" else []
    r = run_do([prog, path], do_opts=opts)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout == want
    assert b"parent sees the child's store            bKbbaaCCaz" in r.stdout
    assert os.listdir(host_dir) == []  # the overlay kept the sandbox's files; the fixture unlinks its own


def test_stores_through_a_live_mapping_reach_a_bound_host_file(host_dir):
    # the guest exits with the mapping still there and never calls msync
    script = ("import mmap, os\n"
              "with open('/data/f', 'wb') as f: f.write(b'a' * 8192)\n"
              "f = open('/data/f', 'r+b')\n"
              "m = mmap.mmap(f.fileno(), 8192)\n"
              "m[100:105] = b'HELLO'\n"
              "os._exit(0)\n")
    r = run_do(["/usr/bin/python3.11", "-c", script], do_opts=["--mount", f"{host_dir}:/data:rw"])
    assert r.returncode == 0, r.stderr[-2000:]
    with open(os.path.join(host_dir, "f"), "rb") as f:
        data = f.read()
    assert len(data) == 8192 and data[98:107] == b"aaHELLOaa"


def test_python_mmap_write_through_and_large_sparse_file():
    script = (
        "import mmap, os\n"
        "p = '/tmp/f'\n"
        "with open(p, 'wb') as f: f.write(b'a' * 10)\n"
        "with open(p, 'r+b') as f:\n"
        "    m = mmap.mmap(f.fileno(), 10)\n"
        "    m[:] = b'c' * 10\n"
        "    print(open(p, 'rb').read().decode())\n"
        "    m.close()\n"
        "with open(p, 'r+b') as f:\n"
        "    f.seek((4 << 30) + 3); f.write(b'x')\n"
        "with open(p, 'rb') as f:\n"
        "    m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)\n"
        "    print(len(m), m[:3].decode(), m[-1:].decode(), m[1 << 31])\n")
    r = run_do(["/usr/bin/python3.11", "-c", script], timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == [b"cccccccccc", str((4 << 30) + 4).encode(), b"ccc", b"x", b"0"]
