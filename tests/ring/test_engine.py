"""A real engine process and host drivers: requests, events, bad input, reclaim."""
from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from host.driver import Driver, EngineDead
from toad import layout
from toad.engine_stats import read_engine_stats


def qp_stats(name: str, slot: int) -> dict:
    for row in read_engine_stats(name)["qps"]:
        if row["slot"] == slot:
            return row
    return {}


def wait_until(predicate, timeout: float = 10.0) -> bool:
    """Poll ``predicate`` (bounded); used for effects of another process."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def test_echo_round_trip_and_engine_stats(start_engine):
    engine = start_engine()
    with Driver(engine.config()) as drv:
        event = drv.call(layout.OP_ECHO, value=0xDEADBEEF, length=77, addr=5, port=6)
        assert (event.type, event.status, event.value, event.length) == \
            (layout.EV_COMPLETION, 0, 0xDEADBEEF, 77)
        assert drv.call(layout.OP_NOP).type == layout.EV_COMPLETION
        slot = drv.slot
    assert wait_until(lambda: qp_stats(engine.name, slot).get("requests", 0) >= 2)
    stats = read_engine_stats(engine.name)
    assert stats["state"] == "running" and stats["cpu"] == 1 and stats["iterations"] > 0
    assert qp_stats(engine.name, slot)["events"] >= 2
    assert qp_stats(engine.name, slot)["dma_transactions"] > 0


def test_batched_echo_stream_in_order(start_engine):
    """Tens of thousands of requests through one QP: no loss, duplicate or reorder."""
    engine = start_engine()
    batch = 128
    total = batch * 240
    seen = []
    with Driver(engine.config(), on_event=lambda ev: seen.append(ev.value)) as drv:
        for start in range(0, total, batch):
            drv.post_many([(layout.OP_ECHO, 0, 0, 1 << 40, 0, 0, 0, 0, 0, v)
                           for v in range(start, start + batch)])
            drv.poll(1 << 20)
        assert drv.wait_for(lambda: len(seen) >= total, timeout=60)
    assert seen == list(range(total))


def test_silent_nops_are_counted_without_events(start_engine):
    engine = start_engine()
    with Driver(engine.config()) as drv:
        records = np.zeros(200, layout.REQUEST)
        records["opcode"] = layout.OP_NOP
        records["flags"] = layout.REQ_SILENT
        drv.post_array(records)
        drv.call(layout.OP_ECHO)   # answered after the NOPs: they were all read
        assert not drv.events
        slot = drv.slot
    assert wait_until(lambda: qp_stats(engine.name, slot).get("requests", 0) >= 201)


def test_bad_input_gets_error_events_and_other_qps_keep_working(start_engine):
    engine = start_engine()
    with Driver(engine.config()) as a, Driver(engine.config()) as b:
        conn_a = a.call(layout.OP_SOCKET).value
        conn_b = b.call(layout.OP_SOCKET).value
        assert conn_a != conn_b
        # a record naming another QP's connection
        ev = b.call(layout.OP_CLOSE, conn=conn_a)
        assert (ev.type, ev.status, ev.reason) == (layout.EV_ERROR, errno.EBADF,
                                                   layout.ERR_WRONG_CONNECTION)
        # an unknown opcode
        ev = b.call(999)
        assert (ev.type, ev.reason, ev.value) == (layout.EV_ERROR, layout.ERR_UNKNOWN_OPCODE, 999)
        # a send descriptor outside the QP's send area / segment
        for offset, length in ((b.layout.total_bytes, 10), (b.layout.send_offset, 1 << 40),
                               (0, 100)):
            ev = b.call(layout.OP_SEND, conn=conn_b, offset=offset, length=length)
            assert (ev.type, ev.status, ev.reason) == (layout.EV_ERROR, errno.EFAULT,
                                                       layout.ERR_OUT_OF_BOUNDS)
        # a doorbell claiming more records than the ring holds
        b.regs[b.req_doorbell] = (b.request_producer + 10_000) & 0xFFFFFFFF
        assert b.wait_for(lambda: any(e.reason == layout.ERR_BAD_DOORBELL for e in b.events), 10)
        b.regs[b.req_doorbell] = b.request_producer      # back to the truth
        # QP a was never disturbed; b recovers too
        assert a.call(layout.OP_ECHO, value=1).value == 1
        assert a.call(layout.OP_CLOSE, conn=conn_a).status == 0
        assert b.call(layout.OP_ECHO, value=2).value == 2
        slot_b, slot_a = b.slot, a.slot
    wait_until(lambda: qp_stats(engine.name, slot_b).get("bad_records", 0) >= 6)
    assert qp_stats(engine.name, slot_b).get("bad_records", 0) == 6   # shows the count if not
    assert qp_stats(engine.name, slot_a)["bad_records"] == 0


HOST_SCRIPT = """
import sys, time
from toad.config import load
from toad import layout
from host.driver import Driver
drv = Driver(load(None, sys.argv[1:]))
print(drv.slot, flush=True)
i = 0
while True:                       # stream requests until killed
    drv.post_many([(layout.OP_ECHO, 0, 0, 1 << 40, 0, 0, 0, 0, 0, i + k) for k in range(16)])
    drv.poll(1 << 20)
    i += 16
"""


def test_host_killed_mid_stream_is_reclaimed(start_engine):
    engine = start_engine()
    host = subprocess.Popen([sys.executable, "-c", HOST_SCRIPT, *engine.overrides],
                            stdout=subprocess.PIPE, text=True)
    slot = int(host.stdout.readline())
    assert wait_until(lambda: qp_stats(engine.name, slot).get("requests", 0) > 1000)
    os.kill(host.pid, signal.SIGKILL)
    host.wait()
    host.stdout.close()
    assert wait_until(lambda: read_engine_stats(engine.name)["qps_reclaimed"] == 1)
    leftovers = [p.name for p in Path("/dev/shm").iterdir() if f"-{host.pid}-" in p.name]
    assert leftovers == []
    with Driver(engine.config()) as drv:      # a second host gets served (same slot)
        assert drv.slot == slot
        assert drv.call(layout.OP_ECHO, value=3).value == 3


@pytest.mark.timeout(30)
def test_engine_killed_gives_a_clear_error(start_engine):
    engine = start_engine("engine.heartbeat_timeout_ms=300")
    drv = Driver(engine.config())
    try:
        assert drv.call(layout.OP_ECHO, value=1).value == 1
        engine.process.kill()
        engine.process.wait()
        with pytest.raises(EngineDead, match="engine .* (not responding|died)"):
            drv.call(layout.OP_ECHO, value=2)
    finally:
        drv.close()
    # the driver removed what it created, and nothing of the engine's (a new engine
    # of this name may own those names by now); the dead engine's are reported stale
    # and go when the next engine of the name starts
    from toad import doctor, leftovers
    left = [(obj.kind, stale) for obj, stale in leftovers.scan() if obj.engine == engine.name]
    assert sorted(left) == [("oe", True), ("wake", True)]
    status, text, fix = doctor.check_leftovers()
    assert status == doctor.WARN and f"toad-{engine.name}-oe" in text and "toad engine" in fix
    start_engine(name=engine.name).stop()
    assert not [p for p in Path("/dev/shm").iterdir() if engine.name in p.name]


def test_engine_stops_cleanly_on_sigterm(start_engine):
    engine = start_engine()
    drv = Driver(engine.config())
    try:
        assert engine.stop() == 0
        with pytest.raises(EngineDead, match="stopped"):
            drv.call(layout.OP_ECHO)
    finally:
        drv.close()
    assert not [p for p in Path("/dev/shm").iterdir() if engine.name in p.name]


def test_no_engine_is_a_clear_error():
    from toad.config import load
    from toad.engine_stats import EngineNotRunning
    with pytest.raises(EngineNotRunning, match="no engine named 'nosuch"):
        Driver(load(None, ["name=nosuch-engine"]))


def test_lost_wakeup_freedom_under_adaptive_polling(start_engine):
    """Both sides sleep between requests; no wake-up may be lost.

    The engine sleeps as soon as it is idle (idle_us=0) in 1 s slices and the host
    sleeps on its interrupt for every answer in 1 s slices. A lost wake-up on either
    side would end a sleep by timeout instead of a post: both counters must stay 0.
    """
    engine = start_engine("engine.idle_us=0", "engine.sleep_slice_ms=1000",
                          "engine.heartbeat_timeout_ms=5000")
    with Driver(engine.config("qp.busy_poll_us=0")) as drv:
        drv.sleep_slice = 1.0
        before = read_engine_stats(engine.name)
        rng = np.random.default_rng(1)
        for i in range(300):
            assert drv.call(layout.OP_ECHO, value=i).value == i
            if i % 3 == 0:
                time.sleep(float(rng.uniform(0, 0.002)))
        after = read_engine_stats(engine.name)
        assert drv.sleeps > 0 and drv.irq_timeouts == 0
    assert after["sleeps"] > before["sleeps"]
    assert after["wakeups_idle"] == before["wakeups_idle"]


def test_several_threads_share_one_driver(start_engine):
    """Posting under a lock, consuming in whichever thread holds the consumer role."""
    import threading
    engine = start_engine()
    errors = []
    with Driver(engine.config("qp.busy_poll_us=20")) as drv:
        def worker(base: int) -> None:
            try:
                for i in range(150):
                    value = base + i
                    if drv.call(layout.OP_ECHO, value=value, timeout=30).value != value:
                        errors.append(value)
            except Exception as exc:   # surfaced below
                errors.append(exc)
        threads = [threading.Thread(target=worker, args=(k * 1000,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not any(t.is_alive() for t in threads)
    assert errors == []


def test_engine_cli_bad_input_is_one_clear_line():
    result = subprocess.run([sys.executable, "-m", "engine", "--set", "name=badcpu",
                             "--set", "engine.cpu=7"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "toad: error: engine.cpu: 7 is not an available CPU (available: "
        + ", ".join(map(str, sorted(os.sched_getaffinity(0)))) + ")"]
    assert not [p for p in Path("/dev/shm").iterdir() if "badcpu" in p.name]


def test_second_engine_with_the_same_name_is_refused(start_engine):
    engine = start_engine()
    result = subprocess.run([sys.executable, "-m", "engine", *sum(
        (["--set", o] for o in engine.overrides), [])], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "already running" in result.stderr
    with Driver(engine.config()) as drv:            # the first one is untouched
        assert drv.call(layout.OP_ECHO, value=4).value == 4


def test_objects_of_a_host_that_died_before_enabling_are_removed(start_engine):
    from toad.shm import Segment, create_semaphore
    engine = start_engine()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    # what a host creates before it enables its slot, then death (its slot claim, a
    # lock, went with it)
    name = layout.qp_segment_name(engine.name, 0, dead.pid, layout.new_token())
    Segment(name, 4096, create=True).close()
    create_semaphore(layout.irq_name(name)).close()
    left = [Path("/dev/shm") / name[1:], Path("/dev/shm") / f"sem.{layout.irq_name(name)[1:]}"]
    assert wait_until(lambda: not any(p.exists() for p in left), timeout=15)
    with Driver(engine.config()) as drv:
        assert drv.slot == 0
        assert drv.call(layout.OP_ECHO, value=5).value == 5