"""The frame builder: every checksum mode yields a segment that verifies (after the
NIC completes a partial one), TSO super-frames are marked and always partial, and the
headers are what the wire parsers read back."""
from __future__ import annotations

import os

import pytest

from engine.nic.base import NicFeatures
from engine.tcp.checksum import fill_partial, pseudo_sum
from engine.tcp.framing import FrameBuilder, ethernet_prefix
from engine.tcp.wire import ethernet, ipv4, tcp
from engine.tcp.wire.tcp import ACK, PSH, TcpRepr
from tests.nicframes import take

MAC_A, MAC_B = bytes.fromhex("02000000000a"), bytes.fromhex("02000000000b")
SRC, DST = ipv4.aton("10.0.0.1"), ipv4.aton("10.0.0.2")


def nic(tx_csum: bool, tso: bool = False) -> NicFeatures:
    return NicFeatures(mtu=1500, mac=MAC_A, tx_csum=tx_csum, rx_csum=tx_csum, tso=tso,
                       tso_max=65000 if tso else 0)


def segment(size: int) -> TcpRepr:
    return TcpRepr(5001, 40000, 0xFFFFFF00, 77, ACK | PSH, 1234, timestamp=(9, 8),
                   sack_blocks=((1, 2),), payload=memoryview(bytearray(os.urandom(size))))


def built(builder: FrameBuilder, *args, **kw):
    """``builder.tcp_frame(*args)`` as a copy (tests.nicframes.Frame), its slot released."""
    slot = builder.tcp_frame(*args, **kw)
    return take(builder.loop_pool if kw.get("local") else builder.pool, slot)


def complete(frame) -> None:
    if frame.csum_start:
        fill_partial(frame.data, frame.csum_start, frame.csum_offset)


def read_back(frame_data, check: bool = True):
    eth = ethernet.parse(memoryview(frame_data))
    packet = ipv4.parse(eth.payload)
    pseudo = pseudo_sum(packet.src, packet.dst, 6, packet.payload_len) if check else None
    return eth, packet, tcp.parse(packet.payload, pseudo)


@pytest.mark.parametrize("mode", ["software", "integrated", "offloaded", "off"])
@pytest.mark.parametrize("tx_csum", [True, False])
@pytest.mark.parametrize("size", [0, 1, 1447, 1448])
def test_every_mode_builds_a_valid_frame(mode, tx_csum, size):
    seg = segment(size)
    frame = built(FrameBuilder(mode, nic(tx_csum)), ethernet_prefix(MAC_B, MAC_A), SRC, DST, seg)
    partial = mode == "offloaded" and tx_csum
    assert bool(frame.csum_start) == partial and frame.gso_size == 0
    complete(frame)
    eth, packet, back = read_back(frame.data, check=mode != "off")
    assert (eth.dst, eth.src, packet.src, packet.dst) == (MAC_B, MAC_A, SRC, DST)
    assert packet.dont_fragment and packet.ttl == 64
    assert bytes(back.payload) == bytes(seg.payload)
    assert (back.seq, back.ack, back.flags, back.window, back.timestamp, back.sack_blocks) == \
        (seg.seq, seg.ack, seg.flags, seg.window, seg.timestamp, seg.sack_blocks)
    if mode == "off":
        assert bytes(frame.data[50:52]) == b"\0\0"


def test_ip_ident_advances():
    builder = FrameBuilder("software", nic(False))
    idents = [read_back(built(builder, ethernet_prefix(MAC_B, MAC_A), SRC, DST,
                              segment(10)).data)[1].ident for _ in range(3)]
    assert idents[1] == idents[0] + 1 and idents[2] == idents[1] + 1


@pytest.mark.parametrize("mode", ["software", "integrated", "offloaded"])
def test_tso_superframe_is_marked_and_partial(mode):
    seg = segment(10_000)
    frame = built(FrameBuilder(mode, nic(True, tso=True)),
                  ethernet_prefix(MAC_B, MAC_A), SRC, DST, seg, gso_size=1448)
    assert frame.gso_size == 1448 and frame.csum_start == 34 and frame.csum_offset == 16
    complete(frame)
    assert bytes(read_back(frame.data)[2].payload) == bytes(seg.payload)
    small = built(FrameBuilder(mode, nic(True, tso=True)),
                  ethernet_prefix(MAC_B, MAC_A), SRC, DST, segment(1000), gso_size=1448)
    assert small.gso_size == 0                       # fits one segment: no GSO


def test_local_frames_stay_partial():
    builder = FrameBuilder("software", nic(False))
    frame = built(builder, ethernet_prefix(MAC_A, MAC_A), SRC, SRC, segment(100), local=True)
    assert frame.csum_start == 34
    assert builder.loop_pool.slot_bytes >= 14 + 65535          # the loop's 64 KB frames


def test_software_burst_is_summed_in_one_buffer_in_order():
    """A software-mode burst is built in its slots and summed by one call: every
    frame verifies, is the bytes of its own segment (odd sizes, with and without
    options other than the timestamp), in the segments' order, and has the checksum
    that a burst of one frame gets (the per-frame sum)."""
    sizes = [1448, 1, 0, 777, 1448, 3, 1200]
    segments = [segment(n) for n in sizes]
    segments[2].sack_blocks = ()            # NOP NOP TS alone: the packed-options path
    segments[4].timestamp = None            # no options but SACK
    builder = FrameBuilder("software", nic(False))
    prefix = ethernet_prefix(MAC_B, MAC_A)
    slots: list = []
    builder.tcp_frames(prefix, SRC, DST, segments, 0, False, None, slots)
    assert len(slots) == len(segments) == len(set(slots))
    out = [take(builder.pool, slot) for slot in slots]
    single = FrameBuilder("software", nic(False))
    for frame, seg in zip(out, segments):
        assert not frame.csum_start and not frame.gso_size
        _, _, back = read_back(frame.data)                 # verifies the checksum
        assert bytes(back.payload) == bytes(seg.payload) and back.seq == seg.seq
        alone = built(single, prefix, SRC, DST, seg)
        assert bytes(alone.data) == bytes(frame.data)       # same ident sequence too
    assert builder.pool.available == builder.pool.slots


def test_software_burst_with_tso_keeps_superframes_partial_and_in_order():
    builder = FrameBuilder("software", nic(True, tso=True))
    segments = [segment(4000), segment(100)]
    slots: list = []
    builder.tcp_frames(ethernet_prefix(MAC_B, MAC_A), SRC, DST, segments, 1448, False,
                       None, slots)
    out = [take(builder.pool, slot) for slot in slots]
    assert [bool(f.gso_size) for f in out] == [True, False]
    assert out[0].csum_start and not out[1].csum_start
    read_back(out[1].data)
