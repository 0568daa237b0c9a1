"""host/copy_timer.py: which copies are timed, and what the summary says."""
from __future__ import annotations

from time import perf_counter_ns

import pytest

from host.copy_timer import CopyTimer


def copy(timer: CopyTimer, dst: memoryview, src: memoryview) -> None:
    """The socket layers' inline pattern."""
    timer.countdown -= 1
    if timer.countdown:
        dst[:] = src
    else:
        start = perf_counter_ns()
        dst[:] = src
        timer.add(perf_counter_ns() - start, len(src))


def test_every_period_th_copy_is_timed_only_while_armed():
    timer = CopyTimer(period=4)
    dst, src = memoryview(bytearray(4096)), memoryview(bytes(4096))
    for _ in range(40):
        copy(timer, dst, src)
    assert timer.summary() is None              # not armed: nothing timed
    timer.start()
    for _ in range(40):
        copy(timer, dst, src)
    assert timer.summary()["samples"] == 10
    timer.stop()
    for _ in range(40):
        copy(timer, dst, src)
    assert timer.summary()["samples"] == 10
    timer.start()                               # a new interval starts empty
    assert timer.summary() is None


def test_period_zero_never_times():
    timer = CopyTimer(period=0)
    timer.start()
    dst, src = memoryview(bytearray(64)), memoryview(bytes(64))
    for _ in range(1000):
        copy(timer, dst, src)
    assert timer.summary() is None


def test_summary_is_the_median_per_byte_with_the_clock_cost_taken_off():
    timer = CopyTimer(period=1)
    timer.overhead_ns = 10
    timer.start()
    for ns in (110, 210, 310, 10_010, 5):       # one preempted copy; one below the clock
        timer.add(ns, 100)
    s = timer.summary()
    assert s["samples"] == 5
    assert s["s_per_byte"] == pytest.approx(2e-9)     # median of 0, 1, 2, 3, 100 ns/B
    assert s["s_per_byte_p10"] == 0.0
    assert s["s_per_byte_p90"] == pytest.approx(100e-9)
    timer.add(100, 0)                                  # an empty copy is no sample
    assert timer.summary()["samples"] == 5
