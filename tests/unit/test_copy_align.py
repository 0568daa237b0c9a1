"""host/copy_align.py: copies at memcpy's slow distance go through the scratch buffer,
byte for byte; others are plain copies."""
from __future__ import annotations

import mmap
import os

from host.copy_align import PAGE, AlignedCopier, address, slow_distance


def at_offset(raw: bytearray, page_offset: int, n: int) -> memoryview:
    """A view of ``n`` bytes of ``raw`` starting ``page_offset`` bytes into a page."""
    start = (page_offset - address(raw)) % PAGE
    return memoryview(raw)[start:start + n]


def test_slow_distance_is_1_to_63_bytes_ahead_modulo_a_page():
    assert not slow_distance(PAGE, 0) and not slow_distance(64, 0)
    assert slow_distance(16, 0) and slow_distance(PAGE + 63, PAGE)
    assert not slow_distance(0, 16)          # behind the source: fast


def test_a_copy_at_the_slow_distance_bounces_and_keeps_every_byte():
    source_map = mmap.mmap(-1, 4 * PAGE * 40)
    n = 131072 - 300
    payload = os.urandom(n)
    source = memoryview(source_map)[PAGE:PAGE + n]
    source[:] = payload
    copier = AlignedCopier()
    for offset, bounced in ((16, 1), (PAGE // 2, 0), (0, 0), (63, 1)):
        raw = bytearray(n + 2 * PAGE)
        dst = at_offset(raw, offset, n)
        copier.bounced = 0
        copier.copy(dst, address(dst), source, address(source))
        assert bytes(dst) == payload
        assert copier.bounced == bounced, offset
    small = bytearray(100)
    copier.copy(memoryview(small), address(small) , source[:100], address(source))
    assert bytes(small) == payload[:100]
