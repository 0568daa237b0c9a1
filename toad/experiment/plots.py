"""PNG plots (matplotlib, Agg backend) for ``toad compare`` and ``toad run``: host CPU
per Gb/s beside goodput and the engine CPU (bulk), latency bars and CDF (rr/crr).
``toad sweep``'s figure is sweep_plot.py's."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402

from .report import size_label  # noqa: E402


def compare_plot(runs: list[dict], path: str) -> None:
    """Host CPU per Gb/s as stacked bars per (mode, side, chunk): memory copies +
    driver/stack, with goodput and (offload) the engine's CPU beside."""
    bulk = [r for r in runs if r["workload"] == "bulk"]
    if not bulk:
        latency_plot(runs, path)
        return
    offload = [r for r in bulk if r["mode"] == "offload"]
    width = max(8.0, 0.6 * 2 * len(bulk) + 2.0)
    with plt.rc_context(FONT):
        fig = plt.figure(figsize=(width, 8.6))
        grid = fig.add_gridspec(2, 2 if offload else 1, height_ratios=[1.25, 1],
                                width_ratios=[len(bulk), max(2, len(offload))] if offload else None)
        cpu_bars(fig.add_subplot(grid[0, :]), bulk)
        goodput_bars(fig.add_subplot(grid[1, 0]), bulk)
        if offload:
            engine_bars(fig.add_subplot(grid[1, 1]), offload)
        fig.suptitle("host CPU per Gb/s by mode (TOAD Tables I/II), goodput and engine CPU")
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)


FONT = {"axes.labelsize": 11, "axes.titlesize": 11, "xtick.labelsize": 10,
        "ytick.labelsize": 10, "legend.fontsize": 9}


def run_label(r: dict) -> str:
    return f"{r['mode']}\n{size_label(r['chunk_bytes'])}"


def cpu_bars(ax, bulk: list[dict]) -> None:
    labels, copies, rest, ranges, timed = [], [], [], [], []
    for r in bulk:
        for side in ("send", "recv"):
            labels.append(f"{r['mode']}\n{side}\n{size_label(r['chunk_bytes'])}")
            copies.append(r[side]["copy_pct_per_gbps"])
            rest.append(r[side]["driver_pct_per_gbps"])
            ranges.append((r.get("spread") or {}).get(side))
            timed.append(r[side].get("copy_timed_pct_per_gbps"))
    x = range(len(labels))
    ax.bar(x, copies, label="memory copies (calibrated)")
    ax.bar(x, rest, bottom=copies, label="driver / stack")
    marks = [(i, t) for i, t in zip(x, timed) if t is not None]
    if marks:   # the copy as timed in the run: a line across the bar at its height
        ax.scatter([i for i, _ in marks], [t for _, t in marks], marker="_", s=400,
                   color="black", zorder=3, label="memory copies, timed in the run")
    whiskers(ax, [c + d for c, d in zip(copies, rest)], ranges)
    ax.set_xticks(list(x), labels)
    ax.set_ylabel("host CPU, % of one CPU per Gb/s")
    highest = max([c + d for c, d in zip(copies, rest)]
                  + [hi for r in ranges if r for hi in r[1:]], default=0.0)
    ax.set_ylim(0, 1.4 * highest or 1.0)     # room for the legend above the bars
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend()
    ax.set_title("host CPU per Gb/s")


def goodput_bars(ax, bulk: list[dict]) -> None:
    x = range(len(bulk))
    values = [r["goodput_gbps"] for r in bulk]
    ax.bar(x, values, color="tab:gray")
    whiskers(ax, values, [(r.get("spread") or {}).get("goodput_gbps") for r in bulk])
    ax.set_xticks(list(x), [run_label(r) for r in bulk])
    ax.set_ylabel("goodput (Gb/s)")
    ax.set_ylim(bottom=0)
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_title("goodput")


def engine_bars(ax, offload: list[dict]) -> None:
    x = range(len(offload))
    cpu = [r["engine"]["cpu_pct"] or 0.0 for r in offload]
    busy = [r["engine"]["busy_pct"] or 0.0 for r in offload]
    ax.bar([i - 0.2 for i in x], cpu, 0.4, label="CPU (polling: ~100)", color="tab:olive")
    ax.bar([i + 0.2 for i in x], busy, 0.4, label="busy (useful work)", color="tab:green")
    ax.set_xticks(list(x), [run_label(r) for r in offload])
    ax.set_ylabel("engine CPU (% of its CPU)")
    ax.set_ylim(0, 140)
    ax.set_yticks(range(0, 101, 20))
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(loc="upper center")
    ax.set_title("engine CPU")


def whiskers(ax, totals: list[float], ranges: list) -> None:
    """min-max of each bar's total over repeated runs (workload.repeat > 1)."""
    points = [(i, t, r) for i, (t, r) in enumerate(zip(totals, ranges)) if r]
    if points:
        ax.errorbar([i for i, _t, _r in points], [t for _i, t, _r in points],
                    yerr=[[t - r[0] for _i, t, r in points], [r[1] - t for _i, t, r in points]],
                    fmt="none", ecolor="black", capsize=3, label="min - max over runs")


def latency_plot(runs: list[dict], path: str) -> None:
    """rr/crr: p50/p99 bars per run, and each run's latency CDF (log time axis)."""
    with plt.rc_context(FONT):
        fig, (bars, cdf) = plt.subplots(1, 2, figsize=(max(10, 1.1 * len(runs) + 6), 4.8))
        latency_bars(bars, runs)
        bars.set_title("request/response latency")
        for r in runs:
            points = (r.get("latency_us") or {}).get("cdf") or []
            if points:
                cdf.plot([us for _, us in points], [percent for percent, _ in points], ".-",
                         label=f"{r['mode']} {r['workload']} {size_label(r['chunk_bytes'])}")
        cdf.set_xscale("log")
        cdf.set_xlabel("latency (µs)")
        cdf.set_ylabel("% of requests at or below")
        cdf.set_ylim(0, 100)
        cdf.set_title("latency CDF")
        cdf.grid(True, which="both", alpha=0.3)
        cdf.legend()
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)


def latency_bars(ax, runs: list[dict]) -> None:
    labels = [f"{r['mode']}\n{r['workload']} {size_label(r['chunk_bytes'])}" for r in runs]
    x = range(len(labels))
    ax.bar([i - 0.2 for i in x], [r["latency_us"]["p50"] or 0 for r in runs], 0.4, label="p50")
    ax.bar([i + 0.2 for i in x], [r["latency_us"]["p99"] or 0 for r in runs], 0.4, label="p99")
    ax.set_xticks(list(x), labels)
    ax.set_ylabel("latency (µs)")
    ax.set_ylim(bottom=0)
    ax.legend()
