"""Integrity of the workers' byte streams: an exact CRC-32 of each stream, and the CPU
time that cost, so it can be left out of the figures.

- ``Integrity``: a running CRC-32 (zlib.crc32 measured fastest here: ~3.7 GB/s against
  ~3.1 for adler32 and <= 1.7 for hashlib's digests). rr and crr use it both ways.
- ``KnownPieces``: the CRC of a stream of known, equal-length pieces by table. A bulk
  sender writes only such pieces (``SendPattern``).
- ``ExpectedStream``: the bulk receiver compares every byte it gets with the byte the
  sender wrote there (memcmp: ~4 us per 128 KB here, against ~36-46 us for a CRC
  pass) and keeps the CRC of what it got by table while the two agree, by a pass once
  they differ. The CRC it reports is therefore exactly the CRC-32 of the bytes it received,
  and it also knows the first offset that differs.

Each checker's own CPU time is measured with ``thread_time`` around every
SAMPLE_EVERY-th call and charged per byte to the others (thread_time is a system call
of ~1 us here: timing every call cost as much as the checksum of 4 KB, and half of it
landed in the network's share).
"""
from __future__ import annotations

import time
import zlib

import numpy as np

SAMPLE_EVERY = 16        # checksum calls per timed one (a power of two)
_SAMPLE_MASK = SAMPLE_EVERY - 1
_crc32 = zlib.crc32
SEND_SLICES = 61         # bulk sender: distinct chunk-sized slices of its pattern, in turn
SLICE_STRIDE = 7919      # ... starting at i * SLICE_STRIDE mod (len(pattern) - chunk)


def clock_overhead(clock=time.thread_time, trials: int = 20) -> float:
    """What a ``clock() ... clock()`` pair adds to the time it measures (one call's
    cost: the smallest difference of two back-to-back readings)."""
    best = float("inf")
    for _ in range(trials):
        start = clock()
        best = min(best, clock() - start)
    return best


def pattern(nbytes: int, seed: int) -> bytearray:
    """Random bytes the senders draw their data from (so reordering is detected)."""
    return bytearray(np.random.default_rng(seed).integers(0, 256, nbytes, dtype=np.uint8).tobytes())


class Integrity:
    """A running CRC-32 of a byte stream and the CPU time spent computing it."""

    def __init__(self, clock=time.thread_time) -> None:
        self.clock = clock
        self.crc = 0
        self.nbytes = 0
        self.calls = 0
        self.timed_s = 0.0       # thread CPU time of the timed calls...
        self.timed_bytes = 0     # ... and the bytes they checked
        self.overhead_s = clock_overhead(clock)   # the timer's own cost, off each sample

    def update_known(self, pieces: KnownPieces, index: int) -> None:
        """``update(piece)`` for a piece of ``pieces``, by table (timed the same way;
        written out like ``update``, not through a shared helper: both run once per
        chunk and their untimed Python is charged to the network)."""
        calls = self.calls
        self.calls = calls + 1
        if calls & _SAMPLE_MASK:
            self.crc = pieces.extend(self.crc, index)
            self.nbytes += pieces.length
            return
        start = self.clock()
        self.crc = pieces.extend(self.crc, index)
        self.timed_s += max(0.0, self.clock() - start - self.overhead_s)
        self.timed_bytes += pieces.length
        self.nbytes += pieces.length

    def update(self, view) -> None:
        # (one call per chunk, its Python cost charged to the network: kept short)
        calls = self.calls
        self.calls = calls + 1
        if calls & _SAMPLE_MASK:       # calls 1, 17, 33... are timed
            self.crc = _crc32(view, self.crc)
            self.nbytes += len(view)
            return
        start = self.clock()
        self.crc = _crc32(view, self.crc)
        self.timed_s += max(0.0, self.clock() - start - self.overhead_s)
        self.timed_bytes += len(view)
        self.nbytes += len(view)

    @property
    def cpu_s(self) -> float:
        """Checksum CPU seconds so far: the timed calls' cost per byte, for all bytes
        (the first call is always timed, so any checked bytes have a cost)."""
        if not self.timed_bytes:
            return self.timed_s
        return self.timed_s * self.nbytes / self.timed_bytes


class KnownPieces:
    """The CRC-32 of a stream of known, equal-length pieces without a pass over them.

    CRC-32 is affine in its starting value: ``crc32(piece, v) == M(v) ^ crc32(piece)``
    where M is linear and depends only on ``len(piece)``. M is kept as four byte
    tables; each piece's own CRC is computed once. A bulk sender writes only such
    pieces, so extending its CRC costs four table lookups instead of a pass over the
    chunk (at 128 KB the pass was ~36 us per chunk: at 7 Gb/s about a quarter of a
    CPU per side, on the one CPU both workers share).
    """

    def __init__(self, pieces: list) -> None:
        length = len(pieces[0])
        if any(len(piece) != length for piece in pieces):
            raise ValueError("KnownPieces: the pieces must have one length")
        zeros = bytes(length)
        base = _crc32(zeros)
        columns = [_crc32(zeros, 1 << bit) ^ base for bit in range(32)]   # M(1 << bit)
        self.tables = []
        for byte in range(4):
            table = [0] * 256
            for value in range(1, 256):
                low = value & -value                  # M is linear: one column per bit
                table[value] = table[value ^ low] ^ columns[8 * byte + low.bit_length() - 1]
            self.tables.append(table)
        self.crcs = [_crc32(piece) for piece in pieces]
        self.length = length

    def extend(self, crc: int, index: int) -> int:
        """``crc32(pieces[index], crc)``."""
        t0, t1, t2, t3 = self.tables
        return (t0[crc & 0xFF] ^ t1[(crc >> 8) & 0xFF] ^ t2[(crc >> 16) & 0xFF]
                ^ t3[crc >> 24] ^ self.crcs[index])


class SendPattern:
    """What a bulk sender writes: ``SEND_SLICES`` chunk-sized slices of a random
    pattern, in turn (slice ``k % SEND_SLICES`` is the stream's k-th chunk), made once
    so no write slices anything. Both ends build it from the same chunk and seed."""

    def __init__(self, chunk: int, seed: int) -> None:
        self.chunk = chunk
        self.data = pattern(4 * chunk + 4093, seed)
        span = len(self.data) - chunk
        whole = memoryview(self.data)
        self.views = [whole[start:start + chunk]
                      for start in ((i * SLICE_STRIDE) % span for i in range(SEND_SLICES))]
        self.known = KnownPieces(self.views)


class ExpectedStream(Integrity):
    """The bulk receiver's check: each received byte against the byte the sender
    wrote at that stream offset, and the exact CRC-32 of what arrived.

    The reads fill ``buffer`` from its start. While the stream agrees with
    ``SendPattern``, a read costs one or two memcmps (in C: ``bytearray ==`` and
    ``startswith`` take the pattern's views without a copy) and each completed piece
    four table lookups (``KnownPieces``). From the first difference on, the CRC is a
    pass over the received bytes, and ``first_bad`` is that difference's stream
    offset (-1: none). Call ``finish`` after the last byte.
    """

    def __init__(self, sent: SendPattern, buffer: bytearray, clock=time.thread_time) -> None:
        super().__init__(clock)
        self.sent = sent
        self.buffer = buffer
        self.whole = len(buffer) if len(buffer) == sent.chunk else -1  # see _compare
        self.offset = 0          # stream offset of the next byte...
        self.index = 0           # ... in slice ``index`` of the pattern...
        self.within = 0          # ... this far in
        self.first_bad = -1

    def received(self, n: int) -> None:
        """The first ``n`` bytes of the buffer are the stream's next bytes (timed like
        ``update``, written out for the same reason)."""
        calls = self.calls
        self.calls = calls + 1
        if calls & _SAMPLE_MASK:
            self._compare(n)
            self.nbytes += n
            return
        start = self.clock()
        self._compare(n)
        self.timed_s += max(0.0, self.clock() - start - self.overhead_s)
        self.timed_bytes += n
        self.nbytes += n

    def _compare(self, n: int) -> None:
        offset = self.offset
        self.offset = offset + n
        if self.first_bad >= 0:
            self.crc = _crc32(memoryview(self.buffer)[:n], self.crc)
            return
        sent, index, within = self.sent, self.index, self.within
        if n == self.whole and not within and self.buffer == sent.views[index]:
            # the usual read: one whole piece into the whole buffer
            self.crc = sent.known.extend(self.crc, index)
            self.index = index + 1 if index + 1 < SEND_SLICES else 0
            return
        chunk, views, startswith, position = sent.chunk, sent.views, self.buffer.startswith, 0
        while position < n:     # a short read, or one that does not start a piece
            take = min(n - position, chunk - within)
            if not startswith(views[index][within:within + take], position):
                self._diverge(offset, position, n, index, within, take)
                return
            position += take
            within += take
            if within == chunk:
                self.crc = sent.known.extend(self.crc, index)
                index = index + 1 if index + 1 < SEND_SLICES else 0
                within = 0
        self.index, self.within = index, within

    def _diverge(self, offset: int, position: int, n: int, index: int, within: int,
                 take: int) -> None:
        """The ``take`` bytes at ``position`` differ from the sender's somewhere: fold
        in the current piece's agreeing head, then all the received rest by a pass,
        and note where the difference is."""
        piece, got = self.sent.views[index], memoryview(self.buffer)
        self.crc = _crc32(piece[:within], self.crc)
        self.crc = _crc32(got[position:n], self.crc)
        self.first_bad = offset + position + next(
            i for i, (a, b) in enumerate(zip(got[position:position + take],
                                             piece[within:within + take])) if a != b)

    def finish(self) -> None:
        """Fold in a last piece that arrived only in part (agreeing so far)."""
        if self.first_bad < 0 and self.within:
            self.crc = _crc32(self.sent.views[self.index][:self.within], self.crc)
            self.within = 0
