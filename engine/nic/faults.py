"""Fault injection around any NIC, as smoltcp's FaultInjector wraps any device.

    nic = FaultyNic(TapNic(config.nic.tap), config.nic.wire, directions="both")

The ``nic.wire`` faults (loss, duplicate, reorder, corrupt, seeded) drawn per frame
as the engine's loopback wire draws them (engine/nic/loopback.py, which keeps its own,
in the cable): four numbers and a byte position and value for every frame, in that
order, so a run is a function of the seed and the frames. ``directions``: "tx" damages
the frames this end sends (a wire whose every frame leaves through one of these, as
the in-host runners' shared-memory wire with a wrapper at each end), "both" the frames
it receives too (TAP: Linux's frames never pass a toad transmitter).

- loss: the frame's slot is released, the frame never crosses;
- corrupt: one byte flipped. A transmitted frame's partial checksum is completed
  first (the NIC sums before the cable), a received one loses ``csum_ok``, so the
  receiver detects the damage either way. A TSO super-frame is never corrupted: the
  segments' checksums are computed after this wrapper, from the damaged bytes, and the
  damage would go undetected (with ``nic.tap.offloads: [csum]`` every frame is one
  segment);
- duplicate: a copy in a second slot of the same pool follows the frame (no free slot:
  no copy, counted in ``no_buffer``);
- reorder: the frame is held back and follows the next one, or leaves after
  ``REORDER_HOLD`` if none comes (``next_deadline`` says when).

The counters are ``wire_counters`` (the engine's stop summary reads them as the
loopback wire's, toad/experiment/counters.py) and ``counters`` (an in-host worker's).
"""
from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable

import numpy as np

from engine.frames import FramePool
from engine.nic.base import Nic, complete_checksum, slot_ids
from engine.nic.loopback import REORDER_HOLD
from toad.config import WireConfig

DIRECTIONS = ("tx", "both")
COUNTER_NAMES = ("sent", "delivered", "lost", "duplicated", "reordered", "corrupted",
                 "no_buffer")


def has_faults(config: WireConfig) -> bool:
    return any((config.loss, config.duplicate, config.reorder, config.corrupt))


class FaultyNic:
    """Wraps a NIC (engine/nic/base.py's interface) and damages its frames."""

    def __init__(self, inner: Nic, config: WireConfig, directions: str = "tx",
                 clock: Callable[[], float] = time.monotonic, seed: int | None = None):
        if directions not in DIRECTIONS:
            raise ValueError(f"fault directions {directions!r}: one of {DIRECTIONS}")
        self.inner = inner
        self.features = inner.features
        self.config = config
        self.clock = clock
        self.random = random.Random(config.seed if seed is None else seed)
        self.receive_side = directions == "both"
        self.counters = dict.fromkeys(COUNTER_NAMES, 0)
        self.wire_counters = self.counters
        self.comes_back = getattr(inner, "comes_back", None)
        self.tx_held: tuple | None = None   # (pool, slot, release time)
        self.rx_held: tuple | None = None   # (pool, slot, release time)
        self.rx_ready: deque = deque()      # slots of rx_pool to hand out before new frames
        self.rx_pool: FramePool | None = None
        self.rx_scratch = np.empty(0, np.int32)

    # ---- the faults of one frame -----------------------------------------------------
    def damage(self, pool: FramePool, slot: int, receiving: bool, now: float,
               out: list) -> None:
        """Append what becomes of frame ``slot`` to ``out`` (nothing, it, it twice),
        holding it back instead when it is reordered; a frame held back goes right
        behind the next frame that goes out (the loopback wire's order: a duplicate
        held back follows its original)."""
        config, draw, counters = self.config, self.random.random, self.counters
        size = pool.lengths[slot]
        lose, corrupt, duplicate, reorder = draw(), draw(), draw(), draw()
        where, flip = self.random.randrange(max(size, 1)), self.random.randrange(1, 256)
        if lose < config.loss:
            counters["lost"] += 1
            pool.release(slot)
            return
        if corrupt < config.corrupt and size and (receiving or not pool.gso_sizes[slot]):
            counters["corrupted"] += 1
            if receiving:
                pool.csum_oks[slot] = 0         # the NIC no longer vouches for it
            else:
                complete_checksum(pool, slot)   # the NIC sums before the cable
            pool.bytes[slot * pool.slot_bytes + where] ^= flip
        copies = [slot]
        if duplicate < config.duplicate:
            twin = pool.put(pool.view(slot), bool(pool.csum_oks[slot]))
            if twin < 0:
                counters["no_buffer"] += 1
            else:
                counters["duplicated"] += 1
                for field in (pool.csum_starts, pool.csum_offsets, pool.gso_sizes):
                    field[twin] = field[slot]
                copies.append(twin)
        attr = "rx_held" if receiving else "tx_held"
        if reorder < config.reorder and getattr(self, attr) is None:
            counters["reordered"] += 1
            setattr(self, attr, (pool, copies.pop(), now + REORDER_HOLD))
        for copy in copies:
            out.append(copy)
            held = getattr(self, attr)
            if held is not None:                # it goes right behind the next frame
                setattr(self, attr, None)
                out.append(held[1])

    # ---- transmit ------------------------------------------------------------------------
    def send_burst(self, pool: FramePool, slots, n: int) -> None:
        if n <= 0:
            return
        now = self.clock()
        self.release_tx(now)
        out: list[int] = []
        self.counters["sent"] += n
        for slot in slot_ids(slots, n):
            self.damage(pool, slot, False, now, out)
        if out:
            self.inner.send_burst(pool, out, len(out))

    def release_tx(self, now: float) -> None:
        """Send a held-back frame whose hold is over (no frame followed it)."""
        held = self.tx_held
        if held is not None and held[2] <= now:
            self.tx_held = None
            self.inner.send_burst(held[0], [held[1]], 1)

    # ---- receive -------------------------------------------------------------------------
    def receive_burst(self, now: float, pool: FramePool, slots: np.ndarray) -> int:
        self.release_tx(self.clock())
        if not self.receive_side:
            n = self.inner.receive_burst(now, pool, slots)
            self.counters["delivered"] += n
            return n
        self.rx_pool = pool
        ready = self.rx_ready
        held = self.rx_held
        if held is not None and held[2] <= now:
            self.rx_held = None
            ready.append(held[1])
        room = len(slots) - len(ready)
        if room > 0:
            if len(self.rx_scratch) < room:
                self.rx_scratch = np.empty(len(slots), np.int32)
            got = self.inner.receive_burst(now, pool, self.rx_scratch[:room])
            if got:
                out: list[int] = []
                for slot in self.rx_scratch[:got].tolist():
                    self.damage(pool, slot, True, now, out)
                ready.extend(out)
        count = min(len(ready), len(slots))
        for k in range(count):
            slots[k] = ready.popleft()
        self.counters["delivered"] += count
        return count

    # ---- the rest of the interface ---------------------------------------------------------
    def fileno(self) -> int | None:
        return self.inner.fileno()

    def next_deadline(self) -> float | None:
        times = [t for t in (self.inner.next_deadline(),
                             self.tx_held[2] if self.tx_held else None,
                             self.rx_held[2] if self.rx_held else None) if t is not None]
        if self.rx_ready:
            times.append(0.0)               # frames to hand out now
        return min(times) if times else None

    def due(self, now: float) -> bool:
        """Frames to hand out by ``now``: damaged ones ready here, one held back
        whose time has come, or the wrapped NIC's."""
        held = self.rx_held
        return bool(self.rx_ready) or (held is not None and held[2] <= now) \
            or self.inner.due(now)

    def close(self) -> None:
        """Give back the frames held here, then close the NIC."""
        for held in (self.tx_held, self.rx_held):
            if held is not None:
                held[0].release(held[1])
        self.tx_held = self.rx_held = None
        if self.rx_ready:
            self.rx_pool.release_many(list(self.rx_ready))
            self.rx_ready.clear()
        self.inner.close()
