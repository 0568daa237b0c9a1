"""The one small device interface every NIC backend implements (docs/stack-api.md).

A NIC moves whole Ethernet frames held in a frame pool (engine/frames.py), in bursts
of slot ids. ``send_burst(pool, slots, n)`` takes ownership of ``slots[:n]`` and
releases each slot once it is done with it (sent, copied onto the wire, or dropped).
A slot with ``csum_start`` > 0 carries a partial TCP checksum (the pseudo-header sum
already in the field, as Linux's CHECKSUM_PARTIAL) that the NIC completes; one with
``gso_size`` > 0 is a TSO super-frame the NIC cuts into segments of that payload size.
``receive_burst(now, pool, slots)`` fills up to ``len(slots)`` slot ids of ``pool``
with received frames (``length`` and ``csum_ok`` set; csum_ok means the NIC vouches
for the L4 checksum and the stack skips verifying it) and returns how many: they are
the caller's, to release. A frame that finds no free slot is dropped and counted.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from engine.frames import FramePool
from engine.tcp.checksum import fill_partial


@dataclass(frozen=True)
class NicFeatures:
    mtu: int                 # largest IP packet (the Ethernet payload) the NIC carries
    mac: bytes               # the NIC's Ethernet address (6 bytes)
    tx_csum: bool            # completes partial L4 checksums on transmit
    rx_csum: bool            # may report csum_ok on receive
    tso: bool                # accepts TCP super-frames with gso_size
    tso_max: int             # largest TCP payload of one super-frame (0 = no TSO)
    hears_itself: bool = False   # frames sent to our own MAC come back through receive


class Nic(Protocol):
    features: NicFeatures

    def send_burst(self, pool: FramePool, slots, n: int) -> None: ...

    def receive_burst(self, now: float, pool: FramePool, slots: np.ndarray) -> int: ...

    def fileno(self) -> int | None: ...

    def next_deadline(self) -> float | None: ...

    def due(self, now: float) -> bool:
        """Whether frames that reached the NIC by ``now`` wait to be received (False
        where that is not known without reading them)."""
        ...

    def close(self) -> None: ...


def slot_ids(slots, n: int) -> list[int]:
    """``slots[:n]`` as a list of ints (Python backends loop over it): ``slots`` is an
    int32 array (compiled callers) or a list (the Python stack's output)."""
    if type(slots) is np.ndarray:
        return slots[:n].tolist()
    return slots if n == len(slots) else slots[:n]


def complete_checksum(pool: FramePool, slot: int) -> None:
    """Do in software what a NIC does for a partial-checksum frame (in the slot)."""
    start = pool.csum_starts[slot]
    if start:
        fill_partial(pool.view(slot), start, pool.csum_offsets[slot])
        pool.csum_starts[slot] = 0
        pool.csum_offsets[slot] = 0

