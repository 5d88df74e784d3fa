"""AF_NETLINK (NETLINK_ROUTE), the interface ioctls and /proc/net under
the real sentry, compared with Linux: every program runs once in the
sandbox (--network=none: lo alone) and once as root in a fresh network
namespace whose only interface, lo, is up (`unshare -n`; the namespace
dies with its process). Changes to the interfaces are the one designed
difference: Linux lets root make them, the sandbox refuses them
(EOPNOTSUPP; EPERM without privilege, as Linux)."""
import difflib
import json
import subprocess

import pytest

from conftest import run_do

PYTHON = "/usr/bin/python3.11"
IP = "/usr/sbin/ip"
SECTIONS = ("ioctl", "ifconf", "socket", "requests", "malformed", "sizing", "overrun", "groups",
            "options", "libc", "blocking", "unprivileged")
# iproute2's views; every one asks the kernel through NETLINK_ROUTE (and a few ioctls)
IP_COMMANDS = (
    "ip addr", "ip -d addr", "ip link", "ip -d link", "ip -s link", "ip route", "ip -6 route",
    "ip -4 addr", "ip -6 addr", "ip -6 addr show dev lo", "ip addr show dev lo", "ip link show lo",
    "ip link show nope", "ip route show table local", "ip -6 route show table local",
    "ip route show table all", "ip route show table default", "ip -6 route show table default",
    "ip route get 127.0.0.5", "ip route get 127.255.255.255", "ip route get 10.1.1.1", "ip -6 route get ::1",
    "ip rule", "ip -6 rule", "ip neigh", "ip -j addr", "ip -br addr", "ip -br link", "ip -o addr",
    "ip maddr", "ip netconf", "ip link set lo up")
PROC_NET = ("dev", "if_inet6", "route", "igmp", "igmp6", "dev_mcast", "snmp", "netstat", "arp")


def native(args, timeout=60):
    """args as root in a new network namespace with lo up."""
    return subprocess.run(["unshare", "-n", "--", "/bin/sh", "-c", f'{IP} link set lo up && exec "$@"', "sh", *args],
                          capture_output=True, timeout=timeout)


@pytest.fixture(scope="module", autouse=True)
def netns_available():
    r = subprocess.run(["unshare", "-n", "--", "true"], capture_output=True, timeout=30)
    if r.returncode != 0:
        pytest.skip(f"cannot make a network namespace: {r.stderr.decode().strip()}")


def script_of(commands):
    """One shell script running each command, labelled, with its status."""
    return "".join(f'echo "== {c}"; {c} 2>&1; echo "rc=$?"; ' for c in commands)


def assert_same(sandboxed: bytes, natively: bytes, what: str):
    if sandboxed != natively:
        diff = "\n".join(difflib.unified_diff(natively.decode(errors="replace").splitlines(),
                                              sandboxed.decode(errors="replace").splitlines(),
                                              "linux", "sandbox", lineterm="", n=2))
        pytest.fail(f"{what} differs from Linux:\n{diff}")


def both(args):
    r = run_do(list(args))
    assert r.returncode == 0, r.stderr[-2000:]
    n = native(list(args))
    assert n.returncode == 0, n.stderr[-2000:]
    return r.stdout, n.stdout


def test_iproute2_prints_what_it_prints_on_linux():
    sandboxed, natively = both(["/bin/sh", "-c", script_of(IP_COMMANDS)])
    assert b"1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN" in sandboxed
    assert_same(sandboxed, natively, "iproute2's output")


def test_proc_net_files_match_linux():
    """The files, and the net-tools and busybox commands that read them
    (with the interface ioctls)."""
    cmds = [f"cat /proc/net/{name}" for name in PROC_NET] + [
        "ifconfig", "ifconfig -a", "ifconfig lo", "route -n", "netstat -i", "netstat -rn", "netstat -s",
        "arp -n", "hostname -I", "busybox ifconfig", "busybox route -n", "busybox ip addr", "ethtool lo"]
    sandboxed, natively = both(["/bin/sh", "-c", script_of(cmds)])
    assert_same(sandboxed, natively, "/proc/net")


def test_getifaddrs_and_if_nameindex(cbin):
    exe = cbin("netlink_getifaddrs")
    sandboxed, natively = both([exe])
    assert b"lo flags=0x10049 addr=127.0.0.1 mask=255.0.0.0" in sandboxed
    assert_same(sandboxed, natively, "getifaddrs")


@pytest.fixture(scope="module")
def probe_runs(guest_fixture):
    """netlink_probe.py's sections, run once in the sandbox and once natively."""
    path = guest_fixture("netlink_probe.py")
    out = {}
    for where, run in (("sandbox", lambda a: run_do(a)), ("linux", native)):
        r = run([PYTHON, path, *SECTIONS])
        assert r.returncode == 0, (where, r.stderr[-2000:])
        sections, current = {}, None
        for line in r.stdout.decode(errors="replace").splitlines(keepends=True):
            if line.startswith("#### "):
                current = line[5:].strip()
                sections[current] = ""
            elif current is not None:
                sections[current] += line
        out[where] = sections
    return out


@pytest.mark.parametrize("section", SECTIONS)
def test_netlink_and_ioctls_behave_as_linux(probe_runs, section):
    """ioctl: every SIOCGIF* on AF_INET/AF_INET6/AF_UNIX/AF_NETLINK sockets,
    no-op setters; ifconf: SIOCGIFCONF sizing; socket: types, protocols,
    port ids, connect, unicast and multicast between sockets; requests:
    every dump and get, plain and with NETLINK_GET_STRICT_CHK and
    NETLINK_EXT_ACK; malformed: short, overlong, unaligned, non-request
    and unknown messages; sizing: MSG_PEEK|MSG_TRUNC, truncation, control
    messages; overrun: SO_RCVBUF and ENOBUFS; groups, options; libc:
    if_nameindex and getaddrinfo(AI_ADDRCONFIG); blocking: SO_RCVTIMEO,
    a parked reader woken by another process, a sender waiting for room;
    unprivileged: EPERM."""
    sandboxed = probe_runs["sandbox"].get(section)
    assert sandboxed is not None, f"the probe printed no {section} section in the sandbox"
    assert sandboxed.strip(), section
    assert_same(sandboxed.encode(), probe_runs["linux"][section].encode(), f"probe section {section!r}")


def test_random_requests_never_break_the_socket(guest_fixture):
    r = run_do([PYTHON, guest_fixture("netlink_probe.py"), "fuzz"])
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.endswith(b"fuzz done True\n"), r.stdout[-500:]


def test_changes_to_interfaces_are_refused():
    """Root may not reconfigure the sandbox's interfaces (EOPNOTSUPP) but
    may ask for what already holds; nothing changes either way."""
    changes = ("ip addr add 10.9.9.9/24 dev lo", "ip link set lo mtu 1500", "ip route add 10.0.0.0/8 dev lo",
               "ip addr del 127.0.0.1/8 dev lo", "ip link set lo down", "ip -6 route add 2001:db8::/64 dev lo")
    cmds = ("ip addr",) + changes + ("ip link set lo up", "ip link set lo mtu 65536", "ip addr")
    r = run_do(["/bin/sh", "-c", script_of(cmds)])
    assert r.returncode == 0, r.stderr[-2000:]
    out = r.stdout.decode()
    for c in changes:
        assert f"== {c}\nRTNETLINK answers: Operation not supported\nrc=2\n" in out, out
    assert "== ip link set lo up\nrc=0\n" in out and "== ip link set lo mtu 65536\nrc=0\n" in out, out
    first, last = out.split("== ip addr\n")[1:]
    assert last.startswith(first.split("rc=0\n")[0]), out


def test_sandbox_network_mode_shows_its_interface():
    """--network=sandbox adds an Ethernet interface with the configured
    address and default route; iproute2 and /proc/net show it as Linux
    would show such an interface."""
    r = run_do(["/bin/sh", "-c", "ip -j addr; ip -j route; ip -j -6 route; cat /proc/net/route"],
               do_opts=["--network=sandbox"])
    if r.returncode != 0 and b"network" in r.stderr.lower() and b"namespace" in r.stderr.lower():
        pytest.skip(r.stderr.decode()[-300:])
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.decode().splitlines()
    addrs, routes, routes6 = (json.loads(x) for x in lines[:3])
    eth = [a for a in addrs if a["ifname"] != "lo"]
    assert len(eth) == 1, addrs
    eth = eth[0]
    assert eth["flags"] == ["BROADCAST", "MULTICAST", "UP", "LOWER_UP"] and eth["operstate"] == "UP"
    assert eth["link_type"] == "ether" and eth["broadcast"] == "ff:ff:ff:ff:ff:ff"
    assert [(i["family"], i["local"], i["prefixlen"], i.get("broadcast"), i["scope"]) for i in eth["addr_info"]] == \
        [("inet", "10.0.2.15", 24, "10.0.2.255", "global")]
    dev = eth["ifname"]
    assert routes == [{"dst": "default", "gateway": "10.0.2.2", "dev": dev, "flags": []},
                      {"dst": "10.0.2.0/24", "dev": dev, "protocol": "kernel", "scope": "link",
                       "prefsrc": "10.0.2.15", "flags": []}]
    assert routes6 == []
    table = lines[3:]
    assert table[1].split("\t")[:4] == [dev, "00000000", "0202000A", "0003"]
    assert table[2].split("\t")[:4] == [dev, "0002000A", "00000000", "0001"]
