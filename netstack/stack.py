"""The network layer's centre: interfaces (NICs) with their addresses, the
routing table, the receive path (IP parse, local delivery only, reassembly,
demux by protocol) and the send path (loopback hands objects across; other
links get encoded, IP-framed, fragmented packets).

Loopback delivery never recurses: whatever is sent or received while the
stack is already delivering joins a queue that the outermost call drains
before it returns (docs/netstack.md). So a loopback send has reached the
peer, and whatever the peer sent back in reply has reached us, on return.
"""
from __future__ import annotations

import collections
import errno
import random

from .core import (ANY4, ANY6, LOOPBACK4, LOOPBACK6, V4MAPPED, Malformed,
                   PacketInfo, Timer, unmap)
from .ipv4 import Reassembler, fragment, packet_of
from .ipv6 import Reassembler6, fragment6
from .wire import ipv4 as wire4
from .wire import ipv6 as wire6

ETH_P_IP, ETH_P_IPV6 = 0x0800, 0x86DD
IPPROTO_ICMP, IPPROTO_ICMPV6, NH_NONE = 1, 58, 59

# net/if.h interface flags
IFF_UP, IFF_BROADCAST, IFF_LOOPBACK, IFF_RUNNING = 0x1, 0x2, 0x8, 0x40
IFF_MULTICAST = 0x1000

DEFAULT_TTL = 64                # net.ipv4.ip_default_ttl, ipv6 hop_limit
MIN_PMTU4 = 552                 # net.ipv4.route.min_pmtu: no lower, whatever ICMP says
LIMITED_BROADCAST = b"\xff\xff\xff\xff"
ALL_NODES6 = bytes((0xFF, 0x02)) + bytes(13) + b"\x01"
ALL_NODES6_NODE = bytes((0xFF, 0x01)) + bytes(13) + b"\x01"
ALL_HOSTS4 = bytes((224, 0, 0, 1))
_SOLICITED = bytes((0xFF, 0x02)) + bytes(9) + b"\x01\xff"
_ROUTE_CACHE_MAX = 4096
_PMTU_MAX = 4096

_parse4, _build4 = wire4.parse, wire4.build
_parse6, _build6 = wire6.parse, wire6.build
_IPv4Header, _IPv6Header = wire4.IPv4Header, wire6.IPv6Header


def _int(addr: bytes) -> int:
    return int.from_bytes(addr, "big")


def _mask(prefixlen: int, bits: int) -> int:
    return ((1 << bits) - 1) ^ ((1 << (bits - prefixlen)) - 1)


def network(addr: bytes, prefixlen: int) -> bytes:
    """addr with its host bits cleared."""
    bits = len(addr) * 8
    return (_int(addr) & _mask(prefixlen, bits)).to_bytes(len(addr), "big")


def solicited_node(addr: bytes) -> bytes:
    """ff02::1:ffXX:XXXX, the group NDP solicits addr on (RFC 4291 2.7.1)."""
    return _SOLICITED + addr[13:]


def is_multicast(addr: bytes) -> bool:
    return addr[0] >= 224 and addr[0] < 240 if len(addr) == 4 else addr[0] == 0xFF


class NIC:
    """One interface: its link, index (from 1, lo first as Linux), name,
    MTU, MAC, IFF_* flags and addresses [(addr, prefixlen)]."""

    def __init__(self, stack: "Stack", link, index: int, name: str):
        self.stack = stack
        self.link = link
        self.index = index
        self.name = name
        self.mtu = link.mtu
        self.mac = link.mac
        self.loopback = bool(link.loopback)
        self.flags = IFF_UP | IFF_RUNNING | (
            IFF_LOOPBACK if self.loopback else IFF_BROADCAST | IFF_MULTICAST)
        self.addrs: list[tuple[bytes, int]] = []

    def receive(self, ethertype: int, payload) -> None:
        """A frame's network-layer packet from the link."""
        st = self.stack
        if st._busy:
            st._queue.append((st._input, (self, ethertype, payload)))
        else:
            st._run(st._input, self, ethertype, payload)

    def neighbour_unreachable(self, ethertype: int, packet) -> None:
        """The link gave up resolving this packet's next hop: tell its
        (local) sender, as Linux does, with host/address unreachable."""
        self.stack._neighbour_failed(self, ethertype, packet)

    def __repr__(self):
        return f"<NIC {self.index} {self.name} mtu={self.mtu}>"


class Route:
    """Where a packet to `remote` goes: the source address to use, the
    interface, the next hop and the MTU. send() hands a transport object
    to the network layer."""
    __slots__ = ("stack", "local", "remote", "nic", "mtu", "loopback",
                 "next_hop", "broadcast", "multicast", "generation")

    def __init__(self, stack, local, remote, nic, mtu, loopback, next_hop,
                 broadcast=False, multicast=False):
        self.stack = stack
        self.local = local
        self.remote = remote
        self.nic = nic
        self.mtu = mtu
        self.loopback = loopback
        self.next_hop = next_hop
        self.broadcast = broadcast
        self.multicast = multicast
        self.generation = stack.generation

    def send(self, proto: int, obj, ttl: int | None = None, tos: int = 0) -> None:
        stack = self.stack
        if self.loopback:
            info = PacketInfo(self.local, self.remote, proto,
                              DEFAULT_TTL if ttl is None else ttl, tos, self.nic)
            if stack._busy:
                stack._queue.append((stack._deliver, (info, obj)))
            else:
                stack._run(stack._deliver, info, obj)
        else:
            stack._send_link(self, proto, obj, ttl, tos)

    def __repr__(self):
        return (f"<Route {self.local.hex()} -> {self.remote.hex()} via "
                f"{self.nic.name} hop={self.next_hop and self.next_hop.hex()}>")


class Stack:
    def __init__(self, clock):
        self.clock = clock
        self.stats: collections.Counter = collections.Counter()
        self.nics: list[NIC] = []
        self.routes: list[tuple] = []       # (dst, prefixlen, gateway, nic)
        self.handlers: dict[int, object] = {}
        self.lo: NIC | None = None
        self.generation = 0
        self.pmtu: dict[bytes, int] = {}    # remote -> path MTU learned by ICMP
        self.icmp_limiter = None            # icmp.RateLimiter, shared by v4 and v6
        self.ping = None                    # ping.PingProtocol, made by the first ping socket
        self._local: dict[bytes, NIC] = {}  # our addresses
        self._lo_nets: list[tuple[int, int, bytes]] = []  # v4 prefixes of lo: all local
        self._bcast4: set[bytes] = {LIMITED_BROADCAST}
        self._groups6: set[bytes] = {ALL_NODES6, ALL_NODES6_NODE}
        self._rt4: list[tuple] = []          # compiled: (net, mask, plen, gw, nic)
        self._rt6: list[tuple] = []
        self._rcache: dict[tuple, Route] = {}
        self._queue: collections.deque = collections.deque()
        self._busy = False
        self._ident = random.randrange(1 << 16)
        self._ident6 = random.randrange(1 << 32)
        now = clock.now_ns
        self.reasm4 = Reassembler(now, stats=self.stats)
        self.reasm6 = Reassembler6(now, stats=self.stats)  # RFC 8200: 60 s
        self._frag_timer = Timer(clock, self._frag_expire)

    @classmethod
    def with_loopback(cls, clock, protocols: bool = True) -> "Stack":
        """A stack with lo (127.0.0.1/8, ::1/128, MTU 65536, as Linux's) and,
        unless protocols is false, ICMP, ICMPv6, UDP, UDP-Lite and TCP registered."""
        from .link.loopback import LoopbackLink
        stack = cls(clock)
        lo = stack.add_nic(LoopbackLink(), "lo")
        stack.add_address(lo, LOOPBACK4, 8)
        stack.add_address(lo, LOOPBACK6, 128)
        if protocols:
            from . import icmp, udp
            icmp.ICMPv4(stack)
            icmp.ICMPv6(stack)
            udp.UDPProtocol(stack)
            udp.UDPLiteProtocol(stack)
            from .tcp.protocol import TCPProtocol
            TCPProtocol(stack)  # so a SYN to a closed port gets an RST from the start
        return stack

    # --- configuration ------------------------------------------------------

    def register(self, handler) -> None:
        self.handlers[handler.number] = handler

    def add_nic(self, link, name: str | None = None) -> NIC:
        nic = NIC(self, link, len(self.nics) + 1, name or link.name)
        self.nics.append(nic)
        if nic.loopback and self.lo is None:
            self.lo = nic
        link.attach(nic)
        return nic

    def nic_by_index(self, index: int) -> NIC | None:
        for nic in self.nics:
            if nic.index == index:
                return nic
        return None

    def nic_by_name(self, name: str) -> NIC | None:
        for nic in self.nics:
            if nic.name == name:
                return nic
        return None

    def _changed(self) -> None:
        self.generation += 1
        self._rcache.clear()

    def add_address(self, nic: NIC, addr: bytes, prefixlen: int) -> None:
        """Give nic an address; like Linux, also the connected route of its
        prefix (none for a host address), and for lo the whole IPv4 prefix
        is local."""
        bits = len(addr) * 8
        if bits not in (32, 128) or not 0 <= prefixlen <= bits:
            raise OSError(errno.EINVAL, "bad address or prefix length")
        if any(a == addr for a, _ in nic.addrs):
            raise OSError(errno.EEXIST, "address exists")
        nic.addrs.append((addr, prefixlen))
        self._local[addr] = nic
        self._derive(nic, addr, prefixlen)
        net = network(addr, prefixlen)
        if bits == 32:
            if prefixlen < 32 and not nic.loopback:
                self._add_route(net, prefixlen, None, nic)
        elif prefixlen < 128 or nic.loopback:
            self._add_route(net, prefixlen, None, nic)
        self._changed()
        announce = getattr(nic.link, "addresses_changed", None)
        if announce is not None:
            announce()

    def del_address(self, nic: NIC, addr: bytes) -> None:
        for i, (a, plen) in enumerate(nic.addrs):
            if a == addr:
                break
        else:
            raise OSError(errno.EADDRNOTAVAIL, "no such address")
        del nic.addrs[i]
        self._local.pop(addr, None)
        net = network(addr, plen)
        self.routes = [r for r in self.routes
                       if not (r[3] is nic and r[2] is None and r[0] == net and r[1] == plen)]
        self._rebuild_derived()

    def _rebuild_derived(self) -> None:
        self._lo_nets = []
        self._bcast4 = {LIMITED_BROADCAST}
        self._groups6 = {ALL_NODES6, ALL_NODES6_NODE}
        for nic in self.nics:
            for addr, plen in nic.addrs:
                self._derive(nic, addr, plen)
        self._compile_routes()
        self._changed()

    def _derive(self, nic: NIC, addr: bytes, plen: int) -> None:
        """What an address implies beyond itself: its subnet's broadcast
        address, lo's whole IPv4 prefix being local, IPv6's solicited-node
        group."""
        if len(addr) == 16:
            self._groups6.add(solicited_node(addr))
            return
        net = _int(network(addr, plen))
        if nic.loopback:
            self._lo_nets.append((net, _mask(plen, 32), addr))
        if plen <= 30:
            self._bcast4.add((net | ((1 << (32 - plen)) - 1)).to_bytes(4, "big"))

    def add_route(self, dst: bytes, prefixlen: int, gateway: bytes | None = None,
                  nic: NIC | None = None) -> None:
        """A route to dst/prefixlen, via gateway (which must be on a
        connected network when nic is not given); dst 0.0.0.0/0 or ::/0 is
        the default route. EEXIST for a prefix already routed."""
        bits = len(dst) * 8
        if bits not in (32, 128) or not 0 <= prefixlen <= bits:
            raise OSError(errno.EINVAL, "bad destination")
        if gateway is not None and len(gateway) != len(dst):
            raise OSError(errno.EINVAL, "gateway of another family")
        if nic is None:
            if gateway is None:
                raise OSError(errno.EINVAL, "a route needs a gateway or an interface")
            rt = self._lookup_table(gateway, 0)
            if rt is None or rt[3] is not None:
                raise OSError(errno.ENETUNREACH, "gateway not on a connected network")
            nic = rt[4]
        self._add_route(network(dst, prefixlen), prefixlen, gateway, nic)
        self._changed()

    def _add_route(self, dst, prefixlen, gateway, nic) -> None:
        for r in self.routes:
            if r[0] == dst and r[1] == prefixlen:
                raise OSError(errno.EEXIST, "route exists")
        self.routes.append((dst, prefixlen, gateway, nic))
        self._compile_routes()

    def del_route(self, dst: bytes, prefixlen: int) -> None:
        dst = network(dst, prefixlen)
        n = len(self.routes)
        self.routes = [r for r in self.routes if not (r[0] == dst and r[1] == prefixlen)]
        if len(self.routes) == n:
            raise OSError(errno.ESRCH, "no such route")
        self._compile_routes()
        self._changed()

    def _compile_routes(self) -> None:
        rt4, rt6 = [], []
        for dst, plen, gw, nic in self.routes:
            bits = len(dst) * 8
            (rt4 if bits == 32 else rt6).append((_int(dst), _mask(plen, bits), plen, gw, nic))
        rt4.sort(key=lambda r: -r[2])
        rt6.sort(key=lambda r: -r[2])
        self._rt4, self._rt6 = rt4, rt6

    def _lookup_table(self, remote: bytes, ifindex: int):
        a = _int(remote)
        for r in (self._rt4 if len(remote) == 4 else self._rt6):
            if a & r[1] == r[0] and (not ifindex or r[4].index == ifindex):
                return r
        return None

    def set_path_mtu(self, remote: bytes, mtu: int) -> None:
        """An ICMP too-big said packets to remote must be at most mtu."""
        remote = unmap(remote)
        floor = MIN_PMTU4 if len(remote) == 4 else wire6.MIN_MTU
        mtu = max(mtu, floor)
        if self.pmtu.get(remote, 1 << 30) <= mtu:
            return
        if len(self.pmtu) >= _PMTU_MAX:
            self.pmtu.clear()
        self.pmtu[remote] = mtu
        self._changed()

    # --- queries ------------------------------------------------------------

    def is_local(self, addr: bytes) -> bool:
        """One of our addresses (lo's IPv4 prefix counts whole, as on Linux)."""
        if len(addr) == 16 and addr[:12] == V4MAPPED:
            addr = addr[12:]
        if addr in self._local:
            return True
        if len(addr) == 4 and self._lo_nets:
            a = _int(addr)
            for net, mask, _ in self._lo_nets:
                if a & mask == net:
                    return True
        return False

    def is_broadcast(self, addr: bytes) -> bool:
        """An IPv4 broadcast address (limited or a subnet's) or any
        multicast address."""
        addr = unmap(addr)
        return addr in self._bcast4 or is_multicast(addr)

    def route(self, remote: bytes, local: bytes | None = None, ifindex: int = 0) -> Route:
        """The route to remote (IPv4-mapped means IPv4) from local (None or
        the wildcard: pick a source), restricted to interface ifindex when
        nonzero. OSError(ENETUNREACH) when there is none."""
        key = (remote, local, ifindex)
        r = self._rcache.get(key)
        if r is not None:
            return r
        r = self._route(remote, local, ifindex)
        if len(self._rcache) >= _ROUTE_CACHE_MAX:
            self._rcache.clear()
        self._rcache[key] = r
        return r

    def _route(self, remote, local, ifindex) -> Route:
        remote = unmap(remote)
        if local is not None:
            local = unmap(local)
            if local == ANY4 or local == ANY6:
                local = None
            elif len(local) != len(remote):
                raise OSError(errno.ENETUNREACH, "source and destination families differ")
        v4 = len(remote) == 4
        if remote == ANY4 or remote == ANY6:
            # Linux sends to the unspecified address as to ourselves.
            remote = local or (LOOPBACK4 if v4 else LOOPBACK6)
        lo = self.lo
        if remote == LIMITED_BROADCAST and (local is not None or ifindex):
            # Linux sends a limited broadcast out of the interface asked for
            # or, failing that, the one holding the source address.
            nic = self.nic_by_index(ifindex) if ifindex else self._local.get(local)
            if nic is None and self.is_local(local):
                nic = lo
            if nic is not None:
                if local is None:
                    # inet_select_addr(dev, 0, RT_SCOPE_LINK): lo's
                    # addresses are host-scoped, so none (0.0.0.0) there
                    local = ANY4 if nic.loopback else self._source(nic, remote)
                hop = None if nic.loopback else LIMITED_BROADCAST
                return Route(self, local, remote, nic, nic.mtu, nic.loopback, hop, True)
        if lo is not None and self.is_local(remote):
            if local is None:
                local = remote if remote in self._local else self._lo_source(remote)
            return Route(self, local, remote, lo, lo.mtu, True, None,
                         v4 and remote in self._bcast4)
        rt = self._lookup_table(remote, ifindex)
        if rt is None:
            nic = self.nic_by_index(ifindex) if ifindex else None
            onlink = nic is not None and not v4 and (
                remote[0] == 0xFF or remote[:2] == b"\xfe\x80")
            if not onlink:
                raise OSError(errno.ENETUNREACH, "network is unreachable")
            gateway = None
        else:
            gateway, nic = rt[3], rt[4]
        if not nic.flags & IFF_UP:
            raise OSError(errno.ENETUNREACH, "interface down")
        if local is None:
            local = self._source(nic, gateway or remote)
        bcast = v4 and remote in self._bcast4
        mcast = is_multicast(remote)
        if bcast:
            hop = LIMITED_BROADCAST
        elif mcast:
            hop = remote
        else:
            hop = gateway or remote
        mtu = nic.mtu
        p = self.pmtu.get(remote)
        if p is not None and p < mtu:
            mtu = p
        return Route(self, local, remote, nic, mtu, False, hop, bcast, mcast)

    def _lo_source(self, remote: bytes) -> bytes:
        if len(remote) == 16:
            return LOOPBACK6
        a = _int(remote)
        for net, mask, addr in self._lo_nets:
            if a & mask == net:
                return addr
        return LOOPBACK4

    def _source(self, nic: NIC, toward: bytes) -> bytes:
        """A source address for packets out of nic toward an address: one
        of nic's sharing the longest prefix with it, else any non-loopback
        address of the family (Linux's inet_select_addr looks further)."""
        n = len(toward)
        best, best_len = None, -1
        t = _int(toward)
        bits = n * 8
        for addr, _ in nic.addrs:
            if len(addr) == n:
                common = bits - (t ^ _int(addr)).bit_length()
                if common > best_len:
                    best, best_len = addr, common
        if best is not None:
            return best
        for other in self.nics:
            if not other.loopback:
                for addr, _ in other.addrs:
                    if len(addr) == n:
                        return addr
        raise OSError(errno.EADDRNOTAVAIL, "no source address")

    # --- delivery machinery -------------------------------------------------

    def _run(self, fn, *args) -> None:
        """Run fn(*args) and then everything it queued, as the outermost
        delivery."""
        self._busy = True
        try:
            fn(*args)
            q = self._queue
            while q:
                f, a = q.popleft()
                f(*a)
        finally:
            self._busy = False

    def _deliver(self, info: PacketInfo, obj) -> None:
        """A transport object across loopback."""
        h = self.handlers.get(info.proto)
        if h is None or not self._family_ok(info.proto, len(info.src)):
            self.stats["ip.unknown_protocol"] += 1
            self.icmp_unreachable(info, obj.encode(info.src, info.dst), 2)
            return
        h.deliver(info, obj)

    @staticmethod
    def _family_ok(proto: int, alen: int) -> bool:
        if proto == IPPROTO_ICMP:
            return alen == 4
        if proto == IPPROTO_ICMPV6:
            return alen == 16
        return True

    # --- receive path -------------------------------------------------------

    def _input(self, nic: NIC, ethertype: int, data) -> None:
        if ethertype == ETH_P_IP:
            self._input4(nic, data)
        elif ethertype == ETH_P_IPV6:
            self._input6(nic, data)
        else:
            self.stats["ip.unknown_ethertype"] += 1

    def _input4(self, nic: NIC, data) -> None:
        stats = self.stats
        try:
            hdr, payload = _parse4(data)
        except Malformed as e:
            stats[str(e)] += 1
            return
        src, dst = hdr.src, hdr.dst
        bcast = False
        if dst not in self._local:
            if dst in self._bcast4 or dst == ALL_HOSTS4:
                bcast = True
            elif not (nic.loopback and self.is_local(dst)):
                stats["ipv4.not_for_us"] += 1     # we forward nothing
                return
        if src in self._bcast4 or is_multicast(src) or (not nic.loopback and (
                src[0] == 127 or dst[0] == 127 or src in self._local)):
            stats["ipv4.martian"] += 1      # fib_validate_source's refusals
            return
        if hdr.mf or hdr.frag_offset:
            r = self.reasm4.add(hdr, payload, self.clock.now_ns())
            self._arm_frag_timer()
            if r is None:
                return
            hdr, payload = r
        self._dispatch(PacketInfo(src, dst, hdr.proto, hdr.ttl, hdr.tos, nic),
                       payload, bcast)

    def _input6(self, nic: NIC, data) -> None:
        stats = self.stats
        try:
            hdr, payload = _parse6(data)
        except Malformed as e:
            stats[str(e)] += 1
            return
        src, dst = hdr.src, hdr.dst
        mcast = False
        if dst not in self._local:
            if dst in self._groups6:
                mcast = True
            else:
                stats["ipv6.not_for_us"] += 1
                return
        if src[0] == 0xFF or (not nic.loopback and (src == LOOPBACK6 or dst == LOOPBACK6)):
            stats["ipv6.martian"] += 1
            return
        if hdr.frag is not None:
            r = self.reasm6.add(hdr, payload, self.clock.now_ns())
            self._arm_frag_timer()
            if r is None:
                return
            hdr, payload = r
        if hdr.next_header == NH_NONE:
            return
        self._dispatch(PacketInfo(src, dst, hdr.next_header, hdr.hop_limit,
                                  hdr.tclass, nic), payload, mcast)

    def _dispatch(self, info: PacketInfo, payload, bcast: bool) -> None:
        h = self.handlers.get(info.proto)
        if h is None or not self._family_ok(info.proto, len(info.src)):
            self.stats["ip.unknown_protocol"] += 1
            if not bcast:
                self.icmp_unreachable(info, payload, 2)
            return
        try:
            obj = h.parse(payload, info.src, info.dst)
        except Malformed as e:
            self.stats[str(e)] += 1
            return
        h.deliver(info, obj)

    def _arm_frag_timer(self) -> None:
        deadlines = [d for d in (self.reasm4.next_deadline(), self.reasm6.next_deadline())
                     if d is not None]
        if deadlines and not self._frag_timer.armed:
            self._frag_timer.arm(min(deadlines))

    def _frag_expire(self) -> None:
        now = self.clock.now_ns()
        for reasm, proto_icmp in ((self.reasm4, IPPROTO_ICMP), (self.reasm6, IPPROTO_ICMPV6)):
            for hdr, first in reasm.expire(now):
                h = self.handlers.get(proto_icmp)
                if h is not None:
                    if len(hdr.src) == 4:
                        info = PacketInfo(hdr.src, hdr.dst, hdr.proto, hdr.ttl, hdr.tos, None)
                    else:
                        info = PacketInfo(hdr.src, hdr.dst, hdr.next_header,
                                          hdr.hop_limit, hdr.tclass, None)
                    h.reassembly_timeout(info, packet_of(hdr, first))
        self._arm_frag_timer()

    # --- ICMP errors the stack asks for -------------------------------------

    def icmp_unreachable(self, info: PacketInfo, data, code: int) -> None:
        """Destination unreachable (an ICMPv4 code; mapped for IPv6) about a
        packet we received; nothing if no ICMP handler is registered."""
        h = self.handlers.get(IPPROTO_ICMPV6 if len(info.src) == 16 else IPPROTO_ICMP)
        if h is not None:
            h.unreachable(info, data, code)

    def _neighbour_failed(self, nic: NIC, ethertype: int, packet) -> None:
        try:
            if ethertype == ETH_P_IP:
                hdr, payload = _parse4(packet)
                info = PacketInfo(hdr.src, hdr.dst, hdr.proto, hdr.ttl, hdr.tos, nic)
            elif ethertype == ETH_P_IPV6:
                hdr, payload = _parse6(packet)
                info = PacketInfo(hdr.src, hdr.dst, hdr.next_header, hdr.hop_limit,
                                  hdr.tclass, nic)
            else:
                return
        except Malformed:
            return
        if hdr.src in self._local:
            self.icmp_unreachable(info, payload, 1)

    # --- send path ----------------------------------------------------------

    def _send_link(self, route: Route, proto: int, obj, ttl, tos) -> None:
        src, dst = route.local, route.remote
        data = obj.encode(src, dst)
        nic = route.nic
        link = nic.link
        mtu = route.mtu
        if len(src) == 4:
            if ttl is None:
                ttl = 1 if route.multicast else DEFAULT_TTL
            ident = self._ident = (self._ident + 1) & 0xFFFF
            n = 20 + len(data)
            # Linux's IP_PMTUDISC_WANT: DF on what fits, fragment the rest.
            hdr = _IPv4Header(tos, ident, n <= mtu, False, 0, ttl, proto, src, dst)
            if n <= mtu:
                link.send(ETH_P_IP, _build4(hdr, data), route.next_hop)
            else:
                for pkt in fragment(hdr, data, mtu):
                    link.send(ETH_P_IP, pkt, route.next_hop)
        else:
            if ttl is None:
                ttl = 1 if route.multicast else DEFAULT_TTL
            hdr = _IPv6Header(tos, 0, ttl, proto, src, dst)
            if 40 + len(data) <= mtu:
                link.send(ETH_P_IPV6, _build6(hdr, data), route.next_hop)
            else:
                ident = self._ident6 = (self._ident6 + 1) & 0xFFFFFFFF
                for pkt in fragment6(hdr, data, mtu, ident):
                    link.send(ETH_P_IPV6, pkt, route.next_hop)
        if route.broadcast:
            # Linux loops broadcasts back to local listeners too.
            info = PacketInfo(src, dst, proto, ttl, tos, nic)
            if self._busy:
                self._queue.append((self._deliver_bcast, (info, obj)))
            else:
                self._run(self._deliver_bcast, info, obj)

    def _deliver_bcast(self, info: PacketInfo, obj) -> None:
        h = self.handlers.get(info.proto)
        if h is not None and self._family_ok(info.proto, len(info.src)):
            h.deliver(info, obj)

