"""Whether each platform can run on this host: the probes' shared result
and the list `pyrunsc platforms` prints. A probe reports what it measured
(facts) and, when the platform cannot run, the first reason why; it never
guesses and never raises for a host that lacks something."""
from __future__ import annotations


class ProbeResult:
    """One platform's verdict: usable, the reason when not (empty when it
    is), and the facts measured on the way (JSON-friendly values)."""
    __slots__ = ("platform", "usable", "reason", "facts")

    def __init__(self, platform: str, usable: bool, reason: str = "", facts: dict | None = None):
        self.platform = platform
        self.usable = usable
        self.reason = reason
        self.facts = {} if facts is None else facts

    def as_dict(self) -> dict:
        return {"platform": self.platform, "usable": self.usable, "reason": self.reason, "facts": self.facts}

    def __repr__(self):
        state = "usable" if self.usable else f"unusable: {self.reason}"
        return f"<ProbeResult {self.platform} {state}>"


def probe_all(kvm_device: str = "/dev/kvm") -> list[ProbeResult]:
    """Every platform's probe: ptrace (the default) first."""
    from .kvm.probe import probe as probe_kvm
    from .ptrace.probe import probe as probe_ptrace
    return [probe_ptrace(), probe_kvm(kvm_device)]
