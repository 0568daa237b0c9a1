"""Round-trip time estimation and the retransmission timeout (RFC 6298).

Samples come from timestamps (RFC 7323: every ACK of new data echoes a TSval) or,
without timestamps, from one timed segment at a time that was never retransmitted
(Karn's rule: the connection discards the timing when it retransmits).
"""
from __future__ import annotations

GRANULARITY = 0.001            # clock granularity G (timestamps tick in ms)


class RttEstimator:
    __slots__ = ("srtt", "rttvar", "base_rto", "backoff", "rto_min", "rto_max")

    def __init__(self, initial: float, rto_min: float, rto_max: float):
        self.srtt: float | None = None
        self.rttvar = 0.0
        self.rto_min = rto_min
        self.rto_max = rto_max
        self.base_rto = min(max(initial, rto_min), rto_max)
        self.backoff = 0

    def sample(self, rtt: float) -> None:
        """Fold one measurement in (RFC 6298 2.2 and 2.3); a sample ends the backoff."""
        if rtt < 0:
            rtt = 0.0
        if self.srtt is None:
            self.srtt = rtt
            self.rttvar = rtt / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - rtt)
            self.srtt = 0.875 * self.srtt + 0.125 * rtt
        rto = self.srtt + max(GRANULARITY, 4 * self.rttvar)
        self.base_rto = min(max(rto, self.rto_min), self.rto_max)
        self.backoff = 0

    def rto(self) -> float:
        """The current timeout, with the exponential backoff applied (5.5)."""
        return min(self.base_rto * (1 << self.backoff), self.rto_max)

    def back_off(self) -> None:
        if self.base_rto * (1 << self.backoff) < self.rto_max:
            self.backoff += 1
