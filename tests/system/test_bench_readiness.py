"""toad bench readiness: the JSON it writes (a short run: shapes and the counts that
do not depend on timing), and its bad-input error."""
from __future__ import annotations

import json
import subprocess
import sys

from .helpers import REPO


def bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "toad", "bench", "readiness", *args],
                          cwd=REPO, capture_output=True, text=True, timeout=240)


def test_each_part_reports_per_round_trip(tmp_path):
    out = tmp_path / "readiness.json"
    done = bench("--round-trips", "200", "--warmup", "20", "--transitions", "100",
                 "--json", str(out))
    assert done.returncode == 0, done.stderr
    doc = json.loads(out.read_text())
    assert doc["bench"] == "readiness" and doc["config"].endswith("configs/latency.yaml")
    assert doc["transitions"]["readable_ns"] > 0 and doc["transitions"]["writable_ns"] > 0
    rr = {row["variant"]: row for row in doc["rr"]}
    assert list(rr) == ["plain", "socket_blocking", "socket_epoll"]
    for row in rr.values():
        assert row["round_trips"] == 200 and 0 < row["p50_us"] <= row["p99_us"]
        assert row["client_cpu_us"] > 0
    # no descriptor without a socket.socket; raised and lowered once per answer with one
    assert rr["plain"]["transitions"] == 0 and rr["plain"]["pump_wakeups"] == 0
    assert rr["socket_blocking"]["transitions"] == 2 and rr["socket_epoll"]["transitions"] == 2
    assert rr["socket_epoll"]["pump_wakeups"] > 0
    assert [row["mode"] for row in doc["asyncio"]] == ["offload", "kernel"]
    for row in doc["asyncio"]:
        assert row["round_trips"] == 200 and row["round_trips_per_s"] > 0
        assert row["client_cpu_us"] > 0 and row["server_cpu_us"] > 0
    assert "64 B rr through asyncio streams" in done.stdout


def test_zero_round_trips_is_refused():
    done = bench("--round-trips", "0")
    assert done.returncode != 0
    assert "--round-trips and --transitions must be >= 1" in done.stderr
