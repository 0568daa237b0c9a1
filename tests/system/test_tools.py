"""toad sweep (table + PNG), toad compare's plot, toad doctor and toad perturb."""
from __future__ import annotations

import json

import pytest

from .helpers import SHORT, run_json, toad

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_sweep_writes_table_json_and_png(tmp_path):
    plot = tmp_path / "sweep.png"
    doc = run_json(tmp_path, "sweep", "configs/default.yaml", "--set", "mode=kernel",
                   "--param", "workload.chunk_bytes=8192,32768", "--plot", str(plot), *SHORT)
    assert [r["chunk_bytes"] for r in doc["runs"]] == [8192, 32768]
    assert [d["sweep"]["value"] for d in doc["details"]] == [8192, 32768]
    assert plot.read_bytes().startswith(PNG_MAGIC)


def test_sweep_without_a_parameter_is_one_clear_line():
    done = toad("sweep", "configs/default.yaml")
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [
        "toad: error: toad sweep: give --param NAME=V1,V2,... (or `sweep:` in the config)"]


def test_compare_kernel_only_prints_the_toad_table_and_plots(tmp_path):
    plot = tmp_path / "compare.png"
    done = toad("compare", "--modes", "kernel", "--set", "workload.chunk_bytes=[16384]",
                "--plot", str(plot), *SHORT)
    assert done.returncode == 0, done.stderr
    for row in ("memory copies", "TCP/IP stack", "total", "sending 16 KB", "receiving 16 KB"):
        assert row in done.stdout
    assert plot.read_bytes().startswith(PNG_MAGIC)


def test_doctor_reports_each_check():
    done = toad("doctor")
    assert done.returncode in (0, 1)
    for word in ("CPUs", "pinning", "steal time", "/dev/shm", "TAP", "netns", "iperf",
                 "socat", "tshark"):
        assert word in done.stdout


def test_doctor_warns_when_the_engine_cpu_is_stolen_from(monkeypatch):
    """The steal check samples /proc/stat twice: 0.05 s of steal on the engine CPU (1)
    over a 0.01 s sample is a warning with its fix; none since boot reads as none."""
    from toad import doctor
    from toad.config import from_dict
    from toad.experiment.accounting import CpuTimes

    config = from_dict({"engine": {"cpu": 1}, "host": {"cpus": [0]}})
    monkeypatch.setattr(doctor.os, "sched_getaffinity", lambda pid: {0, 1})
    reads = iter([{0: CpuTimes(1.0, 0.0, 2.0), 1: CpuTimes(1.0, 0.0, 3.0)},
                  {0: CpuTimes(1.0, 0.0, 2.0), 1: CpuTimes(1.0, 0.0, 3.05)}])
    monkeypatch.setattr(doctor, "read_cpu_times", lambda cpus, path: next(reads))
    status, text, fix = doctor.check_steal(config, sample_s=0.01)
    assert status == doctor.WARN and "CPU 0 0.0%" in text and "engine CPU" in fix
    quiet = {0: CpuTimes(1.0, 0.0, 0.0), 1: CpuTimes(1.0, 0.0, 0.0)}
    monkeypatch.setattr(doctor, "read_cpu_times", lambda cpus, path: quiet)
    assert doctor.check_steal(config, sample_s=0.0)[:2] == (
        doctor.OK, "steal time: none (bare metal, or a hypervisor that does not report it)")


def test_perturb_reports_both_bandwidths(tmp_path):
    out = tmp_path / "perturb.json"
    done = toad("perturb", "--seconds", "0.3", "--rounds", "1", "--size", str(16 << 20),
                "--json", str(out))
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["idle_mb_per_s"] > 0 and result["loaded_mb_per_s"] > 0
    assert "slowdown" in done.stdout


def test_doctor_reports_an_impossible_setting_as_a_finding():
    done = toad("doctor", "--set", "engine.cpu=97")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("FAIL  config: engine.cpu: 97 is not an available CPU")
    assert any(line.startswith("ok    pinning") for line in lines)   # the rest still ran


COMMANDS = ["run", "compare", "sweep", "report", "doctor", "perturb", "config-reference", "engine",
            "nc", "bench rings", "bench tcp", "bench stack", "bench offload", "bench copy"]


def options_without_help(text: str) -> list[str]:
    """Entries of an argparse --help whose description is missing: an entry line
    with nothing after the option and no indented line under it."""
    lines = text.splitlines()
    missing = []
    in_section = False
    for i, line in enumerate(lines):
        if line.endswith(":") and not line.startswith(" "):
            in_section = line in ("options:", "positional arguments:")
            continue
        if not in_section or not line.startswith("  ") or line.startswith("   "):
            continue
        if "  " in line.strip():
            continue                                 # the description follows on the line
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if not nxt.startswith("   "):
            missing.append(line.strip())
    return missing


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_has_help(command):
    done = toad(*command.split(), "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: ")
    assert options_without_help(done.stdout) == []
