"""The host's send ("kernel") buffers: extents of the QP's send area, used as rings.

:class:`SendArea` hands out extents of the QP's send area as power-of-two blocks (a
buddy allocator: allocating and freeing cost O(log area) whatever the number of rings
out, where a first-fit list grew with them). A connection takes an extent when it
sends and it has none, sized to its writes; it gives it back when the engine answers
its CLOSE (every byte acknowledged or the connection dead), or earlier, once every
byte in it is acknowledged, when another connection needs the space
(host/sockets.py: ``reclaim_send_space``). So the engine never reads memory the host
reused, and connections that sent and went idle do not keep the area from the ones
that send now.

:class:`SendRing` is one connection's extent used as a byte ring: ``posted`` counts
bytes ever copied in and handed to the engine (OP_SEND), ``acked`` the bytes the
engine reports acknowledged in the connection's cumulative counter. Space is freed
lazily, by reading that counter when more is needed (TOAD III-C: no event, no
interrupt). A write never wraps inside one descriptor, so consecutive descriptors
are adjacent in memory and the engine merges them into long gather ranges. A ring
starts small (sized to the first write) and grows (x4, up to the share) when a writer
fills it, so thousands of connections fit in the area and a bulk sender soon has its
full share.
"""
from __future__ import annotations

import threading

MIN_ORDER = 10            # the smallest block: 1 KB


class SendArea:
    """Buddy allocator over [offset, offset + size) of a QP segment: blocks of 2**k
    bytes (k >= MIN_ORDER) at multiples of their size from ``offset``."""

    def __init__(self, offset: int, size: int):
        self.base = offset
        self.size = size
        self.lock = threading.Lock()
        self.top = max(MIN_ORDER, size.bit_length() - 1)
        self.free_blocks: list[set[int]] = [set() for _ in range(self.top + 1)]
        self.used: dict[int, int] = {}      # relative offset of a block out -> its order
        self.free_total = 0
        position = 0                        # the area as maximal aligned blocks
        while size - position >= 1 << MIN_ORDER:
            order = MIN_ORDER
            while order < self.top and position % (2 << order) == 0 \
                    and position + (2 << order) <= size:
                order += 1
            self.free_blocks[order].add(position)
            self.free_total += 1 << order
            position += 1 << order

    @staticmethod
    def order_of(size: int) -> int:
        return max(MIN_ORDER, (size - 1).bit_length())

    def allocate(self, size: int) -> int | None:
        """The offset of a block of at least ``size`` bytes, or None."""
        want = self.order_of(size)
        with self.lock:
            for order in range(want, self.top + 1):
                blocks = self.free_blocks[order]
                if blocks:
                    position = blocks.pop()
                    break
            else:
                return None
            while order > want:                     # split: the upper halves stay free
                order -= 1
                self.free_blocks[order].add(position + (1 << order))
            self.used[position] = want
            self.free_total -= 1 << want
            return self.base + position

    def free(self, offset: int, size: int = 0) -> None:
        """Give back the block at ``offset`` (``size`` is not needed: the block's own
        is known); it merges with its free buddy, and that one with its own."""
        position = offset - self.base
        with self.lock:
            order = self.used.pop(position)
            self.free_total += 1 << order
            while order < self.top:
                buddy = position ^ (1 << order)
                blocks = self.free_blocks[order]
                if buddy not in blocks:
                    break
                blocks.remove(buddy)
                position &= ~(1 << order)
                order += 1
            self.free_blocks[order].add(position)

    def fits(self, size: int) -> bool:
        """Whether a block of ``size`` bytes is free now."""
        want = self.order_of(size)
        return any(self.free_blocks[order] for order in range(want, self.top + 1))

    def free_bytes(self) -> int:
        return self.free_total


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
