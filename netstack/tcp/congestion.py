"""Congestion window growth and reduction. The connection owns the loss
detection and the NewReno recovery episode (RFC 6582: recover point,
partial and full ACKs); an algorithm here says how cwnd grows on ACKs
outside recovery and what ssthresh becomes on a loss.

  reno  - RFC 5681 slow start and congestion avoidance (with NewReno
          recovery in the connection this is Linux's "reno")
  cubic - RFC 9438 window growth, beta 0.7, with its Reno-friendly region
"""
from __future__ import annotations

INIT_CWND = 10          # segments (RFC 6928, Linux)
INFINITE = 0x7FFFFFFF


class Reno:
    name = "reno"
    __slots__ = ("conn", "acc")

    def __init__(self, conn):
        self.conn = conn
        self.acc = 0      # bytes acked toward the next increase in CA

    def on_ack(self, acked: int, now: int) -> None:
        c = self.conn
        mss = c.mss
        if c.cwnd < c.ssthresh:
            # slow start, byte counting limited to 2*MSS per ACK (RFC 3465)
            c.cwnd += acked if acked < 2 * mss else 2 * mss
            return
        self.acc += acked
        if self.acc >= c.cwnd:
            self.acc -= c.cwnd
            c.cwnd += mss

    def ssthresh(self) -> int:
        """The new ssthresh on a loss (RFC 5681 eq. 4)."""
        c = self.conn
        flight = c.snd_max - c.snd_una
        return max(flight >> 1, 2 * c.mss)

    def on_loss(self, now: int) -> None:
        self.acc = 0

    def on_rto(self, now: int) -> None:
        self.acc = 0


class Cubic(Reno):
    name = "cubic"
    __slots__ = ("w_max", "w_last_max", "k", "epoch", "origin", "w_est")
    C = 0.4
    BETA = 0.7

    def __init__(self, conn):
        super().__init__(conn)
        self.w_max = 0.0        # segments
        self.w_last_max = 0.0
        self.k = 0.0
        self.epoch = None       # ns: start of this congestion-avoidance epoch
        self.origin = 0.0
        self.w_est = 0.0

    def on_ack(self, acked: int, now: int) -> None:
        c = self.conn
        mss = c.mss
        if c.cwnd < c.ssthresh:
            c.cwnd += acked if acked < 2 * mss else 2 * mss
            return
        cwnd_seg = c.cwnd / mss
        if self.epoch is None:
            self.epoch = now
            if cwnd_seg < self.w_max:
                self.k = ((self.w_max - cwnd_seg) / self.C) ** (1 / 3)
                self.origin = self.w_max
            else:
                self.k = 0.0
                self.origin = cwnd_seg
            self.w_est = cwnd_seg
        rtt = (c.rto.srtt or 100_000_000) / 1e9
        t = (now - self.epoch) / 1e9 + rtt
        target = self.origin + self.C * (t - self.k) ** 3
        # the Reno-friendly estimate (RFC 9438 4.3)
        self.w_est += 3 * (1 - self.BETA) / (1 + self.BETA) * (acked / mss) / cwnd_seg
        if self.w_est > target:
            target = self.w_est
        if target > cwnd_seg:
            grow = (target - cwnd_seg) / cwnd_seg * (acked / mss)
            self.acc += int(grow * mss)
        else:
            self.acc += acked // 100      # very slow growth at the plateau
        if self.acc >= mss:
            steps = self.acc // mss
            # at most one segment per ACK'd segment (RFC 9438 4.4: 1.5x/RTT)
            limit = max(1, acked // mss)
            if steps > limit:
                steps = limit
            c.cwnd += steps * mss
            self.acc -= steps * mss

    def ssthresh(self) -> int:
        c = self.conn
        return max(int(c.cwnd * self.BETA), 2 * c.mss)

    def on_loss(self, now: int) -> None:
        c = self.conn
        cwnd_seg = c.cwnd / c.mss
        # fast convergence (RFC 9438 4.7)
        if cwnd_seg < self.w_last_max:
            self.w_last_max = cwnd_seg
            self.w_max = cwnd_seg * (1 + self.BETA) / 2
        else:
            self.w_last_max = cwnd_seg
            self.w_max = cwnd_seg
        self.epoch = None
        self.acc = 0

    def on_rto(self, now: int) -> None:
        self.on_loss(now)


ALGORITHMS = {"reno": Reno, "cubic": Cubic}
DEFAULT = "reno"
