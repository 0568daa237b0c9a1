"""Interrupt rules (engine/ring_calls.py irq_due): arm, moderation, no lost wake-up."""
from __future__ import annotations

import itertools

import numpy as np

from engine import ring_calls

WORDS = {"irq_enabled": 0, "irq_event_index": 1, "moderation_events": 2, "moderation_us": 3}


class Line:
    """One QP's interrupt rule (engine/ring_calls.py irq_due) over a one-slot table:
    ``after_post`` publishes events up to ``producer`` and scans, ``poll`` scans."""

    def __init__(self, events: int, micros: int):
        self.regs = np.zeros(4, np.uint32)
        self.table = np.zeros(1, ring_calls.ENGINE_QP)
        for field, word in (("irq_enabled", "irq_enabled"), ("irq_index", "irq_event_index"),
                            ("mod_events", "moderation_events"), ("mod_us", "moderation_us")):
            self.table[field] = WORDS[word]
        self.table["default_events"], self.table["default_us"] = events, micros
        self.table["active"], self.table["irq_pending"] = 1, -1
        # the scans read the QP's doorbell page where its record says it lies
        self.table["doorbell_address"] = self.regs.ctypes.data
        self.table["doorbell_words"] = len(self.regs)
        self.raised = 0

    def after_post(self, producer: int, now_ns: int) -> bool:
        self.table["event_producer"] = producer
        return self.poll(now_ns)

    def poll(self, now_ns: int) -> bool:
        due = bool(ring_calls.scan_interrupts(self.table, now_ns, np.zeros(1, np.uint8)))
        self.raised += due
        return due

    def deadline_ns(self) -> int:
        return ring_calls.interrupt_deadline(self.table)


def line(events=1, micros=0):
    irq = Line(events, micros)
    return irq, irq.regs


def test_no_interrupt_unless_armed():
    irq, regs = line()
    assert not irq.after_post(5, 0)
    regs[0], regs[1] = 1, 5          # host waits for event 5
    assert not irq.after_post(5, 0)  # nothing new
    assert irq.after_post(6, 0)      # event 5 published
    assert irq.raised == 1
    assert not irq.after_post(9, 0)  # one interrupt per arm: 5 is behind us


def test_arm_at_index_wrap():
    irq, regs = line()
    irq.table["irq_checked"] = irq.table["event_producer"] = 0xFFFFFFFE
    regs[0], regs[1] = 1, 0
    assert not irq.after_post(0xFFFFFFFF, 0)
    assert irq.after_post(1, 0)      # crosses 0xFFFFFFFF -> 0 -> 1


def test_moderation_by_events_and_by_time():
    irq, regs = line(events=4, micros=100)
    regs[0], regs[1] = 1, 0
    assert not irq.after_post(1, 0)          # pending, 1 event < 4
    assert not irq.poll(50_000)              # 50 us < 100 us
    assert irq.deadline_ns() == 100_000
    assert irq.poll(100_000)                 # the delay bound fires it
    regs[1] = 1
    assert not irq.after_post(2, 200_000)
    assert irq.after_post(5, 200_001)        # 4 events since the last interrupt
    assert irq.raised == 2


def test_per_qp_registers_override_defaults():
    irq, regs = line(events=1)
    regs[0], regs[2], regs[3] = 1, 3, 1000
    assert not irq.after_post(1, 0)
    assert irq.after_post(3, 10)


def test_pending_interrupt_dropped_when_host_stops_waiting():
    irq, regs = line(events=8, micros=100)
    regs[0] = 1
    irq.after_post(1, 0)
    regs[0] = 0
    assert not irq.poll(10**9) and irq.raised == 0


def test_sleep_protocol_never_loses_a_wakeup():
    """Every interleaving of host "arm; fence; check ring; sleep" and engine
    "publish event; fence; check arm; post" (sequentially consistent, as the fences
    make them): the host never sleeps on an event nobody will signal."""
    host_steps = ["arm", "check"]
    engine_steps = ["publish", "interrupt"]
    for order in set(itertools.permutations(host_steps + engine_steps)):
        if order.index("arm") > order.index("check") or \
                order.index("publish") > order.index("interrupt"):
            continue
        irq, regs = line()
        published, host_sees_event, producer = False, False, 0
        for step in order:
            if step == "arm":
                regs[0], regs[1] = 1, 0           # wait for event 0
            elif step == "check":
                host_sees_event = published
            elif step == "publish":
                published, producer = True, 1
            else:
                irq.after_post(producer, 0)
        woken = irq.raised > 0
        assert host_sees_event or woken, order
