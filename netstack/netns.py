"""A throwaway network namespace holding a tap device whose fd this
process owns: the netstack drives the fd, the host kernel inside the
namespace is the peer (its side of the tap has `host_addr`).

Names carry our pid (`<prefix>-<pid>-<n>`), so `remove_stale()` can
delete what a killed process left behind without touching namespaces of
live processes.
"""
from __future__ import annotations

import errno
import ipaddress
import itertools
import os
import re
import signal
import subprocess

from .link.tap import TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, TapDevice

PREFIX = "pyrunsc"
# What the kernel may hand the tap: TCP super-frames with partial checksums
# (completed by TapDevice). Measured here, it doubles host-to-netstack TCP
# throughput: the per-segment cost of the Python stack is paid per 64 KiB.
OFFLOADS = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6
_counter = itertools.count()


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=check)


def list_netns() -> list:
    out = _ip("netns", "list").stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def delete_namespace(name: str) -> None:
    """`ip netns del NAME`; OSError when ip fails (other than: no such)."""
    r = _ip("netns", "del", name, check=False)
    if r.returncode != 0 and name in list_netns():
        raise OSError(errno.EBUSY, f"ip netns del {name}: {r.stderr.strip()}")


def remove_stale(prefix: str = PREFIX) -> list:
    """Delete namespaces named `<prefix>-<pid>` or `<prefix>-<pid>-<n>`
    whose pid is gone."""
    removed = []
    pat = re.compile(re.escape(prefix) + r"-(\d+)(-\d+)?$")
    for name in list_netns():
        m = pat.match(name)
        if m and not os.path.exists(f"/proc/{m.group(1)}"):
            _ip("netns", "del", name, check=False)
            removed.append(name)
    return removed


class TapNamespace:
    """A namespace `name` (default: unique, `pyrunsc-<pid>-<n>`) with the
    tap `tap` in it, its kernel side holding host_addr ("a.b.c.d/len");
    made by the constructor, removed by close() or the with-block's end.
    ns.tap (the TapDevice), ns.host_addr and ns.peer_addr (bytes: the
    kernel's address and the next one, for a netstack), ns.run([...]),
    ns.popen([...]). offload=False: plain frames, no virtio-net header."""

    def __init__(self, name: str | None = None, *, host_addr: str = "10.213.7.1/24", tap: str = "tap0",
                 mtu: int = 1500, prefix: str = PREFIX, offload: bool = True,
                 host_addr6: str | None = None):
        iface = ipaddress.ip_interface(host_addr)
        self.prefixlen = iface.network.prefixlen
        self.host_ip = iface.ip
        hosts = (h for h in iface.network.hosts() if h != iface.ip)
        self.peer_ip = next(hosts, None)
        self.host_addr = self.host_ip.packed
        self.peer_addr = self.peer_ip.packed if self.peer_ip is not None else None
        self.host_addr6 = host_addr6
        self.tap_name = tap
        self.mtu = mtu
        self.name = name or f"{prefix}-{os.getpid()}-{next(_counter)}"
        self.offload = offload
        self.tap: TapDevice | None = None
        self._procs: list = []
        self._created = False
        try:
            self._create()
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> "TapNamespace":
        return self

    def __exit__(self, *exc):
        self.close()

    def _create(self) -> None:
        r = _ip("netns", "add", self.name, check=False)
        if r.returncode != 0:
            raise OSError(errno.EEXIST if "exists" in r.stderr else errno.EPERM,
                          f"ip netns add {self.name}: {r.stderr.strip()}")
        self._created = True
        self.tap = TapDevice.open(self.tap_name, self.name, vnet_hdr=self.offload,
                                  offload=OFFLOADS if self.offload else None)
        n = ("-n", self.name)
        _ip(*n, "link", "set", "lo", "up")
        _ip(*n, "link", "set", self.tap.name, "mtu", str(self.mtu))
        _ip(*n, "addr", "add", f"{self.host_ip}/{self.prefixlen}", "dev", self.tap.name)
        if self.host_addr6:
            _ip(*n, "-6", "addr", "add", self.host_addr6, "dev", self.tap.name, "nodad")
        _ip(*n, "link", "set", self.tap.name, "up")

    def command(self, argv) -> list:
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, argv, *, timeout: float = 30, input=None, check: bool = False,
            text: bool = True) -> subprocess.CompletedProcess:
        """Run a host tool inside the namespace, output captured. Only for
        tools that need no answer from a netstack driven by this thread
        (use popen and drive the loop until it exits otherwise)."""
        return subprocess.run(self.command(argv), capture_output=True, timeout=timeout,
                              input=input, check=check, text=text)

    def popen(self, argv, **kw) -> subprocess.Popen:
        """Start a host tool inside the namespace; killed at teardown if it
        is still running. Output is captured (pipes) unless kw says."""
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        kw.setdefault("stdin", subprocess.DEVNULL)
        p = subprocess.Popen(self.command(argv), start_new_session=True, **kw)
        self._procs.append(p)
        return p

    def close(self) -> None:
        """Kill what popen started, close the tap, delete the namespace
        (idempotent)."""
        for p in self._procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                p.communicate(timeout=10)
            except (subprocess.TimeoutExpired, ValueError):
                pass
        self._procs.clear()
        if self.tap is not None:
            self.tap.close()
            self.tap = None
        if self._created:
            self._created = False
            delete_namespace(self.name)
