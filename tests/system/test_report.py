"""``toad report``: the tables and plots of saved results, without rerunning."""
from __future__ import annotations

import json

from .helpers import SHORT, toad

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_report_renders_the_tables_the_run_printed(tmp_path):
    saved = tmp_path / "run.json"
    run = toad("run", "configs/default.yaml", "--set", "mode=kernel",
               "--set", "workload.chunk_bytes=[16384]", *SHORT, "--json", str(saved))
    assert run.returncode == 0, run.stderr
    again = toad("report", str(saved), "--plot", str(tmp_path / "again.png"))
    assert again.returncode == 0, again.stderr
    assert run.stdout.strip() in again.stdout        # the same tables and notes
    assert again.stdout.startswith(f"results: {saved}: 1 run(s)")
    assert (tmp_path / "again.png").read_bytes().startswith(PNG_MAGIC)
    markdown = toad("report", str(saved), "--markdown")
    assert markdown.returncode == 0, markdown.stderr
    assert "| % of one CPU per Gb/s | sending 16 KB | receiving 16 KB |" in markdown.stdout
    assert "| --- | ---: | ---: |" in markdown.stdout
    assert "| &emsp;of which irq + softirq |" in markdown.stdout


def test_report_of_a_sweep_is_the_sweep_table(tmp_path):
    saved = tmp_path / "sweep.json"
    sweep = toad("sweep", "configs/default.yaml", "--set", "mode=kernel",
                 "--param", "workload.chunk_bytes=8192,32768", *SHORT, "--json", str(saved))
    assert sweep.returncode == 0, sweep.stderr
    again = toad("report", str(saved), "--plot", str(tmp_path / "sweep.png"))
    assert again.returncode == 0, again.stderr
    assert sweep.stdout.strip() in again.stdout
    assert (tmp_path / "sweep.png").read_bytes().startswith(PNG_MAGIC)


def test_a_file_that_is_not_results_is_one_clear_line(tmp_path):
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"hello": 1}))
    done = toad("report", str(other))
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [
        f"toad: error: {other}: not toad results (it needs \"runs\" and \"details\" of the "
        f"same length); give a file written by toad run/compare/sweep --json"]
    assert list(tmp_path.iterdir()) == [other]      # nothing written
