"""Congestion control, chosen by name (RFC 5681 reno, RFC 6582 newreno).

The connection calls these hooks; the algorithm owns cwnd and ssthresh (bytes).
Segments are counted in bytes, so a TSO segment of k MSS counts as k segments.
With SACK the connection runs RFC 6675 loss recovery: cwnd is set to ssthresh on
entry and not inflated by duplicate ACKs (``sack`` argument of ``enter_recovery``).
"""
from __future__ import annotations


def initial_window(mss: int) -> int:
    """RFC 5681 3.1 initial window."""
    if mss > 2190:
        return 2 * mss
    if mss > 1095:
        return 3 * mss
    return 4 * mss


class Reno:
    """RFC 5681: slow start, congestion avoidance, fast retransmit/recovery.

    Recovery ends at the first ACK of new data, full or partial.
    """

    name = "reno"
    __slots__ = ("mss", "cwnd", "ssthresh", "ca_bytes", "sack")

    def __init__(self, mss: int):
        self.mss = mss
        self.cwnd = initial_window(mss)
        self.ssthresh = 1 << 30
        self.ca_bytes = 0
        self.sack = False

    def set_mss(self, mss: int) -> None:
        self.mss = mss
        self.cwnd = initial_window(mss)

    def on_ack(self, acked: int) -> None:
        """New data acknowledged outside recovery."""
        if self.cwnd < self.ssthresh:
            # Slow start, byte counting up to ssthresh: one ACK that covers a whole
            # SACKed window after an RTO must not multiply cwnd.
            cwnd = self.cwnd + acked
            self.cwnd = cwnd if cwnd < self.ssthresh else self.ssthresh
            return
        self.ca_bytes += acked                      # one MSS per cwnd of data acked
        if self.ca_bytes >= self.cwnd:
            self.ca_bytes -= self.cwnd
            self.cwnd += self.mss

    def enter_recovery(self, flight: int, sack: bool) -> None:
        """Third duplicate ACK (RFC 5681 3.2 steps 2-3)."""
        self.sack = sack
        self.ssthresh = max(flight // 2, 2 * self.mss)
        self.cwnd = self.ssthresh if sack else self.ssthresh + 3 * self.mss
        self.ca_bytes = 0

    def on_dupack_in_recovery(self) -> None:
        if not self.sack:
            self.cwnd += self.mss                   # window inflation (step 4)

    def on_partial_ack(self, acked: int) -> bool:
        """An ACK below the recovery point; returns True to stay in recovery."""
        self.cwnd = self.ssthresh
        return False

    def exit_recovery(self, flight: int) -> None:
        self.cwnd = self.ssthresh                   # deflate (step 6)

    def on_timeout(self, flight: int) -> None:
        """RTO (RFC 5681 eq. 4): ssthresh from the flight size, cwnd to one segment."""
        self.ssthresh = max(flight // 2, 2 * self.mss)
        self.cwnd = self.mss
        self.ca_bytes = 0


class NewReno(Reno):
    """RFC 6582: partial ACKs keep recovery going until the recovery point."""

    name = "newreno"
    __slots__ = ()

    def on_partial_ack(self, acked: int) -> bool:
        if not self.sack:                           # partial window deflation (3.2 step 3)
            self.cwnd = max(self.cwnd - acked + self.mss, self.mss)
        return True

    def exit_recovery(self, flight: int) -> None:
        self.cwnd = min(self.ssthresh, max(flight, self.mss) + self.mss)


ALGORITHMS = {"reno": Reno, "newreno": NewReno}


def create(name: str, mss: int) -> Reno:
    try:
        return ALGORITHMS[name](mss)
    except KeyError:
        raise ValueError(f"tcp.cc: unknown congestion control {name!r}; "
                         f"choose one of {', '.join(sorted(ALGORITHMS))}") from None
