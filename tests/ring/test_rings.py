"""Ring invariants (toad/rings.py): free-running indices, phase bits, need_event."""
from __future__ import annotations

from collections import deque

import numpy as np
from hypothesis import given, settings, strategies as st

from toad.rings import (MASK32, PhaseReader, PhaseWriter, RecordRing, need_event,
                        phase_for, ring_count, ring_free, ring_valid)

SEQ = np.dtype({"names": ["seq", "phase"], "formats": ["<u8", "<u4"],
                "offsets": [0, 12], "itemsize": 16})


def reference_need_event(event: int, new: int, old: int) -> bool:
    steps = (new - old) & MASK32
    return any(((old + k) & MASK32) == event for k in range(steps))


def test_need_event_exhaustive_around_the_wrap():
    for base in (0, MASK32 - 8, (1 << 31) - 4):
        window = [(base + k) & MASK32 for k in range(-3, 20)]
        for old in window:
            for step in range(0, 12):
                new = (old + step) & MASK32
                for event in window:
                    assert need_event(event, new, old) == reference_need_event(event, new, old), \
                        (event, new, old)


def test_need_event_no_move_never_notifies():
    for idx in (0, 1, MASK32):
        assert not need_event(idx, idx, idx)


def test_phase_flips_each_pass_and_across_index_wrap():
    entries = 8
    assert [phase_for(i, entries) for i in range(0, 32, 8)] == [1, 0, 1, 0]
    last_pass = MASK32 - 7          # first index of the last pass before the wrap
    assert phase_for(last_pass, entries) != phase_for(0, entries)
    assert phase_for(MASK32, entries) == phase_for(last_pass, entries)


@given(st.integers(0, MASK32), st.integers(0, 64), st.sampled_from([8, 16, 64]))
def test_count_free_valid(consumer, count, entries):
    producer = (consumer + count) & MASK32
    assert ring_count(producer, consumer) == count
    assert ring_valid(entries, producer, consumer) == (count <= entries)
    if count <= entries:
        assert ring_free(entries, producer, consumer) == entries - count


operations = st.lists(st.tuples(st.sampled_from(["post", "poll"]), st.integers(0, 20)),
                      min_size=1, max_size=60)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([8, 16]), st.integers(-40, 40), operations)
def test_phase_ring_interleavings(entries, start, ops):
    """Any interleaving: no loss, duplication, reordering or overwrite; wrap included."""
    buf = bytearray(entries * SEQ.itemsize)
    ring = RecordRing(buf, 0, entries, SEQ)
    writer, reader = PhaseWriter(ring), PhaseReader(RecordRing(buf, 0, entries, SEQ))
    begin = start & MASK32      # indices start near 2**32 or 0 to cross the wrap
    # bring the ring to "index = begin" as if that many records had gone through it
    for i in range(entries):
        idx = (begin - entries + i) & MASK32
        ring.records[(idx) & (entries - 1)]["phase"] = phase_for(idx, entries)
    writer.producer = reader.consumer = begin
    model, next_seq = deque(), 0
    for op, n in ops:
        if op == "post":
            batch = np.zeros(n, SEQ)
            batch["seq"] = np.arange(next_seq, next_seq + n)
            posted = writer.post(batch, reader.consumer)
            assert posted == min(n, entries - len(model))
            model.extend(range(next_seq, next_seq + posted))
            next_seq += posted
        else:
            got = reader.poll(n)
            expect = [model.popleft() for _ in range(min(n, len(model)))]
            assert list(got["seq"]) == expect
        assert ring_count(writer.producer, reader.consumer) == len(model)
    assert list(reader.poll()["seq"]) == list(model)


def test_reader_ignores_records_of_the_previous_pass():
    entries = 8
    buf = bytearray(entries * SEQ.itemsize)
    writer, reader = PhaseWriter(RecordRing(buf, 0, entries, SEQ)), PhaseReader(RecordRing(buf, 0, entries, SEQ))
    batch = np.zeros(entries, SEQ)
    batch["seq"] = np.arange(entries)
    assert writer.post(batch, reader.consumer) == entries
    assert writer.post(batch, reader.consumer) == 0           # full: never overwrites
    assert len(reader.poll()) == entries
    assert len(reader.poll()) == 0                            # old pass is not "ready"
    assert writer.post(batch[:3], reader.consumer) == 3
    assert list(reader.poll()["seq"]) == [0, 1, 2]


def test_record_ring_write_and_read_across_the_wrap():
    ring = RecordRing(bytearray(8 * SEQ.itemsize), 0, 8, SEQ)
    data = np.zeros(5, SEQ)
    data["seq"] = [10, 11, 12, 13, 14]
    ring.write(MASK32 - 1, data)
    assert list(ring.read(MASK32 - 1, 5)["seq"]) == [10, 11, 12, 13, 14]
    assert list(ring.records["seq"]) == [12, 13, 14, 0, 0, 0, 10, 11]   # slots 6, 7, 0..2
