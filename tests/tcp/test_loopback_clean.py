"""The loopback wire's fault-free burst path (LoopbackWire.carry_clean) queues
exactly what the per-frame path (carry) queues: arrival times under a bandwidth cap
and delay, oversize drops (their slots released), the far end chosen by MAC, checksum
completion when the wire has no offload; and receive_burst keeps due times."""
from __future__ import annotations

import numpy as np
import pytest

from engine.frames import FramePool
from engine.nic.loopback import LoopbackWire
from tests.nicframes import Frame, put
from toad.config import WireConfig

MAC_A, MAC_B = b"\x02\x00\x00\x00\x00\x0a", b"\x02\x00\x00\x00\x00\x0b"


def frames(dst: bytes) -> list[Frame]:
    """A partial-checksum frame, a plain one, an oversize one, a GSO one."""
    def frame(size: int, **kw) -> Frame:
        data = bytearray(dst + MAC_A + b"\x08\x00" + bytes(range(256)) * (size // 256 + 1))
        return Frame(data[:size], **kw)
    return [frame(120, csum_start=34, csum_offset=16), frame(600), frame(1600),
            frame(3000, csum_start=34, csum_offset=16, gso_size=1000)]


def wire_pair(offload: bool, ends: int):
    wire = LoopbackWire(WireConfig(bandwidth_gbps=0.001, delay_us=50), mtu=1500,
                        csum_offload=offload, clock=lambda: 1.0)
    nics = [wire.attach(MAC_A)] + ([wire.attach(MAC_B)] if ends == 2 else [])
    return wire, nics


def queued(nic, pool: FramePool) -> list:
    return [(t, bytes(pool.view(slot)), ok) for t, _, slot, ok in nic.inbox]


@pytest.mark.parametrize("offload", [True, False])
@pytest.mark.parametrize("ends", [1, 2])
def test_clean_burst_matches_per_frame_carry(offload, ends):
    fast, fast_nics = wire_pair(offload, ends)
    slow, slow_nics = wire_pair(offload, ends)
    fast_pool, slow_pool = FramePool(64, 4096), FramePool(64, 4096)
    assert not fast.faulty
    for dst in (MAC_B, MAC_A):
        slots = [put(fast_pool, frame) for frame in frames(dst)]
        fast_nics[0].send_burst(fast_pool, np.array(slots, np.int32), len(slots))  # burst
        for frame in frames(dst):
            slow.carry(slow_nics[0], slow_pool, put(slow_pool, frame), 1.0)   # per frame
    assert fast.counters == slow.counters
    assert fast.counters["oversize"] == 2 and fast.counters["sent"] == 8
    assert fast_pool.available == slow_pool.available == 64 - 6   # oversize released
    for a, b in zip(fast_nics, slow_nics):
        assert a.tx_free_at == b.tx_free_at
        assert queued(a, fast_pool) == queued(b, slow_pool)
    if not offload:       # completed in software: the checksum field is no longer 0
        nic = fast_nics[-1] if ends == 2 else fast_nics[0]
        _, data, ok = queued(nic, fast_pool)[0]
        assert ok is False and data[50:52] != b"\0\0"


def test_receive_waits_for_the_arrival():
    wire = LoopbackWire(WireConfig(delay_us=100), clock=lambda: 5.0)
    nic = wire.attach(MAC_A)
    pool, slots = FramePool(8, 2048), np.empty(4, np.int32)
    slot = put(pool, frames(MAC_A)[0])
    nic.send_burst(pool, [slot], 1)
    assert nic.receive_burst(5.0, pool, slots) == 0 and len(nic.inbox) == 1
    assert nic.receive_burst(5.0001, pool, slots[:0]) == 0 and len(nic.inbox) == 1
    assert nic.receive_burst(5.0001, pool, slots) == 1 and slots[0] == slot   # moved
    assert bytes(pool.view(slot)) == bytes(frames(MAC_A)[0].data)
    assert pool.csum_ok[slot] == 1 and not nic.inbox and wire.counters["delivered"] == 1
