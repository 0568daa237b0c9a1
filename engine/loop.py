"""The engine's single-threaded event loop (TOAD section III-B: one pinned CPU, polling).

Each iteration (:meth:`Engine.iteration`) starts with one compiled scan of the QP
table (engine/ring_calls.py): it answers the requests that need no Python (NOP and
ECHO), marks the QPs whose records need the dispatcher and the interrupts that are
due (the host armed one, and moderation allows it). The loop then raises those
interrupts, serves the marked QPs (flush queued events, take the records up to the
doorbell, dispatch them, raise the interrupts of their answers), calls every poller
(``poll(now) -> did_work``), and advances the heartbeat. About every millisecond it also does
housekeeping: slot commands (enable / disable), host-death checks (pidfd), the
stats block.

Pollers are how later layers plug in without touching this loop: the NIC + TCP
stack is one. A poller has ``poll(now: float) -> bool`` and ``next_deadline() ->
float | None`` (seconds).

With a bus model (the ``bus`` config section) the engine owns the card's bus state,
on which every DMA waits (toad/rings/bus.py), and raises each interrupt
``bus.interrupt_us`` after it is due (its delivery): the loop keeps the interrupts in
flight and raises them once their time comes, without waiting for them.

Adaptive polling (io_uring SQPOLL style): after ``idle_us`` without work the engine
sets "sleeping" (in OE memory and mirrored in each QP header), fences, re-checks
every doorbell and command, and only then sleeps on the wake semaphore, at most
``sleep_slice_ms`` so the heartbeat keeps moving. A host that rings a doorbell
fences and reads the flag; one of the two always sees the other (no lost wake-up).
"""
from __future__ import annotations

import time
from collections import deque
from typing import Optional

import numpy as np
import posix_ipc

from engine import ring_calls as calls
from engine.handlers import REQUEST_SIGNED, Dispatcher
from engine.qp import QueuePair
from engine.registers import RegisterFile
from engine.slots import SlotManager
from toad import layout
from toad.rings import full_fence
from toad.rings.bus import new_bus
from toad.tsc import bus_ns_per_cycle as ns_per_cycle_checked

HOUSEKEEPING_NS = 1_000_000
_UNPACK_REQUESTS = layout.record_struct(REQUEST_SIGNED).iter_unpack
STATS_FLUSH_NS = 10_000_000


class Engine:
    """OE memory, attached QPs, pollers and the loop that serves them."""

    def __init__(self, config, clock=time.perf_counter_ns):
        self.config = config
        self.name = config.name
        self.clock = clock
        self.registers = RegisterFile(config.name, config)
        self.wake = self.registers.wake
        self.dispatcher = Dispatcher()
        self.pollers: list = []
        self.active: list[QueuePair] = []
        # every slot's engine-side ring state, one ENGINE_QP record each (attached QPs
        # are ``active``): the loop's compiled scans read the whole table in one call
        slots = config.engine.max_qps
        self.qp_table = np.zeros(slots, calls.ENGINE_QP)
        # which slots the scans marked: requests for the dispatcher, returned receive
        # buffers, interrupts due (one array: the loop's scan fills all three rows)
        self.scan_flags = np.zeros((3, slots), np.uint8)
        self.request_flags = self.scan_flags[calls.SCAN_REQUESTS]
        self.rxbuf_flags = self.scan_flags[calls.SCAN_RXBUFS]
        self.irq_flags = self.scan_flags[calls.SCAN_INTERRUPTS]
        self.rx_rung = 0            # QPs the last scan found with returned buffers
        self.heartbeat, self.heartbeat_word = self.registers.u64, self.registers.heartbeat_word
        self.bus, bus_ns_per_cycle = bus_state(config.bus)   # (kept alive: QPs point at it)
        self.slots = SlotManager(self, self.bus, bus_ns_per_cycle)
        # interrupts in flight (bus.interrupt_us): (time due, QP), in the order raised
        self.irq_delay_ns = round(config.bus.interrupt_us * 1000)
        self.in_flight: deque = deque()
        self.iterations = 0
        self.busy_ns = 0
        self.sleep_ns = 0
        self.sleeps = 0
        self.idle_wakeups = 0
        self.started_ns = time.monotonic_ns()
        self.last_flush = 0
        self.next_housekeeping = 0
        self.last_work = 0
        self.adaptive = config.engine.polling == "adaptive"
        self.idle_ns = config.engine.idle_us * 1000
        self.slice_s = config.engine.sleep_slice_ms / 1000.0

    def add_poller(self, poller) -> None:
        """Call ``poller.poll(now)`` every iteration (the NIC + TCP stack, timers...)."""
        self.pollers.append(poller)

    # ---- the loop ------------------------------------------------------------------
    def run(self, stop) -> None:
        """Serve until ``stop.stopped`` becomes true (set by a signal handler)."""
        clock = self.clock
        self.registers.set_state(layout.ENGINE_RUNNING)
        self.last_work = clock()
        while not stop.stopped:
            start = clock()
            if not self.iteration(start) and self.adaptive \
                    and start - self.last_work >= self.idle_ns:
                self.sleep(start)
        self.registers.set_state(layout.ENGINE_STOPPING)

    def iteration(self, now_ns: int) -> int:
        """One pass of the loop at time ``now_ns`` (the engine's clock): requests,
        pollers, interrupts, heartbeat, housekeeping when due. Returns the work done
        (records handled, pollers that worked); busy time is counted when nonzero."""
        result = calls.scan(self.qp_table, now_ns, self.scan_flags)
        work = result >> 40                    # NOP and ECHO the scan answered
        self.rx_rung = result >> 32 & 0xFF     # for the pollers (rx_doorbells)
        if self.in_flight:
            self._deliver(now_ns)
        if result & 0xFFFF:
            self._raise_marked(now_ns)
        if result >> 16 & 0xFFFF:              # the dispatcher's records: their events
            work += self._service_marked(now_ns)
            self.raise_interrupts(now_ns)
        now = now_ns / 1e9
        for poller in self.pollers:            # (they raise the interrupts of their events)
            if poller.poll(now):
                work += 1
        self.iterations += 1
        self.heartbeat[self.heartbeat_word] = self.iterations
        if now_ns >= self.next_housekeeping:
            work += self.housekeeping(now_ns)
            self.next_housekeeping = now_ns + HOUSEKEEPING_NS
        if work:
            self.last_work = self.clock()
            self.busy_ns += self.last_work - now_ns
        return work

    def raise_interrupts(self, now_ns: int) -> None:
        """Raise the interrupts that are due: events crossed the index a host armed,
        and moderation allows it. Pollers call this too, right after they post events,
        so a sleeping host does not wait for the rest of their pass."""
        if calls.scan_interrupts(self.qp_table, now_ns, self.irq_flags):
            self._raise_marked(now_ns)

    def _raise_marked(self, now_ns: int) -> None:
        flags = self.irq_flags
        for qp in self.active:
            if flags[qp.slot]:
                if self.irq_delay_ns:
                    self.in_flight.append((now_ns + self.irq_delay_ns, qp))
                else:
                    qp.interrupt.raise_()

    def _deliver(self, now_ns: int) -> None:
        """Raise the interrupts in flight whose delivery time has come (those of a QP
        detached meanwhile are dropped: its host is gone)."""
        in_flight, qps = self.in_flight, self.slots.qps
        while in_flight and in_flight[0][0] <= now_ns:
            _due, qp = in_flight.popleft()
            if qps[qp.slot] is qp:
                qp.interrupt.raise_()

    def service_all(self, now_ns: int) -> int:
        """Serve every attached QP with requests (or events waiting for room): one
        compiled scan answers what needs no Python (engine/ring_calls.py), the QPs it
        marks are served here (the offload poller between its rounds). Returns the
        records handled."""
        result = calls.scan_requests(self.qp_table, self.request_flags)
        if not result:
            return 0
        return (result >> 32) + (self._service_marked(now_ns) if result & 0xFFFFFFFF else 0)

    def _service_marked(self, now_ns: int) -> int:
        work, flags = 0, self.request_flags
        for qp in self.active:
            if flags[qp.slot]:
                work += self.service(qp, now_ns)
        return work

    def rx_doorbells(self, fresh: bool = True) -> list[QueuePair]:
        """The QPs whose host rang the receive-buffer doorbell since the last look:
        the iteration's scan found them (``fresh`` False), or a scan now."""
        if fresh:
            self.rx_rung = calls.scan_rxbufs(self.qp_table, self.rxbuf_flags)
        if not self.rx_rung:
            return []
        self.rx_rung = 0
        flags = self.rxbuf_flags
        return [qp for qp in self.active if flags[qp.slot]]

    def service(self, qp: QueuePair, now_ns: int) -> int:
        """One pass over a QP's rings; returns the number of records handled.

        Requests are taken only once no event waits in the backlog: each may answer
        with an event, and the compiled pass posts NOP and ECHO answers straight into
        the ring, which must not overtake older events."""
        work = qp.flush_backlog() if qp.backlog else 0
        before = qp.requests
        handle = self.dispatcher.handle_records
        while True:
            copied = qp.serve_requests() if not qp.backlog else \
                min(qp.pending_requests(), 0)      # (only a bad doorbell is news)
            if copied < 0:         # the value the call judged (the host may fix it since)
                qp.bad_doorbell_seen = qp.report_doorbell(qp.bad_doorbell,
                                                          qp.bad_doorbell_seen)
                break
            if not copied:
                break
            handle(qp, list(_UNPACK_REQUESTS(qp.request_raw[:copied * 64])))
        return work + qp.requests - before

    def housekeeping(self, now_ns: int) -> int:
        self.slots.mirror_liveness(layout.ENGINE_RUNNING, self.iterations)
        work = self.slots.scan_commands()
        work += self.slots.check_hosts(now_ns)
        work += self.slots.sweep_leftovers(now_ns)
        if now_ns - self.last_flush >= STATS_FLUSH_NS:
            self.flush_stats(now_ns)
        return work

    # ---- adaptive polling -------------------------------------------------------------
    def work_pending(self) -> bool:
        """Anything to do right now (checked after setting "sleeping")."""
        for qp in self.active:
            if qp.pending_requests() or (qp.backlog and qp.event_space()):
                return True
        if calls.rxbufs_rung(self.qp_table):
            return True               # a host returned receive buffers
        for poller in self.pollers:   # e.g. receive-buffer doorbells (engine/offload)
            pending = getattr(poller, "work_pending", None)
            if pending is not None and pending():
                return True
        return self.slots.commands_pending()

    def _sleep_timeout(self, now_ns: int) -> float:
        timeout = self.slice_s
        if self.in_flight:            # an interrupt on its way to a host
            timeout = min(timeout, (self.in_flight[0][0] - now_ns) / 1e9)
        deadline = calls.interrupt_deadline(self.qp_table)
        if deadline >= 0:             # a moderated interrupt waits for its delay
            timeout = min(timeout, (deadline - now_ns) / 1e9)
        for poller in self.pollers:
            deadline = poller.next_deadline()
            if deadline is not None:
                timeout = min(timeout, deadline - now_ns / 1e9)
        return timeout

    def _set_sleeping(self, flag: int) -> None:
        self.registers.u32[self.registers.sleeping_word] = flag
        for qp in self.active:
            qp.set_engine_flags(layout.ENGINE_SLEEPING_FLAG if flag else 0)

    def sleep(self, now_ns: int) -> None:
        timeout = self._sleep_timeout(now_ns)
        if timeout <= 0:
            return
        self._set_sleeping(1)
        full_fence()  # "sleeping" is visible before we look at the doorbells again
        if self.work_pending():
            self._set_sleeping(0)
            return
        self.flush_stats(now_ns)
        start = self.clock()
        try:
            self.wake.acquire(timeout)
        except posix_ipc.BusyError:
            self.idle_wakeups += 1
        except posix_ipc.SignalError:
            pass
        self._set_sleeping(0)
        self._drain_wake()
        self.sleeps += 1
        self.sleep_ns += self.clock() - start

    def _drain_wake(self) -> None:
        """Forget extra posts (several hosts may have rung while we slept)."""
        while True:
            try:
                self.wake.acquire(0)
            except posix_ipc.BusyError:
                return

    # ---- statistics / shutdown ----------------------------------------------------------
    def flush_stats(self, now_ns: Optional[int] = None) -> None:
        """Publish loop and per-QP counters in the OE stats block."""
        self.last_flush = now_ns if now_ns is not None else self.clock()
        u64, word = self.registers.u64, self.registers.stats_words
        u64[word["iterations"]] = self.iterations
        u64[word["busy_ns"]] = self.busy_ns
        u64[word["sleep_ns"]] = self.sleep_ns
        u64[word["sleeps"]] = self.sleeps
        u64[word["wakeups_idle"]] = self.idle_wakeups
        u64[word["started_ns"]] = self.started_ns
        u64[word["updated_ns"]] = time.monotonic_ns()
        u64[word["qps_reclaimed"]] = self.slots.reclaimed
        u64[word["commands_refused"]] = self.slots.refused
        for qp in self.active:
            self.slots.flush_qp_stats(qp)

    def close(self) -> None:
        """Detach every QP, publish "stopped", remove OE memory and the wake semaphore."""
        try:
            self.slots.mirror_liveness(layout.ENGINE_STOPPING, self.iterations)
            self.slots.detach_all()
            self.flush_stats()
            self.registers.set_state(layout.ENGINE_STOPPED)
        finally:
            self.registers.close()


def bus_state(bus) -> tuple[Optional[np.ndarray], float]:
    """(the bus state array every DMA waits on, ns per TSC cycle) of config section
    ``bus``: (None, 0.0) when the model has no DMA cost."""
    if not (bus.dma_latency_us or bus.dma_read_gbps or bus.dma_write_gbps):
        return None, 0.0
    rate = ns_per_cycle_checked()
    return new_bus(bus.dma_latency_us, bus.dma_read_gbps, bus.dma_write_gbps, rate), rate
