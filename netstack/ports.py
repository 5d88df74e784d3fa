"""A transport protocol's bound ports: who holds which (address, port),
which binds conflict, and ephemeral port choice.

Addresses are kept in 16-byte form (IPv4 as ::ffff:a.b.c.d) so one table
serves IPv4, IPv6 and dual-stack sockets. A binding covers:
  - a specific address: itself;
  - 0.0.0.0: every IPv4 address;
  - :: with v6only: every IPv6 address; :: without: every address.
Two bindings of one port conflict when what they cover overlaps and the
protocol's `may_share(old, new)` (SO_REUSEADDR / SO_REUSEPORT rules) says no.
"""
from __future__ import annotations

import errno
import random

from .core import ANY6, V4MAPPED, to_v6

EPHEMERAL = (32768, 60999)   # net.ipv4.ip_local_port_range
ANY4_MAPPED = V4MAPPED + bytes(4)


def _covers_v4(addr: bytes, v6only: bool) -> bool:
    return addr == ANY4_MAPPED or (addr == ANY6 and not v6only)


def overlaps(a: bytes, a_v6only: bool, b: bytes, b_v6only: bool) -> bool:
    """Do bindings to a and b (16-byte forms) cover a common address?"""
    if a == b:
        return True
    for x, xo, y in ((a, a_v6only, b), (b, b_v6only, a)):
        if x == ANY6 and (not xo or y[:12] != V4MAPPED):
            return True
        if x == ANY4_MAPPED and y[:12] == V4MAPPED:
            return True
    return False


class Binding:
    __slots__ = ("addr", "port", "v6only", "owner")

    def __init__(self, addr: bytes, port: int, v6only: bool, owner):
        self.addr, self.port, self.v6only, self.owner = addr, port, v6only, owner


class PortTable:
    def __init__(self, may_share):
        self.may_share = may_share   # (old_owner, new_owner) -> bool
        self.ports: dict[int, list[Binding]] = {}
        self._next = random.randrange(EPHEMERAL[0], EPHEMERAL[1] + 1)

    def _free(self, addr: bytes, port: int, v6only: bool, owner) -> bool:
        for b in self.ports.get(port, ()):
            if b.owner is not owner and overlaps(b.addr, b.v6only, addr, v6only) \
                    and not self.may_share(b.owner, owner):
                return False
        return True

    def bind(self, addr: bytes, port: int, owner, v6only: bool = False) -> Binding:
        """Bind owner to (addr, port); port 0 picks an ephemeral port.
        EADDRINUSE on a conflict, EADDRNOTAVAIL if no ephemeral port is left."""
        addr = to_v6(addr)
        if port == 0:
            lo, hi = EPHEMERAL
            span = hi - lo + 1
            for i in range(span):
                p = lo + (self._next - lo + i) % span
                if p not in self.ports or self._free(addr, p, v6only, owner):
                    self._next = lo + (p - lo + 1) % span
                    port = p
                    break
            else:
                raise OSError(errno.EADDRNOTAVAIL, "no ephemeral port left")
        elif not self._free(addr, port, v6only, owner):
            raise OSError(errno.EADDRINUSE, "address in use")
        b = Binding(addr, port, v6only, owner)
        self.ports.setdefault(port, []).append(b)
        return b

    def rebind_ok(self, binding: Binding) -> bool:
        """Could binding be made again now (e.g. listen after SO_REUSEADDR
        binds: Linux re-checks conflicts when a socket starts listening)?"""
        return self._free(binding.addr, binding.port, binding.v6only, binding.owner)

    def release(self, binding: Binding) -> None:
        lst = self.ports.get(binding.port)
        if lst is None:
            return
        try:
            lst.remove(binding)
        except ValueError:
            return
        if not lst:
            del self.ports[binding.port]

    def holders(self, port: int) -> list[Binding]:
        return self.ports.get(port, [])
