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
        srtt = self.srtt
        if srtt is None:
            srtt = rtt
            rttvar = rtt / 2
        else:                          # (runs per ACK: no builtin calls)
            error = srtt - rtt
            rttvar = 0.75 * self.rttvar + 0.25 * (error if error >= 0 else -error)
            srtt = 0.875 * srtt + 0.125 * rtt
        self.srtt, self.rttvar = srtt, rttvar
        variation = 4 * rttvar
        rto = srtt + (variation if variation > GRANULARITY else GRANULARITY)
        if rto < self.rto_min:
            rto = self.rto_min
        self.base_rto = rto if rto < self.rto_max else self.rto_max
        self.backoff = 0

    def rto(self) -> float:
        """The current timeout, with the exponential backoff applied (5.5)."""
        if not self.backoff:
            return self.base_rto       # never above rto_max (sample and __init__ clamp it)
        return min(self.base_rto * (1 << self.backoff), self.rto_max)

    def back_off(self) -> None:
        if self.base_rto * (1 << self.backoff) < self.rto_max:
            self.backoff += 1
