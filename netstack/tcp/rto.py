"""The retransmission timeout (RFC 6298) as Linux computes it: SRTT and
RTTVAR from samples (Karn's rule is the caller's: no sample from a
retransmitted segment), RTO = SRTT + max(4 * RTTVAR, rto_min), backed off
exponentially on each expiry and clamped to [rto_min, rto_max]."""
from __future__ import annotations

MS = 1_000_000
RTO_INIT = 1000 * MS
RTO_MIN = 200 * MS       # Linux's TCP_RTO_MIN
RTO_MAX = 120_000 * MS   # TCP_RTO_MAX


class RTO:
    __slots__ = ("srtt", "rttvar", "base", "backoff", "min_rto", "samples")

    def __init__(self, min_rto: int = RTO_MIN):
        self.srtt = 0            # ns; 0 until the first sample
        self.rttvar = 0
        self.base = RTO_INIT     # RTO before backoff
        self.backoff = 0
        self.min_rto = min_rto
        self.samples = 0

    def sample(self, rtt: int) -> None:
        if rtt < 0:
            return
        if not self.samples:
            self.srtt = rtt
            self.rttvar = rtt >> 1
        else:
            self.rttvar += (abs(self.srtt - rtt) - self.rttvar) >> 2
            self.srtt += (rtt - self.srtt) >> 3
        self.samples += 1
        self.base = min(RTO_MAX, self.srtt + max(4 * self.rttvar, self.min_rto))
        self.backoff = 0

    @property
    def rto(self) -> int:
        return min(RTO_MAX, self.base << self.backoff) if self.backoff else self.base

    def back_off(self) -> None:
        if (self.base << self.backoff) < RTO_MAX:
            self.backoff += 1


def model_timeout(boundary: int, rto_base: int) -> int:
    """How long `boundary` retransmissions with exponential backoff from
    rto_base take (Linux's tcp_model_timeout): the ETIMEDOUT deadline."""
    thresh = 0
    while (rto_base << (thresh + 1)) <= RTO_MAX:
        thresh += 1
    if boundary <= thresh:
        return ((2 << boundary) - 1) * rto_base
    return ((2 << thresh) - 1) * rto_base + (boundary - thresh) * RTO_MAX
