"""``workload.zero_copy``: toad run, compare and sweep through the zero-copy calls
(host/workloads_zc.py), each byte checked, reported as its own row."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from .helpers import REPO, SHORT, run_json, toad
from .test_runs import check_bus, check_counters


def check_zero_copy_run(run: dict, kind: str) -> None:
    assert run["mode"] == "offload" and run["zero_copy"] is True and run["workload"] == kind
    assert run["integrity_ok"] is True and run["bytes"] > 0
    for side in ("send", "recv"):
        figures = run[side]
        assert figures["copy_pct_per_gbps"] == 0          # nothing copied at the boundary
        assert figures["copy_timed_pct_per_gbps"] is None
        assert figures["driver_pct_per_gbps"] == figures["cpu_pct_per_gbps"] > 0
    check_counters(run["counters"], "offload")
    check_bus(run["bus"], "offload")


@pytest.mark.parametrize("kind", ["bulk", "rr", "crr"])
def test_run_moves_and_checks_every_byte_without_a_copy(tmp_path, kind):
    size = ["--set", "workload.chunk_bytes=[65536]"] if kind == "bulk" else \
        ["--set", "workload.sizes=[3000]"]
    doc = run_json(tmp_path, "run", "configs/default.yaml", "--set", "mode=offload",
                   "--set", f"workload.kind={kind}", "--set", "workload.zero_copy=true",
                   *size, *SHORT)
    (run,) = doc["runs"]
    check_zero_copy_run(run, kind)
    if kind == "bulk":
        assert doc["details"][0]["send"]["fill_s"] > 0     # the writes, left out


def test_compare_shows_the_zero_copy_row_beside_the_copying_one(tmp_path):
    out = tmp_path / "out.json"
    done = toad("compare", "configs/default.yaml", "--modes", "offload", "--set",
                "workload.zero_copy=true", "--set", "workload.chunk_bytes=[65536]",
                "--json", str(out), *SHORT, timeout=240)
    assert done.returncode == 0, done.stderr
    assert "offload (bulk)" in done.stdout and "offload, zero-copy (bulk)" in done.stdout
    assert "offload, zero-copy vs offload at 64 KB" in done.stdout
    runs = json.loads(out.read_text())["runs"]
    assert [r["zero_copy"] for r in runs] == [False, True]
    assert runs[0]["send"]["copy_pct_per_gbps"] > 0
    check_zero_copy_run(runs[1], "bulk")


def test_sweep_over_zero_copy_has_a_row_each(tmp_path):
    done = toad("sweep", "configs/default.yaml", "--param", "workload.zero_copy=false,true",
                "--set", "mode=offload", "--set", "workload.chunk_bytes=[65536]", *SHORT,
                timeout=240)
    assert done.returncode == 0, done.stderr
    rows = [line.split()[:4] for line in done.stdout.splitlines()[3:5]]   # after the header
    assert rows == [["False", "offload", "64", "KB"],
                    ["True", "offload,", "zero-copy", "64"]], done.stdout


def test_a_damaged_stream_fails_the_zero_copy_run(tmp_path):
    out = tmp_path / "out.json"
    env = dict(os.environ, TOAD_TEST_FLIP_AT="100000")
    done = subprocess.run([sys.executable, "-m", "toad", "run", "configs/default.yaml",
                           "--set", "mode=offload", "--set", "workload.zero_copy=true",
                           "--set", "workload.chunk_bytes=[65536]", "--json", str(out),
                           *SHORT], check=False, cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert "integrity check failed" in lines[-1] and "at stream offset 100000" in lines[-1]
    assert not out.exists()


def test_zero_copy_needs_offload_mode():
    done = toad("run", "configs/default.yaml", "--set", "mode=kernel", "--set",
                "workload.zero_copy=true", *SHORT)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1].startswith(
        "toad: error: workload.zero_copy: only offloaded sockets have zero-copy calls")
