"""Memory for timed copies: anonymous maps whose pages exist before the clock starts.

MAP_POPULATE: on this kind of VM a region obtained right after freeing another one
was measured copying up to 10x slower for minutes (the guest's memory reclaim), which
would charge a copy benchmark with a paging cost. Every timed copy in toad (the
copy-cost calibration, `toad perturb` on both sides) takes its memory from here.
"""
from __future__ import annotations

import mmap

import numpy as np

POPULATE = getattr(mmap, "MAP_POPULATE", 0x8000)


def populated_map(size: int) -> mmap.mmap:
    """A private anonymous map of ``size`` bytes with every page already present."""
    return mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | POPULATE)


def block(size: int, fill: int = 0) -> np.ndarray:
    """A populated byte array filled with ``fill`` (written once, so it is resident)."""
    array = np.frombuffer(populated_map(size), dtype=np.uint8)
    array[:] = fill
    return array
