"""Sequence arithmetic modulo 2**32, especially at the wrap."""
from hypothesis import given, strategies as st

from engine.tcp.seq import (seq_add, seq_diff, seq_ge, seq_gt, seq_in_window, seq_le, seq_lt,
                            seq_max, seq_min)

TOP = 0xFFFF_FFFF


def test_add_wraps():
    assert seq_add(TOP, 1) == 0
    assert seq_add(TOP - 9, 20) == 10
    assert seq_add(5, -10) == TOP - 4


def test_order_across_wrap():
    assert seq_lt(TOP, 0) and seq_gt(0, TOP)
    assert seq_lt(TOP - 100, 100)
    assert seq_le(7, 7) and seq_ge(7, 7) and not seq_lt(7, 7) and not seq_gt(7, 7)
    assert seq_max(TOP, 3) == 3 and seq_min(TOP, 3) == TOP


def test_diff_is_signed():
    assert seq_diff(5, TOP) == 6
    assert seq_diff(TOP, 5) == -6
    assert seq_diff(0, 0) == 0


def test_in_window_across_wrap():
    assert seq_in_window(2, TOP - 2, 10)
    assert not seq_in_window(TOP - 3, TOP - 2, 10)
    assert not seq_in_window(8, TOP - 2, 10)
    assert not seq_in_window(5, 5, 0)


@given(st.integers(0, TOP), st.integers(-(2**31) + 1, 2**31 - 1))
def test_add_then_diff(a, n):
    b = seq_add(a, n)
    assert seq_diff(b, a) == n
    assert seq_lt(a, b) == (n > 0)
    assert seq_le(a, b) == (n >= 0)
    assert seq_gt(b, a) == (n > 0)
