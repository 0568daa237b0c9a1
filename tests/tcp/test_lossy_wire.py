"""The loopback wire: routing between its ends, delay and bandwidth against an
injected clock, and seeded fault injection (deterministic by seed)."""
from __future__ import annotations

import pytest

from engine.nic.loopback import REORDER_HOLD, LoopbackWire
from tests.nicframes import Frame, FrameNic
from toad.config import WireConfig

MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")


class Clock:
    def __init__(self, now: float = 100.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def frame(dst: bytes, tag: int, size: int = 100) -> Frame:
    data = bytearray(size)
    data[:6] = dst
    data[6:12] = MAC_A
    data[14:18] = tag.to_bytes(4, "big")
    return Frame(data)


def ends(wire, *macs) -> list[FrameNic]:
    """The wire's ends for these MACs, driven with Python frames (one pool each)."""
    return [FrameNic(wire.attach(mac)) for mac in macs]


def tags(received) -> list[int]:
    return [int.from_bytes(f[14:18], "big") for f, _ in received]


def test_two_ends_hear_each_other_and_themselves():
    clock = Clock()
    wire = LoopbackWire(clock=clock)
    a, b = ends(wire, MAC_A, MAC_B)
    a.send([frame(MAC_B, 1), frame(b"\xff" * 6, 2), frame(MAC_A, 3)])
    assert tags(b.receive(clock.now)) == [1, 2]
    assert tags(a.receive(clock.now)) == [3]
    assert a.features.hears_itself and not a.features.tso


def test_single_end_hears_itself():
    clock = Clock()
    wire = LoopbackWire(clock=clock)
    a, = ends(wire, MAC_A)
    a.send([frame(MAC_B, 7)])
    assert tags(a.receive(clock.now)) == [7]


def test_third_end_refused():
    wire = LoopbackWire()
    wire.attach(MAC_A)
    wire.attach(MAC_B)
    with pytest.raises(ValueError, match="at most two"):
        wire.attach(bytes(6))


def test_delay_and_bandwidth_follow_the_injected_clock():
    clock = Clock(10.0)
    wire = LoopbackWire(WireConfig(delay_us=500, bandwidth_gbps=0.008), clock=clock)
    a, b = ends(wire, MAC_A, MAC_B)
    # 0.008 Gb/s = 1 byte per microsecond: two 1000-byte frames serialise in 1 ms each
    a.send([frame(MAC_B, 1, 1000), frame(MAC_B, 2, 1000)])
    assert b.receive(10.0 + 0.0014) == []
    assert b.next_deadline() == pytest.approx(10.0015)
    assert tags(b.receive(10.0015)) == [1]
    assert tags(b.receive(10.0025)) == [2]
    assert b.next_deadline() is None


def test_oversize_frames_dropped_and_counted():
    clock = Clock()
    wire = LoopbackWire(mtu=1500, clock=clock)
    a, b = ends(wire, MAC_A, MAC_B)
    a.send([frame(MAC_B, 1, 1515), frame(MAC_B, 2, 1514)])
    assert tags(b.receive(clock.now)) == [2]
    assert wire.counters["oversize"] == 1


def run_faulty(config: WireConfig, count: int = 2000) -> tuple[list[int], dict]:
    clock = Clock()
    wire = LoopbackWire(config, clock=clock)
    a, b = ends(wire, MAC_A, MAC_B)
    got = []
    for i in range(count):
        a.send([frame(MAC_B, i)])
        clock.now += 1e-5
        got += tags(b.receive(clock.now))
    clock.now += 1.0
    got += tags(b.receive(clock.now, max_frames=10 ** 6))
    return got, wire.counters


def test_faults_are_deterministic_by_seed():
    config = WireConfig(loss=0.05, duplicate=0.05, reorder=0.05, corrupt=0.0, seed=11)
    first, counters = run_faulty(config)
    second, _ = run_faulty(config)
    third, _ = run_faulty(WireConfig(loss=0.05, duplicate=0.05, reorder=0.05, seed=12))
    assert first == second and first != third
    assert counters["lost"] > 40 and counters["duplicated"] > 40 and counters["reordered"] > 40
    assert len(first) == 2000 - counters["lost"] + counters["duplicated"]


def test_reordered_frame_goes_behind_its_successor():
    got, counters = run_faulty(WireConfig(reorder=0.2, seed=3), count=500)
    assert sorted(got) == list(range(500))
    swaps = sum(1 for x, y in zip(got, got[1:]) if x > y)
    assert swaps == counters["reordered"] > 50


def test_held_frame_released_without_successor():
    clock = Clock()
    wire = LoopbackWire(WireConfig(reorder=0.999, seed=1), clock=clock)
    a, b = ends(wire, MAC_A, MAC_B)
    a.send([frame(MAC_B, 1)])
    assert b.receive(clock.now) == []
    assert b.next_deadline() == pytest.approx(clock.now + REORDER_HOLD)
    assert tags(b.receive(clock.now + REORDER_HOLD)) == [1]


def test_corruption_flips_a_byte_and_completes_the_checksum_first():
    clock = Clock()
    wire = LoopbackWire(WireConfig(corrupt=0.999, seed=5), clock=clock)
    a, b = ends(wire, MAC_A, MAC_B)
    original = frame(MAC_B, 9, 200)
    original.data[40:42] = b"\x12\x34"          # a "pseudo-header sum" in the field
    original.csum_start, original.csum_offset = 24, 16
    sent = bytes(original.data)
    a.send([original])
    (data, csum_ok), = b.receive(clock.now)
    assert not csum_ok                           # corrupted frames are never vouched for
    differing = [i for i in range(200) if data[i] != sent[i]]
    assert 40 in differing or 41 in differing    # the NIC filled the checksum
    assert 1 <= len(differing) <= 3


def test_partial_checksum_frames_are_vouched_for_when_offloading():
    clock = Clock()
    a, = ends(LoopbackWire(clock=clock), MAC_A)
    partial = frame(MAC_A, 1)
    partial.csum_start, partial.csum_offset = 34, 16
    a.send([partial, frame(MAC_A, 2)])
    assert [ok for _, ok in a.receive(clock.now)] == [True, False]


def test_without_offload_the_wire_completes_the_checksum():
    clock = Clock()
    a, = ends(LoopbackWire(csum_offload=False, clock=clock), MAC_A)
    partial = frame(MAC_A, 1)
    partial.csum_start, partial.csum_offset = 34, 16
    a.send([partial])
    (data, ok), = a.receive(clock.now)
    assert not ok and bytes(data[50:52]) != b"\0\0"


# ---- two stacks over the faulty wire: every byte arrives, in order ---------------------

import hashlib  # noqa: E402
import os  # noqa: E402

from toad.config import TcpConfig  # noqa: E402

from .test_stack_support import PEER_IP, Transfer, make_pair, run  # noqa: E402

SWEEP = [  # loss, duplicate, reorder, corrupt
    (0.01, 0.0, 0.0, 0.0),
    (0.05, 0.0, 0.0, 0.0),
    (0.0, 0.05, 0.0, 0.0),
    (0.0, 0.0, 0.1, 0.0),
    (0.0, 0.0, 0.0, 0.03),
    (0.02, 0.02, 0.02, 0.02),
    (0.1, 0.05, 0.05, 0.05),
]


@pytest.mark.parametrize("loss,duplicate,reorder,corrupt", SWEEP)
@pytest.mark.parametrize("seed", [1, 2])
def test_sweep_every_byte_arrives_intact(loss, duplicate, reorder, corrupt, seed):
    check_sweep_point(loss, duplicate, reorder, corrupt, seed, mtu=1500, mode="offloaded")


@pytest.mark.parametrize("mtu,mode", [(9000, "software"), (65535, "integrated"),
                                      (1500, "software")])
def test_sweep_other_mtus_and_checksum_modes(mtu, mode):
    check_sweep_point(0.03, 0.03, 0.03, 0.03, seed=9, mtu=mtu, mode=mode)


def check_sweep_point(loss, duplicate, reorder, corrupt, seed, mtu, mode):
    wire_config = WireConfig(loss=loss, duplicate=duplicate, reorder=reorder,
                             corrupt=corrupt, delay_us=200, bandwidth_gbps=1.0, seed=seed)
    config = TcpConfig(checksum=mode, time_wait_s=1.0, rto_min_ms=20,
                       rto_initial_ms=100, max_retries=30, syn_retries=20)
    a, b, wire, clock = make_pair(config, wire_config=wire_config, mtu=mtu)
    data = os.urandom(400_000 if mtu == 1500 else 3_000_000)
    transfer = Transfer(a, b, PEER_IP, data, clock, write_size=10_000)
    run([a, b], clock, transfer.done, transfer.tick)
    assert transfer.hasher.hexdigest() == hashlib.sha256(data).hexdigest()
    assert wire.counters["lost"] > 0 or loss == 0
    if corrupt:
        detected = sum(stack.counters[name] for stack in (a.stack, b.stack) for name in
                       ("tcp.bad_checksum", "ip.bad_checksum", "eth.not_for_us",
                        "ip.not_for_us", "tcp.bad_data_offset", "tcp.bad_option",
                        "ip.bad_header_len", "ip.truncated", "ip.bad_version",
                        "eth.unknown_type", "ip.unknown_protocol", "ip.fragment_dropped"))
        assert wire.counters["corrupted"] > 0 and detected > 0
    sender = a.stack.connection_counters()
    if loss >= 0.05:                      # some data segments were surely lost
        assert sender["tx_retransmit"] + sender["tx_fast_retransmit"] > 0
    if (duplicate or reorder) and mtu == 1500:     # hundreds of frames: some were hit
        seen = a.stack.connection_counters() + b.stack.connection_counters()
        assert sum(seen[name] for name in ("rx_duplicate_bytes", "rx_out_of_order",
                                           "rx_drop_out_of_window", "rx_dupack")) > 0
