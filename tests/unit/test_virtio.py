"""virtio-net header: golden bytes, validation, and checksum completion."""
from __future__ import annotations

import struct

import pytest

from engine.nic import virtio


def reference_sum(data: bytes) -> int:
    """RFC 1071 written the slow, obvious way (the oracle for the numpy version)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def tcp_frame(payload: bytes) -> bytearray:
    """Ethernet + IPv4 + 20-byte TCP with a partial (pseudo-header) checksum."""
    src, dst = bytes([10, 77, 0, 2]), bytes([10, 77, 0, 1])
    tcp_len = 20 + len(payload)
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + tcp_len, 1, 0x4000, 64, 6, 0,
                               src, dst))
    ip[10:12] = (0xFFFF - reference_sum(bytes(ip))).to_bytes(2, "big")
    tcp = bytearray(struct.pack("!HHIIBBHHH", 5001, 40000, 1, 2, 5 << 4, 0x18, 1000, 0, 0))
    pseudo = src + dst + struct.pack("!BBH", 0, 6, tcp_len)
    tcp[16:18] = reference_sum(pseudo).to_bytes(2, "big")   # what NEEDS_CSUM frames carry
    return bytearray(b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00") + ip + tcp + payload


def test_pack_golden_bytes():
    header = virtio.VirtioHeader(virtio.F_NEEDS_CSUM, virtio.GSO_TCPV4, 66, 1448, 34, 16)
    assert virtio.pack(header) == bytes.fromhex("01014200a805220010 00".replace(" ", ""))
    assert virtio.parse(virtio.pack(header)) == header
    assert virtio.NO_OFFLOAD_BYTES == bytes(10)


def test_pack_into_and_properties():
    buf = bytearray(12)
    virtio.pack_into(buf, 2, flags=virtio.F_DATA_VALID, gso_type=virtio.GSO_TCPV4 | virtio.GSO_ECN,
                     gso_size=8948)
    header = virtio.parse(buf[2:])
    assert header.data_valid and not header.needs_csum
    assert header.gso == virtio.GSO_TCPV4 and header.gso_size == 8948


@pytest.mark.parametrize("raw, message", [
    (b"\x00" * 9, "needs 10 bytes"),
    (bytes([0x08, 0, 0, 0, 0, 0, 0, 0, 0, 0]), "unknown virtio-net flags"),
    (bytes([0, 0x02, 0, 0, 0, 0, 0, 0, 0, 0]), "unknown GSO type"),
    (bytes([0, 0x01, 0, 0, 0, 0, 0, 0, 0, 0]), "gso_size 0"),
])
def test_parse_rejects(raw, message):
    with pytest.raises(virtio.VirtioHeaderError, match=message):
        virtio.parse(raw)


def test_parse_checks_checksum_field_against_frame_length():
    raw = virtio.HEADER.pack(virtio.F_NEEDS_CSUM, 0, 0, 0, 34, 16)
    assert virtio.parse(raw, 52).csum_start == 34
    with pytest.raises(virtio.VirtioHeaderError, match="beyond"):
        virtio.parse(raw, 51)


@pytest.mark.parametrize("size", [0, 1, 2, 3, 1459, 1460, 65000])
def test_sum16_matches_rfc1071(size):
    data = bytes((i * 37 + 11) & 0xFF for i in range(size))
    assert virtio.sum16(data) == reference_sum(data)


@pytest.mark.parametrize("size", [0, 1, 1460, 9001])
def test_complete_checksum_makes_a_valid_segment(size):
    frame = tcp_frame(bytes((i * 7) & 0xFF for i in range(size)))
    virtio.complete_checksum(frame, 34, 16)
    src_dst = bytes(frame[26:34])
    pseudo = src_dst + struct.pack("!BBH", 0, 6, len(frame) - 34)
    # a correct checksum makes the sum over pseudo-header + segment 0xFFFF
    assert reference_sum(pseudo + bytes(frame[34:])) == 0xFFFF


def test_complete_checksum_rejects_field_outside_frame():
    with pytest.raises(virtio.VirtioHeaderError):
        virtio.complete_checksum(bytearray(40), 34, 16)
