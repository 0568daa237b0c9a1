"""The rr/crr latency summary (host/workloads.py Latencies) and its plot."""
from __future__ import annotations

import pytest

from host.workloads import CDF_PERCENTS, Latencies
from toad.experiment import plots


def test_percentiles_and_cdf_of_known_samples():
    lat = Latencies()
    for us in range(1, 1001):               # 1..1000 us, in nanoseconds
        lat.add(us * 1000)
    out = lat.as_json()
    assert out["count"] == 1000
    assert out["min"] == 1.0 and out["max"] == 1000.0 and out["mean"] == 500.5
    assert out["p50"] == pytest.approx(500.5) and out["p99"] == pytest.approx(990.01)
    assert out["p90"] == pytest.approx(900.1) and out["p999"] == pytest.approx(999.001)
    assert [p for p, _ in out["cdf"]] == list(CDF_PERCENTS)
    assert dict(out["cdf"])[50] == out["p50"]


def test_one_slow_sample_shows_in_the_tail_not_the_median():
    lat = Latencies()
    for _ in range(999):
        lat.add(20_000)
    lat.add(5_000_000)
    out = lat.as_json()
    assert out["p50"] == out["p99"] == 20.0
    assert out["max"] == 5000.0 and out["p999"] > 20.0


def test_no_samples():
    out = Latencies().as_json()
    assert out["count"] == 0 and out["p50"] is None and out["cdf"] == []


def test_latency_plot_draws_bars_and_cdf(tmp_path):
    lat = Latencies()
    for ns in (10_000, 12_000, 15_000, 40_000):
        lat.add(ns)
    summary = {k: v for k, v in lat.as_json().items() if k != "count"}
    runs = [{"mode": mode, "workload": "rr", "chunk_bytes": 64, "latency_us": summary}
            for mode in ("kernel", "offload")]
    path = tmp_path / "lat.png"
    plots.compare_plot(runs, str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
