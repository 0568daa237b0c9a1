"""The counters that explain a figure reach the run's JSON and its table."""
from __future__ import annotations

import json

from .helpers import SHORT, run_json, toad

LOSSY = ["--set", "nic.wire.loss=0.02", "--set", "nic.wire.duplicate=0.01",
         "--set", "nic.mtu=1500", "--set", "workload.chunk_bytes=[65536]"]


def test_a_lossy_offload_run_reports_faults_and_retransmissions(tmp_path):
    out = tmp_path / "run.json"
    done = toad("run", "configs/default.yaml", "--set", "mode=offload", *LOSSY, *SHORT,
                "--json", str(out))
    assert done.returncode == 0, done.stderr
    counters = json.loads(out.read_text())["runs"][0]["counters"]
    assert counters["source"] == "engine"
    assert counters["faults"]["loss"] > 0 and counters["faults"]["duplicate"] > 0
    assert counters["faults"]["reorder"] == counters["faults"]["corrupt"] == 0
    # a lost data segment is resent (the run's bytes all arrived: integrity held)
    assert counters["retransmits"]["segments"] > 0
    assert counters["out_of_order_segments"] > 0
    assert counters["bad_records"] == 0
    # the table shows them too, with the JSON's numbers
    rows = {line.split("  ")[0]: line.split() for line in done.stdout.splitlines()}
    assert rows["faults: frames lost"][-1] == str(counters["faults"]["loss"])
    assert rows["retransmitted segments"][-1] == str(counters["retransmits"]["segments"])


def test_inhost_runs_warn_that_the_wire_faults_do_not_apply(tmp_path):
    doc = run_json(tmp_path, "run", "configs/default.yaml", "--set", "mode=inhost",
                   "--set", "nic.wire.loss=0.01", "--set", "workload.chunk_bytes=[65536]",
                   *SHORT)
    assert doc["runs"][0]["counters"]["faults"] is None
    assert any("nic.wire" in w for w in doc["details"][0]["warnings"])
