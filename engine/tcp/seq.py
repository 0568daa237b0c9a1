"""Sequence-number arithmetic modulo 2**32 (RFC 9293 3.4), the only place it is done.

Sequence and acknowledgement numbers are plain ints in [0, 2**32). Comparisons are
made on the signed 32-bit difference, so they stay right across the wrap as long as
the two numbers are less than 2**31 apart (always true inside one window).
"""
from __future__ import annotations

MOD = 1 << 32
MASK = MOD - 1
HALF = 1 << 31


def seq_add(a: int, n: int) -> int:
    """a + n modulo 2**32 (n may be negative)."""
    return (a + n) & MASK


def seq_diff(a: int, b: int) -> int:
    """The signed distance a - b, in (-2**31, 2**31]."""
    d = (a - b) & MASK
    return d - MOD if d > HALF else d


def seq_lt(a: int, b: int) -> bool:
    """a comes strictly before b."""
    return a != b and ((b - a) & MASK) < HALF


def seq_le(a: int, b: int) -> bool:
    """a comes before b or is b."""
    return ((b - a) & MASK) < HALF


def seq_gt(a: int, b: int) -> bool:
    """a comes strictly after b."""
    return a != b and ((a - b) & MASK) < HALF


def seq_ge(a: int, b: int) -> bool:
    """a comes after b or is b."""
    return ((a - b) & MASK) < HALF


def seq_max(a: int, b: int) -> int:
    return a if seq_ge(a, b) else b


def seq_min(a: int, b: int) -> int:
    return a if seq_le(a, b) else b


def seq_in_window(s: int, left: int, size: int) -> bool:
    """left <= s < left + size (size >= 0)."""
    return ((s - left) & MASK) < size
