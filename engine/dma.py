"""Emulated DMA: the only way the engine touches a QP's host memory.

One :class:`Dma` object per attached QP wraps the engine's persistent mapping of the
host segment. Every access names an offset and a length; both are checked against
the segment (the IOMMU: a host can never make the engine read or write outside its
own memory) before any byte moves, and every access counts one transaction and its
bytes. With a bus model (the ``bus`` config section) every access also waits on the
card's bus, as a read or a posted write (toad/rings/bus.py, the same compiled charge
as the ring calls' own accesses): the engine CPU is held as an OE processor waiting
on its DMA engine would be. Off by default.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from toad.rings.bus import charge_dma


class DmaError(Exception):
    """An access outside the QP's segment (the IOMMU refused it)."""

    def __init__(self, offset: int, length: int, limit: int):
        super().__init__(f"DMA [{offset}, {offset + length}) outside segment of {limit} bytes")
        self.offset, self.length, self.limit = offset, length, limit


class Dma:
    """Bounds-checked, counted access to one host segment."""

    def __init__(self, buffer, size: int, bus: Optional[np.ndarray] = None):
        self.view = memoryview(buffer)
        # the same bytes for compiled code (the rings and counters: engine/ring_calls.py
        # checks and counts those accesses itself)
        self.seg = np.frombuffer(buffer, np.uint8, count=size)
        self.u32 = self.view[:size - size % 8].cast("I")   # aligned word access
        self.u64 = self.view[:size - size % 8].cast("Q")
        self.size = size
        self.bus = bus                 # the engine's bus state (toad/rings/bus.py) or None
        self.bytes = 0
        self.transactions = 0
        self.bus_cycles = 0            # TSC cycles these accesses waited on the bus
        self.refused = 0

    def check(self, offset: int, length: int) -> None:
        """Raise DmaError unless [offset, offset+length) lies inside the segment."""
        if offset < 0 or length < 0 or offset + length > self.size:
            self.refused += 1
            raise DmaError(offset, length, self.size)

    def _count(self, length: int, read: bool) -> None:
        self.transactions += 1
        self.bytes += length
        if self.bus is not None:
            self.bus_cycles += charge_dma(self.bus, length, read)

    def read(self, offset: int, length: int) -> memoryview:
        """A view of host bytes (a gather read: valid as long as the host keeps them)."""
        if offset < 0 or length < 0 or offset + length > self.size:
            self.check(offset, length)
        self.transactions += 1          # _count, inline (every read of a segment)
        self.bytes += length
        if self.bus is not None:
            self.bus_cycles += charge_dma(self.bus, length, True)
        return self.view[offset:offset + length]

    def read_bytes(self, offset: int, length: int) -> bytes:
        return bytes(self.read(offset, length))

    def write(self, offset: int, data) -> None:
        length = len(data) if not isinstance(data, memoryview) else data.nbytes
        if offset < 0 or offset + length > self.size:
            self.check(offset, length)
        self.transactions += 1          # _count, inline (every payload placed)
        self.bytes += length
        if self.bus is not None:
            self.bus_cycles += charge_dma(self.bus, length, False)
        self.view[offset:offset + length] = data

    # Word accessors: aligned offsets only (every ring index and counter is aligned).
    def read_u32(self, offset: int) -> int:
        if offset & 3 or not 0 <= offset <= self.size - 4:
            self.check(offset if offset & 3 == 0 else -1, 4)
        self.transactions += 1
        self.bytes += 4
        if self.bus is not None:
            self.bus_cycles += charge_dma(self.bus, 4, True)
        return self.u32[offset >> 2]

    def write_u32(self, offset: int, value: int) -> None:
        if offset & 3 or not 0 <= offset <= self.size - 4:
            self.check(offset if offset & 3 == 0 else -1, 4)
        self.transactions += 1
        self.bytes += 4
        if self.bus is not None:
            self.bus_cycles += charge_dma(self.bus, 4, False)
        self.u32[offset >> 2] = value

    def read_u64(self, offset: int) -> int:
        if offset & 7 or not 0 <= offset <= self.size - 8:
            self.check(offset if offset & 7 == 0 else -1, 8)
        self.transactions += 1
        self.bytes += 8
        if self.bus is not None:
            self.bus_cycles += charge_dma(self.bus, 8, True)
        return self.u64[offset >> 3]

    def write_u64(self, offset: int, value: int) -> None:
        if offset & 7 or not 0 <= offset <= self.size - 8:
            self.check(offset if offset & 7 == 0 else -1, 8)
        self.transactions += 1
        self.bytes += 8
        if self.bus is not None:
            self.bus_cycles += charge_dma(self.bus, 8, False)
        self.u64[offset >> 3] = value

    def array(self, offset: int, count: int, dtype: np.dtype) -> np.ndarray:
        """A typed view of ``count`` records (one transaction), e.g. a batch of a ring."""
        length = count * dtype.itemsize
        self.check(offset, length)
        self._count(length, True)
        return np.frombuffer(self.view, dtype=dtype, count=count, offset=offset)

    def close(self) -> None:
        self.seg = None
        self.u32.release()
        self.u64.release()
        self.view.release()
