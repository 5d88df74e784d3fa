"""ARP for IPv4 over Ethernet (RFC 826): the only kind we speak."""
from __future__ import annotations

import dataclasses
import struct

from ..core import Malformed

REQUEST = 1
REPLY = 2
HTYPE_ETHER = 1
PTYPE_IP = 0x0800
LENGTH = 28

_PKT = struct.Struct("!HHBBH6s4s6s4s")


@dataclasses.dataclass(slots=True)
class ArpPacket:
    op: int
    sha: bytes      # sender hardware (MAC) address
    spa: bytes      # sender protocol (IPv4) address
    tha: bytes      # target hardware address (zeros in a request)
    tpa: bytes      # target protocol address

    def encode(self) -> bytes:
        return _PKT.pack(HTYPE_ETHER, PTYPE_IP, 6, 4, self.op,
                         self.sha, self.spa, self.tha, self.tpa)


def parse(data) -> ArpPacket:
    """An Ethernet/IPv4 ARP request or reply; trailing frame padding is
    ignored."""
    if len(data) < LENGTH:
        raise Malformed("arp.short")
    htype, ptype, hlen, plen, op, sha, spa, tha, tpa = _PKT.unpack_from(data)
    if htype != HTYPE_ETHER or ptype != PTYPE_IP or hlen != 6 or plen != 4:
        raise Malformed("arp.unsupported")
    if op != REQUEST and op != REPLY:
        raise Malformed("arp.bad_op")
    return ArpPacket(op, sha, spa, tha, tpa)
