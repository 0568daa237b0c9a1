"""The TAP NIC's framing without a device: what a read turns into, what a write carries."""
from __future__ import annotations

import socket
import struct

import numpy as np
import pytest

from engine.frames import FramePool
from engine.nic import virtio
from engine.nic.tap import TapDevice
from tests.nicframes import Frame, put
from tests.unit.test_virtio import reference_sum, tcp_frame

POOL = FramePool(16, 65600)


def read(device: TapDevice, header: bytes, frame: bytes, pool: FramePool = POOL):
    """What one readv of ``header`` + ``frame`` turns into: (frame view, csum_ok) in
    its slot, or None (dropped: the slot is kept for the next read)."""
    slot = pool.alloc()
    device.header[:] = header
    pool.space(slot)[:len(frame)] = frame
    if not device.accept(pool, slot, len(header) + len(frame)):
        pool.release(slot)
        return None
    return pool.view(slot), bool(pool.csum_ok[slot])


def valid(frame) -> bool:
    data = bytes(frame)
    pseudo = data[26:34] + struct.pack("!BBH", 0, 6, len(data) - 34)
    return reference_sum(pseudo + data[34:]) == 0xFFFF


def test_runts_and_bad_headers_are_counted_and_dropped():
    device = TapDevice(-1, rx_csum=True)
    assert read(device, bytes(10), bytes(13)) is None
    assert read(device, bytes([0x10]) + bytes(9), bytes(60)) is None
    assert read(device, bytes([0, 0x01]) + bytes(8), bytes(60)) is None   # GSO, size 0
    assert read(device, virtio.HEADER.pack(1, 0, 0, 0, 50, 16), bytes(60)) is None
    small = FramePool(2, 128)
    assert read(device, bytes(10), bytes(128), small) is None          # fills the slot
    assert device.counters["rx_dropped_runt"] == 1
    assert device.counters["rx_dropped_bad_header"] == 3
    assert device.counters["rx_dropped_oversize"] == 1
    assert device.counters["rx_frames"] == 0


def test_partial_checksum_trusted_with_offload_completed_without():
    frame = bytes(tcp_frame(b"payload" * 100))
    header = virtio.HEADER.pack(virtio.F_NEEDS_CSUM, 0, 0, 0, 34, 16)
    offloaded = TapDevice(-1, rx_csum=True)
    got, ok = read(offloaded, header, frame)
    assert ok and bytes(got) == frame and not valid(got)
    software = TapDevice(-1, rx_csum=False)
    got, ok = read(software, header, frame)
    assert not ok and valid(got)           # completed in place: the stack verifies it
    assert software.counters["rx_partial_csum"] == 1


def test_data_valid_gso_and_plain_frames():
    frame = bytes(tcp_frame(b"x" * 3000))
    device = TapDevice(-1, rx_csum=True)
    assert read(device, bytes([virtio.F_DATA_VALID]) + bytes(9), frame)[1] is True
    gso = virtio.HEADER.pack(virtio.F_NEEDS_CSUM, virtio.GSO_TCPV4, 54, 1448, 34, 16)
    assert read(device, gso, frame)[1] is True
    assert read(device, bytes(10), frame)[1] is False
    assert device.counters["rx_gso_frames"] == 1 and device.counters["rx_frames"] == 3


def test_transmit_headers():
    device = TapDevice(-1, rx_csum=True)
    frame = tcp_frame(b"y" * 5000)

    def header_of(tx: Frame, tx_csum: bool, tso: bool):
        return device.tx_header(POOL, put(POOL, tx), tx_csum, tso)
    header = virtio.parse(header_of(Frame(frame, 34, 16, 1448), True, True))
    assert (header.gso, header.gso_size, header.hdr_len) == (virtio.GSO_TCPV4, 1448, 54)
    assert header.needs_csum and (header.csum_start, header.csum_offset) == (34, 16)
    assert header_of(Frame(frame, 34, 16, 1448), True, False) is None
    partial = virtio.parse(header_of(Frame(frame, 34, 16), True, True))
    assert partial.needs_csum and partial.gso == virtio.GSO_NONE
    slot = put(POOL, Frame(tcp_frame(b"y" * 5000), 34, 16))
    assert device.tx_header(POOL, slot, False, False) == bytes(10)
    assert valid(POOL.view(slot))          # no offload: completed in the slot, before the write
    assert header_of(Frame(frame), True, True) == bytes(10)


def bare_pair():
    """A TapDevice without the virtio-net header on one end of a datagram socket
    pair (reads keep frame boundaries and return None when empty, as a TAP fd)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.setblocking(False)
    return TapDevice(ours.fileno(), rx_csum=False, vnet=False), ours, theirs


def test_bare_device_reads_whole_frames_and_drops_runts():
    device, ours, theirs = bare_pair()
    with ours, theirs:
        frame = bytes(tcp_frame(b"z" * 100))
        for data in (frame, bytes(13), frame[:60]):
            theirs.send(data)
        pool, slots = FramePool(8, 2048), np.empty(4, np.int32)
        assert device.read_batch(pool, slots) == 2
        got = [(bytes(pool.view(s)), bool(pool.csum_ok[s])) for s in slots[:2]]
        assert got == [(frame, False), (frame[:60], False)]
        assert device.counters["rx_frames"] == 2
        assert device.counters["rx_bytes"] == len(frame) + 60
        assert device.counters["rx_dropped_runt"] == 1
        assert device.read_batch(pool, slots) == 0         # empty: None, no exception
        pool.release_many(slots, 2)
        device.close()                                     # gives the spare slot back
        assert pool.available == pool.slots


def test_bare_device_writes_frames_completing_partial_checksums():
    device, ours, theirs = bare_pair()
    with ours, theirs:
        whole, partial, gso = tcp_frame(b"a" * 10), tcp_frame(b"b" * 300), tcp_frame(b"c" * 3000)
        pool = FramePool(8, 4096)
        ids = [put(pool, f) for f in (Frame(whole), Frame(partial, 34, 16),
                                      Frame(gso, 34, 16, 1448))]
        device.write_batch(pool, ids, False, False)
        assert pool.available == pool.slots                # every slot released
        assert theirs.recv(65536) == bytes(whole)          # no header before the frame
        sent = theirs.recv(65536)
        assert valid(sent)                                 # summed before the write
        assert sent[:50] == bytes(partial[:50]) and sent[52:] == bytes(partial[52:])
        theirs.setblocking(False)
        with pytest.raises(BlockingIOError):               # the super-frame was dropped
            theirs.recv(65536)
        assert device.counters["tx_frames"] == 2
        assert device.counters["tx_bytes"] == len(whole) + len(partial)
        assert device.counters["tx_dropped_no_tso"] == 1
