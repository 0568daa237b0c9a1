"""A boundary copy that avoids memcpy's slow case on this machine's CPU.

glibc's memcpy (2.36) takes another path for copies of about 2.5 KB or more (by its
size threshold, ``rep movsb``; not confirmed with a profiler). On the AMD EPYC of the
development VM that copy runs at about 550 ns per KB instead of 35 when the
destination lies 1 to 31 bytes after the source modulo 4096 (measured in steps of 4
bytes; 32 and up are fast; copying in smaller pieces does not help). An offloaded
socket's receive buffers start on page boundaries, and a buffer of 128 KB or more that
a program gets from malloc starts 16 bytes into a page (glibc's mmap chunk header): such a
reader met the slow case on every read. In four `toad compare` runs it cost the 128
KB receiving side 6-8% of a CPU per Gb/s instead of about 2. Whether a worker's buffer
lands there can depend on as little as its environment, since that moves the heap.

``copy(dst, dst_addr, src, src_addr)`` therefore copies through a scratch buffer
placed half a page away from both ends when the distance is in the slow range:
two fast copies, about 75 ns per KB in all.
"""
from __future__ import annotations

import ctypes

import numpy as np

PAGE = 4096
SLOW_BELOW = 64      # (dst - src) mod PAGE in 1..SLOW_BELOW-1: the slow case, with margin
MIN_BYTES = 2048     # 2 KB copies were fast at every distance, 2.5 KB ones not


def address(buffer) -> int:
    """The address of ``buffer``'s first byte (any contiguous buffer)."""
    try:
        return ctypes.addressof(ctypes.c_char.from_buffer(buffer))
    except (TypeError, ValueError):     # read-only, or empty
        return int(np.frombuffer(buffer, np.uint8).ctypes.data)


def slow_distance(dst_addr: int, src_addr: int) -> bool:
    return 0 < (dst_addr - src_addr) % PAGE < SLOW_BELOW


class AlignedCopier:
    """Copies for one socket; owns its scratch buffer (one thread at a time)."""

    def __init__(self):
        self.scratch: memoryview | None = None
        self.scratch_addr = 0
        self.bounced = 0                # copies that went through the scratch buffer

    def copy(self, dst: memoryview, dst_addr: int, src: memoryview, src_addr: int) -> None:
        """``dst[:] = src`` (same length), through the scratch buffer if the plain
        copy would be slow."""
        n = len(src)
        if n < MIN_BYTES or not slow_distance(dst_addr, src_addr):
            dst[:] = src
            return
        scratch = self.scratch
        if scratch is None or len(scratch) < n + PAGE:
            raw = bytearray(n + PAGE)
            self.scratch = scratch = memoryview(raw)
            self.scratch_addr = address(raw)
        # half a page from the source, hence about half a page before the destination
        at = (src_addr + PAGE // 2 - self.scratch_addr) % PAGE
        middle = scratch[at:at + n]
        middle[:] = src
        dst[:] = middle
        self.bounced += 1
