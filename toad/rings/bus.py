"""The bus model's charges, compiled: time spent busy, counted in TSC cycles.

The bus model (toad/config/bus.py) makes each side pay, on its own CPU, what a real
I/O bus would cost it:

* the host, per register access (a PIO write or read): :func:`spin` for the access's
  cycles, inside the compiled call that makes the access (host/datapath.py);
* the engine, per DMA transfer: :func:`dma_wait` on the card's one bus, whose state
  is a :data:`BUS_WORDS` int64 array (engine-wide, reached from every QP's record
  through its address: the compiled ring calls, the payload DMA of engine/dma.py
  through :data:`charge_dma`, and the fast path's payload reads through
  :data:`charge_reads`). Transfers follow each other on the bus: each starts
  when the previous one ends (``BUSY_UNTIL``) and occupies it for its bytes at its
  direction's bandwidth. A read waits until its data is in (``READ_LATENCY`` after it
  starts, plus its bytes); a write is posted: it waits only for the bus to be free,
  and the engine goes on while it transfers.

Costs are TSC cycles, converted from nanoseconds once (toad/tsc.py) by :func:`new_bus`
and the host driver; a cycle count of 0 costs nothing and reads no clock.
"""
from __future__ import annotations

import numpy as np

from toad.compiled import entry, helper, kernel, loaded
from toad.rings.atomics import cycles, pause

# the words of a bus state array (int64)
BUSY_UNTIL = 0      # TSC cycle at which the last transfer leaves the bus
READ_LATENCY = 1    # cycles a DMA read waits for its first byte
READ_PER_KB = 2     # cycles per 1024 bytes read (0: no bandwidth cap)
WRITE_PER_KB = 3    # cycles per 1024 bytes written (0: no cap)
WAITED = 4          # cycles the engine has waited on the bus (a counter)
BUS_WORDS = 8


def new_bus(dma_latency_us: float, read_gbps: float, write_gbps: float,
            ns_per_cycle: float) -> np.ndarray:
    """The state array of a bus with these figures (0 Gb/s: no cap)."""
    bus = np.zeros(BUS_WORDS, np.int64)
    bus[READ_LATENCY] = round(dma_latency_us * 1000.0 / ns_per_cycle)
    for word, gbps in ((READ_PER_KB, read_gbps), (WRITE_PER_KB, write_gbps)):
        if gbps > 0:
            bus[word] = round(1024 * 8.0 / gbps / ns_per_cycle)   # 8 / Gb/s = ns per byte
    return bus


@helper
def spin(count):
    """Stay busy for ``count`` TSC cycles; returns the cycles spent (0 when count is)."""
    if count <= 0:
        return 0
    start = cycles()
    now = start
    while now - start < count:
        pause()
        now = cycles()
    return now - start


@helper
def dma_wait(bus, nbytes, read):
    """One DMA transfer of ``nbytes`` on ``bus`` (a read if ``read``, else a posted
    write): wait as the model says, count it in ``WAITED``; returns the cycles waited."""
    return dma_wait_many(bus, 1, nbytes, read)


@helper
def dma_wait_many(bus, count, nbytes, read):
    """``count`` transfers of ``nbytes`` in all, one after the other, in one wait: the
    same as ``count`` dma_wait calls (each read waits for its latency and its bytes in
    turn). For compiled code that moved the bytes without waiting (the fast path's
    gather, engine/fast/tx.py) and pays for them when it hands its frames over."""
    now = cycles()
    start = bus[BUSY_UNTIL] if bus[BUSY_UNTIL] > now else now
    if read:
        done = start + count * bus[READ_LATENCY] + ((nbytes * bus[READ_PER_KB]) >> 10)
        bus[BUSY_UNTIL] = done
    else:
        done = start                   # posted: the engine goes on once it is issued
        bus[BUSY_UNTIL] = start + ((nbytes * bus[WRITE_PER_KB]) >> 10)
    end = now
    while end < done:
        pause()
        end = cycles()
    bus[WAITED] += end - now
    return end - now


@kernel("int64(int64[::1], int64, boolean)")
def _charge_dma(bus, nbytes, read):
    """dma_wait() from Python (the engine's payload DMA, engine/dma.py)."""
    return dma_wait(bus, nbytes, read)


@kernel("int64(int64[::1], int64, int64)")
def _charge_reads(bus, count, nbytes):
    """dma_wait_many() of ``count`` reads from Python (the fast path's payload reads,
    engine/fast/path.py)."""
    return dma_wait_many(bus, count, nbytes, True)


@kernel("int64(int64)")
def _spin_cycles(count):
    """spin() from Python (tests, tools)."""
    return spin(count)


charge_dma = entry(_charge_dma)
charge_reads = entry(_charge_reads)
spin_cycles = entry(_spin_cycles)


loaded(__name__)
