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
times it is driven at (``clock`` is injected; receive(now) uses the caller's now).

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

from engine.nic.base import NicFeatures, TxFrame, complete_checksum
from engine.tcp.wire.ethernet import HEADER_LEN
from toad.config import WireConfig

REORDER_HOLD = 0.001      # seconds a held-back frame waits for a successor at most


class LoopbackNic:
    """One end of a LoopbackWire (the Nic interface of engine/nic/base.py)."""

    def __init__(self, wire: "LoopbackWire", features: NicFeatures):
        self.wire = wire
        self.features = features
        self.inbox: deque = deque()     # (arrival time, frame, csum_ok), arrival order
        self.held = None                # (frame, csum_ok, release time) held back
        self.tx_free_at = 0.0           # when the previous frame finished serialising

    def send(self, frames: list[TxFrame]) -> None:
        wire = self.wire
        now = wire.clock()
        if not wire.faulty:
            wire.carry_clean(self, frames, now)
            return
        for frame in frames:
            wire.carry(self, frame, now)

    def receive(self, now: float, max_frames: int = 64) -> list[tuple[memoryview, bool]]:
        inbox = self.inbox
        if self.held is None:
            if not inbox:
                return []               # the busy-polling engine's usual call: nothing
            if len(inbox) == 1 and max_frames > 0:     # one frame (an rr leg's)
                arrival, frame, csum_ok = inbox[0]
                if arrival > now:
                    return []
                inbox.clear()
                self.wire.counters["delivered"] += 1
                return [(memoryview(frame), csum_ok)]
        elif self.held[2] <= now:
            frame, csum_ok, release = self.held
            self.held = None
            inbox.append((release, frame, csum_ok))
        out = []
        while inbox and len(out) < max_frames and inbox[0][0] <= now:
            _, frame, csum_ok = inbox.popleft()
            out.append((memoryview(frame), csum_ok))
        self.wire.counters["delivered"] += len(out)
        return out

    def comes_back(self, dst_mac) -> bool:
        """Whether the wire hands a frame sent to ``dst_mac`` back to this end (its own
        MAC, or anything on a wire with one end): a capture records it on arrival."""
        wire = self.wire
        return len(wire.ends) == 1 or wire.destination(self, bytes(dst_mac)) is self

    def next_deadline(self) -> float | None:
        times = [self.inbox[0][0]] if self.inbox else []
        if self.held is not None:
            times.append(self.held[2])
        return min(times) if times else None

    def fileno(self) -> int | None:
        return None

    def close(self) -> None:
        self.inbox.clear()
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
             "oversize"), 0)
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

    def carry(self, sender: LoopbackNic, frame: TxFrame, now: float) -> None:
        """Put one frame on the cable: serialise, delay, and maybe damage it."""
        data = frame.data
        self.counters["sent"] += 1
        if len(data) > self.mtu + HEADER_LEN and not frame.gso_size:
            self.counters["oversize"] += 1
            return
        start = max(now, sender.tx_free_at)
        sender.tx_free_at = start + len(data) * self.seconds_per_byte
        arrival = sender.tx_free_at + self.delay
        target = sender if len(self.ends) == 1 else self.destination(sender, bytes(data[:6]))
        if not self.faulty:
            self.deliver(target, arrival, frame)
            return
        config, draw = self.config, self.random.random
        lose, corrupt, duplicate, reorder = draw(), draw(), draw(), draw()
        where, flip = self.random.randrange(len(data)), self.random.randrange(1, 256)
        if lose < config.loss:
            self.counters["lost"] += 1
            return
        if corrupt < config.corrupt:
            self.counters["corrupted"] += 1
            complete_checksum(frame)            # the NIC sums before the cable
            data = frame.data = bytearray(frame.data)
            data[where] ^= flip
        copies = 2 if duplicate < config.duplicate else 1
        self.counters["duplicated"] += copies - 1
        if reorder < config.reorder and target.held is None:
            self.counters["reordered"] += 1
            data, csum_ok = self.prepare(frame)
            target.held = (data, csum_ok, arrival + REORDER_HOLD)
            copies -= 1
        for _ in range(copies):
            self.deliver(target, arrival, frame)

    def carry_clean(self, sender: LoopbackNic, frames: list[TxFrame], now: float) -> None:
        """:meth:`carry` of a burst on a wire without faults (no random draws, nothing
        ever held back): the same serialisation, delay and delivery, per frame inline."""
        counters = self.counters
        counters["sent"] += len(frames)
        limit = self.mtu + HEADER_LEN
        per_byte, delay = self.seconds_per_byte, self.delay
        alone = len(self.ends) == 1
        complete = not self.csum_offload
        free_at = sender.tx_free_at
        for frame in frames:
            data = frame.data
            size = len(data)
            if size > limit and not frame.gso_size:
                counters["oversize"] += 1
                continue
            if free_at < now:
                free_at = now
            free_at += size * per_byte
            target = sender if alone else self.destination(sender, bytes(data[:6]))
            if frame.csum_start and complete:
                complete_checksum(frame)            # prepare(), inline
                data = frame.data
            target.inbox.append((free_at + delay, data, bool(frame.csum_start)))
        sender.tx_free_at = free_at

    def prepare(self, frame: TxFrame) -> tuple:
        """The bytes that reach the far end and whether the NIC vouches for them."""
        if frame.csum_start and not self.csum_offload:
            complete_checksum(frame)
        return frame.data, bool(frame.csum_start)

    def deliver(self, target: LoopbackNic, arrival: float, frame: TxFrame) -> None:
        """Queue a frame; a held-back frame goes right behind it (or before it, if its
        hold ran out earlier), keeping the inbox in arrival order."""
        data, csum_ok = self.prepare(frame)
        held, inbox = target.held, target.inbox
        target.held = None
        if held is not None and held[2] <= arrival:
            inbox.append((held[2], held[0], held[1]))
            held = None
        inbox.append((arrival, data, csum_ok))
        if held is not None:
            inbox.append((arrival, held[0], held[1]))
