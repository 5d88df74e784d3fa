"""AF_UNIX control messages in the sandbox: SCM_RIGHTS and SCM_CREDENTIALS
(tests/fixtures/unix_scm.c, run natively and in the sandbox, must print
the same), and CPython's own socket tests for the Unix family."""
import os
import re
import subprocess

import pytest

from conftest import run_do

PYTHON = "/usr/bin/python3.11"
HAVE_TESTSUITE = os.path.exists("/usr/lib/python3.11/test/test_socket.py")


def native(args, timeout=120):
    return subprocess.run(args, capture_output=True, timeout=timeout, cwd="/")


def same_as_native(args, timeout=120):
    r = run_do(args, timeout=timeout)
    assert r.returncode == 0, r.stderr[-2000:]
    n = native(args, timeout)
    assert n.returncode == 0, n.stderr[-2000:]
    assert r.stdout == n.stdout
    return r.stdout


def test_scm_rights_and_credentials_match_native(cbin):
    out = same_as_native([cbin("unix_scm")])
    # fds of pipes, files and sockets arrive and work, over each socket type
    assert out.count(b'  socket read "sock"\n') == 3 and out.count(b'  file read "cont"\n') == 3
    # a short control buffer: one installed (close-on-exec), the other closed
    assert out.count(b"  installed 1, open fds grew by 1\n") == 3
    assert b"fcntl(got[0], F_GETFD)" in out
    # a stream read stops after the message that carried fds
    assert b'recvmsg: 6 bytes "AAABBB"' in out and b'recvmsg: 9 bytes "CCCDDDDDD"' in out
    assert b'send_fds(sv[0], "max", fds, 254, 0)' in out and b"  got 253 fds\n" in out
    # credentials: what nobody may claim, and what a receiver sees
    assert b"  claim uid 0                   : -1 EPERM\n" in out or os.geteuid() != 0
    assert b"  creds pid 0 uid 65534 gid 65534\n" in out
    assert b"  passcred sender: address length 8, abstract 1\n" in out


UNIX_CLASSES = ["SendmsgUnixStreamTest", "RecvmsgUnixStreamTest", "RecvmsgIntoUnixStreamTest",
                "RecvmsgSCMRightsStreamTest", "RecvmsgIntoSCMRightsStreamTest", "BasicSocketPairTest",
                "TestLinuxAbstractNamespace", "TestUnixDomain"]


@pytest.mark.skipif(not HAVE_TESTSUITE, reason="needs libpython3.11-testsuite")
def test_cpython_unix_socket_tests():
    """CPython's test_socket classes for AF_UNIX pass in the sandbox, the
    same tests as natively."""
    args = [PYTHON, "-m", "test", "test_socket", "-v"]
    for c in UNIX_CLASSES:
        args += ["-m", c]
    r = run_do(args, timeout=600)
    out = r.stdout.decode(errors="replace")
    assert r.returncode == 0, out[-4000:]
    n = native(args, 600).stdout.decode(errors="replace")
    ran = re.findall(r"^Ran (\d+) tests", out, re.M)
    assert ran and ran == re.findall(r"^Ran (\d+) tests", n, re.M), out[-4000:]
    assert int(ran[0]) > 80
