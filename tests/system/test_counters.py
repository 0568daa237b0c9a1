"""The counters that explain a figure reach the run's JSON and its table."""
from __future__ import annotations

import json
import os

import pytest

from .helpers import SHORT, requires_tap, run_json, toad

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


def test_an_inhost_run_reports_the_faults_its_shared_memory_wire_injected(tmp_path):
    """Each worker's NIC is wrapped by the fault injector (engine/nic/faults.py): the
    frames each side sends are damaged, counted in both workers' counters, summed."""
    doc = run_json(tmp_path, "run", "configs/default.yaml", "--set", "mode=inhost",
                   *LOSSY, *SHORT)
    counters = doc["runs"][0]["counters"]
    assert counters["source"] == "stacks"
    assert counters["faults"]["loss"] > 0 and counters["faults"]["duplicate"] > 0
    assert counters["faults"]["reorder"] == counters["faults"]["corrupt"] == 0
    assert counters["retransmits"]["segments"] > 0      # (and every byte arrived)
    assert not any("nic.wire" in w for w in doc["details"][0]["warnings"])


def test_a_kernel_run_warns_that_the_wire_faults_do_not_apply(tmp_path):
    doc = run_json(tmp_path, "run", "configs/default.yaml", "--set", "mode=kernel",
                   "--set", "nic.wire.loss=0.01", "--set", "workload.chunk_bytes=[65536]",
                   *SHORT)
    assert doc["runs"][0]["counters"]["faults"] is None
    assert any("nic.wire" in w for w in doc["details"][0]["warnings"])


@requires_tap
@pytest.mark.parametrize("mode", ["offload", "inhost"])
def test_faults_on_tap_are_injected_counted_and_recovered_from(tmp_path, mode):
    """Issue 21's finding 6: nic.wire.loss with nic.kind=tap used to move the data at
    full speed with no fault. Now frames are lost both ways around the TAP NIC, the
    run's counters say how many and the retransmissions that repaired them, and the
    workers checked every byte (a damaged stream fails the run)."""
    tag = os.getpid() % 100000
    doc = run_json(tmp_path, "run", "configs/tap-linux.yaml", "--set", f"mode={mode}",
                   "--set", f"nic.tap.netns=toad-f{tag}", "--set", f"nic.tap.device=toadf{tag}",
                   "--set", "nic.wire.loss=0.02", "--set", "nic.wire.duplicate=0.01",
                   "--set", "workload.chunk_bytes=[65536]", *SHORT)
    for run, detail in zip(doc["runs"], doc["details"]):   # toad sends, then receives
        counters = run["counters"]
        assert counters["faults"]["loss"] > 0 and counters["faults"]["duplicate"] > 0
        if detail["tap"]["toad_side"] == "send":   # toad's stack resent what was lost
            assert counters["retransmits"]["segments"] > 0
        else:            # Linux resent (its counters): toad saw holes and duplicates
            assert counters["out_of_order_segments"] > 0
            assert counters["duplicate_segments"] > 0
