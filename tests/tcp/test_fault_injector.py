"""engine/nic/faults.py: fault injection around any NIC, with the loopback wire's
draws (the same seed damages the same frames), on transmit and, for a NIC whose far
side is no toad transmitter (TAP), on receive."""
from __future__ import annotations

import numpy as np
import pytest

from engine.frames import FramePool
from engine.nic.base import NicFeatures
from engine.nic.faults import FaultyNic
from engine.nic.loopback import REORDER_HOLD, LoopbackWire
from engine.tcp.checksum import checksum
from tests.nicframes import Frame, FrameNic
from toad.config import WireConfig

MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")


class Clock:
    def __init__(self, now: float = 100.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def frame(dst: bytes, tag: int, size: int = 100) -> Frame:
    data = bytearray(size)
    data[:6] = dst
    data[6:12] = MAC_A
    data[14:18] = tag.to_bytes(4, "big")
    return Frame(data)


def tags(received) -> list[int]:
    return [int.from_bytes(f[14:18], "big") for f, _ in received]


def wrapped_pair(config: WireConfig, clock: Clock):
    """End a (wrapped, transmit faults) and end b of a clean two-ended wire."""
    wire = LoopbackWire(clock=clock)
    a = FaultyNic(wire.attach(MAC_A), config, "tx", clock)
    return FrameNic(a), FrameNic(wire.attach(MAC_B)), a


def test_the_same_seed_damages_the_same_frames_as_the_loopback_wire():
    """2000 frames through the wrapper over a clean wire, and through a wire with the
    same faults in its cable: the same frames lost, duplicated, reordered, corrupted."""
    config = WireConfig(loss=0.05, duplicate=0.05, reorder=0.05, corrupt=0.05, seed=9)
    results = []
    for wrapped in (True, False):
        clock = Clock()
        if wrapped:
            a, b, nic = wrapped_pair(config, clock)
            counters = nic.counters
        else:
            wire = LoopbackWire(config, clock=clock)
            a, b = FrameNic(wire.attach(MAC_A)), FrameNic(wire.attach(MAC_B))
            counters = wire.counters
        received = []
        for tag in range(2000):
            a.send([frame(MAC_B, tag)])
            received += b.receive(clock.now, 8)
        clock.now += 2 * REORDER_HOLD
        a.receive(clock.now)                          # (the wrapper's hold runs out)
        received += b.receive(clock.now, 8)
        results.append(({k: counters[k] for k in ("lost", "duplicated", "reordered",
                                                    "corrupted")}, tags(received)))
    assert results[0] == results[1]
    counts, got = results[0]
    assert min(counts.values()) > 50
    assert len(got) == 2000 - counts["lost"] + counts["duplicated"]


def test_lost_frames_give_their_slots_back_and_duplicates_take_one():
    clock = Clock()
    a, b, nic = wrapped_pair(WireConfig(loss=0.5, seed=3), clock)
    a.send([frame(MAC_B, tag) for tag in range(400)])
    got = b.receive(clock.now, 400)
    assert len(got) == 400 - nic.counters["lost"] and 150 < nic.counters["lost"] < 250
    assert a.pool.available == a.pool.slots         # every slot back in its pool
    clock = Clock()
    a, b, nic = wrapped_pair(WireConfig(duplicate=0.999, seed=3), clock)
    a.send([frame(MAC_B, 5)])
    assert tags(b.receive(clock.now)) == [5, 5]


def test_a_held_frame_follows_the_next_one_or_leaves_when_its_hold_ends():
    clock = Clock()
    a, b, nic = wrapped_pair(WireConfig(reorder=0.999, seed=1), clock)
    a.send([frame(MAC_B, 1), frame(MAC_B, 2)])     # 1 held, behind 2 (2 not held: one at a time)
    assert tags(b.receive(clock.now)) == [2, 1]
    a.send([frame(MAC_B, 3)])                       # held, and nothing follows
    assert b.receive(clock.now) == [] and nic.next_deadline() == clock.now + REORDER_HOLD
    clock.now += REORDER_HOLD
    a.receive(clock.now)                            # (the engine polls its NIC)
    assert tags(b.receive(clock.now)) == [3]


def test_a_corrupted_frame_is_completed_first_so_the_receiver_sees_the_damage():
    clock = Clock()
    a, b, nic = wrapped_pair(WireConfig(corrupt=0.999, seed=2), clock)
    data = bytearray(frame(MAC_B, 1, 60).data)
    # a partial checksum at 34 (the pseudo-header sum 0 already in the field)
    a.send([Frame(data, csum_start=34, csum_offset=0)])
    (got, csum_ok), = b.receive(clock.now)
    # no longer left to the NIC (completed), and damaged: the receiver checks it
    assert not csum_ok and nic.counters["corrupted"] == 1 and got != data
    assert checksum(memoryview(got)[34:], 0) != 0 or got[:34] != data[:34]


class Feed:
    """A NIC whose receive_burst hands out queued frames (Linux's side of a TAP)."""

    def __init__(self):
        self.features = NicFeatures(mtu=1500, mac=MAC_A, tx_csum=True, rx_csum=True,
                                    tso=False, tso_max=0)
        self.queue: list[bytes] = []
        self.sent: list[bytes] = []

    def send_burst(self, pool, slots, n):
        for slot in list(slots[:n]):
            self.sent.append(bytes(pool.view(slot)))
            pool.release(slot)

    def receive_burst(self, now, pool, slots):
        n = min(len(slots), len(self.queue))
        for k in range(n):
            slots[k] = pool.put(self.queue.pop(0), True)
        return n

    def fileno(self):
        return None

    def next_deadline(self):
        return None

    def close(self):
        pass


@pytest.mark.parametrize("directions", ["tx", "both"])
def test_received_frames_are_damaged_only_in_both_directions(directions):
    feed = Feed()
    nic = FaultyNic(feed, WireConfig(loss=0.3, corrupt=0.2, duplicate=0.2, seed=4),
                    directions, Clock())
    pool = FramePool(256, 128)
    feed.queue = [frame(MAC_A, tag).data for tag in range(100)]
    got, slots = [], np.empty(16, np.int32)
    while True:
        n = nic.receive_burst(100.0, pool, slots)
        if not n:
            break
        got += [(bytes(pool.view(s)), bool(pool.csum_oks[s])) for s in slots[:n].tolist()]
        pool.release_many(slots, n)
    counters = nic.counters
    if directions == "tx":
        assert len(got) == 100 and all(ok for _, ok in got)
        assert counters["lost"] == counters["corrupted"] == 0
    else:
        assert len(got) == 100 - counters["lost"] + counters["duplicated"]
        assert counters["lost"] > 10 and counters["corrupted"] > 5
        assert sum(not ok for _, ok in got) >= counters["corrupted"]
    assert counters["delivered"] == len(got)
    nic.close()
    assert pool.available == pool.slots


def test_bad_directions_are_refused():
    with pytest.raises(ValueError, match="directions"):
        FaultyNic(Feed(), WireConfig(), "rx")
