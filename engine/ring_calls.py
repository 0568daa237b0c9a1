"""The engine's side of the rings, compiled: one call per batch of records.

A QP's engine-side ring state is one record of :data:`ENGINE_QP` (the layout the host
published and the engine checked, its register words, the engine's indices and
counters); the calls take the host segment (``seg``, the persistent mapping as
uint8: every access here lies in a ring or counter region the enable check placed
inside it, or is checked against the segment here), the QP's doorbell page as uint32
(``regs``: its doorbells and interrupt registers, in the QP's own segment; the table
scans find it through the record's ``doorbell_address``) and that record. Every
segment access counts one DMA
transaction and its bytes in the record (published with the QP's stats) and, with a
bus model, waits on the card's bus as a read or a posted write (toad/rings/bus.py;
the record holds the bus state's address, 0 without a model).

* :func:`post_event`: one event into the event ring, or 0 when it has no room (the
  caller keeps it in its backlog; an event is never overwritten);
* :func:`serve_requests`: the records the host published, in ring order: NOP and
  ECHO are answered here (the interface's own requests: a probe costs no Python),
  every other record is copied out for the Python dispatcher, whose events must keep
  ring order, so a NOP or ECHO after a copied record waits for the next call;
* :func:`take_rxbufs`: free anonymous buffers from their ring, each checked (inside
  the receive area, a sane length, an id of the pool (both groups) that the engine does
  not hold already: a bitmap, no search); refused ones are listed for the error
  reports;
* :func:`store_acked`, :func:`load_consumed`, :func:`store_consumed`: counter rows;
* over the whole table of QPs (one record per slot, ``active`` while attached):
  :func:`scan` once per loop iteration (answer NOP and ECHO at the head of each
  request ring, mark the QPs whose records need the dispatcher, and the interrupts
  that are due), :func:`scan_requests` and :func:`scan_interrupts` (each half of
  it, for the poller's rounds), :func:`scan_rxbufs` (which QPs' hosts returned
  receive buffers). The interrupt rule (:func:`irq_due`): an armed interrupt is due
  once the event index the host waits for is published (virtio's ``need_event``),
  then moderated (at most one per N events or T microseconds).
"""
from __future__ import annotations

import errno

import numpy as np
from numba import carray, from_dtype, types

from toad import layout
from toad.rings.atomics import copy_bytes
from toad.compiled import entry, helper, kernel, loaded
from toad.rings.atomics import byte_pointer, fence
from toad.rings.bus import BUS_WORDS, dma_wait
from toad.rings.index import need_event, ring_count
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
    # uint32 word indices of this QP's doorbells and interrupt registers in ``regs``
    ("request_doorbell", _I8), ("event_doorbell", _I8), ("rxbuf_doorbell", _I8),
    ("irq_enabled", _I8), ("irq_index", _I8), ("mod_events", _I8), ("mod_us", _I8),
    ("active", _I8),              # 1 while the QP is attached (the scans look at it)
    ("segment_address", _I8),     # where the engine mapped the host segment (while active)
    ("backlog", _I8),             # events waiting in the engine's Python backlog
    ("rxbuf_seen", _I8),          # the receive-buffer doorbell the stack last handled
    # the engine's ring indices (free-running, 32-bit values)
    ("request_consumer", _I8), ("event_producer", _I8), ("rxbuf_consumer", _I8),
    ("event_room", _I8),          # free event slots known (refreshed when used up)
    ("bad_doorbell", _I8),        # the doorbell value serve/take refused last
    # the interrupt (need_event and moderation, see irq_due)
    ("default_events", _I8), ("default_us", _I8),   # moderation when the registers say 0
    ("irq_checked", _I8),         # events up to this index were checked against the arm
    ("irq_since", _I8),           # events posted since the last interrupt
    ("irq_pending", _I8),         # ns since an armed interrupt waits for moderation, or -1
    ("irq_raised", _I8),          # interrupts raised
    # counters (added to the QP's stats row by the engine's stats flush)
    ("requests", _I8), ("events", _I8), ("bulk_nops", _I8),
    ("dma_bytes", _I8), ("dma_transactions", _I8),
    ("bus_cycles", _I8),          # TSC cycles this QP's DMA waited on the bus
    ("bus_address", _I8),         # the engine's bus state (toad/rings/bus.py), 0: no model
    ("doorbell_address", _I8),    # where ``regs`` (the doorbell page's words) is mapped
    ("doorbell_words", _I8),      # ... and its length in uint32 words
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


def new_state(lay: layout.QpLayout, segment_bytes: int, words: dict, moderation=(1, 0),
              state: np.ndarray | None = None) -> np.ndarray:
    """The ENGINE_QP record of a QP just enabled (``words``: its register words in the
    array its caller passes as ``regs`` and records in ``doorbell_address``;
    ``moderation``: the engine's default events and microseconds; ``state``: the
    record to fill, e.g. the slot's row of the engine's table)."""
    state = np.zeros(1, ENGINE_QP) if state is None else state
    state[:] = 0
    for field in ("request_entries", "event_entries", "rxbuf_entries"):
        state[field] = getattr(lay, field)
    state["segment_bytes"] = segment_bytes
    state["request_base"], state["event_base"] = lay.request_offset, lay.event_offset
    state["rxbuf_base"], state["counters_base"] = lay.rxbuf_offset, lay.counters_offset
    state["recv_base"], state["recv_bytes"] = lay.recv_offset, lay.recv_bytes
    state["buffer_bytes"], state["buffers"] = lay.largest_buffer, lay.total_buffers
    state["request_doorbell"] = words["request_producer"]
    state["event_doorbell"] = words["event_consumer"]
    state["rxbuf_doorbell"] = words["rxbuf_producer"]
    state["irq_enabled"], state["irq_index"] = words["irq_enabled"], words["irq_event_index"]
    state["mod_events"], state["mod_us"] = words["moderation_events"], words["moderation_us"]
    state["default_events"], state["default_us"] = moderation
    state["event_room"] = lay.event_entries
    state["bad_doorbell"] = state["irq_pending"] = -1
    state["active"] = 1
    return state


_SEG, _REGS, _U32, _I64 = types.uint8[::1], types.uint32[::1], types.uint32[::1], types.int64


@helper
def count_dma(q, nbytes, read):
    """One DMA transaction of ``nbytes`` (the segment access it stands for: a read of
    host memory if ``read``, else a write), and its wait on the bus, if modelled."""
    q.dma_transactions += 1
    q.dma_bytes += nbytes
    if q.bus_address:
        bus = carray(byte_pointer(q.bus_address), BUS_WORDS * 8).view(np.int64)
        q.bus_cycles += dma_wait(bus, nbytes, read)


@helper
def published(regs, q, doorbell, consumer, entries):
    """Records the host published past ``consumer`` by its ``doorbell`` register, or -1
    for a doorbell that claims more than the ring's ``entries`` (the value is kept in
    ``bad_doorbell`` for the report: the host may restore a good one right after)."""
    producer = observed_index(regs, doorbell)
    count = ring_count(producer, consumer)
    if count > entries:
        q.bad_doorbell = producer
        return -1
    return count


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
    count_dma(q, EVENT_BYTES, False)
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

@helper
def serve(seg, regs, q, out):
    """Take the published requests (no more than the event ring has room for answers):
    answer NOP and ECHO here, copy the others into ``out`` (REQUEST records) for the
    dispatcher, in ring order; stop at a NOP or ECHO that follows a copied record, and
    at a record ``out`` has no room for (an empty ``out``: at the first record that
    needs the dispatcher). Returns the records copied, or -1 for a doorbell that claims
    more records than the ring holds (its value in ``bad_doorbell``; nothing is read)."""
    count = published(regs, q, q.request_doorbell, q.request_consumer, q.request_entries)
    if count < 0:
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
        count_dma(q, done * REQUEST_BYTES, True)
        q.request_consumer = (q.request_consumer + done) & 0xFFFFFFFF
        q.requests += done
        # the records are read (copied): the host may reuse their slots
        publish_index(seg.view(np.uint32), REQUEST_CONSUMER_AT >> 2, q.request_consumer)
        count_dma(q, 4, False)
    return copied


@kernel(_I64(_SEG, _REGS, _QP, types.uint8[::1]))
def _serve_requests(seg, regs, qp, out):
    """serve() one QP (the dispatcher's loop)."""
    return serve(seg, regs, qp[0], out)


@kernel(_I64(_REGS, _QP))
def _requests_pending(regs, qp):
    """Records published and not yet taken, or -1 for a garbage doorbell (its value
    in ``bad_doorbell``)."""
    q = qp[0]
    return published(regs, q, q.request_doorbell, q.request_consumer, q.request_entries)


# ---- receive buffers ------------------------------------------------------------------

@kernel(_I64(_SEG, _REGS, _QP, types.uint8[::1], _TAKEN, _REFUSED))
def _take_rxbufs(seg, regs, qp, held, taken, refused):
    """Take up to ``len(taken)`` entries from the receive-buffer ring (and no more than
    ``len(refused)`` bad ones), each checked: the good ones into ``taken`` (their ids
    marked in ``held``), the others into ``refused`` with the errno that says why.
    Returns ``refused << 32 | taken``, or -1 for a doorbell that claims more entries
    than the ring holds (its value in ``bad_doorbell``; nothing is taken)."""
    q = qp[0]
    available = published(regs, q, q.rxbuf_doorbell, q.rxbuf_consumer, q.rxbuf_entries)
    if available < 0:
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
        count_dma(q, done * RXBUF_BYTES, True)
        q.rxbuf_consumer = (q.rxbuf_consumer + done) & 0xFFFFFFFF
        publish_index(seg.view(np.uint32), RXBUF_CONSUMER_AT >> 2, q.rxbuf_consumer)
        count_dma(q, 4, False)
    return (bad << REFUSED_SHIFT) | good


@kernel(_I64(_REGS, _QP))
def _rxbufs_pending(regs, qp):
    """Entries the host published and the engine has not taken (-1: garbage doorbell)."""
    q = qp[0]
    return published(regs, q, q.rxbuf_doorbell, q.rxbuf_consumer, q.rxbuf_entries)


# ---- counters -----------------------------------------------------------------------------

@kernel(types.void(_SEG, _QP, _I64, _I64))
def _store_acked(seg, qp, conn, total):
    """Bytes sent and acknowledged on ``conn`` (the host frees send space from it)."""
    q = qp[0]
    store_counter(seg, counter_at(q.counters_base, conn, C_ACKED), total)
    count_dma(q, 8, False)


@kernel(types.void(_SEG, _QP, _I64, _I64))
def _store_consumed(seg, qp, conn, total):
    """Reset a reused row's consumed count (before the host learns the id)."""
    q = qp[0]
    store_counter(seg, counter_at(q.counters_base, conn, C_CONSUMED), total)
    count_dma(q, 8, False)


@kernel(_I64(_SEG, _QP, _I64))
def _load_consumed(seg, qp, conn):
    """Bytes the application has read on ``conn`` (written by the host)."""
    q = qp[0]
    count_dma(q, 8, True)
    return load_counter(seg, counter_at(q.counters_base, conn, C_CONSUMED))


# ---- the table of QPs, once per loop iteration ------------------------------------

@helper
def segment(q):
    """The QP's host segment as bytes, from where the engine mapped it."""
    return carray(byte_pointer(q.segment_address), q.segment_bytes)


@helper
def doorbells(q):
    """The QP's doorbell page as uint32 words, from where its owner recorded it."""
    return carray(byte_pointer(q.doorbell_address), q.doorbell_words * 4).view(np.uint32)


@helper
def serve_head(regs, q):
    """Serve what needs no Python at the head of ``q``'s request ring (NOP and ECHO:
    serve() with no room to copy records out); True if the dispatcher has work there
    (a record that needs it, a backlog, a bad doorbell)."""
    if q.backlog > 0:
        return True
    if observed_index(regs, q.request_doorbell) == q.request_consumer:
        return False
    if serve(segment(q), regs, q, np.empty(0, np.uint8)) < 0:
        return True
    return observed_index(regs, q.request_doorbell) != q.request_consumer


@helper
def serve_slot(regs, q):
    """serve_head() on one attached QP: ``records served << 1 | dispatcher's work``."""
    before = q.requests
    marked = serve_head(regs, q)
    return ((q.requests - before) << 1) | marked


@helper
def rxbuf_rung(regs, q):
    """Whether ``q``'s host rang the receive-buffer doorbell since the last look."""
    producer = observed_index(regs, q.rxbuf_doorbell)
    if producer == q.rxbuf_seen:
        return False
    q.rxbuf_seen = producer
    return True


@kernel(_I64(_QP, types.uint8[::1]))
def _scan_requests(qps, flags):
    """serve_head() on every attached QP; flags[slot] = 1 where the dispatcher has
    work. Returns ``records served << 32 | QPs marked``."""
    marked = served = 0
    for slot in range(len(qps)):
        flags[slot] = 0
        if qps[slot].active:
            result = serve_slot(doorbells(qps[slot]), qps[slot])
            flags[slot] = result & 1
            marked += result & 1
            served += result >> 1
    return (served << 32) | marked


@kernel(_I64(_QP, types.uint8[::1]))
def _scan_rxbufs(qps, flags):
    """flags[slot] = 1 for each attached QP whose host rang the receive-buffer doorbell
    since the last scan (it read data: windows may reopen), else 0; returns how many."""
    marked = 0
    for slot in range(len(qps)):
        flags[slot] = qps[slot].active and rxbuf_rung(doorbells(qps[slot]), qps[slot])
        marked += flags[slot]
    return marked


@kernel(_I64(_QP))
def _rxbufs_rung(qps):
    """Attached QPs whose receive-buffer doorbell moved since the last scan (no change)."""
    count = 0
    for slot in range(len(qps)):
        q = qps[slot]
        if q.active and observed_index(doorbells(q), q.rxbuf_doorbell) != q.rxbuf_seen:
            count += 1
    return count


@helper
def irq_due(regs, q, now_ns):
    """Whether ``q``'s interrupt must be raised now. Events up to the producer index
    are published; if the host armed the interrupt (``irq_enabled``) for an index
    the new events crossed (need_event), the interrupt is pending, and it fires once
    ``moderation_events`` events were posted since the last one or the pending one
    waited ``moderation_us`` (the QP's registers, else the engine's defaults). The
    fence orders our event stores before the load of the arm: the host stores its
    arm, fences, then re-reads the ring, so one of the two sees the other."""
    producer = q.event_producer
    if producer != q.irq_checked:
        q.irq_since += (producer - q.irq_checked) & 0xFFFFFFFF
        old = q.irq_checked
        q.irq_checked = producer
        if q.irq_pending < 0:
            fence()
            if regs[q.irq_enabled] and need_event(np.int64(regs[q.irq_index]), producer, old):
                q.irq_pending = now_ns
    if q.irq_pending < 0:
        return False
    if not regs[q.irq_enabled]:
        q.irq_pending = -1           # the host stopped waiting: nothing to wake
        return False
    events = np.int64(regs[q.mod_events]) or q.default_events
    micros = np.int64(regs[q.mod_us]) or q.default_us
    if q.irq_since >= events or now_ns - q.irq_pending >= micros * 1000:
        q.irq_since = 0
        q.irq_pending = -1
        q.irq_raised += 1
        return True
    return False


@kernel(_I64(_QP, _I64, types.uint8[::1]))
def _scan_interrupts(qps, now_ns, flags):
    """flags[slot] = 1 for each attached QP whose interrupt is due now (irq_due), else
    0; returns how many (the caller posts their semaphores)."""
    marked = 0
    for slot in range(len(qps)):
        q = qps[slot]
        flags[slot] = q.active and irq_due(doorbells(q), q, now_ns)
        marked += flags[slot]
    return marked


SCAN_REQUESTS, SCAN_RXBUFS, SCAN_INTERRUPTS = 0, 1, 2     # rows of _scan's flags


@kernel(_I64(_QP, _I64, types.uint8[:, ::1]))
def _scan(qps, now_ns, flags):
    """The loop's look at every attached QP, once per iteration: serve what needs no
    Python (serve_head), then mark the slot in row SCAN_REQUESTS of ``flags`` where the
    dispatcher has work, in row SCAN_RXBUFS where the host rang the receive-buffer
    doorbell (as scan_rxbufs), in row SCAN_INTERRUPTS where an interrupt is due
    (irq_due, after those answers). Returns ``records served << 40 | rxbufs << 32 |
    requests << 16 | interrupts`` (the number of slots marked in each row)."""
    requests, rxbufs, interrupts = flags[SCAN_REQUESTS], flags[SCAN_RXBUFS], \
        flags[SCAN_INTERRUPTS]
    served = marked = rung = due = 0
    for slot in range(len(qps)):
        q = qps[slot]
        requests[slot] = rxbufs[slot] = interrupts[slot] = 0
        if not q.active:
            continue
        regs = doorbells(q)
        result = serve_slot(regs, q)
        requests[slot] = result & 1
        marked += result & 1
        served += result >> 1
        rxbufs[slot] = rxbuf_rung(regs, q)
        rung += rxbufs[slot]
        interrupts[slot] = irq_due(regs, q, now_ns)
        due += interrupts[slot]
    return (served << 40) | (rung << 32) | (marked << 16) | due


@kernel(_I64(_QP))
def _interrupt_deadline(qps):
    """The earliest time (ns) a pending interrupt's moderation delay ends, or -1."""
    earliest = -1
    for slot in range(len(qps)):
        q = qps[slot]
        if q.active and q.irq_pending >= 0:
            at = q.irq_pending + (np.int64(doorbells(q)[q.mod_us]) or q.default_us) * 1000
            if earliest < 0 or at < earliest:
                earliest = at
    return earliest


post_event = entry(_post_event)
event_space = entry(_event_space)
serve_requests = entry(_serve_requests)
requests_pending = entry(_requests_pending)
take_rxbufs = entry(_take_rxbufs)
rxbufs_pending = entry(_rxbufs_pending)
store_acked = entry(_store_acked)
store_consumed = entry(_store_consumed)
load_consumed = entry(_load_consumed)
scan = entry(_scan)
scan_requests = entry(_scan_requests)
scan_rxbufs = entry(_scan_rxbufs)
rxbufs_rung = entry(_rxbufs_rung)
scan_interrupts = entry(_scan_interrupts)
interrupt_deadline = entry(_interrupt_deadline)


loaded(__name__)
