"""Engine-side state of one queue pair: rings, connections, counters, reclaim hooks.

A :class:`QueuePair` exists from the moment a host enables its slot until the slot is
disabled or its host dies. It owns the persistent mapping of the host segment: payload
is reached through ``self.dma`` (engine/dma.py), the rings and counter rows through
the compiled calls of engine/ring_calls.py on ``self.seg`` (the same mapping as
bytes), ``self.regs`` (its doorbell page as uint32: the same mapping, as only its
host and the engine reach it) and ``self.state`` (the engine's indices and counters). It also holds the QP's
connection table, the events waiting for room in the event ring, and the reclaim
hooks run at detach so the socket layer can reset connections and free what they hold.

Connection ids carry the slot (``slot << 20 | row``); the row is also the
connection's row in the QP's counter table. A request naming a connection this QP
does not own is refused (the IOMMU rule for connections).
"""
from __future__ import annotations

import errno
from collections import deque
from typing import Any, Callable, Optional

import numpy as np

from engine import ring_calls as calls
from toad import layout

CONN_SHIFT = layout.CONN_ROW_BITS
ROW_MASK = (1 << CONN_SHIFT) - 1
_H = layout.QP_HEADER_FIELDS
# int64 word of each ENGINE_QP field (Python reads them through ``words``)
FIELD = {name: i for i, name in enumerate(calls.ENGINE_QP.names)}
_REQUESTS, _EVENTS, _CONSUMER = FIELD["requests"], FIELD["events"], FIELD["request_consumer"]
_BACKLOG = FIELD["backlog"]


class QueuePair:
    """One attached QP as the engine sees it."""

    def __init__(self, slot: int, host_pid: int, segment, dma, lay: layout.QpLayout,
                 doorbells, words: dict, interrupt, pidfd: int, moderation=(1, 0),
                 state: Optional[np.ndarray] = None):
        self.slot = slot
        self.host_pid = host_pid
        self.segment = segment
        self.dma = dma
        self.seg = dma.seg                    # the mapping as bytes (compiled calls)
        self.regs = doorbells                 # the QP's doorbell page as uint32 (words)
        self.layout = lay
        self.words = words
        self.interrupt = interrupt
        self.pidfd = pidfd
        self.request_producer_word = words["request_producer"]
        self.rxbuf_producer_word = words["rxbuf_producer"]
        # the engine's ring state of this QP: its slot's row of the engine's QP table
        # (scanned by the loop), or a record of its own
        self.state = calls.new_state(lay, dma.size, words, moderation, state)
        self.state["segment_address"] = self.seg.ctypes.data   # (cleared at detach)
        self.state["doorbell_address"] = doorbells.ctypes.data
        self.state["doorbell_words"] = len(doorbells)
        if dma.bus is not None:       # the ring calls wait on the same bus as the payload
            self.state["bus_address"] = dma.bus.ctypes.data
        self.fields = self.state.view(np.int64)   # the same record, one word per field
        self.connections: dict[int, Any] = {}
        self._free_rows = list(range(lay.counter_rows - 1, 0, -1))  # row 0 is never used
        self.backlog: deque = deque()   # event bodies waiting for room in the event ring
        # past this many unread events the engine takes no receive buffers and sends
        # no error reports for this QP (see report): the backlog stays bounded
        self.backlog_max = lay.event_entries
        self.reports_dropped = 0
        self.reclaim_hooks: list[Callable[["QueuePair"], None]] = []
        self.bad_records = 0
        self.bad_doorbell_seen: Optional[int] = None
        self.bad_rxbuf_doorbell_seen: Optional[int] = None
        # which receive buffers the engine holds (1 per id of the pool): from
        # taking one from the ring until a RECV_DATA names it. A second copy of a held
        # id (a host returning it twice) would get a second payload over the first.
        self.held = np.zeros(lay.total_buffers, np.uint8)
        # the request records served_requests copies out for the dispatcher
        self.request_out = np.zeros(lay.request_entries, layout.REQUEST)
        self.request_raw = self.request_out.view(np.uint8)
        for field in ("request_consumer", "rxbuf_consumer", "engine_flags"):
            dma.write_u32(_H[field], 0)

    # ---- counters published with the QP's stats row (engine/slots.py) ----------------
    @property
    def requests(self) -> int:
        return int(self.fields[_REQUESTS])

    @property
    def events(self) -> int:
        return int(self.fields[_EVENTS])

    @property
    def request_consumer(self) -> int:
        return int(self.fields[_CONSUMER])

    @property
    def event_producer(self) -> int:
        return int(self.fields[FIELD["event_producer"]])

    @property
    def rxbuf_consumer(self) -> int:
        return int(self.fields[FIELD["rxbuf_consumer"]])

    @property
    def bad_doorbell(self) -> int:
        """The last doorbell value a compiled call refused."""
        return int(self.fields[FIELD["bad_doorbell"]])

    def take_counts(self) -> dict:
        """Requests, events, DMA moved and bus cycles waited by the compiled calls
        since the last take (the engine's stats flush adds them to the QP's row)."""
        f = self.fields
        names = ("requests", "events", "dma_bytes", "dma_transactions", "bulk_nops",
                 "irq_raised", "bus_cycles")
        out = {name: int(f[FIELD[name]]) for name in names}
        for name in names:
            f[FIELD[name]] = 0
        return out

    @property
    def rx_held(self) -> set:
        """Ids of the receive buffers the engine holds (for checks and tools)."""
        return set(np.flatnonzero(self.held).tolist())

    # ---- connections -------------------------------------------------------------------
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
            self._free_rows.append(conn & ROW_MASK)

    def set_bytes_acked(self, conn: int, total: int) -> None:
        """Mirror the cumulative bytes sent-and-acked (no event, no interrupt)."""
        calls.store_acked(self.seg, self.state, conn, total)

    def bytes_consumed(self, conn: int) -> int:
        """Cumulative bytes the application has read (written by the host)."""
        return calls.load_consumed(self.seg, self.state, conn)

    def clear_consumed(self, conn: int) -> None:
        """A reused counter row still holds its last connection's consumed count: zero
        it before the host learns the id (after that only the host writes it)."""
        calls.store_consumed(self.seg, self.state, conn, 0)

    def check_send_range(self, offset: int, length: int) -> bool:
        lay = self.layout
        return lay.send_offset <= offset and 0 <= length \
            and offset + length <= lay.send_offset + lay.send_bytes

    # ---- request ring --------------------------------------------------------------------
    def pending_requests(self) -> int:
        """Records the host has published and the engine not yet read (-1: bad doorbell)."""
        return calls.requests_pending(self.regs, self.state)

    def serve_requests(self) -> int:
        """Take published requests (ECHO and NOP answered in the call); the others
        are copied to ``request_out``: returns how many, -1 for a bad doorbell."""
        return calls.serve_requests(self.seg, self.regs, self.state, self.request_raw)

    # ---- event ring ----------------------------------------------------------------------
    def event_space(self) -> int:
        """Free event slots, from the host's consumer register."""
        return calls.event_space(self.regs, self.state)

    def post_event(self, kind: int, flags: int = 0, conn: int = 0, cookie: int = 0,
                   status: int = 0, reason: int = 0, port: int = 0, buffer: int = 0,
                   addr: int = 0, offset: int = 0, length: int = 0, value: int = 0) -> None:
        """Post one event, or queue it when the ring has no room (never overwrite).
        64-bit fields are given as signed values (a host's u64 cookie as the request
        dispatcher reads it) or small non-negative ones."""
        if self.backlog or not calls.post_event(self.seg, self.regs, self.state, kind, flags,
                                                conn, cookie, status, reason, port, buffer,
                                                addr, offset, length, value):
            self.backlog.append((kind, flags, conn, cookie, status, reason, port, buffer,
                                 addr, offset, length, value))
            self.fields[_BACKLOG] = len(self.backlog)     # (the loop's scan sees it)

    def post_many(self, bodies: list) -> None:
        """Post event bodies (post_event's field order), in order."""
        post = self.post_event
        for body in bodies:
            post(*body)

    def flush_backlog(self) -> int:
        """Move queued events into the ring as room appears; returns events posted."""
        posted, backlog = 0, self.backlog
        post = calls.post_event
        while backlog and post(self.seg, self.regs, self.state, *backlog[0]):
            backlog.popleft()
            posted += 1
        self.fields[_BACKLOG] = len(backlog)
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

    def report_doorbell(self, producer: int, last_seen: Optional[int]) -> int:
        """A doorbell that claims more records than its ring holds: reported once per
        value (the value judged bad, not a second read: the host may have restored a
        good one since, and a good value is no error). Returns the value."""
        if last_seen != producer:
            self.report(errno.EINVAL, layout.ERR_BAD_DOORBELL, value=producer)
        return producer

    # ---- receive-buffer ring ---------------------------------------------------------------
    def take_rx_buffers(self, taken: np.ndarray, refused: np.ndarray) -> int:
        """Take checked free buffers into ``taken`` (RXBUF_TAKEN records); returns how
        many. Refused entries are reported (ERR_BAD_RXBUF, the errno saying why: EFAULT
        outside the receive area, EINVAL an id of no buffer (ids are below
        ``recv_buffers + small_buffers``), EALREADY an id the engine holds); a bad
        doorbell is reported once per value. Nothing is taken while the event backlog
        is full (see report)."""
        if self.backlog_full():
            return 0
        result = calls.take_rxbufs(self.seg, self.regs, self.state, self.held, taken, refused)
        if result < 0:
            self.bad_rxbuf_doorbell_seen = self.report_doorbell(
                int(self.fields[FIELD["bad_doorbell"]]), self.bad_rxbuf_doorbell_seen)
            return 0
        bad = result >> calls.REFUSED_SHIFT
        if bad:
            for offset, length, buf_id, status in refused[:bad].tolist():
                self.report(status, layout.ERR_BAD_RXBUF, buffer=buf_id, offset=offset,
                            length=length)
        return result & ((1 << calls.REFUSED_SHIFT) - 1)

    def take_rx_buffer(self) -> Optional[tuple[int, int, int]]:
        """The next valid free anonymous buffer (offset, length, id), or None."""
        taken = np.zeros(1, calls.RXBUF_TAKEN)
        refused = np.zeros(self.layout.rxbuf_entries, calls.RXBUF_REFUSED)
        while self.take_rx_buffers(taken, refused) == 0:
            if self.rx_buffers_pending() <= 0 or self.backlog_full():
                return None
        return tuple(taken[0].tolist())

    def rx_buffers_pending(self) -> int:
        """Entries in the receive-buffer ring not taken yet (-1: a bad doorbell)."""
        return calls.rxbufs_pending(self.regs, self.state)

    def release_rx_buffer(self, buf_id: int) -> None:
        """A RECV_DATA names ``buf_id``: the buffer is the host's again."""
        self.held[buf_id] = 0

    # ---- lifetime ---------------------------------------------------------------------------
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
        self.state["active"] = self.state["backlog"] = 0   # the scans skip the slot
        self.state["segment_address"] = self.state["bus_address"] = 0
        self.state["doorbell_address"] = self.state["doorbell_words"] = 0
        self.regs = None
        self.seg = None                # views of the mapping go before it is unmapped
        self.interrupt.close()
        self.dma.close()
        self.segment.close()
