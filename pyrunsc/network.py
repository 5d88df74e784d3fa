"""The sandbox's network, per --network mode:

  none     the netstack with loopback only (the default);
  sandbox  the netstack on loopback and a tap device whose host side lives
           in a network namespace made for this sandbox (and removed with it);
  host     AF_INET/AF_INET6 sockets proxied to host sockets (sentry.hostinet):
           weaker isolation, as runsc's hostinet.

-p HOSTPORT:GUESTPORT publishes a guest TCP port on the host (sentry.portfwd).
setup_network builds all of it; the handle it returns takes it all down.
"""
from __future__ import annotations

import errno
import os
import signal
from dataclasses import dataclass, field

TYPE_CHECKING = False  # not typing's: importing typing costs a sandbox's start 3 ms
if TYPE_CHECKING:
    import ipaddress  # imported where an address is parsed: --network=none parses none

MODES = ("none", "sandbox", "host")
DEFAULT_ADDR = "10.0.2.15/24"   # QEMU user networking's guest address and gateway
DEFAULT_GATEWAY = "10.0.2.2"
TAP_NAME = "tap0"               # the tap device, inside that namespace
GUEST_NIC = "eth0"              # the interface the guest sees


class NetworkError(Exception):
    """Bad network options or a network that cannot be built (one line)."""


@dataclass(frozen=True)
class PortMapping:
    """-p [IP:]HOSTPORT:GUESTPORT[/tcp]."""
    host_ip: str
    host_port: int
    guest_port: int
    proto: str = "tcp"

    def __str__(self) -> str:
        ip = f"[{self.host_ip}]" if ":" in self.host_ip else self.host_ip
        return f"{ip}:{self.host_port}:{self.guest_port}/{self.proto}"


@dataclass
class NetworkConfig:
    mode: str = "none"
    publish: list[PortMapping] = field(default_factory=list)
    dns: list[str] = field(default_factory=list)   # sandbox mode's default: the gateway
    addr: str | None = None                        # sandbox mode: the guest's address/prefix
    gateway: str | None = None

    def validate(self) -> None:
        """ValueError saying what is wrong, in one line."""
        if self.mode not in MODES:
            raise ValueError(f"--network: unknown mode {self.mode!r} (none, sandbox or host)")
        if self.mode == "host" and self.publish:
            raise ValueError("-p: not with --network=host (the guest's ports are the host's own)")
        if self.dns:
            import ipaddress
        for ip in self.dns:
            try:
                ipaddress.ip_address(ip)
            except ValueError:
                raise ValueError(f"--dns: {ip!r} is not an IP address") from None
        if self.mode != "sandbox":
            for name, v in (("--net-addr", self.addr), ("--net-gw", self.gateway)):
                if v is not None:
                    raise ValueError(f"{name}: only with --network=sandbox")
            return
        iface, gw = self.interface(), self.gateway_address()
        if iface.ip == gw:
            raise ValueError(f"--net-gw: {gw} is the guest's own address")
        if gw not in iface.network or gw in (iface.network.network_address, iface.network.broadcast_address) \
                or iface.ip in (iface.network.network_address, iface.network.broadcast_address):
            raise ValueError(f"--net-addr {iface} / --net-gw {gw}: the gateway must be another host "
                             f"of the guest's subnet")

    def interface(self) -> ipaddress.IPv4Interface:
        import ipaddress
        text = self.addr or DEFAULT_ADDR
        try:
            iface = ipaddress.ip_interface(text if "/" in text else text + "/24")
        except ValueError:
            raise ValueError(f"--net-addr: {text!r} is not ADDRESS/PREFIX") from None
        if iface.version != 4 or iface.network.prefixlen > 30:
            raise ValueError(f"--net-addr: {text!r}: an IPv4 address with a prefix of at most /30")
        return iface

    def gateway_address(self) -> ipaddress.IPv4Address:
        import ipaddress
        text = self.gateway or DEFAULT_GATEWAY
        try:
            gw = ipaddress.ip_address(text)
        except ValueError:
            raise ValueError(f"--net-gw: {text!r} is not an IP address") from None
        if gw.version != 4:
            raise ValueError(f"--net-gw: {text!r}: an IPv4 address")
        return gw

    def nameservers(self) -> list[str]:
        return self.dns or ([str(self.gateway_address())] if self.mode == "sandbox" else [])


_PUBLISH = (r"^(?:(?:\[(?P<ip6>[0-9a-fA-F:.]+)\]|(?P<ip>[0-9.]+)):)?"
            r"(?P<host>\d+):(?P<guest>\d+)(?:/(?P<proto>[a-z]+))?$")


def parse_publish(spec: str) -> PortMapping:
    """-p [IP:]HOSTPORT:GUESTPORT[/tcp] (an IPv6 IP in brackets); the host
    IP defaults to 0.0.0.0, every IPv4 address, as Docker's -p does."""
    import ipaddress
    import re  # here: with -p only (the sandbox's start otherwise needs no regular expression)
    m = re.match(_PUBLISH, spec)
    if m is None:
        raise ValueError(f"-p {spec}: not [IP:]HOSTPORT:GUESTPORT[/tcp]")
    proto = m["proto"] or "tcp"
    if proto != "tcp":
        raise ValueError(f"-p {spec}: only tcp ports can be published")
    ip = m["ip6"] or m["ip"] or "0.0.0.0"
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        raise ValueError(f"-p {spec}: {ip!r} is not an IP address") from None
    if bool(m["ip6"]) != (addr.version == 6):
        raise ValueError(f"-p {spec}: an IPv6 address goes in brackets")
    ports = []
    for what in ("host", "guest"):
        port = int(m[what])
        if not 1 <= port <= 65535:
            raise ValueError(f"-p {spec}: {what} port {port} is not in 1-65535")
        ports.append(port)
    return PortMapping(str(addr), ports[0], ports[1], proto)


class NetworkHandle:
    """What setup_network built; close() takes it down in reverse order
    (idempotent; every step runs even if one fails)."""

    def __init__(self, kernel, config: NetworkConfig):
        self.kernel = kernel
        self.config = config
        self.stack = None
        self.netns = None        # the sandbox mode's namespace with the tap's host side
        self.forwards = []       # sentry.portfwd.PortForward per -p
        self._undo: list = []

    def on_close(self, fn) -> None:
        self._undo.append(fn)

    def close(self) -> None:
        undo, self._undo = self._undo, []
        first = None
        while undo:
            try:
                undo.pop()()
            except Exception as e:  # keep tearing down; report the first failure
                first = first or e
        if first is not None:
            raise first


def setup_network(kernel, config: NetworkConfig) -> NetworkHandle:
    """Build the network of config.mode for kernel (before its first
    process starts). NetworkError for what the user can fix (a port in
    use, a namespace that cannot be made); nothing is left behind then."""
    try:
        config.validate()
    except ValueError as e:
        raise NetworkError(f"pyrunsc: {e}") from None
    h = NetworkHandle(kernel, config)
    try:
        if config.mode == "host":
            _host_sockets(h)
        elif config.mode == "sandbox" or config.publish:
            _netstack(h)
            if config.mode == "sandbox":
                _tap(h)
            if config.publish:
                _publish(h)
        # else loopback alone: sentry.inet.stack_of makes that stack at the
        # guest's first use of the network (most containers never do)
        _name_files(h)
    except BaseException:
        try:
            h.close()
        except Exception:
            pass
        raise
    return h


# --- modes ---
def _host_sockets(h: NetworkHandle) -> None:
    from sentry import hostinet
    hostinet.install(h.kernel)
    h.on_close(lambda: hostinet.uninstall(h.kernel))


def _netstack(h: NetworkHandle) -> None:
    """The stack with its loopback interface (127.0.0.1/8, ::1/128)."""
    from netstack.stack import Stack
    k = h.kernel
    stack = Stack.with_loopback(k.netclock)
    h.stack = k.netstack = stack

    def drop():
        k.netstack = None
        close = getattr(stack, "close", None)
        if close is not None:
            close()
    h.on_close(drop)


def _tap(h: NetworkHandle) -> None:
    """A namespace holding the host side of a tap device (the gateway's
    address on it); the sentry keeps the tap's fd and the netstack drives
    it, with the guest's address and a default route via the gateway."""
    import subprocess
    from netstack import netns
    from netstack.link.ethernet import EthernetLink
    cfg, k, stack = h.config, h.kernel, h.stack
    iface, gw = cfg.interface(), cfg.gateway_address()
    netns.remove_stale()   # namespaces of sentries killed outright (SIGKILL)
    try:
        ns = netns.TapNamespace(host_addr=f"{gw}/{iface.network.prefixlen}", tap=TAP_NAME)
    except (OSError, subprocess.SubprocessError) as e:
        why = getattr(e, "stderr", None) or getattr(e, "strerror", None) or str(e)
        raise NetworkError(f"pyrunsc: --network=sandbox: cannot make the network namespace: "
                           f"{why.strip()}") from None
    h.netns = ns
    h.on_close(ns.close)
    _unwind_on_termination(h)
    # a locally administered MAC made of the guest's address, as Docker's 02:42:<ip>
    link = EthernetLink(ns.tap, mac=b"\x02\x50" + iface.ip.packed, clock=k.netclock)
    h.on_close(link.close)
    nic = stack.add_nic(link, GUEST_NIC)
    stack.add_address(nic, iface.ip.packed, iface.network.prefixlen)
    stack.add_route(bytes(4), 0, gw.packed, nic)
    watch = k.watch_fd(link.fileno(), _POLLIN, lambda revents: link.poll_in())
    h.on_close(lambda: k.unwatch_fd(watch))


def _unwind_on_termination(h: NetworkHandle) -> None:
    """SIGTERM and SIGHUP would end the process without unwinding, leaving
    the namespace behind: make them unwind (SystemExit, status 128+sig),
    unless someone (the console) already handles them."""
    def terminate(sig, _frame):
        raise SystemExit(128 + sig)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) is signal.SIG_DFL:
            signal.signal(sig, terminate)
            h.on_close(lambda sig=sig: signal.signal(sig, signal.SIG_DFL))


def _publish(h: NetworkHandle) -> None:
    from sentry.portfwd import PortForward
    guest = (h.config.interface().ip.packed if h.config.mode == "sandbox" else bytes((127, 0, 0, 1)))
    for p in h.config.publish:
        try:
            fwd = PortForward(h.kernel, h.stack, (p.host_ip, p.host_port), (guest, p.guest_port))
        except OSError as e:
            why = "port in use on the host" if e.errno == errno.EADDRINUSE else (e.strerror or str(e))
            raise NetworkError(f"pyrunsc: -p {p}: {why}") from None
        h.forwards.append(fwd)
        h.on_close(fwd.close)


_POLLIN = 0x1


# --- /etc/resolv.conf and /etc/hosts ---
def _name_files(h: NetworkHandle) -> None:
    """sandbox mode (or --dns): the guest's resolv.conf and hosts, written
    in the sandbox's own layer, never over the host's files."""
    cfg = h.config
    files = {}
    if cfg.mode == "sandbox" or cfg.dns:
        files[b"resolv.conf"] = "".join(f"nameserver {ip}\n" for ip in cfg.nameservers()).encode()
    if cfg.mode == "sandbox":
        host = os.fsdecode(getattr(h.kernel, "hostname", b"pyrunsc"))
        files[b"hosts"] = (f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                           f"{cfg.interface().ip}\t{host}\n").encode()
    if files:
        try:
            install_etc_files(h.kernel.mounts, files)
        except OSError as e:
            names = " and ".join(f"/etc/{n.decode()}" for n in files)
            raise NetworkError(f"pyrunsc: cannot write the sandbox's {names}: {e.strerror or e}") from None


def install_etc_files(tree, files: dict[bytes, bytes]) -> None:
    """Make /etc/NAME hold data for each item, inside the sandbox only: in
    the overlay's upper layer when /etc is on the overlay (a host symlink
    there is replaced, not followed), else as a file of a private tmpfs
    mounted over the name (--overlay=none, a read-only root), as Docker
    does."""
    import stat as S
    from vfs import ops
    from vfs.file import O_CREAT, O_EXCL, O_NOFOLLOW, O_WRONLY
    from vfs.overlay import OverlayFS
    from vfs.path import Creds, Dentry, PathContext
    from vfs.tmpfs import TmpFS
    ctx = PathContext(tree.root, tree.root, Creds())
    try:
        etc = tree.resolve(ctx, b"/etc")
    except FileNotFoundError:   # a --root without /etc
        if isinstance(tree.root.mount.fs, OverlayFS) and not tree.root.mount.readonly:
            ops.mkdir(tree, ctx, b"/etc", 0o755, 0o022)
            etc = tree.resolve(ctx, b"/etc")
        else:
            etc = tree.placeholder(tree.root, b"etc", S.S_IFDIR)
    if isinstance(etc.mount.fs, OverlayFS) and not etc.mount.readonly:
        for name, data in files.items():
            path = b"/etc/" + name
            try:
                ops.unlink(tree, ctx, path)
            except FileNotFoundError:
                pass
            desc = ops.open_path(tree, ctx, path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o644, 0o022)
            desc.incref()
            try:
                desc.write(data)
            finally:
                desc.decref()
        return
    fs = TmpFS()
    for name, data in files.items():
        inode = fs.root().create(name, S.S_IFREG | 0o644, 0, 0)
        inode.write_at(data, 0)
        try:
            at = tree.resolve(ctx, b"/etc/" + name, follow=False)
        except FileNotFoundError:
            at = tree.placeholder(etc, name, S.S_IFREG)
        tree.mount(at, fs, 0, "tmpfs", root=Dentry(b"/", None, fs.root()).child(name))


