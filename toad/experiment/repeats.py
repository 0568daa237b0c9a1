"""Repeated runs (``workload.repeat``): one summary per point, and its spread.

Runs on a small VM vary by tens of percent from one run to the next, so one run is
a sample, not a figure. With ``workload.repeat: N`` every point is run N times
(interleaved: all points once, then all again, so a slow minute of the machine does
not fall on one mode) and the tables show the median of each number over the N runs,
with the smallest and largest total beside it.

A point is one (sweep value, mode, workload, chunk or size, MTU, toad's side on a TAP).

    summaries, details = summarize(runs, details)
    summaries[0]["spread"]   # {"runs": 3, "send": (lo, hi), "recv": (lo, hi),
                             #  "goodput_gbps": (lo, hi), "p50": (lo, hi) (rr/crr)}

A summary holds the median of every number of its runs (``integrity_ok``: all of
them; a median of ints is rounded to an int), except each side's figures, which are
those of the run with the median total for that side (so copy + driver = total still
holds), and takes its details from the run whose summed per-side CPU per Gb/s
(rr/crr: p50) is the median one. For an even count "median run" is the lower middle. JSON keeps every
run as measured (its details carry its ``repeat`` index); with repeats, the summaries
go into the JSON's ``summary`` list.
"""
from __future__ import annotations

import json
import statistics
from typing import Any, Optional


def point_key(run: dict, detail: dict) -> tuple:
    return (json.dumps(detail.get("sweep"), sort_keys=True), run["mode"], run["workload"],
            run["chunk_bytes"], run["mtu"], (detail.get("tap") or {}).get("toad_side"))


def median_of(values: list) -> Any:
    """The median of numbers (None left out), all() of booleans, dicts key by key;
    anything else (strings) is the first run's."""
    first = values[0]
    if isinstance(first, bool):
        return all(values)
    if isinstance(first, dict):
        return {k: median_of([v.get(k) if isinstance(v, dict) else None for v in values])
                for k in first}
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if not numbers:
        return first
    value = statistics.median(numbers)
    if all(isinstance(v, int) for v in numbers):
        return int(round(value))
    return value


def rank_value(run: dict) -> float:
    """What orders a point's runs when one run's details stand for all."""
    if run["workload"] != "bulk":
        return (run.get("latency_us") or {}).get("p50") or 0.0
    return sum(run[s]["cpu_pct_per_gbps"] or 0.0 for s in ("send", "recv"))


def middle(items: list, key):
    """The item with the median key (the lower of the middle two for an even count)."""
    ordered = sorted(items, key=lambda item: key(item) or 0.0)
    return ordered[(len(ordered) - 1) // 2]


def span(values: list) -> Optional[tuple[float, float]]:
    numbers = [v for v in values if v is not None]
    return (min(numbers), max(numbers)) if numbers else None


def summarize(runs: list[dict], details: list[dict]) -> tuple[list[dict], list[dict]]:
    """One summary run (with ``spread``) and one details object per point, in the
    order the points first ran. Points run once come back unchanged (no spread)."""
    groups: dict[tuple, list[int]] = {}
    for i, (run, detail) in enumerate(zip(runs, details)):
        groups.setdefault(point_key(run, detail), []).append(i)
    out_runs, out_details = [], []
    for members in groups.values():
        if len(members) == 1:
            out_runs.append(runs[members[0]])
            out_details.append(details[members[0]])
            continue
        group = [runs[i] for i in members]
        summary = {k: median_of([r.get(k) for r in group]) for k in group[0]}
        for side in ("send", "recv"):      # one run's figures: copy + driver = total
            summary[side] = middle(group, lambda r: r[side]["cpu_pct_per_gbps"])[side]
        summary["spread"] = spread(group)
        chosen = middle(members, lambda i: rank_value(runs[i]))
        out_runs.append(summary)
        out_details.append(details[chosen])
    return out_runs, out_details


def spread(group: list[dict]) -> dict:
    out = {"runs": len(group),
           "send": span([r["send"]["cpu_pct_per_gbps"] for r in group]),
           "recv": span([r["recv"]["cpu_pct_per_gbps"] for r in group]),
           "goodput_gbps": span([r["goodput_gbps"] for r in group])}
    if group[0]["workload"] != "bulk":
        out["p50"] = span([(r.get("latency_us") or {}).get("p50") for r in group])
    return out

