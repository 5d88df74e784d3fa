"""IPv6 neighbour discovery (RFC 4861) for one Ethernet link: address
resolution with neighbour solicitations and advertisements over the same
NeighbourCache ARP uses, answers to solicitations for the NIC's
addresses (and to duplicate address detection probes), unsolicited
advertisements when an address appears. Router discovery, redirects and
our own DAD are not done: addresses are configured, not autoconfigured.

The link hands every IPv6 frame to intercept() first: NS and NA end here
(a valid one must arrive with hop limit 255, RFC 4861 7.1), anything else
goes on to the NIC.
"""
from __future__ import annotations

from .arp import NeighbourCache
from .core import IPPROTO_ICMPV6, Malformed
from .wire import ethernet
from .wire import icmp as wicmp
from .wire import ipv6 as wire6
from .wire.ipv6 import IPv6Header

ALL_NODES = bytes.fromhex("ff020000000000000000000000000001")
_SOLICITED_PREFIX = bytes.fromhex("ff0200000000000000000001ff")
_NS, _NA = wicmp.NEIGHBOR_SOLICIT, wicmp.NEIGHBOR_ADVERT


def solicited_node(addr: bytes) -> bytes:
    """ff02::1:ffXX:XXXX, the group a solicitation for addr goes to."""
    return _SOLICITED_PREFIX + addr[13:16]


def _multicast_mac(addr: bytes) -> bytes:
    return b"\x33\x33" + addr[12:16]


class NdpResolver:
    """`link` gives what ArpResolver's does, with ipv6_addrs()."""

    def __init__(self, link, **cache_opts):
        self.link = link
        self.cache = NeighbourCache(link.clock, self._solicit, self._transmit, self._failed,
                                    link.stats, name="ndp", **cache_opts)

    # --- sending -----------------------------------------------------------

    def _send(self, dst_mac: bytes, src: bytes, dst: bytes, msg) -> None:
        hdr = IPv6Header(0, 0, 255, IPPROTO_ICMPV6, src, dst)
        self.link.write_frame(dst_mac, ethernet.ETH_P_IPV6, wire6.build(hdr, msg.encode(src, dst)))

    def _source_for(self, target: bytes):
        addrs = self.link.ipv6_addrs()
        link_local = target[:2] == b"\xfe\x80"
        for addr, _ in addrs:
            if (addr[:2] == b"\xfe\x80") == link_local:
                return addr
        return addrs[0][0] if addrs else None

    def _solicit(self, addr: bytes, mac) -> None:
        src = self._source_for(addr)
        if src is None:
            self.link.stats["ndp.no_source"] += 1
            return
        msg = wicmp.neighbor_message(_NS, addr, self.link.mac)
        if mac is None:
            group = solicited_node(addr)
            self._send(_multicast_mac(group), src, group, msg)
        else:
            self._send(mac, src, addr, msg)
        self.link.stats["ndp.solicits_sent"] += 1

    def _transmit(self, mac: bytes, packet: bytes) -> None:
        self.link.write_frame(mac, ethernet.ETH_P_IPV6, packet)

    def _failed(self, addr: bytes, packets: list) -> None:
        if packets:
            self.link.unreachable(ethernet.ETH_P_IPV6, packets)

    def announce(self, addr: bytes) -> None:
        """An unsolicited advertisement to all nodes (RFC 4861 7.2.6)."""
        msg = wicmp.neighbor_message(_NA, addr, self.link.mac, wicmp.NA_OVERRIDE)
        self._send(_multicast_mac(ALL_NODES), addr, ALL_NODES, msg)
        self.link.stats["ndp.announced"] += 1

    # --- receiving ---------------------------------------------------------

    def intercept(self, payload, src_mac: bytes) -> bool:
        """Handle payload if it is a neighbour solicitation or advertisement
        (True: consumed, valid or not); False: not ours, pass it on."""
        if len(payload) < 48 or payload[6] != IPPROTO_ICMPV6 or payload[40] not in (_NS, _NA):
            return False
        stats = self.link.stats
        try:
            hdr, body = wire6.parse(payload)
            if hdr.hop_limit != 255:
                raise Malformed("ndp.bad_hop_limit")   # from off-link: forged
            msg = wicmp.parse(body, hdr.src, hdr.dst)
            if msg.code != 0:
                raise Malformed("ndp.bad_code")
            target, opts = wicmp.parse_neighbor(msg)
            if target[0] == 0xFF:
                raise Malformed("ndp.multicast_target")
        except Malformed as e:
            stats[str(e)] += 1
            return True
        if msg.type == _NS:
            self._on_solicit(hdr, target, opts)
        else:
            self._on_advert(hdr, msg, target, opts)
        return True

    def _on_solicit(self, hdr, target: bytes, opts: dict) -> None:
        stats = self.link.stats
        if target not in {a for a, _ in self.link.ipv6_addrs()}:
            stats["ndp.not_for_us"] += 1
            return
        slla = opts.get(wicmp.OPT_SOURCE_LLADDR)
        if slla is not None:
            slla = slla[:6]
        if hdr.src == bytes(16):
            # duplicate address detection by someone else: defend (to all)
            if slla is not None or hdr.dst[:13] != _SOLICITED_PREFIX:
                stats["ndp.bad_dad"] += 1
                return
            stats["ndp.dad_defended"] += 1
            self.announce(target)
            return
        if slla is None:
            stats["ndp.no_lladdr"] += 1    # unicast NS without one: we would need to resolve first
            n = self.cache.get(hdr.src)
            if n is None or n.mac is None:
                return
            mac = n.mac
        else:
            if slla[0] & 1:
                stats["ndp.bad_lladdr"] += 1
                return
            self.cache.learn(hdr.src, slla)
            mac = slla
        flags = wicmp.NA_SOLICITED | wicmp.NA_OVERRIDE
        self._send(mac, target, hdr.src, wicmp.neighbor_message(_NA, target, self.link.mac, flags))
        stats["ndp.adverts_sent"] += 1

    def _on_advert(self, hdr, msg, target: bytes, opts: dict) -> None:
        stats = self.link.stats
        flags = msg.rest[0]
        if hdr.dst[0] == 0xFF and flags & wicmp.NA_SOLICITED:
            stats["ndp.bad_advert"] += 1    # RFC 4861 7.1.2
            return
        if target in {a for a, _ in self.link.ipv6_addrs()}:
            stats["ndp.address_conflict"] += 1
            return
        tlla = opts.get(wicmp.OPT_TARGET_LLADDR)
        tlla = tlla[:6] if tlla is not None else None
        n = self.cache.get(target)
        if n is None:
            stats["ndp.unsolicited_advert"] += 1
            return
        if tlla is None:
            tlla = n.mac
            if tlla is None:
                return                  # RFC 4861 7.2.5: useless for an incomplete entry
        if flags & wicmp.NA_SOLICITED:
            if n.mac is None or n.mac == tlla or flags & wicmp.NA_OVERRIDE:
                self.cache.confirm(target, tlla)
            stats["ndp.adverts_received"] += 1
        elif flags & wicmp.NA_OVERRIDE or n.mac is None:
            self.cache.update(target, tlla)
