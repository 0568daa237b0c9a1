"""The host driver's side of the rings, compiled: one call per socket call.

The driver's ring state is one record of :data:`HOST_QP`; each connection row of the
QP (the counter-table row of its id) has a :data:`HOST_CONN` record (its send ring,
the anonymous buffers attached to it, the bytes it has consumed), each anonymous
buffer a :data:`HOST_BUF` record (where it lies and its size: the pool has a
chunk-sized group and a small one; its length once filled; and the next buffer of
the list it is in: a connection's attached buffers, or the buffers going back). The calls
take the QP segment (``seg``: the host's own memory as bytes), the QP's doorbell page
as uint32 (``regs``: its doorbells and interrupt registers, written by PIO; the same
segment's words, which only this host and the engine map) and those arrays:

* :func:`send`: the boundary copy into the connection's send ring, the SEND
  descriptor, the doorbell, the sleeping-engine check; or a code saying what Python
  must do first (make room in the ring, wait for request slots);
* :func:`recv`: the copy out of the first attached buffer; a buffer read to its end
  joins the return list, and a full list goes back (:func:`flush_returns`: the
  consumed counters, the receive-buffer entries, the doorbell). Both copies go
  through a scratch buffer when the destination lies at memcpy's slow distance
  from the source (:func:`boundary_copy`, host/copy_align.py);
* :func:`poll`: drain the event ring: RECV_DATA for a connection whose row is
  registered is attached here, every other event is copied out for Python;
* :func:`post`, :func:`post_records`, :func:`give_buffers`, :func:`arm`: the rest
  of the driver's ring traffic.

Every register write (a doorbell, the event consumer index, arming or disarming the
interrupt) is a PIO write: counted in the QP record and, with a bus model, paid for
here, on the host CPU, by staying busy ``pio_write_cycles`` (:func:`pio_write`);
Python's register reads (the heartbeat, an interrupt handler's status read) are paid
and counted by :func:`register_reads`.

Values from the engine are checked before use (a buffer id below ``buffers``, a
length that fits a buffer, a connection whose row is registered); an event that fails
goes to Python like any other. Results are int64: a count, or a negative code; the
:data:`WAKE` bit says the engine sleeps and the caller must post its wake semaphore.
"""
from __future__ import annotations

import numpy as np
from numba import from_dtype, types

from host.copy_align import MIN_BYTES, PAGE, SLOW_BELOW
from toad import layout
from toad.rings.atomics import address, copy_bytes, cycles, fence, pause
from toad.rings.bus import spin as bus_spin
from toad.compiled import entry, helper, kernel, loaded
from toad.rings.index import ring_free
from toad.rings.records import (C_ACKED, C_CONSUMED, E_PHASE, EVENT_BYTES, REQUEST_BYTES,
                                ROW_MASK, RXBUF_BYTES, counter_at, event_buffer, event_conn,
                                event_kind, event_length, load_counter, observed_index,
                                phase_ready, publish_index, slot_at, store_counter,
                                write_request, write_rxbuf)

_I8 = "<i8"
HOST_QP = np.dtype([
    # the layout of the QP's segment (toad/layout.py qp_layout)
    ("request_base", _I8), ("request_entries", _I8), ("event_base", _I8),
    ("event_entries", _I8), ("rxbuf_base", _I8), ("rxbuf_entries", _I8),
    ("counters_base", _I8), ("counter_rows", _I8), ("recv_base", _I8),
    ("buffer_bytes", _I8), ("buffers", _I8),
    # uint32 word indices of the QP's registers in ``regs`` (layout.DOORBELL_WORDS)
    ("request_doorbell", _I8), ("event_doorbell", _I8), ("rxbuf_doorbell", _I8),
    ("irq_index", _I8), ("irq_enabled", _I8),
    # the driver's ring indices (free-running, 32-bit values)
    ("request_producer", _I8), ("request_room", _I8), ("event_consumer", _I8),
    ("rxbuf_producer", _I8),
    ("engine_may_sleep", _I8),    # 0 for a busy-polling engine: no sleeping check
    # receive side
    ("attached", _I8),            # RECV_DATA events attached to their row so far
    ("returns", _I8),             # buffers in the return list
    ("return_head", _I8), ("return_tail", _I8),
    ("return_batch", _I8),        # recv flushes the return list at this length
    ("dirty_head", _I8),          # rows whose consumed counter waits for the flush
    ("bounced", _I8),             # receive copies made through the scratch buffer
    ("copy_cycles", _I8),         # TSC cycles of the last timed copy
    # the bus model (the engine's config block): PIO costs, and what was paid
    ("pio_write_cycles", _I8), ("pio_read_cycles", _I8),
    ("pio_writes", _I8),          # register writes (doorbells and the interrupt's)
    ("pio_reads", _I8),           # register reads
    ("bus_cycles", _I8),          # TSC cycles spent busy on them
    ("ready_head", _I8),          # rows whose data came while their descriptor said
                                  # "nothing to read" (a list through ready_next)
])
HOST_CONN = np.dtype([
    ("conn", _I8),                # the id whose RECV_DATA this row attaches (0: none)
    ("rx_head", _I8), ("rx_tail", _I8), ("rx_count", _I8),  # attached buffers (a list)
    ("rx_start", _I8),            # bytes already read from the first one
    ("consumed", _I8),            # buffer space read: bytes read + unused tails
    ("released", _I8),            # consumed as of its last buffer read to the end (what
                                  # the counter may say: those buffers go back with it)
    ("dirty_next", _I8),          # next row of the dirty list (NONE: the last; CLEAN: not in it)
    ("talking", _I8),             # sent since its last read (a conversation)
    # the send ring: one extent of the QP's send area, used as a ring of bytes
    ("tx_offset", _I8), ("tx_size", _I8), ("tx_posted", _I8), ("tx_acked", _I8),
    ("tx_base", _I8),             # tx_posted when this extent became the ring
    # readiness descriptor (host/readiness.py): UNWATCHED, WATCHING (the descriptor
    # says nothing to read: the next attach lists the row) or SIGNALED
    ("ready", _I8),
    ("ready_next", _I8),          # next row of the ready list (NONE: the last; CLEAN: not in it)
    # bytes copied out of this row's buffers into its socket's own memory when the
    # pool ran low (spill): they come before anything attached, so recv says SPILLED
    ("spilled", _I8),
])
HOST_BUF = np.dtype([("next", _I8), ("length", _I8),
                     ("at", _I8), ("size", _I8)])    # segment offset and size

WAKE = 1 << 48                    # result bit: post the engine's wake semaphore
COUNT = WAKE - 1
NEED_ROOM = -1                    # send: the ring lacks room for the bytes (Python)
NO_SLOT = -2                      # a request ring (or the receive-buffer ring) is full
DRAINED = 1 << 49                 # recv result bit: a SIGNALED row has nothing attached now
POLL_READY = 1 << 62              # poll result bit: the ready list is not empty
UNWATCHED, WATCHING, SIGNALED = 0, 1, 2     # HOST_CONN.ready
EMPTY = -1                        # recv: no buffer attached to the row
SPILLED = -3                      # recv: the row's first bytes are in its socket's memory
NONE = -1                         # end of a list
CLEAN = -2                        # dirty_next of a row not in the dirty list
_H = layout.QP_HEADER_FIELDS
REQUEST_CONSUMER = _H["request_consumer"] >> 2
RXBUF_CONSUMER = _H["rxbuf_consumer"] >> 2
ENGINE_FLAGS = _H["engine_flags"] >> 2
SLEEPING = layout.ENGINE_SLEEPING_FLAG
OP_SEND, SILENT, EV_RECV_DATA = layout.OP_SEND, layout.REQ_SILENT, layout.EV_RECV_DATA

_QP = from_dtype(HOST_QP)[::1]
_CONNS = from_dtype(HOST_CONN)[::1]
_BUFS = from_dtype(HOST_BUF)[::1]
_SEG, _REGS, _I64 = types.uint8[::1], types.uint32[::1], types.int64
_RO_VIEW = types.MemoryView(types.uint8, 1, "C", readonly=True)
_RW_VIEW = types.MemoryView(types.uint8, 1, "C")
_BYTES = types.Bytes(types.uint8, 1, "C", readonly=True)
_BYTEARRAY = types.ByteArray(types.uint8, 1, "C")
SOURCES = {bytes: 0, bytearray: 1, memoryview: 2}   # send's signature per source type
TARGETS = {bytearray: 0, memoryview: 1}             # recv's signature per target type


def new_state(lay: layout.QpLayout, slot_words: dict, engine_may_sleep: bool,
              return_batch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(HOST_QP record, HOST_CONN rows, HOST_BUF records) of a new QP."""
    qp = np.zeros(1, HOST_QP)
    for field in ("request_entries", "event_entries", "rxbuf_entries", "counter_rows"):
        qp[field] = getattr(lay, field)
    qp["request_base"], qp["event_base"] = lay.request_offset, lay.event_offset
    qp["rxbuf_base"], qp["counters_base"] = lay.rxbuf_offset, lay.counters_offset
    qp["recv_base"], qp["buffer_bytes"] = lay.recv_offset, lay.largest_buffer
    qp["buffers"] = lay.total_buffers
    for field, word in (("request_doorbell", "request_producer"),
                        ("event_doorbell", "event_consumer"),
                        ("rxbuf_doorbell", "rxbuf_producer"),
                        ("irq_index", "irq_event_index"), ("irq_enabled", "irq_enabled")):
        qp[field] = slot_words[word]
    qp["engine_may_sleep"] = int(engine_may_sleep)
    qp["return_head"] = qp["return_tail"] = qp["dirty_head"] = qp["ready_head"] = NONE
    qp["return_batch"] = return_batch
    conns = np.zeros(lay.counter_rows, HOST_CONN)
    conns["rx_head"] = conns["rx_tail"] = NONE
    conns["dirty_next"] = conns["ready_next"] = CLEAN
    bufs = np.zeros(lay.total_buffers, HOST_BUF)
    bufs["next"] = NONE
    bufs["at"], bufs["size"] = np.array([lay.buffer_at(i) for i in range(lay.total_buffers)],
                                        np.int64).reshape(-1, 2).T
    return qp, conns, bufs


# ---- helpers ---------------------------------------------------------------------------

@helper
def pio_write(q):
    """One register write made: counted, and its cost spent on this CPU."""
    q.pio_writes += 1
    if q.pio_write_cycles:
        q.bus_cycles += bus_spin(q.pio_write_cycles)


@helper
def ring_doorbell(seg, regs, q, word, index):
    """Publish ``index`` in the doorbell ``word`` (a PIO write); WAKE when the engine
    sleeps (doorbell, then fence, then its flag: one of the two sides sees the other)."""
    publish_index(regs, word, index)
    pio_write(q)
    if q.engine_may_sleep:
        fence()
        if observed_index(seg.view(np.uint32), ENGINE_FLAGS) & SLEEPING:
            return WAKE
    return 0


@helper
def request_slot(seg, q):
    """Byte offset of the next request slot, or -1 when the ring is full (the engine's
    consumer index is read only when the known free slots are used up)."""
    if q.request_room <= 0:
        q.request_room = ring_free(q.request_entries, q.request_producer,
                                   observed_index(seg.view(np.uint32), REQUEST_CONSUMER))
        if q.request_room <= 0:
            return -1
    return slot_at(q.request_base, q.request_entries, REQUEST_BYTES, q.request_producer)


@helper
def next_request(q):
    q.request_producer = (q.request_producer + 1) & 0xFFFFFFFF
    q.request_room -= 1


@helper
def timed_copy(q, dst, dst_at, src, src_at, count, timed):
    """One memcpy; with ``timed``, its TSC cycles in ``copy_cycles``."""
    if timed:
        start = cycles()
        copy_bytes(dst, dst_at, src, src_at, count)
        q.copy_cycles = cycles() - start
    else:
        copy_bytes(dst, dst_at, src, src_at, count)


@helper
def boundary_copy(q, dst, dst_at, src, src_at, count, scratch, timed):
    """The socket boundary's copy. When the destination lies at memcpy's slow
    distance after the source (host/copy_align.py: 1 to SLOW_BELOW - 1 bytes modulo a
    page, for copies of MIN_BYTES or more), it goes through ``scratch``, placed half a
    page from the source (hence about half a page before the destination): two fast
    copies instead of a slow one."""
    distance = (address(dst) + dst_at - address(src) - src_at) % PAGE
    if count >= MIN_BYTES and 0 < distance < SLOW_BELOW and len(scratch) >= count + PAGE:
        middle = (address(src) + src_at + PAGE // 2 - address(scratch)) % PAGE
        timed_copy(q, scratch, middle, src, src_at, count, timed)
        spent = q.copy_cycles
        timed_copy(q, dst, dst_at, scratch, middle, count, timed)
        q.copy_cycles += spent
        q.bounced += 1
    else:
        timed_copy(q, dst, dst_at, src, src_at, count, timed)


# ---- send --------------------------------------------------------------------------------

@helper
def send_call(seg, regs, qp, conns, scratch, src, row, timed):
    """The whole of ``src`` into row's send ring and one SEND, or NEED_ROOM (the bytes
    do not fit before the ring's end in its known free space, acknowledged bytes
    counted) or NO_SLOT (the request ring is full); nothing is written then."""
    q = qp[0]
    c = conns[row]
    count = len(src)
    if count == 0:
        return 0
    if c.tx_size <= 0:
        return NEED_ROOM
    position = (c.tx_posted - c.tx_base) % c.tx_size
    freed = c.tx_acked if c.tx_acked > c.tx_base else c.tx_base
    if position + count > c.tx_size or c.tx_size - (c.tx_posted - freed) < count:
        # free lazily from the engine's cumulative acknowledged counter
        c.tx_acked = load_counter(seg, counter_at(q.counters_base, c.conn, C_ACKED))
        freed = c.tx_acked if c.tx_acked > c.tx_base else c.tx_base
        if position + count > c.tx_size or c.tx_size - (c.tx_posted - freed) < count:
            return NEED_ROOM
    at = request_slot(seg, q)
    if at < 0:
        return NO_SLOT
    offset = c.tx_offset + position
    boundary_copy(q, seg, offset, src, 0, count, scratch, timed)
    write_request(seg, at, OP_SEND, SILENT, c.conn, 0, 0, 0, 0, offset, count, 0)
    next_request(q)
    c.tx_posted += count
    c.talking = 1
    return count | ring_doorbell(seg, regs, q, q.request_doorbell, q.request_producer)


@kernel(_I64(_SEG, _REGS, _QP, _CONNS, _SEG, _BYTES, _I64, _I64),
        _I64(_SEG, _REGS, _QP, _CONNS, _SEG, _BYTEARRAY, _I64, _I64),
        _I64(_SEG, _REGS, _QP, _CONNS, _SEG, _RO_VIEW, _I64, _I64))
def _send(seg, regs, qp, conns, scratch, src, row, timed):
    return send_call(seg, regs, qp, conns, scratch, src, row, timed)


@kernel(types.void(_CONNS, _I64, _I64, _I64, _I64))
def _set_ring(conns, row, offset, size, base):
    """Row's send ring becomes [offset, offset + size), starting at stream byte
    ``base`` (its acknowledged count is kept): one call, so a sender in another
    thread sees the old ring or the new one, never half of each."""
    c = conns[row]
    c.tx_offset, c.tx_size, c.tx_base = offset, size, base


# ---- receive -------------------------------------------------------------------------------

@helper
def flush_returns(seg, regs, qp, conns, bufs):
    """Give the return list back: first each dirty row's consumed counter (only buffers
    going back in this call are counted in it), then the receive-buffer entries, then
    the doorbell that publishes both. NO_SLOT (nothing done) if the ring lacks room."""
    q = qp[0]
    if q.returns == 0 and q.dirty_head == NONE:
        return 0
    room = ring_free(q.rxbuf_entries, q.rxbuf_producer,
                     observed_index(seg.view(np.uint32), RXBUF_CONSUMER))
    if room < q.returns:
        return NO_SLOT
    row = q.dirty_head
    while row != NONE:
        c = conns[row]
        store_counter(seg, counter_at(q.counters_base, c.conn, C_CONSUMED), c.released)
        row = c.dirty_next
        c.dirty_next = CLEAN
    q.dirty_head = NONE
    buffer_id = q.return_head
    while buffer_id != NONE:
        at = slot_at(q.rxbuf_base, q.rxbuf_entries, RXBUF_BYTES, q.rxbuf_producer)
        write_rxbuf(seg, at, bufs[buffer_id].at, bufs[buffer_id].size, buffer_id)
        q.rxbuf_producer = (q.rxbuf_producer + 1) & 0xFFFFFFFF
        following = bufs[buffer_id].next
        bufs[buffer_id].next = NONE
        buffer_id = following
    q.return_head = q.return_tail = NONE
    q.returns = 0
    return ring_doorbell(seg, regs, q, q.rxbuf_doorbell, q.rxbuf_producer)


@helper
def linked_first(bufs, tail, buffer_id):
    """Link ``buffer_id`` at the end of the list whose last buffer is ``tail``: True if
    the list was empty (``buffer_id`` is its head now)."""
    bufs[buffer_id].next = NONE
    if tail == NONE:
        return True
    bufs[tail].next = buffer_id
    return False


@helper
def give_back(q, bufs, buffer_id):
    """Append ``buffer_id`` to the return list."""
    if linked_first(bufs, q.return_tail, buffer_id):
        q.return_head = buffer_id
    q.return_tail = buffer_id
    q.returns += 1


@helper
def mark_dirty(q, conns, row):
    c = conns[row]
    if c.dirty_next == CLEAN:
        c.dirty_next = q.dirty_head
        q.dirty_head = row


@helper
def recv_call(seg, regs, qp, conns, bufs, scratch, dst, row, timed):
    """Copy out of row's first attached buffer into ``dst`` (as much as both hold);
    a buffer read to its end goes to the return list, the list back to the engine once
    ``return_batch`` long. EMPTY when no buffer is attached."""
    q = qp[0]
    c = conns[row]
    c.talking = 0
    if c.rx_count == 0:
        return EMPTY
    if c.spilled:
        return SPILLED
    buffer_id = c.rx_head
    length = bufs[buffer_id].length
    count = length - c.rx_start
    if len(dst) < count:
        count = len(dst)
    src_at = bufs[buffer_id].at + c.rx_start
    boundary_copy(q, dst, 0, seg, src_at, count, scratch, timed)
    if c.rx_start + count < length:
        c.rx_start += count
        c.consumed += count
        return count
    # read to its end: the unused tail counts as consumed too (the engine spent it)
    c.consumed += count + bufs[buffer_id].size - length
    c.rx_head = bufs[buffer_id].next
    c.rx_count -= 1
    c.rx_start = 0
    flags = 0
    if c.rx_count == 0:
        c.rx_tail = NONE
        if c.ready == SIGNALED:
            # its descriptor says "readable": Python clears it (DRAINED); a watched
            # reader goes back to its poller now, so the buffers go back now too
            c.ready = WATCHING
            flags = DRAINED
    give_back(q, bufs, buffer_id)
    c.released = c.consumed
    mark_dirty(q, conns, row)
    if flags or q.returns >= q.return_batch:
        wake = flush_returns(seg, regs, qp, conns, bufs)
        if wake > 0:
            flags |= wake
    return count | flags


@kernel(_I64(_SEG, _REGS, _QP, _CONNS, _BUFS, types.uint8[::1], _BYTEARRAY, _I64, _I64),
        _I64(_SEG, _REGS, _QP, _CONNS, _BUFS, types.uint8[::1], _RW_VIEW, _I64, _I64))
def _recv(seg, regs, qp, conns, bufs, scratch, dst, row, timed):
    return recv_call(seg, regs, qp, conns, bufs, scratch, dst, row, timed)


@kernel(_I64(_SEG, _QP, _CONNS, _BUFS, _I64, types.uint8[::1]))
def _spill(seg, qp, conns, bufs, row, dst):
    """Copy the unread bytes of row's attached buffers into ``dst`` (its socket's own
    memory), whole buffers from the first while they fit, and put those buffers on the
    return list, consumed as if read (Python flushes it); ``spilled`` grows by the
    bytes copied, which recv now leaves to Python (SPILLED). Returns the bytes copied."""
    q = qp[0]
    c = conns[row]
    done = 0
    while c.rx_count:
        buffer_id = c.rx_head
        length = bufs[buffer_id].length
        count = length - c.rx_start
        if done + count > len(dst):
            break
        at = bufs[buffer_id].at + c.rx_start
        dst[done:done + count] = seg[at:at + count]
        done += count
        c.consumed += count + bufs[buffer_id].size - length
        c.rx_head = bufs[buffer_id].next
        c.rx_count -= 1
        c.rx_start = 0
        give_back(q, bufs, buffer_id)
        c.released = c.consumed
        mark_dirty(q, conns, row)
    if c.rx_count == 0:
        c.rx_tail = NONE
    c.spilled += done
    return done


@kernel(_I64(_SEG, _REGS, _QP, _CONNS, _BUFS))
def _flush_returns(seg, regs, qp, conns, bufs):
    return flush_returns(seg, regs, qp, conns, bufs)


@kernel(types.void(_QP, _CONNS, _BUFS, _I64, _I64, _I64))
def _release(qp, conns, bufs, row, buffer_id, space):
    """Python's return of one buffer (unread, or of a closed socket): ``space`` more
    bytes consumed on ``row`` (if it is >= 0), the buffer onto the return list."""
    q = qp[0]
    if row >= 0:
        conns[row].consumed += space
        conns[row].released = conns[row].consumed
        mark_dirty(q, conns, row)
    give_back(q, bufs, buffer_id)


@kernel(_I64(_CONNS, _BUFS, _I64))
def _detach_row(conns, bufs, row):
    """Row stops attaching buffers; returns its first attached buffer (-1: none) after
    unlinking the list from the row: Python walks ``bufs.next`` to give them back."""
    c = conns[row]
    head = c.rx_head
    c.conn = 0
    c.rx_head = c.rx_tail = NONE
    c.rx_count = c.rx_start = c.spilled = 0
    c.ready = UNWATCHED
    return head


# ---- events ----------------------------------------------------------------------------------

@helper
def attach(q, conns, bufs, conn, buffer_id, length):
    """Append a filled buffer to ``conn``'s row if the row is registered to it and the
    buffer id and length are sane; False (nothing done) otherwise."""
    row = conn & ROW_MASK
    if conn == 0 or row >= q.counter_rows or conns[row].conn != conn \
            or not 0 <= buffer_id < q.buffers or not 0 < length <= bufs[buffer_id].size:
        return False
    c = conns[row]
    bufs[buffer_id].length = length
    if linked_first(bufs, c.rx_tail, buffer_id):
        c.rx_head = buffer_id
    c.rx_tail = buffer_id
    c.rx_count += 1
    q.attached += 1
    if c.ready == WATCHING:         # its descriptor must say "readable" now: list it
        c.ready = SIGNALED
        if c.ready_next == CLEAN:
            c.ready_next = q.ready_head
            q.ready_head = row
    return True


@kernel(types.boolean(_QP, _CONNS, _BUFS, _I64, _I64, _I64))
def _attach(qp, conns, bufs, conn, buffer_id, length):
    """Python's attach of a RECV_DATA it holds (one that came before its socket was
    registered)."""
    return attach(qp[0], conns, bufs, conn, buffer_id, length)


@kernel(types.void(_CONNS, _I64, _I64))
def _open_row(conns, row, conn):
    """A new connection on ``row``: nothing attached, consumed and sent from zero, no
    send ring yet; its RECV_DATA attached from now on. (A pending dirty mark stays: the
    flush then writes this connection's zero, as the engine did at SOCKET/ACCEPT.)"""
    c = conns[row]
    c.conn = conn
    c.rx_head = c.rx_tail = NONE
    c.rx_count = c.rx_start = c.consumed = c.released = c.talking = c.spilled = 0
    c.tx_offset = c.tx_size = c.tx_posted = c.tx_acked = c.tx_base = 0
    c.ready = UNWATCHED      # (a listed row stays listed: take_ready skips it)


@kernel(_I64(_SEG, _REGS, _QP, _CONNS, _BUFS, types.uint8[::1], _I64))
def _poll(seg, regs, qp, conns, bufs, out, limit):
    """Consume up to ``limit`` ready events: a RECV_DATA for a registered row (with a
    sane buffer id and length) is attached to the row, every other event copied into
    ``out`` (EVENT records, as many as fit; the drain stops when it is full).
    Returns ``consumed << 32 | copied``, with POLL_READY when the ready list has rows
    (their descriptors need signaling: take_ready)."""
    q = qp[0]
    most = len(out) // EVENT_BYTES
    taken = copied = 0
    while taken < limit and copied < most:
        index = (q.event_consumer + taken) & 0xFFFFFFFF
        at = slot_at(q.event_base, q.event_entries, EVENT_BYTES, index)
        if not phase_ready(seg, at, E_PHASE, index, q.event_entries):
            break
        taken += 1
        if event_kind(seg, at) == EV_RECV_DATA and attach(
                q, conns, bufs, event_conn(seg, at), event_buffer(seg, at),
                event_length(seg, at)):
            continue
        copy_bytes(out, copied * EVENT_BYTES, seg, at, EVENT_BYTES)
        copied += 1
    if taken:
        q.event_consumer = (q.event_consumer + taken) & 0xFFFFFFFF
        publish_index(regs, q.event_doorbell, q.event_consumer)   # the slots are free
        pio_write(q)
    if q.ready_head != NONE:
        return (taken << 32) | copied | POLL_READY
    return (taken << 32) | copied


@kernel(_I64(_QP, _CONNS, types.int64[::1]))
def _take_ready(qp, conns, out):
    """Take rows off the ready list into ``out`` (their connection ids; rows no longer
    SIGNALED are dropped from the list, not copied); as many as fit: the rest stay
    listed. Returns how many were copied."""
    q = qp[0]
    count = 0
    row = q.ready_head
    while row != NONE and count < len(out):
        c = conns[row]
        following = c.ready_next
        c.ready_next = CLEAN
        if c.ready == SIGNALED:
            out[count] = c.conn
            count += 1
        row = following
    q.ready_head = row
    return count


@kernel(types.boolean(_SEG, _QP, _I64))
def _published(seg, qp, index):
    """Whether the engine has published event ``index`` (its phase word)."""
    q = qp[0]
    return phase_ready(seg, slot_at(q.event_base, q.event_entries, EVENT_BYTES, index),
                       E_PHASE, index, q.event_entries)


@kernel(types.boolean(_SEG, _QP, _I64))
def _spin(seg, qp, checks):
    """Busy-wait for the event at the consumer index: True once it is published,
    False after ``checks`` looks (a few microseconds; the GIL is held meanwhile)."""
    q = qp[0]
    index = q.event_consumer
    at = slot_at(q.event_base, q.event_entries, EVENT_BYTES, index)
    for _ in range(checks):
        if phase_ready(seg, at, E_PHASE, index, q.event_entries):
            return True
        pause()
    return False


@kernel(types.boolean(_SEG, _REGS, _QP, _I64))
def _arm(seg, regs, qp, batch):
    """Arm the interrupt for the ``batch``-th next event, then (after a fence: the arm
    is visible before we look) whether that event is in already: True = do not sleep."""
    q = qp[0]
    index = (q.event_consumer + batch - 1) & 0xFFFFFFFF
    regs[q.irq_index] = index
    pio_write(q)
    publish_index(regs, q.irq_enabled, 1)
    pio_write(q)
    fence()
    return phase_ready(seg, slot_at(q.event_base, q.event_entries, EVENT_BYTES, index),
                       E_PHASE, index, q.event_entries)


@kernel(types.void(_REGS, _QP))
def _disarm(regs, qp):
    """The interrupt is off again (a waiter woke up or gave up)."""
    q = qp[0]
    regs[q.irq_enabled] = 0
    pio_write(q)


@kernel(types.void(_QP, _I64))
def _register_reads(qp, count):
    """``count`` register reads made from Python (the engine's heartbeat and state, an
    interrupt handler's status read): counted, and their cost spent on this CPU."""
    q = qp[0]
    q.pio_reads += count
    if q.pio_read_cycles:
        q.bus_cycles += bus_spin(count * q.pio_read_cycles)


# ---- requests ----------------------------------------------------------------------------------

_U64 = types.uint64


@kernel(_I64(_SEG, _REGS, _QP, _I64, _I64, _I64, _U64, _I64, _I64, _I64, _U64, _U64, _U64))
def _post(seg, regs, qp, opcode, flags, conn, cookie, addr, port, option, offset, length,
          value):
    """One request and its doorbell; NO_SLOT (nothing written) if the ring is full.
    The 64-bit fields come as u64 (any value a host may want to write)."""
    q = qp[0]
    at = request_slot(seg, q)
    if at < 0:
        return NO_SLOT
    write_request(seg, at, opcode, flags, conn, cookie, addr, port, option, offset, length,
                  value)
    next_request(q)
    return ring_doorbell(seg, regs, q, q.request_doorbell, q.request_producer)


@kernel(_I64(_SEG, _REGS, _QP, types.uint8[::1], _I64))
def _post_records(seg, regs, qp, records, count):
    """``count`` REQUEST records (bytes) and one doorbell, all or nothing (NO_SLOT)."""
    q = qp[0]
    room = ring_free(q.request_entries, q.request_producer,
                     observed_index(seg.view(np.uint32), REQUEST_CONSUMER))
    if room < count:
        return NO_SLOT
    for k in range(count):
        copy_bytes(seg, slot_at(q.request_base, q.request_entries, REQUEST_BYTES,
                                q.request_producer), records, k * REQUEST_BYTES, REQUEST_BYTES)
        q.request_producer = (q.request_producer + 1) & 0xFFFFFFFF
    q.request_room = room - count
    return ring_doorbell(seg, regs, q, q.request_doorbell, q.request_producer)


@kernel(_I64(_SEG, _REGS, _QP, types.int64[:, ::1]))
def _give_buffers(seg, regs, qp, entries):
    """Receive-buffer entries (rows of offset, length, id) and one doorbell, all or
    nothing (NO_SLOT). Any entry the host likes: the engine checks them."""
    q = qp[0]
    count = entries.shape[0]
    if ring_free(q.rxbuf_entries, q.rxbuf_producer,
                 observed_index(seg.view(np.uint32), RXBUF_CONSUMER)) < count:
        return NO_SLOT
    for k in range(count):
        at = slot_at(q.rxbuf_base, q.rxbuf_entries, RXBUF_BYTES, q.rxbuf_producer)
        write_rxbuf(seg, at, entries[k, 0], entries[k, 1], entries[k, 2])
        q.rxbuf_producer = (q.rxbuf_producer + 1) & 0xFFFFFFFF
    return ring_doorbell(seg, regs, q, q.rxbuf_doorbell, q.rxbuf_producer)


@kernel(_I64(_SEG, _QP, _I64))
def _acked(seg, qp, conn):
    """Bytes sent and acknowledged on ``conn`` (the engine's counter)."""
    return load_counter(seg, counter_at(qp[0].counters_base, conn, C_ACKED))


@kernel(types.void(_SEG, _QP, _I64, types.uint64))
def _store_consumed(seg, qp, conn, total):
    """Write ``conn``'s consumed counter now (a test's or a tool's own host; any u64)."""
    store_counter(seg, counter_at(qp[0].counters_base, conn, C_CONSUMED), total)


send_by_source = [entry(_send, i) for i in range(3)]
recv_by_target = [entry(_recv, i) for i in range(2)]
set_ring = entry(_set_ring)
flush = entry(_flush_returns)
spill = entry(_spill)
release = entry(_release)
detach_row = entry(_detach_row)
attach_one = entry(_attach)
open_row = entry(_open_row)
poll = entry(_poll)
take_ready = entry(_take_ready)
published = entry(_published)
spin = entry(_spin)
arm = entry(_arm)
disarm = entry(_disarm)
register_reads = entry(_register_reads)
post = entry(_post)
post_records = entry(_post_records)
give_buffers = entry(_give_buffers)
acked = entry(_acked)
store_consumed = entry(_store_consumed)


loaded(__name__)
