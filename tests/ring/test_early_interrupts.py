"""Interrupts are raised as soon as a poller round posted events (Engine.raise_interrupts,
called by the offload poller after its input and after its event translation)."""
from collections import deque
from types import SimpleNamespace

import numpy as np

from engine import ring_calls
from engine.frames import FramePool
from engine.loop import Engine
from engine.offload.poller import OffloadPoller
from toad.config import load


class Line:
    def __init__(self):
        self.raised = 0

    def raise_(self) -> None:
        self.raised += 1


def armed_engine(delay_ns: int = 0) -> Engine:
    """An Engine (no OE memory) with three QPs: 0 and 1 armed for event 3, new events
    on 0 and 2."""
    engine = Engine.__new__(Engine)
    engine.irq_delay_ns, engine.in_flight = delay_ns, deque()
    engine.qp_table = np.zeros(3, ring_calls.ENGINE_QP)
    engine.regs = np.zeros(16, np.uint32)
    engine.irq_flags = np.zeros(3, np.uint8)
    engine.active = []
    for slot in range(3):
        row = engine.qp_table[slot]
        row["active"], row["irq_pending"], row["default_events"] = 1, -1, 1
        row["irq_enabled"], row["irq_index"] = 4 * slot, 4 * slot + 1
        row["mod_events"], row["mod_us"] = 4 * slot + 2, 4 * slot + 3
        row["irq_checked"] = row["event_producer"] = 3
        row["doorbell_address"] = engine.regs.ctypes.data    # (one page for all three)
        row["doorbell_words"] = len(engine.regs)
        engine.active.append(SimpleNamespace(slot=slot, interrupt=Line()))
    engine.regs[[0, 4]] = 1                    # slots 0 and 1 armed for event 3
    engine.regs[[1, 5]] = 3
    engine.qp_table["event_producer"][[0, 2]] = 5          # new events on 0 and 2
    engine.slots = SimpleNamespace(qps=list(engine.active))
    return engine


def test_raise_interrupts_raises_only_the_qps_whose_interrupt_is_due():
    """One compiled scan of the QP table: the QP with a new event past its armed index
    is raised, the armed one without a new event and the unarmed one are not."""
    engine = armed_engine()
    Engine.raise_interrupts(engine, 1234)
    assert [qp.interrupt.raised for qp in engine.active] == [1, 0, 0]
    Engine.raise_interrupts(engine, 1300)      # nothing new since
    assert [qp.interrupt.raised for qp in engine.active] == [1, 0, 0]


def test_a_delivery_latency_raises_the_interrupt_that_much_later():
    """bus.interrupt_us: the interrupt due at 1234 ns is in flight until 1234 + delay,
    then raised once; one whose QP was detached meanwhile is dropped."""
    engine = armed_engine(delay_ns=1000)
    Engine.raise_interrupts(engine, 1234)
    assert [qp.interrupt.raised for qp in engine.active] == [0, 0, 0]
    Engine._deliver(engine, 2233)
    assert [qp.interrupt.raised for qp in engine.active] == [0, 0, 0]
    assert engine.in_flight[0][0] == 2234
    Engine._deliver(engine, 2234)
    assert [qp.interrupt.raised for qp in engine.active] == [1, 0, 0]
    assert not engine.in_flight
    engine.qp_table["event_producer"][0] = 6                # another due event...
    engine.regs[0], engine.regs[1] = 1, 5
    Engine.raise_interrupts(engine, 3000)
    engine.slots.qps[0] = None                              # ... and its QP goes
    Engine._deliver(engine, 5000)
    assert [qp.interrupt.raised for qp in engine.active] == [1, 0, 0]


class Nic:
    def __init__(self, frames):
        self.frames = frames

    def receive_burst(self, now, pool, slots):
        frames, self.frames = self.frames, []
        for k, (frame, csum_ok) in enumerate(frames):
            slots[k] = pool.put(frame, csum_ok)
        return len(frames)

    def send_burst(self, pool, slots, n):
        pool.release_many(slots, n)

    def next_deadline(self):
        return None

    def due(self, now):
        return False


class Stack:
    def __init__(self, log):
        self.log = log
        self.pool = FramePool(4, 128)

    def receive_frames(self, pool, slots, count, now):
        self.log.append("input")
        pool.release_many(slots, count)

    def poll_transmit(self, now):
        self.log.append("output")
        return []

    def events(self):
        return []

    def on_timer(self, now):
        pass

    def next_deadline(self):
        return None


def test_poller_raises_interrupts_after_input_before_output():
    log = []
    poller = OffloadPoller(load(None, []), Stack(log), Nic([(b"frame", True)]),
                           clock=lambda: 1.0)
    poller.raise_interrupts = lambda now_ns: log.append(("irq", now_ns))
    assert poller.poll(1.0)
    assert log[:3] == ["input", ("irq", 1_000_000_000), "output"]
