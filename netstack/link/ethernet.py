"""An Ethernet link over a frame device (a tap): the link API of
docs/netstack.md. Frames out get our MAC and the next hop's, resolved by
ARP (IPv4) or NDP (IPv6) or mapped (broadcast, multicast); frames in are
filtered by destination, ARP and NDP are answered here, IP goes to the NIC.

A frame device has write(frame) -> bool, read_batch(budget) -> [frames],
fileno() (None when there is nothing to poll) and close(); TapDevice is
one, tests join two links with an in-memory pair.
"""
from __future__ import annotations

import collections
import os

from ..arp import REACHABLE, ArpResolver
from ..core import Malformed
from ..ndp import NdpResolver
from ..wire import ethernet

ETH_P_IP, ETH_P_ARP, ETH_P_IPV6 = ethernet.ETH_P_IP, ethernet.ETH_P_ARP, ethernet.ETH_P_IPV6
BROADCAST = ethernet.BROADCAST
LIMITED_BROADCAST = b"\xff\xff\xff\xff"
_parse = ethernet.parse


def random_mac() -> bytes:
    """A locally administered unicast address."""
    b = os.urandom(6)
    return bytes(((b[0] & 0xFC) | 0x02,)) + b[1:]


def ipv4_multicast_mac(addr: bytes) -> bytes:
    """RFC 1112 6.4: 01:00:5e and the group's low 23 bits."""
    return b"\x01\x00\x5e" + bytes((addr[1] & 0x7F,)) + addr[2:4]


def ipv6_multicast_mac(addr: bytes) -> bytes:
    """RFC 2464 7: 33:33 and the group's last four bytes."""
    return b"\x33\x33" + addr[12:16]


class EthernetLink:
    loopback = False

    def __init__(self, device, mac: bytes | None = None, mtu: int = 1500, *,
                 name: str | None = None, clock=None, **arp_opts):
        self.device = device
        self.mac = mac or random_mac()
        if len(self.mac) != 6 or self.mac[0] & 1:
            raise ValueError("a link's address is 6 bytes, unicast")
        self.mtu = mtu
        self.name = name or getattr(device, "name", None) or "eth0"
        self.clock = clock
        self.nic = None
        self.stats = collections.Counter()
        self._arp_opts = arp_opts
        self.arp: ArpResolver | None = None
        self.ndp: NdpResolver | None = None
        self._announced: set = set()

    # --- link API ----------------------------------------------------------

    def attach(self, nic) -> None:
        """The link comes up under `nic`: learn its clock and counters,
        start ARP (and NDP), announce the addresses it already has."""
        self.nic = nic
        stack = getattr(nic, "stack", None)
        if stack is not None:
            self.stats = stack.stats
            if self.clock is None:
                self.clock = stack.clock
        if self.clock is None:
            raise ValueError("an Ethernet link needs a clock (its stack's)")
        self.arp = ArpResolver(self, **self._arp_opts)
        self.ndp = NdpResolver(self, **self._arp_opts)
        self.addresses_changed()

    def fileno(self):
        return self.device.fileno()

    def poll_in(self, budget: int = 64) -> int:
        """Read and dispatch up to `budget` waiting frames; how many."""
        frames = self.device.read_batch(budget)
        receive = self.receive_frame
        for frame in frames:
            receive(frame)
        return len(frames)

    def send(self, ethertype: int, payload, next_hop: bytes | None) -> None:
        """Frame and send a network-layer packet towards next_hop (the IP
        address to resolve; None: the packet's own destination)."""
        if len(payload) > self.mtu:
            self.stats["eth.too_big"] += 1
            return
        if ethertype == ETH_P_IP:
            hop = next_hop if next_hop is not None else bytes(payload[16:20])
            if len(hop) == 16:
                hop = hop[12:]   # a v4-mapped next hop
            n = self.arp.cache.entries.get(hop)
            if n is not None and n.state is REACHABLE:   # the common case, in short
                dst = n.mac
            else:
                dst = self.ipv4_group_mac(hop)
                if dst is None:
                    dst = self.arp.cache.resolve(hop, payload)
                    if dst is None:
                        return
        elif ethertype == ETH_P_IPV6:
            hop = next_hop if next_hop is not None else bytes(payload[24:40])
            if hop[0] == 0xFF:
                dst = ipv6_multicast_mac(hop)
            elif self.ndp is not None:
                dst = self.ndp.cache.resolve(hop, payload)
                if dst is None:
                    return
            else:
                self.stats["eth.no_ndp"] += 1
                return
        else:
            dst = BROADCAST
        self.write_frame(dst, ethertype, payload)

    def close(self) -> None:
        if self.arp is not None:
            self.arp.cache.clear()
        if self.ndp is not None:
            self.ndp.cache.clear()
        self.device.close()

    # --- what the stack may tell us ----------------------------------------

    def addresses_changed(self) -> None:
        """Announce the NIC's addresses not announced yet (gratuitous ARP,
        unsolicited neighbour advertisement); the stack calls this when it
        adds an address."""
        if self.nic is None:
            return
        addrs = {a for a, _ in self.nic.addrs}
        for addr in addrs - self._announced:
            self.announce(addr)
        self._announced = addrs

    def announce(self, addr: bytes) -> None:
        """Announce one of our addresses now (again)."""
        if len(addr) == 4:
            self.arp.announce(addr)
        elif self.ndp is not None:
            self.ndp.announce(addr)

    # --- for the resolvers -------------------------------------------------

    def ipv4_addrs(self) -> list:
        return [(a, p) for a, p in self.nic.addrs if len(a) == 4] if self.nic is not None else []

    def ipv6_addrs(self) -> list:
        return [(a, p) for a, p in self.nic.addrs if len(a) == 16] if self.nic is not None else []

    def write_frame(self, dst: bytes, ethertype: int, payload) -> None:
        if not self.device.write(ethernet.build(dst, self.mac, ethertype, payload)):
            self.stats["eth.write_failed"] += 1

    def unreachable(self, ethertype: int, packets: list) -> None:
        """Packets whose next hop never answered: the NIC reports them
        (host unreachable to their senders) if it knows how."""
        report = getattr(self.nic, "neighbour_unreachable", None)
        if report is not None:
            for p in packets:
                report(ethertype, p)

    # --- receiving ---------------------------------------------------------

    def ipv4_group_mac(self, addr: bytes):
        """The MAC for a broadcast or multicast IPv4 destination, else None
        (no neighbour entry is ever made for these: see ArpResolver)."""
        if addr == LIMITED_BROADCAST:
            return BROADCAST
        if 224 <= addr[0] <= 239:
            return ipv4_multicast_mac(addr)
        a = int.from_bytes(addr, "big")
        for mine, plen in self.ipv4_addrs():
            if plen <= 30:
                host = (1 << (32 - plen)) - 1
                if a & host == host and (a ^ int.from_bytes(mine, "big")) & ~host & 0xFFFFFFFF == 0:
                    return BROADCAST    # the subnet's directed broadcast
        return None

    def receive_frame(self, frame) -> None:
        stats = self.stats
        try:
            dst, src, ethertype, payload = _parse(frame)
        except Malformed as e:
            stats[str(e)] += 1
            return
        if src[0] & 1:
            stats["eth.bad_source"] += 1
            return
        if dst != self.mac and not dst[0] & 1:
            stats["eth.not_for_us"] += 1
            return
        nic = self.nic
        if nic is None:
            stats["eth.no_nic"] += 1
            return
        if ethertype == ETH_P_IP or ethertype == ETH_P_IPV6:
            if ethertype == ETH_P_IPV6 and self.ndp is not None and self.ndp.intercept(payload, src):
                return
            try:
                nic.receive(ethertype, payload)
            except Malformed as e:
                stats[str(e)] += 1
        elif ethertype == ETH_P_ARP:
            self.arp.receive(payload, src)
        else:
            stats["eth.unknown_ethertype"] += 1
