"""The sweep figure: numeric axes with units, log scale for sizes and the MTU, error
bars from repeats, y from 0, and a mode only against parameters it uses."""
from __future__ import annotations

import matplotlib.pyplot as plt

from toad.experiment.sweep_plot import axis_label, sweep_figure, uses


def run(mode: str, total: float, spread: bool = False) -> dict:
    side = {"cpu_pct_per_gbps": total, "copy_pct_per_gbps": total / 4,
            "driver_pct_per_gbps": total * 3 / 4, "copy_timed_pct_per_gbps": None}
    out = {"mode": mode, "workload": "bulk", "chunk_bytes": 131072, "goodput_gbps": 2.0,
           "send": side, "recv": side,
           "engine": {"cpu_pct": 99.0, "busy_pct": 50.0} if mode == "offload"
           else {"cpu_pct": None, "busy_pct": None}}
    if spread:
        out["spread"] = {"runs": 3, "send": [total - 1, total + 1],
                         "recv": [total - 1, total + 1], "goodput_gbps": [1.5, 2.5]}
    return out


def sweep(name: str, values: list, modes: list, spread: bool = False):
    runs, details = [], []
    for value in values:
        for mode in modes:
            runs.append(run(mode, 10.0, spread))
            details.append({"sweep": {"param": name, "value": value}})
    return runs, details


def legend(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_the_mtu_is_a_log_axis_and_the_kernel_is_not_drawn_against_it():
    fig = sweep_figure("nic.mtu", *sweep("nic.mtu", [1500, 9000, 65535],
                                          ["kernel", "inhost", "offload"], spread=True))
    cpu, goodput, engine = fig.axes
    assert cpu.get_xscale() == "log" and cpu.get_xlabel() == "nic.mtu (bytes)"
    assert [t.get_text() for t in cpu.get_xticklabels()] == ["1500", "9000", "65535"]
    assert not any(label.startswith("kernel") for label in legend(cpu) + legend(goodput))
    assert "kernel not drawn" in fig._suptitle.get_text()
    assert cpu.get_ylim()[0] == 0 and goodput.get_ylim()[0] == 0
    assert cpu.containers and any(c.has_yerr for c in cpu.containers)   # min-max bars
    assert legend(engine) == ["offload CPU", "offload busy"]
    plt.close(fig)


def test_chunk_sizes_are_labelled_in_kilobytes_on_a_log_axis():
    fig = sweep_figure("workload.chunk_bytes",
                       *sweep("workload.chunk_bytes", [[8192], [131072]], ["kernel"]))
    cpu = fig.axes[0]
    assert cpu.get_xscale() == "log"
    assert [t.get_text() for t in cpu.get_xticklabels()] == ["8 KB", "128 KB"]
    assert legend(cpu) == ["kernel send", "kernel recv"]     # the kernel uses chunk sizes
    plt.close(fig)


def test_words_are_grouped_bars_in_the_order_swept():
    values = ["software", "integrated", "offloaded", "off"]
    fig = sweep_figure("tcp.checksum", *sweep("tcp.checksum", values, ["inhost"]))
    cpu = fig.axes[0]
    assert [t.get_text() for t in cpu.get_xticklabels()] == values
    assert not cpu.get_lines() and cpu.patches              # bars, no line joining words
    plt.close(fig)


def test_which_mode_uses_what():
    assert not uses("kernel", "nic.mtu") and uses("kernel", "workload.chunk_bytes")
    assert uses("inhost", "nic.mtu") and uses("inhost", "nic.wire.loss")
    assert not uses("inhost", "nic.wire.delay_us")      # (the engine's loopback wire's)
    assert uses("offload", "interrupts.moderation_us")
    assert axis_label("interrupts.moderation_us") == "interrupts.moderation_us (µs)"


def test_bulk_and_rr_runs_of_one_sweep_get_their_own_panels_and_sizes_their_own_series():
    """configs/bus.yaml: bulk at two chunk sizes and 64 B rr at each preset."""
    runs, details = [], []
    for value in ["none", "pcie4"]:
        for chunk in (131072, 8192):
            runs.append({**run("offload", 2.0), "chunk_bytes": chunk})
            details.append({"sweep": {"param": "bus.preset", "value": value}})
        runs.append({**run("offload", 7000.0), "workload": "rr", "chunk_bytes": 64,
                     "latency_us": {"p50": 140.0, "p99": 280.0}})
        details.append({"sweep": {"param": "bus.preset", "value": value}})
    fig = sweep_figure("bus.preset", runs, details)
    cpu, goodput, engine, latency = fig.axes
    assert legend(cpu) == ["offload 128 KB send", "offload 128 KB recv",
                           "offload 8 KB send", "offload 8 KB recv"]
    assert max(p.get_height() for p in cpu.patches) == 2.0     # no rr run among them
    assert legend(latency) == ["offload p50", "offload p99"]
    plt.close(fig)
