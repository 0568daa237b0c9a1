"""The host driver's waits: consume events until a condition holds (spin, then sleep).

:class:`EventWaits` is a mixin of host/driver.py's Driver (it uses the driver's rings,
registers, locks and counters; it has no state of its own). The policy, as the
driver's docstring describes: ``qp.busy_poll_mode`` adaptive (bulk) spins at most
``qp.busy_poll_us``, less while spins end asleep anyway (_adapt_spin, a probe of the
full budget every PROBE_MASK + 1 waits); yield (latency) always spins that long with
sched_yield between polls; then the waiter arms the QP's interrupt for an event index
and sleeps on its semaphore (sleep_on_interrupt), checking the engine's heartbeat
between sleep slices. A batched wait (a pure reader) arms it for the ``rx_batch``-th
next event (_batched_sleep). One thread consumes (it holds ``_consumer``); the others
sleep on ``_cond`` until it notifies them.
"""
from __future__ import annotations

import errno
import os
import time
from typing import Callable, Optional

import posix_ipc

from host import datapath

PROBE_MASK = 63           # every 64th wait spins the full busy_poll_us
MIN_SPIN_S = 2e-6
SPIN_PAYS_S = 10e-6      # a spin longer than this costs more CPU than a sleep + wake
SPIN_CHECKS = 256         # looks at the ring's head per compiled spin (a few us)


def closed_error() -> OSError:
    return OSError(errno.EBADF, "the QP was closed while this thread waited on it")


class EventWaits:
    """Driver's wait machinery (mixin: see the module docstring)."""

    def wait_for(self, ready: Callable[[], bool], timeout: Optional[float] = None,
                 batched: bool = False) -> bool:
        """Consume events (spin, then sleep on the interrupt) until ``ready()``.

        ``batched``: the caller only receives (a bulk reader). While it is the only
        waiter, it sleeps until ``rx_batch`` events are in, or ``qp.rx_batch_us`` at
        the latest, instead of waking at every event (_batched_sleep)."""
        if ready():
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._sleep_lock:
            self.app_waits += 1          # (the event pump leaves the rings to us)
        try:
            while not ready():
                if self.closed:
                    raise closed_error()
                if self._consumer.acquire(False):
                    try:
                        self._consume_until(ready, deadline, batched and not self._waiters)
                    finally:
                        self._consumer.release()
                        if self._waiters:      # let a waiting thread take over consuming
                            with self._cond:
                                self._cond.notify_all()
                else:
                    if self.pump is not None:   # asleep with the role: wake it to leave
                        self.pump.hand_over()
                    with self._cond:
                        self._waiters += 1
                        try:
                            self._cond.wait(0.005)
                        finally:
                            self._waiters -= 1
                if deadline is not None and time.monotonic() >= deadline:
                    return ready()
            return True
        finally:
            with self._sleep_lock:
                self.app_waits -= 1
                idle = not self.app_waits
            if idle and self.pump is not None:
                self.pump.resume()

    def _consume_until(self, ready, deadline: Optional[float], batched: bool) -> None:
        started = time.perf_counter()
        self.waits += 1
        if batched and self.rx_batch > 1:
            spin = 0.0                     # sleep until the batch is in: no spin
        elif self.yield_spin:
            spin = self.busy_poll_s        # fixed budget (latency): no adaptation
        else:
            spin = self.spin_s if self.waits & PROBE_MASK else self.busy_poll_s
        sleeps = self.sleeps
        try:
            self._consume_loop(ready, deadline, started + spin, self.rx_batch if batched else 0)
        finally:
            waited = time.perf_counter() - started
            self.waited_s += waited
            if spin and not self.yield_spin:
                self._adapt_spin(self.sleeps == sleeps and waited <= SPIN_PAYS_S)

    def _adapt_spin(self, caught: bool) -> None:
        """Spin only while spinning pays (``qp.busy_poll_us`` is the most): a spin
        that caught its event within SPIN_PAYS_S doubles the next budget; one that
        ended asleep anyway, or caught it later (more CPU than a sleep would have
        cost), halves it, down to none; every PROBE_MASK + 1-th wait spins the full budget
        to find out whether spinning pays again. A host whose waits outlast the spin
        (a peer on the same CPU, a long rr leg) stops burning the CPU its peer needs."""
        if caught:
            self.spin_s = min(self.busy_poll_s, max(2 * self.spin_s, MIN_SPIN_S))
        elif self.spin_s > MIN_SPIN_S:
            self.spin_s *= 0.5
        else:
            self.spin_s = 0.0

    def _consume_loop(self, ready, deadline: Optional[float], spin_end: float,
                      batch: int) -> None:
        """Poll until ``ready()``: spin until ``spin_end`` (yield mode: sched_yield
        between polls, so a peer on this CPU runs), then sleep on the interrupt; the
        first sleep of a batched wait (``batch`` >= 1) is a _batched_sleep."""
        spins = 0
        while not ready():
            if self.poll():
                continue
            spins += 1
            if self.closed:
                raise closed_error()
            if spins & 1023 == 0:
                self.check_engine()
                if deadline is not None and time.monotonic() >= deadline:
                    return
            if time.perf_counter() < spin_end:
                if self.yield_spin:
                    os.sched_yield()
                else:                       # watch the ring's head in compiled code
                    datapath.spin(self.seg, self.qp, SPIN_CHECKS)
                continue
            slice_s = self.sleep_slice if not batch else min(self.sleep_slice, self.rx_batch_s)
            if deadline is not None:
                slice_s = max(0.0, min(slice_s, deadline - time.monotonic()))
                if slice_s == 0.0:
                    return
            if batch:
                self._batched_sleep(slice_s, batch)
                batch = 0                  # later sleeps of this wait: at every event
            else:
                self.sleep_on_interrupt(slice_s)

    def _batched_sleep(self, timeout: float, batch: int) -> None:
        """Sleep until ``batch`` more events are in (one interrupt for all of them)
        or ``timeout``. Adapts the batch (like a NIC's adaptive coalescing): a batch
        that came within a quarter of ``qp.rx_batch_us`` doubles the next one (up to
        ``rx_batch_max``); a sleep that timed out halves it: a slow stream is woken
        at every event again."""
        self.batch_sleeps += 1
        start = time.perf_counter()
        if not self.sleep_on_interrupt(timeout, batch):
            self.batch_timeouts += 1
            self.rx_batch = max(1, self.rx_batch // 2)
        elif time.perf_counter() - start < 0.25 * self.rx_batch_s:
            self.rx_batch = min(2 * self.rx_batch, self.rx_batch_max)

    def published(self, index: int) -> bool:
        """Whether the engine has published event ``index`` (its phase bit is set)."""
        return datapath.published(self.seg, self.qp, index)

    def sleep_on_interrupt(self, timeout: float, batch: int = 1) -> bool:
        """Arm the interrupt for the ``batch``-th next event, re-check, then sleep on
        it; False if the sleep timed out (no interrupt)."""
        if not datapath.arm(self.seg, self.regs, self.qp, batch):
            self.sleeps += 1
            start = time.perf_counter()
            with self._sleep_lock:
                if self.closed:
                    raise closed_error()
                self._sleepers += 1
            try:
                self.irq.acquire(timeout)
            except posix_ipc.BusyError:
                if self.closed:
                    raise closed_error() from None
                if batch == 1:
                    self.irq_timeouts += 1
                datapath.disarm(self.regs, self.qp)
                self.check_engine()   # woken by no interrupt: is the engine alive?
                return False
            finally:
                with self._sleep_lock:
                    self._sleepers -= 1
                self.slept_s += time.perf_counter() - start
            if self.closed:           # woken by close()
                raise closed_error()
            self.interrupts += 1      # its handler reads the card's status, if it must
            if self.interrupt_reads:
                datapath.register_reads(self.qp, self.interrupt_reads)
        # an interrupt (or an event found at the re-check) proves the engine alive;
        # the spin loop still checks the heartbeat every 1024 empty polls
        datapath.disarm(self.regs, self.qp)
        return True
