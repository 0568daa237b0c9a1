"""workload.repeat: one summary per point (medians, one run's side figures) and the
spread the tables print."""
from toad.experiment import report
from toad.experiment.repeats import summarize


def bulk_run(mode, chunk, send, recv, goodput, copy=0.5):
    side = lambda total: {"cpu_s": 1.0, "cpu_pct_per_gbps": total,
                          "copy_pct_per_gbps": copy, "driver_pct_per_gbps": total - copy}
    return {"mode": mode, "workload": "bulk", "chunk_bytes": chunk, "mtu": 65535,
            "duration_s": 1.0, "bytes": 1000, "goodput_gbps": goodput, "integrity_ok": True,
            "send": side(send), "recv": side(recv), "host_cpus_busy_pct_per_gbps": goodput,
            "engine": {"cpu_pct": None, "busy_pct": None}, "total_cpu_pct_per_gbps": send + recv}


def test_points_summarised_by_median_with_spread():
    runs = [bulk_run("kernel", 8192, 3.0, 9.0, 4.0), bulk_run("kernel", 131072, 1.0, 1.0, 7.0),
            bulk_run("kernel", 8192, 5.0, 1.0, 2.0), bulk_run("kernel", 131072, 2.0, 2.0, 6.0),
            bulk_run("kernel", 8192, 4.0, 2.0, 3.0), bulk_run("kernel", 131072, 3.0, 3.0, 5.0)]
    details = [{"repeat": i // 2} for i in range(6)]
    out, chosen = summarize(runs, details)
    assert [r["chunk_bytes"] for r in out] == [8192, 131072]
    small = out[0]
    assert small["send"]["cpu_pct_per_gbps"] == 4.0 and small["recv"]["cpu_pct_per_gbps"] == 2.0
    # each side is one run's figures, so copy + driver = total still holds
    assert small["send"]["copy_pct_per_gbps"] + small["send"]["driver_pct_per_gbps"] == 4.0
    assert small["goodput_gbps"] == 3.0 and small["bytes"] == 1000
    assert small["spread"] == {"runs": 3, "send": (3.0, 5.0), "recv": (1.0, 9.0),
                               "goodput_gbps": (2.0, 4.0)}
    # details stand for the run whose summed totals are the median (6.0: the third)
    assert chosen[0] is details[4]


def test_single_runs_come_back_unchanged_and_json_has_no_summary():
    runs = [bulk_run("kernel", 8192, 3.0, 9.0, 4.0)]
    out, _ = summarize(runs, [{}])
    assert out[0] is runs[0] and "spread" not in out[0]
    from toad.config import load
    assert "summary" not in report.document(load(None), runs, [{}])


def test_a_point_is_also_its_mode_and_tap_side():
    runs = [bulk_run("kernel", 8192, 3.0, 9.0, 4.0), bulk_run("offload", 8192, 1.0, 1.0, 4.0),
            bulk_run("kernel", 8192, 3.0, 9.0, 4.0), bulk_run("kernel", 8192, 3.0, 9.0, 4.0)]
    details = [{"tap": {"toad_side": "send"}}, {}, {"tap": {"toad_side": "recv"}},
               {"tap": {"toad_side": "send"}}]
    out, _ = summarize(runs, details)
    assert [r.get("spread", {}).get("runs") for r in out] == [2, None, None]


def test_tables_show_the_spread_and_the_note():
    runs = [bulk_run("kernel", 8192, 3.0, 9.0, 4.0), bulk_run("kernel", 8192, 5.0, 1.0, 2.0)]
    text = report.render(runs, [{"repeat": 0}, {"repeat": 1}])
    assert "min - max over runs" in text and "3.00 - 5.00 (2)" in text
    assert "median of 2 runs" in text
    rr = [dict(bulk_run("kernel", 64, 3.0, 3.0, 0.1), workload="rr",
               latency_us={"p50": p50, "p99": 2 * p50}) for p50 in (30.0, 10.0, 20.0)]
    text = report.render(rr, [{"repeat": i} for i in range(3)])
    assert "p50 min - max (runs)" in text and "10.0 - 30.0 (3)" in text
    assert " 20.0 " in text   # the median p50


def test_compare_plot_draws_the_spread(tmp_path):
    from toad.experiment import plots
    runs = [bulk_run("kernel", 8192, 3.0, 9.0, 4.0), bulk_run("kernel", 8192, 5.0, 1.0, 2.0)]
    summaries, _ = summarize(runs, [{"repeat": 0}, {"repeat": 1}])
    calls = []
    plots.whiskers(type("Ax", (), {"errorbar": lambda self, *a, **k: calls.append((a, k))})(),
                   [3.0, 1.0], [summaries[0]["spread"]["send"], summaries[0]["spread"]["recv"]])
    ((xs, ys), kwargs), = calls
    assert xs == [0, 1] and ys == [3.0, 1.0]
    assert kwargs["yerr"] == [[0.0, 0.0], [2.0, 8.0]]
    plots.compare_plot(summaries, str(tmp_path / "p.png"))
    assert (tmp_path / "p.png").stat().st_size > 1000
