"""Free-running ring indices, phase bits and notification suppression.

Every ring has a power-of-two number of fixed-size records and free-running 32-bit
indices: the producer index counts records ever produced, the consumer index records
ever consumed, both modulo 2**32; a record's slot is ``index & (entries - 1)``. So
``producer - consumer`` (mod 2**32) is the number of records in the ring, full and
empty are never confused, and no index is ever reset.

A phase ring (events) needs no producer index: the record at index ``i`` is valid when
its phase word equals :func:`phase_for` ``(i)``: 1 on the first pass over the ring, 0
on the second, and so on. Zeroed memory therefore reads as "empty", and a stale
record of the previous pass has the other phase.

Notification suppression is virtio's ``vring_need_event`` (:func:`need_event`).

These are compiled (callable from Python and from compiled code alike); indices are
int64 holding a 32-bit value.
"""
from __future__ import annotations

from toad.compiled import kernel, loaded

MASK32 = 0xFFFFFFFF


@kernel("int64(int64, int64)")
def ring_count(producer, consumer):
    """Records in a ring (more than ``entries`` only if a side misbehaves)."""
    return (producer - consumer) & 0xFFFFFFFF


@kernel("int64(int64, int64, int64)")
def ring_free(entries, producer, consumer):
    """Records the producer may still write without overwriting unconsumed ones
    (negative if a side misbehaves)."""
    return entries - ((producer - consumer) & 0xFFFFFFFF)


@kernel("boolean(int64, int64, int64)")
def ring_valid(entries, producer, consumer):
    """A producer index that claims more than ``entries`` records is garbage."""
    return ((producer - consumer) & 0xFFFFFFFF) <= entries


@kernel("int64(int64, int64)")
def phase_for(index, entries):
    """Phase an event at free-running ``index`` carries when valid: 1, 0, 1, ...
    ``entries`` divides 2**32, so the sequence is unbroken at the index wrap."""
    return ((index // entries) & 1) ^ 1


@kernel("boolean(int64, int64, int64)")
def need_event(event_index, new_index, old_index):
    """Whether moving a producer index from ``old`` to ``new`` crosses ``event_index``.

    True iff ``event_index`` is one of old, old+1, ..., new-1 (mod 2**32): the waiter
    asked to be told when the record at ``event_index`` is published. Same rule as
    virtio's ``vring_need_event``; pure, so it is tested exhaustively at the wrap.
    """
    return ((new_index - event_index - 1) & 0xFFFFFFFF) < ((new_index - old_index) & 0xFFFFFFFF)


loaded(__name__)
