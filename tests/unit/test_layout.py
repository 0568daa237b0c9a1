"""The memory contract (toad/layout.py): offsets, record views, region checks."""
from __future__ import annotations

import numpy as np
import pytest

from toad import layout
from toad.config import load


def test_record_sizes_and_cache_lines():
    assert layout.REQUEST.itemsize == 64
    assert layout.EVENT.itemsize == 64
    assert layout.EVENT.fields["phase"][1] == layout.EVENT_PHASE_OFFSET == 60
    assert layout.RXBUF.itemsize == 16
    assert layout.COUNTER_ROW.itemsize == 32
    assert layout.QP_STATS.itemsize == 128           # two cache lines per QP's stats row
    # host-written doorbells and commands and the engine-written indices, flags and
    # status each live on cache lines of their own
    line = {name: layout.QP_HEADER.fields[name][1] // 64 for name in layout.QP_HEADER.names}
    groups = [("magic",), ("request_consumer",), ("rxbuf_consumer",), ("engine_flags",),
              layout.DOORBELL_FIELDS, ("command", "command_seq"),
              ("state", "ack_seq", "engine_state", "heartbeat")]
    assert [len({line[name] for name in group}) for group in groups] == [1] * len(groups)
    assert len({line[group[0]] for group in groups}) == len(groups)
    assert layout.QP_HEADER.itemsize <= 4096    # the doorbell page: the segment's first


def test_oe_slots_hold_nothing_that_steers_an_enabled_qp():
    """Every host maps OE memory read-write: a QP's doorbells, interrupt registers and
    disable command are in its own segment, the slot keeps the enable handshake."""
    assert set(layout.QP_SLOT.names) == {"command", "command_seq", "host_pid",
                                         "segment_bytes", "segment_name", "state",
                                         "ack_seq", "error"}
    assert {name: word * 4 for name, word in layout.DOORBELL_WORDS.items()} == \
        {name: layout.QP_HEADER.fields[name][1] for name in layout.DOORBELL_FIELDS}


def test_record_views_keep_every_field_at_its_offset():
    """A record written through its dtype reads the same through its Python view; a
    u64 of 2**64 - 1 reads as -1 through the signed one (same bits)."""
    for dtype, view, skip in ((layout.REQUEST, layout.REQUEST_SIGNED, ("reserved",)),
                              (layout.EVENT, layout.EVENT_FIELDS, ("reserved", "phase"))):
        names = [n for n in dtype.names if n not in skip]
        assert set(view.names) == set(names) and view.itemsize == dtype.itemsize
        record = np.zeros(1, dtype)
        for i, name in enumerate(names):
            record[name] = i + 3
        assert record.view(view).tolist()[0] == tuple(i + 3 for i in range(len(names)))
        assert layout.record_struct(view).unpack_from(record.view(np.uint8)) == \
            tuple(i + 3 for i in range(len(names)))
    record = np.zeros(1, layout.REQUEST)
    record["cookie"] = (1 << 64) - 1
    assert int(record.view(layout.REQUEST_SIGNED)["cookie"][0]) == -1


def test_qp_layout_regions_fit_and_do_not_overlap():
    lay = layout.qp_layout(load(None).qp)
    assert layout.check_qp_layout(lay, lay.total_bytes) is None
    assert "exceeds" in layout.check_qp_layout(lay, lay.total_bytes - 4096)


def test_qp_layout_round_trips_through_the_header():
    lay = layout.qp_layout(load(None, ["qp.request_entries=64", "qp.recv_buffers=5",
                                       "qp.recv_small_buffers=0"]).qp)
    header = np.zeros(1, layout.QP_HEADER)[0]
    for field in layout.QpLayout.__dataclass_fields__:
        header[field] = getattr(lay, field)
    assert layout.qp_layout_from_header(header) == lay
    assert lay.rxbuf_entries == 8 and lay.small_buffers == 0


def test_small_buffers_follow_the_chunk_sized_ones():
    lay = layout.qp_layout(load(None, ["qp.recv_buffers=5", "qp.recv_small_buffers=10",
                                       "qp.recv_small_bytes=1024"]).qp)
    assert lay.total_buffers == 15 and lay.rxbuf_entries == 16
    assert lay.buffer_at(4) == (lay.recv_offset + 4 * 131072, 131072)
    assert lay.buffer_at(5) == (lay.recv_offset + 5 * 131072, 1024)
    assert lay.buffer_at(14) == (lay.recv_offset + 5 * 131072 + 9 * 1024, 1024)
    assert lay.recv_bytes == 5 * 131072 + 10 * 1024
    assert layout.check_qp_layout(lay, lay.total_bytes) is None
    # no small group when its buffers would not be smaller than the chunk
    same = layout.qp_layout(load(None, ["qp.recv_buffer_bytes=2048"]).qp)
    assert same.small_buffers == 0 and same.total_buffers == same.recv_buffers


def test_oe_layout_is_ordered_and_aligned():
    lay = layout.oe_layout(16)
    offsets = [lay.config_offset, lay.registers_offset, lay.stats_offset,
               lay.qp_stats_offset, lay.slots_offset]
    assert offsets == sorted(offsets) and all(o % 64 == 0 for o in offsets)
    assert lay.slot_offset(15) + layout.QP_SLOT.itemsize <= lay.total_bytes


def test_names_contain_toad():
    segment = layout.qp_segment_name("x", 3, 1234, layout.new_token())
    for name in (layout.oe_name("x"), layout.wake_name("x", 7), segment,
                 layout.irq_name(segment)):
        assert "toad" in name and name.startswith("/")
    layout.segment_name(layout.qp_segment_name("x" * 40, 15, 4194304, layout.new_token()))
    with pytest.raises(ValueError):
        layout.segment_name("/toad-" + "x" * 100)
