"""``toad run --pcap``: a clean run's capture shows each frame once, as it crossed the
wire, and tshark's expert analysis flags no retransmission or duplicate ACK in it."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from .helpers import SHORT, module_exists, toad

needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
# a capped wire keeps the capture small (a few MB in a short run)
SMALL = ["--set", "workload.chunk_bytes=[65536]", "--set", "nic.mtu=9000",
         "--set", "nic.wire.bandwidth_gbps=0.2"]


def shark(path, *args: str) -> str:
    done = subprocess.run(["tshark", "-n", "-r", str(path), *args],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


@needs_tshark
@pytest.mark.skipif(not module_exists("host.sockets"), reason="offload mode not built")
def test_a_clean_offload_capture_has_no_spurious_retransmission(tmp_path):
    path = tmp_path / "run.pcap"
    done = toad("run", "configs/default.yaml", "--set", "mode=offload", *SMALL, *SHORT,
                "--pcap", str(path))
    assert done.returncode == 0, done.stderr
    assert f"pcap: {path}" in done.stdout
    data = shark(path, "-Y", "tcp.len > 0").splitlines()
    assert len(data) > 100                                 # the transfer is in it
    flagged = shark(path, "-Y", "tcp.analysis.retransmission || tcp.analysis.duplicate_ack"
                    " || tcp.analysis.spurious_retransmission || tcp.analysis.lost_segment")
    assert flagged.strip() == ""
    expert = shark(path, "-q", "-z", "expert")
    assert "retransmission" not in expert.lower() and "duplicate ack" not in expert.lower()
    # one connection: the two ends share the engine's address, their ports differ
    handshake = shark(path, "-Y", "tcp.flags.syn == 1", "-T", "fields",
                      "-e", "tcp.srcport", "-e", "tcp.dstport").split()
    assert len(handshake) == 4 and handshake[0] == handshake[3] != handshake[1]


@needs_tshark
@pytest.mark.skipif(not module_exists("host.inhost"), reason="inhost mode not built")
def test_inhost_writes_one_capture_per_host(tmp_path):
    path = tmp_path / "run.pcap"
    done = toad("run", "configs/default.yaml", "--set", "mode=inhost", *SMALL, *SHORT,
                "--pcap", str(path))
    assert done.returncode == 0, done.stderr
    side_b = tmp_path / "run-b.pcap"
    for capture in (path, side_b):
        assert f"pcap: {capture}" in done.stdout
        assert shark(capture, "-Y", "tcp.analysis.retransmission || "
                                    "tcp.analysis.duplicate_ack").strip() == ""
        assert len(shark(capture, "-Y", "tcp.len > 0").splitlines()) > 100


def test_several_runs_get_a_capture_each(tmp_path):
    path = tmp_path / "run.pcap"
    done = toad("run", "configs/default.yaml", "--set", "mode=offload",
                "--set", "workload.chunk_bytes=[65536,8192]", "--set", "nic.mtu=9000",
                "--set", "nic.wire.bandwidth_gbps=0.1", *SHORT, "--pcap", str(path))
    assert done.returncode == 0, done.stderr
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == ["run-offload-64KB.pcap", "run-offload-8KB.pcap"]
