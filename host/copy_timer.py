"""The socket-boundary copy, timed where it happens (one copy in ``period``).

The "memory copies" row of a run charges the bytes copied at the boundary with a copy
cost calibrated on the worker's CPU before the run, the CPU copying alone
(toad.experiment.accounting.calibrate_copy). Inside a run the same copy reads an
anonymous buffer the engine's CPU has just written (receive) or overwrites send-ring
memory the engine's CPU has just read (send), and can cost several times more: the
cache lines move between the two CPUs. The calibrated figure alone would book that
difference to the driver.

So the socket layers time every ``period``-th boundary copy of their process. The
offloaded socket's copy happens inside a compiled call (host/datapath.py), which
reads the CPU's time-stamp counter around the memcpy alone; :meth:`CopyTimer.add_cycles`
converts it with the TSC's rate (toad/tsc.py, measured once per process; the TSC
must run at a constant rate: ``constant_tsc``; without it the offloaded copies are
not timed). The in-host socket (host/inhost_socket.py) times its copy with
the wall clock, inline:

    timer = COPY_TIMER
    timer.countdown -= 1
    if timer.countdown:
        dst[...] = src                       # the usual call: one decrement and a test
    else:
        t0 = perf_counter_ns()
        dst[...] = src
        timer.add(perf_counter_ns() - t0, nbytes)

Only while a Meter measures (Meter.start arms the timer, Meter.stop disarms it). The
wall clock (a vDSO read, ~60 ns here; thread_time is a system call of ~0.7 us) counts a
copy the scheduler interrupted with the time another process ran, so the report uses
the median ns per byte of the samples, times the bytes copied in the interval; the
clock's own cost is taken off each sample. Kernel mode copies inside Linux: no sample,
no timed figure.
"""
from __future__ import annotations

import time
from typing import Optional

from toad.tsc import constant_tsc, ns_per_cycle  # noqa: F401 (the TSC rate: toad/tsc.py)

MAX_SAMPLES = 1 << 18


def _clock_overhead_ns(trials: int = 50) -> int:
    """The smallest difference of two back-to-back perf_counter_ns readings."""
    clock = time.perf_counter_ns
    best = 1 << 62
    for _ in range(trials):
        start = clock()
        best = min(best, clock() - start)
    return best


class CopyTimer:
    """Samples of the boundary copy's cost, in ns per byte, while armed."""

    __slots__ = ("period", "countdown", "samples", "overhead_ns", "cycle_ns")

    def __init__(self, period: int = 0) -> None:
        self.period = period         # copies per timed one; 0 = never time
        self.countdown = -1          # below zero while disarmed: never reaches 0
        self.samples: list[float] = []
        self.overhead_ns = _clock_overhead_ns()
        self.cycle_ns: Optional[float] = None   # ns per TSC cycle, once measured

    def start(self) -> None:
        """Arm (a Meter's interval begins): the ``period``-th next copy is timed."""
        self.samples = []
        self.countdown = self.period if self.period > 0 else -1

    def calibrate(self) -> None:
        """Take the TSC's rate (measured once per process, toad/tsc.py: a 2 ms busy
        wait; the offloaded socket layer calls this when it starts)."""
        if self.cycle_ns is None:
            self.cycle_ns = ns_per_cycle() or 0.0

    def add_cycles(self, cycles: int, nbytes: int) -> None:
        """One copy timed in TSC cycles inside a compiled call (no clock overhead to
        take off); not counted without a calibrated constant-rate TSC."""
        self.countdown = self.period
        if self.cycle_ns and nbytes > 0 and len(self.samples) < MAX_SAMPLES:
            self.samples.append(cycles * self.cycle_ns / nbytes)

    def stop(self) -> None:
        self.countdown = -1

    def add(self, ns: int, nbytes: int) -> None:
        """One timed copy of ``nbytes``; the next one is ``period`` copies away."""
        self.countdown = self.period
        if nbytes > 0 and len(self.samples) < MAX_SAMPLES:
            self.samples.append(max(0, ns - self.overhead_ns) / nbytes)

    def summary(self) -> Optional[dict]:
        """{"samples", "s_per_byte" (median), "s_per_byte_p10", "s_per_byte_p90"}, or
        None when no copy was timed (kernel mode, or the timer is off)."""
        if not self.samples:
            return None
        ordered = sorted(self.samples)
        n = len(ordered)
        return {"samples": n, "s_per_byte": ordered[n // 2] * 1e-9,
                "s_per_byte_p10": ordered[n // 10] * 1e-9,
                "s_per_byte_p90": ordered[(9 * n) // 10] * 1e-9}


COPY_TIMER = CopyTimer()   # one per process: all of a worker's sockets copy through it
