"""The numba Internet checksum against a plain RFC 1071 reference, at every length
and alignment, plus the integrated copy+sum and the NIC's partial-checksum fill."""
from __future__ import annotations

import os
import random

import pytest

from engine.tcp import checksum as ck


def reference_sum(data: bytes) -> int:
    """RFC 1071 the slow way: big-endian 16-bit words, odd byte padded, folded."""
    if len(data) % 2:
        data += b"\0"
    total = sum(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def test_rfc1071_example():
    # RFC 1071 section 3: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2
    assert ck.ones_sum(bytes.fromhex("0001f203f4f5f6f7")) == 0xDDF2
    assert ck.checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0xFFFF - 0xDDF2


@pytest.mark.parametrize("length", list(range(0, 33)) + [1459, 1460, 65535, 65536])
def test_sum_matches_reference_every_length(length):
    data = os.urandom(length)
    assert ck.ones_sum(data) == reference_sum(data)
    assert ck.ones_sum(bytearray(data)) == reference_sum(data)


@pytest.mark.parametrize("offset", range(8))
def test_sum_at_every_alignment(offset):
    block = bytearray(os.urandom(3000))
    view = memoryview(block)[offset:offset + 2001]
    assert ck.ones_sum(view) == reference_sum(bytes(view))


def test_all_ones_words_do_not_overflow():
    data = b"\xff" * 65536
    assert ck.ones_sum(data) == reference_sum(data) == 0xFFFF


@pytest.mark.parametrize("offset,length", [(0, 0), (1, 1), (3, 17), (54, 1460), (7, 65535)])
def test_copy_sum_copies_and_sums_in_one_pass(offset, length):
    src = os.urandom(length)
    frame = bytearray(offset + length + 5)
    got = ck.copy_sum(memoryview(frame)[offset:], src)
    assert got == reference_sum(src)
    assert frame[offset:offset + length] == src
    assert frame[:offset] == bytes(offset) and frame[offset + length:] == bytes(5)


@pytest.mark.parametrize("head", [0, 2, 20, 32, 60])
def test_copy_sum_includes_the_header_already_in_place(head):
    src = os.urandom(1001)
    segment = bytearray(os.urandom(head)) + bytearray(len(src))
    got = ck.copy_sum(segment, src, head)
    assert segment[head:] == src
    assert got == reference_sum(bytes(segment))


def test_copy_sum_refuses_an_odd_head():
    with pytest.raises(ValueError, match="even"):
        ck.copy_sum(bytearray(10), b"ab", 3)


def test_pieces_combine_with_odd_offsets():
    data = os.urandom(999)
    pieces = [data[:333], data[333:700], data[700:]]
    total, at = 0, 0
    for piece in pieces:
        total += ck.shift_sum(ck.ones_sum(piece), at % 2 == 1)
        at += len(piece)
    assert ck.fold(total) == reference_sum(data)


def test_pseudo_header_sum():
    src, dst = 0xC0A80001, 0xC0A800C7
    header = src.to_bytes(4, "big") + dst.to_bytes(4, "big") + bytes((0, 6)) + (1234).to_bytes(2, "big")
    assert ck.pseudo_sum(src, dst, 6, 1234) == reference_sum(header)


def test_fill_partial_gives_a_verifying_checksum():
    rng = random.Random(3)
    segment = bytearray(rng.randbytes(200))
    segment[16:18] = b"\0\0"
    pseudo = ck.pseudo_sum(0x0A000001, 0x0A000002, 6, len(segment))
    segment[16:18] = pseudo.to_bytes(2, "big")      # what the stack pre-fills
    frame = bytearray(34) + segment
    ck.fill_partial(frame, 34, 16)
    assert frame[34 + 16:34 + 18] != pseudo.to_bytes(2, "big")   # the field was rewritten
    # the receiver's check: pseudo-header + whole segment sums to all ones
    tail = frame[34:]
    assert ck.fold(ck.pseudo_sum(0x0A000001, 0x0A000002, 6, len(tail)) + reference_sum(bytes(tail))) == 0xFFFF


def random_regions(seed: int, max_len: int, count: int = 200):
    """(data, start, end, initial sum) of ``count`` seeded random regions."""
    rng = random.Random(seed)
    for _ in range(count):
        data = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, max_len)))
        start = rng.randrange(0, len(data) + 1)
        end = rng.randrange(start, len(data) + 1)
        yield data, start, end, rng.randrange(0, 1 << 20)


@pytest.mark.parametrize("kind", ["bytearray", "memoryview", "readonly", "bytes"])
def test_region_sum_matches_reference_on_every_buffer_kind(kind):
    for data, start, end, initial in random_regions(7, 80):
        buf = {"bytearray": bytearray(data), "memoryview": memoryview(bytearray(data)),
               "readonly": memoryview(data), "bytes": data}[kind]
        assert ck.region_sum(buf, start, end, initial) == ck.fold(
            initial + reference_sum(data[start:end]))


@pytest.mark.parametrize("kind", ["bytearray", "memoryview", "readonly", "bytes", "slice"])
def test_region_frame_entry_point_matches_reference(kind):
    """The per-frame paths call the kernel's entry point directly (no dispatcher):
    same sums on every contiguous buffer kind the NICs hand over, folded to 16 bits,
    including empty regions and odd lengths."""
    for data, start, end, initial in random_regions(11, 1600):
        buf = {"bytearray": bytearray(data), "memoryview": memoryview(bytearray(data)),
               "readonly": memoryview(data), "bytes": data,
               "slice": memoryview(bytearray(b"xyz" + data))[3:]}[kind]
        got = ck.region_frame(buf, start, end, initial)
        assert got == ck.fold(initial + reference_sum(data[start:end])) and got <= 0xFFFF


def test_region_frame_refuses_a_non_buffer():
    with pytest.raises(TypeError):
        ck.region_frame(12, 0, 1, 0)


@pytest.mark.parametrize("kind", ["bytearray", "memoryview", "readonly", "bytes"])
def test_frame_copy_sum_copies_and_sums_with_the_header(kind):
    import numpy as np
    head, payload = bytes(range(32)), os.urandom(1447)
    frame = np.zeros(34 + head.__len__() + len(payload), dtype=np.uint8)
    frame[34:66] = np.frombuffer(head, np.uint8)
    src = {"bytearray": bytearray(payload), "memoryview": memoryview(bytearray(payload)),
           "readonly": memoryview(payload), "bytes": payload}[kind]
    got = int(ck.frame_copy_sum_kernel(frame, 34, 32, src, 0x1234))
    assert bytes(frame[66:]) == payload
    assert got == ck.fold(0x1234 + reference_sum(head + payload))
