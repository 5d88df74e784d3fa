"""Ethernet II framing (no FCS: the tap device neither gives nor wants it)."""
from __future__ import annotations

import struct

from ..core import Malformed

HEADER = 14
ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
ETH_P_8021Q = 0x8100
ETH_P_8021AD = 0x88A8
BROADCAST = b"\xff" * 6

_HDR = struct.Struct("!6s6sH")
_ETYPE = {t: t.to_bytes(2, "big") for t in (ETH_P_IP, ETH_P_ARP, ETH_P_IPV6)}


def parse(frame) -> tuple[bytes, bytes, int, bytes]:
    """(dst, src, ethertype, payload) of a frame. VLAN-tagged frames and
    802.3 length-field (LLC) frames are dropped: we have no VLANs and speak
    only Ethernet II."""
    if len(frame) < HEADER:
        raise Malformed("eth.short")
    dst, src, ethertype = _HDR.unpack_from(frame)
    if ethertype < 0x0600:
        raise Malformed("eth.not_ethernet_ii")
    if ethertype == ETH_P_8021Q or ethertype == ETH_P_8021AD:
        raise Malformed("eth.vlan_tagged")
    return dst, src, ethertype, bytes(frame[HEADER:])


def build(dst: bytes, src: bytes, ethertype: int, payload) -> bytes:
    et = _ETYPE.get(ethertype)
    if et is None:
        et = ethertype.to_bytes(2, "big")
    return b"".join((dst, src, et, payload))


def is_multicast(mac: bytes) -> bool:
    """Group address (broadcast included): the I/G bit of the first octet."""
    return bool(mac[0] & 1)
