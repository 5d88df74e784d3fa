"""The sandbox's network interfaces as Linux's net_device shows them, and
the interface ioctls (netdevice(7)) every socket answers.

`devices(stack)` turns the netstack's NICs into Device views with the
fields the kernel reports (flags with IFF_RUNNING/IFF_LOWER_UP, ARP
hardware type, queue length...); rtnetlink, /proc/net and the ioctls all
read them, so the three always agree.

The ioctls follow net/core/dev_ioctl.c (any socket family) and
net/ipv4/devinet.c (the address requests, AF_INET sockets only). Setters
need CAP_NET_ADMIN: a non-root guest gets EPERM, as on Linux. The
sandbox's interfaces belong to the runtime, not the guest, so even root
changes nothing: a setter that asks for what already holds succeeds
(`ifconfig lo up`), any real change is EOPNOTSUPP.
"""
from __future__ import annotations

import errno
import struct
from dataclasses import dataclass

from vfs.inode import fserr

from .socketfile import privileged

AF_UNSPEC, AF_INET, AF_INET6 = 0, 2, 10
IFNAMSIZ = 16
IFF_UP, IFF_BROADCAST, IFF_DEBUG, IFF_LOOPBACK = 0x1, 0x2, 0x4, 0x8
IFF_POINTOPOINT, IFF_NOTRAILERS, IFF_RUNNING, IFF_NOARP = 0x10, 0x20, 0x40, 0x80
IFF_PROMISC, IFF_ALLMULTI, IFF_MULTICAST, IFF_PORTSEL = 0x100, 0x200, 0x1000, 0x2000
IFF_AUTOMEDIA, IFF_DYNAMIC, IFF_LOWER_UP = 0x4000, 0x8000, 0x10000
# what dev_change_flags lets a caller change (the rest is the device's state)
IFF_CHANGEABLE = (IFF_UP | IFF_DEBUG | IFF_NOTRAILERS | IFF_NOARP | IFF_DYNAMIC | IFF_MULTICAST
                  | IFF_PORTSEL | IFF_AUTOMEDIA | IFF_PROMISC | IFF_ALLMULTI)
ARPHRD_ETHER, ARPHRD_LOOPBACK, ARPHRD_NONE = 1, 772, 0xFFFE
TXQLEN = 1000               # DEFAULT_TX_QUEUE_LEN; loopback has it too
IFREQ = 40                  # sizeof(struct ifreq): a name and a 24-byte union
IN6_IFREQ = 24              # struct in6_ifreq: address, prefix length, interface index
IFCONF = struct.Struct("<i4xQ")   # ifc_len, ifc_buf
SIN = struct.Struct("<H2x4s8x")   # sockaddr_in with port 0

SIOCADDRT, SIOCDELRT = 0x890B, 0x890C
SIOCGIFNAME, SIOCGIFCONF, SIOCGIFFLAGS, SIOCSIFFLAGS = 0x8910, 0x8912, 0x8913, 0x8914
SIOCGIFADDR, SIOCSIFADDR, SIOCGIFDSTADDR, SIOCSIFDSTADDR = 0x8915, 0x8916, 0x8917, 0x8918
SIOCGIFBRDADDR, SIOCSIFBRDADDR, SIOCGIFNETMASK, SIOCSIFNETMASK = 0x8919, 0x891A, 0x891B, 0x891C
SIOCGIFMETRIC, SIOCSIFMETRIC, SIOCGIFMTU, SIOCSIFMTU = 0x891D, 0x891E, 0x8921, 0x8922
SIOCSIFNAME, SIOCSIFHWADDR, SIOCGIFHWADDR, SIOCGIFSLAVE, SIOCSIFSLAVE = 0x8923, 0x8924, 0x8927, 0x8929, 0x8930
SIOCADDMULTI, SIOCDELMULTI, SIOCGIFINDEX = 0x8931, 0x8932, 0x8933
SIOCSIFPFLAGS, SIOCGIFPFLAGS, SIOCDIFADDR, SIOCSIFHWBROADCAST = 0x8934, 0x8935, 0x8936, 0x8937
SIOCGIFTXQLEN, SIOCSIFTXQLEN, SIOCETHTOOL = 0x8942, 0x8943, 0x8946
SIOCGIFMAP, SIOCSIFMAP = 0x8970, 0x8971
ETHTOOL_GLINK = 0x0000000A

# devinet_ioctl's requests: AF_INET sockets only (ENOTTY elsewhere)
_INET_GET = (SIOCGIFADDR, SIOCGIFBRDADDR, SIOCGIFNETMASK, SIOCGIFDSTADDR)
_INET_SET = (SIOCSIFADDR, SIOCSIFBRDADDR, SIOCSIFNETMASK, SIOCSIFDSTADDR)
# dev_ioctl's setters (any family), refused without CAP_NET_ADMIN
_DEV_SET = (SIOCSIFFLAGS, SIOCSIFMETRIC, SIOCSIFMTU, SIOCSIFMAP, SIOCSIFHWADDR, SIOCSIFSLAVE,
            SIOCADDMULTI, SIOCDELMULTI, SIOCSIFHWBROADCAST, SIOCSIFNAME, SIOCSIFTXQLEN)
_DEV_GET = (SIOCGIFFLAGS, SIOCGIFMETRIC, SIOCGIFMTU, SIOCGIFSLAVE, SIOCGIFMAP, SIOCGIFINDEX,
            SIOCGIFTXQLEN, SIOCGIFHWADDR)


@dataclass
class Device:
    """One NIC as net_device: what ip, ifconfig and /proc/net read."""
    index: int
    name: bytes
    mtu: int
    mac: bytes | None           # None: loopback (six zeros) or a link without one (IP-level, as tun)
    flags: int                  # IFF_* as dev_get_flags reports them
    addrs: list                 # [(address bytes, prefix length)] in the NIC's order
    counters: object = None     # the NIC's statistics (a mapping), if it keeps any
    txqlen: int = TXQLEN

    @property
    def loopback(self) -> bool:
        return bool(self.flags & IFF_LOOPBACK)

    @property
    def up(self) -> bool:
        return bool(self.flags & IFF_UP)

    @property
    def arptype(self) -> int:
        if self.loopback:
            return ARPHRD_LOOPBACK
        return ARPHRD_ETHER if self.mac else ARPHRD_NONE

    @property
    def hwaddr(self) -> bytes:
        """dev_addr: empty for a link without hardware addresses."""
        if self.loopback:
            return bytes(6)
        return self.mac or b""

    @property
    def broadcast_hw(self) -> bytes:
        if self.loopback:
            return bytes(6)
        return b"\xff" * 6 if self.mac else b""

    def addrs4(self) -> list:
        return [(a, p) for a, p in self.addrs if len(a) == 4]

    def addrs6(self) -> list:
        return [(a, p) for a, p in self.addrs if len(a) == 16]

    def stat(self, name: str) -> int:
        """A counter by rtnl_link_stats64's field name (0 when not kept)."""
        c = self.counters
        if c is None:
            return 0
        try:
            return int(c.get(name, 0)) if hasattr(c, "get") else int(getattr(c, name, 0))
        except (TypeError, ValueError):
            return 0


def _name(nic) -> bytes:
    n = nic.name
    return n.encode() if isinstance(n, str) else bytes(n)


def device_of(nic) -> Device:
    """The Device view of one netstack NIC (duck-typed on the NIC fields
    docs/netstack.md lists)."""
    mac = getattr(nic, "mac", None)
    flags = getattr(nic, "flags", None)
    loop = getattr(nic, "loopback", None)
    if loop is None:
        loop = mac is None
    if not isinstance(flags, int):
        flags = IFF_UP | (IFF_LOOPBACK if loop else IFF_BROADCAST | IFF_MULTICAST)
    if loop:
        flags |= IFF_LOOPBACK
    if flags & IFF_UP:
        flags |= IFF_RUNNING | IFF_LOWER_UP   # carrier is always on
    else:
        flags &= ~(IFF_RUNNING | IFF_LOWER_UP)
    counters = getattr(nic, "counters", None)
    if counters is None:
        counters = getattr(nic, "stats", None)
    return Device(index=nic.index, name=_name(nic), mtu=nic.mtu, mac=None if loop else mac,
                  flags=flags, addrs=[(bytes(a), int(p)) for a, p in nic.addrs], counters=counters)


def devices(stack) -> list[Device]:
    """Every interface, by index (for_each_netdev's order)."""
    if stack is None:
        return []
    return sorted((device_of(n) for n in stack.nics), key=lambda d: d.index)


def by_name(stack, name: bytes) -> Device | None:
    for d in devices(stack):
        if d.name == name:
            return d
    return None


def by_index(stack, index: int) -> Device | None:
    for d in devices(stack):
        if d.index == index:
            return d
    return None


def ifindex(stack, name: bytes) -> int:
    """SO_BINDTODEVICE's lookup: ENODEV for no such interface."""
    d = by_name(stack, name)
    if d is None:
        raise fserr(errno.ENODEV)
    return d.index


def ifname(stack, index: int) -> bytes:
    d = by_index(stack, index)
    if d is None:
        raise fserr(errno.ENODEV)
    return d.name


def netmask4(plen: int) -> bytes:
    return ((0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF).to_bytes(4, "big")


def broadcast4(dev: Device, addr: bytes, plen: int) -> bytes | None:
    """The broadcast address an IPv4 address carries (ifa_broadcast): the
    subnet's on a broadcast-capable device (not loopback), none for /31
    and /32, as `ip addr add ... brd +` sets it."""
    if not dev.flags & IFF_BROADCAST or plen >= 31:
        return None
    mask = int.from_bytes(netmask4(plen), "big")
    return (int.from_bytes(addr, "big") | (~mask & 0xFFFFFFFF)).to_bytes(4, "big")


# --------------------------------------------------------------------------
# ioctls
# --------------------------------------------------------------------------

def _ifr_name(ifr: bytes) -> tuple[bytes, bytes]:
    """(the name as given, NUL-terminated at IFNAMSIZ-1; the device part
    before an alias's colon)."""
    name = ifr[:IFNAMSIZ - 1].split(b"\0", 1)[0]
    return name, name.split(b":", 1)[0]


def _put(ifr: bytes, offset: int, value: bytes) -> bytes:
    """The ifreq with `value` stored in its union at `offset`; the rest of
    the union keeps the caller's bytes, as the kernel copies it all back."""
    at = IFNAMSIZ + offset
    return ifr[:at] + value + ifr[at + len(value):]


def netdevice_ioctl(k, t, stack, request: int, arg: int, family: int = AF_INET, mem=None) -> int:
    """One interface ioctl on a socket of `family`; `mem` reads and writes
    the caller's memory (the task's own by default). ENOTTY for requests
    that are not interface requests."""
    if mem is None:
        mem = t.thread
    if request == SIOCGIFCONF:
        return _ifconf(stack, arg, mem)
    inet = family == AF_INET
    if request in (SIOCADDRT, SIOCDELRT):
        if family not in (AF_INET, AF_INET6):
            raise fserr(errno.ENOTTY)
        mem.read(arg, 40 if inet else 32)       # struct rtentry / in6_rtmsg
        _refuse_change(t)
    if family == AF_INET6 and request in (SIOCSIFADDR, SIOCDIFADDR, SIOCSIFDSTADDR):
        return _inet6_set(t, stack, request, arg, mem)
    if request in _INET_GET + _INET_SET + (SIOCGIFPFLAGS, SIOCSIFPFLAGS) and not inet:
        raise fserr(errno.ENOTTY)
    if request not in _DEV_GET + _DEV_SET + _INET_GET + _INET_SET + (
            SIOCGIFNAME, SIOCGIFPFLAGS, SIOCSIFPFLAGS, SIOCETHTOOL):
        raise fserr(errno.ENOTTY)
    ifr = bytes(mem.read(arg, IFREQ))
    ifr = ifr[:IFNAMSIZ - 1] + b"\0" + ifr[IFNAMSIZ:]   # the kernel terminates the name in place
    if request == SIOCGIFNAME:
        dev = by_index(stack, struct.unpack_from("<i", ifr, IFNAMSIZ)[0])
        if dev is None:
            raise fserr(errno.ENODEV)
        named = dev.name + b"\0"                # strcpy: the rest of ifr_name stays
        mem.write(arg, named + ifr[len(named):])
        return 0
    if request in _INET_GET + _INET_SET + (SIOCGIFPFLAGS, SIOCSIFPFLAGS):
        out = _devinet(t, stack, request, ifr)
    elif request == SIOCETHTOOL:
        return _ethtool(stack, ifr, mem)
    elif request in _DEV_SET:
        out = _dev_set(t, stack, request, ifr)
    else:
        out = _dev_get(stack, request, ifr)
    mem.write(arg, out)
    return 0


def kernel_stack(k):
    """The kernel's netstack (made with loopback alone if the sandbox's
    network setup made none), or None without a kernel."""
    if k is None:
        return None
    from .inet import stack_of
    return stack_of(k)


def net_ioctl(sock, request: int, arg: int, mem) -> int:
    """An interface ioctl on any socket file (SocketFile.ioctl's 0x89xx)."""
    k = sock.kernel
    t = k.current if k is not None else None
    return netdevice_ioctl(k, t, kernel_stack(k), request, arg, sock.family, mem)


def _refuse_change(t) -> None:
    """A change to the interfaces: EPERM without CAP_NET_ADMIN (checked
    first, as Linux does), else EOPNOTSUPP (the stack is the runtime's)."""
    if not privileged(t):
        raise fserr(errno.EPERM)
    raise fserr(errno.EOPNOTSUPP)


def _inet6_set(t, stack, request: int, arg: int, mem) -> int:
    """addrconf_add_ifaddr and friends: an in6_ifreq naming the device by
    index. Refused as every change is, once the request is checked."""
    if not privileged(t):
        raise fserr(errno.EPERM)
    _addr, plen, index = struct.unpack("<16sIi", mem.read(arg, IN6_IFREQ))
    if request != SIOCSIFDSTADDR and plen > 128:
        raise fserr(errno.EINVAL)
    if by_index(stack, index) is None:
        raise fserr(errno.ENODEV)
    raise fserr(errno.EOPNOTSUPP)


def _ifconf(stack, arg: int, mem) -> int:
    """dev_ifconf: one ifreq (label, sockaddr_in) per IPv4 address; a NULL
    buffer asks for the length needed."""
    ln, buf = IFCONF.unpack(mem.read(arg, IFCONF.size))
    total = 0
    out = bytearray()
    for dev in devices(stack):
        for addr, _plen in dev.addrs4():
            if buf:
                if ln - total < IFREQ:
                    break
                out += dev.name.ljust(IFNAMSIZ, b"\0") + SIN.pack(AF_INET, addr) + bytes(8)
            total += IFREQ
    if out:
        mem.write(buf, bytes(out))
    mem.write(arg, struct.pack("<i", total))
    return 0


def _device(stack, ifr: bytes) -> Device:
    dev = by_name(stack, _ifr_name(ifr)[1])
    if dev is None:
        raise fserr(errno.ENODEV)
    return dev


def _dev_get(stack, request: int, ifr: bytes) -> bytes:
    """dev_ifsioc_locked and SIOCGIFHWADDR."""
    dev = _device(stack, ifr)
    if request == SIOCGIFFLAGS:
        return _put(ifr, 0, struct.pack("<H", dev.flags & 0xFFFF))
    if request == SIOCGIFMETRIC:
        return _put(ifr, 0, struct.pack("<i", 0))
    if request == SIOCGIFMTU:
        return _put(ifr, 0, struct.pack("<i", dev.mtu))
    if request == SIOCGIFINDEX:
        return _put(ifr, 0, struct.pack("<i", dev.index))
    if request == SIOCGIFTXQLEN:
        return _put(ifr, 0, struct.pack("<i", dev.txqlen))
    if request == SIOCGIFMAP:
        return _put(ifr, 0, bytes(21))     # struct ifmap's fields (not its padding): all zero
    if request == SIOCGIFHWADDR:
        return _put(ifr, 0, struct.pack("<H", dev.arptype) + dev.hwaddr[:14])
    raise fserr(errno.EINVAL)                # SIOCGIFSLAVE: no bonding


def _dev_set(t, stack, request: int, ifr: bytes) -> bytes:
    if not privileged(t):
        raise fserr(errno.EPERM)
    dev = _device(stack, ifr)
    if request == SIOCSIFFLAGS:
        want = struct.unpack_from("<H", ifr, IFNAMSIZ)[0]
        if not (want ^ dev.flags) & IFF_CHANGEABLE & 0xFFFF:
            return ifr
    elif request == SIOCSIFMTU and struct.unpack_from("<i", ifr, IFNAMSIZ)[0] == dev.mtu:
        return ifr
    elif request == SIOCSIFTXQLEN and struct.unpack_from("<i", ifr, IFNAMSIZ)[0] == dev.txqlen:
        return ifr
    raise fserr(errno.EOPNOTSUPP)


def _devinet(t, stack, request: int, ifr: bytes) -> bytes:
    """devinet_ioctl: the IPv4 address of an interface (or of its alias
    label); with sin_family AF_INET the given address picks among several."""
    if request in (SIOCGIFPFLAGS, SIOCSIFPFLAGS):
        raise fserr(errno.EINVAL)
    if request in _INET_SET:
        if not privileged(t):
            raise fserr(errno.EPERM)
        if struct.unpack_from("<H", ifr, IFNAMSIZ)[0] != AF_INET:
            raise fserr(errno.EINVAL)
        _device(stack, ifr)
        raise fserr(errno.EOPNOTSUPP)
    label, devname = _ifr_name(ifr)
    dev = by_name(stack, devname)
    if dev is None:
        raise fserr(errno.ENODEV)
    fam, want = struct.unpack_from("<H2x4s", ifr, IFNAMSIZ)
    # labels are the device's name: an alias label (eth0:1) matches nothing
    found = dev.addrs4() if label == dev.name else []
    if fam == AF_INET:
        found = [a for a in found if a[0] == want] or found
    if not found:
        raise fserr(errno.EADDRNOTAVAIL)
    addr, plen = found[0]
    if request in (SIOCGIFADDR, SIOCGIFDSTADDR):
        value = addr
    elif request == SIOCGIFNETMASK:
        value = netmask4(plen)
    else:
        value = broadcast4(dev, addr, plen) or bytes(4)
    return _put(ifr, 0, SIN.pack(AF_INET, value))


def _ethtool(stack, ifr: bytes, mem) -> int:
    """SIOCETHTOOL: only ETHTOOL_GLINK (link detected) is answered."""
    dev = _device(stack, ifr)
    data = struct.unpack_from("<Q", ifr, IFNAMSIZ)[0]
    cmd = struct.unpack("<I", mem.read(data, 4))[0]
    if cmd != ETHTOOL_GLINK:
        raise fserr(errno.EOPNOTSUPP)
    mem.write(data, struct.pack("<II", cmd, int(dev.up)))
    return 0
