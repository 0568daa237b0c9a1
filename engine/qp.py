"""Engine-side state of one queue pair: rings, connections, counters, reclaim hooks.

A :class:`QueuePair` exists from the moment a host enables its slot until the slot is
disabled or its host dies. It owns the persistent mapping of the host segment (only
reached through ``self.dma``), the engine's ring indices, the QP's connection table,
and the list of reclaim hooks run at detach so the socket layer can reset
connections and free what they hold.

Connection ids carry the slot (``slot << 20 | row``); the row is also the
connection's row in the QP's counter table. A request naming a connection this QP
does not own is refused (the IOMMU rule for connections).
"""
from __future__ import annotations

import errno
from collections import deque
from typing import Any, Callable, Optional

from toad import layout
from toad.rings import MASK32, ring_count

CONN_SHIFT = layout.CONN_ROW_BITS

_H = layout.QP_HEADER_FIELDS
_EVENT_BODY = layout.EVENT_BODY_STRUCT
_PHASE_OFFSET = layout.EVENT_PHASE_OFFSET
assert layout.EVENT.itemsize == 64


class QueuePair:
    """One attached QP as the engine sees it."""

    def __init__(self, slot: int, host_pid: int, segment, dma, lay: layout.QpLayout,
                 registers_u32, words: dict, interrupt, pidfd: int):
        self.slot = slot
        self.host_pid = host_pid
        self.segment = segment
        self.dma = dma
        self.layout = lay
        self.u32 = registers_u32
        self.words = words
        self.interrupt = interrupt
        self.pidfd = pidfd
        self.request_producer_word = words["request_producer"]
        self.event_consumer_word = words["event_consumer"]
        self.rxbuf_producer_word = words["rxbuf_producer"]
        self.request_consumer = 0
        self.event_producer = 0
        self.rxbuf_consumer = 0
        self.event_mask = lay.event_entries - 1
        self.event_shift = lay.event_entries.bit_length() - 1
        self.event_base = lay.event_offset
        self.event_room = lay.event_entries   # cached free slots (refreshed when 0)
        self.request_mask = lay.request_entries - 1
        self.request_entries = lay.request_entries
        self.request_base = lay.request_offset
        self.connections: dict[int, Any] = {}
        self._free_rows = list(range(lay.counter_rows - 1, 0, -1))  # row 0 is never used
        self.backlog: deque = deque()   # events waiting for room in the event ring
        # past this many unread events the engine takes no receive buffers and sends
        # no error reports for this QP (see report): the backlog stays bounded
        self.backlog_max = lay.event_entries
        self.reports_dropped = 0
        self.reclaim_hooks: list[Callable[["QueuePair"], None]] = []
        self.requests = 0
        self.events = 0
        self.bad_records = 0
        self.bad_doorbell_seen: Optional[int] = None
        self.bad_rxbuf_doorbell_seen: Optional[int] = None
        # ids of the receive buffers the engine holds: from taking one from the ring
        # until a RECV_DATA names it. A second copy of a held id (a host returning it
        # twice) would get a second payload DMA-written over the first. A set, not a
        # bytearray indexed by id: ids are the host's choice (any u32), and add /
        # discard / lookup cost ~50 ns more per buffer than indexing (0.3-0.6 us per
        # buffer checked). Bounded: the engine takes buffers only as it fills them.
        self.rx_held: set = set()
        for field in ("request_consumer", "rxbuf_consumer", "engine_flags"):
            dma.write_u32(_H[field], 0)

    # ---- connections -------------------------------------------------------------
    def allocate_connection(self, state: Any) -> Optional[int]:
        """A new connection id owned by this QP, or None when the table is full."""
        if not self._free_rows:
            return None
        conn = (self.slot << CONN_SHIFT) | self._free_rows.pop()
        self.connections[conn] = state
        self.set_bytes_acked(conn, 0)
        return conn

    def owns(self, conn: int) -> bool:
        return conn in self.connections

    def release_connection(self, conn: int) -> None:
        """Free a connection id (its counter row becomes reusable)."""
        if conn in self.connections:
            del self.connections[conn]
            self._free_rows.append(conn & ((1 << CONN_SHIFT) - 1))

    def counter_offset(self, conn: int) -> int:
        return self.layout.counters_offset + (conn & ((1 << CONN_SHIFT) - 1)) * layout.COUNTER_ROW.itemsize

    def set_bytes_acked(self, conn: int, total: int) -> None:
        """Mirror the cumulative bytes sent-and-acked (no event, no interrupt)."""
        self.dma.write_u64(self.counter_offset(conn), total)

    def bytes_consumed(self, conn: int) -> int:
        """Cumulative bytes the application has read (written by the host)."""
        return self.dma.read_u64(self.counter_offset(conn) + 8)

    def check_send_range(self, offset: int, length: int) -> bool:
        lay = self.layout
        return lay.send_offset <= offset and offset + length <= lay.send_offset + lay.send_bytes

    # ---- request ring --------------------------------------------------------------
    def pending_requests(self) -> int:
        """Records the host has published and the engine not yet read (-1: bad doorbell)."""
        count = ring_count(self.u32[self.request_producer_word], self.request_consumer)
        return count if count <= self.layout.request_entries else -1

    def request_offset(self, index: int) -> int:
        return self.layout.request_offset + (index & self.request_mask) * layout.REQUEST.itemsize

    def request_spans(self, count: int) -> list[tuple[int, int]]:
        """(byte offset, records) pieces of the next ``count`` requests (wrap split)."""
        first = self.request_consumer & self.request_mask
        head = min(count, self.layout.request_entries - first)
        spans = [(self.request_offset(self.request_consumer), head)]
        if count > head:
            spans.append((self.layout.request_offset, count - head))
        return spans

    def consume_requests(self, count: int) -> None:
        """Publish how far the engine has read (the host reuses those slots)."""
        self.request_consumer = (self.request_consumer + count) & MASK32
        self.requests += count
        self.dma.write_u32(_H["request_consumer"], self.request_consumer)

    # ---- event ring ----------------------------------------------------------------
    def event_space(self) -> int:
        """Free event slots, from the host's consumer register (also refreshes the cache)."""
        used = ring_count(self.event_producer, self.u32[self.event_consumer_word])
        room = max(0, self.layout.event_entries - used) if used <= self.layout.event_entries else 0
        self.event_room = room
        return room

    def post_event(self, kind: int, flags: int = 0, conn: int = 0, cookie: int = 0,
                   status: int = 0, reason: int = 0, port: int = 0, buffer: int = 0,
                   addr: int = 0, offset: int = 0, length: int = 0, value: int = 0) -> None:
        """Post one event, or queue it when the ring has no room (never overwrite)."""
        body = (kind, flags, conn, cookie & 0xFFFFFFFFFFFFFFFF, status, reason, port, buffer,
                addr, offset, length, value)
        if self.backlog or (self.event_room <= 0 and not self.event_space()):
            self.backlog.append(body)
            return
        index = self.event_producer   # (_write_event, inlined: the hottest path)
        off = self.event_base + (index & self.event_mask) * 64
        self.dma.write_record(_EVENT_BODY, off, body, off + _PHASE_OFFSET,
                              ((index >> self.event_shift) & 1) ^ 1)
        self.event_producer = (index + 1) & MASK32
        self.event_room -= 1
        self.events += 1

    def post_many(self, bodies: list) -> None:
        """Post event bodies (post_event's field order) in order: as many post_event
        calls, with one room check and one DMA transaction per unwrapped run."""
        count = len(bodies)
        if self.backlog or (self.event_room < count and self.event_space() < count):
            for body in bodies:
                self.post_event(*body)      # some or all wait in the backlog
            return
        index = self.event_producer
        done = 0
        while done < count:
            slot = index & self.event_mask
            run = min(count - done, self.event_mask + 1 - slot)   # up to the ring's end
            self.dma.write_records(_EVENT_BODY, self.event_base + slot * 64, 64,
                                   bodies[done:done + run] if run < count else bodies,
                                   _PHASE_OFFSET, ((index >> self.event_shift) & 1) ^ 1)
            index = (index + run) & MASK32
            done += run
        self.event_producer = index
        self.event_room -= count
        self.events += count

    def _write_event(self, body: tuple) -> None:
        index = self.event_producer
        off = self.event_base + (index & self.event_mask) * 64
        # one DMA transaction: the body, then the phase word that publishes it
        self.dma.write_record(_EVENT_BODY, off, body, off + _PHASE_OFFSET,
                              ((index >> self.event_shift) & 1) ^ 1)
        self.event_producer = (index + 1) & MASK32
        self.event_room -= 1
        self.events += 1

    def flush_backlog(self) -> int:
        """Move queued events into the ring as room appears; returns events posted."""
        posted = 0
        space = self.event_space()
        while self.backlog and space:
            self._write_event(self.backlog.popleft())
            space -= 1
            posted += 1
        return posted

    def report(self, status: int, reason: int, **fields) -> None:
        """Report something malformed the host wrote: counted in ``bad_records``
        and answered with an ERROR event, except while ``backlog_max`` events wait
        unread (then only counted, also in ``reports_dropped``; both are published
        in the QP's stats row, engine/slots.py flush_qp_stats).

        Why the event backlog stays bounded: requests are read only while the event
        ring has room for their answers, and a connection posts at most a few events
        of its own (ACCEPT_READY, PEER_CLOSED, RESET, SEND_SPACE). A host that reads
        no events could otherwise grow it without end in two ways: bad records it
        keeps writing (their reports: dropped here) and receive buffers it keeps
        posting (not taken while the backlog is full: the engine is out of buffers
        and TCP retransmits once the host reads again).
        """
        self.bad_records += 1
        if len(self.backlog) >= self.backlog_max:
            self.reports_dropped += 1
            return
        self.post_event(layout.EV_ERROR, status=status, reason=reason, **fields)

    def backlog_full(self) -> bool:
        return len(self.backlog) >= self.backlog_max

    def post_error(self, request, status: int, reason: int) -> None:
        """Answer a bad request: ERROR event naming its cookie, errno and reason."""
        self.bad_records += 1
        self.post_event(layout.EV_ERROR, conn=request.conn, cookie=request.cookie,
                        status=status, reason=reason, value=request.opcode)

    # ---- receive-buffer ring ----------------------------------------------------------
    def take_rx_buffer(self) -> Optional[tuple[int, int, int]]:
        """The next valid free anonymous buffer (offset, length, id), or None (also
        while the event backlog is full: see report).

        Entries outside the receive area, or naming an id the engine already holds,
        are refused: counted, reported with an ERROR event (reason ERR_BAD_RXBUF, see
        refuse_rx_entry) and skipped. A doorbell claiming more entries than the ring
        holds yields nothing and is reported as ERR_BAD_DOORBELL, once per value (as
        the request doorbell, engine/loop.py).
        """
        lay = self.layout
        while not self.backlog_full():
            producer = self.u32[self.rxbuf_producer_word]
            available = ring_count(producer, self.rxbuf_consumer)
            if available > lay.rxbuf_entries:
                if self.bad_rxbuf_doorbell_seen != producer:
                    self.bad_rxbuf_doorbell_seen = producer
                    self.report(errno.EINVAL, layout.ERR_BAD_DOORBELL, value=producer)
                return None
            if available == 0:
                return None
            off = lay.rxbuf_offset + (self.rxbuf_consumer & (lay.rxbuf_entries - 1)) * layout.RXBUF.itemsize
            offset, length, buf_id = self.dma.unpack(layout.RXBUF_STRUCT, off)
            self.rxbuf_consumer = (self.rxbuf_consumer + 1) & MASK32
            self.dma.write_u32(_H["rxbuf_consumer"], self.rxbuf_consumer)
            end = lay.recv_offset + lay.recv_bytes
            if (lay.recv_offset <= offset and offset + length <= end
                    and 0 < length <= lay.recv_buffer_bytes and buf_id not in self.rx_held):
                self.rx_held.add(buf_id)
                return offset, length, buf_id
            self.refuse_rx_entry(offset, length, buf_id)
        return None

    def refuse_rx_entry(self, offset: int, length: int, buf_id: int) -> None:
        """Report a receive-buffer entry that failed the checks (made inline by the
        callers, the hot path): ERR_BAD_RXBUF, the errno saying which check."""
        lay = self.layout
        end = lay.recv_offset + lay.recv_bytes
        if lay.recv_offset <= offset and offset + length <= end \
                and 0 < length <= lay.recv_buffer_bytes:
            status = errno.EALREADY      # the engine holds this id: this copy is dropped
        else:
            status = errno.EFAULT        # not (all) in the receive area
        self.report(status, layout.ERR_BAD_RXBUF, buffer=buf_id, offset=offset, length=length)

    # ---- lifetime ---------------------------------------------------------------------
    def set_engine_flags(self, flags: int) -> None:
        self.dma.write_u32(_H["engine_flags"], flags)

    def detach(self) -> None:
        """Run reclaim hooks (socket layer), then drop the mapping and handles."""
        try:
            for hook in self.reclaim_hooks:
                hook(self)
        finally:
            self._release_mapping()

    def _release_mapping(self) -> None:
        self.connections.clear()
        self.backlog.clear()
        self.interrupt.close()
        self.dma.close()
        self.segment.close()
