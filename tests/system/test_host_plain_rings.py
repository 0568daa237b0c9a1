"""The driver's rings over plain memory (no engine): the event poll (what each event
kind becomes, the phase bit across the ring's wrap, the limit, the consumer index it
publishes) and the receive-buffer returns (entries written in order across the wrap,
the consumed counters before them).

Events are written as the engine writes them (engine/ring_calls.py: body, then the
phase word); the driver is built without an engine (Driver.__new__ plus the state
arrays its compiled calls use, host/datapath.py)."""
from __future__ import annotations

import threading
from collections import deque
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from engine import ring_calls
from host import datapath
from host.driver import Driver, POLL_OUT, Q
from toad import layout
from toad.config import load

ENTRIES = 8
WORDS = {"request_producer": 0, "event_consumer": 1, "rxbuf_producer": 2,
         "irq_event_index": 3, "irq_enabled": 4, "moderation_events": 5, "moderation_us": 6}


class Rig:
    """A QP's memory with an event ring of ENTRIES slots, the engine's compiled event
    writer on it, and a Driver polling it."""

    def __init__(self, *overrides: str) -> None:
        self.lay = layout.qp_layout(load(None, [f"qp.event_entries={ENTRIES}",
                                                "qp.recv_buffers=32", "qp.recv_small_buffers=0",
                                                "qp.recv_buffer_bytes=4096",
                                                "qp.max_connections=8", *overrides]).qp)
        self.buf = bytearray(self.lay.total_bytes)
        self.regs = np.zeros(8, np.uint32)
        self.engine = ring_calls.new_state(self.lay, len(self.buf), WORDS)
        drv = Driver.__new__(Driver)
        drv.seg, drv.regs, drv.layout = np.frombuffer(self.buf, np.uint8), self.regs, self.lay
        drv.mv = memoryview(self.buf)
        drv.u32 = drv.mv.cast("I")
        drv.rxbuf_consumer_word = layout.QP_HEADER_FIELDS["rxbuf_consumer"] // 4
        drv.request_consumer_word = layout.QP_HEADER_FIELDS["request_consumer"] // 4
        drv.qp, drv.conns, drv.bufs = datapath.new_state(self.lay, WORDS, False, 64)
        drv.q = drv.qp.view(np.int64)
        drv.out = np.zeros(POLL_OUT, layout.EVENT)
        drv.out_raw = drv.out.view(np.uint8)
        drv.out_view = memoryview(drv.out_raw)
        drv._waiters, drv._cond, drv._undelivered = 0, threading.Condition(), deque()
        drv._awaited, drv._done, drv.events = set(), {}, deque()
        drv.on_event = None
        drv.wake = SimpleNamespace(release=lambda: None)
        self.drv = drv

    def publish(self, kind: int, conn: int = 0, cookie: int = 0, buffer: int = 0,
                length: int = 0, value: int = 0) -> None:
        assert ring_calls.post_event(np.frombuffer(self.buf, np.uint8), self.regs, self.engine,
                                     kind, 0, conn, cookie, 0, 0, 0, buffer, 0, 0, length,
                                     value) == 1


def attached(drv, conn: int) -> list[int]:
    """Ids of the buffers attached to ``conn``'s row, in order."""
    row = drv.conns[conn & 0xFFFFF]
    ids, buffer_id = [], int(row["rx_head"])
    while buffer_id >= 0:
        ids.append(buffer_id)
        buffer_id = int(drv.bufs["next"][buffer_id])
    assert len(ids) == row["rx_count"]
    return ids


def test_each_kind_of_event_goes_where_the_driver_rules_say():
    rig = Rig()
    drv = rig.drv
    others = []
    drv.register(7)
    drv.on_event = others.append
    drv._awaited.add(42)
    rig.publish(layout.EV_RECV_DATA, conn=7, buffer=3, length=100)   # attached
    rig.publish(layout.EV_RECV_DATA, conn=7, buffer=4, length=0)     # empty: Python
    rig.publish(layout.EV_RECV_DATA, conn=6, buffer=5, length=10)    # not registered
    rig.publish(layout.EV_RECV_DATA, conn=7, buffer=99, length=10)   # no such buffer
    rig.publish(layout.EV_COMPLETION, cookie=42, value=11)           # awaited
    rig.publish(layout.EV_PEER_CLOSED, conn=7)                       # on_event
    assert drv.poll() == 6
    assert attached(drv, 7) == [3] and drv.recv_attached == 1
    assert int(drv.bufs["length"][3]) == 100
    assert [(e.type, e.conn, e.buffer, e.length) for e in others] == [
        (layout.EV_RECV_DATA, 7, 4, 0), (layout.EV_RECV_DATA, 6, 5, 10),
        (layout.EV_RECV_DATA, 7, 99, 10), (layout.EV_PEER_CLOSED, 7, 0, 0)]
    assert drv._done[42].value == 11 and drv._done[42].type == layout.EV_COMPLETION
    assert drv.event_consumer == 6 and rig.regs[WORDS["event_consumer"]] == 6


def test_poll_follows_the_phase_across_wraps_and_stops_at_an_unpublished_slot():
    rig = Rig()
    drv = rig.drv
    drv.register(1)
    seen = 0
    for burst in (5, 6, 8, 3, 7, 1):       # crosses the ring's end several times
        assert drv.poll() == 0              # nothing new: the slot holds an old phase
        for i in range(burst):
            rig.publish(layout.EV_RECV_DATA, conn=1, buffer=(seen + i) % 32, length=1)
        assert drv.poll() == burst
        seen += burst
        assert drv.event_consumer == seen and rig.regs[WORDS["event_consumer"]] == seen
    assert drv.recv_attached == seen


def test_poll_takes_at_most_limit_and_the_rest_on_the_next_call():
    rig = Rig()
    drv = rig.drv
    drv.register(1)
    for i in range(6):
        rig.publish(layout.EV_RECV_DATA, conn=1, buffer=i, length=1)
    assert drv.poll(limit=4) == 4 and drv.event_consumer == 4
    assert drv.poll() == 2 and attached(drv, 1) == list(range(6))


def test_events_taken_before_a_handler_raises_are_delivered_at_the_next_poll():
    rig = Rig()
    drv = rig.drv
    seen = []

    def boom(event):
        seen.append(event.conn)
        if len(seen) == 1:
            raise RuntimeError("handler failed")

    drv.on_event = boom
    for conn in (1, 2, 3):
        rig.publish(layout.EV_PEER_CLOSED, conn=conn)
    with pytest.raises(RuntimeError):
        drv.poll()
    assert drv.event_consumer == 3 and rig.regs[WORDS["event_consumer"]] == 3
    assert drv.poll() == 0 and seen == [1, 2, 3]      # none lost, none twice


def test_returned_buffers_are_written_in_order_across_the_ring_end_after_the_counters():
    rig = Rig("qp.recv_buffers=8")
    drv, lay = rig.drv, rig.lay
    consumed = np.frombuffer(rig.buf, layout.COUNTER_ROW, lay.counter_rows,
                             lay.counters_offset)["bytes_consumed"]
    ring = np.frombuffer(rig.buf, layout.RXBUF, lay.rxbuf_entries, lay.rxbuf_offset)
    consumer = layout.QP_HEADER_FIELDS["rxbuf_consumer"] // 4
    drv.register(5)
    expected, total = {}, 0
    for ids in ([3, 1, 4, 0, 5], [7, 2, 6, 3, 1], [0, 4, 5, 2, 7, 6]):   # 8 entries
        for i, buf_id in enumerate(ids):
            expected[(drv.rxbuf_producer + i) % lay.rxbuf_entries] = buf_id
            datapath.release(drv.qp, drv.conns, drv.bufs, 5, buf_id, 4096)
        total += 4096 * len(ids)
        drv.flush_returns()
        assert rig.regs[WORDS["rxbuf_producer"]] == drv.rxbuf_producer
        assert int(consumed[5]) == total
        drv.u32[consumer] = drv.rxbuf_producer          # the engine took them all
        for slot, buf_id in expected.items():
            assert tuple(ring[slot]) == (lay.recv_offset + buf_id * 4096, 4096, buf_id)
    assert drv.rxbuf_producer == 16 and int(drv.q[Q["returns"]]) == 0


OPS = st.lists(st.tuples(st.sampled_from(["post", "batch", "serve", "poll"]),
                         st.integers(1, 12)), min_size=1, max_size=40)


@settings(max_examples=150, deadline=None)
@given(st.integers(-20, 20), OPS)
def test_requests_and_their_answers_keep_order_around_the_ring_and_index_wraps(start, ops):
    """The host's compiled posts (one, or a batch), the engine's compiled request pass
    (answering ECHO) and the host's compiled poll, in any interleaving, over an 8-slot
    request ring and an 8-slot event ring whose indices start near 2**32: every echo
    is answered once, in order; a full ring refuses a post, whole, and says so."""
    rig = Rig("qp.request_entries=8")
    drv, lay = rig.drv, rig.lay
    seg = np.frombuffer(rig.buf, np.uint8)
    begin = start & 0xFFFFFFFF
    drv.q[Q["request_producer"]] = begin
    rig.regs[WORDS["request_producer"]] = begin          # the doorbell says so too
    rig.engine["request_consumer"] = begin
    drv.u32[drv.request_consumer_word] = begin
    answers, posted = [], []
    drv.on_event = lambda event: answers.append(event.value)
    out = np.zeros(lay.request_entries * 64, np.uint8)

    def serve() -> None:
        assert ring_calls.serve_requests(seg, rig.regs, rig.engine, out) == 0   # all ECHO

    for op, n in ops:
        if op in ("post", "batch"):
            values = list(range(len(posted), len(posted) + n))
            room = drv.request_space()
            if op == "post":
                for value in values:
                    result = datapath.post(drv.seg, drv.regs, drv.qp, layout.OP_ECHO, 0, 0,
                                           0, 0, 0, 0, 0, 0, value)
                    assert result == (0 if room > 0 else datapath.NO_SLOT)
                    if result == 0:
                        posted.append(value)
                        room -= 1
            else:
                batch = np.zeros(n, layout.REQUEST)
                batch["opcode"], batch["value"] = layout.OP_ECHO, values
                result = datapath.post_records(drv.seg, drv.regs, drv.qp,
                                               batch.view(np.uint8), n)
                assert result == (0 if n <= room else datapath.NO_SLOT)
                if result == 0:
                    posted.extend(values)
        elif op == "serve":
            serve()
        else:
            drv.poll(n)
        assert answers == posted[:len(answers)]
    for _ in range(2 * len(posted) + 2):       # drain
        serve()
        drv.poll()
    assert answers == posted
