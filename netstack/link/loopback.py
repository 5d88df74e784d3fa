"""The loopback link: packets come straight back in, with no framing.

The stack's loopback routes hand transport objects across without
touching this link (Route.send); it carries what arrives as bytes (a
packet some layer built itself), which go back through nic.receive and
so through the stack's queue rather than recursing."""
from __future__ import annotations

MTU = 65536     # Linux's lo


class LoopbackLink:
    loopback = True
    name = "lo"

    def __init__(self, mtu: int = MTU):
        self.mtu = mtu
        self.mac = bytes(6)     # lo's all-zero address, as `ip link` shows it
        self.nic = None

    def attach(self, nic) -> None:
        self.nic = nic

    def send(self, ethertype: int, payload, next_hop) -> None:
        if self.nic is not None:
            self.nic.receive(ethertype, payload)

    def fileno(self):
        return None

    def poll_in(self, budget: int = 64) -> int:
        return 0

    def close(self) -> None:
        self.nic = None
