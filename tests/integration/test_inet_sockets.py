"""AF_INET/AF_INET6 sockets in the sandbox over the netstack's loopback
(--network=none): the same programs natively and sandboxed."""
import subprocess

from conftest import run_do

PY = "/usr/bin/python3.11"


def test_socket_semantics_match_native(guest_fixture):
    script = guest_fixture("inet_semantics.py")
    # natively in a fresh network namespace with only lo, as the sandbox's --network=none
    native = subprocess.run(["unshare", "-n", "sh", "-c", f"ip link set lo up && exec {PY} {script}"],
                            capture_output=True, timeout=60)
    assert native.returncode == 0, native.stderr.decode()[-2000:]
    r = run_do([PY, script], timeout=120)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    assert r.stdout.decode().splitlines() == native.stdout.decode().splitlines()


def test_http_server_and_client_exchange_10mb(guest_fixture):
    r = run_do([PY, guest_fixture("inet_http.py")], timeout=300)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    sent, got = r.stdout.decode().split()
    assert sent == got


def test_asyncio_echo_server_with_20_clients(guest_fixture):
    r = run_do([PY, guest_fixture("inet_asyncio_echo.py")], timeout=300)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    assert r.stdout.decode().strip() == "clients ok: 20"


def test_static_stream_with_nonblocking_connect_and_epoll(cbin):
    prog = cbin("inet_stream")
    native = subprocess.run([prog, "4"], capture_output=True, timeout=120)
    assert native.stdout == b"ok 4194304\n", native
    r = run_do([prog, "4"], timeout=300)
    assert r.returncode == 0 and r.stdout == native.stdout, (r.stdout, r.stderr.decode()[-2000:])
