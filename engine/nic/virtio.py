"""The virtio-net header a TAP device opened with IFF_VNET_HDR puts before every frame.

Layout (little endian, 10 bytes; `struct virtio_net_hdr` in linux/virtio_net.h):

    offset size field
    0      1    flags        NEEDS_CSUM: the L4 checksum is partial (pseudo-header sum
                             only); the receiver sums bytes [csum_start, end) and
                             stores the result at csum_start + csum_offset.
                             DATA_VALID: the checksum was already verified.
    1      1    gso_type     NONE, TCPV4, UDP, TCPV6, with the ECN bit (0x80)
    2      2    hdr_len      Ethernet + IP + TCP header bytes of a GSO frame
    4      2    gso_size     payload bytes per segment when the frame is split
    6      2    csum_start   offset of the L4 header from the start of the frame
    8      2    csum_offset  offset of the checksum field inside that header

The TAP NIC (engine/nic/tap.py) reads and writes frames as header + Ethernet frame.
This module only packs, parses and completes checksums: no I/O.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

HEADER_LEN = 10
HEADER = struct.Struct("<BBHHHH")

# flags
F_NEEDS_CSUM = 0x01
F_DATA_VALID = 0x02
F_RSC_INFO = 0x04

# gso_type
GSO_NONE = 0x00
GSO_TCPV4 = 0x01
GSO_UDP = 0x03
GSO_TCPV6 = 0x04
GSO_ECN = 0x80

KNOWN_FLAGS = F_NEEDS_CSUM | F_DATA_VALID | F_RSC_INFO
KNOWN_GSO = (GSO_NONE, GSO_TCPV4, GSO_UDP, GSO_TCPV6)


class VirtioHeaderError(ValueError):
    """A header that cannot describe a frame (counted and dropped by the NIC)."""


@dataclass(frozen=True, slots=True)
class VirtioHeader:
    flags: int = 0
    gso_type: int = GSO_NONE
    hdr_len: int = 0
    gso_size: int = 0
    csum_start: int = 0
    csum_offset: int = 0

    @property
    def needs_csum(self) -> bool:
        return bool(self.flags & F_NEEDS_CSUM)

    @property
    def data_valid(self) -> bool:
        return bool(self.flags & F_DATA_VALID)

    @property
    def gso(self) -> int:
        """The GSO type without the ECN bit."""
        return self.gso_type & ~GSO_ECN


NO_OFFLOAD = VirtioHeader()
NO_OFFLOAD_BYTES = HEADER.pack(0, 0, 0, 0, 0, 0)


def pack(header: VirtioHeader) -> bytes:
    return HEADER.pack(header.flags, header.gso_type, header.hdr_len, header.gso_size,
                       header.csum_start, header.csum_offset)


def pack_into(buffer, offset: int, flags: int = 0, gso_type: int = GSO_NONE, hdr_len: int = 0,
              gso_size: int = 0, csum_start: int = 0, csum_offset: int = 0) -> None:
    """Write a header in place (the transmit path builds it next to the frame)."""
    HEADER.pack_into(buffer, offset, flags, gso_type, hdr_len, gso_size, csum_start, csum_offset)


def parse(data, frame_len: int | None = None) -> VirtioHeader:
    """Parse the first 10 bytes of ``data``; ``frame_len`` (bytes after the header)
    lets the checksum fields be checked against the frame they describe."""
    if len(data) < HEADER_LEN:
        raise VirtioHeaderError(f"virtio-net header needs {HEADER_LEN} bytes, got {len(data)}")
    flags, gso_type, hdr_len, gso_size, csum_start, csum_offset = HEADER.unpack_from(data, 0)
    if flags & ~KNOWN_FLAGS:
        raise VirtioHeaderError(f"unknown virtio-net flags 0x{flags:02x}")
    if gso_type & ~GSO_ECN not in KNOWN_GSO:
        raise VirtioHeaderError(f"unknown GSO type 0x{gso_type:02x}")
    if gso_type & ~GSO_ECN != GSO_NONE and gso_size == 0:
        raise VirtioHeaderError("GSO frame with gso_size 0")
    if flags & F_NEEDS_CSUM and frame_len is not None:
        if csum_start + csum_offset + 2 > frame_len:
            raise VirtioHeaderError(
                f"checksum field at {csum_start}+{csum_offset} beyond a {frame_len}-byte frame")
    return VirtioHeader(flags, gso_type, hdr_len, gso_size, csum_start, csum_offset)


def fold(total: int) -> int:
    """Fold a wide one's-complement sum into 16 bits (RFC 1071)."""
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def sum16(data) -> int:
    """One's-complement sum of ``data`` as big-endian 16-bit words, unfolded-safe
    (numpy; exact because the uint64 accumulator cannot overflow below 2**48 bytes)."""
    view = np.frombuffer(data, dtype=np.uint8)
    even = len(view) & ~1
    total = int(view[:even].view(">u2").sum(dtype=np.uint64))
    if len(view) & 1:
        total += int(view[-1]) << 8
    return fold(total)


def complete_checksum(frame, csum_start: int, csum_offset: int) -> None:
    """Finish a partial checksum (NEEDS_CSUM) in place: the field holds the pseudo-header
    sum; the full checksum is the complement of the sum over [csum_start, end)."""
    view = memoryview(frame)
    at = csum_start + csum_offset
    if at + 2 > len(view):
        raise VirtioHeaderError(f"checksum field at {at} beyond a {len(view)}-byte frame")
    value = 0xFFFF - sum16(view[csum_start:])
    view[at:at + 2] = value.to_bytes(2, "big")
