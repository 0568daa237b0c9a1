"""A bulk receiver fed by iperf 2 (host/iperf_peer.py): it finds where iperf's own
header ends and checks every byte after it; a damaged or unrecognised stream fails."""
import zlib

import pytest

from host.integrity import SendPattern
from host.workloads import Plan, bulk_recv
from toad.experiment.figures import STREAM_HEADER_MAX, check_integrity
from toad.experiment.launcher import RunFailed

CHUNK = 8192


class Replay:
    """A socket that returns ``data`` in reads of at most ``step`` bytes, then EOF."""

    def __init__(self, data: bytes, step: int) -> None:
        self.data, self.at, self.step = data, 0, step

    def recv_into(self, view, nbytes: int = 0) -> int:
        n = min(len(view), nbytes or len(view), self.step, len(self.data) - self.at)
        view[:n] = self.data[self.at:self.at + n]
        self.at += n
        return n


def stream(chunks: int) -> bytes:
    pattern = SendPattern(CHUNK, 1)
    return b"".join(bytes(pattern.views[i % len(pattern.views)]) for i in range(chunks))


def receive(data: bytes, step: int = 5000) -> dict:
    plan = Plan(chunk=CHUNK, size=0, warmup_s=0.0, duration_s=1.0, host_cpus=(0,))
    return bulk_recv(Replay(data, step), plan, header_max=STREAM_HEADER_MAX)


@pytest.mark.parametrize("step", [7, 5000, 70000])
def test_the_stream_after_iperfs_header_is_checked_whole(step):
    header, payload = bytes(range(60)), stream(70)
    result = receive(header + payload, step)
    assert result["stream_header_bytes"] == 60
    assert result["total_bytes"] == len(header) + len(payload)
    assert result["first_bad_offset"] == -1
    assert result["crc_recv"] == zlib.crc32(payload)
    check_integrity("bulk", {"crc_sent": zlib.crc32(payload), "total_bytes": 60 + len(payload)},
                    result)


def test_a_damaged_byte_after_the_header_fails_the_run():
    payload = bytearray(stream(20))
    payload[100_000] ^= 1
    result = receive(bytes(60) + bytes(payload))
    assert result["first_bad_offset"] == 100_000
    with pytest.raises(RunFailed, match="stream offset 100000"):
        check_integrity("bulk", {"crc_sent": zlib.crc32(stream(20)),
                                 "total_bytes": 60 + len(payload)}, result)


def test_a_stream_that_does_not_start_in_time_fails_the_run():
    result = receive(bytes(STREAM_HEADER_MAX + 1) + stream(4))
    assert result["stream_header_bytes"] == -1
    with pytest.raises(RunFailed, match=f"did not start within the first {STREAM_HEADER_MAX}"):
        check_integrity("bulk", {"crc_sent": zlib.crc32(stream(4)), "total_bytes": 0}, result)
