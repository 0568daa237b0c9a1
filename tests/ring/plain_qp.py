"""An engine-side QP over a plain bytearray, for tests of engine/qp.py and the offload
layer's batched paths: no shared memory, no engine process."""
from __future__ import annotations

import numpy as np

from engine.dma import Dma
from engine.qp import QueuePair
from toad import layout
from toad.config import load
from toad.rings import PhaseReader, RecordRing

# the QP's register words, in this order in ``regs``: regs[1] is the host's event
# consumer index, regs[2] the receive-buffer doorbell
WORD_NAMES = ["request_producer", "event_consumer", "rxbuf_producer", "irq_enabled",
              "irq_event_index", "moderation_events", "moderation_us"]


class Closable:
    def close(self):
        pass


def make_qp(*overrides, bus=None):
    """(qp, buffer, regs, layout): 4 receive buffers of 4 KB (no small group) and 8
    event slots unless overridden; ``bus``: a bus state (toad/rings/bus.py) its DMA
    waits on."""
    lay = layout.qp_layout(load(None, ["qp.recv_buffers=4", "qp.recv_buffer_bytes=4096",
                                       "qp.recv_small_buffers=0", "qp.event_entries=8",
                                       "qp.max_connections=4", *overrides]).qp)
    buf = bytearray(lay.total_bytes)
    regs = np.zeros(len(WORD_NAMES), np.uint32)
    words = {name: i for i, name in enumerate(WORD_NAMES)}
    qp = QueuePair(3, 1, Closable(), Dma(buf, len(buf), bus), lay, regs, words, Closable(), -1)
    return qp, buf, regs, lay


def events_of(buf, lay):
    return PhaseReader(RecordRing(buf, lay.event_offset, lay.event_entries, layout.EVENT))
