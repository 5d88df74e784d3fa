"""In --network=none and --network=sandbox a guest reaches nothing of the
host's: not a TCP or UDP port on the host's 127.0.0.1, not the host's
abstract AF_UNIX names, not a host socket file. Each probe is checked from
both ends: the guest's call fails, and the host socket saw nothing."""
import os
import socket
import subprocess
import tempfile
import uuid

import pytest

from conftest import run_do

PYTHON = "/usr/bin/python3.11"
pytestmark = pytest.mark.skipif(not os.path.exists(PYTHON), reason="needs Debian's python3.11")

PROBE = r"""
import errno, socket, sys
tcp_port, udp_port, abstract, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]

def attempt(what, family, kind, addr, send=False):
    s = socket.socket(family, kind)
    s.settimeout(5)
    try:
        if send:
            s.sendto(b"escaped", addr)
            s.recv(10)        # an ICMP port unreachable comes back as ECONNREFUSED
        else:
            s.connect(addr)
        print(what, "REACHED")
    except socket.timeout:
        print(what, "timeout")
    except OSError as e:
        print(what, errno.errorcode.get(e.errno, e.errno))
    s.close()

attempt("tcp-loopback", socket.AF_INET, socket.SOCK_STREAM, ("127.0.0.1", tcp_port))
attempt("tcp6-loopback", socket.AF_INET6, socket.SOCK_STREAM, ("::1", tcp_port))
attempt("udp-loopback", socket.AF_INET, socket.SOCK_DGRAM, ("127.0.0.1", udp_port), send=True)
attempt("abstract", socket.AF_UNIX, socket.SOCK_STREAM, b"\0" + abstract.encode())
attempt("path", socket.AF_UNIX, socket.SOCK_STREAM, path)
if len(sys.argv) > 5:   # sandbox mode: the gateway is the namespace's kernel, not the host
    attempt("tcp-gateway", socket.AF_INET, socket.SOCK_STREAM, (sys.argv[5], tcp_port))
"""

EXPECTED = {"tcp-loopback": {"ECONNREFUSED"}, "tcp6-loopback": {"ECONNREFUSED"},
            "udp-loopback": {"ECONNREFUSED", "timeout"},
            "abstract": {"ECONNREFUSED"}, "path": {"ENOENT", "ECONNREFUSED", "EACCES"},
            "tcp-gateway": {"ECONNREFUSED", "EHOSTUNREACH", "ENETUNREACH", "timeout"}}


@pytest.mark.parametrize("mode", ["none", "sandbox"])
def test_guest_reaches_no_host_socket(mode):
    tmp = tempfile.mkdtemp(prefix="pyrunsc-netesc-", dir="/var/tmp")
    os.chmod(tmp, 0o755)
    path = os.path.join(tmp, "sock")
    socks = []
    try:
        def listener(family, kind, addr):
            s = socket.socket(family, kind)
            socks.append(s)
            s.bind(addr)
            if kind == socket.SOCK_STREAM:
                s.listen(4)
            s.setblocking(False)
            return s
        tcp = listener(socket.AF_INET, socket.SOCK_STREAM, ("127.0.0.1", 0))
        port = tcp.getsockname()[1]
        try:
            tcp6 = listener(socket.AF_INET6, socket.SOCK_STREAM, ("::1", port))
        except OSError:
            tcp6 = None
        udp = listener(socket.AF_INET, socket.SOCK_DGRAM, ("127.0.0.1", 0))
        name = f"pyrunsc-netesc-{uuid.uuid4().hex}"
        abstract = listener(socket.AF_UNIX, socket.SOCK_STREAM, b"\0" + name.encode())
        named = listener(socket.AF_UNIX, socket.SOCK_STREAM, path)
        args = [PYTHON, "-c", PROBE, str(port), str(udp.getsockname()[1]), name, path]
        if mode == "sandbox":
            args.append("10.0.2.2")
        r = run_do(args, do_opts=[f"--network={mode}"], timeout=180)
        assert r.returncode == 0, r.stderr[-3000:]
        results = dict(line.split(" ", 1) for line in r.stdout.decode().splitlines())
        assert set(results) == set(EXPECTED) - ({"tcp-gateway"} if mode == "none" else set()), results
        for what, got in results.items():
            assert got in EXPECTED[what], (what, got)
        for s in (tcp, tcp6, abstract, named):
            if s is not None:
                with pytest.raises(BlockingIOError):
                    s.accept()
        with pytest.raises(BlockingIOError):
            udp.recv(100)
    finally:
        for s in socks:
            s.close()
        subprocess.run(["rm", "-rf", tmp], timeout=30)
