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

A writer's step (commit this view, lend the next) is one call, :func:`commit_next`,
and so is a reader's (give this buffer back, take the next), :func:`give_take`.

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
    WAKE,
    WATCHING,
    flush_returns,
    give_back,
    mark_dirty,
    next_request,
    request_slot,
    ring_doorbell,
)
from toad.compiled import entry, helper, kernel, loaded
from toad.rings.records import C_ACKED, counter_at, load_counter, write_request

HELD = -3          # reserve: a view of this ring is open already
BAD = -4           # commit: not the open view's range / give: no buffer of the pool
ROOM_WAKE = -5     # commit_next: committed, no room for the next view; wake the engine
EMPTY_WAKE = -6    # give_take: given back, nothing to take; wake the engine
# A view comes back as ``offset << SHIFT | length`` (a segment and a length under
# 2 GB), with VIEW_WAKE set when the engine sleeps and its semaphore must be posted.
SHIFT = 31
LENGTH = (1 << SHIFT) - 1
VIEW_WAKE = 1 << 62


@helper
def reserve_call(seg, qp, conns, row, want, least):
    """Lend up to ``want`` contiguous free bytes at the ring's write position (the
    view, packed). Fewer than ``want`` only when the ring's end comes first or at
    least ``least`` are free; else NEED_ROOM (nothing lent). Acknowledged bytes are
    counted from the engine's counter when the known free space falls short."""
    q = qp[0]
    c = conns[row]
    if c.tx_held:
        return HELD
    size = c.tx_size
    if size <= 0 or want <= 0:
        return NEED_ROOM
    position = (c.tx_posted - c.tx_base) % size
    to_end = size - position
    freed = max(c.tx_acked, c.tx_base)
    free = size - (c.tx_posted - freed)
    if free < want and free < to_end:
        c.tx_acked = load_counter(seg, counter_at(q.counters_base, c.conn, C_ACKED))
        freed = max(c.tx_acked, c.tx_base)
        free = size - (c.tx_posted - freed)
    n = min(want, free, to_end)
    if n <= 0 or (n < want and n < to_end and n < least):
        return NEED_ROOM
    c.tx_held = n
    return ((c.tx_offset + position) << SHIFT) | n


@helper
def commit_call(seg, regs, qp, conns, row, offset, count):
    """One SEND for the first ``count`` bytes of the open view at ``offset`` (0:
    none), and the view is closed: ``count`` with datapath's WAKE bit; BAD if that
    is not the open view or ``count`` exceeds it, NO_SLOT (nothing done) if the
    request ring is full."""
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


@kernel(_I64(_SEG, _QP, _CONNS, _I64, _I64, _I64))
def _reserve(seg, qp, conns, row, want, least):
    return reserve_call(seg, qp, conns, row, want, least)


@kernel(_I64(_SEG, _REGS, _QP, _CONNS, _I64, _I64, _I64))
def _commit(seg, regs, qp, conns, row, offset, count):
    return commit_call(seg, regs, qp, conns, row, offset, count)


@kernel(_I64(_SEG, _REGS, _QP, _CONNS, _I64, _I64, _I64, _I64))
def _commit_next(seg, regs, qp, conns, row, offset, count, want):
    """A writer's step in one call: commit the open view's ``count`` bytes, then
    lend the next ``want`` (``reserve_call(want, want)``). The next view (with
    VIEW_WAKE); commit's NO_SLOT or BAD (nothing done); or, committed but no room
    for the next view, NEED_ROOM (ROOM_WAKE: post the engine's semaphore too)."""
    done = commit_call(seg, regs, qp, conns, row, offset, count)
    if done < 0:
        return done
    wake = (done & WAKE) != 0
    view = reserve_call(seg, qp, conns, row, want, want)
    if view < 0:
        return ROOM_WAKE if wake else view
    return view | VIEW_WAKE if wake else view


@kernel(types.void(_CONNS, _I64))
def _drop_hold(conns, row):
    """The open view is gone without a SEND (its socket closed)."""
    conns[row].tx_held = 0


@helper
def take_call(qp, conns, bufs, row):
    """Unlink row's first attached buffer: the view of its unread bytes (packed),
    or EMPTY."""
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
    return ((q.recv_base + buffer_id * q.buffer_bytes + start) << SHIFT) | length


@helper
def give_call(seg, regs, qp, conns, bufs, row, conn, buffer_id):
    """A taken buffer comes back: its whole space consumed on ``row`` if the row
    still belongs to ``conn`` (row < 0: nobody's), the buffer onto the return list,
    the list back to the engine once ``return_batch`` long. 0 or WAKE; BAD for an
    id of no buffer."""
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


@kernel(_I64(_QP, _CONNS, _BUFS, _I64))
def _take(qp, conns, bufs, row):
    return take_call(qp, conns, bufs, row)


@kernel(_I64(_SEG, _REGS, _QP, _CONNS, _BUFS, _I64, _I64, _I64))
def _give(seg, regs, qp, conns, bufs, row, conn, buffer_id):
    return give_call(seg, regs, qp, conns, bufs, row, conn, buffer_id)


@kernel(_I64(_SEG, _REGS, _QP, _CONNS, _BUFS, _I64, _I64, _I64))
def _give_take(seg, regs, qp, conns, bufs, row, conn, buffer_id):
    """A reader's step in one call: give ``buffer_id`` back, take the next: the
    next view (with VIEW_WAKE), EMPTY (EMPTY_WAKE), or BAD (nothing done)."""
    given = give_call(seg, regs, qp, conns, bufs, row, conn, buffer_id)
    if given < 0:
        return given
    wake = given > 0 and (given & WAKE) != 0
    view = take_call(qp, conns, bufs, row)
    if view < 0:
        return EMPTY_WAKE if wake else view
    return view | VIEW_WAKE if wake else view


reserve = entry(_reserve)
commit = entry(_commit)
commit_next = entry(_commit_next)
drop_hold = entry(_drop_hold)
take = entry(_take)
give = entry(_give)
give_take = entry(_give_take)


loaded(__name__)
