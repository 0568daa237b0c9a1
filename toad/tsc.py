"""The time-stamp counter's rate, measured once per process.

Compiled code reads the TSC (toad/rings/atomics.py ``cycles``) to time a copy (the
host's boundary copy, host/copy_timer.py) and to spend a given time busy (the bus
model's charges, toad/rings/bus.py). Both need nanoseconds per cycle, measured here
against the clock with a short busy comparison, once per process; and both need a
TSC that ticks at a constant rate (``constant_tsc``), or a cycle is no unit of time.
"""
from __future__ import annotations

import time
from typing import Optional

CALIBRATE_NS = 2_000_000      # how long the TSC is compared with the clock
_measured: list = []          # [ns per cycle or None], once measured


def constant_tsc() -> bool:
    """The CPU's time-stamp counter ticks at a constant rate (/proc/cpuinfo flags)."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("flags"):
                    return "constant_tsc" in line.split()
    except OSError:
        pass
    return False


def measure_ns_per_cycle() -> Optional[float]:
    """Nanoseconds per TSC cycle, from a busy comparison with the clock (2 ms); None
    when the TSC is not constant-rate."""
    if not constant_tsc():
        return None
    from toad.rings.atomics import read_cycles
    clock = time.perf_counter_ns
    start_ns, start_cycles = clock(), read_cycles()
    while clock() - start_ns < CALIBRATE_NS:
        pass
    return (clock() - start_ns) / max(1, read_cycles() - start_cycles)


def ns_per_cycle() -> Optional[float]:
    """:func:`measure_ns_per_cycle`, measured at the first call of the process."""
    if not _measured:
        _measured.append(measure_ns_per_cycle())
    return _measured[0]


def bus_ns_per_cycle() -> float:
    """ns_per_cycle() for the bus model, which spends its costs on the TSC: a
    ConfigError naming the fix where the TSC is not constant-rate."""
    rate = ns_per_cycle()
    if not rate:
        from toad.config.loader import ConfigError
        raise ConfigError("bus.preset: the bus model spends its costs on the time-stamp "
                          "counter, which does not tick at a constant rate on this machine "
                          "(no constant_tsc in /proc/cpuinfo); use bus.preset: none")
    return rate
