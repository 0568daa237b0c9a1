"""A pcap capture around any NIC: every frame sent and received, each once.

A NIC that hands some of its own frames back (the engine's loopback wire: both ends
of a connection behind one NIC, every frame addressed to its own MAC) would show
each such frame twice, sent and received, and tshark would call the second copy a
retransmission. Those frames are recorded once, when they arrive, as they crossed
the wire (after its faults: a lost frame is missing, a duplicated one is there
twice); the NIC says which they are (``comes_back(dst_mac)``).

Writes the classic libpcap format (magic a1b2c3d4, microsecond stamps,
LINKTYPE_ETHERNET) that tshark and Wireshark read. A frame whose TCP checksum is left
to the NIC is written with the checksum completed (a copy is summed; the NIC's frame is
untouched), so Wireshark's checksum validation passes; a received frame the NIC vouched
for (csum_ok, whose field may hold only a partial sum) is recorded with its TCP
checksum recomputed, for the same reason. TSO super-frames are written as
they are handed to the NIC, one record of up to 64 KB (tshark decodes them as one large
TCP segment, as it does with captures taken on Linux hosts with TSO).
"""
from __future__ import annotations

import struct
import time
from typing import Callable

from engine.nic.base import Nic, TxFrame
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

    def send(self, frames: list[TxFrame]) -> None:
        stamp = self.clock()
        comes_back = self.comes_back
        for frame in frames:
            if comes_back is not None and comes_back(frame.data[:6]):
                continue                   # recorded when it arrives
            if frame.csum_start:
                copy = bytearray(frame.data)
                fill_partial(copy, frame.csum_start, frame.csum_offset)
                self.writer.write(copy, stamp)
            else:
                self.writer.write(frame.data, stamp)
        self.inner.send(frames)

    def receive(self, now: float, max_frames: int = 64) -> list[tuple[memoryview, bool]]:
        frames = self.inner.receive(now, max_frames)
        if frames:
            stamp = self.clock()
            for frame, csum_ok in frames:
                self.writer.write(with_tcp_checksum(frame) if csum_ok else frame, stamp)
        return frames

    def fileno(self) -> int | None:
        return self.inner.fileno()

    def next_deadline(self) -> float | None:
        return self.inner.next_deadline()

    def close(self) -> None:
        self.writer.close()
        self.inner.close()
