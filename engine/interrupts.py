"""Interrupt emission and moderation: one named semaphore per QP.

The engine raises a QP's interrupt only when the host asked for one: the host
writes ``irq_enabled = 1`` and ``irq_event_index`` = the event index it waits for
(then re-checks its ring before sleeping). After publishing events the engine asks
:func:`toad.rings.need_event` whether that index was crossed. Moderation (ethtool
style): an armed interrupt fires as soon as ``moderation_events`` events have been
posted since the last interrupt, or once the oldest pending event has waited
``moderation_us``; the per-QP registers override the engine's config (0 = default).

Lost-wake-up freedom: host "store arm; fence; load ring head" against engine "store
event; fence; load arm". With both fences at least one side sees the other's store:
either the host finds the event and does not sleep, or the engine sees the arm and
raises the interrupt (tests/ring/test_interrupts.py checks the interleavings).
"""
from __future__ import annotations

from typing import Optional

from toad.rings import MASK32, full_fence, need_event
from toad.shm import close_semaphore


class InterruptLine:
    """The interrupt of one QP: arm check, moderation, the semaphore post."""

    def __init__(self, semaphore, registers_u32, words: dict, default_events: int,
                 default_us: int):
        self.semaphore = semaphore
        self.u32 = registers_u32
        self.enabled_word = words["irq_enabled"]
        self.index_word = words["irq_event_index"]
        self.mod_events_word = words["moderation_events"]
        self.mod_us_word = words["moderation_us"]
        self.default_events = default_events
        self.default_us = default_us
        self.checked_index = 0       # events up to here were checked against the arm
        self.since_last = 0          # events posted since the last interrupt
        self.pending_since: Optional[int] = None  # ns: armed and crossed, not yet raised
        self.raised = 0

    def moderation(self) -> tuple[int, int]:
        events = self.u32[self.mod_events_word] or self.default_events
        micros = self.u32[self.mod_us_word] or self.default_us
        return events, micros

    def after_post(self, producer: int, now_ns: int) -> bool:
        """Events up to ``producer`` are published; raise the interrupt if due."""
        old = self.checked_index
        if producer == old:
            return False
        self.checked_index = producer
        self.since_last += (producer - old) & MASK32
        if self.pending_since is None:
            full_fence()  # the events above are published before we read the arm
            if not self.u32[self.enabled_word]:
                return False
            if not need_event(self.u32[self.index_word], producer, old):
                return False
            self.pending_since = now_ns
        return self.poll(now_ns)

    def poll(self, now_ns: int) -> bool:
        """Raise a pending interrupt once moderation allows it."""
        if self.pending_since is None:
            return False
        if not self.u32[self.enabled_word]:
            self.pending_since = None  # the host stopped waiting: nothing to wake
            return False
        events, micros = self.moderation()
        if self.since_last >= events or now_ns - self.pending_since >= micros * 1000:
            self.semaphore.release()
            self.raised += 1
            self.since_last = 0
            self.pending_since = None
            return True
        return False

    def deadline_ns(self) -> Optional[int]:
        if self.pending_since is None:
            return None
        return self.pending_since + self.moderation()[1] * 1000

    def close(self) -> None:
        close_semaphore(self.semaphore)
        self.semaphore = None


class InterruptPoller:
    """Engine-loop poller raising moderated interrupts whose delay has expired."""

    def __init__(self):
        self.lines: list[InterruptLine] = []

    def add(self, line: InterruptLine) -> None:
        self.lines.append(line)

    def remove(self, line: InterruptLine) -> None:
        if line in self.lines:
            self.lines.remove(line)

    def poll(self, now: float) -> bool:
        did = False
        for line in self.lines:
            if line.pending_since is not None:
                did |= line.poll(int(now * 1e9))
        return did

    def next_deadline(self) -> Optional[float]:
        deadlines = [d for d in (line.deadline_ns() for line in self.lines) if d is not None]
        return min(deadlines) / 1e9 if deadlines else None
