"""The accounting arithmetic and the integrity rule, on fabricated worker results."""
from __future__ import annotations

import pytest

from toad.config import from_dict
from toad.experiment import accounting, figures
from toad.experiment.launcher import RunFailed


def test_percent_per_gbps_is_cpu_seconds_per_gigabit():
    # 1 s of CPU for 1 Gb (125 MB) moved: 100% of one CPU per Gb/s
    assert accounting.pct_per_gbps(1.0, 125_000_000) == pytest.approx(100.0)
    assert accounting.pct_per_gbps(0.5, 250_000_000) == pytest.approx(25.0)


def test_copy_plus_driver_is_total_and_copy_is_capped():
    f = accounting.side_figures(0.1, 125_000_000, 125_000_000, 0.02 / 125_000_000)
    assert f.copy_pct_per_gbps == pytest.approx(2.0)
    assert f.copy_pct_per_gbps + f.driver_pct_per_gbps == pytest.approx(f.cpu_pct_per_gbps)
    capped = accounting.side_figures(0.01, 125_000_000, 125_000_000, 1e-9)
    assert capped.driver_pct_per_gbps == 0.0
    assert capped.copy_pct_per_gbps == pytest.approx(capped.cpu_pct_per_gbps)


def test_timed_copy_is_reported_beside_the_calibrated_one_and_capped():
    # 125 MB moved and copied; calibrated 2%/Gb/s, timed 3x that: the driver keeps
    # total - calibrated copy, the timed figure stands beside it
    f = accounting.side_figures(0.1, 125_000_000, 125_000_000, 0.02 / 125_000_000,
                                0.06 / 125_000_000)
    assert f.copy_timed_pct_per_gbps == pytest.approx(6.0)
    assert f.copy_pct_per_gbps + f.driver_pct_per_gbps == pytest.approx(10.0)
    assert f.as_json()["copy_timed_pct_per_gbps"] == pytest.approx(6.0)
    capped = accounting.side_figures(0.01, 125_000_000, 125_000_000, 1e-12, 1e-9)
    assert capped.copy_timed_pct_per_gbps == pytest.approx(capped.cpu_pct_per_gbps)
    untimed = accounting.side_figures(0.1, 125_000_000, 125_000_000, 1e-10)
    assert untimed.as_json()["copy_timed_pct_per_gbps"] is None


def test_interpolate_cumulative_samples():
    samples = [(0.0, 0.0), (1.0, 10.0), (2.0, 30.0)]
    assert accounting.interpolate(samples, 0.5) == pytest.approx(5.0)
    assert accounting.interpolate(samples, 1.5) == pytest.approx(20.0)
    assert accounting.interpolate(samples, -1.0) == 0.0
    assert accounting.interpolate(samples, 9.0) == 30.0
    assert accounting.interpolate([], 1.0) is None


def test_read_cpu_times_parses_proc_stat(tmp_path):
    stat = tmp_path / "stat"
    stat.write_text("cpu  10 0 10 100 5 0 0 0 0 0\n"
                    "cpu0 100 2 50 1000 7 3 4 1 0 0\n"
                    "cpu1 1 1 1 1 1 1 1 1 0 0\nintr 5\n")
    busy = {cpu: t.busy for cpu, t in accounting.read_cpu_times([0], path=str(stat)).items()}
    assert list(busy) == [0]
    # user + nice + system + irq + softirq; idle, iowait and steal (the 1) are not busy
    assert busy[0] == pytest.approx((100 + 2 + 50 + 3 + 4) / accounting.CLOCK_TICKS)
    times = accounting.read_cpu_times([0, 1], path=str(stat))
    assert times[0].irq == pytest.approx(7 / accounting.CLOCK_TICKS)
    assert times[0].steal == pytest.approx(1 / accounting.CLOCK_TICKS)
    assert times[1].busy == pytest.approx(5 / accounting.CLOCK_TICKS)


def test_a_stat_line_without_steal_reads_as_none_stolen(tmp_path):
    """Old kernels print four to seven fields: the missing ones are zero."""
    stat = tmp_path / "stat"
    stat.write_text("cpu0 100 0 50 1000\n")
    times = accounting.read_cpu_times([0], path=str(stat))
    assert times[0] == (150 / accounting.CLOCK_TICKS, 0.0, 0.0)


def test_calibrated_copy_cost_is_positive_and_plausible():
    cost = accounting.calibrate_copy(8192, min_bytes=8 << 20)
    assert 0 < cost < 1e-8  # faster than 100 MB/s on any machine that runs these tests


def worker(role, crc_sent=None, crc_recv=None, nbytes=1_000_000, cpu=0.01):
    return {"role": role, "pid": 1, "affinity": [0], "crc_sent": crc_sent, "crc_recv": crc_recv,
            "total_bytes": nbytes, "bytes_copied": nbytes, "copy_s_per_byte": 1e-10,
            "copy_s_per_byte_range": [1e-10, 1e-10],
            "measured": {"t0": 1.0, "t1": 2.0, "wall_s": 1.0, "cpu_s": cpu, "integrity_s": 0.001,
                         "bytes": nbytes, "host_busy_s": 0.03}}


def test_a_checksum_mismatch_is_a_failure_not_a_figure():
    config = from_dict({"mode": "kernel"})
    with pytest.raises(RunFailed, match="integrity"):
        figures.build_run(config, worker("send", crc_sent=1), worker("recv", crc_recv=2))
    with pytest.raises(RunFailed, match="bytes sent"):
        figures.build_run(config, worker("send", crc_sent=1, nbytes=5),
                          worker("recv", crc_recv=1, nbytes=4))


def test_build_run_has_the_stable_keys_and_excludes_the_checksum():
    config = from_dict({"mode": "kernel"})
    run, details = figures.build_run(config, worker("send", crc_sent=7), worker("recv", crc_recv=7))
    assert set(run) == {"mode", "workload", "chunk_bytes", "mtu", "duration_s", "bytes",
                        "goodput_gbps", "integrity_ok", "send", "recv",
                        "host_cpus_busy_pct_per_gbps", "engine", "total_cpu_pct_per_gbps",
                        "bus"}
    assert run["bus"] == {"model": None, "send": None, "recv": None}   # no bus in kernel mode
    # 0.01 s of CPU minus 0.001 s of checksum, for 8 Mb: 100 * 0.009 / 0.008
    assert run["send"]["cpu_s"] == pytest.approx(0.009)
    assert run["send"]["cpu_pct_per_gbps"] == pytest.approx(112.5)
    assert details["send"]["integrity_s"] == pytest.approx(0.001)


def test_a_slow_run_reports_a_goodput_not_zero():
    # a short crr run can move a few KB in its interval: 1792 B in 1 s is 14.3 kb/s
    config = from_dict({"mode": "kernel"})
    run, _ = figures.build_run(config, worker("send", crc_sent=7, nbytes=1792),
                               worker("recv", crc_recv=7, nbytes=1792))
    assert run["goodput_gbps"] == pytest.approx(1.43e-5, abs=1e-6)


def test_engine_figures_interpolate_cpu_and_busy():
    cpu = [(0.0, 0.0), (2.0, 1.0)]
    busy = [(0.0, {"busy_ns": 0}), (2.0, {"busy_ns": 5e8})]
    engine, pct = figures.engine_figures((0.5, 1.5), cpu, busy, 125_000_000)
    assert engine == {"cpu_pct": 50.0, "busy_pct": 25.0}
    assert pct == pytest.approx(50.0)


def test_steal_time_is_reported_apart_and_warned_of_on_the_engine_cpu():
    """Steal time, sampled on the engine CPU and metered over the host CPUs, goes in
    the details as % of one CPU over the reference interval (1.0 to 2.0 s), never into
    the busy figures; the report shows its range and warns when the engine lost more
    than 5%."""
    from toad.experiment import report

    send, recv = worker("send", crc_sent=7), worker("recv", crc_recv=7)
    recv["measured"]["host_steal_s"] = 0.02           # 2% of one CPU over 1 s
    engine = {"cpu": [(0.0, 0.0), (3.0, 1.0)], "cpu_busy": [(0.0, 0.0), (3.0, 3.0)],
              "cpu_steal": [(0.0, 0.0), (3.0, 0.3)], "busy": []}
    run, details = figures.build_run(from_dict({"mode": "offload"}), send, recv, engine)
    assert details["steal_pct"] == {"host": 2.0, "engine": 10.0}
    assert details["recv"]["host_steal_s"] == 0.02
    assert "steal_pct" not in run                      # the stable run keys are unchanged
    lines = report.steal_notes([details])
    assert "engine CPU 10.0-10.0%, host CPUs 2.0-2.0%" in lines[0]
    assert lines[1].startswith("warning: the hypervisor took more than 5% of the engine")
    # a quiet hypervisor: no line; a worker that did not meter steal: no figure
    engine["cpu_steal"] = [(0.0, 0.0), (3.0, 0.003)]
    del recv["measured"]["host_steal_s"]
    _run, details = figures.build_run(from_dict({"mode": "offload"}), send, recv, engine)
    assert details["steal_pct"] == {"host": None, "engine": 0.1}
    assert report.steal_notes([details]) == []


def test_each_sides_interrupts_come_from_its_own_qp_over_its_interval():
    """The engine's per-QP counter, matched by the worker's pid, interpolated at the
    side's t0 and t1 (1.0 and 2.0 s); another QP's interrupts are not counted; the
    offload table shows them per MB."""
    from toad.experiment import report

    def block(t, mine, other):
        return (t, {"busy_ns": 0, "qps": [{"slot": 0, "host_pid": 1, "interrupts": mine},
                                          {"slot": 1, "host_pid": 99, "interrupts": other}]})

    engine = {"cpu": [(0.0, 0.0), (3.0, 1.0)], "cpu_busy": [],
              "busy": [block(0.0, 0, 0), block(3.0, 300, 9000)]}
    config = from_dict({"mode": "offload"})
    run, details = figures.build_run(config, worker("send", crc_sent=7),
                                     worker("recv", crc_recv=7), engine)
    assert details["recv"]["interrupts"] == {"count": 100, "per_s": 100.0, "per_mb": 100.0}
    assert "interrupts" not in run["recv"]         # the stable run keys are unchanged
    text = report.bulk_table("offload", [run], [details])
    assert "interrupts per MB" in text and "100.000" in text
    # a QP the samples never show (e.g. the Linux side over TAP): no figure
    engine["busy"] = [(t, {"busy_ns": 0, "qps": []}) for t in (0.0, 3.0)]
    _run, details = figures.build_run(config, worker("send", crc_sent=7),
                                      worker("recv", crc_recv=7), engine)
    assert details["recv"]["interrupts"] is None


def bulk(mode, chunk, send_pct, recv_pct):
    return {"mode": mode, "workload": "bulk", "chunk_bytes": chunk,
            "send": {"cpu_pct_per_gbps": send_pct}, "recv": {"cpu_pct_per_gbps": recv_pct}}


def test_improvement_factors_compare_like_with_like():
    from toad.experiment import report
    runs = [bulk("kernel", 8192, 8.0, 12.0), bulk("offload", 8192, 2.0, 3.0)]
    assert report.factors(runs) == "offload vs kernel at 8 KB: sending 4.0x, receiving 4.0x"
    # TAP: each run has one toad side; the Linux side must not enter the factors
    tap = [bulk("inhost", 8192, 10.0, 99.0), bulk("inhost", 8192, 99.0, 20.0),
           bulk("offload", 8192, 5.0, 1.0), bulk("offload", 8192, 1.0, 4.0)]
    sides = [{"tap": {"toad_side": s}} for s in ("send", "recv", "send", "recv")]
    assert report.factors(tap, sides) == "offload vs inhost at 8 KB: sending 2.0x, receiving 5.0x"


class FakeTty:
    def __init__(self):
        self.text = ""

    def isatty(self):
        return True

    def write(self, text):
        self.text += text

    def flush(self):
        pass


def test_progress_line_is_throttled_and_cleared():
    from toad.experiment.progress import Progress
    now = [100.0]
    stream = FakeTty()
    progress = Progress(2, stream=stream, clock=lambda: now[0])
    progress.begin("kernel bulk 8 KB", 3.0)
    now[0] += 0.1
    progress.tick()  # too soon: not redrawn
    assert stream.text.count("\r[") == 1
    now[0] += 0.2
    progress.tick()
    assert stream.text.rstrip().endswith("[1/2] kernel bulk 8 KB  starting")
    now[0] += 0.3
    progress.tick(measuring=True)                 # the workload began: count from here
    now[0] += 0.3
    progress.tick(measuring=True)
    assert stream.text.rstrip().endswith("[1/2] kernel bulk 8 KB  0.3/3.0 s")
    now[0] += 5.0                                 # stopping takes longer: no overshoot
    progress.tick(measuring=True)
    assert stream.text.rstrip().endswith("3.0/3.0 s finishing")
    progress.done()
    assert stream.text.endswith("\r")


class FakePipe(FakeTty):
    def isatty(self):
        return False


def test_progress_off_a_terminal_is_one_line_per_run():
    from toad.experiment.progress import Progress
    now = [10.0]
    stream = FakePipe()
    progress = Progress(2, stream=stream, clock=lambda: now[0])
    progress.begin("offload bulk 128 KB", 2.5)
    now[0] += 1.0
    progress.tick(measuring=True)
    assert stream.text == ""                      # nothing rewritten in place
    now[0] += 3.0
    progress.end("2.35 Gb/s")
    progress.begin("offload bulk 8 KB", 2.5)
    progress.end("1.10 Gb/s")
    progress.done()
    assert stream.text.splitlines() == [
        "[1/2] offload bulk 128 KB: 2.35 Gb/s, 4.0 s in all",
        "[2/2] offload bulk 8 KB: 1.10 Gb/s, 0.0 s in all"]


def test_offload_bus_figures_are_the_measured_intervals():
    """Host counts are the worker's interval deltas; the engine's DMA counts grow over
    the same interval in the QP row of the worker's pid (interpolated)."""
    from toad.experiment.bus import side_bus
    send = worker("send")
    send["pid"] = 7
    send["measured"]["bus"] = {"doorbells": 40, "register_reads": 2, "interrupts": 3,
                               "bus_ns": 80_000}
    row = {"host_pid": 7, "dma_transactions": 0, "dma_bytes": 0, "bus_ns": 0}
    samples = [(0.0, {"qps": [row]}),
               (3.0, {"qps": [dict(row, dma_transactions=300, dma_bytes=3_000_000,
                                   bus_ns=3_000_000)]})]
    figures = side_bus(send, samples)
    assert figures["doorbells"] == 40 and figures["interrupts"] == 3
    assert figures["dma_transactions"] == 100 and figures["dma_bytes"] == 1_000_000
    assert figures["engine_bus_s"] == 0.001 and figures["host_bus_s"] == 0.00008
    # 80 us of host CPU for 8 Mb: 100 * 0.00008 / 0.008 = 1% of one CPU per Gb/s
    assert figures["host_bus_pct_per_gbps"] == 1.0
    assert side_bus(worker("recv"), samples) is None     # no driver: no bus figures
