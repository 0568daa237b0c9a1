"""A pcap capture around any NIC: every frame sent and received, each once.

A NIC that hands some of its own frames back (the engine's loopback wire: both ends
of a connection behind one NIC, every frame addressed to its own MAC) would show
each such frame twice, sent and received, and tshark would call the second copy a
retransmission. Those frames are recorded once, when they arrive, as they crossed
the wire (after its faults: a lost frame is missing, a duplicated one is there
twice); the NIC says which they are (``comes_back(dst_mac)``).

Writes the classic libpcap format (magic a1b2c3d4, microsecond stamps,
LINKTYPE_ETHERNET) that tshark and Wireshark read. A frame whose TCP checksum is left
to the NIC is written with the checksum completed (a copy is summed; the frame in its
pool slot is untouched), so Wireshark's checksum validation passes; a received frame the NIC vouched
for (csum_ok, whose field may hold only a partial sum) is recorded with its TCP
checksum recomputed, for the same reason. TSO super-frames are written as
they are handed to the NIC, one record of up to 64 KB (tshark decodes them as one large
TCP segment, as it does with captures taken on Linux hosts with TSO).
"""
from __future__ import annotations

import struct
import time
from typing import Callable

import numpy as np

from engine.frames import FramePool
from engine.nic.base import Nic, slot_ids
from engine.tcp.checksum import checksum, fill_partial, pseudo_sum

MAGIC = 0xA1B2C3D4
LINKTYPE_ETHERNET = 1
SNAPLEN = 262144
_FILE_HEADER = struct.Struct("<IHHiIII")
_RECORD_HEADER = struct.Struct("<IIII")


def with_tcp_checksum(frame) -> bytes | bytearray:
    """A copy of an Ethernet/IPv4/TCP frame with its TCP checksum recomputed (the
    frame itself if it is anything else or too short to tell)."""
    if len(frame) < 54 or frame[12] != 0x08 or frame[13] != 0x00 or frame[23] != 6:
        return frame
    start = 14 + (frame[14] & 0x0F) * 4
    end = 14 + ((frame[16] << 8) | frame[17])
    if end > len(frame) or start + 20 > end:
        return frame
    data = bytearray(frame)
    data[start + 16:start + 18] = b"\0\0"
    src = int.from_bytes(data[26:30], "big")
    dst = int.from_bytes(data[30:34], "big")
    value = checksum(memoryview(data)[start:end], pseudo_sum(src, dst, 6, end - start))
    data[start + 16:start + 18] = value.to_bytes(2, "big")
    return data


class PcapWriter:
    """Append-only pcap file."""

    def __init__(self, path: str):
        try:
            self.file = open(path, "wb")
        except OSError as exc:
            raise ValueError(f"nic.pcap: cannot write {path!r}: {exc.strerror}") from None
        self.file.write(_FILE_HEADER.pack(MAGIC, 2, 4, 0, 0, SNAPLEN, LINKTYPE_ETHERNET))
        self.frames = 0

    def write(self, frame, stamp: float) -> None:
        seconds = int(stamp)
        micros = min(int(round((stamp - seconds) * 1e6)), 999_999)
        length = len(frame)
        kept = min(length, SNAPLEN)
        self.file.write(_RECORD_HEADER.pack(seconds, micros, kept, length))
        self.file.write(frame[:kept] if kept < length else frame)
        self.frames += 1

    def close(self) -> None:
        if not self.file.closed:
            self.file.close()


class PcapNic:
    """Wraps a NIC; forwards everything and records every frame."""

    def __init__(self, inner: Nic, path: str, clock: Callable[[], float] = time.time):
        self.inner = inner
        self.features = inner.features
        self.clock = clock
        self.writer = PcapWriter(path)
        self.comes_back = getattr(inner, "comes_back", None)
        # the wire's fault counters stay visible through the capture (the engine's
        # stop summary reads them: toad/experiment/counters.py)
        self.wire_counters = getattr(inner, "wire_counters", None)

    def send_burst(self, pool: FramePool, slots, n: int) -> None:
        """Record, then hand over (the inner NIC owns and releases the slots)."""
        stamp = self.clock()
        comes_back = self.comes_back
        write = self.writer.write
        for slot in slot_ids(slots, n):
            frame = pool.view(slot)
            if comes_back is not None and comes_back(frame[:6]):
                continue                   # recorded when it arrives
            start = pool.csum_starts[slot]
            if start:
                copy = bytearray(frame)
                fill_partial(copy, start, pool.csum_offsets[slot])
                write(copy, stamp)
            else:
                write(frame, stamp)
        self.inner.send_burst(pool, slots, n)

    def receive_burst(self, now: float, pool: FramePool, slots: np.ndarray) -> int:
        n = self.inner.receive_burst(now, pool, slots)
        if n:
            stamp = self.clock()
            csum_oks = pool.csum_oks
            for slot in slots[:n].tolist():
                frame = pool.view(slot)
                self.writer.write(with_tcp_checksum(frame) if csum_oks[slot] else frame,
                                  stamp)
        return n

    def fileno(self) -> int | None:
        return self.inner.fileno()

    def next_deadline(self) -> float | None:
        return self.inner.next_deadline()

    def due(self, now: float) -> bool:
        return self.inner.due(now)

    def close(self) -> None:
        self.writer.close()
        self.inner.close()
