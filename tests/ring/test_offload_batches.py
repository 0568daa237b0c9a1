"""The engine's batched paths over a plain buffer: several events posted in order
(QueuePair.post_many), buffer placement posting several RECV_DATA at once, the few-entry
receive-buffer take, and a span of SENDs handled with one call."""
from __future__ import annotations

import errno
from collections import Counter

import numpy as np
import pytest

from engine.handlers import REQUEST_SIGNED, Dispatcher
from engine.offload.host_buffers import HostRecvBuffer, RxPool
from engine.offload.sockets import RecvPolicy
from toad import layout

from plain_qp import events_of, make_qp   # tests/ring/plain_qp.py


def body(cookie):
    # post_event's positional order: kind, flags, conn, cookie, status, reason, port,
    # buffer, addr, offset, length, value
    return (layout.EV_COMPLETION, 0, 7, cookie, 0, 0, 0, cookie + 100, 0, 0, cookie * 3, 0)


def test_post_many_wraps_the_ring_with_the_right_phases():
    qp, buf, regs, lay = make_qp()                  # 8 event slots
    reader = events_of(buf, lay)
    for i in range(5):
        qp.post_event(layout.EV_COMPLETION, cookie=i)
    assert list(reader.poll()["cookie"]) == list(range(5))
    regs[1] = reader.consumer
    qp.post_many([body(c) for c in range(5, 12)])   # slots 5..7, then 0..3 (phase flips)
    got = reader.poll()
    assert list(got["cookie"]) == list(range(5, 12))
    assert list(got["buffer"]) == [c + 100 for c in range(5, 12)]
    assert list(got["length"]) == [c * 3 for c in range(5, 12)]
    assert qp.event_producer == 12 and qp.events == 12


def test_post_many_never_overwrites_unconsumed_events():
    qp, buf, regs, lay = make_qp()
    qp.post_many([body(c) for c in range(6)])
    qp.post_many([body(c) for c in range(6, 10)])   # room for 2: the rest waits
    assert len(qp.backlog) == 2
    reader = events_of(buf, lay)
    got = list(reader.poll()["cookie"])
    regs[1] = reader.consumer
    qp.flush_backlog()
    got += list(reader.poll()["cookie"])
    assert got == list(range(10))


def give_buffers(buf, regs, lay, entries, start=0):
    ring = np.frombuffer(buf, layout.RXBUF, lay.rxbuf_entries, lay.rxbuf_offset)
    for i, entry in enumerate(entries):
        ring[(start + i) % lay.rxbuf_entries] = entry
    regs[2] = start + len(entries)                  # the rxbuf doorbell


def test_a_few_returned_buffers_are_checked_one_by_one():
    qp, buf, regs, lay = make_qp()
    pool = RxPool(qp, 1 << 20)
    give_buffers(buf, regs, lay, [(lay.recv_offset, 4096, 1), (lay.send_offset, 100, 2),
                                  (lay.recv_offset + 4096, 4096, 3)])
    assert pool.take() == (lay.recv_offset, 4096, 1)
    assert pool.take() == (lay.recv_offset + 4096, 4096, 3)
    assert pool.take() is None
    assert qp.bad_records == 1 and qp.rxbuf_consumer == 3
    errors = events_of(buf, lay).poll()
    assert list(errors["reason"]) == [layout.ERR_BAD_RXBUF]
    assert list(errors["buffer"]) == [2]


def test_a_large_batch_of_returned_buffers_is_checked_entry_by_entry():
    qp, buf, regs, lay = make_qp("qp.recv_buffers=16")
    pool = RxPool(qp, 1 << 20)
    entries = [(lay.recv_offset + i * 4096, 4096, i) for i in range(12)]
    entries[3] = (lay.recv_offset + 3 * 4096, 0, 3)              # empty
    entries[7] = (lay.recv_offset + lay.recv_bytes - 100, 4096, 7)  # past the area
    give_buffers(buf, regs, lay, entries)
    taken = []
    while (entry := pool.take()) is not None:
        taken.append(entry[2])
    assert taken == [0, 1, 2, 4, 5, 6, 8, 9, 10, 11]
    assert qp.bad_records == 2 and qp.rxbuf_consumer == 12
    assert list(events_of(buf, lay).poll()["buffer"]) == [3, 7]


def test_an_id_the_engine_holds_is_refused_until_a_recv_data_names_it():
    """Both take paths (the batch, and QueuePair.take_rx_buffer behind it) refuse a
    copy of an id the engine holds; once a RECV_DATA gave the buffer back, the id
    is good again."""
    qp, buf, regs, lay = make_qp("qp.event_entries=16")
    recv = HostRecvBuffer(RxPool(qp, 1 << 20), RecvPolicy(True, 0.0), Counter(),
                          lambda: 0.0)
    recv.attach(qp.allocate_connection(object()))
    first, second = (lay.recv_offset, 4096, 1), (lay.recv_offset + 4096, 4096, 2)
    give_buffers(buf, regs, lay, [first, second, first])      # 5 twice in one batch
    recv.write(memoryview(bytes(4096)), False)     # takes the batch, fills and posts 1
    assert qp.rx_held == {2}                       # 2: cached, not filled yet
    give_buffers(buf, regs, lay, [second, first], start=3)
    assert qp.take_rx_buffer() == first            # 1 is the host's again: good
    events = events_of(buf, lay).poll()
    assert [(e["type"], e["status"], e["buffer"]) for e in events] == [
        (layout.EV_ERROR, errno.EALREADY, 1), (layout.EV_RECV_DATA, 0, 1),
        (layout.EV_ERROR, errno.EALREADY, 2)]
    assert set(events[events["type"] == layout.EV_ERROR]["reason"]) == {layout.ERR_BAD_RXBUF}
    assert qp.bad_records == 2 and qp.rx_held == {1, 2}

def placement(policy=True):
    qp, buf, regs, lay = make_qp("qp.recv_buffers=8", "qp.event_entries=16")
    give_buffers(buf, regs, lay, [(lay.recv_offset + i * 4096, 4096, i)
                                  for i in range(8)])
    counters = Counter()
    recv = HostRecvBuffer(RxPool(qp, 1 << 20), RecvPolicy(policy, 0.0), counters,
                          lambda: 0.0)
    return qp, buf, lay, recv, counters


def test_one_write_fills_several_buffers_and_posts_them_in_order():
    qp, buf, lay, recv, counters = placement()
    recv.attach(qp.allocate_connection(object()))
    data = bytes(range(256)) * 56                   # 14336 bytes: 3.5 buffers
    assert recv.write(memoryview(data), True) == len(data)
    got = events_of(buf, lay).poll()
    assert list(got["type"]) == [layout.EV_RECV_DATA] * 4
    assert list(got["buffer"]) == [0, 1, 2, 3]
    assert list(got["length"]) == [4096, 4096, 4096, 2048]
    assert list(got["flags"]) == [0, 0, 0, layout.EVF_PUSH]
    placed = bytes(buf[lay.recv_offset:lay.recv_offset + len(data)])
    assert placed == data
    assert counters["rx_buffers_posted"] == 4
    assert recv.delivered == 4 * 4096               # the unused tail counts as spent


def test_a_write_ending_on_a_buffer_boundary_pushes_that_buffer():
    qp, buf, lay, recv, _ = placement(policy=False)
    recv.attach(qp.allocate_connection(object()))
    reader = events_of(buf, lay)
    recv.write(memoryview(bytes(8192)), True)
    assert list(reader.poll()["flags"]) == [0, layout.EVF_PUSH]
    recv.write(memoryview(bytes(100)), True)        # push ignored by the policy: held
    assert len(reader.poll()) == 0 and recv.filled == 100


def test_buffers_filled_before_the_host_knows_the_connection_are_held():
    qp, buf, lay, recv, counters = placement()
    recv.write(memoryview(bytes(9000)), True)
    assert len(events_of(buf, lay).poll()) == 0
    assert [entry[0] for entry in recv.held] == [0, 1, 2]
    conn = qp.allocate_connection(object())
    recv.attach(conn)
    got = events_of(buf, lay).poll()
    assert list(got["buffer"]) == [0, 1, 2] and set(got["conn"]) == {conn}
    assert counters["rx_buffers_posted"] == 3


class SendRecorder:
    def __init__(self, accept=True):
        self.accept = accept
        self.calls = []
        self.singles = []

    def run(self, qp, conn, ranges):
        self.calls.append((conn, ranges))
        return self.accept

    def single(self, qp, request):
        self.singles.append((request.offset, request.length))


def sends(records):
    """SEND records (cookie i) as the dispatcher gets them from the request ring."""
    out = np.zeros(len(records), layout.REQUEST)
    for i, (conn, offset, length) in enumerate(records):
        out[i] = (layout.OP_SEND, layout.REQ_SILENT, conn, i, 0, 0, 0, offset, length, 0, b"")
    return out.view(REQUEST_SIGNED).tolist()


def dispatcher(accept=True):
    recorder = SendRecorder(accept)
    disp = Dispatcher()
    disp.register(layout.OP_SEND, recorder.single)
    disp.register_send_run(recorder.run)
    return disp, recorder


def test_a_span_of_sends_for_one_connection_is_one_call():
    qp, buf, regs, lay = make_qp()
    conn = qp.allocate_connection(object())
    disp, rec = dispatcher()
    records = [(conn, lay.send_offset + 100 * i, 100) for i in range(10)]
    disp.handle_records(qp, sends(records))
    assert rec.calls == [(conn, [(r[1], 100) for r in records])]
    assert rec.singles == [] and disp.send_runs == 1


@pytest.mark.parametrize("bad", ["range", "wrap", "owner", "mixed"])
def test_a_bad_send_takes_its_run_record_by_record(bad):
    """SENDs are grouped in runs of one connection: a run with a bad range is handled
    record by record (one ERROR, for that record); a record of another connection
    (owned or not) ends a run and starts the next."""
    qp, buf, regs, lay = make_qp()
    conn = qp.allocate_connection(object())
    other = qp.allocate_connection(object())
    records = [(conn, lay.send_offset + 100 * i, 100) for i in range(10)]
    if bad == "range":
        records[4] = (conn, lay.send_offset + lay.send_bytes - 50, 100)
    elif bad == "wrap":                              # offset + length wraps 2**64
        records[4] = (conn, (1 << 64) - 10, 100)
    elif bad == "owner":
        records[4] = (conn + 1000, lay.send_offset, 100)
    else:                                            # two connections: three runs
        records[4] = (other, lay.send_offset, 100)
    disp, rec = dispatcher()
    disp.handle_records(qp, sends(records))
    errors = events_of(buf, lay).poll()
    if bad in ("range", "wrap"):
        assert rec.calls == [] and len(rec.singles) == 9
    else:
        ranges = [(r[1], 100) for r in records]
        expect = [(conn, ranges[:4]), (conn, ranges[5:])]
        if bad == "mixed":
            expect.insert(1, (other, ranges[4:5]))
        assert rec.calls == expect and rec.singles == []
    if bad == "mixed":
        assert len(errors) == 0
    else:
        assert list(errors["type"]) == [layout.EV_ERROR] and list(errors["cookie"]) == [4]


def test_two_sends_are_a_run_too():
    qp, buf, regs, lay = make_qp()
    conn = qp.allocate_connection(object())
    disp, rec = dispatcher()
    records = [(conn, lay.send_offset, 100), (conn, lay.send_offset + 100, 50)]
    disp.handle_records(qp, sends(records))
    assert rec.calls == [(conn, [(lay.send_offset, 100), (lay.send_offset + 100, 50)])]


def test_a_refused_run_falls_back_to_one_request_at_a_time():
    qp, buf, regs, lay = make_qp()
    conn = qp.allocate_connection(object())
    disp, rec = dispatcher(accept=False)
    records = [(conn, lay.send_offset + 100 * i, 100) for i in range(8)]
    disp.handle_records(qp, sends(records))
    assert len(rec.calls) == 1 and len(rec.singles) == 8 and disp.send_runs == 0


@pytest.mark.parametrize("size", [1, 100, 4096])
def test_a_short_pushed_message_fills_one_buffer_as_the_general_path_would(size):
    """A short pushed message (an rr leg's) into a fresh buffer: one RECV_DATA with
    PUSH and the length, the bytes in the buffer, the whole buffer counted as
    delivered, as for the same message behind a held byte."""
    qp, buf, lay, recv, counters = placement()
    recv.attach(qp.allocate_connection(object()))
    data = bytes((i * 7) & 0xFF for i in range(size))
    assert recv.write(memoryview(data), True) == size
    got = events_of(buf, lay).poll()
    assert list(got["type"]) == [layout.EV_RECV_DATA]
    assert list(got["buffer"]) == [0] and list(got["length"]) == [size]
    assert list(got["flags"]) == [layout.EVF_PUSH]
    assert bytes(buf[lay.recv_offset:lay.recv_offset + size]) == data
    assert recv.delivered == 4096 and recv.current is None and recv.first_at is None
    assert counters["rx_buffers_posted"] == 1
    # the general path, for comparison: the same message after a held (unpushed) byte
    qp2, buf2, lay2, recv2, _ = placement()
    recv2.attach(qp2.allocate_connection(object()))
    recv2.write(memoryview(b"x"), False)
    recv2.write(memoryview(data[:min(size, 4095)]), True)
    got2 = events_of(buf2, lay2).poll()
    assert list(got2["flags"])[-1] == layout.EVF_PUSH and recv2.current is None


def test_a_short_message_without_push_or_buffers_takes_the_general_path():
    qp, buf, lay, recv, counters = placement(policy=False)     # push ignored
    recv.attach(qp.allocate_connection(object()))
    assert recv.write(memoryview(bytes(64)), True) == 64
    assert len(events_of(buf, lay).poll()) == 0 and recv.filled == 64
    qp, buf, lay, recv, counters = placement()
    recv.write(memoryview(bytes(64)), True)       # id not known yet: held, not posted
    assert len(events_of(buf, lay).poll()) == 0 and len(recv.held) == 1


def test_the_pool_takes_no_buffer_while_the_event_backlog_is_full():
    qp, buf, regs, lay = make_qp()
    pool = RxPool(qp, 1 << 20)
    for i in range(lay.event_entries + qp.backlog_max):       # events nobody reads
        qp.post_event(layout.EV_COMPLETION, cookie=i)
    assert qp.backlog_full()
    give_buffers(buf, regs, lay, [(lay.recv_offset, 4096, 1), (lay.send_offset, 100, 2)])
    assert pool.take() is None and qp.rxbuf_consumer == 0     # left in the ring
    reader = events_of(buf, lay)
    reader.poll()
    regs[1] = reader.consumer                                  # the host reads
    qp.flush_backlog()
    assert pool.take() == (lay.recv_offset, 4096, 1)
    assert qp.bad_records == 1                                 # the bad one: reported


def test_small_writes_fill_a_buffer_and_cross_into_the_next_in_order():
    """Writes that fit the buffer being filled (the placement shortcut) and one that
    crosses its end (the loop) lay the stream out contiguously, post the full buffer,
    then the pushed rest; a first write larger than a buffer starts with the first
    cached buffer all the same."""
    qp, buf, lay, recv, counters = placement()
    recv.attach(qp.allocate_connection(object()))
    reader = events_of(buf, lay)
    stream = bytes((i * 13) & 0xFF for i in range(5010))
    for start, end in ((0, 1000), (1000, 2000), (2000, 3000)):
        assert recv.write(memoryview(stream[start:end]), False) == 1000
    assert len(reader.poll()) == 0 and recv.filled == 3000 and recv.current[2] == 0
    assert recv.write(memoryview(stream[3000:5000]), False) == 2000    # crosses 4096
    got = reader.poll()
    assert list(got["buffer"]) == [0] and list(got["length"]) == [4096]
    assert recv.current[2] == 1 and recv.filled == 904
    assert recv.write(memoryview(stream[5000:]), True) == 10
    got = reader.poll()
    assert list(got["buffer"]) == [1] and list(got["length"]) == [914]
    assert list(got["flags"]) == [layout.EVF_PUSH]
    assert bytes(buf[lay.recv_offset:lay.recv_offset + 5010]) == stream
    assert recv.delivered == 2 * 4096 and counters["rx_buffers_posted"] == 2
    qp, buf, lay, recv, _ = placement()
    recv.attach(qp.allocate_connection(object()))
    recv.write(memoryview(stream[:100]), False)
    recv.flush()                                    # leaves cached buffers 1..
    assert recv.write(memoryview(stream), True) == 5010
    assert list(events_of(buf, lay).poll()["buffer"]) == [0, 1, 2]


@pytest.mark.parametrize("case", ["good", "owner", "range", "refused", "no_run"])
def test_a_lone_send_goes_to_the_run_handler_only_when_handle_would_accept_it(case):
    qp, buf, regs, lay = make_qp()
    conn = qp.allocate_connection(object())
    disp, rec = dispatcher(accept=case != "refused")
    if case == "no_run":
        disp.send_run = None
    offset = lay.send_offset + lay.send_bytes - 100
    values = (layout.OP_SEND, layout.REQ_SILENT, conn + (1000 if case == "owner" else 0),
              7, 0, 0, 0, offset, 101 if case == "range" else 100, 0)
    disp.handle_records(qp, [values])
    assert [(c, list(r)) for c, r in rec.calls] == (
        [] if case in ("owner", "range", "no_run") else [(conn, [(offset, 100)])])
    assert len(rec.singles) == (0 if case in ("good", "owner", "range") else 1)


def test_a_connection_counts_as_a_receiver_from_its_creation_to_its_detach():
    """A child counts from its SYN (created, not yet attached), so a window a peer
    is offered is already its share of the pool (less the one buffer held back for
    a tail spent after a window went out); its detach gives the share back."""
    qp, buf, regs, lay = make_qp("qp.recv_buffers=9")   # a pool of 8 x 4 KB usable
    pool = RxPool(qp, 1 << 20)
    assert pool.limit_bytes == 7 * 4096
    attached = HostRecvBuffer(pool, RecvPolicy(True, 0.0), Counter(), lambda: 0.0)
    attached.attach(qp.allocate_connection(object()))
    assert pool.receivers == 1 and pool.limit_bytes == 7 * 4096
    child = HostRecvBuffer(pool, RecvPolicy(True, 0.0), Counter(), lambda: 0.0)
    assert pool.receivers == 2 and pool.limit_bytes == 3 * 4096   # before any ACCEPT
    child.attach(qp.allocate_connection(object()))
    assert pool.receivers == 2                                     # not counted twice
    child.detach()
    child.detach()
    assert pool.receivers == 1 and pool.limit_bytes == 7 * 4096
    lost = HostRecvBuffer(pool, RecvPolicy(True, 0.0), Counter(), lambda: 0.0)
    lost.detach()                                # a child lost before it was accepted
    assert pool.receivers == 1
