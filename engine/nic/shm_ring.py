"""The shared-memory wire's frame copies (engine/nic/shm.py), compiled: a burst of
frame-pool slots into one direction's ring records, and ring records into new pool
slots, one call per burst. Only the copies: the indices are loaded and published
by the caller (shm.py), which owns the ordering rules.

A ring record (``slot_size`` bytes, little endian): length u32 @0, flags u32 @4
(bit 0: the checksum was left to the NIC), the frame @16. The ring array is the
records alone, record ``index & mask`` at ``(index & mask) * slot_size``.
"""
from __future__ import annotations

from engine.frames import alloc
from toad.compiled import entry, helper, kernel, loaded
from toad.rings.atomics import copy_bytes

SLOT_HEADER = 16
FLAG_PARTIAL_CSUM = 1
# counts[] words, added to by both calls
FRAMES, BYTES, DROPPED_LENGTH, DROPPED_FULL, DROPPED_NO_BUFFER = range(5)
COUNT_WORDS = 8


@helper
def _store_u32(ring, at, value):
    ring[at] = value & 0xFF
    ring[at + 1] = (value >> 8) & 0xFF
    ring[at + 2] = (value >> 16) & 0xFF
    ring[at + 3] = (value >> 24) & 0xFF


@helper
def _load_u32(ring, at):
    return (ring[at] | (ring[at + 1] << 8) | (ring[at + 2] << 16)
            | (ring[at + 3] << 24)) & 0xFFFFFFFF


@kernel("int64(uint8[::1], int64, int64, int64, int64, int64, uint8[::1], int64,"
        " int32[::1], int32[::1], int32[::1], int64, int64[::1])")
def _to_ring(ring, slot_size, mask, producer, room, limit, data, slot_bytes, length,
             csum_start, slots, count, counts):
    """Copy the frames of ``slots[:count]`` into records from ``producer`` on, while
    ``room`` lasts; a frame over ``limit`` bytes (or its record) or with no room is
    counted and skipped. Returns the new producer index (the caller publishes it)."""
    for k in range(count):
        slot = slots[k]
        if slot < 0 or slot >= length.size:
            counts[DROPPED_LENGTH] += 1
            continue
        n = length[slot]
        if n < 0 or n > limit or n > slot_size - SLOT_HEADER or n > slot_bytes:
            counts[DROPPED_LENGTH] += 1
            continue
        if room <= 0:
            counts[DROPPED_FULL] += 1
            continue
        at = (producer & mask) * slot_size
        _store_u32(ring, at, n)
        _store_u32(ring, at + 4, FLAG_PARTIAL_CSUM if csum_start[slot] > 0 else 0)
        copy_bytes(ring, at + SLOT_HEADER, data, slot * slot_bytes, n)
        producer += 1
        room -= 1
        counts[FRAMES] += 1
        counts[BYTES] += n
    return producer


@kernel("int64(uint8[::1], int64, int64, int64, int64, uint8[::1], int64, int32[::1],"
        " uint8[::1], int32[::1], int64[::1], uint8[::1], int32[::1], int64[::1])")
def _from_ring(ring, slot_size, mask, consumer, available, data, slot_bytes, length,
               csum_ok, free, state, held, out, counts):
    """Copy up to ``out.size`` frames from the records at ``consumer`` on (``available``
    of them) into new pool slots, their ids into ``out``. A record whose length is out
    of bounds, or that finds no free slot, is consumed, counted and dropped. Returns
    the records consumed (the caller advances its consumer index by that)."""
    taken = 0
    got = 0
    while taken < available and got < out.size:
        at = ((consumer + taken) & mask) * slot_size
        taken += 1
        n = _load_u32(ring, at)
        if n < 14 or n > slot_size - SLOT_HEADER or n > slot_bytes:
            counts[DROPPED_LENGTH] += 1
            continue
        slot = alloc(free, state, held)
        if slot < 0:
            counts[DROPPED_NO_BUFFER] += 1
            continue
        copy_bytes(data, slot * slot_bytes, ring, at + SLOT_HEADER, n)
        length[slot] = n
        csum_ok[slot] = 1 if _load_u32(ring, at + 4) & FLAG_PARTIAL_CSUM else 0
        out[got] = slot
        got += 1
        counts[FRAMES] += 1
        counts[BYTES] += n
    return taken


to_ring = entry(_to_ring)
from_ring = entry(_from_ring)


loaded(__name__)
