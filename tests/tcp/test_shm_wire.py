"""The shared-memory wire: frames, ordering, drops, wake-ups, two processes, stale segments."""
from __future__ import annotations

import mmap
import os
import select
import signal
import subprocess
import sys

import numpy as np
import posix_ipc
import pytest

from engine.frames import FramePool
from engine.nic.shm import SLOT_HEADER, ShmWire, ShmWireError, ring_geometry
from tests.nicframes import Frame, FrameNic

MAC_A, MAC_B = bytes.fromhex("02746f000001"), bytes.fromhex("02746f000002")


def wire_name(tag: str) -> str:
    return f"toad-test{tag}{os.getpid()}-wire"


def frame(i: int, size: int = 100) -> bytearray:
    body = (i.to_bytes(4, "big") * (size // 4 + 1))[:size - 14]
    return bytearray(MAC_B + MAC_A + b"\x08\x00" + body)


@pytest.fixture
def pair():
    name = wire_name("p")
    a = FrameNic(ShmWire(name, "a", 1500, MAC_A))
    b = FrameNic(ShmWire(name, "b", 1500, MAC_B))
    yield a, b
    a.close()
    b.close()


def readable(wire, timeout=0.0) -> bool:
    return bool(select.select([wire.fileno()], [], [], timeout)[0])


def test_geometry_holds_a_whole_frame():
    for mtu in (576, 1500, 9000, 65535):
        size, slots = ring_geometry(mtu)
        assert size >= SLOT_HEADER + 14 + mtu and size % 64 == 0
        assert slots & (slots - 1) == 0 and slots >= 64


def test_frames_cross_in_order_with_checksum_flag(pair):
    a, b = pair
    a.send([Frame(frame(i), csum_start=34 if i % 2 else 0, csum_offset=16) for i in range(10)])
    got = b.receive(0.0)
    assert [bytes(f) for f, _ in got] == [bytes(frame(i)) for i in range(10)]
    assert [ok for _, ok in got] == [bool(i % 2) for i in range(10)]
    assert a.receive(0.0) == []            # nothing went the other way
    b.send([Frame(frame(99, 1514))])
    assert bytes(a.receive(0.0)[0][0]) == bytes(frame(99, 1514))


def test_receive_is_bounded_and_hands_records_back_once_copied(pair):
    a, b = pair
    a.send([Frame(frame(i)) for i in range(100)])
    first = b.receive(0.0, max_frames=64)
    assert len(first) == 64 and bytes(first[0][0]) == bytes(frame(0))
    # the 64 records copied out are free again: the ring takes slots - 36 more
    a.send([Frame(frame(1000 + i)) for i in range(a.slots - 36)])
    assert a.counters["tx_dropped_full"] == 0
    a.send([Frame(frame(5))])
    assert a.counters["tx_dropped_full"] == 1
    rest = []
    while chunk := b.receive(0.0):
        rest.extend(bytes(f) for f, _ in chunk)
    assert len(rest) == a.slots
    assert rest[:36] == [bytes(frame(i)) for i in range(64, 100)]
    assert a.pool.available == a.pool.slots and b.pool.available == b.pool.slots


def test_a_frame_with_no_free_slot_is_dropped_and_counted(pair):
    a, b = pair
    a.send([Frame(frame(i)) for i in range(3)])
    pool, slots = FramePool(2, 1536), np.empty(8, np.int32)
    assert b.nic.receive_burst(0.0, pool, slots) == 2         # the pool holds two
    assert b.counters["rx_no_buffer"] == 1 and b.counters["rx_frames"] == 2
    assert [bytes(pool.view(s)) for s in slots[:2]] == [bytes(frame(0)), bytes(frame(1))]
    assert b.receive(0.0) == []                                # the third was dropped


def test_oversize_frame_dropped(pair):
    a, b = pair
    a.send([Frame(frame(1, 1515))])
    assert a.counters["tx_dropped_oversize"] == 1 and b.receive(0.0) == []


def test_wakeup_only_when_the_consumer_waits(pair):
    a, b = pair
    a.send([Frame(frame(1))])
    assert not readable(b)                 # b never declared itself waiting
    assert len(b.receive(0.0)) == 1
    assert b.receive(0.0) == []            # empty: b now waits
    a.send([Frame(frame(2))])
    assert readable(b, 1.0) and a.counters["wakeups_sent"] == 1
    assert len(b.receive(0.0)) == 1        # receiving lowers the flag...
    a.send([Frame(frame(3))])
    assert a.counters["wakeups_sent"] == 1  # ...so no more wake-ups while busy
    b.receive(0.0)
    assert b.receive(0.0) == []            # drains the old byte before sleeping again
    assert not readable(b)


def test_malformed_record_is_counted_and_dropped(pair):
    a, b = pair
    a.send([Frame(frame(1)), Frame(frame(2))])
    shm = posix_ipc.SharedMemory("/" + a.name)
    view = mmap.mmap(shm.fd, shm.size)
    shm.close_fd()
    # slot 0 of ring a->b: 4096 header + 256 control; length field at the slot start
    lengths = np.ndarray((2,), np.uint32, view, 4096 + 256, (a.slot_size,))
    lengths[0] = 3
    lengths[1] = 0xFFFFFFFF                  # bounds-checked before any copy
    a.send([Frame(frame(3))])
    got = b.receive(0.0)
    assert [bytes(f) for f, _ in got] == [bytes(frame(3))]
    assert b.counters["rx_dropped_bad_length"] == 2
    assert b.pool.available == b.pool.slots
    del lengths
    view.close()


def test_side_in_use_and_mtu_mismatch_refused(pair):
    a, _b = pair
    with pytest.raises(ShmWireError, match="in use by pid"):
        ShmWire(a.name, "a", 1500, MAC_A)
    with pytest.raises(ShmWireError, match="nic.mtu"):
        ShmWire(a.name, "b", 9000, MAC_B)


ECHO = """
import select, sys, time
import numpy as np
from engine.frames import FramePool
from engine.nic.shm import ShmWire
wire = ShmWire(sys.argv[1], "b", 1500, bytes(6))
pool, slots = FramePool(256, 1536), np.empty(64, np.int32)
print("up", flush=True)
left, deadline = int(sys.argv[2]), time.monotonic() + 30
while left and time.monotonic() < deadline:
    n = wire.receive_burst(time.monotonic(), pool, slots)
    if not n:
        select.select([wire.fileno()], [], [], 1.0)
        continue
    wire.send_burst(pool, slots, n)          # the received slots go straight back out
    left -= n
assert pool.available == pool.slots
wire.close()
"""


def test_two_processes_echo_with_sleeping_peer():
    name, count = wire_name("e"), 3000
    a = FrameNic(ShmWire(name, "a", 1500, MAC_A))
    child = subprocess.Popen([sys.executable, "-c", ECHO, name, str(count)],
                             stdout=subprocess.PIPE, text=True, cwd=os.getcwd())
    try:
        assert child.stdout.readline().strip() == "up"
        echoed, sent = [], 0
        while len(echoed) < count:
            if sent < count and sent - len(echoed) < 200:
                burst = [Frame(frame(i, 60 + i % 1400)) for i in range(sent, min(count, sent + 50))]
                a.send(burst)
                sent += len(burst)
            got = a.receive(0.0)
            echoed.extend(bytes(f) for f, _ in got)
            if not got:
                assert select.select([a.fileno()], [], [], 10.0)[0], "echo stalled"
        assert echoed == [bytes(frame(i, 60 + i % 1400)) for i in range(count)]
        assert child.wait(timeout=20) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()
        a.close()


def test_segment_of_a_dead_process_is_reset():
    name = wire_name("s")
    code = ("import os, sys\nfrom engine.frames import FramePool\n"
            "from engine.nic.shm import ShmWire\n"
            f"w = ShmWire({name!r}, 'a', 1500, bytes(6))\n"
            "p = FramePool(4, 1536)\ns = p.alloc()\np.lengths[s] = 60\n"
            "w.send_burst(p, [s], 1)\nprint('up', flush=True)\nos.kill(os.getpid(), 9)\n")
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert child.returncode == -signal.SIGKILL and "up" in child.stdout
    b = FrameNic(ShmWire(name, "b", 1500, MAC_B))   # finds a dead side a: starts afresh
    try:
        assert b.receive(0.0) == []
        a = FrameNic(ShmWire(name, "a", 1500, MAC_A))
        a.send([Frame(frame(7))])
        assert bytes(b.receive(0.0)[0][0]) == bytes(frame(7))
        a.close()
    finally:
        b.close()
        if os.path.exists(f"/dev/shm/{name}-a.fifo"):
            os.unlink(f"/dev/shm/{name}-a.fifo")


def test_unlink_removes_what_a_killed_process_left():
    name = wire_name("u")
    code = ("import os\nfrom engine.nic.shm import ShmWire\n"
            f"w = ShmWire({name!r}, 'b', 1500, bytes(6))\nos.kill(os.getpid(), 9)\n")
    subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30)
    assert sorted(ShmWire.unlink(name)) == [f"/dev/shm/{name}", f"/dev/shm/{name}-b.fifo"]
    assert ShmWire.unlink(name) == []
