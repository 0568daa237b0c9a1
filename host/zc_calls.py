"""The zero-copy calls' compiled part (host/zero_copy.py has the API): one call each to
lend the next free bytes of a send ring, to commit them (the SEND), to take the next
received buffer off a connection's row and to give it back.

They work on the driver's state arrays (host/datapath.py: HOST_QP, HOST_CONN,
HOST_BUF) with its helpers, under the same rules: a compiled call holds the GIL, so
each is atomic with respect to the process's other threads.

Send: :func:`reserve` marks the lent bytes in the row (``tx_held``); while it is set,
datapath's copying ``send`` writes nothing (it answers NEED_ROOM and its caller waits
for the socket's send lock, which the open view holds), so the lent bytes stay the
next bytes of the stream. :func:`commit` posts one SEND for the bytes written and
clears the mark; the ring's space comes back through the acknowledged counter, as
for copied bytes.

Receive: :func:`take` unlinks the first attached buffer from the row. The row's
``consumed`` count drops what a copying ``recv`` had read of it (the buffer leaves
whole); :func:`give` adds the buffer's whole space to ``consumed`` and ``released``
and puts it on the return list: the consumed counter the engine reads then counts
exactly the buffer space back in the pool, in whatever order views come back.
"""
from __future__ import annotations

from numba import types

from host.datapath import (
    _BUFS,
    _CONNS,
    _I64,
    _QP,
    _REGS,
    _SEG,
    EMPTY,
    NEED_ROOM,
    NO_SLOT,
    NONE,
    OP_SEND,
    SIGNALED,
    SILENT,
    WATCHING,
    flush_returns,
    give_back,
    mark_dirty,
    next_request,
    request_slot,
    ring_doorbell,
)
from toad.compiled import entry, kernel, loaded
from toad.rings.records import C_ACKED, counter_at, load_counter, write_request

HELD = -3          # reserve: a view of this ring is open already
BAD = -4           # commit: not the open view's range / give: no buffer of the pool


@kernel(_I64(_SEG, _QP, _CONNS, _I64, _I64, _I64))
def _reserve(seg, qp, conns, row, want, least):
    """Lend up to ``want`` contiguous free bytes at the ring's write position:
    ``segment offset << 32 | length``. Fewer than ``want`` only when the ring's end
    comes first or at least ``least`` are free; else NEED_ROOM (nothing lent).
    Acknowledged bytes are counted from the engine's counter when the known free
    space falls short."""
    q = qp[0]
    c = conns[row]
    if c.tx_held:
        return HELD
    size = c.tx_size
    if size <= 0 or want <= 0:
        return NEED_ROOM
    position = (c.tx_posted - c.tx_base) % size
    to_end = size - position
    freed = max(c.tx_base, c.tx_acked)
    free = size - (c.tx_posted - freed)
    if free < want and free < to_end:
        c.tx_acked = load_counter(seg, counter_at(q.counters_base, c.conn, C_ACKED))
        freed = max(c.tx_base, c.tx_acked)
        free = size - (c.tx_posted - freed)
    n = want
    n = min(n, free)
    n = min(n, to_end)
    if n <= 0 or (n < want and n < to_end and n < least):
        return NEED_ROOM
    c.tx_held = n
    return ((c.tx_offset + position) << 32) | n


@kernel(_I64(_SEG, _REGS, _QP, _CONNS, _I64, _I64, _I64))
def _commit(seg, regs, qp, conns, row, offset, count):
    """One SEND for the first ``count`` bytes of the open view at ``offset`` (0:
    none), and the view is closed; BAD if that is not the open view or ``count``
    exceeds it, NO_SLOT (nothing done) if the request ring is full."""
    q = qp[0]
    c = conns[row]
    held = c.tx_held
    if held <= 0 or count < 0 or count > held or c.tx_size <= 0 \
            or offset != c.tx_offset + (c.tx_posted - c.tx_base) % c.tx_size:
        return BAD
    if count == 0:
        c.tx_held = 0
        return 0
    at = request_slot(seg, q)
    if at < 0:
        return NO_SLOT
    write_request(seg, at, OP_SEND, SILENT, c.conn, 0, 0, 0, 0, offset, count, 0)
    next_request(q)
    c.tx_posted += count
    c.tx_held = 0
    c.talking = 1
    return count | ring_doorbell(seg, regs, q, q.request_doorbell, q.request_producer)


@kernel(types.void(_CONNS, _I64))
def _drop_hold(conns, row):
    """The open view is gone without a SEND (its socket closed)."""
    conns[row].tx_held = 0


@kernel(_I64(_QP, _CONNS, _BUFS, _I64))
def _take(qp, conns, bufs, row):
    """Unlink row's first attached buffer: ``segment offset << 32 | length`` of its
    unread bytes, or EMPTY."""
    q = qp[0]
    c = conns[row]
    c.talking = 0
    if c.rx_count == 0:
        return EMPTY
    buffer_id = c.rx_head
    start = c.rx_start
    length = bufs[buffer_id].length - start
    c.consumed -= start          # counted again, whole, when the buffer comes back
    c.rx_head = bufs[buffer_id].next
    c.rx_count -= 1
    c.rx_start = 0
    bufs[buffer_id].next = NONE
    if c.rx_count == 0:
        c.rx_tail = NONE
        if c.ready == SIGNALED:  # (Python lowers the descriptor: update_read)
            c.ready = WATCHING
    return ((q.recv_base + buffer_id * q.buffer_bytes + start) << 32) | length


@kernel(_I64(_SEG, _REGS, _QP, _CONNS, _BUFS, _I64, _I64, _I64))
def _give(seg, regs, qp, conns, bufs, row, conn, buffer_id):
    """A taken buffer comes back: its whole space consumed on ``row`` if the row
    still belongs to ``conn`` (row < 0: nobody's), the buffer onto the return list,
    the list back to the engine once ``return_batch`` long. The flush's WAKE bit, or
    BAD for an id of no buffer."""
    q = qp[0]
    if buffer_id < 0 or buffer_id >= q.buffers:
        return BAD
    if row >= 0 and conn != 0 and conns[row].conn == conn:
        c = conns[row]
        c.consumed += q.buffer_bytes
        c.released += q.buffer_bytes
        mark_dirty(q, conns, row)
    give_back(q, bufs, buffer_id)
    if q.returns >= q.return_batch:
        wake = flush_returns(seg, regs, qp, conns, bufs)
        if wake > 0:
            return wake
    return 0


reserve = entry(_reserve)
commit = entry(_commit)
drop_hold = entry(_drop_hold)
take = entry(_take)
give = entry(_give)


loaded(__name__)
