"""The workers' integrity checks: exact CRCs, the bulk receiver's byte comparison,
sampled CPU time charged per byte."""
import random
import zlib

import pytest

from host.integrity import (SAMPLE_EVERY, SEND_SLICES, ExpectedStream, Integrity, KnownPieces,
                            SendPattern, clock_overhead)


class Clock:
    """A fake clock: each reading advances by ``step`` (the clock's own cost);
    ``work(k, seconds)`` adds time before the k-th reading from now."""

    def __init__(self, step: float) -> None:
        self.now, self.step, self.jumps = 0.0, step, {}

    def work(self, kth: int, seconds: float) -> None:
        self.jumps[kth] = seconds

    def __call__(self) -> float:
        self.jumps = {k - 1: v for k, v in self.jumps.items()}
        self.now += self.step + self.jumps.pop(0, 0.0)
        return self.now


def test_clock_overhead_is_one_reading():
    assert clock_overhead(Clock(0.5)) == 0.5


def test_crc_is_exact_and_sampled_cost_is_charged_per_byte():
    clock = Clock(0.25)
    check = Integrity(clock)
    data = bytes(range(256)) * 40
    for i in range(3 * SAMPLE_EVERY):
        check.update(data[: 1000 + i])
    expected = 0
    for i in range(3 * SAMPLE_EVERY):
        expected = zlib.crc32(data[: 1000 + i], expected)
    assert check.crc == expected
    assert check.nbytes == sum(1000 + i for i in range(3 * SAMPLE_EVERY))
    # the fake clock's readings cost exactly its overhead: the checksum cost nothing
    assert check.timed_s == 0.0 and check.cpu_s == 0.0
    assert check.timed_bytes == 1000 + 1016 + 1032     # calls 1, 17 and 33 were timed


def test_cpu_time_extrapolates_the_timed_calls():
    clock = Clock(1e-6)
    check = Integrity(clock)

    clock.work(2, 0.002)             # the first (timed) call took 2 ms of CPU
    for _ in range(SAMPLE_EVERY):
        check.update(b"x" * 100)
    assert abs(check.timed_s - 0.002) < 1e-12
    assert abs(check.cpu_s - 0.002 * SAMPLE_EVERY) < 1e-12


def test_empty_checker_costs_nothing():
    assert Integrity(Clock(0.1)).cpu_s == 0.0


@pytest.mark.parametrize("length", [1, 8191, 131072])
def test_known_pieces_extend_the_crc_as_a_pass_over_them_would(length):
    rng = random.Random(length)
    pieces = [rng.randbytes(length) for _ in range(5)]
    known = KnownPieces(pieces)
    by_table, by_pass = Integrity(), Integrity()
    crc = 0
    for index in [rng.randrange(5) for _ in range(40)]:
        by_table.update_known(known, index)
        by_pass.update(memoryview(pieces[index]))
        crc = zlib.crc32(pieces[index], crc)
    assert by_table.crc == by_pass.crc == crc
    assert by_table.nbytes == by_pass.nbytes == 40 * length
    with pytest.raises(ValueError, match="one length"):
        KnownPieces([b"ab", b"abc"])


def stream_of(sent: SendPattern, nbytes: int) -> bytes:
    """The bytes bulk_send writes: the pattern's slices in turn."""
    pieces = -(-nbytes // sent.chunk)
    return b"".join(bytes(sent.views[k % SEND_SLICES]) for k in range(pieces))[:nbytes]


def feed(check: ExpectedStream, buffer: bytearray, stream: bytes, reads: list) -> None:
    """Deliver ``stream`` in reads of the given sizes, as recv_into would."""
    at = 0
    for n in reads:
        buffer[:n] = stream[at:at + n]
        check.received(n)
        at += n


@pytest.mark.parametrize("chunk", [1000, 8192])
def test_expected_stream_keeps_the_exact_crc_across_odd_reads(chunk):
    sent = SendPattern(chunk, seed=3)
    rng = random.Random(chunk)
    reads = [chunk] * 5 + [rng.randrange(1, chunk + 1) for _ in range(150)]
    stream = stream_of(sent, sum(reads))
    buffer = bytearray(chunk)
    check = ExpectedStream(sent, buffer)
    feed(check, buffer, stream, reads)
    check.finish()                                 # the last piece arrived in part
    assert check.first_bad == -1
    assert check.crc == zlib.crc32(stream)
    assert check.nbytes == len(stream) and check.offset == len(stream)


@pytest.mark.parametrize("bad", [0, 699, 999, 1000, 4321, 7997])
def test_expected_stream_finds_the_first_differing_byte(bad):
    chunk = 1000
    sent = SendPattern(chunk, seed=5)
    reads = [700, 1000, 300, 1000, 1000, 1000, 1000, 1000, 1000]
    stream = bytearray(stream_of(sent, sum(reads)))
    stream[bad] ^= 0x40
    stream[bad + 2] ^= 0x01                        # a later difference is not the first
    buffer = bytearray(chunk)
    check = ExpectedStream(sent, buffer)
    feed(check, buffer, bytes(stream), reads)
    check.finish()
    assert check.first_bad == bad
    assert check.crc == zlib.crc32(stream)         # still the CRC of what arrived
    assert check.crc != zlib.crc32(stream_of(sent, sum(reads)))


def test_expected_stream_is_what_bulk_send_writes():
    """The sender's slices are the ones the receiver expects, in the same order."""
    sent = SendPattern(512, seed=1)
    assert len(sent.views) == SEND_SLICES and all(len(v) == 512 for v in sent.views)
    assert SendPattern(512, seed=1).data == sent.data != SendPattern(512, seed=2).data
