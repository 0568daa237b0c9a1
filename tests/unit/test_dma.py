"""Emulated DMA (engine/dma.py): the IOMMU bounds check, counters, the bus model."""
from __future__ import annotations


import numpy as np
import pytest

from engine.dma import Dma, DmaError
from toad.rings.atomics import read_cycles
from toad.rings.bus import (BUSY_UNTIL, READ_LATENCY, READ_PER_KB, WAITED, WRITE_PER_KB,
                            charge_dma, charge_reads, new_bus)


def make(size: int = 4096, bus=None) -> Dma:
    return Dma(bytearray(size), size, bus)


@pytest.mark.parametrize("offset,length", [(-1, 4), (4093, 4), (0, 4097), (4096, 1), (10, -1)])
def test_out_of_segment_access_is_refused(offset, length):
    dma = make()
    with pytest.raises(DmaError):
        dma.read(offset, length)
    with pytest.raises(DmaError):
        dma.write(offset, b"x" * max(length, 0)) if length >= 0 else dma.check(offset, length)
    assert dma.refused >= 1 and dma.transactions == 0 and dma.bytes == 0


def test_word_access_bounds_and_alignment():
    dma = make(64)
    dma.write_u64(56, 1 << 60)
    assert dma.read_u64(56) == 1 << 60
    dma.write_u32(60, 7)
    assert dma.read_u32(60) == 7
    for bad in (64, -4, 62):
        with pytest.raises(DmaError):
            dma.write_u32(bad, 1)
    with pytest.raises(DmaError):
        dma.read_u64(60)


def test_bytes_and_transactions_are_counted():
    dma = make()
    dma.write(100, b"hello")
    assert bytes(dma.read(100, 5)) == b"hello"
    dma.write_u64(200, 3)
    assert dma.read_u64(200) == 3
    arr = dma.array(0, 4, np.dtype("<u8"))
    assert len(arr) == 4
    assert dma.transactions == 5
    assert dma.bytes == 5 + 5 + 8 * 2 + 32


def idle_bus(latency_us=1.0, read_gbps=8.0, write_gbps=8.0):
    """A bus at 1 ns per cycle: latency and per-KB costs read straight in ns."""
    return new_bus(latency_us, read_gbps, write_gbps, ns_per_cycle=1.0)


def test_a_read_waits_for_its_latency_and_its_bytes():
    bus = idle_bus()                                # 1 ns per byte + 1000 ns
    dma = make(bus=bus)
    dma.read(0, 1000)
    assert dma.bus_cycles >= 1000 + 1000
    assert bus[WAITED] == dma.bus_cycles            # the bus counts the same wait
    assert dma.transactions == 1 and dma.bytes == 1000


def test_a_posted_write_waits_only_for_a_busy_bus():
    bus = idle_bus()
    dma = make(bus=bus)
    before = read_cycles()
    dma.write(0, b"x" * 1024)                       # idle bus: posted at once
    assert dma.bus_cycles == 0
    assert bus[BUSY_UNTIL] >= before + 1024         # ... and holds the bus for its bytes
    busy_until = read_cycles() + 200_000
    bus[BUSY_UNTIL] = busy_until
    charge_dma(bus, 8, False)                       # waits for the transfer before it
    assert read_cycles() >= busy_until
    assert bus[BUSY_UNTIL] >= busy_until + (8 * bus[WRITE_PER_KB] >> 10)


def test_reads_charged_at_once_wait_as_long_as_one_by_one():
    """The fast path's gather pays its reads after the kernel: 3 reads of 1000 bytes in
    all wait 3 latencies and the bytes, as 3 reads in turn would."""
    bus = idle_bus()                                # 1 ns per byte + 1000 ns per read
    before = read_cycles()
    waited = charge_reads(bus, 3, 1000)
    assert waited >= 3 * 1000 + 1000 and bus[WAITED] == waited
    assert bus[BUSY_UNTIL] >= before + 3 * 1000 + 1000


def test_no_cap_costs_no_bandwidth():
    bus = new_bus(0.0, 0.0, 0.0, ns_per_cycle=1.0)
    assert bus[READ_LATENCY] == bus[READ_PER_KB] == bus[WRITE_PER_KB] == 0


def test_the_bus_model_is_off_by_default():
    from engine.loop import bus_state
    from toad.config import load
    assert bus_state(load(None).bus) == (None, 0.0)
    assert bus_state(load(None, ["bus.pio_write_ns=100"]).bus) == (None, 0.0)  # no DMA cost
    bus, rate = bus_state(load(None, ["bus.preset=pci66"]).bus)
    assert bus is not None and rate > 0 and bus[READ_PER_KB] > bus[WRITE_PER_KB] > 0
