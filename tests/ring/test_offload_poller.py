"""The offload poller's rounds (engine/offload/poller.py) with a scripted NIC and stack:
requests posted while a pass is running are served between its rounds, and their
output leaves in the same pass. Also the loop's request-ring pass (engine/loop.py): a
bad doorbell is reported once, with the value it judged."""
from __future__ import annotations

import numpy as np

from engine.frames import FramePool
from engine.offload.poller import OffloadPoller
from toad.config import load


class ScriptedNic:
    """Delivers the frames queued for each receive_burst() call, records what is sent."""

    def __init__(self, inbound: list):
        self.inbound = list(inbound)      # one list of frames per receive_burst() call
        self.sent: list = []
        self.log: list = []

    def receive_burst(self, now, pool, slots):
        frames = self.inbound.pop(0) if self.inbound else []
        self.log.append(("receive", len(frames)))
        for k, frame in enumerate(frames):
            slots[k] = pool.put(frame, True)
        return len(frames)

    def send_burst(self, pool, slots, n):
        self.sent += [bytes(pool.view(slot)) for slot in slots[:n]]
        pool.release_many(slots, n)

    def next_deadline(self):
        return None

    def due(self, now):
        return False


class ScriptedStack:
    """Output is one frame per poll_transmit call while ``queued`` is set."""

    def __init__(self, log):
        self.log = log
        self.queued = 0
        self.pool = FramePool(8, 128)

    def receive_frames(self, pool, slots, count, now):
        self.log.extend(("rx", bytes(pool.view(slot))) for slot in slots[:count].tolist())
        pool.release_many(slots, count)

    def poll_transmit(self, now):
        self.log.append(("tx", self.queued))
        out = [self.pool.put(b"frame") for _ in range(self.queued)]
        self.queued = 0
        return out

    def events(self):
        return []

    def on_timer(self, now):
        pass

    def next_deadline(self):
        return None


def make_poller(inbound):
    nic = ScriptedNic(inbound)
    stack = ScriptedStack(nic.log)
    poller = OffloadPoller(load(None, []), stack, nic, clock=lambda: 1.0)
    return poller, stack, nic


def test_a_request_posted_during_a_pass_is_served_and_sent_in_it():
    poller, stack, nic = make_poller([[b"ack"], [], []])
    calls = []

    def service(now_ns):                 # the host's SEND lands during round 0
        calls.append(now_ns)
        if len(calls) == 1:
            stack.queued = 1
            poller.kick()
            nic.log.append(("served", 1))
            return 1
        return 0

    poller.service_requests = service
    assert poller.poll(1.0)
    assert nic.sent == [b"frame"]
    assert stack.pool.available == stack.pool.slots    # received and sent: all released
    served = nic.log.index(("served", 1))
    assert ("tx", 1) in nic.log[served:]  # output after the service, same pass
    assert len(calls) >= 2                 # served again at the next boundary


def test_an_idle_pass_serves_nothing_between_rounds():
    poller, stack, nic = make_poller([])
    calls = []
    poller.service_requests = lambda now_ns: calls.append(now_ns) or 0
    assert not poller.poll(1.0)
    assert calls == [] and nic.sent == []  # one round, no boundary


def test_a_bad_doorbell_is_reported_once_with_the_value_judged_bad():
    """The compiled request pass reads the doorbell once and keeps the value it
    refused: the report names that value (the host may restore a good one right
    after), once; a good value again is no error."""
    from engine.dma import Dma
    from engine.handlers import Dispatcher
    from engine.loop import Engine
    from engine.qp import QueuePair
    from toad import layout

    lay = layout.qp_layout(load(None, ["qp.event_entries=8"]).qp)
    buf = bytearray(lay.total_bytes)
    from plain_qp import WORD_NAMES
    regs = np.zeros(len(WORD_NAMES), np.uint32)
    words = {name: i for i, name in enumerate(WORD_NAMES)}

    class Closable:
        def close(self):
            pass

    qp = QueuePair(1, 1, Closable(), Dma(buf, len(buf)), lay, regs, words, Closable(), -1)
    engine = Engine.__new__(Engine)
    engine.dispatcher = Dispatcher()
    regs[0] = 10_000
    assert engine.service(qp, 0) == 0
    assert engine.service(qp, 0) == 0      # the same bad value: reported once
    regs[0] = 0                            # good again: nothing to report
    assert engine.service(qp, 0) == 0
    assert qp.bad_records == 1 and qp.event_producer == 1
    event = np.frombuffer(buf, layout.EVENT, 1, lay.event_offset)[0]
    assert (event["reason"], event["value"]) == (layout.ERR_BAD_DOORBELL, 10_000)


def test_a_due_timer_waits_for_the_frames_that_reached_the_nic_before_it():
    """The engine runs both ends of a loopback wire: an ACK waiting in its own backlog
    is taken in before the timers that are due fire (a sender's RTO would call it
    lost); a NIC that never drains holds them MAX_TIMER_DEFER_S at most."""
    from engine.offload.poller import MAX_TIMER_DEFER_S
    poller, stack, nic = make_poller([[b"a"], [b"b"], [b"c"], []])
    backlog = [3]                         # frames due at the NIC before each receive

    def due(now):
        return backlog[0] > 0

    scripted = nic.receive_burst

    def receive_burst(now, pool, slots):
        count = scripted(now, pool, slots)
        backlog[0] = max(0, backlog[0] - count)
        return count

    nic.due, nic.receive_burst = due, receive_burst
    stack.on_timer = lambda now: nic.log.append(("timer", backlog[0]))
    poller.timer_at = 0.9
    assert poller.poll(1.0)
    timers = [entry for entry in nic.log if entry[0] == "timer"]
    assert timers and all(left == 0 for _, left in timers)
    assert nic.log.index(("rx", b"c")) < nic.log.index(timers[0])
    # a NIC that stays due: the timer fires once it is MAX_TIMER_DEFER_S late
    poller, stack, nic = make_poller([[b"x"]] * 40)
    nic.due = lambda now: True
    fired = []
    stack.on_timer = fired.append
    poller.timer_at = 1.0 - MAX_TIMER_DEFER_S / 2
    poller.poll(1.0)
    assert not fired
    poller.timer_at = 1.0 - MAX_TIMER_DEFER_S
    poller.poll(1.0)
    assert fired
