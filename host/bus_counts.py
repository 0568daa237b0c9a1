"""What this process's host side paid the bus (the bus model), for measured intervals.

Each offload driver (host/driver.py) registers its ``bus_counts``; a workload's Meter
(host/workloads.py) takes :func:`totals` when its interval starts and stops, so a
run reports the doorbells, register reads, interrupts taken and bus time of its
measured interval only. Processes without a driver (kernel and in-host modes) have
no totals (None).
"""
from __future__ import annotations

import weakref
from typing import Callable, Optional

KEYS = ("doorbells", "register_reads", "interrupts", "bus_ns")
_sources: list = []          # weak references to drivers' bus_counts methods


def register(counts: Callable[[], dict]) -> None:
    """Count a driver's ``bus_counts`` in the totals (while the driver lives)."""
    _sources.append(weakref.WeakMethod(counts))


def totals() -> Optional[dict]:
    """The sums over this process's drivers, or None when it has none."""
    live = [ref() for ref in _sources]
    live = [counts for counts in live if counts is not None]
    if not live:
        return None
    out = dict.fromkeys(KEYS, 0)
    for counts in live:
        for key, value in counts().items():
            out[key] += value
    return out


def delta(start: Optional[dict], end: Optional[dict]) -> Optional[dict]:
    """What was paid between two totals (None unless both exist)."""
    if start is None or end is None:
        return None
    return {key: end[key] - start[key] for key in KEYS}
