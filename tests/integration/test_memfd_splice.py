"""memfd_create with seals, and sendfile/copy_file_range/splice/tee/
vmsplice: C fixtures run natively and in the sandbox must print the same,
plus CPython's own memfd test."""
import os
import subprocess

import pytest

from conftest import run_do

PYTHON = "/usr/bin/python3.11"
HAVE_TESTSUITE = os.path.exists("/usr/lib/python3.11/test/test_os.py")


def native(args):
    return subprocess.run(args, capture_output=True, timeout=60)


def same_as_native(args, **kw):
    r = run_do(args, **kw)
    assert r.returncode == 0, r.stderr[-2000:]
    n = native(args)
    assert n.returncode == 0, n.stderr[-2000:]
    assert r.stdout == n.stdout
    return r


def test_memfd_and_seals(cbin):
    r = same_as_native([cbin("memfd")])
    out = r.stdout
    assert b"fd link: /memfd:Hi (deleted)\n" in out
    assert b"maps: /memfd:mapped (deleted)\n" in out
    # the write seal waits for shared mappings to go
    assert b"fcntl(s, F_ADD_SEALS, F_SEAL_WRITE)" in out and b"EBUSY" in out


def test_write_seals_against_mappings(cbin):
    r = same_as_native([cbin("memfd_seal_map")])
    assert b"writable shared map: Operation not permitted\nmprotect writable: -1 Permission denied" in r.stdout


def test_sendfile_splice_tee_vmsplice_copy_file_range(cbin):
    r = same_as_native([cbin("splice"), "/dev/shm"], timeout=120)
    out = r.stdout
    assert b"q after the wait: \"splice\"" in out  # a splice waited for room in a full pipe
    assert b"q got: \"late\"" in out               # and for data in an empty one
    assert out.count(b"SIGPIPEs: 1") == 2 and b"SIGPIPEs: 2" in out


@pytest.mark.skipif(not HAVE_TESTSUITE, reason="needs libpython3.11-testsuite")
def test_cpython_memfd_create_tests():
    r = run_do([PYTHON, "-m", "unittest", "-v", "test.test_os.MemfdCreateTests"])
    assert r.returncode == 0, r.stderr[-3000:]
    assert b"test_memfd_create" in r.stderr and b"OK" in r.stderr


SENDFILE_PY = r"""
import os
r, w = os.pipe()
fd = os.memfd_create("src")
os.write(fd, b"0123456789" * 1000)
print(os.sendfile(w, fd, 100, 20), os.lseek(fd, 0, os.SEEK_CUR))
print(os.read(r, 100))
os.lseek(fd, 5, os.SEEK_SET)
print(os.sendfile(w, fd, None, 3), os.lseek(fd, 0, os.SEEK_CUR), os.read(r, 10))
dst = os.memfd_create("dst")
print(os.copy_file_range(fd, dst, 50, 7, 0), os.pread(dst, 50, 0))
"""


def test_python_sendfile_and_copy_file_range():
    args = [PYTHON, "-c", SENDFILE_PY]
    r = run_do(args)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout == native(args).stdout
    assert r.stdout.splitlines()[0] == b"20 10000"
