"""`toad bench tcp` runs end to end (short) and writes its documented JSON. No figure
is asserted: performance is the benchmark's output, not a test condition."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import requires_tap

pytestmark = [pytest.mark.interop, requires_tap]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_bench_tcp_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, "-m", "host.bench", "tcp", "--seconds", "0.3",
                           "--cases", "plain", "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["benchmark"] == "tcp"
    assert [(r["case"], r["direction"]) for r in result["runs"]] == [("plain", "send"),
                                                                     ("plain", "recv")]
    for run in result["runs"]:
        assert run["mtu"] == 1500 and run["offloads"] == []
        assert run["bytes"] > 0 and run["goodput_gbps"] > 0 and run["nic_gso_frames"] == 0
    assert "Gb/s" in done.stdout


def test_bench_tcp_rejects_unknown_case():
    done = subprocess.run([sys.executable, "-m", "host.bench", "tcp", "--cases", "warp"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "unknown case 'warp'" in done.stderr
