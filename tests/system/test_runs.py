"""Whole runs through ``toad run`` / ``toad compare``: each mode and workload that
exists runs, integrity holds and the accounting is consistent."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from .helpers import REPO, SHORT, module_exists, requires_tap, run_json, toad

SIDE_KEYS = {"cpu_s", "cpu_pct_per_gbps", "copy_pct_per_gbps", "driver_pct_per_gbps",
             "copy_timed_pct_per_gbps"}
RUN_KEYS = {"mode", "workload", "chunk_bytes", "mtu", "duration_s", "bytes", "goodput_gbps",
            "integrity_ok", "send", "recv", "host_cpus_busy_pct_per_gbps", "engine",
            "total_cpu_pct_per_gbps", "counters", "bus"}
COUNTER_KEYS = {"source", "faults", "retransmits", "sack_recoveries", "out_of_order_segments",
                "duplicate_segments", "zero_window_stalls", "out_of_buffer_stalls",
                "bad_records", "bad_frames", "interrupts"}
SOURCE = {"offload": "engine", "inhost": "stacks", "kernel": "linux"}


def check_counters(counters: dict, mode: str, toad_sides=("send", "recv")) -> None:
    """The same keys in every mode; null exactly where the mode cannot know."""
    assert set(counters) == COUNTER_KEYS and counters["source"] == SOURCE[mode]
    assert set(counters["retransmits"]) == {"segments", "fast", "timeout"}
    assert all(isinstance(v, int) and v >= 0 for v in counters["retransmits"].values())
    assert set(counters["interrupts"]) == {"send", "recv"}
    if mode == "kernel":
        assert counters["faults"] is None and counters["bad_records"] is None
        assert counters["interrupts"] == {"send": None, "recv": None}
    if mode == "offload":
        assert isinstance(counters["bad_records"], int)
        assert isinstance(counters["out_of_buffer_stalls"], int)
        for side in toad_sides:
            assert isinstance(counters["interrupts"][side], int)
    if mode == "inhost":
        assert counters["faults"] is None and counters["bad_records"] is None


BUS_SIDE_KEYS = {"doorbells", "register_reads", "interrupts", "host_bus_s",
                 "host_bus_pct_per_gbps", "dma_transactions", "dma_bytes", "engine_bus_s"}


def check_bus(bus: dict, mode: str, toad_sides=("send", "recv")) -> None:
    """The model and each toad side's counts in offload mode; null in the others."""
    assert set(bus) == {"model", "send", "recv"}
    if mode != "offload":
        assert bus == {"model": None, "send": None, "recv": None}
        return
    assert isinstance(bus["model"], str)
    for side in toad_sides:
        assert set(bus[side]) == BUS_SIDE_KEYS
        assert bus[side]["doorbells"] > 0 and bus[side]["dma_transactions"] > 0


def check_run(run: dict, mode: str, kind: str, toad_sides=("send", "recv")) -> None:
    """``toad_sides``: the sides toad ran (on a TAP the other is the Linux peer)."""
    expected = RUN_KEYS | ({"latency_us", "transactions_per_s"} if kind != "bulk" else set())
    assert set(run) - {"connections"} == expected
    assert run["mode"] == mode and run["workload"] == kind
    assert run["integrity_ok"] is True
    assert run["bytes"] > 0 and run["goodput_gbps"] > 0 and run["duration_s"] > 0
    for side in ("send", "recv"):
        figures = run[side]
        assert set(figures) == SIDE_KEYS
        assert figures["cpu_s"] > 0
        assert figures["copy_pct_per_gbps"] > 0
        assert figures["driver_pct_per_gbps"] >= 0
        total = figures["copy_pct_per_gbps"] + figures["driver_pct_per_gbps"]
        assert total == pytest.approx(figures["cpu_pct_per_gbps"], abs=2e-4)
        timed = figures["copy_timed_pct_per_gbps"]
        if mode == "kernel" or side not in toad_sides:
            assert timed is None          # the copy happens inside Linux
        else:                              # sampled copies, within the side's total
            assert 0 < timed <= figures["cpu_pct_per_gbps"]
    assert set(run["engine"]) == {"cpu_pct", "busy_pct"}
    check_counters(run["counters"], mode, toad_sides)
    check_bus(run["bus"], mode, toad_sides)
    if kind != "bulk":
        lat = run["latency_us"]
        assert set(lat) == {"p50", "p90", "p99", "p999", "min", "max", "mean", "cdf"}
        assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p999"] \
            <= lat["max"] and lat["min"] <= lat["mean"] <= lat["max"]
        percents = [p for p, _ in lat["cdf"]]
        values = [v for _, v in lat["cdf"]]
        assert percents[0] == 0 and percents[-1] == 100 and percents == sorted(percents)
        assert values == sorted(values) and values[-1] == lat["max"]
        assert run["transactions_per_s"] > 0


def test_kernel_bulk_two_chunks(tmp_path):
    doc = run_json(tmp_path, "run", "configs/default.yaml", "--set", "mode=kernel", *SHORT)
    assert set(doc) == {"toad_version", "config", "machine", "runs", "details"}
    assert set(doc["machine"]) == {"cpus", "engine_cpus", "host_cpus"}
    assert [r["chunk_bytes"] for r in doc["runs"]] == [131072, 8192]
    for run in doc["runs"]:
        check_run(run, "kernel", "bulk")
    assert doc["details"][0]["pinning"]["send"] == [0]


NETWORK_MODULE = {"kernel": "host.kernelnet", "inhost": "host.inhost", "offload": "host.sockets"}


@pytest.mark.parametrize("mode", ["kernel", "inhost", "offload"])
@pytest.mark.parametrize("kind", ["rr", "crr"])
def test_request_response(tmp_path, mode, kind):
    if not module_exists(NETWORK_MODULE[mode]):
        pytest.skip(f"{NETWORK_MODULE[mode]} not built yet")
    doc = run_json(tmp_path, "run", "configs/default.yaml", "--set", f"mode={mode}",
                   "--set", f"workload.kind={kind}", "--set", "workload.sizes=[64]",
                   # every copy timed: a short crr run makes few copies
                   "--set", "workload.copy_sample=1", *SHORT)
    (run,) = doc["runs"]
    check_run(run, mode, kind)
    assert run["chunk_bytes"] == 64


@pytest.mark.skipif(not module_exists("host.inhost"), reason="host/inhost.py not built yet")
def test_inhost_bulk(tmp_path):
    doc = run_json(tmp_path, "run", "configs/default.yaml", "--set", "mode=inhost",
                   "--set", "workload.chunk_bytes=[65536]", *SHORT)
    check_run(doc["runs"][0], "inhost", "bulk")


def test_offload_runs_or_says_it_is_not_built(tmp_path):
    if module_exists("host.sockets"):
        doc = run_json(tmp_path, "run", "configs/default.yaml", "--set", "mode=offload",
                       "--set", "workload.chunk_bytes=[65536]", *SHORT)
        run = doc["runs"][0]
        check_run(run, "offload", "bulk")
        assert run["engine"]["cpu_pct"] is not None
    else:
        done = toad("run", "configs/default.yaml", "--set", "mode=offload", *SHORT)
        assert done.returncode != 0
        assert done.stderr.strip().splitlines() == [
            "toad: error: offload mode needs host.sockets, not built yet"]


def test_a_damaged_stream_fails_the_run_instead_of_giving_a_figure(tmp_path):
    """The receiver flips one byte it got (TOAD_TEST_FLIP_AT): its comparison with
    what was sent, and the CRC-32, must catch it and say where."""
    out = tmp_path / "out.json"
    env = dict(os.environ, TOAD_TEST_FLIP_AT="100000")
    done = subprocess.run([sys.executable, "-m", "toad", "run", "configs/default.yaml",
                           "--set", "mode=kernel", "--set", "workload.chunk_bytes=[65536]",
                           "--json", str(out), *SHORT], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "integrity check failed" in lines[0], done.stderr
    assert "at stream offset 100000" in lines[0] and "sender CRC" in lines[0]
    assert not out.exists()


@requires_tap
@pytest.mark.skipif(not module_exists("host.inhost"), reason="host/inhost.py not built yet")
def test_inhost_against_linux_over_tap(tmp_path):
    """tap-linux.yaml: toad sends to and receives from Linux in a namespace."""
    tag = os.getpid() % 100000
    doc = run_json(tmp_path, "run", "configs/tap-linux.yaml", "--set", "mode=inhost",
                   "--set", f"nic.tap.netns=toad-e{tag}", "--set", f"nic.tap.device=toade{tag}",
                   "--set", "workload.chunk_bytes=[65536]", *SHORT)
    assert [d["tap"]["toad_side"] for d in doc["details"]] == ["send", "recv"]
    for run, detail in zip(doc["runs"], doc["details"]):
        check_run(run, "inhost", "bulk", toad_sides=(detail["tap"]["toad_side"],))
        assert run["mtu"] == 1500
    # peer: auto. Where toad receives, iperf 2 (when installed) sends toad's stream
    # after its own header; where toad sends, the Python worker receives
    assert doc["details"][0]["tap"]["peer"].startswith("python")
    if shutil.which("iperf"):
        assert doc["details"][1]["tap"]["peer"].startswith("iperf 2")
        assert doc["details"][1]["recv"]["stream_header_bytes"] == 60   # iperf 2.1's
        assert doc["runs"][1]["send"]["cpu_s"] > 0                        # iperf's own


def test_peer_iperf_without_iperf_is_one_clear_error(monkeypatch):
    from toad.config import ConfigError, load
    from toad.experiment import tap
    config = load("configs/tap-linux.yaml", ["workload.peer=iperf"])
    monkeypatch.setattr(tap, "iperf_version", lambda: None)
    with pytest.raises(ConfigError, match="workload.peer: iperf 2 is not installed"):
        tap.iperf_sends(config)
    monkeypatch.setattr(tap, "iperf_version", lambda: "iperf 3.12")
    with pytest.raises(ConfigError, match=r"\(iperf 3.12\)"):
        tap.iperf_sends(config)
    assert not tap.iperf_sends(load("configs/tap-linux.yaml", ["workload.peer=auto"]))
    monkeypatch.setattr(tap, "iperf_version", lambda: "iperf version 2.1.8 (12 August 2022)")
    assert tap.iperf_sends(config)
    assert not tap.iperf_sends(load("configs/tap-linux.yaml", ["workload.peer=python"]))
    assert not tap.iperf_sends(load("configs/tap-linux.yaml", ["workload.kind=rr"]))


def test_repeated_runs_keep_every_run_and_summarise(tmp_path):
    doc = run_json(tmp_path, "run", "configs/default.yaml", "--set", "mode=kernel",
                   "--set", "workload.chunk_bytes=[65536]", "--set", "workload.repeat=2", *SHORT)
    assert [d["repeat"] for d in doc["details"]] == [0, 1]
    for run in doc["runs"]:
        check_run(run, "kernel", "bulk")
    (summary,) = doc["summary"]
    assert summary["spread"]["runs"] == 2
    low, high = summary["spread"]["send"]
    assert low <= summary["send"]["cpu_pct_per_gbps"] <= high
    assert sorted(r["send"]["cpu_pct_per_gbps"] for r in doc["runs"]) == [low, high]


@pytest.mark.parametrize("mode", ["kernel", "inhost", "offload"])
@pytest.mark.parametrize("kind", ["rr", "crr"])
def test_many_connections_at_once(tmp_path, mode, kind):
    """workload.connections: 40 connections each with a request outstanding (crr: waves
    of 40 new ones), every message checked, in each mode; the run says how many, how
    long their set-up took, and (offload) what the engine holds per connection."""
    doc = run_json(tmp_path, "run", "configs/latency.yaml", "--set", f"mode={mode}",
                   "--set", f"workload.kind={kind}", "--set", "workload.sizes=[64]",
                   "--set", "workload.connections=40", *SHORT)
    run, = doc["runs"]
    check_run(run, mode, kind)
    many = run["connections"]
    assert set(many) == {"count", "setup_s", "setup_per_s", "engine_bytes_per_connection",
                         "engine_rss_kib"}
    assert many["count"] == 40 and many["setup_s"] > 0 and many["setup_per_s"] > 0
    assert run["transactions_per_s"] > 0
    assert (many["engine_bytes_per_connection"] is None) == (mode != "offload")
    assert doc["details"][0]["send"]["latency_samples"] % 40 == 0
