"""Selective acknowledgements (RFC 2018), both sides.

``Scoreboard`` is the sender's record of what the peer has SACKed above SND.UNA,
used by loss recovery (RFC 6675) to retransmit only the holes. ``ReceiverBlocks``
chooses the blocks a receiver reports: the block holding the most recently
received segment first, then the other recent ones (RFC 2018 section 4).
"""
from __future__ import annotations

from .seq import seq_diff, seq_ge, seq_le, seq_lt


class Scoreboard:
    """Disjoint SACKed ranges [left, right) above SND.UNA, sorted by sequence."""

    __slots__ = ("blocks", "sacked_bytes")

    def __init__(self):
        self.blocks: list[list[int]] = []
        self.sacked_bytes = 0

    def __bool__(self) -> bool:
        return bool(self.blocks)

    def clear(self) -> None:
        self.blocks.clear()
        self.sacked_bytes = 0

    def update(self, sack_blocks, snd_una: int, snd_max: int) -> bool:
        """Merge the blocks of one ACK; returns True when something new was SACKed."""
        before = self.sacked_bytes
        for left, right in sack_blocks:
            # RFC 2018: ignore blocks that are not inside (SND.UNA, SND.MAX].
            if not (seq_lt(left, right) and seq_ge(left, snd_una) and seq_le(right, snd_max)):
                continue
            self._insert(left, right, snd_una)
        self._recount()
        return self.sacked_bytes > before

    def _insert(self, left: int, right: int, base: int) -> None:
        lo, hi = seq_diff(left, base), seq_diff(right, base)
        kept = []
        for block in self.blocks:
            b_lo, b_hi = seq_diff(block[0], base), seq_diff(block[1], base)
            if b_hi < lo or b_lo > hi:
                kept.append(block)
            else:                                    # overlapping or adjacent: merge
                if b_lo < lo:
                    lo, left = b_lo, block[0]
                if b_hi > hi:
                    hi, right = b_hi, block[1]
        kept.append([left, right])
        kept.sort(key=lambda b: seq_diff(b[0], base))
        self.blocks = kept

    def _recount(self) -> None:
        self.sacked_bytes = sum(seq_diff(r, l) for l, r in self.blocks)

    def prune(self, snd_una: int) -> None:
        """Forget what the cumulative ACK now covers, and a block it lands inside:
        a peer that still held the rest of that block would have acknowledged it, so
        it dropped (reneged on) at least SND.UNA's bytes. Kept as [SND.UNA, right),
        the block would say the first unacknowledged byte is held."""
        if not self.blocks:
            return
        kept = []
        for left, right in self.blocks:
            if seq_le(right, snd_una) or seq_lt(left, snd_una):
                continue
            kept.append([left, right])
        self.blocks = kept
        self._recount()

    def highest(self) -> int | None:
        """Right edge of the highest SACKed block."""
        return self.blocks[-1][1] if self.blocks else None

    def next_hole(self, start: int, snd_una: int) -> tuple[int, int] | None:
        """First un-SACKed range at or above ``start`` and below the highest SACK."""
        if not self.blocks:
            return None
        if seq_lt(start, snd_una):
            start = snd_una
        for left, right in self.blocks:
            if seq_lt(start, left):
                return start, left
            if seq_lt(start, right):
                start = right
        return None

    def hole_bytes_from(self, start: int, snd_una: int) -> int:
        """Un-SACKed bytes at or above ``start`` and below the highest SACK."""
        total = 0
        hole = self.next_hole(start, snd_una)
        while hole is not None:
            total += seq_diff(hole[1], hole[0])
            hole = self.next_hole(hole[1], snd_una)
        return total


class ReceiverBlocks:
    """Which out-of-order ranges to report, most recent first."""

    __slots__ = ("recent",)

    def __init__(self):
        self.recent: list[int] = []              # sequence numbers of recent arrivals

    def note_arrival(self, seq: int) -> None:
        if seq in self.recent:
            self.recent.remove(seq)
        self.recent.insert(0, seq)
        del self.recent[8:]

    def blocks(self, ranges: list[tuple[int, int]], limit: int) -> tuple:
        """Up to ``limit`` blocks from the reassembly queue's ``ranges``."""
        if not ranges:
            self.recent.clear()
            return ()
        chosen: list[tuple[int, int]] = []
        for seq in self.recent:
            for left, right in ranges:
                if seq_ge(seq, left) and seq_lt(seq, right) and (left, right) not in chosen:
                    chosen.append((left, right))
                    break
        for r in reversed(ranges):
            if len(chosen) >= limit:
                break
            if r not in chosen:
                chosen.append(r)
        return tuple(chosen[:limit])


def in_block(seq: int, left: int, right: int) -> bool:
    return seq_ge(seq, left) and seq_lt(seq, right)

