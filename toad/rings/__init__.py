"""The host/engine rings and counters: one compiled implementation for both sides.

* :mod:`toad.rings.index`: free-running indices, phase bits, ``need_event``;
* :mod:`toad.rings.records`: ring slots, publication (the ordering rules) and record
  fields, as compiled helpers the engine's calls (engine/ring_calls.py) and the host
  driver's (host/datapath.py) are built from;
* :mod:`toad.rings.atomics`: acquire/release/fence and memcpy in compiled code;
* :mod:`toad.rings.calls`: batch operations callable from Python;
* :mod:`toad.compiled`: how all of it is compiled and cached.

The classes below wrap the batch calls for tests and tools; they add no ring logic of
their own.
"""
from __future__ import annotations

import numpy as np

from toad.rings import calls
from toad.rings.atomics import full_fence
from toad.rings.index import MASK32, need_event, phase_for, ring_count, ring_free, ring_valid

__all__ = ["MASK32", "need_event", "phase_for", "ring_count", "ring_free", "ring_valid",
           "full_fence", "RecordRing", "PhaseWriter", "PhaseReader"]


class RecordRing:
    """The records of one ring inside a buffer (an mmap, a bytearray...): ``entries``
    records of ``dtype`` at byte ``offset``. Addressing only; who publishes what, and
    when, belongs to the caller."""

    def __init__(self, buffer, offset: int, entries: int, dtype: np.dtype):
        if entries < 1 or entries & (entries - 1):
            raise ValueError(f"ring entries {entries} must be a power of two")
        self.seg = np.frombuffer(buffer, np.uint8)
        self.records = np.frombuffer(buffer, dtype=dtype, count=entries, offset=offset)
        self.dtype = dtype
        self.entries = entries
        self.mask = entries - 1
        self.offset = offset
        self.record_bytes = dtype.itemsize

    def byte_offset(self, index: int) -> int:
        """Offset in the buffer of the record at free-running ``index``."""
        return self.offset + (index & self.mask) * self.record_bytes

    def write(self, index: int, records: np.ndarray) -> None:
        """Copy ``records`` into the ring from ``index`` on (does not publish)."""
        raw = np.ascontiguousarray(records, self.dtype).view(np.uint8)
        calls.copy_in(self.seg, self.offset, self.entries, self.record_bytes, 0, index,
                      len(records), raw, 0)

    def read(self, index: int, count: int) -> np.ndarray:
        """A copy of ``count`` records from ``index`` on."""
        out = np.zeros(count, self.dtype)
        calls.copy_out(self.seg, self.offset, self.entries, self.record_bytes, 0, index,
                       count, out.view(np.uint8), 0)
        return out


class PhaseWriter:
    """Producer side of a phase ring (events): bodies, then phase words."""

    def __init__(self, ring: RecordRing, phase_field: str = "phase"):
        self.ring = ring
        self.phase_at = ring.dtype.fields[phase_field][1]
        self.producer = 0

    def free(self, consumer: int) -> int:
        return ring_free(self.ring.entries, self.producer, consumer)

    def post(self, records: np.ndarray, consumer: int) -> int:
        """Post as many of ``records`` as fit; returns how many were posted."""
        ring = self.ring
        raw = np.ascontiguousarray(records, ring.dtype).view(np.uint8)
        n = calls.phase_post(ring.seg, ring.offset, ring.entries, ring.record_bytes,
                             self.phase_at, self.producer, consumer, raw, len(records))
        self.producer = (self.producer + n) & MASK32
        return n


class PhaseReader:
    """Consumer side of a phase ring: take the records whose phase says "ready"."""

    def __init__(self, ring: RecordRing, phase_field: str = "phase"):
        self.ring = ring
        self.phase_at = ring.dtype.fields[phase_field][1]
        self.consumer = 0

    def poll(self, limit: int | None = None) -> np.ndarray:
        """Copies of the ready records at the head (at most ``limit``), consumed."""
        ring = self.ring
        limit = ring.entries if limit is None else min(limit, ring.entries)
        out = np.zeros(limit, ring.dtype)
        n = calls.phase_poll(ring.seg, ring.offset, ring.entries, ring.record_bytes,
                             self.phase_at, self.consumer, limit, out.view(np.uint8))
        self.consumer = (self.consumer + n) & MASK32
        return out[:n]
