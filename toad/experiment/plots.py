"""PNG plots (matplotlib, Agg backend) for ``toad compare``/``toad run`` and ``toad sweep``."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402

from .report import size_label  # noqa: E402


def compare_plot(runs: list[dict], path: str) -> None:
    """Stacked bars per (mode, side, chunk): memory copies + driver/stack, % CPU per Gb/s."""
    bulk = [r for r in runs if r["workload"] == "bulk"]
    if not bulk:
        latency_plot(runs, path)
        return
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * 2 * len(bulk) + 2), 4.5))
    labels, copies, rest, ranges, timed = [], [], [], [], []
    for r in bulk:
        for side in ("send", "recv"):
            labels.append(f"{r['mode']}\n{side} {size_label(r['chunk_bytes'])}")
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
    ax.set_xticks(list(x), labels, fontsize=7)
    ax.set_ylabel("% of one host CPU per Gb/s")
    ax.legend()
    ax.set_title("host CPU per Gb/s by mode (TOAD Tables I/II)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def whiskers(ax, totals: list[float], ranges: list) -> None:
    """min-max of each bar's total over repeated runs (workload.repeat > 1)."""
    points = [(i, t, r) for i, (t, r) in enumerate(zip(totals, ranges)) if r]
    if points:
        ax.errorbar([i for i, _t, _r in points], [t for _i, t, _r in points],
                    yerr=[[t - r[0] for _i, t, r in points], [r[1] - t for _i, t, r in points]],
                    fmt="none", ecolor="black", capsize=3, label="min - max over runs")


def latency_plot(runs: list[dict], path: str) -> None:
    """rr/crr: p50/p99 bars per run, and each run's latency CDF (log time axis)."""
    fig, (bars, cdf) = plt.subplots(1, 2, figsize=(max(10, 1.1 * len(runs) + 6), 4.5))
    latency_bars(bars, runs)
    bars.set_title("request/response latency")
    for r in runs:
        points = (r.get("latency_us") or {}).get("cdf") or []
        if points:
            cdf.plot([us for _, us in points], [percent for percent, _ in points], ".-",
                     label=f"{r['mode']} {r['workload']} {size_label(r['chunk_bytes'])}")
    cdf.set_xscale("log")
    cdf.set_xlabel("latency (us)")
    cdf.set_ylabel("% of requests at or below")
    cdf.set_title("latency CDF")
    cdf.grid(True, which="both", alpha=0.3)
    cdf.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def latency_bars(ax, runs: list[dict]) -> None:
    labels = [f"{r['mode']}\n{r['workload']} {size_label(r['chunk_bytes'])}" for r in runs]
    x = range(len(labels))
    ax.bar([i - 0.2 for i in x], [r["latency_us"]["p50"] or 0 for r in runs], 0.4, label="p50")
    ax.bar([i + 0.2 for i in x], [r["latency_us"]["p99"] or 0 for r in runs], 0.4, label="p99")
    ax.set_xticks(list(x), labels, fontsize=7)
    ax.set_ylabel("latency (us)")
    ax.legend()


def sweep_plot(name: str, runs: list[dict], details: list[dict], path: str) -> None:
    """Send and receive % CPU per Gb/s (and latency for rr/crr) against the swept value."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    values = [str(d.get("sweep", {}).get("value")) for d in details]
    for mode in dict.fromkeys(r["mode"] for r in runs):
        pts = [(v, r) for v, r in zip(values, runs) if r["mode"] == mode]
        xs = [v for v, _ in pts]
        if all(r["workload"] == "bulk" for _, r in pts):
            ax.plot(xs, [r["send"]["cpu_pct_per_gbps"] for _, r in pts], "o-", label=f"{mode} send")
            ax.plot(xs, [r["recv"]["cpu_pct_per_gbps"] for _, r in pts], "s--", label=f"{mode} recv")
            ax.set_ylabel("% of one host CPU per Gb/s")
        else:
            ax.plot(xs, [r["latency_us"]["p50"] for _, r in pts], "o-", label=f"{mode} p50")
            ax.set_ylabel("latency p50 (us)")
    ax.set_xlabel(name)
    ax.set_title(f"sweep of {name}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
