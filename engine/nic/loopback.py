"""The in-process loopback wire: a cable with one or two ends, and fault injection.

    wire = LoopbackWire(WireConfig(loss=0.01, seed=7), mtu=65535, clock=clock)
    a = wire.attach(mac_a)        # one end alone hears itself;
    b = wire.attach(mac_b)        # with two, each end hears the other

A frame goes to the end whose MAC is its destination (so a stack also hears frames it
sends to itself), otherwise to the other end. Each direction has a bandwidth cap
(frames serialise one after another), a one-way delay, and seeded loss, duplication,
reordering (a frame is held back behind the next one, or released after
``REORDER_HOLD`` if none follows) and corruption (one byte flipped). Every frame draws
the same random numbers in the same order, so a run is a function of the seed and the
times it is driven at (``clock`` is injected; receive_burst(now) uses the caller's now).

Frames travel as slots of the sender's frame pool (engine/frames.py): the wire keeps
(pool, slot) until the far end receives it. A receiver that shares the sender's pool
(one end hearing itself, as the engine's wire; or two ends given one pool) gets the
slot id itself, no copy; another receiver gets a copy in its own pool, and the
sender's slot is released. A duplicated frame takes a second slot of the sender's
pool (a copy); a frame the pool has no slot for is dropped, counted as ``no_buffer``.

Checksum offload is emulated as Linux's veth does it: a frame whose TCP checksum was
left to the NIC is delivered as is with csum_ok=True. A frame the wire corrupts is
first completed (the NIC sums before the cable), so the receiver detects the damage;
corrupted frames are never csum_ok.
"""
from __future__ import annotations

import random
import time
from collections import deque
from typing import Callable

import numpy as np

from engine.frames import FramePool
from engine.nic.base import NicFeatures, complete_checksum, slot_ids
from engine.tcp.wire.ethernet import HEADER_LEN
from toad.config import WireConfig

REORDER_HOLD = 0.001      # seconds a held-back frame waits for a successor at most


class LoopbackNic:
    """One end of a LoopbackWire (the Nic interface of engine/nic/base.py)."""

    def __init__(self, wire: "LoopbackWire", features: NicFeatures):
        self.wire = wire
        self.features = features
        self.inbox: deque = deque()     # (arrival time, pool, slot, csum_ok), arrival order
        self.held = None                # (pool, slot, csum_ok, release time) held back
        self.tx_free_at = 0.0           # when the previous frame finished serialising

    def send_burst(self, pool: FramePool, slots, n: int) -> None:
        if n <= 0:
            return
        wire = self.wire
        now = wire.clock()
        ids = slot_ids(slots, n)
        if not wire.faulty:
            wire.carry_clean(self, pool, ids, now)
            return
        for slot in ids:
            wire.carry(self, pool, slot, now)

    def receive_burst(self, now: float, pool: FramePool, slots: np.ndarray) -> int:
        inbox = self.inbox
        if self.held is None:
            if not inbox:
                return 0                # the busy-polling engine's usual call: nothing
        elif self.held[3] <= now:
            frame_pool, slot, csum_ok, release = self.held
            self.held = None
            inbox.append((release, frame_pool, slot, csum_ok))
        limit = len(slots)
        csum_oks = pool.csum_oks
        count = 0
        while inbox and count < limit and inbox[0][0] <= now:
            _, frame_pool, slot, csum_ok = inbox.popleft()
            if frame_pool is not pool:
                slot = self.wire.copy_across(frame_pool, slot, pool)
                if slot < 0:
                    continue
            csum_oks[slot] = csum_ok
            slots[count] = slot
            count += 1
        self.wire.counters["delivered"] += count
        return count

    def comes_back(self, dst_mac) -> bool:
        """Whether the wire hands a frame sent to ``dst_mac`` back to this end (its own
        MAC, or anything on a wire with one end): a capture records it on arrival."""
        wire = self.wire
        return len(wire.ends) == 1 or wire.destination(self, bytes(dst_mac)) is self

    def due(self, now: float) -> bool:
        """A frame has reached this end by ``now`` and waits to be received."""
        return bool(self.inbox) and self.inbox[0][0] <= now \
            or self.held is not None and self.held[3] <= now

    def next_deadline(self) -> float | None:
        times = [self.inbox[0][0]] if self.inbox else []
        if self.held is not None:
            times.append(self.held[3])
        return min(times) if times else None

    def fileno(self) -> int | None:
        return None

    def close(self) -> None:
        """Drop what is on the wire for this end (its slots go back to their pools)."""
        for _, pool, slot, _ in self.inbox:
            pool.release(slot)
        self.inbox.clear()
        if self.held is not None:
            self.held[0].release(self.held[1])
            self.held = None


class LoopbackWire:
    """The cable: owns the fault-injection random stream and the counters."""

    def __init__(self, config: WireConfig | None = None, mtu: int = 65535,
                 csum_offload: bool = True, clock: Callable[[], float] = time.monotonic):
        if not 68 <= mtu <= 65535:
            raise ValueError(f"loopback wire mtu {mtu} must be 68..65535")
        self.config = config or WireConfig()
        self.mtu = mtu
        self.csum_offload = csum_offload
        self.clock = clock
        self.random = random.Random(self.config.seed)
        self.ends: list[LoopbackNic] = []
        self.counters = dict.fromkeys(
            ("sent", "delivered", "lost", "duplicated", "reordered", "corrupted",
             "oversize", "no_buffer"), 0)
        bandwidth = self.config.bandwidth_gbps
        self.seconds_per_byte = 8.0 / (bandwidth * 1e9) if bandwidth else 0.0
        self.delay = self.config.delay_us * 1e-6
        self.faulty = any((self.config.loss, self.config.duplicate, self.config.reorder,
                           self.config.corrupt))

    def attach(self, mac: bytes) -> LoopbackNic:
        if len(self.ends) == 2:
            raise ValueError("a loopback wire has at most two ends")
        if len(mac) != 6:
            raise ValueError("mac must be 6 bytes")
        features = NicFeatures(mtu=self.mtu, mac=bytes(mac), tx_csum=self.csum_offload,
                               rx_csum=self.csum_offload, tso=False, tso_max=0,
                               hears_itself=True)
        end = LoopbackNic(self, features)
        self.ends.append(end)
        return end

    def destination(self, sender: LoopbackNic, dst_mac) -> LoopbackNic:
        for end in self.ends:
            if end.features.mac == dst_mac:
                return end
        for end in self.ends:
            if end is not sender:
                return end
        return sender

    def target(self, sender: LoopbackNic, pool: FramePool, slot: int) -> LoopbackNic:
        """The end a frame goes to (by its destination MAC on a two-ended wire)."""
        if len(self.ends) == 1:
            return sender
        base = slot * pool.slot_bytes
        return self.destination(sender, bytes(pool.bytes[base:base + 6]))

    def carry(self, sender: LoopbackNic, pool: FramePool, slot: int, now: float) -> None:
        """Put one frame on the cable: serialise, delay, and maybe damage it."""
        size = pool.lengths[slot]
        self.counters["sent"] += 1
        if size > self.mtu + HEADER_LEN and not pool.gso_sizes[slot]:
            self.counters["oversize"] += 1
            pool.release(slot)
            return
        start = max(now, sender.tx_free_at)
        sender.tx_free_at = start + size * self.seconds_per_byte
        arrival = sender.tx_free_at + self.delay
        target = self.target(sender, pool, slot)
        if not self.faulty:
            self.deliver(target, arrival, pool, slot, self.prepare(pool, slot))
            return
        config, draw = self.config, self.random.random
        lose, corrupt, duplicate, reorder = draw(), draw(), draw(), draw()
        where, flip = self.random.randrange(size), self.random.randrange(1, 256)
        if lose < config.loss:
            self.counters["lost"] += 1
            pool.release(slot)
            return
        if corrupt < config.corrupt:
            self.counters["corrupted"] += 1
            complete_checksum(pool, slot)       # the NIC sums before the cable
            at = slot * pool.slot_bytes + where
            pool.bytes[at] ^= flip
        csum_ok = self.prepare(pool, slot)
        copies = [slot]
        if duplicate < config.duplicate:
            self.counters["duplicated"] += 1
            copy = self.copy_across(pool, slot, pool, keep=True)
            if copy >= 0:
                copies.append(copy)
        if reorder < config.reorder and target.held is None:
            self.counters["reordered"] += 1
            target.held = (pool, copies.pop(), csum_ok, arrival + REORDER_HOLD)
        for copy in copies:
            self.deliver(target, arrival, pool, copy, csum_ok)

    def carry_clean(self, sender: LoopbackNic, pool: FramePool, ids: list, now: float) -> None:
        """:meth:`carry` of a burst on a wire without faults (no random draws, nothing
        ever held back): the same serialisation, delay and delivery, per frame inline."""
        counters = self.counters
        counters["sent"] += len(ids)
        limit = self.mtu + HEADER_LEN
        per_byte, delay = self.seconds_per_byte, self.delay
        alone = len(self.ends) == 1
        complete = not self.csum_offload
        lengths, gso_sizes, csum_starts = pool.lengths, pool.gso_sizes, pool.csum_starts
        free_at = sender.tx_free_at
        for slot in ids:
            size = lengths[slot]
            if size > limit and not gso_sizes[slot]:
                counters["oversize"] += 1
                pool.release(slot)
                continue
            if free_at < now:
                free_at = now
            free_at += size * per_byte
            target = sender if alone else self.target(sender, pool, slot)
            partial = csum_starts[slot]
            if partial and complete:
                complete_checksum(pool, slot)       # prepare(), inline
                partial = 0
            target.inbox.append((free_at + delay, pool, slot, partial != 0))
        sender.tx_free_at = free_at

    def prepare(self, pool: FramePool, slot: int) -> bool:
        """Complete the checksum a NIC without offload sums; whether the NIC vouches
        for the frame (its checksum left partial, on a wire with offload)."""
        if pool.csum_starts[slot] and not self.csum_offload:
            complete_checksum(pool, slot)
        return pool.csum_starts[slot] != 0

    def deliver(self, target: LoopbackNic, arrival: float, pool: FramePool, slot: int,
                csum_ok: bool) -> None:
        """Queue a frame; a held-back frame goes right behind it (or before it, if its
        hold ran out earlier), keeping the inbox in arrival order."""
        held, inbox = target.held, target.inbox
        target.held = None
        if held is not None and held[3] <= arrival:
            inbox.append((held[3], held[0], held[1], held[2]))
            held = None
        inbox.append((arrival, pool, slot, csum_ok))
        if held is not None:
            inbox.append((arrival, held[0], held[1], held[2]))

    def copy_across(self, source: FramePool, slot: int, pool: FramePool,
                    keep: bool = False) -> int:
        """A copy of frame ``slot`` of ``source`` in a new slot of ``pool`` (-1 and
        counted when there is none); the source slot is released unless ``keep``."""
        copy = pool.put(source.view(slot))
        if not keep:
            source.release(slot)
        if copy < 0:
            self.counters["no_buffer"] += 1
        return copy
