"""An offload connection's new data sent by the fast path's transmit kernel, read from
the host's send area through the DMA check: the frames on the engine's wire are the
Python stack's, byte for byte, the host's acknowledged counter ends the same, and
the DMA reads are counted."""
from __future__ import annotations

import pytest
from offload_rig import Rig, record  # tests/ring/offload_rig.py
from test_offload_bad_records import connected_pair

from toad import layout
from toad.rings.bus import READ_PER_KB, WAITED


def transfer(mode: str, checksum: str, *more: str) -> tuple:
    """Six SENDs from QP 0 (some adjacent in the send area, some not), the engine run
    until idle with time passing; (frames sent, the stack's fast counters, DMA reads,
    bytes acked, the engine's bus state or None). ``more``: config overrides."""
    rig = Rig(f"tcp.fast_path={mode}", f"tcp.checksum={checksum}", *more)
    frames: list = []
    nic = rig.poller.nic
    send = nic.send_burst

    def sending(pool, slots, count):
        frames.extend((bytes(pool.view(slot)), pool.csum_starts[slot], pool.gso_sizes[slot])
                      for slot in list(slots[:count]))
        send(pool, slots, count)
    nic.send_burst = sending
    try:
        a, b = rig.hosts
        conn, child = connected_pair(rig)
        b.drv.set_bytes_consumed(child, 1 << 40)       # a reader that keeps up
        lay = a.lay
        base = lay.send_offset
        a.drv.mv[base:base + 60000] = bytes(i * 7 & 0xFF for i in range(60000))
        for start, length in ((0, 9000), (9000, 7000), (20000, 3000), (30000, 12000),
                              (42000, 500), (50000, 10000)):
            a.post([record(layout.OP_SEND, layout.REQ_SILENT, conn, 0, offset=base + start,
                           length=length)])
            for _ in range(3):
                rig.advance(0.002)
                rig.settle()
        for _ in range(20):
            rig.advance(0.05)
            rig.settle()
        counters = {k: v for k, v in rig.poller.stack.counters.items() if k.startswith("fast.")}
        acked = a.qp().connections[conn].send_buffer.acked
        stats = rig.engine.registers.qp_stats[a.slot]       # flushed, plus not yet
        dma = (int(stats["dma_transactions"]) + a.qp().dma.transactions,
               int(stats["dma_bytes"]) + a.qp().dma.bytes)
        bus = None if rig.engine.bus is None else rig.engine.bus.copy()
        return frames, counters, dma, acked, bus
    finally:
        rig.close()


@pytest.mark.parametrize("checksum", ["software", "offloaded"])
def test_offload_data_from_the_kernel_matches_python(checksum):
    fast = transfer("compiled", checksum)
    slow = transfer("python", checksum)
    assert fast[0] == slow[0]
    # (the receiver's small pool, never returned here, bounds what is acknowledged)
    assert fast[3] == slow[3] > 10000
    assert fast[1].get("fast.tx", 0) > 0
    # DMA: every payload byte read from the host counted the same; the only
    # difference is the acknowledged counter's 8-byte stores, once per burst of ACKs
    # in the fast path against once per ACK
    (fast_n, fast_bytes), (slow_n, slow_bytes) = fast[2], slow[2]
    assert 0 < fast_n <= slow_n
    assert slow_bytes - fast_bytes == 8 * (slow_n - fast_n)


def test_the_kernels_reads_wait_on_the_bus():
    """With a bus model the transmit kernel's payload reads wait on it as Python's do:
    at 1 Gb/s (no latency) the engine waited at least 8 ns per byte acknowledged
    (every one of them was read from the host at least once)."""
    _frames, counters, _dma, acked, bus = transfer("compiled", "software",
                                                   "bus.dma_read_gbps=1")
    assert counters.get("fast.tx", 0) > 0 and acked > 10000
    assert bus[WAITED] >= (acked * bus[READ_PER_KB]) >> 10
