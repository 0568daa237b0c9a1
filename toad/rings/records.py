"""Ring slots, publication and the record fields, for compiled code (both sides).

A ring lives at byte ``base`` of a segment (a uint8 array) and has ``entries``
records of ``record_bytes``. The operations below are the only ones toad's compiled
code uses on a ring; each ordering rule is stated once, here:

* index ring (requests, receive buffers): the producer writes the record, then
  :func:`publish_index` stores the new producer index with release order (into a
  doorbell register, for host -> engine rings). The consumer loads that index with
  :func:`observed_index` (acquire) before it reads any record it covers, and publishes
  its own index back (:func:`publish_index`) only once it is done with the records,
  so the producer never overwrites a record still being read.
* phase ring (events): the producer writes the body, then :func:`publish_phase`
  stores the record's phase word with release order; the consumer tests it with
  :func:`phase_ready` (acquire) before it reads the body, and tells the producer how
  far it got through a consumer-index register (:func:`publish_index`), so an event
  is never overwritten before it is consumed.
* counters (one row per connection): each word has one writer and is stored with
  release order, loaded with acquire order (:func:`store_counter`, :func:`load_counter`).

Field offsets come from the dtypes in toad/layout.py (compile-time constants).
64-bit fields are read as int64: a huge value written by a misbehaving host reads
negative, and every bounds check refuses negatives.
"""
from __future__ import annotations

import numpy as np

from toad import layout
from toad.rings.atomics import copy_bytes, load_acquire, store_release
from toad.compiled import helper, loaded
from toad.rings.index import phase_for

_R, _E, _B, _C = layout.REQUEST.fields, layout.EVENT.fields, layout.RXBUF.fields, \
    layout.COUNTER_ROW.fields
REQUEST_BYTES = layout.REQUEST.itemsize
EVENT_BYTES = layout.EVENT.itemsize
RXBUF_BYTES = layout.RXBUF.itemsize
COUNTER_BYTES = layout.COUNTER_ROW.itemsize
ROW_MASK = (1 << layout.CONN_ROW_BITS) - 1

R_OPCODE, R_FLAGS, R_CONN, R_COOKIE = (_R[f][1] for f in ("opcode", "flags", "conn", "cookie"))
R_ADDR, R_PORT, R_OPTION = (_R[f][1] for f in ("addr", "port", "option"))
R_OFFSET, R_LENGTH, R_VALUE = (_R[f][1] for f in ("offset", "length", "value"))
E_TYPE, E_FLAGS, E_CONN, E_COOKIE = (_E[f][1] for f in ("type", "flags", "conn", "cookie"))
E_STATUS, E_REASON, E_PORT, E_BUFFER = (_E[f][1] for f in ("status", "reason", "port", "buffer"))
E_ADDR, E_OFFSET, E_LENGTH, E_VALUE = (_E[f][1] for f in ("addr", "offset", "length", "value"))
E_PHASE = _E["phase"][1]
B_OFFSET, B_LENGTH, B_ID = (_B[f][1] for f in ("offset", "length", "id"))
C_ACKED, C_CONSUMED = _C["bytes_acked"][1], _C["bytes_consumed"][1]


# ---- slots and publication ---------------------------------------------------------

@helper
def slot_at(base, entries, record_bytes, index):
    """Byte offset of the record at free-running ``index``."""
    return base + (index & (entries - 1)) * record_bytes


@helper
def publish_index(words, word, index):
    """Store a ring index (producer or consumer) with release order: every record
    write (producer) or read (consumer) before it is done first."""
    store_release(words, word, np.uint32(index & 0xFFFFFFFF))


@helper
def observed_index(words, word):
    """Load the other side's ring index with acquire order (before the records)."""
    return np.int64(load_acquire(words, word))


@helper
def publish_phase(seg, at, phase_at, index, entries):
    """Make the record at ``at`` (body written) valid: its phase word, release order."""
    store_release(seg.view(np.uint32), (at + phase_at) >> 2,
                  np.uint32(phase_for(index, entries)))


@helper
def phase_ready(seg, at, phase_at, index, entries):
    """Whether the record at ``at`` (index ``index``) is published; acquire order, so
    its body may be read after a True."""
    return np.int64(load_acquire(seg.view(np.uint32), (at + phase_at) >> 2)) \
        == phase_for(index, entries)


@helper
def write_body(seg, at, record_bytes, phase_at, src, src_at):
    """Copy a record body from ``src`` without its phase word (written by publish)."""
    copy_bytes(seg, at, src, src_at, phase_at)
    tail = record_bytes - phase_at - 4
    if tail > 0:
        copy_bytes(seg, at + phase_at + 4, src, src_at + phase_at + 4, tail)


# ---- request records -----------------------------------------------------------------

@helper
def write_request(seg, at, opcode, flags, conn, cookie, addr, port, option, offset,
                  length, value):
    u16, u32, u64 = seg.view(np.uint16), seg.view(np.uint32), seg.view(np.int64)
    u16[(at + R_OPCODE) >> 1] = opcode
    u16[(at + R_FLAGS) >> 1] = flags
    u32[(at + R_CONN) >> 2] = conn
    u64[(at + R_COOKIE) >> 3] = cookie
    u32[(at + R_ADDR) >> 2] = addr
    u16[(at + R_PORT) >> 1] = port
    u16[(at + R_OPTION) >> 1] = option
    u64[(at + R_OFFSET) >> 3] = offset
    u64[(at + R_LENGTH) >> 3] = length
    u64[(at + R_VALUE) >> 3] = value


@helper
def request_opcode(seg, at):
    return np.int64(seg.view(np.uint16)[(at + R_OPCODE) >> 1])


@helper
def request_flags(seg, at):
    return np.int64(seg.view(np.uint16)[(at + R_FLAGS) >> 1])


@helper
def request_conn(seg, at):
    return np.int64(seg.view(np.uint32)[(at + R_CONN) >> 2])


@helper
def request_word(seg, at, field):
    """A 64-bit field (R_COOKIE, R_OFFSET, R_LENGTH, R_VALUE) as int64."""
    return seg.view(np.int64)[(at + field) >> 3]


# ---- event records --------------------------------------------------------------------

@helper
def write_event(seg, at, kind, flags, conn, cookie, status, reason, port, buffer, addr,
                offset, length, value):
    """An event's body (not its phase word: :func:`publish_phase`)."""
    u16, u32, u64 = seg.view(np.uint16), seg.view(np.uint32), seg.view(np.int64)
    u16[(at + E_TYPE) >> 1] = kind
    u16[(at + E_FLAGS) >> 1] = flags
    u32[(at + E_CONN) >> 2] = conn
    u64[(at + E_COOKIE) >> 3] = cookie
    seg.view(np.int32)[(at + E_STATUS) >> 2] = status
    u16[(at + E_REASON) >> 1] = reason
    u16[(at + E_PORT) >> 1] = port
    u32[(at + E_BUFFER) >> 2] = buffer
    u32[(at + E_ADDR) >> 2] = addr
    u64[(at + E_OFFSET) >> 3] = offset
    u64[(at + E_LENGTH) >> 3] = length
    u64[(at + E_VALUE) >> 3] = value


@helper
def event_kind(seg, at):
    return np.int64(seg.view(np.uint16)[(at + E_TYPE) >> 1])


@helper
def event_flags(seg, at):
    return np.int64(seg.view(np.uint16)[(at + E_FLAGS) >> 1])


@helper
def event_conn(seg, at):
    return np.int64(seg.view(np.uint32)[(at + E_CONN) >> 2])


@helper
def event_buffer(seg, at):
    return np.int64(seg.view(np.uint32)[(at + E_BUFFER) >> 2])


@helper
def event_length(seg, at):
    return seg.view(np.int64)[(at + E_LENGTH) >> 3]


# ---- receive-buffer entries -----------------------------------------------------------

@helper
def write_rxbuf(seg, at, offset, length, buffer_id):
    seg.view(np.int64)[(at + B_OFFSET) >> 3] = offset
    u32 = seg.view(np.uint32)
    u32[(at + B_LENGTH) >> 2] = length
    u32[(at + B_ID) >> 2] = buffer_id


@helper
def rxbuf_offset(seg, at):
    return seg.view(np.int64)[(at + B_OFFSET) >> 3]


@helper
def rxbuf_length(seg, at):
    return np.int64(seg.view(np.uint32)[(at + B_LENGTH) >> 2])


@helper
def rxbuf_id(seg, at):
    return np.int64(seg.view(np.uint32)[(at + B_ID) >> 2])


# ---- counter rows -----------------------------------------------------------------------

@helper
def counter_at(counters_base, conn, field):
    """Byte offset of ``field`` (C_ACKED, C_CONSUMED) in ``conn``'s counter row."""
    return counters_base + (conn & ROW_MASK) * COUNTER_BYTES + field


@helper
def store_counter(seg, at, value):
    """A cumulative counter, release order (its one writer publishes progress)."""
    store_release(seg.view(np.int64), at >> 3, np.int64(value))


@helper
def load_counter(seg, at):
    return load_acquire(seg.view(np.int64), at >> 3)


loaded(__name__)
