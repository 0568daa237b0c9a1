"""The frame pool (engine/frames.py): alloc and release (LIFO, exhaustion and bad
releases counted, never a crash), views of slots, bursts, sizing, and the compiled
helpers as a kernel calls them."""
from __future__ import annotations

import numba
import numpy as np
import pytest

from engine import frames
from engine.frames import FramePool, frame_bytes, geometry
from engine.nic.base import NicFeatures


def test_alloc_is_lifo_and_release_gives_back():
    pool = FramePool(4, 128)
    assert [pool.alloc() for _ in range(4)] == [0, 1, 2, 3]
    assert pool.available == 0
    pool.release(2)
    pool.release(0)
    assert pool.alloc() == 0 and pool.alloc() == 2          # the last released first
    assert pool.counters()["peak_in_use"] == 4


def test_exhaustion_is_counted_not_fatal():
    pool = FramePool(2, 128)
    assert pool.alloc() == 0 and pool.alloc() == 1
    assert pool.alloc() == -1 and pool.alloc() == -1
    assert pool.put(b"x" * 20) == -1
    assert pool.counters()["alloc_failed"] == 3


def test_a_second_release_and_a_bad_id_are_refused_and_counted():
    pool = FramePool(4, 128)
    slot = pool.alloc()
    pool.release(slot)
    pool.release(slot)                    # twice: refused, the free stack unchanged
    pool.release(-1)
    pool.release(4)
    pool.release(3)                       # never allocated
    assert pool.counters()["bad_release"] == 4 and pool.available == 4
    assert sorted(pool.alloc() for _ in range(4)) == [0, 1, 2, 3]


def test_views_are_the_slot_memory():
    pool = FramePool(4, 128)
    slot = pool.alloc()
    space = pool.space(slot)
    assert len(space) == 128 and not space.readonly
    space[:5] = b"hello"
    pool.lengths[slot] = 5
    assert bytes(pool.view(slot)) == b"hello"
    assert bytes(pool.data[slot * 128:slot * 128 + 5]) == b"hello"
    other = pool.put(b"frame", csum_ok=True)
    assert bytes(pool.view(other)) == b"frame" and pool.csum_ok[other] == 1
    assert pool.put(bytes(129)) == -1                        # does not fit a slot


def test_bursts():
    pool = FramePool(8, 64)
    got = pool.alloc_many(5)
    assert got == [0, 1, 2, 3, 4]
    assert pool.alloc_many(5) == [5, 6, 7]                   # only three left
    assert pool.counters()["alloc_failed"] == 2
    pool.release_many(got)                                   # a list
    pool.release_many(np.array([5, 6, 7, 7], np.int32), 3)   # an array and a count
    assert pool.available == 8 and pool.counters()["bad_release"] == 0
    assert len(pool.alloc_many(200)) == 8                    # more than the scratch array


def test_geometry():
    assert geometry(1514) == (16384, 1536)            # 24 MB: a 4 MB window of 1460 B
    assert geometry(65549) == (1024, 65600)           # TSO or MTU 65535: 64 MB of space
    assert geometry(9014) == (2048, 9024)
    assert geometry(1514, 64 << 20)[0] == 1 << 18     # a big window, capped
    tap = NicFeatures(mtu=1500, mac=bytes(6), tx_csum=True, rx_csum=True, tso=True,
                      tso_max=65000)
    assert frame_bytes(tap) == 14 + 65535             # TSO/GRO super-frames
    with pytest.raises(ValueError):
        geometry(10)


@numba.njit
def _cycle(free, state, held, rounds):
    """What a compiled kernel does: take a slot, use it, give it back."""
    total = 0
    for _ in range(rounds):
        slot = frames.alloc(free, state, held)
        if slot < 0:
            return -1
        total += slot
        frames.release(free, state, held, slot)
    return total


def test_compiled_helpers_work_from_a_kernel():
    pool = FramePool(4, 64)
    first = pool.alloc()
    assert _cycle(pool.free, pool.state, pool.held, 10) == 10 * 1   # slot 1, each time
    pool.release(first)
    assert pool.available == 4 and pool.counters()["bad_release"] == 0
