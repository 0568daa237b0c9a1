"""The host driver's wait policies against a real engine: batched receive waits
(interrupt after the rx_batch-th event, bounded by qp.rx_batch_us) and the yield
spin of latency configs. No timing assertions: counters only."""
from __future__ import annotations

import threading
import time

import pytest

from host.driver import Driver
from ring.conftest import EngineProcess
from toad import layout

# 32 receive buffers: rx_batch_max 8 is usable (at most recv_buffers / 4)
POOL = ("qp.recv_buffers=32",)


@pytest.fixture
def engine():
    started = EngineProcess(["engine.polling=busy", *POOL])
    try:
        yield started
    finally:
        started.stop()


def echo_all(drv: Driver, count: int, batch: int) -> list[int]:
    """Wait (batched) for the answers of ``count`` echoes that another thread posts
    once this one sleeps (the engine answers an echo in microseconds: posted first,
    they would all be in before the wait began)."""
    got: list[int] = []
    drv.on_event = lambda event: got.append(event.value)
    drv.rx_batch = batch
    sleeps = drv.sleeps

    def post_when_asleep() -> None:
        deadline = time.monotonic() + 10
        while drv.sleeps == sleeps and time.monotonic() < deadline:
            time.sleep(0.001)
        drv.post_many([(layout.OP_ECHO, 0, 0, 0, 0, 0, 0, 0, 0, i) for i in range(count)])

    poster = threading.Thread(target=post_when_asleep)
    poster.start()
    try:
        assert drv.wait_for(lambda: len(got) == count, timeout=10, batched=True)
    finally:
        poster.join(10)
    return got


def test_a_full_batch_wakes_once_and_the_next_batch_doubles(engine):
    with Driver(engine.config("qp.rx_batch_us=1000000", "qp.busy_poll_us=0")) as drv:
        assert drv.rx_batch_max == 8
        assert echo_all(drv, 4, batch=4) == [0, 1, 2, 3]
        assert drv.batch_timeouts == 0 and drv.sleeps <= 1 and drv.irq_timeouts == 0
        # 4 events came well within a quarter of rx_batch_us: the next batch is 8
        assert drv.rx_batch == 8
        echo_all(drv, 16, batch=8)
        assert drv.rx_batch == 8             # never beyond rx_batch_max
        assert drv.batch_timeouts == 0


def test_a_batch_that_does_not_fill_times_out_and_halves(engine):
    with Driver(engine.config("qp.rx_batch_us=20000", "qp.busy_poll_us=0")) as drv:
        # one event while the waiter asked for 4: it is taken after rx_batch_us
        assert echo_all(drv, 1, batch=4) == [0]
        assert drv.batch_timeouts == 1 and drv.irq_timeouts == 0
        assert drv.rx_batch == 2
        assert drv.check_engine() is None    # a batch timeout is not a dead engine


def test_unbatched_waits_keep_waking_at_every_event(engine):
    with Driver(engine.config("qp.busy_poll_us=0")) as drv:
        got: list[int] = []
        drv.on_event = lambda event: got.append(event.value)
        drv.rx_batch = 8
        drv.post(layout.OP_ECHO, value=7)
        assert drv.wait_for(lambda: got == [7], timeout=10)   # not batched
        assert drv.batch_sleeps == 0 and drv.rx_batch == 8


def test_yield_mode_spins_its_whole_budget_and_never_adapts(engine):
    config = engine.config("qp.busy_poll_mode=yield", "qp.busy_poll_us=2000000")
    with Driver(config) as drv:
        for i in range(50):
            assert drv.call(layout.OP_ECHO, value=i).value == i
        # every answer came within the 2 s spin: no sleep; the budget stays fixed
        assert drv.sleeps == 0 and drv.spin_s == drv.busy_poll_s


def test_bad_wait_policy_values_name_the_key():
    from toad.config import ConfigError, load
    for override, text in (("qp.busy_poll_mode=sometimes", "qp.busy_poll_mode"),
                           ("qp.rx_batch_max=0", "qp.rx_batch_max"),
                           ("qp.rx_batch_us=10", "qp.rx_batch_us")):
        with pytest.raises(ConfigError, match=text):
            load(None, [override])


def test_posts_wrap_a_small_request_ring_with_their_cached_room(engine):
    """A post reads the engine's consumer index only when its cached free-slot count
    runs out: 10 passes over a 16-entry ring of records the engine refuses, mixed with
    batches (which read it every time), all consumed in order and the ring still
    answers an echo."""
    with Driver(engine.config("qp.request_entries=16")) as drv:
        errors: list[int] = []
        drv.on_event = lambda event: errors.append(event.type)
        for i in range(160):
            drv.post(layout.OP_SEND, layout.REQ_SILENT, 0, offset=0, length=1)  # conn 0
            if i % 37 == 0:
                drv.post_many([(layout.OP_NOP, layout.REQ_SILENT, 0, 0, 0, 0, 0, 0, 0, 0)])
            assert 0 <= drv.request_room <= 16
        assert drv.call(layout.OP_ECHO, value=99, timeout=10).value == 99
        assert drv.wait_for(lambda: len(errors) == 160, timeout=10)
        assert set(errors) == {layout.EV_ERROR}
        assert drv.request_producer == drv.u32[drv.request_consumer_word] == 160 + 5 + 1


CLOSE_WHILE_WAITING = """
import sys, threading, time
from host.driver import Driver
from toad.config import load
drv = Driver(load(None, sys.argv[1:]))
out = []
def waiter(batched):
    try:
        drv.wait_for(lambda: False, timeout=20, batched=batched)
        out.append("returned")
    except OSError as exc:
        out.append(exc.errno)
threads = [threading.Thread(target=waiter, args=(b,)) for b in (False, True)]
for t in threads:
    t.start()
while drv.sleeps == 0:          # one thread asleep on the interrupt, one on the condition
    time.sleep(0.01)
drv.close()
for t in threads:
    t.join(10)
print(sorted(out), any(t.is_alive() for t in threads))
"""


def test_close_while_another_thread_sleeps_wakes_it_with_ebadf(engine):
    """Closing the semaphore a thread slept on crashed the process (SIGSEGV in
    sem_timedwait): close now wakes every waiter, which raises EBADF, and frees the
    rings and the semaphore after they have left."""
    import subprocess
    import sys
    from pathlib import Path
    done = subprocess.run([sys.executable, "-c", CLOSE_WHILE_WAITING, *engine.overrides,
                           "qp.busy_poll_us=0"], cwd=Path(__file__).resolve().parents[2],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[9,", "9]", "False"]
