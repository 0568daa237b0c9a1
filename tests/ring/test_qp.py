"""Engine-side QP state (engine/qp.py) over a plain buffer: rings and resources."""
from __future__ import annotations

import errno

import numpy as np

from engine.handlers import Dispatcher, Request
from toad import layout

from plain_qp import events_of, make_qp   # tests/ring/plain_qp.py


def test_event_ring_never_overwrites_unconsumed_events():
    qp, buf, regs, lay = make_qp()
    for i in range(20):
        qp.post_event(layout.EV_COMPLETION, cookie=i)
    assert len(qp.backlog) == 12                     # 8 in the ring, 12 waiting
    reader = events_of(buf, lay)
    got = list(reader.poll()["cookie"])
    assert got == list(range(8))
    regs[1] = reader.consumer                        # host: consumer index register
    assert qp.flush_backlog() == 8
    got += list(reader.poll()["cookie"])
    regs[1] = reader.consumer
    qp.flush_backlog()
    got += list(reader.poll()["cookie"])
    assert got == list(range(20))


def test_receive_buffers_outside_the_receive_area_or_the_pool_are_refused():
    qp, buf, regs, lay = make_qp()                   # 4 buffers: ids 0..3
    entries = [(lay.recv_offset, 4096, 1), (lay.total_bytes - 100, 4096, 2),
               (lay.send_offset, 100, 3), (lay.recv_offset + 4096, 8192, 0),
               (lay.recv_offset + 4096, 4096, 4), (lay.recv_offset + 4096, 4096, 0)]
    ring = np.frombuffer(buf, layout.RXBUF, lay.rxbuf_entries, lay.rxbuf_offset)
    for i, (off, length, buf_id) in enumerate(entries):
        ring[i] = (off, length, buf_id)
    regs[2] = len(entries)                           # rxbuf doorbell
    assert qp.take_rx_buffer() == (lay.recv_offset, 4096, 1)
    assert qp.take_rx_buffer() == (lay.recv_offset + 4096, 4096, 0)
    assert qp.take_rx_buffer() is None
    assert qp.bad_records == 4
    errors = events_of(buf, lay).poll()
    assert list(errors["reason"]) == [layout.ERR_BAD_RXBUF] * 4
    assert list(errors["buffer"]) == [2, 3, 0, 4]
    assert list(errors["status"]) == [errno.EFAULT] * 3 + [errno.EINVAL]
    assert int.from_bytes(buf[layout.QP_HEADER_FIELDS["rxbuf_consumer"]:][:4], "little") == 6


def test_connection_table_and_counters():
    qp, buf, regs, lay = make_qp()
    conns = [qp.allocate_connection(object()) for _ in range(3)]
    assert None not in conns and len(set(conns)) == 3
    assert all(c >> layout.CONN_ROW_BITS == 3 for c in conns)   # slot in the id
    assert qp.allocate_connection(None) is None                 # 4 rows, row 0 unused
    qp.set_bytes_acked(conns[0], 12345)
    row = np.frombuffer(buf, layout.COUNTER_ROW, lay.counter_rows, lay.counters_offset)
    assert int(row[conns[0] & 0xFFFFF]["bytes_acked"]) == 12345
    row[conns[1] & 0xFFFFF]["bytes_consumed"] = 777
    assert qp.bytes_consumed(conns[1]) == 777
    qp.release_connection(conns[2])
    qp.release_connection(conns[2])                             # twice: harmless
    assert qp.allocate_connection(None) == conns[2]


def test_dispatcher_table_is_extensible():
    qp, buf, regs, lay = make_qp()
    seen = []
    dispatcher = Dispatcher()
    dispatcher.register(layout.OP_LISTEN, lambda q, r: seen.append(r.value))
    conn = qp.allocate_connection(None)
    dispatcher.handle(qp, Request(layout.OP_LISTEN, 0, conn, 9, 0, 0, 0, 0, 0, 5))
    dispatcher.handle(qp, Request(layout.OP_LISTEN, 0, conn + 1, 10, 0, 0, 0, 0, 0, 6))
    assert seen == [5]
    errors = events_of(buf, lay).poll()
    assert list(errors["cookie"]) == [10]
    assert list(errors["reason"]) == [layout.ERR_WRONG_CONNECTION]


def test_detach_runs_reclaim_hooks_then_drops_state():
    qp, buf, regs, lay = make_qp()
    conn = qp.allocate_connection("socket state")
    seen = []
    qp.reclaim_hooks.append(lambda q: seen.append(dict(q.connections)))
    qp.post_event(layout.EV_COMPLETION)
    qp.detach()
    assert seen == [{conn: "socket state"}]
    assert qp.connections == {} and not qp.backlog


def test_a_host_that_reads_no_events_cannot_grow_the_backlog_without_end():
    """Bad receive-buffer entries posted over and over, no event read: the engine
    reports them until backlog_max events wait, then takes no more entries (good or
    bad) and drops further reports (still counted); once the host reads, it takes
    buffers again."""
    qp, buf, regs, lay = make_qp()
    ring = np.frombuffer(buf, layout.RXBUF, lay.rxbuf_entries, lay.rxbuf_offset)
    producer = 0
    for _ in range(20):
        if qp.rxbuf_consumer != producer:
            break                                        # the engine stopped taking
        for _ in range(lay.rxbuf_entries):
            ring[producer % lay.rxbuf_entries] = (lay.send_offset, 100, producer)
            producer += 1
        regs[2] = producer
        assert qp.take_rx_buffer() is None
    assert len(qp.backlog) == qp.backlog_max == lay.event_entries   # bounded
    assert qp.bad_records == qp.rxbuf_consumer == lay.event_entries + qp.backlog_max
    assert qp.rxbuf_consumer < producer
    qp.report(22, layout.ERR_BAD_DOORBELL, value=1)          # e.g. a bad doorbell now
    assert (qp.reports_dropped, qp.bad_records) == (1, qp.rxbuf_consumer + 1)
    assert len(qp.backlog) == qp.backlog_max
    reader = events_of(buf, lay)
    assert list(reader.poll()["reason"]) == [layout.ERR_BAD_RXBUF] * lay.event_entries
    regs[1] = reader.consumer                                 # the host reads its events
    qp.flush_backlog()
    assert not qp.backlog_full()
    start = qp.rxbuf_consumer
    ring[start % lay.rxbuf_entries] = (lay.recv_offset, 4096, 3)   # a good buffer next
    assert qp.take_rx_buffer() == (lay.recv_offset, 4096, 3)


def test_the_ring_calls_wait_on_the_engines_bus():
    """A counter read waits for the bus's read latency; a posted event write does not;
    both count as DMA, and the wait is taken with the QP's counts."""
    from toad.rings.bus import WAITED, new_bus
    bus = new_bus(2.0, 0.0, 0.0, ns_per_cycle=1.0)     # reads: 2000 cycles, no cap
    qp, _buf, _regs, _lay = make_qp(bus=bus)
    conn = qp.allocate_connection(object())
    qp.take_counts()
    qp.bytes_consumed(conn)                             # a DMA read of host memory
    qp.post_event(layout.EV_PEER_CLOSED, conn=conn)     # a DMA write
    counts = qp.take_counts()
    assert counts["dma_transactions"] == 2
    assert counts["bus_cycles"] >= 2000 and counts["bus_cycles"] == bus[WAITED]
    qp.detach()
    assert int(qp.state["bus_address"][0]) == 0         # detached: no bus to reach
