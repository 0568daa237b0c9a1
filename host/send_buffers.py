"""The host's send ("kernel") buffers: extents of the QP's send area, used as rings.

:class:`SendArea` hands out extents of the QP's send area (first fit, neighbours merged
on free). Each connection gets one extent, its share, the first time it sends, and
gives it back when the engine answers its CLOSE (every byte acknowledged or the
connection dead), so the engine never reads memory the host reused.

:class:`SendRing` is one connection's extent used as a byte ring: ``posted`` counts
bytes ever copied in and handed to the engine (OP_SEND), ``acked`` the bytes the
engine reports acknowledged in the connection's cumulative counter. Space is freed
lazily, by reading that counter when more is needed (TOAD III-C: no event, no
interrupt). A write never wraps inside one descriptor, so consecutive descriptors
are adjacent in memory and the engine merges them into long gather ranges. A ring
starts small and grows (x4, up to the share) when a writer fills it, so thousands of
short connections fit in the area and a bulk sender soon has its full share.
"""
from __future__ import annotations

import bisect
import threading


class SendArea:
    """First-fit allocator over [offset, offset + size) of a QP segment."""

    def __init__(self, offset: int, size: int, align: int = 64):
        self.align = align
        self.free_list: list[list[int]] = [[offset, size]]   # sorted by offset
        self.lock = threading.Lock()
        self.size = size

    def allocate(self, size: int) -> int | None:
        size = -(-size // self.align) * self.align
        with self.lock:
            for i, (start, length) in enumerate(self.free_list):
                if length >= size:
                    if length == size:
                        del self.free_list[i]
                    else:
                        self.free_list[i] = [start + size, length - size]
                    return start
        return None

    def free(self, offset: int, size: int) -> None:
        size = -(-size // self.align) * self.align
        with self.lock:
            spans = self.free_list
            i = bisect.bisect_left(spans, [offset, 0])
            spans.insert(i, [offset, size])
            if i + 1 < len(spans) and offset + size == spans[i + 1][0]:
                spans[i][1] += spans[i + 1][1]
                del spans[i + 1]
            if i > 0 and spans[i - 1][0] + spans[i - 1][1] == offset:
                spans[i - 1][1] += spans[i][1]
                del spans[i]

    def free_bytes(self) -> int:
        with self.lock:
            return sum(length for _, length in self.free_list)


class SendRing:
    """One connection's extent as a ring of bytes waiting for acknowledgement.

    ``posted`` and ``acked`` are the connection's cumulative byte counts; ``base`` is
    the value of ``posted`` when this extent became the connection's ring (rings grow
    by moving to a bigger extent: the old one is retired, and freed once every byte
    posted in it is acknowledged).
    """

    __slots__ = ("offset", "size", "posted", "acked", "base")

    def __init__(self, offset: int, size: int, posted: int = 0, acked: int = 0):
        self.offset = offset
        self.size = size
        self.posted = posted
        self.acked = acked
        self.base = posted

    def space(self) -> int:
        held = self.posted - (self.acked if self.acked > self.base else self.base)
        return self.size - held

    def next_range(self, want: int) -> tuple[int, int]:
        """(segment offset, length) of the next contiguous free bytes, at most ``want``."""
        position = (self.posted - self.base) % self.size
        n = min(want, self.space(), self.size - position)
        return self.offset + position, n
