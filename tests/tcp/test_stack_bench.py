"""`toad bench stack` runs end to end on a small size and reports intact data (no
figures are asserted: performance belongs to the benchmark's JSON)."""
from __future__ import annotations

import json
import subprocess
import sys

from host.bench_stack import bulk, frame_replay, rr_costs


def test_bulk_rows_are_intact_in_both_topologies():
    for topology in ("self", "pair"):
        row = bulk(topology, 1500, "integrated", 300_000, write_size=50_000)
        assert row["intact"] and row["bytes"] == 300_000 and row["seconds"] > 0


def test_cli_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    run = subprocess.run([sys.executable, "-m", "host.bench", "stack", "--mb", "1",
                          "--modes", "off", "--json", str(out)],
                         capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr
    result = json.loads(out.read_text())
    assert set(result["checksum_us"]) == {"sum", "copy_sum", "memcpy"}
    assert [row["topology"] for row in result["bulk"]] == ["self", "pair", "pair"]
    assert all(row["intact"] for row in result["bulk"])


def test_cli_rejects_an_unknown_mode():
    run = subprocess.run([sys.executable, "-m", "host.bench", "stack", "--modes", "fast"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode != 0 and "--modes: 'fast'" in run.stderr


def test_frame_replay_and_rr_costs_run_and_count_what_they_time():
    tx, rx, ack = frame_replay("software", segments=40)      # raises unless all acked
    assert tx > 0 and rx > 0 and ack > 0
    row = rr_costs(40.0, legs=20)
    assert row["frames_per_leg"] == 1.0                      # the ACK rides on the reply
    assert rr_costs(0.0, legs=20)["frames_per_leg"] == 2.0   # data + immediate ACK


def test_the_compiled_fast_path_is_timed_where_it_takes_the_frames():
    tx, rx, ack = frame_replay("software", "compiled", segments=40)
    assert tx > 0 and rx > 0 and ack > 0
    rows = [rr_costs(ms, legs=20, fast_path="compiled") for ms in (40.0, 0.0)]
    assert [row["frames_per_leg"] for row in rows] == [1.0, 2.0]   # as Python's
    row = bulk("pair", 1500, "software", 300_000, write_size=50_000, fast_path="compiled")
    assert row["intact"] and row["fast_path"] == "compiled"
