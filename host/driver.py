"""The host's OE driver: one queue pair, its rings, counters and interrupt.

    with Driver(config) as drv:                 # claim a slot, create + enable the QP
        ev = drv.call(layout.OP_ECHO, value=7)  # post, ring the doorbell, wait by cookie
        drv.post(layout.OP_NOP, flags=layout.REQ_SILENT)

What a host does, as TOAD's driver (section III-C): write request records into the
request ring in its own memory and the producer index into the QP's doorbell
register (a PIO write); find events by the phase bit at the event-ring head (no
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
``engine.heartbeat_timeout_ms``, never a hang. The wait machinery (wait_for, the
spin and sleep loops) is host/driver_wait.py's EventWaits, a mixin of Driver.

Threads: posting takes ``_post_lock``; events are consumed by whichever waiting
thread holds ``_consumer`` and dispatched (completions by cookie, the rest to
``on_event``); other waiters sleep on a condition the consumer notifies.
``on_event`` runs in the consuming thread: it may post requests, but must not wait
(``call``/``wait_for``) itself. ``close`` from one thread while another waits wakes
the waiter, which raises OSError(EBADF); the semaphore and mappings go only once it
has left them (closing a semaphore a thread sleeps on crashes the process).
"""
from __future__ import annotations

import itertools
import os
import struct
import threading
import time
from collections import deque
from typing import Callable, NamedTuple, Optional

import numpy as np

from host.driver_wait import (MIN_SPIN_S, PROBE_MASK, SPIN_PAYS_S,  # noqa: F401
                              EventWaits, closed_error)
from toad import layout
from toad.addresses import pid_alive
from toad.engine_stats import OeMemory
from toad.errors import ToadError
from toad.rings import MASK32, RecordRing, full_fence, ring_free
from toad.shm import (Segment, ShmError, close_semaphore, create_semaphore, open_semaphore,
                      unlink_segment, unlink_semaphore)

SLEEP_SLICE_S = 0.05
CLOSE_WAIT_S = 1.0        # close(): longest wait for another thread to leave its wait
_REQUEST = layout.REQUEST_STRUCT
ROW_MASK = (1 << layout.CONN_ROW_BITS) - 1
_OP_SEND, _SILENT = layout.OP_SEND, layout.REQ_SILENT
_SLEEPING = layout.ENGINE_SLEEPING_FLAG
_RECV_DATA = layout.EV_RECV_DATA
# an event's type, conn, buffer and length (all a RECV_DATA event needs): poll reads the
# whole body (EVENT_BODY_STRUCT) only for other events
_RECV_FIELDS = struct.Struct("<H2xI16xI12xQ").unpack_from
assert [layout.EVENT.fields[f][1] for f in ("type", "conn", "buffer", "length")] == \
    [0, 4, 24, 40], "EVENT moved a field _RECV_FIELDS reads: update its format"


class EngineDead(ToadError):
    """The engine stopped or stopped advancing its heartbeat."""


class Event(NamedTuple):
    """One event record (EVENT_BODY_STRUCT field order)."""
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



class Driver(EventWaits):
    """One QP of engine ``config.name`` for this process."""

    def __init__(self, config, on_event: Optional[Callable[[Event], None]] = None,
                 on_recv_data: Optional[Callable[[tuple], None]] = None):
        self.name = config.name
        self.on_event = on_event
        # RECV_DATA events (the common ones) as raw EVENT_BODY_STRUCT tuples: no
        # Event is built for them (used only together with on_event)
        self.on_recv_data = on_recv_data if on_event is not None else None
        self.events: deque = deque()      # events nobody claimed (when on_event is None)
        # conn -> the deque its RECV_DATA buffers go to: poll() attaches those itself
        # ([buffer, 0, length] entries; the common event: no call, no Event built)
        self.rx_queues: dict[int, deque] = {}
        self.recv_attached = 0            # RECV_DATA events poll() attached so far
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
        self.oe = OeMemory(self.name)
        self.segment = self.irq = self.wake = None
        self.closed = False
        self.engine_dead = False
        self.heartbeat_timeout = int(self.oe.config["heartbeat_timeout_ms"]) / 1000.0
        # a busy-polling engine never sleeps: doorbells need no "sleeping" check
        self.engine_may_sleep = int(self.oe.config["polling"]) != layout.POLLING_BUSY
        self.engine_pid = self.oe.pid()
        self._last_heartbeat, self._heartbeat_seen = -1, time.monotonic()
        self.check_engine()
        self._post_lock = threading.RLock()   # re-entrant: on_event may post
        self._consumer = threading.Lock()
        self._cond = threading.Condition()
        self._waiters = 0
        self._sleepers = 0                     # threads inside irq.acquire (close waits)
        self._sleep_lock = threading.Lock()
        self._awaited: set[int] = set()
        self._done: dict[int, Event] = {}
        self._cookies = itertools.count(1)
        self.sleeps = 0              # times a waiter slept on the interrupt semaphore
        self.irq_timeouts = 0        # ... and woke up by timeout instead of an interrupt
        self.waited_s = self.slept_s = 0.0   # time in wait_for, and asleep in it
        self.sleep_slice = SLEEP_SLICE_S  # longest single sleep (heartbeat checked between)
        self.request_producer = self.event_consumer = self.rxbuf_producer = 0
        self.request_room = 0        # request slots known free (post_send's cache)
        self._rx_entries: Optional[list[bytes]] = None   # return_buffers' packed entries
        try:
            self.slot, self.irq = self._claim_slot()
            self.wake = open_semaphore(layout.wake_name(self.name))
            self._create_segment(lay)
            self._enable()
        except BaseException:
            self._release()
            raise

    # ---- setup -------------------------------------------------------------------------
    def _claim_slot(self):
        for slot in range(self.oe.layout.max_qps):
            try:
                return slot, create_semaphore(layout.irq_name(self.name, slot))
            except ShmError:
                continue
        raise ToadError(f"all {self.oe.layout.max_qps} QP slots of engine {self.name!r} are "
                        f"in use (raise engine.max_qps)")

    def _create_segment(self, lay: layout.QpLayout) -> None:
        name = layout.qp_segment_name(self.name, self.slot, os.getpid())
        self.segment = Segment(name, lay.total_bytes, create=True)
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
        self.requests = RecordRing(buf, lay.request_offset, lay.request_entries, layout.REQUEST)
        self.request_base = lay.request_offset
        self.request_mask = lay.request_entries - 1
        self.request_entries = lay.request_entries
        self.request_consumer_word = layout.QP_HEADER_FIELDS["request_consumer"] // 4
        self.rxbuf_consumer_word = layout.QP_HEADER_FIELDS["rxbuf_consumer"] // 4
        self.engine_flags_word = layout.QP_HEADER_FIELDS["engine_flags"] // 4
        self._map_event_ring(lay)

    def _map_event_ring(self, lay: layout.QpLayout) -> None:
        """poll()'s view of the event ring in ``self.mv`` (entries a power of two)."""
        self.event_shift = lay.event_entries.bit_length() - 1
        self.event_phase_word = (lay.event_offset + layout.EVENT_PHASE_OFFSET) // 4
        # the phase word of event ``event_consumer`` and the value it has once that
        # event is published (poll's one-load test for "nothing new")
        self.next_phase_word, self.next_phase = self.event_phase_word, 1
        # what poll() reads the ring with (one load instead of eight)
        self._event_ring = (layout.EVENT_BODY_STRUCT.unpack_from, self.mv,
                            lay.event_entries - 1, self.event_shift, lay.event_offset,
                            self.event_phase_word)

    def _slot_word(self, field: str) -> int:
        return self.oe.slot_word(self.slot, field)

    def _enable(self) -> None:
        u32, slot = self.oe.u32, self.oe.slots[self.slot]
        for field in ("request_producer", "event_consumer", "rxbuf_producer", "irq_enabled",
                      "irq_event_index", "moderation_events", "moderation_us"):
            u32[self._slot_word(field)] = 0
        slot["host_pid"] = os.getpid()
        slot["segment_bytes"] = self.segment.size
        slot["segment_name"] = layout.segment_name(self.segment.name)
        del slot
        self.oe_u32 = u32   # the engine's registers (doorbells: PIO writes)
        self.req_doorbell = self._slot_word("request_producer")
        self.event_doorbell = self._slot_word("event_consumer")
        self.rxbuf_doorbell = self._slot_word("rxbuf_producer")
        self.irq_enabled_word = self._slot_word("irq_enabled")
        self.irq_index_word = self._slot_word("irq_event_index")
        if self._command(layout.CMD_ENABLE) != layout.SLOT_ACTIVE:
            code = u32[self._slot_word("error")]
            raise ToadError(f"engine {self.name!r} refused QP slot {self.slot}: "
                            f"{os.strerror(code) if code else 'unknown reason'}")

    def _command(self, command: int) -> int:
        """Write a slot command, wake the engine, wait for its acknowledgement."""
        u32 = self.oe.u32
        seq = (u32[self._slot_word("command_seq")] + 1) & MASK32
        u32[self._slot_word("command")] = command
        u32[self._slot_word("command_seq")] = seq   # publish: the command is written
        self.wake.release()
        while u32[self._slot_word("ack_seq")] != seq:
            self.check_engine()
            time.sleep(0.0005)
        return u32[self._slot_word("state")]

    def set_moderation(self, events: int = 0, micros: int = 0) -> None:
        """Per-QP interrupt moderation (0 = the engine's configured default)."""
        self.oe.u32[self._slot_word("moderation_events")] = events
        self.oe.u32[self._slot_word("moderation_us")] = micros

    # ---- engine liveness ---------------------------------------------------------------
    def check_engine(self) -> None:
        """Raise EngineDead if the engine stopped or its heartbeat stalled too long."""
        if self.engine_dead:
            raise EngineDead(f"engine {self.name!r} is gone")
        now = time.monotonic()
        beat = self.oe.heartbeat()
        if beat != self._last_heartbeat:
            self._last_heartbeat, self._heartbeat_seen = beat, now
        state = self.oe.state()
        stalled = now - self._heartbeat_seen
        if state in (layout.ENGINE_STOPPING, layout.ENGINE_STOPPED):
            why = "has stopped"
        elif stalled > self.heartbeat_timeout:
            why = f"is not responding (heartbeat unchanged for {stalled:.1f} s)"
        elif stalled > 0.05 and not pid_alive(self.engine_pid):
            why = f"process {self.engine_pid} has died"
        else:
            return
        self.engine_dead = True
        raise EngineDead(f"engine {self.name!r} {why}; is `toad engine` running?")

    # ---- requests --------------------------------------------------------------------------
    def new_cookie(self) -> int:
        return next(self._cookies)  # itertools.count: atomic under the GIL

    def post(self, opcode: int, flags: int = 0, conn: int = 0, cookie: int = 0,
             addr: int = 0, port: int = 0, option: int = 0, offset: int = 0,
             length: int = 0, value: int = 0) -> None:
        """Post one request and ring the doorbell."""
        with self._post_lock:
            if ((self.request_producer - self.u32[self.request_consumer_word]) & MASK32) \
                    >= self.request_entries:
                self._wait_request_space(1)   # may dispatch events whose handlers post
            index = self.request_producer
            _REQUEST.pack_into(self.mv, self.request_base + (index & self.request_mask) * 64,
                               opcode, flags, conn, cookie, addr, port, option, offset,
                               length, value)
            self._ring_request_doorbell((index + 1) & MASK32)

    def post_send(self, conn: int, offset: int, length: int) -> None:
        """``post(OP_SEND, REQ_SILENT, conn, offset=, length=)`` without the keyword
        defaults and calls: the one request of the bulk send path. The engine's
        consumer index is read only when ``request_room`` (slots known free) is used
        up. (acquire/release, not ``with``: half the cost of a lock on this path.)"""
        lock = self._post_lock
        lock.acquire()
        try:
            index = self.request_producer
            if not self.request_room:
                self._refresh_request_room()    # may wait, dispatching events
                index = self.request_producer
            self.request_room -= 1
            _REQUEST.pack_into(self.mv, self.request_base + (index & self.request_mask) * 64,
                               _OP_SEND, _SILENT, conn, 0, 0, 0, 0, offset, length, 0)
            index = (index + 1) & MASK32
            self.request_producer = index
            self.oe_u32[self.req_doorbell] = index  # publish: the record is written
        finally:
            lock.release()
        # Releasing a CPython lock is sem_post, an atomic read-modify-write (lock
        # cmpxchg on x86-64): a full barrier as full_fence's acquire, so the doorbell
        # is visible before we read "engine sleeping". (A nested release of this RLock
        # is no barrier; the post that holds it outside rings its doorbell and checks.)
        if self.engine_may_sleep and self.u32[self.engine_flags_word] & _SLEEPING:
            self.wake.release()

    def _refresh_request_room(self) -> None:
        """Read the engine's request consumer index (caller holds ``_post_lock``);
        wait (consuming events) while the ring is full."""
        if self.request_space() < 1:
            self._wait_request_space(1)   # may dispatch events whose handlers post
        self.request_room = self.request_space()

    def post_many(self, records: list[tuple]) -> None:
        """Post request tuples (REQUEST_STRUCT order) with one doorbell write."""
        pack, mv, ring = layout.REQUEST_STRUCT.pack_into, self.mv, self.requests
        with self._post_lock:
            self._wait_request_space(len(records))
            index = self.request_producer
            for values in records:
                pack(mv, ring.byte_offset(index), *values)
                index = (index + 1) & MASK32
            self._ring_request_doorbell(index)

    def post_array(self, records: np.ndarray) -> None:
        """Post a numpy array of REQUEST records (batches) with one doorbell write."""
        with self._post_lock:
            self._wait_request_space(len(records))
            self.requests.write(self.request_producer, records)
            self._ring_request_doorbell((self.request_producer + len(records)) & MASK32)

    def _ring_request_doorbell(self, producer: int) -> None:
        self.request_producer = producer
        self.request_room = 0         # post_send re-reads the consumer index
        self.oe.u32[self.req_doorbell] = producer  # publish: the records are written
        if self.engine_may_sleep:
            full_fence()  # the doorbell is visible before we read "engine sleeping"
            if self.u32[self.engine_flags_word] & layout.ENGINE_SLEEPING_FLAG:
                self.wake.release()

    def request_space(self) -> int:
        return ring_free(self.layout.request_entries, self.request_producer,
                         self.u32[self.request_consumer_word])

    def _wait_request_space(self, count: int) -> None:
        if count > self.layout.request_entries:
            raise ValueError(f"{count} records exceed the request ring ({self.layout.request_entries})")
        spins = 0
        while self.request_space() < count:
            # the engine stops reading requests while the event ring is full: consume
            if self._consumer.acquire(False):
                try:
                    self.poll()
                finally:
                    self._consumer.release()
            spins += 1
            if spins & 255 == 0:
                self.check_engine()
                time.sleep(0.0001)

    def call(self, opcode: int, timeout: Optional[float] = None, **fields) -> Event:
        """Post a request and wait for its COMPLETION or ERROR event."""
        cookie = self.start(opcode, **fields)
        try:
            if not self.wait_for(lambda: cookie in self._done, timeout):
                raise TimeoutError(f"no answer to {layout.OPCODE_NAMES.get(opcode, opcode)} "
                                   f"within {timeout} s")
            return self._done.pop(cookie)
        finally:
            self.forget(cookie)

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
        """Consume and dispatch ready events (caller holds the consumer role)."""
        u32 = self.u32
        if u32[self.next_phase_word] != self.next_phase:
            return 0                  # nothing published (a spinning waiter's usual poll)
        unpack, mv, mask, shift, base, phase_word = self._event_ring
        index, count, attached = self.event_consumer, 0, 0
        slot, phase = index & mask, ((index >> shift) & 1) ^ 1   # of event ``index``
        rx_queues = self.rx_queues
        try:
            while count < limit:
                if u32[phase_word + slot * 16] != phase:
                    break
                at = base + slot * 64
                kind, conn, buffer, length = _RECV_FIELDS(mv, at)  # phase seen, then body
                count += 1
                slot += 1
                if slot > mask:               # the ring wrapped: the phase flips
                    slot, phase = 0, phase ^ 1
                if kind == _RECV_DATA:        # no cookie: never awaited
                    queue = rx_queues.get(conn)
                    if queue is not None and length:
                        queue.append([buffer, 0, length])  # buffer, start, length
                        attached += 1
                        continue
                values = unpack(mv, at)
                if kind == _RECV_DATA:
                    if self.on_recv_data is not None:
                        self.on_recv_data(values)
                        continue
                self._dispatch(Event._make(values))
        finally:   # even if a handler raised: the events taken are consumed
            if attached:
                self.recv_attached += attached
            if count:
                self.event_consumer = index = (index + count) & MASK32
                self.next_phase_word, self.next_phase = phase_word + slot * 16, phase
                self.oe.u32[self.event_doorbell] = index  # the engine may reuse the slots
                if self._waiters:
                    with self._cond:
                        self._cond.notify_all()
        return count

    def try_poll(self) -> int:
        """Consume ready events if no other thread is consuming (never waits)."""
        if self.u32[self.next_phase_word] != self.next_phase:
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

    # ---- receive buffers and counters --------------------------------------------------
    def recv_buffer_offset(self, index: int) -> int:
        """Offset of anonymous buffer ``index`` inside this QP's receive area."""
        return self.layout.recv_offset + index * self.layout.recv_buffer_bytes

    def post_rx_buffers(self, buffers: list[tuple[int, int, int]]) -> None:
        """Give (offset, length, id) free anonymous buffers to the engine."""
        lay = self.layout
        with self._post_lock:
            while ring_free(lay.rxbuf_entries, self.rxbuf_producer,
                            self.u32[self.rxbuf_consumer_word]) < len(buffers):
                self.check_engine()
                time.sleep(0.0001)
            index = self.rxbuf_producer
            for offset, length, buf_id in buffers:
                off = lay.rxbuf_offset + (index & (lay.rxbuf_entries - 1)) * layout.RXBUF.itemsize
                layout.RXBUF_STRUCT.pack_into(self.mv, off, offset, length, buf_id)
                index = (index + 1) & MASK32
            self._publish_rxbufs(index)

    def return_buffers(self, ids: list[int]) -> None:
        """Give whole anonymous buffers ``ids`` back to the engine (post_rx_buffers
        of (recv_buffer_offset(id), recv_buffer_bytes, id), from entries packed once)."""
        entries, lay = self._rx_entries, self.layout
        if entries is None:
            size, pack = lay.recv_buffer_bytes, layout.RXBUF_STRUCT.pack
            entries = self._rx_entries = [pack(self.recv_buffer_offset(i), size, i)
                                          for i in range(lay.recv_buffers)]
        mask, width, first = lay.rxbuf_entries - 1, layout.RXBUF.itemsize, lay.rxbuf_offset
        mv, count = self.mv, len(ids)
        with self._post_lock:
            index = self.rxbuf_producer
            while ring_free(lay.rxbuf_entries, index, self.u32[self.rxbuf_consumer_word]) \
                    < count:
                self.check_engine()
                time.sleep(0.0001)
            slot = index & mask
            if slot + count <= mask + 1:        # no wrap: all entries in one store
                at = first + slot * width
                mv[at:at + count * width] = b"".join(map(entries.__getitem__, ids))
                index = (index + count) & MASK32
            else:
                for buf_id in ids:
                    at = first + (index & mask) * width
                    mv[at:at + width] = entries[buf_id]
                    index = (index + 1) & MASK32
            self._publish_rxbufs(index)

    def _publish_rxbufs(self, index: int) -> None:
        self.rxbuf_producer = index
        self.oe.u32[self.rxbuf_doorbell] = index  # publish: entries are written
        if self.engine_may_sleep:
            full_fence()
            if self.u32[self.engine_flags_word] & layout.ENGINE_SLEEPING_FLAG:
                self.wake.release()

    def rxbuf_taken(self) -> int:
        """How far the engine has taken receive buffers (its consumer index)."""
        return self.u32[self.rxbuf_consumer_word]

    def _counter_word(self, conn: int, field_offset: int) -> int:
        row = conn & ROW_MASK
        return (self.layout.counters_offset + row * layout.COUNTER_ROW.itemsize + field_offset) // 8

    def bytes_acked(self, conn: int) -> int:
        """Cumulative bytes sent and acknowledged on ``conn`` (written by the engine)."""
        return self.u64[self._counter_word(conn, 0)]

    def set_bytes_consumed(self, conn: int, total: int) -> None:
        """Tell the engine how many bytes the application has read so far."""
        self.u64[self._counter_word(conn, 8)] = total

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
            if not self.engine_dead and self.segment is not None:
                try:
                    self._command(layout.CMD_DISABLE)
                except EngineDead:
                    pass
        finally:
            try:
                self._release(close_irq=left and not self._sleepers)
            finally:
                if left:
                    self._consumer.release()

    def _release(self, close_irq: bool = True) -> None:
        """Unmap and unlink everything; ``close_irq`` False leaves the interrupt
        semaphore's handle open (a thread may still sleep on it) but unlinks it."""
        for view in ("u32", "u64", "mv"):
            if getattr(self, view, None) is not None:
                getattr(self, view).release()
                setattr(self, view, None)
        self.requests = None
        if self.segment is not None:
            self.segment.close()
            self.segment.unlink()
        if self.irq is not None:
            if close_irq:
                close_semaphore(self.irq)
            unlink_semaphore(layout.irq_name(self.name, self.slot))
        close_semaphore(self.wake)
        engine_gone = self.engine_dead and not pid_alive(self.engine_pid)
        self.oe.close()
        if engine_gone:  # the engine cannot clean up after itself any more
            unlink_segment(layout.oe_name(self.name))
            unlink_semaphore(layout.wake_name(self.name))

    def __enter__(self) -> "Driver":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
