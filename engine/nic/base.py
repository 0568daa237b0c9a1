"""The one small device interface every NIC backend implements (docs/stack-api.md).

A NIC moves whole Ethernet frames. On transmit the stack hands it TxFrames; a frame
with ``csum_start`` > 0 carries a partial TCP checksum (the pseudo-header sum already
in the field, as Linux's CHECKSUM_PARTIAL) that the NIC completes; a frame with
``gso_size`` > 0 is a TSO super-frame the NIC cuts into segments of that payload size.
On receive it returns (frame, csum_ok) pairs: csum_ok means the NIC vouches for the L4
checksum and the stack skips verifying it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from engine.tcp.checksum import fill_partial


@dataclass(frozen=True)
class NicFeatures:
    mtu: int                 # largest IP packet (the Ethernet payload) the NIC carries
    mac: bytes               # the NIC's Ethernet address (6 bytes)
    tx_csum: bool            # completes partial L4 checksums on transmit
    rx_csum: bool            # may report csum_ok on receive
    tso: bool                # accepts TCP super-frames with gso_size
    tso_max: int             # largest TCP payload of one super-frame (0 = no TSO)
    hears_itself: bool = False   # frames sent to our own MAC come back through receive()


@dataclass(slots=True)
class TxFrame:
    data: bytearray | memoryview      # Ethernet frame, headers + payload
    csum_start: int = 0               # >0: the NIC fills the L4 checksum
    csum_offset: int = 0              #   from csum_start, written at csum_start+csum_offset
    gso_size: int = 0                 # >0: the NIC splits the TCP payload at this size


class Nic(Protocol):
    features: NicFeatures

    def send(self, frames: list[TxFrame]) -> None: ...

    def receive(self, now: float, max_frames: int = 64) -> list[tuple[memoryview, bool]]: ...

    def fileno(self) -> int | None: ...

    def next_deadline(self) -> float | None: ...

    def close(self) -> None: ...


def complete_checksum(frame: TxFrame) -> None:
    """Do in software what a NIC does for a partial-checksum frame (in place)."""
    if frame.csum_start:
        fill_partial(frame.data, frame.csum_start, frame.csum_offset)
        frame.csum_start = 0
        frame.csum_offset = 0
