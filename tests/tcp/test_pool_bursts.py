"""NIC backends on pool frames (engine/nic/base.py's burst interface): the loopback
wire moves a slot id to a receiver in the sender's pool and copies into another
pool; faults, pcap and close keep every slot accounted for; and after long
transfers every pool is full again (each slot released exactly once)."""
from __future__ import annotations

import os

import numpy as np
import pytest

from engine.frames import FramePool
from engine.nic.loopback import LoopbackWire
from engine.nic.pcap import PcapNic
from tests.nicframes import Frame, put
from toad.config import TcpConfig, WireConfig

from .test_stack_support import PEER_IP, STACK_IP, Transfer, make_pair, run

MAC_A, MAC_B = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")


def frame(dst: bytes, tag: int, size: int = 100) -> Frame:
    data = bytearray(size)
    data[:6], data[6:12], data[14:18] = dst, MAC_A, tag.to_bytes(4, "big")
    return Frame(data)


def send(nic, pool: FramePool, frames: list) -> list[int]:
    slots = [put(pool, f) for f in frames]
    nic.send_burst(pool, np.array(slots, np.int32), len(slots))
    return slots


def drain(nic, pool: FramePool, now: float = 1e9) -> list[bytes]:
    """Every frame waiting at ``nic`` (bytes), its slot released."""
    slots, out = np.empty(16, np.int32), []
    while n := nic.receive_burst(now, pool, slots):
        out += [bytes(pool.view(s)) for s in slots[:n]]
        pool.release_many(slots, n)
    return out


def test_one_pool_moves_slot_ids_another_pool_gets_a_copy():
    wire = LoopbackWire(clock=lambda: 0.0)
    a, b = wire.attach(MAC_A), wire.attach(MAC_B)
    shared, other = FramePool(8, 256), FramePool(8, 256)
    sent = send(a, shared, [frame(MAC_B, 1), frame(MAC_B, 2)])
    slots = np.empty(4, np.int32)
    assert b.receive_burst(0.0, shared, slots) == 2
    assert slots[:2].tolist() == sent and shared.available == 6    # the same slots
    shared.release_many(slots, 2)
    send(a, shared, [frame(MAC_B, 3)])
    assert b.receive_burst(0.0, other, slots) == 1
    assert shared.available == 8 and other.available == 7          # copied, released
    assert bytes(other.view(slots[0]))[14:18] == (3).to_bytes(4, "big")


def test_faults_on_pool_frames_account_for_every_slot():
    wire = LoopbackWire(WireConfig(loss=0.2, duplicate=0.2, reorder=0.2, corrupt=0.2,
                                   seed=4), clock=lambda: 0.0)
    a, b = wire.attach(MAC_A), wire.attach(MAC_B)
    sender, receiver = FramePool(64, 256), FramePool(64, 256)
    got = 0
    for i in range(500):
        send(a, sender, [frame(MAC_B, i)])
        got += len(drain(b, receiver, now=0.0))
    still_held = b.held is not None
    b.close()                                   # a frame still held back: released
    counters = wire.counters
    assert counters["lost"] and counters["duplicated"] and counters["corrupted"]
    assert got + still_held == 500 - counters["lost"] + counters["duplicated"]
    assert counters["no_buffer"] == 0
    assert sender.available == sender.slots and receiver.available == receiver.slots
    assert sender.counters()["bad_release"] == receiver.counters()["bad_release"] == 0


def test_a_duplicate_with_no_slot_is_dropped_and_counted():
    wire = LoopbackWire(WireConfig(duplicate=0.999, seed=1), clock=lambda: 0.0)
    a = wire.attach(MAC_A)
    pool = FramePool(1, 256)
    send(a, pool, [frame(MAC_A, 1)])
    assert wire.counters["duplicated"] == 1 and wire.counters["no_buffer"] == 1
    assert len(drain(a, pool)) == 1 and pool.available == 1


def test_close_gives_back_what_is_on_the_wire():
    wire = LoopbackWire(WireConfig(delay_us=1000, reorder=0.5, seed=2), clock=lambda: 0.0)
    a, b = wire.attach(MAC_A), wire.attach(MAC_B)
    pool = FramePool(32, 256)
    send(a, pool, [frame(MAC_B, i) for i in range(20)])
    assert pool.available == 12
    b.close()
    assert pool.available == 32 and pool.counters()["bad_release"] == 0


def test_pcap_records_pool_frames_and_passes_their_slots_on(tmp_path):
    wire = LoopbackWire(clock=lambda: 0.0)
    pool = FramePool(8, 256)
    nic = PcapNic(wire.attach(MAC_A), str(tmp_path / "cap.pcap"), clock=lambda: 1.0)
    sent = send(nic, pool, [frame(MAC_A, 7, 80), frame(MAC_B, 8, 90)])
    slots = np.empty(4, np.int32)
    assert nic.receive_burst(0.0, pool, slots) == 2 and slots[:2].tolist() == sent
    pool.release_many(slots, 2)
    nic.close()
    raw = (tmp_path / "cap.pcap").read_bytes()
    assert nic.writer.frames == 2 and len(raw) == 24 + 2 * 16 + 80 + 90   # once each
    assert pool.available == 8


# ---- whole stacks: every slot comes back ------------------------------------------------

def pools_full(*stacks) -> None:
    for stack in stacks:
        for pool in {id(p): p for p in (stack.pool, stack.builder.loop_pool)}.values():
            counters = pool.counters()
            assert counters["free"] == pool.slots, counters
            assert counters["bad_release"] == 0 and counters["alloc_failed"] == 0, counters


@pytest.mark.parametrize("fast_path", ["python", "compiled"])
@pytest.mark.parametrize("shared", [False, True], ids=["own-pools", "one-pool"])
def test_no_slot_leaks_after_a_lossy_transfer(shared, fast_path):
    """(With the compiled fast path every burst goes through its receive kernel and
    connections are handed over both ways; the stack still releases each slot once.)"""
    faults = WireConfig(loss=0.02, duplicate=0.02, reorder=0.02, corrupt=0.02,
                        delay_us=200, bandwidth_gbps=1.0, seed=3)
    config = TcpConfig(time_wait_s=0.5, rto_min_ms=20, rto_initial_ms=100,
                       fast_path=fast_path)
    a, b, wire, clock = make_pair(config, wire_config=faults, shared_pool=shared)
    data = os.urandom(1_000_000)
    transfer = Transfer(a, b, PEER_IP, data, clock, write_size=30_000)
    run([a, b], clock, transfer.done, transfer.tick)
    assert transfer.ok() and wire.counters["lost"] and wire.counters["duplicated"]
    # the server closes too; both sides finish (FINs, TIME-WAIT), then what is still on
    # the wire is taken back
    transfer.accepted.close(clock.now)
    run([a, b], clock, lambda: not a.stack.connections() and not b.stack.connections())
    a.nic.close()
    b.nic.close()
    pools_full(a.stack, b.stack)
    assert (a.stack.pool is b.stack.pool) == shared
    if fast_path == "compiled":
        assert b.stack.counters["fast.exported"] > 0


def test_no_slot_leaks_in_the_stack_loop_or_a_wire_that_hears_itself():
    """127.0.0.1 loops inside the stack (the loop pool), its own address crosses a
    one-ended wire (the engine's topology: one pool, slot ids moved)."""
    from engine.tcp.stack import Stack

    from .test_stack_support import STACK_MAC, Clock, Host
    clock = Clock()
    wire = LoopbackWire(mtu=1500, clock=clock)
    nic = wire.attach(STACK_MAC)
    host = Host(Stack(TcpConfig(time_wait_s=0.1), "10.0.0.1/24", STACK_MAC, nic.features),
                nic)
    for server_ip in (0x7F000001, STACK_IP):
        transfer = Transfer(host, host, server_ip, os.urandom(300_000), clock,
                            port=5001 + (server_ip == STACK_IP))
        run([host], clock, transfer.done, transfer.tick)
        assert transfer.ok()
        transfer.accepted.close(clock.now)
    run([host], clock, lambda: not host.stack.connections())
    assert host.stack.builder.loop_pool is not host.stack.pool   # MTU 1500: its own
    pools_full(host.stack)
