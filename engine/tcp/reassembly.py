"""The out-of-order queue (RFC 9293 3.10.7.4 seventh step; BSD tcp_reass).

Segments that arrive above RCV.NXT are copied here (the wire's buffer will be
reused) and merged into disjoint, sorted blocks. When RCV.NXT reaches the first
block, ``pop_ready`` hands its bytes to the receive buffer. A FIN received out of
order is remembered by sequence number and delivered when the data before it is.
"""
from __future__ import annotations

from .seq import seq_diff


class Reassembly:
    __slots__ = ("blocks", "fin_seq", "nbytes")

    def __init__(self):
        self.blocks: list[list] = []             # [seq, bytearray], sorted, disjoint
        self.fin_seq: int | None = None
        self.nbytes = 0

    def __bool__(self) -> bool:
        return bool(self.blocks) or self.fin_seq is not None

    def insert(self, seq: int, data, rcv_nxt: int) -> int:
        """Store ``data`` at ``seq`` (which is above rcv_nxt); returns new bytes stored."""
        lo = seq_diff(seq, rcv_nxt)
        if lo < 0:                                # caller trims, but stay safe
            data = data[-lo:]
            seq, lo = rcv_nxt, 0
        hi = lo + len(data)
        if hi <= lo:
            return 0
        grown = self._extend_in_place(lo, hi, data, rcv_nxt)
        if grown is not None:
            return grown
        merged_lo, merged = lo, bytearray(data)
        kept = []
        for block in self.blocks:
            b_lo = seq_diff(block[0], rcv_nxt)
            b_hi = b_lo + len(block[1])
            if b_hi < merged_lo or b_lo > merged_lo + len(merged):
                kept.append(block)
                continue
            # Overlapping or adjacent: the union, old bytes kept where both exist.
            new_lo = min(b_lo, merged_lo)
            new_hi = max(b_hi, merged_lo + len(merged))
            union = bytearray(new_hi - new_lo)
            union[merged_lo - new_lo:merged_lo - new_lo + len(merged)] = merged
            union[b_lo - new_lo:b_hi - new_lo] = block[1]
            merged_lo, merged = new_lo, union
        kept.append([(rcv_nxt + merged_lo) & 0xFFFFFFFF, merged])
        kept.sort(key=lambda b: seq_diff(b[0], rcv_nxt))
        before = self.nbytes
        self.blocks = kept
        self.nbytes = sum(len(b[1]) for b in kept)
        return self.nbytes - before

    def _extend_in_place(self, lo: int, hi: int, data, rcv_nxt: int) -> int | None:
        """The common case after a loss: the segment continues a block and stops
        before the next one. Appending avoids rebuilding (and recopying) the block.
        Returns the new bytes stored, or None when the general merge is needed."""
        blocks = self.blocks
        for i, block in enumerate(blocks):
            b_lo = seq_diff(block[0], rcv_nxt)
            b_hi = b_lo + len(block[1])
            if lo > b_hi:
                continue
            if lo < b_lo:
                return None
            if hi <= b_hi:
                return 0                              # a duplicate of held bytes
            if i + 1 < len(blocks) and hi >= seq_diff(blocks[i + 1][0], rcv_nxt):
                return None
            block[1] += memoryview(data)[b_hi - lo:]
            self.nbytes += hi - b_hi
            return hi - b_hi
        return None

    def pop_ready(self, rcv_nxt: int) -> memoryview | None:
        """Remove and return the bytes that start at rcv_nxt, if the first block does."""
        while self.blocks:
            seq, data = self.blocks[0]
            off = seq_diff(rcv_nxt, seq)
            if off < 0:
                return None
            del self.blocks[0]
            self.nbytes -= len(data)
            if off < len(data):
                return memoryview(data)[off:]
        return None

    def push_back(self, seq: int, data) -> None:
        """Return bytes the receive buffer did not accept to the front of the queue."""
        self.blocks.insert(0, [seq, bytearray(data)])
        self.nbytes += len(data)

    def ranges(self) -> list[tuple[int, int]]:
        return [(s, (s + len(d)) & 0xFFFFFFFF) for s, d in self.blocks]

    def drop_all(self) -> None:
        self.blocks.clear()
        self.nbytes = 0
        self.fin_seq = None
