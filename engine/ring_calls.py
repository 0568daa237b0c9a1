"""The engine's side of the rings, compiled: one call per batch of records.

A QP's engine-side ring state is one record of :data:`ENGINE_QP` (the layout the host
published and the engine checked, its register words, the engine's indices and
counters); the calls take the host segment (``seg``, the persistent mapping as
uint8: every access here lies in a ring or counter region the enable check placed
inside it, or is checked against the segment here), OE memory as uint32 (``regs``:
the slot's doorbells) and that record. Every segment access counts one DMA
transaction and its bytes in the record (published with the QP's stats).

* :func:`post_event`: one event into the event ring, or 0 when it has no room (the
  caller keeps it in its backlog; an event is never overwritten);
* :func:`serve_requests`: the records the host published, in ring order: NOP and
  ECHO are answered here (the interface's own requests: a probe costs no Python),
  every other record is copied out for the Python dispatcher, whose events must keep
  ring order, so a NOP or ECHO after a copied record waits for the next call;
* :func:`take_rxbufs`: free anonymous buffers from their ring, each checked (inside
  the receive area, a sane length, an id below ``recv_buffers`` that the engine does
  not hold already: a bitmap, no search); refused ones are listed for the error
  reports;
* :func:`store_acked`, :func:`load_consumed`, :func:`store_consumed`: counter rows.
"""
from __future__ import annotations

import errno

import numpy as np
from numba import from_dtype, types

from toad import layout
from toad.rings.atomics import copy_bytes
from toad.compiled import entry, helper, kernel, loaded
from toad.rings.index import ring_count
from toad.rings.records import (C_ACKED, C_CONSUMED, EVENT_BYTES, E_PHASE, R_ADDR, R_COOKIE,
                                R_LENGTH, R_PORT, R_VALUE, REQUEST_BYTES, RXBUF_BYTES,
                                counter_at, load_counter, observed_index, publish_index,
                                publish_phase, request_conn, request_flags, request_opcode,
                                request_word, rxbuf_id, rxbuf_length, rxbuf_offset, slot_at,
                                store_counter, write_event)

_I8 = "<i8"
ENGINE_QP = np.dtype([
    # the layout the host published (checked by layout.check_qp_layout)
    ("segment_bytes", _I8), ("request_base", _I8), ("request_entries", _I8),
    ("event_base", _I8), ("event_entries", _I8), ("rxbuf_base", _I8), ("rxbuf_entries", _I8),
    ("counters_base", _I8), ("recv_base", _I8), ("recv_bytes", _I8),
    ("buffer_bytes", _I8), ("buffers", _I8),
    # uint32 word indices of this QP's doorbells in OE memory
    ("request_doorbell", _I8), ("event_doorbell", _I8), ("rxbuf_doorbell", _I8),
    # the engine's ring indices (free-running, 32-bit values)
    ("request_consumer", _I8), ("event_producer", _I8), ("rxbuf_consumer", _I8),
    ("event_room", _I8),          # free event slots known (refreshed when used up)
    ("bad_doorbell", _I8),        # the doorbell value serve/take refused last
    # counters (added to the QP's stats row by the engine's stats flush)
    ("requests", _I8), ("events", _I8), ("bulk_nops", _I8),
    ("dma_bytes", _I8), ("dma_transactions", _I8),
])
_QP = from_dtype(ENGINE_QP)[::1]
RXBUF_TAKEN = np.dtype([("offset", _I8), ("length", _I8), ("id", _I8)])
RXBUF_REFUSED = np.dtype([("offset", _I8), ("length", _I8), ("id", _I8), ("status", _I8)])
_TAKEN = from_dtype(RXBUF_TAKEN)[::1]
_REFUSED = from_dtype(RXBUF_REFUSED)[::1]

_H = layout.QP_HEADER_FIELDS
REQUEST_CONSUMER_AT = _H["request_consumer"]
RXBUF_CONSUMER_AT = _H["rxbuf_consumer"]
OP_NOP, OP_ECHO, SILENT = layout.OP_NOP, layout.OP_ECHO, layout.REQ_SILENT
EV_COMPLETION = layout.EV_COMPLETION
REFUSED_SHIFT = 32         # take_rxbufs: refused entries << 32 | accepted entries


def new_state(lay: layout.QpLayout, segment_bytes: int, words: dict) -> np.ndarray:
    """The ENGINE_QP record of a QP just enabled (``words``: its slot's register words)."""
    state = np.zeros(1, ENGINE_QP)
    for field in ("request_entries", "event_entries", "rxbuf_entries"):
        state[field] = getattr(lay, field)
    state["segment_bytes"] = segment_bytes
    state["request_base"], state["event_base"] = lay.request_offset, lay.event_offset
    state["rxbuf_base"], state["counters_base"] = lay.rxbuf_offset, lay.counters_offset
    state["recv_base"], state["recv_bytes"] = lay.recv_offset, lay.recv_bytes
    state["buffer_bytes"], state["buffers"] = lay.recv_buffer_bytes, lay.recv_buffers
    state["request_doorbell"] = words["request_producer"]
    state["event_doorbell"] = words["event_consumer"]
    state["rxbuf_doorbell"] = words["rxbuf_producer"]
    state["event_room"] = lay.event_entries
    state["bad_doorbell"] = -1
    return state


_SEG, _REGS, _U32, _I64 = types.uint8[::1], types.uint32[::1], types.uint32[::1], types.int64


@helper
def count_dma(q, nbytes):
    """One DMA transaction of ``nbytes`` (the segment access it stands for)."""
    q.dma_transactions += 1
    q.dma_bytes += nbytes


@helper
def refresh_event_room(regs, q):
    """Free event slots, from the host's event-consumer doorbell (0 if it is garbage)."""
    used = ring_count(q.event_producer, observed_index(regs, q.event_doorbell))
    q.event_room = q.event_entries - used if used <= q.event_entries else 0
    return q.event_room


@helper
def put_event(seg, regs, q, kind, flags, conn, cookie, status, reason, port, buffer, addr,
              offset, length, value):
    """One event at the producer index: its body, then its phase word (publication).
    Returns 0 (nothing written) when the ring has no free slot."""
    if q.event_room <= 0 and refresh_event_room(regs, q) <= 0:
        return 0
    index = q.event_producer
    at = slot_at(q.event_base, q.event_entries, EVENT_BYTES, index)
    write_event(seg, at, kind, flags, conn, cookie, status, reason, port, buffer, addr,
                offset, length, value)
    publish_phase(seg, at, E_PHASE, index, q.event_entries)
    q.event_producer = (index + 1) & 0xFFFFFFFF
    q.event_room -= 1
    q.events += 1
    count_dma(q, EVENT_BYTES)
    return 1


@kernel(_I64(_SEG, _REGS, _QP, _I64, _I64, _I64, _I64, _I64, _I64, _I64, _I64, _I64, _I64,
             _I64, _I64))
def _post_event(seg, regs, qp, kind, flags, conn, cookie, status, reason, port, buffer,
                addr, offset, length, value):
    return put_event(seg, regs, qp[0], kind, flags, conn, cookie, status, reason, port,
                     buffer, addr, offset, length, value)


@kernel(_I64(_REGS, _QP))
def _event_space(regs, qp):
    return refresh_event_room(regs, qp[0])


# ---- requests ---------------------------------------------------------------------------

@kernel(_I64(_SEG, _REGS, _QP, types.uint8[::1]))
def _serve_requests(seg, regs, qp, out):
    """Take the published requests (no more than the event ring has room for answers):
    answer NOP and ECHO here, copy the others into ``out`` (REQUEST records) for the
    dispatcher, in ring order; stop at a NOP or ECHO that follows a copied record.
    Returns the records copied, or -1 for a doorbell that claims more records than the
    ring holds (its value in ``bad_doorbell``; nothing is read)."""
    q = qp[0]
    producer = observed_index(regs, q.request_doorbell)
    count = ring_count(producer, q.request_consumer)
    if count > q.request_entries:
        q.bad_doorbell = producer
        return -1
    room = q.event_room if q.event_room >= count else refresh_event_room(regs, q)
    if count > room:
        count = room
    limit = len(out) // REQUEST_BYTES
    copied = 0
    done = 0
    while done < count:
        at = slot_at(q.request_base, q.request_entries, REQUEST_BYTES, q.request_consumer + done)
        opcode = request_opcode(seg, at)
        if opcode == OP_NOP or opcode == OP_ECHO:
            if copied:
                break                    # after the dispatcher's answers, in order
            if request_flags(seg, at) & SILENT:
                q.bulk_nops += opcode == OP_NOP
            elif opcode == OP_NOP:
                put_event(seg, regs, q, EV_COMPLETION, 0, request_conn(seg, at),
                          request_word(seg, at, R_COOKIE), 0, 0, 0, 0, 0, 0, 0, 0)
            else:
                u16, u32 = seg.view(np.uint16), seg.view(np.uint32)
                put_event(seg, regs, q, EV_COMPLETION, 0, request_conn(seg, at),
                          request_word(seg, at, R_COOKIE), 0, 0, u16[(at + R_PORT) >> 1],
                          0, u32[(at + R_ADDR) >> 2], 0, request_word(seg, at, R_LENGTH),
                          request_word(seg, at, R_VALUE))
        else:
            if copied == limit:
                break
            copy_bytes(out, copied * REQUEST_BYTES, seg, at, REQUEST_BYTES)
            copied += 1
        done += 1
    if done:
        count_dma(q, done * REQUEST_BYTES)
        q.request_consumer = (q.request_consumer + done) & 0xFFFFFFFF
        q.requests += done
        # the records are read (copied): the host may reuse their slots
        publish_index(seg.view(np.uint32), REQUEST_CONSUMER_AT >> 2, q.request_consumer)
        count_dma(q, 4)
    return copied


@kernel(_I64(_REGS, _QP))
def _requests_pending(regs, qp):
    """Records published and not yet taken, or -1 for a garbage doorbell (its value
    in ``bad_doorbell``)."""
    q = qp[0]
    producer = observed_index(regs, q.request_doorbell)
    count = ring_count(producer, q.request_consumer)
    if count > q.request_entries:
        q.bad_doorbell = producer
        return -1
    return count


# ---- receive buffers ------------------------------------------------------------------

@kernel(_I64(_SEG, _REGS, _QP, types.uint8[::1], _TAKEN, _REFUSED))
def _take_rxbufs(seg, regs, qp, held, taken, refused):
    """Take up to ``len(taken)`` entries from the receive-buffer ring (and no more than
    ``len(refused)`` bad ones), each checked: the good ones into ``taken`` (their ids
    marked in ``held``), the others into ``refused`` with the errno that says why.
    Returns ``refused << 32 | taken``, or -1 for a doorbell that claims more entries
    than the ring holds (its value in ``bad_doorbell``; nothing is taken)."""
    q = qp[0]
    producer = observed_index(regs, q.rxbuf_doorbell)
    available = ring_count(producer, q.rxbuf_consumer)
    if available > q.rxbuf_entries:
        q.bad_doorbell = producer
        return -1
    start, end = q.recv_base, q.recv_base + q.recv_bytes
    good = bad = done = 0
    while done < available and good < len(taken) and bad < len(refused):
        at = slot_at(q.rxbuf_base, q.rxbuf_entries, RXBUF_BYTES, q.rxbuf_consumer + done)
        offset, length, buffer_id = rxbuf_offset(seg, at), rxbuf_length(seg, at), rxbuf_id(seg, at)
        done += 1
        if start <= offset and offset + length <= end and 0 < length <= q.buffer_bytes \
                and buffer_id < q.buffers and held[buffer_id] == 0:
            held[buffer_id] = 1
            taken[good].offset, taken[good].length, taken[good].id = offset, length, buffer_id
            good += 1
            continue
        refused[bad].offset, refused[bad].length, refused[bad].id = offset, length, buffer_id
        if buffer_id >= q.buffers:
            refused[bad].status = errno.EINVAL       # no buffer of the pool has that id
        elif start <= offset and offset + length <= end and 0 < length <= q.buffer_bytes:
            refused[bad].status = errno.EALREADY     # the engine holds it: this copy drops
        else:
            refused[bad].status = errno.EFAULT       # not (all) in the receive area
        bad += 1
    if done:
        count_dma(q, done * RXBUF_BYTES)
        q.rxbuf_consumer = (q.rxbuf_consumer + done) & 0xFFFFFFFF
        publish_index(seg.view(np.uint32), RXBUF_CONSUMER_AT >> 2, q.rxbuf_consumer)
        count_dma(q, 4)
    return (bad << REFUSED_SHIFT) | good


@kernel(_I64(_REGS, _QP))
def _rxbufs_pending(regs, qp):
    """Entries the host published and the engine has not taken (-1: garbage doorbell)."""
    q = qp[0]
    available = ring_count(observed_index(regs, q.rxbuf_doorbell), q.rxbuf_consumer)
    return available if available <= q.rxbuf_entries else -1


# ---- counters -----------------------------------------------------------------------------

@kernel(types.void(_SEG, _QP, _I64, _I64))
def _store_acked(seg, qp, conn, total):
    """Bytes sent and acknowledged on ``conn`` (the host frees send space from it)."""
    q = qp[0]
    store_counter(seg, counter_at(q.counters_base, conn, C_ACKED), total)
    count_dma(q, 8)


@kernel(types.void(_SEG, _QP, _I64, _I64))
def _store_consumed(seg, qp, conn, total):
    """Reset a reused row's consumed count (before the host learns the id)."""
    q = qp[0]
    store_counter(seg, counter_at(q.counters_base, conn, C_CONSUMED), total)
    count_dma(q, 8)


@kernel(_I64(_SEG, _QP, _I64))
def _load_consumed(seg, qp, conn):
    """Bytes the application has read on ``conn`` (written by the host)."""
    q = qp[0]
    count_dma(q, 8)
    return load_counter(seg, counter_at(q.counters_base, conn, C_CONSUMED))


post_event = entry(_post_event)
event_space = entry(_event_space)
serve_requests = entry(_serve_requests)
requests_pending = entry(_requests_pending)
take_rxbufs = entry(_take_rxbufs)
rxbufs_pending = entry(_rxbufs_pending)
store_acked = entry(_store_acked)
store_consumed = entry(_store_consumed)
load_consumed = entry(_load_consumed)


loaded(__name__)
