"""An in-process engine with offloaded sockets, driven one loop iteration at a time,
and host drivers on it: for tests that post arbitrary records and check what the
engine answers (tests/ring/test_offload_fuzz.py).

The engine's loop is ``Engine.iteration``, called from the test thread; a helper thread acknowledges slot commands only while a driver
enables or disables its QP (the driver blocks until the engine acknowledges).
Time is a fake clock that moves 1 us per read plus what the test adds
(:meth:`Rig.advance`), so stack timers fire when the test says, on any machine.
"""
from __future__ import annotations

import contextlib
import itertools
import os
import threading
from collections import Counter
from pathlib import Path

from engine.loop import Engine
from engine.offload import close as close_offload, install
from engine.offload.host_buffers import HostRecvBuffer
from host.driver import Driver
from toad import layout
from toad.config import load
from toad.rings import ring_free

ROW_MASK = (1 << layout.CONN_ROW_BITS) - 1

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "default.yaml"
# small areas and rings: full rings, a drained pool and a full connection table are
# all a few records away
OVERRIDES = ["engine.polling=busy", "engine.heartbeat_timeout_ms=60000",
             "engine.sleep_slice_ms=10", "qp.request_entries=64", "qp.event_entries=16",
             "qp.recv_pool_bytes=0", "qp.recv_buffers=8", "qp.recv_buffer_bytes=4096",
             "qp.recv_small_buffers=0",
             "qp.send_buffer_bytes=65536", "qp.send_share_bytes=65536",
             "qp.send_space_threshold=65536", "qp.max_connections=6",
             "qp.recv_post_delay_us=200", "nic.mtu=1500"]
_names = itertools.count()


class Clock:
    """Fake time: every read moves it 1 us; ``advance`` jumps."""

    def __init__(self):
        self.ns = 1_000_000_000_000
        self.lock = threading.Lock()

    def engine_ns(self) -> int:
        with self.lock:
            self.ns += 1000
            return self.ns

    def seconds(self) -> float:
        return self.engine_ns() / 1e9

    def advance(self, seconds: float) -> None:
        with self.lock:
            self.ns += int(seconds * 1e9)


class Host:
    """One driver and what its test host has seen: events, cookies, ids, buffers."""

    def __init__(self, rig: "Rig", driver: Driver):
        self.rig = rig
        self.drv = driver
        self.lay = driver.layout
        self.slot = driver.slot
        self.events: list = []
        self.requests: dict[int, tuple] = {}   # cookie -> the record posted
        self.conns: list[int] = []             # ids the engine gave this QP (live)
        self.closed: list[int] = []            # ids whose CLOSE completed
        self.listeners: dict[int, int] = {}    # id -> listening port
        self.bound: list[int] = []             # ports BIND gave this QP's sockets
        self.held: list[tuple[int, int]] = []  # (buffer id, conn) the engine gave us
        self.consumed: Counter = Counter()     # conn -> buffer space given back
        self.given: Counter = Counter()        # buffer id -> valid entries handed over
        self.given_length: dict[int, int] = {} # buffer id -> longest valid entry
        self.bad_seen = 0                      # last bad_records total seen
        self.deaf = False                      # True: reads no events (Rig.step)
        # the pool, as OffloadNetwork hands it over, but for two buffers kept back so
        # the receive-buffer ring has free slots from the start
        kept = min(2, self.lay.recv_buffers - 1)
        self.give([(driver.recv_buffer_offset(i), self.lay.recv_buffer_bytes, i)
                   for i in range(self.lay.recv_buffers - kept)])
        self.held = [(i, 0) for i in range(self.lay.recv_buffers - kept, self.lay.recv_buffers)]

    # ---- requests ----------------------------------------------------------------
    def post_now(self, records: list[tuple]) -> int:
        """Post as many of ``records`` as the request ring has room for (no waiting:
        a deaf host's ring may never drain); returns how many."""
        records = records[:self.drv.request_space()]
        for values in records:
            self.requests[values[3]] = values
        if records:
            self.drv.post_many(records)
        return len(records)

    def post(self, records: list[tuple]) -> None:
        """Post REQUEST_STRUCT tuples (ring-sized pieces, one doorbell each),
        running the engine while the ring has no room."""
        entries = self.lay.request_entries
        for start in range(0, len(records), entries):
            piece = records[start:start + entries]
            for _ in range(10_000):
                if self.drv.request_space() >= len(piece):
                    break
                self.rig.step()
            else:
                raise AssertionError(f"QP {self.slot}: request ring never drained")
            for values in piece:
                self.requests[values[3]] = values
            self.drv.post_many(piece)

    def call(self, opcode: int, **fields):
        """Post one request and run the engine until its answer is in (or None)."""
        cookie = self.rig.cookie()
        values = record(opcode, cookie=cookie, **fields)
        self.post([values])
        for _ in range(200):
            for event in self.events:
                if event.cookie == cookie and event.type in (layout.EV_COMPLETION,
                                                             layout.EV_ERROR):
                    return event
            self.rig.step()
        return None

    # ---- receive buffers ---------------------------------------------------------
    def valid_entry(self, offset: int, length: int, buf_id: int) -> bool:
        """The engine's rule for a receive-buffer entry (engine/ring_calls.py
        take_rxbufs), but for the id the engine may hold already."""
        lay = self.lay
        return (lay.recv_offset <= offset and offset + length <= lay.recv_offset + lay.recv_bytes
                and 0 < length <= lay.largest_buffer and 0 <= buf_id < lay.total_buffers)

    def rx_room(self) -> int:
        return ring_free(self.lay.rxbuf_entries, self.drv.rxbuf_producer, self.drv.rxbuf_taken())

    def give(self, entries: list[tuple[int, int, int]]) -> int:
        """Hand (offset, length, id) entries over, as many as the ring has room for."""
        entries = entries[:self.rx_room()]
        if not entries:
            return 0
        for offset, length, buf_id in entries:
            if self.valid_entry(offset, length, buf_id):
                self.given[buf_id] += 1
                self.given_length[buf_id] = max(self.given_length.get(buf_id, 0), length)
        self.drv.post_rx_buffers(entries)
        return len(entries)

    def return_held(self, count: int) -> int:
        """Give back up to ``count`` buffers the engine filled, as sockets.py's
        flush_returns does: each connection's consumed counter counts the space
        given back (its buffers' whole lengths), stored before the buffers go back
        (Driver.return_buffers)."""
        taken = [entry for entry in self.held[:min(count, self.rx_room())]
                 if 0 <= entry[0] < self.lay.recv_buffers]
        if not taken:
            return 0
        for entry in taken:
            buf_id, conn = entry
            self.held.remove(entry)
            if conn in self.conns:
                self.consumed[conn] += self.given_length.get(buf_id, self.lay.recv_buffer_bytes)
                self.drv.set_bytes_consumed(conn, self.consumed[conn])
        ids = [buf_id for buf_id, _ in taken]
        for buf_id in ids:
            self.given[buf_id] += 1
            self.given_length[buf_id] = max(self.given_length.get(buf_id, 0),
                                            self.lay.recv_buffer_bytes)
        self.drv.return_buffers(ids)
        return len(ids)

    # ---- events ------------------------------------------------------------------
    def collect(self) -> int:
        """Consume this QP's events and update what the host knows; checks every
        RECV_DATA against the buffers handed over."""
        got = 0
        while True:
            n = self.drv.poll(1 << 16)
            if not n:
                return got
            got += n
            while self.drv.events:
                self.on_event(self.drv.events.popleft())

    def on_event(self, event) -> None:
        self.events.append(event)
        kind = event.type
        if kind == layout.EV_RECV_DATA:
            buf_id = event.buffer
            assert self.given[buf_id] > 0, \
                f"QP {self.slot}: RECV_DATA names buffer {buf_id}, not one the host handed over"
            assert event.length <= self.given_length[buf_id], \
                f"QP {self.slot}: RECV_DATA of {event.length} bytes in buffer {buf_id} " \
                f"(at most {self.given_length[buf_id]})"
            assert event.offset == 0, f"QP {self.slot}: RECV_DATA offset {event.offset}"
            self.given[buf_id] -= 1
            self.held.append((buf_id, event.conn))
            return
        request = self.requests.get(event.cookie)
        if kind == layout.EV_ERROR:
            if request is not None:
                assert event.value == request[0], \
                    f"QP {self.slot}: ERROR for cookie {event.cookie} names opcode " \
                    f"{event.value}, the request was {request[0]}"
            return
        if kind != layout.EV_COMPLETION or request is None or event.status:
            return
        opcode, conn = request[0], request[2]
        if opcode in (layout.OP_SOCKET, layout.OP_ACCEPT):
            self.conns.append(event.value)
        elif opcode == layout.OP_CLOSE and conn in self.conns:
            self.conns.remove(conn)
            self.closed.append(conn)
            self.listeners.pop(conn, None)
        elif opcode == layout.OP_LISTEN:
            self.listeners[conn] = event.port
        elif opcode == layout.OP_BIND:
            self.bound.append(event.port)

    # ---- engine-side numbers -----------------------------------------------------
    def qp(self):
        return self.rig.engine.slots.qps[self.slot]

    def bad_records(self) -> int:
        """Flushed (stats block) plus not yet flushed: a total that only grows."""
        stats = self.rig.engine.registers.qp_stats[self.slot]
        return int(stats["bad_records"]) + self.qp().bad_records

    def engine_buffers(self) -> list[int]:
        """Ids of the receive buffers the engine holds for this QP: taken from the
        ring and not yet named by a RECV_DATA (the pool's caches, each receive
        buffer's current and held ones). Each should appear once."""
        qp = self.qp()
        poller = self.rig.poller
        pool = poller.pools.get(qp)
        ids = [entry[2] for entry in (*pool.cache, *pool.small)] if pool is not None else []
        buffers = {id(r): r for r in (c.recv_buffer for c in poller.stack.table.connections())
                   if isinstance(r, HostRecvBuffer) and r.qp is qp}
        for sock in qp.connections.values():
            if sock is not None and sock.recv_buffer is not None:
                buffers[id(sock.recv_buffer)] = sock.recv_buffer
        for recv in buffers.values():
            if recv.current is not None:
                ids.append(recv.current[2])
            ids.extend(entry[0] for entry in recv.held)
        return ids

    def reports_dropped(self) -> int:
        """As bad_records: the ERROR reports the engine dropped, flushed or not."""
        stats = self.rig.engine.registers.qp_stats[self.slot]
        return int(stats["reports_dropped"]) + self.qp().reports_dropped


def record(opcode: int, flags: int = 0, conn: int = 0, cookie: int = 0, addr: int = 0,
           port: int = 0, option: int = 0, offset: int = 0, length: int = 0,
           value: int = 0) -> tuple:
    """A REQUEST_STRUCT tuple."""
    return (opcode, flags, conn, cookie, addr, port, option, offset, length, value)


class Rig:
    """Engine + offload poller + two hosts (QP slots 0 and 1), one process."""

    def __init__(self, *overrides: str):
        self.name = f"fuzz{os.getpid()}-{next(_names)}"
        self.config = load(str(CONFIG), [f"name={self.name}", *OVERRIDES, *overrides])
        self.clock = Clock()
        self.engine = Engine(self.config, clock=self.clock.engine_ns)
        self.engine.registers.set_state(layout.ENGINE_RUNNING)   # (Engine.run does)
        self.hosts: list[Host] = []
        self._cookies = itertools.count(1)
        try:
            self.poller = install(self.engine, clock=self.clock.seconds)
        except BaseException:
            self.engine.close()
            raise
        try:
            with self.serving_commands():
                for _ in range(2):
                    self.hosts.append(Host(self, Driver(self.config)))
        except BaseException:
            self.close()
            raise
        self.address = self.poller.stack.ip

    def cookie(self) -> int:
        return next(self._cookies)

    # ---- running the engine ------------------------------------------------------
    @contextlib.contextmanager
    def serving_commands(self):
        """A thread that acknowledges slot commands (a driver enabling or disabling
        its QP waits for that), as the loop's housekeeping does, while the block runs."""
        stop = threading.Event()
        errors: list = []

        def serve() -> None:
            try:
                while not stop.is_set():
                    self.engine.slots.scan_commands()
                    stop.wait(0.0002)
            except BaseException as exc:   # surfaced below
                errors.append(exc)

        thread = threading.Thread(target=serve, name="fuzz-slot-commands", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=30)
        assert not thread.is_alive(), "the slot-command thread did not stop"
        if errors:
            raise errors[0]

    def iteration(self) -> int:
        """One pass of the engine's loop (Engine.iteration)."""
        return self.engine.iteration(self.engine.clock())

    def step(self) -> int:
        """One iteration, then every host takes its events."""
        work = self.iteration()
        for host in self.hosts:
            if not host.deaf:
                work += host.collect()
        return work

    def settle(self, limit: int = 400) -> int:
        """Run until nothing happens for two iterations in a row (at most ``limit``)."""
        idle = 0
        for n in range(limit):
            idle = idle + 1 if not self.step() else 0
            if idle >= 2:
                return n
        return limit

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    # ---- the end ---------------------------------------------------------------------
    def close(self) -> None:
        """Disable every QP (its slot command acknowledged by a helper thread), then
        remove what install and Engine created."""
        try:
            if self.hosts:
                with self.serving_commands():
                    for host in self.hosts:
                        host.drv.close()
        finally:
            try:
                self.engine.close()
            finally:
                close_offload(self.poller)
