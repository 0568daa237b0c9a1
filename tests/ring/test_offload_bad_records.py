"""Record sequences the offload fuzzer (tests/ring/test_offload_fuzz.py) found, kept as
plain tests: each bad record is answered with an ERROR event, counted in
``bad_records`` and dropped, and what was right before it still completes. Also what
it saw around them: REQ_SILENT on ECHO, and the dropped reports' count in the stats."""
from __future__ import annotations

import errno

from toad import layout
from toad.engine_stats import read_engine_stats

from offload_rig import Rig, record   # tests/ring/offload_rig.py

LISTEN_PORT = 5001


def connected_pair(rig: Rig, port: int = LISTEN_PORT) -> tuple[int, int]:
    """A connection from QP 0 to a listener on QP 1, accepted: (QP 0's id, QP 1's)."""
    a, b = rig.hosts
    listener = b.call(layout.OP_SOCKET).value
    assert b.call(layout.OP_BIND, conn=listener, addr=rig.address, port=port).status == 0
    assert b.call(layout.OP_LISTEN, conn=listener, value=4).status == 0
    conn = a.call(layout.OP_SOCKET).value
    a.post([record(layout.OP_CONNECT, conn=conn, cookie=rig.cookie(), addr=rig.address,
                   port=port)])
    rig.settle()
    event = b.call(layout.OP_ACCEPT, conn=listener)
    assert event.status == 0
    return conn, event.value


def test_second_close_while_the_first_lingers_is_refused_and_the_first_is_answered():
    """CLOSE, CLOSE of one connection whose sent data is not acknowledged yet: the
    second CLOSE took the place of the first's cookie, so the first was never
    answered (a host waiting for it, as network.close() does, waited in vain) and the
    bad record was not counted. Now the second is an ERROR (EALREADY), counted, and
    the first is answered once the data is acknowledged."""
    rig = Rig()
    try:
        a, b = rig.hosts
        conn, _ = connected_pair(rig)
        lay = a.lay
        a.drv.mv[lay.send_offset:lay.send_offset + 3000] = b"x" * 3000
        a.post([record(layout.OP_SEND, layout.REQ_SILENT, conn, 7, offset=lay.send_offset,
                       length=3000),
                record(layout.OP_CLOSE, 0, conn, 8),     # the records the fuzzer found,
                record(layout.OP_CLOSE, 0, conn, 9)])    # in one doorbell
        for _ in range(20):
            rig.advance(0.25)
            rig.settle()
        answers = {e.cookie: e for e in a.events if e.cookie in (8, 9)}
        assert answers[8].type == layout.EV_COMPLETION and answers[8].status == 0
        assert (answers[9].type, answers[9].status, answers[9].reason, answers[9].value) == \
            (layout.EV_ERROR, errno.EALREADY, layout.ERR_BAD_ARGUMENT, layout.OP_CLOSE)
        assert a.bad_records() == 1
        assert conn not in a.qp().connections
        assert a.call(layout.OP_ECHO, value=1).value == 1
    finally:
        rig.close()


def test_bad_receive_buffer_doorbell_is_reported_once():
    """A receive-buffer doorbell moved by more than the ring while the engine needs
    buffers: the engine took none (right) but said nothing and counted nothing. Now
    it is ERR_BAD_DOORBELL, once per value, counted in bad_records, as for the
    request doorbell; once the doorbell is right again the data flows."""
    rig = Rig()
    try:
        a, b = rig.hosts
        conn, child = connected_pair(rig)
        drv = b.drv
        bad = (drv.rxbuf_producer + drv.layout.rxbuf_entries + 100) & 0xFFFF_FFFF
        drv.regs[drv.rxbuf_doorbell] = bad
        drv.set_bytes_consumed(child, 1 << 30)    # the host's word: the window is open
        lay = a.lay
        a.post([record(layout.OP_SEND, layout.REQ_SILENT, conn, 5, offset=lay.send_offset,
                       length=40_000)])
        for _ in range(20):
            rig.advance(0.01)
            rig.settle()
        errors = [e for e in b.events if e.type == layout.EV_ERROR]
        assert [(e.reason, e.value) for e in errors] == [(layout.ERR_BAD_DOORBELL, bad)]
        assert b.bad_records() == 1
        drv.regs[drv.rxbuf_doorbell] = drv.rxbuf_producer     # back to the truth
        for _ in range(40):
            rig.advance(0.25)
            rig.settle()
            b.return_held(len(b.held))
        assert a.drv.bytes_acked(conn) == 40_000                 # nothing was lost
        assert b.bad_records() == 1
        assert b.call(layout.OP_ECHO, value=3).value == 3
    finally:
        rig.close()


def test_silent_echo_posts_nothing():
    """ECHO answered even with REQ_SILENT, unlike every other request: a silent
    ECHO that succeeds now posts nothing, as a silent NOP does."""
    rig = Rig()
    try:
        a = rig.hosts[0]
        silent = rig.cookie()
        a.post([record(layout.OP_ECHO, layout.REQ_SILENT, 0, silent, value=1)])
        rig.settle()
        assert a.call(layout.OP_ECHO, value=2).value == 2      # read after the silent one
        assert [e for e in a.events if e.cookie == silent] == []
    finally:
        rig.close()


def test_silent_socket_and_accept_are_refused():
    """A silent SOCKET or ACCEPT succeeded without telling the host the new
    connection id: the id (and an accepted connection) lived until the QP detached.
    Their answer is the id, so they cannot be silent: each is an ERROR (EINVAL,
    ERR_BAD_ARGUMENT), counted, and nothing is allocated; the child waiting for
    the silent ACCEPT is still there for the next one."""
    rig = Rig()
    try:
        a, b = rig.hosts
        listener = b.call(layout.OP_SOCKET).value
        assert b.call(layout.OP_LISTEN, conn=listener, value=4).status == 0
        port = b.events[-1].port
        conn = a.call(layout.OP_SOCKET).value
        a.post([record(layout.OP_CONNECT, conn=conn, cookie=rig.cookie(), addr=rig.address,
                       port=port)])
        rig.settle()
        owned = len(b.qp().connections)
        socket, accept = rig.cookie(), rig.cookie()
        b.post([record(layout.OP_SOCKET, layout.REQ_SILENT, 0, socket),
                record(layout.OP_ACCEPT, layout.REQ_SILENT, listener, accept)])
        rig.settle()
        answers = [(e.type, e.cookie, e.status, e.reason, e.value) for e in b.events
                   if e.cookie in (socket, accept)]
        assert answers == [
            (layout.EV_ERROR, socket, errno.EINVAL, layout.ERR_BAD_ARGUMENT, layout.OP_SOCKET),
            (layout.EV_ERROR, accept, errno.EINVAL, layout.ERR_BAD_ARGUMENT, layout.OP_ACCEPT)]
        assert b.bad_records() == 2
        assert len(b.qp().connections) == owned
        event = b.call(layout.OP_ACCEPT, conn=listener)
        assert event.type == layout.EV_COMPLETION and event.status == 0
    finally:
        rig.close()


def test_dropped_reports_are_published_in_the_stats_block():
    """Reports dropped while a host reads no events were counted only in the
    engine's QueuePair: ``toad``'s stats (the OE stats block) showed bad_records
    without saying how many of them never reached the host as an ERROR."""
    rig = Rig()
    try:
        b = rig.hosts[1]
        b.deaf = True
        qp = b.qp()
        for i in range(b.lay.event_entries + qp.backlog_max):   # events nobody reads
            qp.post_event(layout.EV_COMPLETION, cookie=1 << 40 | i)
        drv = b.drv
        for delta in (100, 200, 300):          # bad request doorbells, one report each
            drv.regs[drv.req_doorbell] = (drv.request_producer + delta) & 0xFFFF_FFFF
            rig.step()
        drv.regs[drv.req_doorbell] = drv.request_producer
        rig.engine.flush_stats()
        row = read_engine_stats(rig.name)["qps"]
        stats = next(q for q in row if q["slot"] == b.slot)
        assert (stats["bad_records"], stats["reports_dropped"]) == (3, 3)
        assert b.reports_dropped() == 3        # flushed and not yet flushed: a total
    finally:
        rig.close()


def test_a_receive_buffer_the_engine_holds_is_not_taken_twice():
    """An id returned twice in one batch, and one returned while the engine still
    held it (the buffer another connection is filling): the engine took every copy
    and filled one buffer with two payloads, the second over the first before the
    host read it. Now each copy of an id the engine holds is an ERROR
    (ERR_BAD_RXBUF, EALREADY), counted and skipped, and the data arrives whole."""
    rig = Rig("qp.recv_post_push=false", "qp.recv_post_delay_us=0")
    try:
        a, b = rig.hosts
        first, first_child = connected_pair(rig)
        conn, child = connected_pair(rig, LISTEN_PORT + 1)
        lay, drv = b.lay, b.drv
        sent = bytes(range(250)) * 160
        start = a.lay.send_offset
        a.drv.mv[start:start + len(sent)] = sent
        got = {first_child: bytearray(), child: bytearray()}
        seen = 0

        def receive() -> None:
            """Read what arrived, as the socket layer does; check the engine's ids."""
            nonlocal seen
            held = b.engine_buffers()
            assert len(held) == len(set(held)), f"the engine holds a buffer twice: {held}"
            for event in b.events[seen:]:
                if event.type == layout.EV_RECV_DATA and event.conn in got:
                    offset = drv.recv_buffer_offset(event.buffer)
                    got[event.conn].extend(drv.mv[offset:offset + event.length])
            seen = len(b.events)

        # 1000 bytes on the first connection: the engine takes the buffers the rig
        # handed over (0..5) and keeps filling 0 (no push: it is not posted)
        a.post([record(layout.OP_SEND, layout.REQ_SILENT, first, rig.cookie(), offset=start,
                       length=1000)])
        rig.settle()
        assert drv.rxbuf_taken() == drv.rxbuf_producer and b.engine_buffers() == [1, 2, 3, 4, 5, 0]
        spare = lay.recv_buffers - 2             # one the rig kept back: the host's
        b.held = [entry for entry in b.held if entry[0] != spare]
        size = lay.recv_buffer_bytes
        b.give([(drv.recv_buffer_offset(spare), size, spare),
                (drv.recv_buffer_offset(spare), size, spare),     # twice in one batch
                (drv.recv_buffer_offset(0), size, 0)])            # the engine holds it
        # the second connection's data takes 1..5, then those entries
        a.post([record(layout.OP_SEND, layout.REQ_SILENT, conn, rig.cookie(),
                       offset=start + 1000, length=len(sent) - 1000),
                record(layout.OP_SHUTDOWN, 0, conn, rig.cookie(), value=1)])  # FIN: the tail
        for _ in range(200):
            rig.advance(0.01)
            rig.step()
            receive()
            b.return_held(len(b.held))
            if len(got[child]) >= len(sent) - 1000 and a.drv.bytes_acked(conn) == len(sent) - 1000:
                break
        assert got[child] == sent[1000:]
        errors = [(e.reason, e.status, e.buffer) for e in b.events if e.type == layout.EV_ERROR]
        assert errors == [(layout.ERR_BAD_RXBUF, errno.EALREADY, spare),
                          (layout.ERR_BAD_RXBUF, errno.EALREADY, 0)]
        assert b.bad_records() == 2
        assert b.call(layout.OP_ECHO, value=4).value == 4
        a.post([record(layout.OP_SHUTDOWN, 0, first, rig.cookie(), value=1)])
        for _ in range(20):
            rig.advance(0.01)
            rig.step()
            receive()
        assert got[first_child] == sent[:1000]         # its buffer was never overwritten
    finally:
        rig.close()


def test_checksum_option_out_of_range_is_refused():
    """SETOPT OPT_CHECKSUM with a value that names no mode, negative included (the
    fuzzer's -1 raised IndexError in the engine): EINVAL, and the socket still works."""
    rig = Rig()
    try:
        a, _ = rig.hosts
        sock = a.call(layout.OP_SOCKET).value
        for value in (-1, len(layout.CHECKSUM_MODES), 1 << 40):
            answer = a.call(layout.OP_SETOPT, conn=sock, option=layout.OPT_CHECKSUM,
                            value=value)
            assert (answer.type, answer.status) == (layout.EV_COMPLETION, errno.EINVAL)
        answer = a.call(layout.OP_SETOPT, conn=sock, option=layout.OPT_CHECKSUM, value=0)
        assert answer.status == 0
    finally:
        rig.close()
