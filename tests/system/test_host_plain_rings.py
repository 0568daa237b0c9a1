"""The driver's rings over plain memory (no engine): the event poll (what each event
kind becomes, the phase bit across the ring's wrap, the limit, the consumer index it
publishes) and the receive-buffer returns (entries written in order across the wrap).

Events are written as the engine writes them (body, then the phase word last); the
driver is built without an engine (Driver.__new__ plus the fields poll uses, and its
own _map_event_ring)."""
from __future__ import annotations

import threading
from collections import deque
from types import SimpleNamespace

import pytest

from host.driver import Driver
from toad import layout

ENTRIES = 8
BODY = layout.EVENT_BODY_STRUCT
FIELDS = len(BODY.unpack_from(bytes(64)))


class Ring:
    """An event ring of ENTRIES slots at offset 0 and the engine's writing index."""

    def __init__(self) -> None:
        self.mv = memoryview(bytearray(ENTRIES * 64))
        self.index = 0

    def publish(self, kind: int, conn: int = 0, cookie: int = 0, buffer: int = 0,
                length: int = 0, value: int = 0) -> None:
        values = [0] * FIELDS
        values[0], values[2], values[3], values[7], values[10], values[11] = \
            kind, conn, cookie, buffer, length, value
        slot = self.index % ENTRIES
        BODY.pack_into(self.mv, slot * 64, *values)
        phase = ((self.index // ENTRIES) & 1) ^ 1   # 1 on the 1st pass, 0 on the 2nd...
        self.mv[slot * 64 + 60:slot * 64 + 64] = phase.to_bytes(4, "little")
        self.index += 1


def plain_driver(ring: Ring):
    """A Driver whose poll reads ``ring`` (doorbell: word 3 of a separate register file)."""
    drv = Driver.__new__(Driver)
    drv.mv, drv.u32 = ring.mv, ring.mv.cast("I")
    drv._map_event_ring(SimpleNamespace(event_entries=ENTRIES, event_offset=0))
    drv.oe = SimpleNamespace(u32=memoryview(bytearray(64)).cast("I"))
    drv.event_doorbell, drv.event_consumer, drv.recv_attached = 3, 0, 0
    drv._waiters, drv._cond = 0, threading.Condition()
    drv._awaited, drv._done, drv.events = set(), {}, deque()
    drv.rx_queues, drv.on_recv_data, drv.on_event = {}, None, None
    return drv


def test_each_kind_of_event_goes_where_the_driver_rules_say():
    ring = Ring()
    drv = plain_driver(ring)
    queue, raw, others = deque(), [], []
    drv.rx_queues[7] = queue
    drv.on_recv_data, drv.on_event = raw.append, others.append
    drv._awaited.add(42)
    ring.publish(layout.EV_RECV_DATA, conn=7, buffer=3, length=100)   # attached
    ring.publish(layout.EV_RECV_DATA, conn=7, buffer=4, length=0)     # empty: raw path
    ring.publish(layout.EV_RECV_DATA, conn=9, buffer=5, length=10)    # no queue: raw
    ring.publish(layout.EV_COMPLETION, cookie=42, value=11)           # awaited
    ring.publish(layout.EV_PEER_CLOSED, conn=7)                       # on_event
    assert drv.poll() == 5
    assert list(queue) == [[3, 0, 100]] and drv.recv_attached == 1
    assert [(v[0], v[2], v[7], v[10]) for v in raw] == \
        [(layout.EV_RECV_DATA, 7, 4, 0), (layout.EV_RECV_DATA, 9, 5, 10)]
    assert drv._done[42].value == 11 and drv._done[42].type == layout.EV_COMPLETION
    assert [(e.type, e.conn) for e in others] == [(layout.EV_PEER_CLOSED, 7)]
    assert drv.event_consumer == 5 and drv.oe.u32[3] == 5


def test_poll_follows_the_phase_across_wraps_and_stops_at_an_unpublished_slot():
    ring = Ring()
    drv = plain_driver(ring)
    queue = deque()
    drv.rx_queues[1] = queue
    seen = 0
    for burst in (5, 6, 8, 3, 7, 1):       # crosses the ring's end several times
        assert drv.poll() == 0              # nothing new: the slot holds an old phase
        for i in range(burst):
            ring.publish(layout.EV_RECV_DATA, conn=1, buffer=seen + i, length=1)
        assert drv.poll() == burst
        seen += burst
        assert drv.event_consumer == seen and drv.oe.u32[3] == seen
    assert [entry[0] for entry in queue] == list(range(seen))


def test_poll_takes_at_most_limit_and_the_rest_on_the_next_call():
    ring = Ring()
    drv = plain_driver(ring)
    queue = deque()
    drv.rx_queues[1] = queue
    for i in range(6):
        ring.publish(layout.EV_RECV_DATA, conn=1, buffer=i, length=1)
    assert drv.poll(limit=4) == 4 and drv.event_consumer == 4
    assert drv.poll() == 2 and [entry[0] for entry in queue] == list(range(6))


def test_events_taken_before_a_handler_raises_are_consumed():
    ring = Ring()
    drv = plain_driver(ring)

    def boom(event):
        raise RuntimeError("handler failed")

    drv.on_event = boom
    ring.publish(layout.EV_RECV_DATA, conn=0, buffer=1, length=5)
    ring.publish(layout.EV_PEER_CLOSED, conn=2)
    ring.publish(layout.EV_PEER_CLOSED, conn=3)
    with pytest.raises(RuntimeError):
        drv.poll()
    # the RECV_DATA (no queue, no on_recv_data: on_event raised on it) is consumed
    assert drv.event_consumer == 1 and drv.oe.u32[3] == 1
    drv.on_event = lambda event: None
    assert drv.poll() == 2 and drv.event_consumer == 3


def test_returned_buffers_are_written_in_order_across_the_ring_end():
    ring = Ring()
    drv = plain_driver(ring)
    size, entries = 4096, 8
    drv.layout = SimpleNamespace(rxbuf_entries=entries, rxbuf_offset=64, recv_offset=1 << 20,
                                 recv_buffer_bytes=size, recv_buffers=32)
    drv.mv = memoryview(bytearray(64 + entries * 16))
    drv.u32 = drv.mv.cast("I")
    drv.rxbuf_consumer_word, drv.rxbuf_doorbell, drv.rxbuf_producer = 0, 5, 0
    drv._post_lock, drv._rx_entries, drv.engine_may_sleep = threading.RLock(), None, False
    expected = {}
    for ids in ([3, 1, 4, 1, 5], [9, 2, 6, 5, 3, 5], [31, 0, 7]):   # 2nd and 3rd wrap
        for i, buf_id in enumerate(ids):
            expected[(drv.rxbuf_producer + i) % entries] = buf_id
        drv.return_buffers(ids)
        drv.u32[0] = drv.rxbuf_producer          # the engine took them all
        assert drv.oe.u32[5] == drv.rxbuf_producer
        for slot, buf_id in expected.items():
            assert layout.RXBUF_STRUCT.unpack_from(drv.mv, 64 + slot * 16) == \
                (drv.layout.recv_offset + buf_id * size, size, buf_id)
    assert drv.rxbuf_producer == 14
