"""Control messages on AF_INET/AF_INET6 datagram sockets (receive options,
per-send IP_TTL/IP_TOS/IP_PKTINFO and their IPv6 twins, MSG_CTRUNC
truncation), UDP-Lite, UDP GSO and ICMP echo sockets: the same script
natively and in the sandbox (--network=none), compared line by line."""
import subprocess

from conftest import run_do

PY = "/usr/bin/python3.11"


def test_ancillary_data_matches_native(guest_fixture):
    script = guest_fixture("inet_ancillary.py")
    # natively in a fresh network namespace with only lo, as --network=none;
    # the namespace's ping_group_range opens echo sockets as the sandbox does
    native = subprocess.run(
        ["unshare", "-n", "sh", "-c", "ip link set lo up && "
         "sysctl -qw net.ipv4.ping_group_range='0 2147483647' && "
         f"exec {PY} {script}"], capture_output=True, timeout=60)
    assert native.returncode == 0, native.stderr.decode()[-2000:]
    r = run_do([PY, script], timeout=300)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    assert r.stdout.decode().splitlines() == native.stdout.decode().splitlines()
