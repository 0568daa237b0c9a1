"""The loopback wire's fault-free burst path (LoopbackWire.carry_clean) queues
exactly what the per-frame path (carry) queues: arrival times under a bandwidth cap
and delay, oversize drops, the far end chosen by MAC, checksum completion when the
wire has no offload; and LoopbackNic.receive's one-frame shortcut keeps due times."""
from __future__ import annotations

import pytest

from engine.nic.base import TxFrame
from engine.nic.loopback import LoopbackWire
from toad.config import WireConfig

MAC_A, MAC_B = b"\x02\x00\x00\x00\x00\x0a", b"\x02\x00\x00\x00\x00\x0b"


def frames(dst: bytes) -> list[TxFrame]:
    """A partial-checksum frame, a plain one, an oversize one, a GSO one."""
    def frame(size: int, **kw) -> TxFrame:
        data = bytearray(dst + MAC_A + b"\x08\x00" + bytes(range(256)) * (size // 256 + 1))
        return TxFrame(data[:size], **kw)
    return [frame(120, csum_start=34, csum_offset=16), frame(600), frame(1600),
            frame(3000, csum_start=34, csum_offset=16, gso_size=1000)]


def wire_pair(offload: bool, ends: int):
    wire = LoopbackWire(WireConfig(bandwidth_gbps=0.001, delay_us=50), mtu=1500,
                        csum_offload=offload, clock=lambda: 1.0)
    nics = [wire.attach(MAC_A)] + ([wire.attach(MAC_B)] if ends == 2 else [])
    return wire, nics


@pytest.mark.parametrize("offload", [True, False])
@pytest.mark.parametrize("ends", [1, 2])
def test_clean_burst_matches_per_frame_carry(offload, ends):
    fast, fast_nics = wire_pair(offload, ends)
    slow, slow_nics = wire_pair(offload, ends)
    assert not fast.faulty
    for dst in (MAC_B, MAC_A):
        fast_nics[0].send(frames(dst))                   # the burst path
        for frame in frames(dst):
            slow.carry(slow_nics[0], frame, 1.0)         # the per-frame path
    assert fast.counters == slow.counters
    assert fast.counters["oversize"] == 2 and fast.counters["sent"] == 8
    for a, b in zip(fast_nics, slow_nics):
        assert a.tx_free_at == b.tx_free_at
        assert [(t, bytes(d), ok) for t, d, ok in a.inbox] == \
            [(t, bytes(d), ok) for t, d, ok in b.inbox]
    if not offload:       # completed in software: the checksum field is no longer 0
        inbox = fast_nics[-1].inbox if ends == 2 else fast_nics[0].inbox
        assert inbox[0][2] is False and bytes(inbox[0][1][50:52]) != b"\0\0"


def test_receive_one_frame_waits_for_its_arrival():
    wire = LoopbackWire(WireConfig(delay_us=100), clock=lambda: 5.0)
    nic = wire.attach(MAC_A)
    nic.send(frames(MAC_A)[:1])
    assert nic.receive(5.0) == [] and len(nic.inbox) == 1
    assert nic.receive(5.0001, 0) == [] and len(nic.inbox) == 1
    got = nic.receive(5.0001)
    assert len(got) == 1 and bytes(got[0][0]) == bytes(frames(MAC_A)[0].data)
    assert got[0][1] is True and not nic.inbox and wire.counters["delivered"] == 1
