"""Frames as Python objects over the pool-and-burst NIC interface, for tests: a
``Frame`` is what a test builds or reads back (bytes and the transmit offload
fields); ``feed`` and ``sent`` drive a Stack with them, ``FrameNic`` a NIC's
``send_burst``/``receive_burst``."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.frames import FramePool, frame_bytes


@dataclass
class Frame:
    data: bytes | bytearray | memoryview   # Ethernet frame, headers + payload
    csum_start: int = 0                    # >0: the NIC fills the L4 checksum
    csum_offset: int = 0                   #   written at csum_start + csum_offset
    gso_size: int = 0                      # >0: a TSO super-frame


def put(pool: FramePool, frame: Frame) -> int:
    """``frame`` copied into a new slot of ``pool``, its transmit fields set."""
    slot = pool.alloc()
    assert slot >= 0, "test pool exhausted"
    data = frame.data
    pool.space(slot)[:len(data)] = data
    pool.lengths[slot] = len(data)
    pool.csum_starts[slot] = frame.csum_start
    pool.csum_offsets[slot] = frame.csum_offset
    pool.gso_sizes[slot] = frame.gso_size
    return slot


def take(pool: FramePool, slot: int) -> Frame:
    """A copy of the frame in ``slot`` (bytes and transmit fields); the slot released."""
    frame = Frame(bytearray(pool.view(slot)), pool.csum_starts[slot], pool.csum_offsets[slot],
                  pool.gso_sizes[slot])
    pool.release(slot)
    return frame


def feed(stack, frames, now: float) -> None:
    """``frames`` ((data, csum_ok) pairs) to ``stack.receive_frames`` as one burst of
    slots of its pool, as a NIC's receive_burst hands them over."""
    pool = stack.pool
    slots = np.array([pool.put(data, ok) for data, ok in frames], np.int32)
    assert (slots >= 0).all(), "test pool exhausted"
    stack.receive_frames(pool, slots, len(slots), now)


def sent(stack, now: float) -> list[Frame]:
    """What ``stack.poll_transmit(now)`` sends, as copies (its slots released)."""
    return [take(stack.pool, slot) for slot in stack.poll_transmit(now)]


class FrameNic:
    """A NIC driven with Python frames: ``send(frames)``, ``receive(now, max_frames)``
    -> [(bytearray, csum_ok)]; everything else is the NIC's own."""

    def __init__(self, nic, pool: FramePool | None = None):
        self.nic = nic
        self.pool = pool or FramePool.for_frames(frame_bytes(nic.features))

    def send(self, frames) -> None:
        slots = np.array([put(self.pool, frame) for frame in frames], np.int32)
        self.nic.send_burst(self.pool, slots, len(slots))

    def receive(self, now: float, max_frames: int = 64) -> list[tuple[bytearray, bool]]:
        slots = np.empty(max_frames, np.int32)
        n = self.nic.receive_burst(now, self.pool, slots)
        out = [(bytearray(self.pool.view(slot)), bool(self.pool.csum_oks[slot]))
               for slot in slots[:n].tolist()]
        self.pool.release_many(slots, n)
        return out

    def __getattr__(self, name):
        return getattr(self.nic, name)
