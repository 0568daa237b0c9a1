"""Interrupts are raised as soon as a poller round posted events (Engine.raise_interrupts,
called by the offload poller after its input and after its event translation)."""
from types import SimpleNamespace

from engine.loop import Engine
from engine.offload.poller import OffloadPoller
from toad.config import load


class Line:
    def __init__(self, checked: int):
        self.checked_index = checked
        self.calls = []

    def after_post(self, producer: int, now_ns: int) -> None:
        self.calls.append((producer, now_ns))
        self.checked_index = producer


def test_raise_interrupts_checks_only_qps_with_new_events():
    fresh, quiet = Line(3), Line(7)
    engine = SimpleNamespace(active=[SimpleNamespace(event_producer=5, interrupt=fresh),
                                     SimpleNamespace(event_producer=7, interrupt=quiet)])
    Engine.raise_interrupts(engine, 1234)
    assert fresh.calls == [(5, 1234)]
    assert quiet.calls == []
    Engine.raise_interrupts(engine, 1300)      # nothing new since
    assert fresh.calls == [(5, 1234)]


class Nic:
    def __init__(self, frames):
        self.frames = frames

    def receive(self, now, limit):
        frames, self.frames = self.frames, []
        return frames

    def send(self, out):
        pass

    def next_deadline(self):
        return None


class Stack:
    def __init__(self, log):
        self.log = log

    def receive_frame(self, frame, now, csum_ok):
        self.log.append("input")

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
