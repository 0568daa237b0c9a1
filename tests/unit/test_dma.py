"""Emulated DMA (engine/dma.py): the IOMMU bounds check, counters, the bus model."""
from __future__ import annotations


import numpy as np
import pytest

from engine.dma import BusModel, Dma, DmaError


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


def test_bus_model_charges_latency_and_bandwidth():
    now = [0]

    def clock():
        now[0] += 10          # every look at the clock lets 10 ns pass
        return now[0]

    bus = BusModel(gbps=8.0, latency_us=1.0, clock=clock)   # 1 ns per byte + 1000 ns
    dma = make(bus=bus)
    dma.write(0, b"x" * 1000)
    assert bus.charged_ns == 2000
    assert now[0] >= 2000
    dma.read(0, 0)
    assert bus.charged_ns == 3000


def test_bus_model_is_off_by_default():
    from toad.config import load
    assert BusModel.from_config(load(None).dma) is None
    assert BusModel.from_config(load(None, ["dma.bus_gbps=10"]).dma) is not None
