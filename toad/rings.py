"""Single-producer / single-consumer rings: indices, phase bits, notification rules.

Every ring has a power-of-two number of fixed-size records (toad/layout.py) and
free-running 32-bit indices: the producer index counts records ever produced, the
consumer index records ever consumed, both modulo 2**32; a record's slot is
``index & (entries - 1)``. So ``producer - consumer`` (mod 2**32) is the number of
records in the ring, full and empty are never confused, and no index is ever reset.

Two ways to publish a record:

* index rings (requests, receive buffers): the producer writes the record, then the
  new producer index (a doorbell register for host -> engine rings);
* phase rings (events): the producer writes the record body, then its phase word.
  The phase expected at index ``i`` is 1 on the first pass over the ring, 0 on the
  second, and so on (:func:`phase_for`). Zeroed memory therefore reads as "empty",
  and a stale record from the previous pass has the other phase. The consumer tells
  the producer how far it got (a consumer-index register) so the producer never
  overwrites an event that has not been consumed.

Notification suppression is virtio's ``vring_need_event``: the waiter publishes the
index it waits for; the producer, having moved its index from ``old`` to ``new``,
notifies only if that index lies in ``[old, new)`` (:func:`need_event`).

Ordering rules are in toad/layout.py; every function here that publishes says so.
"""
from __future__ import annotations

import threading

import numpy as np

MASK32 = 0xFFFFFFFF

_fence_lock = threading.Lock()


def full_fence() -> None:
    """A full memory barrier between a store and a later load (Dekker pattern).

    Acquiring a CPython lock executes an atomic read-modify-write (``lock cmpxchg``
    on x86-64), which orders all earlier stores before all later loads. Used where
    one side stores a flag and then loads the other side's flag: arming an interrupt
    and re-checking the event ring; the engine setting "sleeping" and re-checking the
    doorbells; posting events / doorbells and then reading the other side's flag.
    """
    _fence_lock.acquire()
    _fence_lock.release()


def ring_count(producer: int, consumer: int) -> int:
    """Records in a ring (may exceed ``entries`` only if a side misbehaves)."""
    return (producer - consumer) & MASK32


def ring_free(entries: int, producer: int, consumer: int) -> int:
    """Records the producer may still write without overwriting unconsumed ones."""
    return entries - ((producer - consumer) & MASK32)


def ring_valid(entries: int, producer: int, consumer: int) -> bool:
    """A producer index that claims more than ``entries`` records is garbage."""
    return ((producer - consumer) & MASK32) <= entries


def phase_for(index: int, entries: int) -> int:
    """Phase an event at free-running ``index`` carries when valid: 1, 0, 1, ...

    ``entries`` divides 2**32, so the phase sequence is unbroken at the index wrap.
    """
    return ((index // entries) & 1) ^ 1


def need_event(event_index: int, new_index: int, old_index: int) -> bool:
    """Whether moving a producer index from ``old`` to ``new`` crosses ``event_index``.

    True iff ``event_index`` is one of old, old+1, ..., new-1 (mod 2**32): the waiter
    asked to be told when the record at ``event_index`` is published. Same rule as
    virtio's ``vring_need_event``; pure, so it is tested exhaustively at the wrap.
    """
    return ((new_index - event_index - 1) & MASK32) < ((new_index - old_index) & MASK32)


class RecordRing:
    """The records of one ring inside a buffer, with batch copies that handle wrap.

    ``buffer`` is any writable buffer (an mmap, a memoryview, a bytearray); the ring
    lives at ``offset`` and holds ``entries`` records of ``dtype``. This class only
    addresses records; who publishes what, and when, belongs to the caller.
    """

    def __init__(self, buffer, offset: int, entries: int, dtype: np.dtype):
        if entries < 1 or entries & (entries - 1):
            raise ValueError(f"ring entries {entries} must be a power of two")
        self.records = np.frombuffer(buffer, dtype=dtype, count=entries, offset=offset)
        self.entries = entries
        self.mask = entries - 1
        self.offset = offset
        self.record_bytes = dtype.itemsize

    def byte_offset(self, index: int) -> int:
        """Offset in the buffer of the record at free-running ``index``."""
        return self.offset + (index & self.mask) * self.record_bytes

    def spans(self, index: int, count: int) -> list[tuple[int, int]]:
        """(first slot, slot count) pieces covering ``count`` records from ``index``."""
        first = index & self.mask
        head = min(count, self.entries - first)
        pieces = [(first, head)] if head else []
        if count > head:
            pieces.append((0, count - head))
        return pieces

    def write(self, index: int, records: np.ndarray) -> None:
        """Copy ``records`` into the ring from ``index`` on (does not publish)."""
        done = 0
        for first, n in self.spans(index, len(records)):
            self.records[first:first + n] = records[done:done + n]
            done += n

    def read(self, index: int, count: int) -> np.ndarray:
        """A copy of ``count`` records from ``index`` on."""
        pieces = [self.records[first:first + n] for first, n in self.spans(index, count)]
        if len(pieces) == 1:
            return pieces[0].copy()
        return np.concatenate(pieces) if pieces else self.records[:0].copy()


class PhaseWriter:
    """Producer side of a phase ring (events): write bodies, then phase words."""

    def __init__(self, ring: RecordRing, phase_field: str = "phase"):
        self.ring = ring
        self.phase_field = phase_field
        self.producer = 0

    def free(self, consumer: int) -> int:
        return ring_free(self.ring.entries, self.producer, consumer)

    def post(self, records: np.ndarray, consumer: int) -> int:
        """Post as many of ``records`` as fit; returns how many were posted.

        Bodies are written with the stale phase first, then each phase word is set,
        in increasing index order: a consumer that sees a record's phase flip also
        sees its body (rule 1 of toad/layout.py).
        """
        n = min(len(records), self.free(consumer))
        if n <= 0:
            return 0
        batch = records[:n].copy()
        entries = self.ring.entries
        done = 0
        for first, count, index in self._pieces(n):
            piece = batch[done:done + count]
            piece[self.phase_field] = phase_for(index, entries) ^ 1  # stale: not yet valid
            self.ring.records[first:first + count] = piece
            done += count
        for first, count, index in self._pieces(n):
            # publish: body above is complete; the phase word makes it visible
            self.ring.records[self.phase_field][first:first + count] = phase_for(index, entries)
        self.producer = (self.producer + n) & MASK32
        return n

    def _pieces(self, n: int) -> list[tuple[int, int, int]]:
        out, index = [], self.producer
        for first, count in self.ring.spans(self.producer, n):
            out.append((first, count, index))
            index = (index + count) & MASK32
        return out


class PhaseReader:
    """Consumer side of a phase ring: take the records whose phase says "ready"."""

    def __init__(self, ring: RecordRing, phase_field: str = "phase"):
        self.ring = ring
        self.phase_field = phase_field
        self.consumer = 0

    def poll(self, limit: int | None = None) -> np.ndarray:
        """Copies of the ready records at the head (at most ``limit``), consumed."""
        entries = self.ring.entries
        limit = entries if limit is None else min(limit, entries)
        taken = []
        index, left = self.consumer, limit
        while left > 0:
            first = index & self.ring.mask
            span = self.ring.records[first:first + min(left, entries - first)]
            want = phase_for(index, entries)
            bad = np.flatnonzero(span[self.phase_field] != want)
            ready = int(bad[0]) if len(bad) else len(span)
            if ready:
                taken.append(span[:ready].copy())
            index = (index + ready) & MASK32
            left -= ready
            if ready < len(span) or ready == 0:
                break
        self.consumer = index
        if not taken:
            return self.ring.records[:0].copy()
        return taken[0] if len(taken) == 1 else np.concatenate(taken)
