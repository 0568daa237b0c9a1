"""The copy timed in the run (copy_timed_pct_per_gbps) in the tables and the plot."""
from toad.experiment import plots, report


def run(mode, timed):
    side = {"cpu_s": 1.0, "cpu_pct_per_gbps": 2.0, "copy_pct_per_gbps": 0.5,
            "driver_pct_per_gbps": 1.5, "copy_timed_pct_per_gbps": timed}
    return {"mode": mode, "workload": "bulk", "chunk_bytes": 131072, "mtu": 65535,
            "duration_s": 1.0, "bytes": 1000, "goodput_gbps": 5.0, "integrity_ok": True,
            "send": dict(side), "recv": dict(side), "host_cpus_busy_pct_per_gbps": 4.0,
            "engine": {"cpu_pct": None, "busy_pct": None}, "total_cpu_pct_per_gbps": 4.0}


def test_bulk_table_has_the_timed_row_only_where_copies_were_timed():
    assert "the same, timed in the run" in report.bulk_table("offload", [run("offload", 1.25)])
    row = next(line for line in report.bulk_table("offload", [run("offload", 1.25)]).splitlines()
               if "timed in the run" in line)
    assert row.split()[-2:] == ["1.25", "1.25"]
    assert "timed in the run" not in report.bulk_table("kernel", [run("kernel", None)])


def test_sweep_table_has_a_timed_column_per_side():
    text = report.sweep_table("nic.mtu", [run("kernel", None), run("offload", 1.25)],
                              [{"sweep": {"value": 1500}}, {"sweep": {"value": 1500}}])
    header = text.splitlines()[1].split()
    assert "timed" in header
    rows = [line.split() for line in text.splitlines()[3:5]]
    # columns: value, mode, "128", "KB", Gb/s, send copy, send timed, ...
    assert rows[0][6] == "-" and rows[1][6] == "1.25"     # send timed: kernel has none


def test_compare_plot_marks_the_timed_copy(tmp_path, monkeypatch):
    marks = []
    original = plots.plt.Axes.scatter
    monkeypatch.setattr(plots.plt.Axes, "scatter",
                        lambda self, x, y, **k: marks.append((list(x), list(y))) or
                        original(self, x, y, **k))
    plots.compare_plot([run("offload", 1.25), run("kernel", None)], str(tmp_path / "p.png"))
    assert marks == [([0, 1], [1.25, 1.25])]           # the kernel's bars carry no mark
