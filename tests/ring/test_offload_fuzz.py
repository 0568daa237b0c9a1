"""Malformed ring records are counted and dropped; they never crash the engine.

Property-based: hypothesis draws sequences of request records for the offload opcodes
(every opcode, unknown ones too, random flags, connection ids of this QP, of the other
QP, closed ones and random words, the engine's own address and listening ports,
option ids and values, send ranges inside, across and far past the send area, huge
SEND_SPACE targets), interleaved with legitimate socket calls and with receive-buffer
returns (good, returned twice, duplicated, out of range, with bad doorbells). A real
Engine with its offload poller (loopback NIC) runs in this process, one loop
iteration at a time (tests/ring/offload_rig.py), so an example is fast and replays
exactly.

After every example: the loop never raised; both QPs still answer an ECHO; each QP's
``bad_records`` only grew, and equals the ERROR events it got plus the reports the
engine dropped; an unknown opcode, a connection id the QP cannot own and a silent
SOCKET or ACCEPT got exactly one ERROR each; no request got two answers and every
request that must be answered was; every RECV_DATA names a buffer the host handed
over (no more often than it did), no longer than its entry. After every step the
engine holds no receive-buffer id twice, and its record of the ids it holds
(``rx_held``) is exactly them. The thread that serves slot commands is gone.

The runs here are short (about 15 s for both properties); for a longer hunt set
TOAD_FUZZ_EXAMPLES (e.g. 3000: about 6 minutes). Sequences they found are plain
tests in tests/ring/test_offload_bad_records.py.
"""
from __future__ import annotations

import errno
import os
import threading
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, note, settings, strategies as st

from engine.handlers import NEEDS_ANSWER, NEEDS_CONNECTION
from engine.offload.handlers import ABORT
from toad import layout
from toad.addresses import aton

from offload_rig import Rig, record   # tests/ring/offload_rig.py

U16 = st.integers(0, 0xFFFF)
U32 = st.integers(0, 0xFFFF_FFFF)
U64 = st.integers(0, 0xFFFF_FFFF_FFFF_FFFF)
ROW_MASK = (1 << layout.CONN_ROW_BITS) - 1
LISTEN_PORT = 5001
# more examples for a longer hunt: TOAD_FUZZ_EXAMPLES=2000 python3 -m pytest ...
EXAMPLES = int(os.environ.get("TOAD_FUZZ_EXAMPLES", "0")) or None
TIMEOUT = 600 + (EXAMPLES or 0)   # one property, shrinking included (hypothesis: <= 300 s)

OPCODE = st.one_of(st.integers(layout.OP_NOP, layout.OP_SEND_SPACE),
                   st.sampled_from([layout.OP_SEND_SPACE + 1, 255, 0x8000, 0xFFFF]), U16)
FLAGS = st.one_of(st.sampled_from([0, layout.REQ_SILENT]), U16)
# connection ids: resolved against what the hosts know when the step runs
CONN = st.one_of(st.tuples(st.sampled_from(["mine", "other", "closed"]), st.integers(0, 31)),
                 st.tuples(st.just("row"), st.integers(0, 2), st.integers(0, 20)),
                 st.tuples(st.just("raw"), st.one_of(st.just(0), U32)))
ADDR = st.one_of(st.sampled_from(["own", "loopback", "zero", "subnet", "outside", "broadcast",
                                  "network"]), U32)
PORT = st.one_of(st.sampled_from(["listening", "zero", "bound", 1, 65535]), U16)
OPTION = st.one_of(st.integers(0, 6), U16)
VALUE = st.one_of(st.sampled_from([0, 1, 2, 3, 4, ABORT, 1 << 32, 1 << 63, (1 << 64) - 1]), U64)
# send ranges relative to the send area: (where the offset is, length)
OFFSET = st.one_of(st.tuples(st.sampled_from(["area", "end"]), st.integers(-4096, 4096)),
                   st.tuples(st.just("raw"), st.one_of(st.just(0), U64)))
LENGTH = st.one_of(st.sampled_from([0, 1, 100, 1460, 4096, 65536, 65537, 1 << 63,
                                    (1 << 64) - 1]), st.integers(0, 70_000), U64)
HOST = st.integers(0, 1)
RAW_RECORD = st.tuples(OPCODE, FLAGS, CONN, U32, ADDR, PORT, OPTION, OFFSET, LENGTH, VALUE)
# a socket request for one of this QP's own connections: deeper into the handlers
SMALL = st.sampled_from([0, 1, 2, 3, 4, 5])
OP_RECORD = st.tuples(st.sampled_from(range(layout.OP_SOCKET, layout.OP_SEND_SPACE + 1)),
                      st.sampled_from([0, layout.REQ_SILENT]),
                      st.tuples(st.just("mine"), st.integers(0, 31)), U32, ADDR, PORT,
                      st.sampled_from([1, 2, 3, 4, 0, 7]), OFFSET, st.one_of(SMALL, LENGTH),
                      st.one_of(SMALL, VALUE))
RECORDS = st.lists(st.one_of(RAW_RECORD, OP_RECORD), min_size=1, max_size=12)
# a receive-buffer entry: offset (buffer index or raw), length, id
RX_OFFSET = st.one_of(st.tuples(st.just("buffer"), st.integers(-2, 9), st.integers(-8, 8)),
                      st.tuples(st.just("raw"), st.one_of(st.just(0), U64), st.just(0)))
RX_LENGTH = st.one_of(st.sampled_from([0, 1, 4095, 4096, 4097, 8192]), U32)
RX_ID = st.one_of(st.integers(0, 9), U32)
RX_ENTRIES = st.lists(st.tuples(RX_OFFSET, RX_LENGTH, RX_ID), min_size=1, max_size=6)
# receive-buffer doorbell moves (more than the ring: bad), with data sent meanwhile
RX_DOORBELL = st.tuples(st.sampled_from([9, 100, 1 << 31, -1, -5]), st.integers(0, 9000))
# request doorbells moved by more than the ring, one after another (each reported once)
REQ_DOORBELLS = st.lists(st.integers(65, (1 << 32) - 1), min_size=1, max_size=40)
ADVANCE = st.sampled_from([0.0, 0.0002, 0.01, 0.25, 1.0, 5.0, 60.0])

DEAF_STEP = st.one_of(
    st.tuples(st.just("records"), RECORDS),
    st.tuples(st.just("peer_send"), st.integers(1, 20_000)),
    st.tuples(st.just("req_doorbells"), REQ_DOORBELLS),
    st.tuples(st.just("rx_doorbell"), RX_DOORBELL),
    st.tuples(st.just("rx"), RX_ENTRIES),
    st.tuples(st.just("pump"), st.integers(1, 40), ADVANCE))
# (weight, step): drawn records most often, legitimate calls and buffer returns between
STEPS = [
    (30, st.tuples(st.just("records"), HOST, RECORDS)),
    (8, st.tuples(st.just("sends"), HOST, CONN, st.lists(st.tuples(OFFSET, LENGTH), min_size=2,
                                                         max_size=10))),
    (3, st.tuples(st.just("socket"), HOST)),
    (3, st.tuples(st.just("listen"), HOST, PORT, VALUE)),
    (5, st.tuples(st.just("connect"), HOST, ADDR, PORT, st.sampled_from([0, 0, 3000, 20_000]))),
    (4, st.tuples(st.just("accept"), HOST)),
    (8, st.tuples(st.just("send"), HOST, st.integers(1, 20_000))),
    (4, st.tuples(st.just("close"), HOST, st.booleans(), st.booleans())),
    (8, st.tuples(st.just("pump"), st.integers(1, 40), ADVANCE)),
    (6, st.tuples(st.just("return"), HOST, st.integers(1, 8), st.booleans())),
    (6, st.tuples(st.just("rx"), HOST, RX_ENTRIES)),
    (4, st.tuples(st.just("rx_doorbell"), HOST, RX_DOORBELL)),
    (2, st.tuples(st.just("req_doorbells"), HOST, REQ_DOORBELLS)),
    (3, st.tuples(st.just("consumed"), HOST, CONN, st.one_of(st.sampled_from([0, 4096]), U64))),
    # a host that reads no events for a while: its event ring fills, the engine's
    # backlog grows, its reports are dropped (still counted)
    (4, st.tuples(st.just("deaf"), HOST, st.lists(DEAF_STEP, min_size=1, max_size=12))),
]


def weighted(choices: list) -> st.SearchStrategy:
    """One of ``(weight, strategy)`` choices, drawn in proportion to the weights
    (st.one_of draws its branches uniformly)."""
    table = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.integers(0, len(table) - 1).flatmap(table.__getitem__)


STEP = weighted(STEPS)


class Fuzz:
    """Runs drawn steps on a Rig and keeps what the checks need."""

    def __init__(self, rig: Rig):
        self.rig = rig
        self.hosts = rig.hosts
        self.ports: list[int] = [LISTEN_PORT]   # ports listened on (for "listening")
        self.subnet_other = rig.address + 7     # in the engine's /24, nobody there
        self.log: list = []

    # ---- resolving drawn fields ----------------------------------------------------
    def conn(self, h: int, ref) -> int:
        host, other = self.hosts[h], self.hosts[1 - h]
        kind = ref[0]
        if kind == "raw":
            return ref[1]
        if kind == "row":
            return (ref[1] << layout.CONN_ROW_BITS) | ref[2]
        pool = {"mine": host.conns, "other": other.conns,
                "closed": host.closed + other.closed}[kind]
        return pool[ref[1] % len(pool)] if pool else ref[1]

    def addr(self, ref) -> int:
        if isinstance(ref, int):
            return ref
        own = self.rig.address
        return {"own": own, "loopback": aton("127.0.0.1"), "zero": 0,
                "subnet": self.subnet_other, "outside": aton("192.0.2.1"),
                "broadcast": (own & ~0xFF) | 0xFF, "network": own & ~0xFF}[ref]

    def port(self, ref, index: int = 0) -> int:
        if isinstance(ref, int):
            return ref
        if ref == "listening":
            return self.ports[index % len(self.ports)]
        if ref == "bound":
            bound = self.hosts[0].bound + self.hosts[1].bound
            return bound[index % len(bound)] if bound else 40000
        return 0

    def offset(self, h: int, ref) -> int:
        lay = self.hosts[h].lay
        kind, delta = ref
        if kind == "raw":
            return delta
        base = lay.send_offset if kind == "area" else lay.send_offset + lay.send_bytes
        return max(0, base + delta)

    def raw_record(self, h: int, drawn, index: int) -> tuple:
        opcode, flags, conn, tag, addr, port, option, offset, length, value = drawn
        cookie = (tag << 32) | self.rig.cookie()
        return (opcode, flags, self.conn(h, conn), cookie, self.addr(addr),
                self.port(port, index), option, self.offset(h, offset), length, value)

    # ---- steps ---------------------------------------------------------------------
    def run(self, step) -> None:
        kind, args = step[0], step[1:]
        getattr(self, "do_" + kind)(*args)

    def do_records(self, h, drawn) -> None:
        records = [self.raw_record(h, d, i) for i, d in enumerate(drawn)]
        self.log.append(("post", h, records))
        self.hosts[h].post(records)

    def do_sends(self, h, conn, ranges) -> None:
        conn = self.conn(h, conn)
        records = [record(layout.OP_SEND, layout.REQ_SILENT, conn, self.rig.cookie(),
                          offset=self.offset(h, offset), length=length)
                   for offset, length in ranges]
        self.log.append(("post", h, records))
        self.hosts[h].post(records)

    def call(self, h, opcode, **fields):
        self.log.append(("call", h, layout.OPCODE_NAMES[opcode], fields))
        return self.hosts[h].call(opcode, **fields)

    def do_socket(self, h) -> None:
        self.call(h, layout.OP_SOCKET)

    def do_listen(self, h, port, backlog) -> None:
        event = self.call(h, layout.OP_SOCKET)
        if event is None or event.type != layout.EV_COMPLETION or event.status:
            return
        conn, port = event.value, self.port(port)
        if port:
            self.call(h, layout.OP_BIND, conn=conn, addr=self.rig.address, port=port)
        event = self.call(h, layout.OP_LISTEN, conn=conn, value=backlog)
        if event is not None and event.type == layout.EV_COMPLETION and not event.status:
            self.ports.append(event.port)

    def do_connect(self, h, addr, port, nbytes=0) -> None:
        """SOCKET, CONNECT and (``nbytes``) a SEND right after it: data can reach a
        listener's child before anyone accepts it."""
        host = self.hosts[h]
        event = self.call(h, layout.OP_SOCKET)
        if event is None or event.type != layout.EV_COMPLETION or event.status:
            return
        conn = event.value
        values = record(layout.OP_CONNECT, conn=conn, cookie=self.rig.cookie(),
                        addr=self.addr(addr), port=self.port(port))
        self.log.append(("post", h, [values]))
        host.post([values])
        if nbytes:
            self.rig.settle()
            self.send_on(h, conn, nbytes)

    def do_accept(self, h) -> None:
        host = self.hosts[h]
        for conn in list(host.listeners):
            self.call(h, layout.OP_ACCEPT, conn=conn)

    def do_send(self, h, nbytes) -> None:
        host = self.hosts[h]
        if host.conns:
            self.send_on(h, host.conns[nbytes % len(host.conns)], nbytes)

    def send_on(self, h, conn, nbytes) -> None:
        host = self.hosts[h]
        lay = host.lay
        start = lay.send_offset + nbytes % (lay.send_bytes - nbytes)
        host.drv.mv[start:start + nbytes] = bytes([nbytes & 0xFF]) * nbytes
        values = record(layout.OP_SEND, layout.REQ_SILENT, conn, self.rig.cookie(),
                        offset=start, length=nbytes)
        self.log.append(("post", h, [values]))
        host.post([values])

    def do_close(self, h, abort, listener) -> None:
        host = self.hosts[h]
        conns = list(host.listeners) if listener else host.conns
        if conns:
            conn = conns[len(host.events) % len(conns)]
            values = record(layout.OP_CLOSE, conn=conn, cookie=self.rig.cookie(),
                            value=ABORT if abort else 0)
            self.log.append(("post", h, [values]))
            host.post([values])

    def do_pump(self, iterations, advance) -> None:
        self.log.append(("pump", iterations, advance))
        self.rig.advance(advance)
        for _ in range(iterations):
            self.rig.step()

    def do_return(self, h, count, twice=False) -> None:
        """Give back buffers the engine filled; ``twice``: each one again right after
        (a host returning an id twice before the engine takes either copy)."""
        host = self.hosts[h]
        self.log.append(("return", h, count, twice))
        before = list(host.held)
        host.return_held(min(count, host.rx_room() // 2) if twice else count)
        if twice:
            size = host.lay.recv_buffer_bytes
            host.give([(host.drv.recv_buffer_offset(buf_id), size, buf_id)
                       for buf_id, conn in before if (buf_id, conn) not in host.held])

    def do_rx(self, h, entries) -> None:
        host = self.hosts[h]
        lay = host.lay
        resolved = []
        for (kind, index, delta), length, buf_id in entries:
            if kind == "raw":
                offset = index
            else:
                offset = max(0, lay.recv_offset + index * lay.recv_buffer_bytes + delta)
            resolved.append((offset, length, buf_id))
        self.log.append(("rx", h, resolved))
        host.give(resolved)

    def do_rx_doorbell(self, h, drawn) -> None:
        """A receive-buffer doorbell far from the truth while the other host sends
        ``nbytes`` (the engine needs buffers), then back."""
        delta, nbytes = drawn
        drv = self.hosts[h].drv
        self.log.append(("rx_doorbell", h, delta, nbytes))
        drv.regs[drv.rxbuf_doorbell] = (drv.rxbuf_producer + delta) & 0xFFFF_FFFF
        if nbytes:
            self.do_send(1 - h, nbytes)
        for _ in range(5):
            self.rig.step()
        drv.regs[drv.rxbuf_doorbell] = drv.rxbuf_producer

    def do_req_doorbells(self, h, deltas) -> None:
        """Request doorbells moved by more than the ring, one engine iteration each."""
        drv = self.hosts[h].drv
        self.log.append(("req_doorbells", h, deltas))
        for delta in deltas:
            drv.regs[drv.req_doorbell] = (drv.request_producer + delta) & 0xFFFF_FFFF
            self.rig.step()
        drv.regs[drv.req_doorbell] = drv.request_producer

    def do_deaf(self, h, inner) -> None:
        host = self.hosts[h]
        self.log.append(("deaf", h))
        host.deaf = True
        try:
            for step in inner:
                kind, args = step[0], step[1:]
                if kind == "records":
                    records = [self.raw_record(h, d, i) for i, d in enumerate(args[0])]
                    self.log.append(("post_now", h, records))
                    host.post_now(records)
                elif kind == "peer_send":
                    self.do_send(1 - h, *args)
                elif kind == "pump":
                    self.do_pump(*args)
                else:
                    getattr(self, "do_" + kind)(h, *args)
        finally:
            host.deaf = False
        self.log.append(("hears", h))

    def do_consumed(self, h, conn, value) -> None:
        """The host's consumed counter of a connection row, any value (rows past the
        counter table are not the host's memory: skipped)."""
        conn = self.conn(h, conn)
        if conn & ROW_MASK >= self.hosts[h].lay.counter_rows:
            return
        self.log.append(("consumed", h, conn, value))
        self.hosts[h].drv.set_bytes_consumed(conn, value)

    # ---- the end of an example -----------------------------------------------------
    def drain(self, rounds: int = 80) -> None:
        """Give every filled buffer back and let time pass (up to 400 s: a CONNECT to
        an address nobody answers times out after ~64 s) until every answer that must
        come is in and nothing moves any more."""
        quiet = 0
        for _ in range(rounds):
            before = sum(len(h.events) for h in self.hosts)
            for host in self.hosts:
                while host.return_held(len(host.held)):
                    self.rig.settle(50)
            self.rig.advance(5.0)
            self.rig.settle()
            moved = sum(len(h.events) for h in self.hosts) != before
            quiet = 0 if moved else quiet + 1
            if quiet >= 3 and not any(unanswered(h) for h in self.hosts):
                return


def must_answer(values: tuple) -> bool:
    """A request whose COMPLETION or ERROR must come, by its cookie."""
    opcode, flags = values[0], values[1]
    if opcode not in layout.OPCODE_NAMES:
        return True                        # ERROR, unknown opcode
    if opcode in (layout.OP_SEND, layout.OP_SEND_SPACE):
        return False                       # answered only if refused (SEND_SPACE: by conn)
    if opcode in NEEDS_ANSWER:
        return True                        # a new id: an ERROR when silent
    return not flags & layout.REQ_SILENT   # a silent success is not answered


def answered(host) -> Counter:
    return Counter(e.cookie for e in host.events
                   if e.type in (layout.EV_COMPLETION, layout.EV_ERROR) and e.cookie)


def unanswered(host) -> list:
    """Requests whose answer must come and has not (yet)."""
    answers = answered(host)
    return [v for cookie, v in host.requests.items() if must_answer(v) and not answers[cookie]]


def cannot_own(host, conn: int) -> bool:
    """An id this QP's connection table can never hold (another slot, row 0, a row
    past the counter table)."""
    row = conn & ROW_MASK
    return conn >> layout.CONN_ROW_BITS != host.slot or row == 0 or row >= host.lay.counter_rows


def check_buffers(host) -> None:
    """The engine holds no receive buffer twice (it would fill it twice), and its
    record of the ids it holds (qp.rx_held) is exactly them."""
    held = host.engine_buffers()
    assert len(held) == len(set(held)), f"QP {host.slot}: the engine holds {held}"
    assert set(held) == host.qp().rx_held, \
        f"QP {host.slot}: the engine holds {sorted(held)}, rx_held {sorted(host.qp().rx_held)}"


def check_example(fuzz: Fuzz) -> None:
    rig = fuzz.rig
    for host in rig.hosts:
        answers = answered(host)
        errors = {e.cookie: e for e in host.events if e.type == layout.EV_ERROR}
        for cookie, values in host.requests.items():
            opcode, conn = values[0], values[2]
            assert answers[cookie] <= 1, f"QP {host.slot}: {answers[cookie]} answers to {values}"
            if must_answer(values):
                assert answers[cookie] == 1, f"QP {host.slot}: no answer to {values}"
            if opcode not in layout.OPCODE_NAMES:
                assert errors[cookie].reason == layout.ERR_UNKNOWN_OPCODE, values
            elif opcode in NEEDS_CONNECTION and cannot_own(host, conn):
                assert cookie in errors, f"QP {host.slot}: {values} not refused"
                assert (errors[cookie].status, errors[cookie].reason) == \
                    (errno.EBADF, layout.ERR_WRONG_CONNECTION), values
            elif opcode in NEEDS_ANSWER and values[1] & layout.REQ_SILENT:
                assert cookie in errors, f"QP {host.slot}: silent {values} not refused"
        # counted == answered + dropped
        n_errors = sum(e.type == layout.EV_ERROR for e in host.events)
        assert host.bad_records() == n_errors + host.reports_dropped(), \
            f"QP {host.slot}: bad_records {host.bad_records()}, ERROR events {n_errors}, " \
            f"dropped reports {host.reports_dropped()}"
    # the engine still serves both QPs
    for host in rig.hosts:
        event = host.call(layout.OP_ECHO, value=0x5EED0000 + host.slot)
        assert event is not None and event.type == layout.EV_COMPLETION, \
            f"QP {host.slot}: no answer to ECHO after the example"
        assert event.value == 0x5EED0000 + host.slot


def prelude(fuzz: Fuzz) -> None:
    """A listener on QP 1, a connection from QP 0 to it, accepted, some data: the
    drawn records then meet real connections."""
    fuzz.do_listen(1, LISTEN_PORT, 4)
    fuzz.do_connect(0, "own", "listening")
    fuzz.rig.settle()
    fuzz.do_accept(1)
    fuzz.do_send(0, 3000)
    fuzz.rig.settle()


def run_example(steps: list) -> None:
    rig = Rig()
    fuzz = Fuzz(rig)
    try:
        prelude(fuzz)
        for step in steps:
            fuzz.run(step)
            for host in rig.hosts:             # bad_records only grows
                total = host.bad_records()
                assert total >= host.bad_seen, f"QP {host.slot}: bad_records went down"
                host.bad_seen = total
                check_buffers(host)
        fuzz.drain()
        check_example(fuzz)
    except BaseException:
        for line in fuzz.log:
            note(repr(line))
        raise
    finally:
        rig.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("fuzz-")]


@pytest.mark.timeout(TIMEOUT)
@settings(max_examples=EXAMPLES or 150, deadline=None, print_blob=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(STEP, min_size=3, max_size=30))
def test_offload_records_never_crash_the_engine(steps):
    run_example(steps)


@pytest.mark.timeout(TIMEOUT)
@settings(max_examples=EXAMPLES or 100, deadline=None, print_blob=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(
    st.tuples(st.just("rx"), HOST, RX_ENTRIES),
    st.tuples(st.just("return"), HOST, st.integers(1, 8), st.booleans()),
    st.tuples(st.just("rx_doorbell"), HOST, RX_DOORBELL),
    st.tuples(st.just("send"), st.just(0), st.integers(1, 20_000)),
    st.tuples(st.just("consumed"), HOST, CONN, st.one_of(st.sampled_from([0, 4096]), U64)),
    st.tuples(st.just("pump"), st.integers(1, 40), ADVANCE)), min_size=3, max_size=30))
def test_receive_buffer_returns_never_crash_the_engine(steps):
    """The receive-buffer path alone, with data flowing so buffers are taken: good
    returns, duplicates, ids the host does not hold, entries outside the receive area,
    doorbells far off."""
    run_example(steps)

