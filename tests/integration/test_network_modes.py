"""The sandbox's network modes (--network none|sandbox|host), port
publishing (-p) and the name files, with real guests, host tools in the
sandbox mode's namespace, and host sockets. Every namespace is the one
pyrunsc makes for itself (pyrunsc-<sentry pid>-N); tests only check it
appears while the sandbox runs and is gone afterwards."""
import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import sys
import time

import psutil
import pytest

from conftest import pyrunsc_cmd, run_do

PYTHON = "/usr/bin/python3.11"
GUEST_ADDR, GATEWAY = "10.0.2.15", "10.0.2.2"
pytestmark = pytest.mark.skipif(not os.path.exists(PYTHON), reason="needs Debian's python3.11")


def namespaces(pid):
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30).stdout
    return [line.split()[0] for line in out.splitlines() if line.split() and
            line.split()[0].startswith(f"pyrunsc-{pid}-")]


def wait_for(what, timeout=90, step=0.2):
    """what() until it returns something true (then that), or fail."""
    deadline = time.monotonic() + timeout
    while True:
        got = what()
        if got:
            return got
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {getattr(what, '__name__', what)}")
        time.sleep(step)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def sandbox(args, do_opts=(), env=None):
    """pyrunsc running in the background; killed (SIGTERM, then SIGKILL)
    and its namespace checked gone at the end."""
    p = subprocess.Popen(pyrunsc_cmd("do", *do_opts, "--", *args), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, cwd="/",
                         env=env or os.environ.copy(), start_new_session=True)
    try:
        yield p
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        p.stdout.close()
        p.stderr.close()
    assert namespaces(p.pid) == []


@contextlib.contextmanager
def in_namespace(ns, argv):
    """A host tool running inside the sandbox's namespace, killed at the end."""
    p = subprocess.Popen(["ip", "netns", "exec", ns, *argv], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        yield p
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
        p.wait()


def ns_run(ns, argv, timeout=30):
    return subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, timeout=timeout)


# --- none ---------------------------------------------------------------
IFACES = "import socket; print(sorted(n for _, n in socket.if_nameindex()))"


def test_none_has_only_loopback():
    r = run_do([PYTHON, "-c", IFACES])
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout == b"['lo']\n"


CONNECT = r"""
import errno, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.settimeout(10)
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
    print("connected")
except OSError as e:
    print(errno.errorcode.get(e.errno, e))
"""


def test_none_loopback_is_the_sandboxs_own():
    """A port listening on the host's 127.0.0.1 is not there for the guest."""
    with socket.socket() as host:
        host.bind(("127.0.0.1", 0))
        host.listen(1)
        host.setblocking(False)
        r = run_do([PYTHON, "-c", CONNECT, "127.0.0.1", str(host.getsockname()[1])])
        assert r.returncode == 0, r.stderr[-2000:]
        assert r.stdout == b"ECONNREFUSED\n"
        with pytest.raises(BlockingIOError):
            host.accept()


# --- sandbox ------------------------------------------------------------
FETCH = r"""
import sys, time, urllib.request
deadline = time.monotonic() + 90
while True:
    try:
        print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode(), end="")
        break
    except OSError as e:
        if time.monotonic() > deadline:
            sys.exit(f"failed: {e}")
        time.sleep(0.3)
"""


def test_sandbox_guest_reaches_a_server_in_the_namespace(tmp_path):
    page = f"namespace-page-{os.getpid()}\n"
    (tmp_path / "index.html").write_text(page)
    port = 8000 + os.getpid() % 1000
    with sandbox([PYTHON, "-c", FETCH, f"http://{GATEWAY}:{port}/index.html"],
                 do_opts=["--network=sandbox"]) as p:
        ns = wait_for(lambda: namespaces(p.pid))[0]
        with in_namespace(ns, [sys.executable, "-m", "http.server", "--bind", GATEWAY,
                               "--directory", str(tmp_path), str(port)]):
            out, err = p.communicate(timeout=180)
    assert p.returncode == 0, err[-3000:]
    assert out.decode() == page


SERVE = r"""
import http.server, os, sys
os.chdir("/tmp")
open("index.html", "w").write(sys.argv[2] + "\n")
srv = http.server.HTTPServer(("0.0.0.0", int(sys.argv[1])), http.server.SimpleHTTPRequestHandler)
print("serving", flush=True)
srv.serve_forever()
"""


def test_sandbox_namespace_pings_and_fetches_from_the_guest():
    word = f"guest-page-{os.getpid()}"
    with sandbox([PYTHON, "-c", SERVE, "8000", word], do_opts=["--network=sandbox"]) as p:
        ns = wait_for(lambda: namespaces(p.pid))[0]
        assert p.stdout.readline() == b"serving\n"
        ping = ns_run(ns, ["ping", "-c", "1", "-W", "5", GUEST_ADDR])
        assert ping.returncode == 0, ping.stdout + ping.stderr
        curl = ns_run(ns, ["curl", "-sS", "--max-time", "30", f"http://{GUEST_ADDR}:8000/index.html"],
                      timeout=60)
        assert curl.returncode == 0, curl.stderr
        assert curl.stdout == f"{word}\n".encode()


@pytest.mark.skipif(not os.path.exists("/usr/bin/iperf3"), reason="needs iperf3")
def test_sandbox_iperf3_server_against_a_host_client():
    """iperf3 -s in the sandbox, the host kernel's iperf3 -c in the
    namespace: the client's run completes, and the server's own count of
    bytes received (which the client reports after the results exchange)
    is what the sender wrote, less what was in flight when its clock ran
    out; the one-off server then exits by itself."""
    import json
    with sandbox(["/usr/bin/iperf3", "-s", "-1"], do_opts=["--network=sandbox"]) as p:
        ns = wait_for(lambda: namespaces(p.pid))[0]

        def run_client():  # until the server listens (iperf3 -J reports errors with status 0)
            r = ns_run(ns, ["iperf3", "-c", GUEST_ADDR, "-t", "2", "-J"], timeout=60)
            return r if r.returncode == 0 and b'"error"' not in r.stdout else None
        client = wait_for(run_client, timeout=60, step=0.5)
        assert p.wait(timeout=60) == 0
    end = json.loads(client.stdout)["end"]
    sent, got = end["sum_sent"]["bytes"], end["sum_received"]["bytes"]
    assert sent > 0 and 0.9 * sent <= got <= sent


def test_sandbox_interfaces():
    r = run_do([PYTHON, "-c", IFACES], do_opts=["--network=sandbox"])
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout == b"['eth0', 'lo']\n"


@pytest.mark.parametrize("overlay", ["tmpfs", "none"])
def test_sandbox_name_files_stay_in_the_sandbox(overlay):
    """--dns and the guest's hosts entry are in the sandbox's files; the
    host's /etc/resolv.conf and /etc/hosts are untouched (also with the
    root served read-write)."""
    before = {f: open(f, "rb").read() for f in ("/etc/resolv.conf", "/etc/hosts") if os.path.exists(f)}
    r = run_do(["/bin/cat", "/etc/resolv.conf", "/etc/hosts"],
               do_opts=["--network=sandbox", f"--overlay={overlay}", "--dns", "192.0.2.53",
                        "--dns", "2001:db8::53"])
    assert r.returncode == 0, r.stderr[-2000:]
    out = r.stdout.decode()
    assert out.startswith("nameserver 192.0.2.53\nnameserver 2001:db8::53\n"), out
    assert f"{GUEST_ADDR}\tpyrunsc\n" in out and "127.0.0.1\tlocalhost\n" in out
    assert {f: open(f, "rb").read() for f in before} == before


def test_sandbox_default_nameserver_is_the_gateway():
    r = run_do(["/bin/cat", "/etc/resolv.conf"], do_opts=["--network=sandbox", "--net-addr", "10.9.0.5/16",
                                                          "--net-gw", "10.9.0.1"])
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout == b"nameserver 10.9.0.1\n"


@pytest.mark.parametrize("how", ["guest SIGKILL", "sentry crash"])
def test_sandbox_namespace_removed_on_abnormal_ends(how):
    env = os.environ.copy()
    if how == "guest SIGKILL":
        # init ignores a SIGKILL sent from inside its pid namespace (Linux
        # too): the host kills init's host process, as an OOM kill would
        args = ["/bin/sh", "-c", "kill -9 $$; exec sleep 60"]
    else:
        env["PYRUNSC_TEST_CRASH_IN"] = "getppid"
        args = ["/bin/sh", "-c", "/bin/sh -c 'echo $PPID'"]
    p = subprocess.Popen(pyrunsc_cmd("do", "--network=sandbox", "--", *args), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env, cwd="/", start_new_session=True)
    if how == "guest SIGKILL":
        def guest_sleep():  # the host shows a guest's command (PR_SET_NAME)
            found = []
            for c in psutil.Process(p.pid).children(recursive=True):
                with contextlib.suppress(psutil.NoSuchProcess):
                    if c.name() == "sleep":
                        found.append(c)
            return found
        wait_for(guest_sleep)[0].kill()
    out, err = p.communicate(timeout=120)
    assert p.returncode == (137 if how == "guest SIGKILL" else 70), err[-2000:]
    assert namespaces(p.pid) == []


# --- -p -----------------------------------------------------------------
ECHO = r"""
import hashlib, socket, struct, sys
srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", int(sys.argv[1])))
srv.listen(4)
print("ready", flush=True)
# first connection: read to EOF, answer with a digest and the bytes reversed, close
c, _ = srv.accept()
data = bytearray()
while True:
    b = c.recv(65536)
    if not b:
        break
    data += b
c.sendall(hashlib.sha256(data).hexdigest().encode() + bytes(reversed(data)))
c.close()
# second connection: reset it
c, _ = srv.accept()
c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
c.close()
print("done", flush=True)
"""


def _exchange(port, payload):
    with socket.create_connection(("127.0.0.1", port), timeout=60) as c:
        c.sendall(payload)
        c.shutdown(socket.SHUT_WR)  # the guest reads to EOF: the half-close must reach it
        got = bytearray()
        while True:
            b = c.recv(1 << 16)
            if not b:
                break
            got += b
    return bytes(got)


@pytest.mark.parametrize("mode", ["none", "sandbox"])
def test_publish_carries_bytes_half_close_and_reset(mode):
    port = free_port()
    payload = os.urandom(3 << 20)
    with sandbox([PYTHON, "-c", ECHO, "7000"],
                 do_opts=[f"--network={mode}", "-p", f"127.0.0.1:{port}:7000"]) as p:
        assert p.stdout.readline() == b"ready\n", p.stderr.read(3000) if p.poll() is not None else ""
        got = _exchange(port, payload)
        assert got[:64] == hashlib.sha256(payload).hexdigest().encode()
        assert got[64:] == payload[::-1]
        with pytest.raises(ConnectionResetError):  # the guest reset its side: so is ours
            with socket.create_connection(("127.0.0.1", port), timeout=60) as c:
                c.recv(10)
        assert p.stdout.readline() == b"done\n"
        assert p.wait(timeout=60) == 0


def test_publish_to_a_closed_guest_port_resets():
    port = free_port()
    with sandbox(["/bin/sh", "-c", "echo up; sleep 60"], do_opts=["-p", f"127.0.0.1:{port}:7001"]) as p:
        assert p.stdout.readline() == b"up\n"
        with pytest.raises(ConnectionResetError):
            with socket.create_connection(("127.0.0.1", port), timeout=30) as c:
                c.recv(10)


def test_publish_http_server():
    port = free_port()
    word = f"published-{os.getpid()}"
    with sandbox([PYTHON, "-c", SERVE, "8080", word], do_opts=["-p", f"127.0.0.1:{port}:8080"]) as p:
        assert p.stdout.readline() == b"serving\n"
        r = subprocess.run(["curl", "-sS", "--max-time", "30", f"http://127.0.0.1:{port}/index.html"],
                           capture_output=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert r.stdout == f"{word}\n".encode()


# --- host ---------------------------------------------------------------
HOST_CLIENT = r"""
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=30)
print(s.getsockname()[1], flush=True)
s.sendall(b"from-guest")
print(s.recv(100).decode())
"""


def test_host_mode_reaches_a_host_listener():
    with socket.socket() as host:
        host.bind(("127.0.0.1", 0))
        host.listen(1)
        host.settimeout(120)
        with sandbox([PYTHON, "-c", HOST_CLIENT, str(host.getsockname()[1])],
                     do_opts=["--network=host"]) as p:
            conn, peer = host.accept()
            with conn:
                assert conn.recv(100) == b"from-guest"
                conn.sendall(b"from-host")
            out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err[-2000:]
    # the guest's own socket is the one the host accepted
    assert out.decode().split("\n")[:2] == [str(peer[1]), "from-host"]


HOST_SOCKETS = r"""
import errno, fcntl, select, socket, struct, termios, time

def err(fn):
    try:
        fn()
        return "ok"
    except OSError as e:
        return errno.errorcode[e.errno]

for fam, lo in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
    srv = socket.socket(fam, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((lo, 0))
    srv.listen(2)
    port = srv.getsockname()[1]
    print("listening", srv.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN),
          [srv.getsockopt(socket.SOL_SOCKET, o) for o in (socket.SO_TYPE, socket.SO_DOMAIN, socket.SO_PROTOCOL)])
    c = socket.socket(fam, socket.SOCK_STREAM)
    c.setblocking(False)
    print("nonblocking connect", err(lambda: c.connect((lo, port))))
    select.select([], [c], [], 10)
    print("SO_ERROR", c.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR), "again", err(lambda: c.connect((lo, port))))
    c.setblocking(True)
    a, peer = srv.accept()
    print("peer is the client", peer[:2] == c.getsockname()[:2], a.getpeername()[:2] == c.getsockname()[:2])
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    print("nodelay", c.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0)
    c.sendall(b"x" * 1000)
    time.sleep(0.2)
    print("FIONREAD", struct.unpack("i", fcntl.ioctl(a, termios.FIONREAD, b"\0" * 4))[0],
          "peek", len(a.recv(10, socket.MSG_PEEK)), "read", len(a.recv(2000)))
    a.setblocking(False)
    print("empty", err(lambda: a.recv(10)))
    c.shutdown(socket.SHUT_WR)
    a.setblocking(True)
    print("eof", a.recv(10), select.select([a], [], [], 5)[0] != [])
    c.close(); a.close(); srv.close()
    print("refused", err(lambda: socket.create_connection((lo, port), timeout=10)))
    u = socket.socket(fam, socket.SOCK_DGRAM)
    u.bind((lo, 0))
    v = socket.socket(fam, socket.SOCK_DGRAM)
    v.sendto(b"0123456789", u.getsockname())
    data, flags, = u.recvmsg(4)[0::2]
    print("dgram", data, flags & socket.MSG_TRUNC != 0)
    u.close(); v.close()
"""


@pytest.mark.parametrize("how", ["native", "host mode"])
def test_host_mode_sockets_match_native(how):
    argv = [PYTHON, "-c", HOST_SOCKETS]
    r = (subprocess.run(argv, capture_output=True, timeout=60) if how == "native"
         else run_do(argv, do_opts=["--network=host"], timeout=120))
    assert r.returncode == 0, r.stderr[-3000:]
    native = subprocess.run(argv, capture_output=True, timeout=60)
    assert r.stdout == native.stdout
    assert r.stdout.count(b"nonblocking connect EINPROGRESS") == 2


HOST_SERVER = r"""
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(1)
print(s.getsockname()[1], flush=True)
c, _ = s.accept()
print(c.recv(100).decode(), flush=True)  # waits: the host writes after a pause
c.sendall(b"pong")
"""


def test_host_mode_guest_server_waits_for_the_host():
    with sandbox([PYTHON, "-c", HOST_SERVER], do_opts=["--network=host"]) as p:
        port = int(p.stdout.readline())
        with socket.create_connection(("127.0.0.1", port), timeout=30) as c:
            time.sleep(1)   # the guest is parked in recv meanwhile
            c.sendall(b"ping")
            assert c.recv(10) == b"pong"
        assert p.stdout.readline() == b"ping\n"
        assert p.wait(timeout=60) == 0


def test_host_mode_refuses_raw_sockets():
    r = run_do([PYTHON, "-c", "import socket\ntry:\n socket.socket(socket.AF_INET, socket.SOCK_RAW, 1)\n"
                "except OSError as e: print(e.errno)"], do_opts=["--network=host"])
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout == b"1\n"   # EPERM, as for a user without CAP_NET_RAW


# --- bad input ----------------------------------------------------------
@pytest.mark.parametrize("opts,words", [
    (["--network=bogus"], "unknown mode"),
    (["-p", "80"], "not [IP:]HOSTPORT:GUESTPORT"),
    (["-p", "1:2:3:4"], "not [IP:]HOSTPORT:GUESTPORT"),
    (["-p", "70000:80"], "not in 1-65535"),
    (["-p", "8080:80/udp"], "only tcp"),
    (["-p", "300.1.1.1:8080:80"], "not an IP address"),
    (["--network=host", "-p", "8080:80"], "not with --network=host"),
    (["--dns", "resolver"], "not an IP address"),
    (["--net-addr", "10.0.0.2/24"], "only with --network=sandbox"),
    (["--network=sandbox", "--net-gw", "192.168.1.1"], "another host of the guest's subnet"),
])
def test_bad_options(opts, words):
    r = run_do(["/bin/true"], do_opts=opts)
    assert r.returncode == 125
    err = r.stderr.decode()
    assert err.count("\n") == 1 and err.startswith("pyrunsc: ") and words in err, err


@pytest.mark.parametrize("mode", ["none", "sandbox"])
def test_port_in_use(mode):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        p = subprocess.Popen(pyrunsc_cmd("do", f"--network={mode}", "-p", f"127.0.0.1:{port}:80", "--",
                                         "/bin/true"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd="/")
        _, err = p.communicate(timeout=120)
    assert p.returncode == 125
    assert err.decode() == f"pyrunsc: -p 127.0.0.1:{port}:80/tcp: port in use on the host\n", err
    assert namespaces(p.pid) == []  # the sandbox mode's namespace was made, then removed
