"""Interrupts: one named semaphore per QP, raised when the compiled rule says so.

The engine raises a QP's interrupt only when the host asked for one: the host
writes ``irq_event_index`` = the event index it waits for and ``irq_enabled = 1``,
fences, then re-checks its ring before sleeping. After publishing events the engine
decides with ``engine.ring_calls.irq_due`` (one compiled scan over the QP table per
loop iteration): the new events crossed that index (:func:`toad.rings.need_event`),
then moderation (ethtool style): an armed interrupt fires as soon as
``moderation_events`` events have been posted since the last interrupt, or once the
pending one has waited ``moderation_us``; the per-QP registers override the engine's
config (0 = default).

Lost-wake-up freedom: host "store arm; fence; load ring head" against engine "store
event; fence; load arm". With both fences at least one side sees the other's store:
either the host finds the event and does not sleep, or the engine sees the arm and
raises the interrupt (tests/ring/test_interrupts.py checks the interleavings).
"""
from __future__ import annotations

from toad.shm import close_semaphore


class InterruptLine:
    """The interrupt of one QP: the semaphore its host sleeps on."""

    def __init__(self, semaphore):
        self.semaphore = semaphore

    def raise_(self) -> None:
        self.semaphore.release()

    def close(self) -> None:
        close_semaphore(self.semaphore)
        self.semaphore = None
