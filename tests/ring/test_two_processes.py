"""Two real processes on two CPUs move millions of records through toad's rings.

Process A posts sequence-numbered records into a phase ring (the event-ring
protocol); process B consumes them, checks their order and forwards them through an
index ring (the request-ring protocol: records, then the producer index) back to A,
which checks them again. Nothing may be lost, duplicated or reordered.
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

from toad.rings import MASK32, PhaseReader, PhaseWriter, RecordRing, ring_count, ring_free
from toad.shm import Segment

SEQ = np.dtype({"names": ["seq", "phase"], "formats": ["<u8", "<u4"],
                "offsets": [0, 12], "itemsize": 16})
ENTRIES = 4096
RING1, RING2 = 4096, 4096 + ENTRIES * 16
C1, P2, C2, FAILED = 16, 32, 48, 64          # u32 words in the control page
TOTAL = 2_000_000
BATCH = 1024


def forwarder(name: str, total: int, cpu: int) -> int:
    """Process B: phase ring in, order check, index ring out."""
    if cpu in os.sched_getaffinity(0):
        os.sched_setaffinity(0, {cpu})
    seg = Segment(name)
    words = memoryview(seg.map).cast("I")
    reader = PhaseReader(RecordRing(seg.map, RING1, ENTRIES, SEQ))
    out = RecordRing(seg.map, RING2, ENTRIES, SEQ)
    producer, expected, pending = 0, 0, SEQ_EMPTY()
    while expected < total or len(pending):
        if len(pending) < BATCH * 4:
            got = reader.poll(BATCH)
            if len(got):
                words[C1] = reader.consumer   # slots are free for A again
                if not np.array_equal(got["seq"], np.arange(expected, expected + len(got))):
                    words[FAILED] = 1
                    return 1
                expected += len(got)
                pending = np.concatenate([pending, got]) if len(pending) else got
        room = ring_free(ENTRIES, producer, words[C2])
        if room and len(pending):
            n = min(room, len(pending))
            out.write(producer, pending[:n])
            producer = (producer + n) & MASK32
            words[P2] = producer              # publish: the records are written
            pending = pending[n:]
    del reader, out
    words.release()
    seg.close()
    return 0


def SEQ_EMPTY() -> np.ndarray:
    return np.zeros(0, SEQ)


def test_millions_of_records_between_two_processes():
    name = f"/toad-test{os.getpid()}-rings"
    seg = Segment(name, RING2 + ENTRIES * 16, create=True)
    child = None
    try:
        child = subprocess.Popen([sys.executable, "-c",
                                  "import sys; from tests.ring.test_two_processes import forwarder;"
                                  f"sys.exit(forwarder({name!r}, {TOTAL}, 1))"],
                                 cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
        words = memoryview(seg.map).cast("I")
        writer = PhaseWriter(RecordRing(seg.map, RING1, ENTRIES, SEQ))
        back = RecordRing(seg.map, RING2, ENTRIES, SEQ)
        sent = received = 0
        consumer = 0
        batch = np.zeros(BATCH, SEQ)
        while received < TOTAL:
            assert words[FAILED] == 0, "forwarder saw records out of order"
            assert child.poll() is None or child.returncode == 0
            if sent < TOTAL:
                n = min(BATCH, TOTAL - sent)
                batch["seq"][:n] = np.arange(sent, sent + n)
                sent += writer.post(batch[:n], words[C1])
            available = ring_count(words[P2], consumer)
            if available:
                got = back.read(consumer, available)
                assert np.array_equal(got["seq"], np.arange(received, received + available))
                received += available
                consumer = (consumer + available) & MASK32
                words[C2] = consumer
        assert child.wait(timeout=60) == 0
        assert received == sent == TOTAL
        del writer, back
        words.release()
    finally:
        if child is not None and child.poll() is None:
            child.kill()
            child.wait()
        seg.close()
        seg.unlink()
