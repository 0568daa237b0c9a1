"""Process memory: maps for timed copies, and a heap that keeps its pages.

Timed copies use anonymous maps whose pages exist before the clock starts.

MAP_POPULATE: on this kind of VM a region obtained right after freeing another one
was measured copying up to 10x slower for minutes (the guest's memory reclaim), which
would charge a copy benchmark with a paging cost. Every timed copy in toad (the
copy-cost calibration, `toad perturb` on both sides) takes its memory from here.
"""
from __future__ import annotations

import ctypes
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


M_TRIM_THRESHOLD = -1   # glibc <malloc.h>


def keep_heap(trim_bytes: int) -> bool:
    """Set glibc malloc's trim threshold for this process (``heap_trim_bytes``).

    The stack allocates each frame (up to 64 KB) and frees it a pass later. With
    glibc's default threshold (128 KB) those frees shrink the heap and the next
    frames fault the pages back in: about 5 minor faults per 64 KB segment in the
    engine, a fifth of its CPU spent in the kernel. A threshold above the frames in
    flight keeps the pages. Returns whether it was applied (False with 0, or a C
    library without ``mallopt``).
    """
    if trim_bytes <= 0:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return mallopt(M_TRIM_THRESHOLD, trim_bytes) == 1


def rss_kib(pid: int) -> int | None:
    """Resident memory (VmRSS) of process ``pid`` in KiB, None if unreadable."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None
