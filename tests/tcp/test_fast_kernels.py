"""The compiled fast path (engine/fast) beside the Python stack: which frames its
receive kernel takes, the hand-over of a connection's fields in both directions,
and the same frames, counters and TCB as ``tcp.fast_path: python`` on the same
script (the differential tests)."""
from __future__ import annotations

import pytest

from engine.fast.flows import FAST, SLOW, FlowTable
from engine.fast.path import FastOwned
from engine.nic.base import NicFeatures
from engine.tcp.connection import Connection
from engine.tcp.stack import Stack
from engine.tcp.wire import ipv4
from engine.tcp.wire.tcp import ACK, PSH, SYN, TcpRepr
from tests.nicframes import Frame, feed, sent
from toad.config import TcpConfig, WireConfig

from .test_fast_path import tcb as full_tcb
from .test_stack_support import (
    Transfer,
    features,
    learn_peer,
    make_pair,
    parse_out,
    run,
    tcp_frame,
)

PEER_ISS = 5000


def established(mode: str, **tcp):
    """A stack (fast path ``mode``) with a connection accepted from a scripted peer."""
    config = TcpConfig(checksum="software", fast_path=mode, **tcp)
    stack = Stack(config, "10.0.0.1/24", bytes.fromhex("02000000000a"), features())
    learn_peer(stack)
    listener = stack.listen(81)
    feed(stack, [(tcp_frame(TcpRepr(
        40000, 81, PEER_ISS, 0, SYN, 65535, mss=1460, window_scale=7, timestamp=(7, 0))),
        False)], 0.0)
    synack = parse_out(sent(stack, 0.0)[0])[2]
    our = (synack.seq + 1) & 0xFFFFFFFF
    feed(stack, [(tcp_frame(TcpRepr(
        40000, 81, PEER_ISS + 1, our, ACK, 512, timestamp=(8, synack.timestamp[0]))),
        False)], 0.0)
    sent(stack, 0.0)
    stack.events()
    conn = listener.accept()
    return stack, conn, our


def ack(our: int, acked: int, window: int = 512, tsval: int = 9, tsecr: int = 0,
        payload: bytes = b"", flags: int = ACK, good: bool = True) -> tuple:
    return (tcp_frame(TcpRepr(40000, 81, PEER_ISS + 1, (our + acked) & 0xFFFFFFFF,
                              flags, window, timestamp=(tsval, tsecr), payload=payload),
                      good_checksum=good), False)


def script(mode: str, steps) -> tuple:
    """Send three segments, then feed ``steps`` (lists of frames, one burst each, built
    by ``steps(our)``) with output polled after each: (frames out, stack, conn)."""
    stack, conn, our = established(mode)
    conn.send(b"d" * 3 * 1448)
    out = [bytes(f.data) for f in sent(stack, 0.1)]
    now = 0.1
    for burst in steps(our):
        now += 0.01
        feed(stack, burst, now)
        if stack.next_deadline() is not None and stack.next_deadline() <= now:
            stack.on_timer(now)
        out += [bytes(f.data) for f in sent(stack, now)]
        stack.events()
    return out, stack, conn


def tcb(conn) -> dict:
    """The TCB as test_fast_path compares it, less the fast path's own links."""
    out = full_tcb(conn)
    del out["flow"], out["fast"]
    return out


def same(steps) -> tuple:
    """Run ``steps`` both ways; assert the frames, counters and TCB are the same."""
    fast = script("compiled", steps)
    slow = script("python", steps)
    assert fast[0] == slow[0]
    counters = {k: v for k, v in fast[1].counters.items() if not k.startswith("fast.")}
    assert counters == dict(slow[1].counters)
    assert tcb(fast[2]) == tcb(slow[2])
    assert fast[2].counters == slow[2].counters
    for stack in (fast[1], slow[1]):            # every slot of every burst released once
        pool = stack.pool.counters()
        assert pool["free"] == pool["slots"] and pool["bad_release"] == 0, pool
    return fast


def test_pure_acks_are_taken_by_the_kernel_and_match_python():
    # All sent: the connection is exported; the ACKs (window moving, RTT samples) are
    # the kernel's, and the TCB read back is the Python stack's, field for field.
    def steps(our):
        return [[ack(our, 1448, 600, tsval=10, tsecr=100)],
                [ack(our, 2896, 640, tsval=11, tsecr=101), ack(our, 4344, 700, tsval=12,
                                                               tsecr=102)]]
    _, stack, conn = same(steps)
    assert stack.counters["fast.rx"] == 3
    assert conn.counters["rx_hp_ack"] == 3 and conn.snd_una == conn.snd_max


def test_a_pure_window_update_is_taken_and_matches_python():
    # the peer's reader freed room: the same ACK number with a larger window (data in
    # flight), then the ACK of everything: all three the kernel's, none handed back
    def steps(our):
        return [[ack(our, 1448, 600, tsval=10)], [ack(our, 1448, 700, tsval=11)],
                [ack(our, 4344, 700, tsval=12)]]
    _, stack, conn = same(steps)
    assert conn.counters["rx_hp_window"] == 1 and conn.counters["rx_window_update"] == 2
    assert stack.counters["fast.rx"] == 3 and stack.counters["fast.handback_slow_path"] == 0


def test_in_order_data_is_placed_by_the_kernel_and_matches_python():
    # a pure ACK, then data in the same burst: both the kernel's; the frame after the
    # data (a stale sequence number) goes to Python with the data already in the TCB
    def steps(our):
        return [[ack(our, 1448), ack(our, 1448, payload=b"reply", flags=ACK | PSH),
                 ack(our, 4344)]]
    _, stack, conn = same(steps)
    assert stack.counters["fast.rx"] == 2
    assert conn.counters["rx_hp_data"] == 1
    assert stack.counters["fast.handback_slow_path"] == 1
    assert conn.recv_buffer.read() == b"reply"


def data(our: int, offset: int, size: int, tsval: int, acked: int = 4344) -> tuple:
    """``size`` bytes at ``offset`` of the peer's stream (a pattern that shows order)."""
    payload = bytes((offset + i) & 0xFF for i in range(size))
    return (memoryview(tcp_frame(TcpRepr(40000, 81, PEER_ISS + 1 + offset,
                                         (our + acked) & 0xFFFFFFFF, ACK, 512,
                                         timestamp=(tsval, 0), payload=payload))), False)


def test_a_stream_of_data_gets_the_same_acks_and_bytes():
    # all acked, then 21 full segments in bursts of 1, 2 and 3: an ACK for every
    # second segment, the delayed ACK for the last one (its timer fires in Python)
    def steps(our):
        bursts, offset, tsval = [[ack(our, 4344)]], 0, 20
        for size in (1, 2, 3, 1, 2, 3, 1, 2, 3, 2, 1):
            burst = []
            for _ in range(size):
                burst.append(data(our, offset, 1448, tsval))
                offset += 1448
                tsval += 1
            bursts.append(burst)
        bursts += [[], [], [], [], []]               # time passes: the delayed ACK's timer
        return bursts
    _, stack, conn = same(steps)
    assert stack.counters["fast.rx"] == 22 and stack.counters["fast.tx"] == 7
    assert stack.counters["fast.handback_timer"] == 1
    assert conn.counters["tx_pure_ack"] == 8          # the eighth: the delayed ACK's
    got = conn.recv_buffer.read()
    assert got == bytes(i & 0xFF for i in range(21 * 1448))


def test_window_updates_after_reads_match_python():
    # a small receive buffer: the reader empties it between bursts, so the window
    # opens again and the kernel's read_done owes an update (or drops one)
    def go(mode):
        stack, conn, our = established(mode, recv_buffer_bytes=8 * 1448)
        conn.send(b"d" * 1448)
        frames = [bytes(f.data) for f in sent(stack, 0.1)]
        now, offset, tsval = 0.1, 0, 20
        for burst in (3, 3, 2, 4, 1, 5):
            now += 0.001
            pending = []
            for _ in range(burst):
                pending.append(data(our, offset, 1448, tsval, acked=1448))
                offset += 1448
                tsval += 1
            feed(stack, pending, now)
            frames += [bytes(f.data) for f in sent(stack, now)]
            stack.events()
            conn.recv_buffer.read(len(conn.recv_buffer) - 100)
            conn.notify_read(now)
            frames += [bytes(f.data) for f in sent(stack, now)]
        return frames, stack, conn
    fast, slow = go("compiled"), go("python")
    assert fast[0] == slow[0]
    assert tcb(fast[2]) == tcb(slow[2])
    assert fast[2].counters == slow[2].counters
    assert fast[1].counters["fast.tx"] > 0
    assert fast[2].counters["tx_window_update_requested"] > 0


@pytest.mark.parametrize("frame", ["dupack", "bad_checksum", "old_timestamp", "zero_window"])
def test_unpredicted_frames_go_to_python_with_the_state(frame):
    def steps(our):
        first = [ack(our, 1448)]
        if frame == "dupack":
            return [first, [ack(our, 1448)] * 3]
        if frame == "bad_checksum":
            return [first, [ack(our, 2896, good=False)], [ack(our, 2896)]]
        if frame == "old_timestamp":
            return [first, [ack(our, 2896, tsval=1)]]
        return [first, [ack(our, 2896, window=0)]]
    _, stack, _ = same(steps)
    # (after the bad frame, the connection is ordinary again: the next ACK is fast)
    assert stack.counters["fast.rx"] == (2 if frame == "bad_checksum" else 1)
    assert stack.counters["fast.handback_slow_path"] == 1


def test_retransmission_timer_of_a_fast_connection_fires_in_python():
    stack, conn, our = established("compiled", rto_initial_ms=10.0, rto_min_ms=10.0)
    conn.send(b"d" * 2896)
    sent(stack, 0.0)
    stack.events()
    feed(stack, [ack(our, 1448)], 0.001)
    assert type(conn) is FastOwned
    deadline = stack.next_deadline()
    assert deadline is not None and 0.001 < deadline <= 0.1
    stack.on_timer(deadline)
    assert stack.counters["fast.handback_timer"] == 1
    out = sent(stack, deadline)
    assert [parse_out(f)[2].seq for f in out] == [(our + 1448) & 0xFFFFFFFF]
    assert conn.counters["rto"] == 1


def test_touching_a_fast_connection_reclaims_it():
    stack, conn, our = established("compiled")
    conn.send(b"d" * 2896)
    sent(stack, 0.0)
    stack.events()
    row = object.__getattribute__(conn, "flow")
    rows = stack.fast.flows.rows
    assert type(conn) is FastOwned and rows["owner"][row] == FAST
    assert conn not in stack.table.active
    feed(stack, [ack(our, 1448)], 0.001)
    assert rows["snd_una"][row] == (our + 1448) & 0xFFFFFFFF
    assert conn.snd_una == (our + 1448) & 0xFFFFFFFF      # the read reclaims it
    assert type(conn) is Connection and rows["owner"][row] == SLOW
    assert conn in stack.table.active
    assert len(conn.send_buffer) == 1448                   # released by the kernel's ACK


def test_flow_row_goes_with_the_connection():
    stack, conn, _ = established("compiled")
    sent(stack, 0.0)
    assert stack.fast.flows.used == 1
    conn.abort(0.0)
    sent(stack, 0.0)
    stack.events()
    assert stack.fast.flows.used == 0 and stack.fast.fast == 0


def test_flow_table_holds_ten_thousand_connections_and_refuses_more():
    table = FlowTable(10_000)
    rows = [table.add(0x0A000001, 80, 0x0A000002 + (i >> 12), 1024 + (i & 0xFFF))
            for i in range(10_000)]
    assert sorted(rows) == list(range(10_000))
    assert table.add(1, 2, 3, 4) == -1
    for i in range(0, 10_000, 3):
        assert table.lookup(0x0A000001, 80, 0x0A000002 + (i >> 12), 1024 + (i & 0xFFF)) == rows[i]
    for i in range(0, 10_000, 2):
        table.remove(rows[i])
    assert table.lookup(0x0A000001, 80, 0x0A000002, 1024) == -1
    assert table.lookup(0x0A000001, 80, 0x0A000002, 1025) == rows[1]
    with pytest.raises(ValueError, match="exists"):
        table.add(0x0A000001, 80, 0x0A000002, 1025)


def record(nic, log: list) -> None:
    """Keep a copy of every frame ``nic`` sends in ``log``."""
    send = nic.send_burst

    def sending(pool, slots, n):
        log.extend(bytes(pool.view(slot)) for slot in slots[:n])
        send(pool, slots, n)
    nic.send_burst = sending


FAULTS = WireConfig(loss=0.01, reorder=0.02, duplicate=0.01, seed=5)


@pytest.mark.parametrize(("faults", "checksum", "nagle"), [
    (None, "software", False), (FAULTS, "software", False), (None, "offloaded", True),
    (FAULTS, "integrated", True), (None, "off", False)])
def test_transfer_over_the_wire_is_the_same_both_ways(faults, checksum, nagle):
    # data frames from the transmit kernel, ACKs from both kernels, the slow path on
    # every loss: each frame on the wire byte for byte the Python stack's
    def go(mode):
        config = TcpConfig(fast_path=mode, checksum=checksum, nagle=nagle)
        a, b, _, clock = make_pair(config, wire_config=faults, mtu=1500)
        frames = ([], [])
        for host, log in zip((a, b), frames):
            record(host.nic, log)
        data = bytes(range(256)) * 2000
        transfer = Transfer(a, b, ipv4.aton("10.0.0.2"), data, clock, write_size=3000)
        run([a, b], clock, transfer.done, transfer.tick)
        assert transfer.ok()
        return frames[0], frames[1], a.stack
    fast, slow = go("compiled"), go("python")
    assert fast[0] == slow[0] and fast[1] == slow[1]
    assert fast[2].counters["fast.tx"] > len(fast[0]) // 2      # most data frames


def test_tso_super_frames_and_nagle_match_python():
    # a NIC with TSO: super-frames of whole segments, partial checksums, gso marks;
    # a small write held by Nagle while data is in flight
    def go(mode):
        config = TcpConfig(checksum="offloaded", fast_path=mode)
        nic = NicFeatures(mtu=1500, mac=bytes.fromhex("02000000000a"), tx_csum=True,
                          rx_csum=True, tso=True, tso_max=65536)
        stack = Stack(config, "10.0.0.1/24", bytes.fromhex("02000000000a"), nic)
        learn_peer(stack)
        listener = stack.listen(81)
        feed(stack, [(tcp_frame(TcpRepr(
            40000, 81, PEER_ISS, 0, SYN, 65535, mss=1460, window_scale=7,
            timestamp=(7, 0))), False)], 0.0)
        synack = parse_out(sent(stack, 0.0)[0])[2]
        our = (synack.seq + 1) & 0xFFFFFFFF
        feed(stack, [(tcp_frame(TcpRepr(
            40000, 81, PEER_ISS + 1, our, ACK, 4096, timestamp=(8, synack.timestamp[0]))),
            False)], 0.0)
        sent(stack, 0.0)
        stack.events()
        conn = listener.accept()
        frames = []

        def out(now):
            frames.extend((bytes(f.data), f.csum_start, f.csum_offset, f.gso_size)
                          for f in sent(stack, now))
        conn.send(b"a" * 1000)
        out(0.01)
        conn.send(b"b" * 500)                       # Nagle: held, data in flight
        out(0.02)
        conn.send(bytes(range(256)) * 400)
        out(0.03)
        for step in range(1, 12):                   # ACK all sent so far, each time
            done = max(((seg.seq + len(seg.payload) - our) & 0xFFFFFFFF
                        for seg in (parse_out(Frame(bytearray(data), start, offset))[2]
                                    for data, start, offset, _ in frames)), default=0)
            feed(stack, [ack(our, done, window=4096, tsval=9 + step)], 0.03 + step / 100)
            out(0.03 + step / 100)
            stack.events()
        return frames, stack, conn
    fast, slow = go("compiled"), go("python")
    assert fast[0] == slow[0]
    assert tcb(fast[2]) == tcb(slow[2])
    assert fast[2].counters == slow[2].counters
    assert sum(1 for *_, gso in fast[0] if gso) >= 3
    assert fast[1].counters["fast.tx"] >= 3 and fast[1].counters["fast.rx"] >= 4
    assert fast[2].counters["tx_held_nagle_sws"] > 0
    assert fast[2].counters["tx_data"] > 5 and fast[2].snd_una == fast[2].snd_max


def test_jumbo_frames_go_out_in_pool_slots():
    # 64 KB segments, each in a slot of the pool; every slot comes back
    config = TcpConfig(fast_path="compiled", checksum="software", nagle=False)
    a, b, _, clock = make_pair(config, mtu=65535)
    data = bytes(range(256)) * 8000
    transfer = Transfer(a, b, ipv4.aton("10.0.0.2"), data, clock, write_size=8192)
    run([a, b], clock, transfer.done, transfer.tick)
    assert transfer.ok()
    assert a.stack.counters["fast.tx"] > 10
    pools = (a.stack.pool, b.stack.pool)
    run([a, b], clock, lambda: all(p.available == p.slots for p in pools))  # the wire drains
    for stack in (a.stack, b.stack):
        pool = stack.pool.counters()
        assert pool["free"] == pool["slots"] and pool["bad_release"] == 0, pool


def test_a_dry_pool_holds_the_rest_of_a_burst_until_slots_come_back():
    # the pool has 3 free slots when 4 segments are due: the kernel sends 3, counts
    # the dry pool, and sends the fourth at the next poll; the same frames as Python's
    # with room to spare
    def go(mode, dry):
        stack, conn, our = established(mode)
        conn.send(b"d" * 1448)
        frames = [bytes(f.data) for f in sent(stack, 0.1)]
        feed(stack, [ack(our, 1448, 4096, tsval=10)], 0.11)
        frames += [bytes(f.data) for f in sent(stack, 0.11)]
        pool = stack.pool
        held = pool.alloc_many(pool.available - 3) if dry else []
        conn.send(bytes(range(256)) * 60)
        frames += [bytes(f.data) for f in sent(stack, 0.12)]
        first = len(frames)
        pool.release_many(held)
        frames += [bytes(f.data) for f in sent(stack, 0.13 if dry else 0.12)]
        return frames, first, stack, conn
    fast, first, stack, conn = go("compiled", dry=True)
    slow, *_ = go("python", dry=False)
    assert stack.counters["fast.tx_pool_dry"] == 1
    assert stack.pool.counters()["alloc_failed"] == 1
    assert len(fast) == first + 1 and len(fast) == len(slow)
    assert type(conn) is FastOwned
    # the fourth segment is the same bytes but for its timestamp (sent 10 ms later)
    assert fast[:first] == slow[:first]
    late, early = (parse_out(Frame(bytearray(f[-1])))[2] for f in (fast, slow))
    assert (late.seq, late.payload) == (early.seq, early.payload)
    pool = stack.pool.counters()
    assert pool["free"] == pool["slots"] and pool["bad_release"] == 0, pool


def test_a_call_whose_argument_reclaims_the_connection_still_works():
    # conn.send(...conn.eff_mss...): the method is fetched while the connection is
    # fast, the argument's read reclaims it before the call; likewise notify_read
    def go(mode):
        stack, conn, our = established(mode, recv_buffer_bytes=4 * 1448)
        conn.send(b"d" * 1448)
        frames = [bytes(f.data) for f in sent(stack, 0.1)]
        feed(stack, [ack(our, 1448, 4096, tsval=10)], 0.11)
        frames += [bytes(f.data) for f in sent(stack, 0.11)]
        conn.send(b"e" * conn.eff_mss)
        frames += [bytes(f.data) for f in sent(stack, 0.12)]
        feed(stack, [data(our, k * 1448, 1448, 11 + k, acked=2 * 1448) for k in range(3)],
             0.13)
        frames += [bytes(f.data) for f in sent(stack, 0.13)]
        stack.events()
        conn.recv_buffer.read(1448 * 3)
        conn.notify_read(conn.last_rx + 0.01)
        frames += [bytes(f.data) for f in sent(stack, 0.14)]
        return frames, stack, conn
    fast, slow = go("compiled"), go("python")
    assert fast[0] == slow[0]
    assert tcb(fast[2]) == tcb(slow[2])
    assert fast[1].counters["fast.exported"] >= 2


def test_the_receive_kernel_leaves_slots_it_cannot_read_to_python():
    # slot ids outside the pool and a length beyond its slot are never read: they
    # are left to the caller, in order, around a good frame the kernel takes
    import numpy as np

    from engine.fast import rx
    stack, conn, our = established("compiled")
    conn.send(b"d" * 1448)
    sent(stack, 0.1)
    feed(stack, [ack(our, 1448, 4096, tsval=10)], 0.11)
    sent(stack, 0.11)
    conn.send(b"e" * 1448)                          # sent by the transmit kernel
    assert len(sent(stack, 0.12)) == 1 and type(conn) is FastOwned
    fast, pool = stack.fast, stack.pool
    good = pool.put(ack(our, 2896, 4096, tsval=11)[0])
    long = pool.put(ack(our, 2896, 4096, tsval=11)[0])
    pool.length[long] = pool.slot_bytes + 1
    frames = np.array([-1, good, pool.slots, long, 1 << 30], np.int32)
    counters = np.zeros(3, np.int64)
    rx.receive_entry(pool.data, pool.slot_bytes, frames, pool.length, pool.csum_ok,
                     len(frames), fast.verdict, fast.left, fast.flows.rows, fast.flows.slots,
                     stack.ip, fast.mac, 0.13, fast.marks, fast.touched, counters)
    assert fast.left[:counters[rx.C_LEFT]].tolist() == [-1, pool.slots, long, 1 << 30]
    assert counters[rx.C_TCP_RX] == 1
    pool.release_many([good, long])
