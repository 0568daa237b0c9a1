"""Batch ring operations callable from Python (tools, tests, slow paths).

The same helpers as the engine's and the host's compiled calls (records.py), over any
record size: copy records in or out of a ring, post records to a phase ring, take
the ready ones. Records travel as bytes (a structured array viewed as uint8).
"""
from __future__ import annotations

from toad.compiled import entry, kernel, loaded
from toad.rings.index import ring_free
from toad.rings.records import phase_ready, publish_phase, slot_at, write_body
from toad.rings.atomics import copy_bytes

_SIG = "int64(uint8[::1], int64, int64, int64, int64, int64, int64, uint8[::1], int64)"


@kernel(_SIG)
def _copy_in(seg, base, entries, record_bytes, unused, index, count, src, src_at):
    """Write ``count`` records from ``src`` into the ring from ``index`` (no publish)."""
    for k in range(count):
        copy_bytes(seg, slot_at(base, entries, record_bytes, index + k),
                   src, src_at + k * record_bytes, record_bytes)
    return count


@kernel(_SIG)
def _copy_out(seg, base, entries, record_bytes, unused, index, count, dst, dst_at):
    """Copy ``count`` records of the ring from ``index`` into ``dst``."""
    for k in range(count):
        copy_bytes(dst, dst_at + k * record_bytes, seg,
                   slot_at(base, entries, record_bytes, index + k), record_bytes)
    return count


@kernel("int64(uint8[::1], int64, int64, int64, int64, int64, int64, uint8[::1], int64)")
def _phase_post(seg, base, entries, record_bytes, phase_at, producer, consumer, batch, count):
    """Post up to ``count`` records of ``batch`` from ``producer`` on (as many as the
    consumer index leaves room for): each body, then its phase word. Returns how many."""
    room = ring_free(entries, producer, consumer)
    n = count if count < room else room
    for k in range(n):
        index = (producer + k) & 0xFFFFFFFF
        at = slot_at(base, entries, record_bytes, index)
        write_body(seg, at, record_bytes, phase_at, batch, k * record_bytes)
        publish_phase(seg, at, phase_at, index, entries)
    return n if n > 0 else 0


@kernel("int64(uint8[::1], int64, int64, int64, int64, int64, int64, uint8[::1])")
def _phase_poll(seg, base, entries, record_bytes, phase_at, consumer, limit, out):
    """Copy the ready records from ``consumer`` on (at most ``limit``) into ``out``;
    returns how many (the caller advances its consumer index by that)."""
    taken = 0
    while taken < limit:
        index = (consumer + taken) & 0xFFFFFFFF
        at = slot_at(base, entries, record_bytes, index)
        if not phase_ready(seg, at, phase_at, index, entries):
            break
        copy_bytes(out, taken * record_bytes, seg, at, record_bytes)
        taken += 1
    return taken


copy_in = entry(_copy_in)
copy_out = entry(_copy_out)
phase_post = entry(_phase_post)
phase_poll = entry(_phase_poll)


loaded(__name__)
