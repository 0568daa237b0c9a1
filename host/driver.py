"""The host's OE driver: one queue pair, its rings, counters and interrupt.

    with Driver(config) as drv:                 # claim a slot, create + enable the QP
        ev = drv.call(layout.OP_ECHO, value=7)  # post, ring the doorbell, wait by cookie
        drv.post(layout.OP_NOP, flags=layout.REQ_SILENT)

What a host does, as TOAD's driver (section III-C): write request records into the
request ring in its own memory and the producer index into the QP's doorbell
register (a PIO write, into the QP's doorbell page: the first page of its segment,
which only this host and the engine can reach); find events by the phase bit at the event-ring head (no
register read); spin briefly, then arm the QP's interrupt and sleep on its
semaphore; read the cumulative counters the engine writes; refill the anonymous
receive-buffer ring.

Wait policy (a sleep + wake-up costs this VM 25-50 us of CPU): ``qp.busy_poll_mode``
adaptive (bulk) spins at most ``qp.busy_poll_us`` and less while spins end asleep
anyway; yield (latency) always spins that long, with sched_yield between polls so a
peer on the same CPU runs. A batched wait (a pure reader) arms the interrupt for the
``rx_batch``-th next event, not the next one (the event-index rule of virtio), and
sleeps at most ``qp.rx_batch_us``. Registers are read only on slow paths: enabling, and checking
the engine's heartbeat while waiting, so a dead engine is a clear error within
``engine.heartbeat_timeout_ms``, never a hang.

The bus the card sits on (the engine's config block, from its ``bus`` section) sets
what register accesses cost this CPU: the compiled calls pay each register write
(host/datapath.py ``pio_write``), Python's register reads are paid through
``datapath.register_reads`` (two per engine check, ``bus.interrupt_reads`` per
interrupt taken). :meth:`Driver.bus_counts` says what was paid. The wait machinery (wait_for, the
spin and sleep loops) is host/driver_wait.py's EventWaits, a mixin of Driver.

Every ring operation is a compiled call of host/datapath.py on the driver's state
arrays (``qp``, ``conns``, ``bufs``); the socket layer's send and receive calls are
too, one per socket call. A compiled call holds the GIL, so it is atomic with
respect to the process's other threads: the ring state needs no lock.

Threads: events are consumed by whichever waiting thread holds ``_consumer`` and
dispatched (completions by cookie, the rest to ``on_event``); other waiters sleep on
a condition the consumer notifies. RECV_DATA for a registered connection
(:meth:`Driver.register`) is attached to its row by the compiled poll itself.
``on_event`` runs in the consuming thread: it may post requests, but must not wait
(``call``/``wait_for``) itself. ``close`` from one thread while another waits wakes
the waiter, which raises OSError(EBADF); the semaphore and mappings go only once it
has left them (closing a semaphore a thread sleeps on crashes the process).
"""
from __future__ import annotations

import errno
import itertools
import os
import threading
import time
from collections import deque
from typing import Callable, NamedTuple, Optional

import numpy as np

from host import bus_counts, datapath
from host.datapath import COUNT, NO_SLOT, POLL_READY, WAKE
from host.driver_wait import (MIN_SPIN_S, PROBE_MASK, SPIN_CHECKS,  # noqa: F401
                              SPIN_PAYS_S, EventWaits, closed_error)
from toad import layout
from toad.addresses import pid_alive
from toad.engine_stats import OeMemory
from toad.errors import ToadError
from toad.rings import MASK32, ring_free
from toad.shm import (Segment, ShmError, close_semaphore, create_semaphore, open_semaphore,
                      unlink_semaphore)

SLEEP_SLICE_S = 0.05
CLOSE_WAIT_S = 1.0        # close(): longest wait for another thread to leave its wait
ROW_MASK = (1 << layout.CONN_ROW_BITS) - 1
POLL_OUT = 256            # events one poll hands to Python at most
QUICK_SPINS = 2           # call(): compiled spins on the ring before the general wait
Q = {name: i for i, name in enumerate(datapath.HOST_QP.names)}   # qp's int64 words
_SIGN = 1 << 63
TAKEN_MASK = (1 << 30) - 1   # poll's consumed count (below its POLL_READY bit)
# our page's command and status words (uint32 indices of ``regs``)
PAGE_COMMAND = layout.QP_HEADER_FIELDS["command"] // 4
PAGE_SEQ = layout.QP_HEADER_FIELDS["command_seq"] // 4
PAGE_STATE = layout.QP_HEADER_FIELDS["state"] // 4
PAGE_ACK = layout.QP_HEADER_FIELDS["ack_seq"] // 4
PAGE_ENGINE_STATE = layout.QP_HEADER_FIELDS["engine_state"] // 4
PAGE_HEARTBEAT = layout.QP_HEADER_FIELDS["heartbeat"] // 4


class EngineDead(OSError, ToadError):
    """The engine stopped, stopped advancing its heartbeat (ENETDOWN), or dropped this
    QP while the host still used it (ENETRESET): an OSError, so socket code that
    handles OSError handles it, and a ToadError, so a command prints its one line."""

    def __init__(self, message: str, code: int = errno.ENETDOWN):
        super().__init__(code, message)

    def __str__(self) -> str:
        return self.strerror


class Event(NamedTuple):
    """One event record (EVENT field order, without reserved and phase)."""
    type: int
    flags: int
    conn: int
    cookie: int
    status: int
    reason: int
    port: int
    buffer: int
    addr: int
    offset: int
    length: int
    value: int


EVENT_FIELDS = layout.EVENT_FIELDS          # the records poll copies out
_UNPACK_EVENT = layout.record_struct(EVENT_FIELDS).unpack_from
_new_event = tuple.__new__      # (Event._make without its classmethod call)
REQUEST_FIELDS = layout.REQUEST_SIGNED      # post_many's records
assert EVENT_FIELDS.names == Event._fields


def signed(value: int) -> int:
    """A u64 field's value as the int64 the compiled calls store (same bits)."""
    return value - (1 << 64) if value >= _SIGN else value


class Driver(EventWaits):
    """One QP of engine ``config.name`` for this process."""

    def __init__(self, config, on_event: Optional[Callable[[Event], None]] = None):
        self.name = config.name
        self.on_event = on_event
        # called (in the consuming thread) when rows of watched connections got data:
        # the socket layer signals their readiness descriptors (host/readiness.py)
        self.on_ready: Callable[[], None] = lambda: None
        self.pump = None       # a thread consuming events while no caller waits (readiness)
        self.app_waits = 0     # threads inside wait_for (the pump leaves them the rings)
        self.events: deque = deque()      # events nobody claimed (when on_event is None)
        self.busy_poll_s = config.qp.busy_poll_us / 1e6
        self.spin_s = self.busy_poll_s    # the next wait's spin budget (_adapt_spin)
        self.yield_spin = config.qp.busy_poll_mode == "yield"
        # batched receive waits (wait_for(batched=True)): events per interrupt, adapted
        self.rx_batch = 1
        self.rx_batch_max = max(1, min(config.qp.rx_batch_max, config.qp.recv_buffers // 4))
        self.rx_batch_s = config.qp.rx_batch_us / 1e6
        self.batch_sleeps = self.batch_timeouts = 0
        self.waits = 0
        self.layout = lay = layout.qp_layout(config.qp)
        self.oe = OeMemory(self.name, keep_fd=True)   # (the fd holds the slot's claim)
        self.segment = self.irq = self.wake = None
        self.irq_name = None
        self.seg = self.regs = self.mv = self.u32 = self.u64 = None
        self.closed = False
        self.enabled = False         # the engine acknowledged our enable (in our page)
        self.enable_sent = False     # we asked for it
        self.engine_dead = ""        # why the engine was found dead (once it was)
        self.dead_errno = errno.ENETDOWN
        self.on_dead: Optional[Callable[[int], None]] = None   # called once, with the errno
        self.heartbeat_timeout = int(self.oe.config["heartbeat_timeout_ms"]) / 1000.0
        # a busy-polling engine never sleeps: doorbells need no "sleeping" check
        self.engine_may_sleep = int(self.oe.config["polling"]) != layout.POLLING_BUSY
        self.engine_pid = self.oe.pid()
        self._last_heartbeat, self._heartbeat_seen = -1, time.monotonic()
        self._page_heartbeat, self._page_seen = -1, time.monotonic()   # (our page's copy)
        self.liveness_disputed = 0   # times OE memory said dead and our page did not
        self.qp = None                   # (the ring state, once the QP is enabled)
        self.interrupts = 0              # sleeps an interrupt ended
        self.interrupt_reads = int(self.oe.config["interrupt_reads"])
        self.bus_ns_per_cycle = 0.0      # (set with the PIO costs, if any)
        self.check_engine()
        self._consumer = threading.Lock()
        self._cond = threading.Condition()
        self._waiters = 0
        self._sleepers = 0                     # threads inside irq.acquire (close waits)
        self._sleep_lock = threading.Lock()
        self._awaited: set[int] = set()
        self._done: dict[int, Event] = {}
        self._cookies = itertools.count(1)
        self._undelivered: deque = deque()     # events taken but not dispatched yet
        self.sleeps = 0              # times a waiter slept on the interrupt semaphore
        self.irq_timeouts = 0        # ... and woke up by timeout instead of an interrupt
        self.waited_s = self.slept_s = 0.0   # time in wait_for, and asleep in it
        self.sleep_slice = SLEEP_SLICE_S  # longest single sleep (heartbeat checked between)
        self.out = np.zeros(POLL_OUT, layout.EVENT)        # events poll copies out
        self.out_raw = self.out.view(np.uint8)
        self.out_view = memoryview(self.out_raw)   # (decoding from it is cheaper)
        try:
            self.slot = self._claim_slot()
            self.wake = open_semaphore(layout.wake_name(self.name, self.oe.generation()))
            self._create_segment(lay)
            self._enable()
        except BaseException:
            self._release()
            raise

    # ---- setup -------------------------------------------------------------------------
    def _claim_slot(self) -> int:
        for slot in range(self.oe.layout.max_qps):
            if self.oe.claim_slot(slot):
                return slot
        raise ToadError(f"all {self.oe.layout.max_qps} QP slots of engine {self.name!r} are "
                        f"in use (raise engine.max_qps)")

    def _create_segment(self, lay: layout.QpLayout) -> None:
        """The QP's segment and interrupt semaphore, both created exclusively under a
        fresh random name (a name taken already, by chance or by another process, is
        never opened: another is drawn)."""
        for _ in range(8):
            name = layout.qp_segment_name(self.name, self.slot, os.getpid(), layout.new_token())
            try:
                self.segment = Segment(name, lay.total_bytes, create=True)
            except ShmError:
                continue
            try:
                self.irq = create_semaphore(layout.irq_name(name))
                self.irq_name = layout.irq_name(name)
                break
            except ShmError:
                self.segment.close()
                self.segment.unlink()
                self.segment = None
        else:
            raise ToadError(f"engine {self.name!r}: no free name for a QP segment")
        buf = self.segment.map
        header = np.frombuffer(buf, layout.QP_HEADER, 1)
        for field in layout.QpLayout.__dataclass_fields__:
            header[field] = getattr(lay, field)
        header["version"], header["features"] = layout.LAYOUT_VERSION, layout.FEATURES
        header["header_bytes"], header["slot"] = layout.QP_HEADER.itemsize, self.slot
        header["owner_pid"] = os.getpid()
        header["magic"] = layout.QP_MAGIC   # publish: the header above is complete
        del header
        self.mv = memoryview(buf)
        self.u32 = self.mv.cast("I")
        self.u64 = self.mv.cast("Q")
        self.seg = np.frombuffer(buf, np.uint8)          # the same, for compiled calls
        # the QP's doorbell page, as uint32 words (layout.DOORBELL_WORDS index it)
        self.regs = np.frombuffer(buf, np.uint32)
        self.request_consumer_word = layout.QP_HEADER_FIELDS["request_consumer"] // 4
        self.rxbuf_consumer_word = layout.QP_HEADER_FIELDS["rxbuf_consumer"] // 4

    def _slot_word(self, field: str) -> int:
        return self.oe.slot_word(self.slot, field)

    def _enable(self) -> None:
        """Have the engine map our segment: the slot's registers (OE memory) name it,
        CMD_ENABLE; the engine's answer that counts is in our own page (QP_HEADER.
        state): another process may write the slot's, never our page."""
        u32, slot = self.oe.u32, self.oe.slots[self.slot]
        slot["host_pid"] = os.getpid()
        slot["segment_bytes"] = self.segment.size
        slot["segment_name"] = layout.segment_name(self.segment.name)
        del slot
        words = layout.DOORBELL_WORDS      # (in our page: all zero in a new segment)
        self.req_doorbell = words["request_producer"]
        self.event_doorbell = words["event_consumer"]
        self.rxbuf_doorbell = words["rxbuf_producer"]
        self.irq_enabled_word = words["irq_enabled"]
        self.irq_index_word = words["irq_event_index"]
        self.qp, self.conns, self.bufs = datapath.new_state(
            self.layout, words, self.engine_may_sleep, 1)
        self.q = self.qp.view(np.int64)          # the same record, one word per field
        self._set_pio_costs()
        bus_counts.register(self.bus_counts)     # (for the workloads' measured intervals)
        seq = (u32[self._slot_word("command_seq")] + 1) & MASK32
        u32[self._slot_word("command")] = layout.CMD_ENABLE
        u32[self._slot_word("command_seq")] = seq   # publish: the command is written
        self.enable_sent = True
        self.wake.release()
        while self.regs[PAGE_STATE] != layout.SLOT_ACTIVE:
            if u32[self._slot_word("ack_seq")] == seq and \
                    self.regs[PAGE_STATE] != layout.SLOT_ACTIVE:
                code = u32[self._slot_word("error")]
                raise ToadError(f"engine {self.name!r} refused QP slot {self.slot}: "
                                f"{os.strerror(code) if code else 'unknown reason'}")
            self.check_engine()
            time.sleep(0.0005)
        self.enabled = True

    def _set_pio_costs(self) -> None:
        """The card's PIO costs, in TSC cycles (ns from the engine's config block)."""
        config = self.oe.config
        costs = float(config["pio_write_ns"]), float(config["pio_read_ns"])
        if not any(costs):
            return
        from toad.tsc import bus_ns_per_cycle
        self.bus_ns_per_cycle = rate = bus_ns_per_cycle()
        self.qp["pio_write_cycles"], self.qp["pio_read_cycles"] = (round(ns / rate)
                                                                   for ns in costs)

    def bus_counts(self) -> dict:
        """What this QP's host paid the bus so far: register writes (doorbells),
        register reads, interrupts taken, and the time spent on them (ns)."""
        q = self.q
        return {"doorbells": int(q[Q["pio_writes"]]), "register_reads": int(q[Q["pio_reads"]]),
                "interrupts": self.interrupts,
                "bus_ns": round(int(q[Q["bus_cycles"]]) * self.bus_ns_per_cycle)}

    def _disable(self, wait: bool = True) -> None:
        """CMD_DISABLE through our own page; wait for the engine's acknowledgement
        there (``wait`` False: a host giving up an enable it may not have seen)."""
        regs = self.regs
        seq = (int(regs[PAGE_SEQ]) + 1) & MASK32
        regs[PAGE_COMMAND] = layout.CMD_DISABLE
        regs[PAGE_SEQ] = seq                # publish: the command is written
        self.wake.release()
        while wait and regs[PAGE_ACK] != seq:
            self.check_engine()
            time.sleep(0.0005)

    def set_moderation(self, events: int = 0, micros: int = 0) -> None:
        """Per-QP interrupt moderation (0 = the engine's configured default)."""
        self.regs[layout.DOORBELL_WORDS["moderation_events"]] = events
        self.regs[layout.DOORBELL_WORDS["moderation_us"]] = micros

    # ---- engine liveness ---------------------------------------------------------------
    def check_engine(self) -> None:
        """Raise EngineDead if the engine stopped, its heartbeat stalled too long, or
        it no longer serves this QP (every wait of the driver calls this between its
        polls: none waits on the engine without this deadline)."""
        if self.engine_dead:
            raise EngineDead(self.engine_dead, self.dead_errno)
        now = time.monotonic()
        if self.qp is not None:          # the heartbeat and the state: two register reads
            datapath.register_reads(self.qp, 2)
        beat = self.oe.heartbeat()
        if beat != self._last_heartbeat:
            self._last_heartbeat, self._heartbeat_seen = beat, now
        state = self.oe.state()
        stalled = now - self._heartbeat_seen
        code = errno.ENETDOWN
        mirrored = self.enabled and not self.closed
        if mirrored:             # (our own memory: no register read)
            page_beat = int(self.regs[PAGE_HEARTBEAT])
            if page_beat != self._page_heartbeat:
                self._page_heartbeat, self._page_seen = page_beat, now
        if mirrored and (state in (layout.ENGINE_STOPPING, layout.ENGINE_STOPPED)
                         or stalled > self.heartbeat_timeout):
            # OE memory is every host's to write: believe it only if our own page,
            # which only the engine writes besides us, agrees
            if self.regs[PAGE_ENGINE_STATE] == layout.ENGINE_RUNNING and \
                    now - self._page_seen <= self.heartbeat_timeout:
                self.liveness_disputed += 1
                state, stalled = layout.ENGINE_RUNNING, 0.0
            else:
                state = int(self.regs[PAGE_ENGINE_STATE])
                stalled = now - self._page_seen
        if state in (layout.ENGINE_STOPPING, layout.ENGINE_STOPPED):
            why = "has stopped"
        elif stalled > self.heartbeat_timeout:
            why = f"is not responding (heartbeat unchanged for {stalled:.1f} s)"
        elif stalled > 0.05 and not pid_alive(self.engine_pid):
            why = f"process {self.engine_pid} has died"
        elif self.enabled and not self.closed and self.regs[PAGE_STATE] != layout.SLOT_ACTIVE:
            why, code = f"detached QP slot {self.slot} while it was in use", errno.ENETRESET
        else:
            return
        self.engine_dead = f"engine {self.name!r} {why}; is `toad engine` running?"
        self.dead_errno = code
        if self.on_dead is not None:
            self.on_dead(code)
        raise EngineDead(self.engine_dead, code)

    # ---- indices (the compiled calls keep them in ``qp``) ----------------------------
    @property
    def request_producer(self) -> int:
        return int(self.q[Q["request_producer"]])

    @property
    def request_room(self) -> int:
        """Request slots known free (the engine's consumer index is read when 0)."""
        return int(self.q[Q["request_room"]])

    @property
    def event_consumer(self) -> int:
        return int(self.q[Q["event_consumer"]])

    @property
    def rxbuf_producer(self) -> int:
        return int(self.q[Q["rxbuf_producer"]])

    @property
    def recv_attached(self) -> int:
        """RECV_DATA events the compiled poll attached to their connection so far."""
        return int(self.q[Q["attached"]])

    def wake_engine(self, result: int) -> int:
        """Post the engine's wake semaphore if a compiled call said it sleeps; returns
        the call's count."""
        if result > COUNT:
            if result & WAKE:
                self.wake.release()
            return result & COUNT
        return result

    # ---- requests --------------------------------------------------------------------------
    def new_cookie(self) -> int:
        return next(self._cookies)  # itertools.count: atomic under the GIL

    def post(self, opcode: int, flags: int = 0, conn: int = 0, cookie: int = 0,
             addr: int = 0, port: int = 0, option: int = 0, offset: int = 0,
             length: int = 0, value: int = 0) -> None:
        """Post one request and ring the doorbell (waiting for a free slot, consuming
        events meanwhile: the engine reads requests only while it can answer them)."""
        result = datapath.post(self.seg, self.regs, self.qp, opcode, flags, conn, cookie,
                               addr, port, option, offset, length, value)
        if result:
            while result == NO_SLOT:
                self._wait_request_space(1)
                result = datapath.post(self.seg, self.regs, self.qp, opcode, flags, conn,
                                       cookie, addr, port, option, offset, length, value)
            if result & WAKE:
                self.wake.release()

    def post_many(self, records: list[tuple]) -> None:
        """Post request tuples (REQUEST field order) with one doorbell write."""
        batch = np.zeros(len(records), REQUEST_FIELDS)
        batch[:] = [tuple(signed(v) for v in values) for values in records]
        self._post_records(batch.view(np.uint8), len(records))

    def post_array(self, records: np.ndarray) -> None:
        """Post a numpy array of REQUEST records (batches) with one doorbell write."""
        self._post_records(np.ascontiguousarray(records, layout.REQUEST).view(np.uint8),
                           len(records))

    def _post_records(self, raw: np.ndarray, count: int) -> None:
        if count > self.layout.request_entries:
            raise ValueError(f"{count} records exceed the request ring "
                             f"({self.layout.request_entries})")
        result = datapath.post_records(self.seg, self.regs, self.qp, raw, count)
        while result == NO_SLOT:
            self._wait_request_space(count)
            result = datapath.post_records(self.seg, self.regs, self.qp, raw, count)
        self.wake_engine(result)

    def request_space(self) -> int:
        return ring_free(self.layout.request_entries, self.request_producer,
                         self.u32[self.request_consumer_word])

    def _wait_request_space(self, count: int) -> None:
        spins = 0
        while self.request_space() < count:
            # the engine stops reading requests while the event ring is full: consume
            self.try_poll(force=True)
            spins += 1
            if spins & 255 == 0:
                self.check_engine()
                time.sleep(0.0001)

    def call(self, opcode: int, timeout: Optional[float] = None, **fields) -> Event:
        """Post a request and wait for its COMPLETION or ERROR event. A host that may
        spin first watches the event ring in compiled code for a moment (an engine
        that polls answers in microseconds), before the general wait."""
        cookie = next(self._cookies)
        awaited, done = self._awaited, self._done
        awaited.add(cookie)
        try:
            self.post(opcode, cookie=cookie, **fields)
            if self.busy_poll_s and self._consumer.acquire(False):
                try:
                    for _ in range(QUICK_SPINS):
                        if datapath.spin(self.seg, self.qp, SPIN_CHECKS):
                            self.poll()
                            if cookie in done:
                                return done.pop(cookie)
                finally:
                    self._consumer.release()
            if not self.wait_for(lambda: cookie in done, timeout):
                raise TimeoutError(f"no answer to {layout.OPCODE_NAMES.get(opcode, opcode)} "
                                   f"within {timeout} s")
            return done.pop(cookie)
        finally:
            awaited.discard(cookie)         # (forget)
            done.pop(cookie, None)

    def start(self, opcode: int, **fields) -> int:
        """Post a request whose answer is claimed later (``answer``): its cookie."""
        cookie = self.new_cookie()
        self._awaited.add(cookie)
        try:
            self.post(opcode, cookie=cookie, **fields)
        except BaseException:
            self._awaited.discard(cookie)
            raise
        return cookie

    def answer(self, cookie: int) -> Optional[Event]:
        """The COMPLETION or ERROR event of a ``start``ed request once it is in (events
        ready now are consumed first), else None."""
        if cookie not in self._done:
            self.try_poll()
        event = self._done.pop(cookie, None)
        if event is not None:
            self._awaited.discard(cookie)
        return event

    def answered(self, cookie: int) -> bool:
        return cookie in self._done

    def forget(self, cookie: int) -> None:
        """No longer claim a ``start``ed request's answer (it goes to on_event)."""
        self._awaited.discard(cookie)
        self._done.pop(cookie, None)

    # ---- events ------------------------------------------------------------------------
    def event_ready(self) -> bool:
        return self.published(self.event_consumer)

    def poll(self, limit: int = 256) -> int:
        """Consume and dispatch ready events (caller holds the consumer role); returns
        how many were consumed. A RECV_DATA for a registered connection is attached by
        the compiled call; the others are dispatched here, in ring order."""
        undelivered = self._undelivered
        if undelivered:                 # left by a handler that raised
            self._deliver(undelivered)
        result = datapath.poll(self.seg, self.regs, self.qp, self.conns, self.bufs,
                               self.out_raw, limit)
        if not result:
            return 0
        if result & POLL_READY:          # data for rows whose descriptor needs a signal
            self.on_ready()
        copied = result & 0xFFFFFFFF
        if copied:
            out, dispatch = self.out_view, self._dispatch
            for k in range(copied):
                try:
                    dispatch(_new_event(Event, _UNPACK_EVENT(out, k * 64)))
                except BaseException:   # the rest go first at the next poll
                    undelivered.extend(_new_event(Event, _UNPACK_EVENT(out, j * 64))
                                       for j in range(k + 1, copied))
                    raise
        if self._waiters:
            with self._cond:
                self._cond.notify_all()
        return (result >> 32) & TAKEN_MASK

    def _deliver(self, events: deque) -> None:
        """Dispatch queued events; one whose handler raises is consumed all the same."""
        while events:
            self._dispatch(events.popleft())

    def try_poll(self, force: bool = False) -> int:
        """Consume ready events if no other thread is consuming (never waits)."""
        if not force and not self._undelivered and not self.event_ready():
            return 0          # nothing published (a hint only: poll decides under the role)
        if not self._consumer.acquire(False):
            return 0
        try:
            return self.poll()
        finally:
            self._consumer.release()

    def _dispatch(self, event: Event) -> None:
        if event.cookie in self._awaited and event.type in (layout.EV_COMPLETION, layout.EV_ERROR):
            self._done[event.cookie] = event
        elif self.on_event is not None:
            self.on_event(event)
        else:
            self.events.append(event)

    # ---- connections, receive buffers and counters ------------------------------------------
    def register(self, conn: int) -> None:
        """A new connection's row (nothing attached, nothing sent or read yet); RECV_DATA
        for ``conn`` is attached to it by the compiled poll from now on."""
        row = conn & ROW_MASK
        if not 0 < row < self.layout.counter_rows:
            raise ValueError(f"connection id {conn:#x} has no counter row in this QP")
        datapath.open_row(self.conns, row, conn)

    def unregister(self, conn: int) -> list[int]:
        """Stop attaching ``conn``'s buffers; returns the ids of those attached and not
        read (the caller gives them back)."""
        row = conn & ROW_MASK
        if not 0 < row < self.layout.counter_rows or self.conns[row]["conn"] != conn:
            return []
        ids, buffer_id = [], datapath.detach_row(self.conns, self.bufs, row)
        nexts = self.bufs["next"]
        while buffer_id >= 0:
            ids.append(buffer_id)
            buffer_id = int(nexts[buffer_id])
        return ids

    def recv_buffer_offset(self, index: int) -> int:
        """Offset of anonymous buffer ``index`` inside this QP's receive area."""
        return self.layout.buffer_at(index)[0]

    def post_rx_buffers(self, buffers: list[tuple[int, int, int]]) -> None:
        """Give (offset, length, id) anonymous buffers to the engine (any entries: the
        engine checks them)."""
        entries = np.array([(signed(offset), length, buf_id)
                            for offset, length, buf_id in buffers], np.int64).reshape(-1, 3)
        while self.wake_engine(datapath.give_buffers(self.seg, self.regs, self.qp,
                                                     entries)) == NO_SLOT:
            self.check_engine()
            time.sleep(0.0001)

    def return_buffers(self, ids: list[int]) -> None:
        """Give whole anonymous buffers ``ids`` back to the engine (with the consumed
        counters of the connections that read them: flush_returns)."""
        for buf_id in ids:
            datapath.release(self.qp, self.conns, self.bufs, -1, buf_id, 0)
        self.flush_returns()

    def flush_returns(self) -> None:
        """Hand back the buffers read (and the consumed counters that count them)."""
        while self.wake_engine(datapath.flush(self.seg, self.regs, self.qp, self.conns,
                                              self.bufs)) == NO_SLOT:
            self.check_engine()      # (the engine takes entries as it needs buffers)
            time.sleep(0.0001)

    def rxbuf_taken(self) -> int:
        """How far the engine has taken receive buffers (its consumer index)."""
        return self.u32[self.rxbuf_consumer_word]

    def bytes_acked(self, conn: int) -> int:
        """Cumulative bytes sent and acknowledged on ``conn`` (written by the engine)."""
        return datapath.acked(self.seg, self.qp, conn)

    def set_bytes_consumed(self, conn: int, total: int) -> None:
        """Tell the engine how many bytes the application has read so far."""
        datapath.store_consumed(self.seg, self.qp, conn, total)

    def area(self, offset: int, length: int) -> memoryview:
        """A view of this QP's own memory (send or receive area)."""
        return self.mv[offset:offset + length]

    # ---- shutdown -------------------------------------------------------------------------
    def close(self) -> None:
        """Disable the QP (if the engine lives), remove the segment and semaphore."""
        if self.closed:
            return
        with self._sleep_lock:
            self.closed = True
            sleepers = self._sleepers
        for _ in range(sleepers):              # wake threads asleep on the interrupt
            self.irq.release()
        # a waiting thread holds _consumer until it has seen `closed` and left the
        # rings and the semaphore; only then may they go
        left = self._consumer.acquire(timeout=CLOSE_WAIT_S)
        try:
            if not self.engine_dead and self.enabled:
                try:
                    self._disable()
                except EngineDead:
                    pass
        finally:
            try:
                self._release(close_irq=left and not self._sleepers)
            finally:
                if left:
                    self._consumer.release()

    def _release(self, close_irq: bool = True) -> None:
        """Unmap, and unlink what this driver created (its segment and interrupt
        semaphore, unless the engine enabled the QP: it unlinked both names then;
        never the engine's objects, even of a dead engine: a new engine of the same
        name may own those names by now, and it removes a dead one's); ``close_irq``
        False leaves the interrupt semaphore's handle open (a thread may still sleep
        on it)."""
        if self.enable_sent and not self.enabled and self.regs is not None \
                and not self.engine_dead:
            self._disable(wait=False)   # (an engine that attached us after all lets go)
        for view in ("u32", "u64", "mv"):
            if getattr(self, view, None) is not None:
                getattr(self, view).release()
                setattr(self, view, None)
        self.seg = self.regs = None            # numpy views go before their mappings
        if self.segment is not None:
            self.segment.close()
            if not self.enabled:
                self.segment.unlink()
        if self.irq is not None:
            if close_irq:
                close_semaphore(self.irq)
            if not self.enabled:
                unlink_semaphore(self.irq_name)
        close_semaphore(self.wake)
        self.oe.close()                       # (gives the slot's claim up)

    def __enter__(self) -> "Driver":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
