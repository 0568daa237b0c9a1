"""The PNG of ``toad sweep`` (and ``toad report --plot`` of a sweep), drawn as in a paper.

- A numeric parameter gets a numeric axis with its unit; sizes and the MTU are on a
  log scale (1500 to 65535 spans 40x), ticked at the swept values. A parameter with
  words for values (checksum mode) gets grouped bars, not lines joining categories.
- Every y axis starts at 0. With ``workload.repeat`` each point is the median run and
  its error bar spans the smallest to the largest run.
- A mode is drawn only against parameters it uses: kernel mode is Linux's TCP and
  ignores nic.*, tcp.*, qp.*, engine.*, ...; the figure says which mode was left out.
- Beside host CPU per Gb/s: goodput, and (offload) the engine CPU. rr/crr: latency.
  A sweep with both (``extra_runs``: configs/bus.yaml) draws the bulk panels for its
  bulk runs and the latency panel for its rr/crr runs; where one value has several
  chunk sizes, each is a series of its own, named by its size.
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FixedLocator, NullLocator  # noqa: E402

from .report import size_label  # noqa: E402

# config prefixes each mode uses (anything else it ignores)
USED_BY = {"kernel": ("workload.", "host."),
           "inhost": ("workload.", "host.", "nic.mtu", "nic.address", "nic.peer_address",
                      "nic.kind", "nic.tap.", "nic.arp", "tcp.", "heap_trim_bytes",
                      "nic.wire.loss", "nic.wire.duplicate", "nic.wire.reorder",
                      "nic.wire.corrupt", "nic.wire.seed"),
           "offload": ("",)}
UNITS = (("_bytes", "bytes"), ("nic.mtu", "bytes"), ("_us", "µs"), ("_ms", "ms"),
         ("_s", "s"), ("_gbps", "Gb/s"), ("workload.sizes", "bytes"))
LOG_SCALE = ("nic.mtu", "_bytes", "workload.sizes")
STYLE = {"offload": ("tab:green", "o"), "inhost": ("tab:blue", "s"), "kernel": ("tab:red", "^")}
FONT = {"axes.labelsize": 11, "axes.titlesize": 11, "xtick.labelsize": 10,
        "ytick.labelsize": 10, "legend.fontsize": 9}


def uses(mode: str, name: str) -> bool:
    return any(name.startswith(prefix) for prefix in USED_BY.get(mode, ("",)))


def axis_label(name: str) -> str:
    for suffix, unit in UNITS:
        if name.endswith(suffix) or name == suffix:
            return f"{name} ({unit})"
    return name


def numeric(values: list) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def tick_text(name: str, value) -> str:
    if name.endswith("_bytes") or name == "workload.sizes":
        return size_label(int(value))
    return f"{value:g}"


def sweep_plot(name: str, runs: list[dict], details: list[dict], path: str) -> None:
    """Write :func:`sweep_figure` as a PNG."""
    with plt.rc_context(FONT):
        fig = sweep_figure(name, runs, details)
        fig.savefig(path, dpi=120)
    plt.close(fig)


def sweep_figure(name: str, runs: list[dict], details: list[dict]):
    """Send and receive % CPU per Gb/s against the swept value, goodput and the
    engine CPU beside (rr/crr: latency and CPU)."""
    values = [first((d.get("sweep") or {}).get("value")) for d in details]
    points = [(v, r) for v, r in zip(values, runs)]
    left_out = sorted({r["mode"] for r in runs if not uses(r["mode"], name)})
    drawn = [(v, r) for v, r in points if uses(r["mode"], name)] or points
    bulk = [(v, r) for v, r in drawn if r["workload"] == "bulk"]
    rr = [(v, r) for v, r in drawn if r["workload"] != "bulk"]
    panels = []
    if bulk:
        panels += [(cpu_panel, bulk), (goodput_panel, bulk)]
        if any(r["mode"] == "offload" for _v, r in bulk):
            panels.append((engine_panel, bulk))
    if rr:
        panels.append((latency_panel, rr))
        if not bulk:
            panels.append((cpu_panel, rr))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.4))
    for ax, (panel, subset) in zip(axes, panels):
        panel(ax, name, subset)
        dress_x(ax, name, [v for v, _r in subset])
    title = f"sweep of {name}"
    if left_out and len(drawn) < len(points):
        title += f" ({', '.join(left_out)} not drawn: it does not use {name})"
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def first(value):
    """A swept list value (chunk_bytes: [8192]) stands for its one element."""
    return value[0] if isinstance(value, list) and len(value) == 1 else value


def series(points: list, key) -> dict:
    """{(mode, label): [(x, y, (lo, hi) or None)]} for each mode, in x order; labels
    start with the chunk size where one value has runs of several sizes."""
    sized = len({(str(x), r["mode"], r["chunk_bytes"]) for x, r in points}) \
        > len({(str(x), r["mode"]) for x, r in points})
    out: dict = {}
    for x, r in points:
        for label, y, spread in key(r):
            if sized:
                label = f"{size_label(r['chunk_bytes'])} {label}"
            out.setdefault((r["mode"], label), []).append((x, y, spread))
    return out


def draw(ax, name: str, lines: dict, ylabel: str) -> None:
    """Lines with error bars on a numeric axis, grouped bars on a categorical one."""
    xs = list(dict.fromkeys(x for pts in lines.values() for x, _y, _s in pts))
    is_numeric = numeric(xs)
    order = [str(x) for x in xs]
    width = 0.8 / max(1, len(lines))
    for i, ((mode, label), pts) in enumerate(lines.items()):
        if is_numeric:
            pts = sorted(pts, key=lambda p: p[0])
        color, marker = STYLE.get(mode, ("gray", "o"))
        dashed = label.endswith("recv") or label.endswith("p99") or label.endswith("busy")
        ys = [y if y is not None else float("nan") for _x, y, _s in pts]
        err = error_bars(pts)
        if is_numeric:
            ax.errorbar([x for x, _y, _s in pts], ys, yerr=err, color=color, marker=marker,
                        linestyle="--" if dashed else "-", capsize=3, label=f"{mode} {label}")
        else:
            where = [order.index(str(x)) + (i - (len(lines) - 1) / 2) * width
                     for x, _y, _s in pts]
            ax.bar(where, ys, width, yerr=err, color=color, capsize=3,
                   alpha=0.55 if dashed else 0.9, label=f"{mode} {label}")
    ax.set_ylabel(ylabel)
    ax.set_ylim(bottom=0)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend()


def error_bars(pts: list):
    """[[below], [above]] from each point's (lo, hi) spread, or None without repeats."""
    if not any(s for _x, _y, s in pts):
        return None
    below = [max(0.0, y - s[0]) if s and y is not None else 0.0 for _x, y, s in pts]
    above = [max(0.0, s[1] - y) if s and y is not None else 0.0 for _x, y, s in pts]
    return [below, above]


def dress_x(ax, name: str, values: list) -> None:
    """Unit, log scale for sizes and the MTU, ticks at the swept values."""
    ax.set_xlabel(axis_label(name))
    if not numeric(values):
        ordered = list(dict.fromkeys(map(str, values)))
        ax.set_xticks(range(len(ordered)), ordered)
        return
    ticks = sorted(set(values))
    if any(name.endswith(s) or name == s for s in LOG_SCALE) and min(ticks) > 0:
        ax.set_xscale("log")
        ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.set_xticklabels([tick_text(name, v) for v in ticks],
                       rotation=30 if len(ticks) > 4 else 0)


def spread_of(run: dict, key: str):
    return (run.get("spread") or {}).get(key)


def cpu_panel(ax, name: str, points: list) -> None:
    draw(ax, name, series(points, lambda r: [
        ("send", r["send"]["cpu_pct_per_gbps"], spread_of(r, "send")),
        ("recv", r["recv"]["cpu_pct_per_gbps"], spread_of(r, "recv"))]),
        "host CPU, % of one CPU per Gb/s")
    ax.set_title("host CPU per Gb/s")


def goodput_panel(ax, name: str, points: list) -> None:
    draw(ax, name, series(points, lambda r: [
        ("goodput", r["goodput_gbps"], spread_of(r, "goodput_gbps"))]), "goodput (Gb/s)")
    ax.set_title("goodput")


def engine_panel(ax, name: str, points: list) -> None:
    offload = [(x, r) for x, r in points if r["mode"] == "offload"]
    draw(ax, name, series(offload, lambda r: [
        ("CPU", r["engine"]["cpu_pct"], None), ("busy", r["engine"]["busy_pct"], None)]),
        "engine CPU (% of its CPU)")
    ax.set_ylim(0, 140)
    ax.set_yticks(range(0, 101, 20))
    ax.legend(loc="upper center")
    ax.set_title("engine CPU (busy: useful work)")


def latency_panel(ax, name: str, points: list) -> None:
    draw(ax, name, series(points, lambda r: [
        ("p50", (r.get("latency_us") or {}).get("p50"), spread_of(r, "p50")),
        ("p99", (r.get("latency_us") or {}).get("p99"), None)]), "latency (µs)")
    ax.set_title("request/response latency")
