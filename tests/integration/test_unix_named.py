"""Named and abstract AF_UNIX sockets in the sandbox: a C fixture run
natively and in the sandbox must print the same; abstract names stay
inside the sandbox; Python's socket module and pathlib see socket files."""
import os
import socket
import subprocess
import uuid

import pytest

from conftest import pyrunsc_cmd, run_do

PYTHON = "/usr/bin/python3.11"
HAVE_TESTSUITE = os.path.exists("/usr/lib/python3.11/test/test_pathlib.py")


def native(args):
    return subprocess.run(args, capture_output=True, timeout=60)


def test_named_sockets_match_native(cbin):
    prog = cbin("unix_named")
    r = run_do([prog], timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    n = native([prog])
    assert n.returncode == 0, n.stderr[-2000:]
    assert r.stdout == n.stdout
    out = r.stdout
    assert b"backlog 1 took 2, then EAGAIN" in out
    assert b"as nobody: -1 EACCES" in out and b"as nobody: 0" in out
    assert b"queued 11, then EAGAIN" in out


ABSTRACT_PY = r"""
import socket, sys, time
name = sys.argv[1].encode()
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(b"\0" + name)
s.listen(1)
c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    c.connect(b"\0" + name + b"-host")
    print("reached the host's socket")
except OSError as e:
    print("host name:", e.errno)
print("bound", flush=True)
sys.stdin.readline()
c.connect(b"\0" + name)
a, _ = s.accept()
c.sendall(b"inside")
print(a.recv(10).decode())
"""


def test_abstract_names_are_the_sandboxs_own():
    """An abstract name bound in the sandbox is not the host's, and the
    host's are out of the sandbox's reach."""
    name = f"pyrunsc-test-{uuid.uuid4().hex}"
    host = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    host.bind(b"\0" + f"{name}-host".encode())
    host.listen(1)
    proc = subprocess.Popen(pyrunsc_cmd("do", "--", PYTHON, "-c", ABSTRACT_PY, name),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        first = proc.stdout.readline()
        second = proc.stdout.readline()
        assert second == b"bound\n", (first, second)
        with open("/proc/net/unix") as f:
            assert f"@{name}\n" not in f.read()  # no host socket carries the sandbox's name
        out, err = proc.communicate(b"go\n", timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        host.close()
    assert first == f"host name: {111}\n".encode()  # ECONNREFUSED: the host's name is unknown here
    assert out == b"inside\n", err[-2000:]
    assert proc.returncode == 0


SERVER_PY = r"""
import os, socket, stat, threading
path = "/tmp/py.sock"
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(path)
srv.listen()
print(stat.S_ISSOCK(os.stat(path).st_mode), oct(os.stat(path).st_mode & 0o777))
def serve():
    conn, addr = srv.accept()
    with conn:
        conn.sendall(conn.recv(100).upper())
t = threading.Thread(target=serve)
t.start()
cli = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
cli.connect(path)
cli.sendall(b"hello")
print(cli.recv(100), cli.getpeername(), repr(cli.getsockname()))
t.join()
d = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
d.bind("/tmp/py.dgram")
e = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
e.bind("/tmp/py.dgram2")
e.sendto(b"dgram", "/tmp/py.dgram")
print(d.recvfrom(100))
for p in (path, "/tmp/py.dgram", "/tmp/py.dgram2"):
    os.unlink(p)
"""


def test_python_socket_server():
    r = run_do([PYTHON, "-c", SERVER_PY])
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout == (b"True 0o755\n"
                        b"b'HELLO' /tmp/py.sock ''\n"
                        b"(b'dgram', '/tmp/py.dgram2')\n")


@pytest.mark.skipif(not HAVE_TESTSUITE, reason="needs libpython3.11-testsuite")
def test_cpython_pathlib_is_socket():
    r = run_do([PYTHON, "-m", "unittest", "-v",
                "test.test_pathlib.PosixPathTest.test_is_socket_true",
                "test.test_pathlib.PathTest.test_is_socket_true"])
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stderr.count(b" ... ok") == 2, r.stderr[-3000:]


MANAGER_PY = r"""
import multiprocessing as mp
def work(d, l, i):
    d["child"] = True
    l.append(i)
if __name__ == "__main__":
    mp.set_start_method("fork")
    with mp.Manager() as m:  # a server process on a named AF_UNIX socket
        d, l = m.dict(), m.list([0])
        ps = [mp.Process(target=work, args=(d, l, i)) for i in (1, 2, 3)]
        for p in ps: p.start()
        for p in ps: p.join()
        print(dict(d), sorted(l))
"""


def test_multiprocessing_manager():
    args = [PYTHON, "-c", MANAGER_PY]
    r = run_do(args, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout == native(args).stdout == b"{'child': True} [0, 1, 2, 3]\n"
