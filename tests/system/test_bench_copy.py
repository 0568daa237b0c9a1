"""toad bench copy: the JSON it writes and its bad-input errors."""
from __future__ import annotations

import json
import subprocess
import sys

from .helpers import REPO


def bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "toad", "bench", "copy", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_three_ways_per_chunk_with_consistent_units(tmp_path):
    out = tmp_path / "copy.json"
    done = bench("--chunk", "65536", "--chunk", "4096", "--copies", "50", "--gap-us", "5",
                 "--json", str(out))
    assert done.returncode == 0, done.stderr
    doc = json.loads(out.read_text())
    assert doc["gap_us"] == 5 and [c["chunk_bytes"] for c in doc["chunks"]] == [65536, 4096]
    for row in doc["chunks"]:
        for way in ("back_to_back", "after_spin", "after_sleep", "after_spin_dst_read"):
            f = row[way]
            assert f["ns_per_kb"] > 0
            # % per Gb/s = 100 * ns per byte / 8 (rounding aside)
            assert abs(f["pct_per_gbps"] - 100 * f["ns_per_kb"] / 1024 / 8) < 2e-3
    assert "back to back" in done.stdout


def test_a_chunk_larger_than_half_the_region_is_refused():
    done = bench("--chunk", str(4 << 20))
    assert done.returncode != 0
    assert "--chunk 4194304: must be 1..2097152" in done.stderr
