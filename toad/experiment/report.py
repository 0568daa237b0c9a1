"""Reports: the stable JSON document and TOAD-style terminal tables.

JSON (documented in the README; keys are stable)::

    {"toad_version", "config", "machine": {"cpus", "engine_cpus", "host_cpus"},
     "runs": [{"mode", "workload", "chunk_bytes", "mtu", "duration_s", "bytes",
               "goodput_gbps", "integrity_ok",
               "send": {"cpu_s", "cpu_pct_per_gbps", "copy_pct_per_gbps", "driver_pct_per_gbps",
                        "copy_timed_pct_per_gbps" (null in kernel mode or when not sampled)},
               "recv": {...same keys},
               "host_cpus_busy_pct_per_gbps", "engine": {"cpu_pct", "busy_pct"},
               "total_cpu_pct_per_gbps",
               "latency_us": {"p50", "p99", "p90", "p999", "min", "max", "mean",
                              "cdf": [[percent, us], ...]} (rr/crr only),
               "transactions_per_s" (rr/crr only),
               "connections": {"count", "setup_s", "setup_per_s",
                               "engine_bytes_per_connection", "engine_rss_kib"}
                              (rr/crr with workload.connections > 1 only),
               "counters": {"source", "faults": {"loss", "duplicate", "reorder", "corrupt"},
                            "retransmits": {"segments", "fast", "timeout"},
                            "sack_recoveries", "out_of_order_segments",
                            "duplicate_segments", "zero_window_stalls",
                            "out_of_buffer_stalls", "bad_records", "bad_frames",
                            "interrupts": {"send", "recv"}} (counters.py; null: unknown
                            in this mode),
               "bus": {"model", "send", "recv"} (bus.py: the bus model and, per side,
                       doorbells, register reads, interrupts, DMA transactions and
                       bytes, host and engine time charged; null outside offload)}],
     "details": [one object per run: pinning obtained, warnings, checksum CPU excluded,
                 copy calibration, repeat index; informative, not part of the stable keys],
     "summary": [with workload.repeat > 1 only: per point, the median run and its
                 "spread" (repeats.py)]}

For rr/crr, "chunk_bytes" is the request (= response) size.
"""
from __future__ import annotations

import json
import os
from typing import Iterable, Optional

from toad import __version__
from toad.config import Config

from . import bus_report, counters
from .repeats import summarize

STACK_LABEL = {"offload": "TOE driver", "inhost": "TCP/IP stack", "kernel": "TCP/IP stack"}


def document(config: Config, runs: list[dict], details: list[dict]) -> dict:
    doc = {
        "toad_version": __version__,
        "config": config.source,
        "machine": {"cpus": os.cpu_count(), "engine_cpus": [config.engine.cpu],
                    "host_cpus": list(config.host.cpus)},
        "runs": runs,
        "details": details,
    }
    summaries, _ = summarize(runs, details)
    if len(summaries) < len(runs):          # workload.repeat > 1
        doc["summary"] = summaries
    return doc


def write_json(path: str, doc: dict) -> None:
    """Strict JSON: a NaN or infinity would be a bug upstream, not a value to write."""
    text = json.dumps(doc, indent=2, allow_nan=False)
    with open(path, "w") as f:
        f.write(text + "\n")


def size_label(nbytes: int) -> str:
    if nbytes >= 1024 and nbytes % 1024 == 0:
        return f"{nbytes // 1024} KB"
    return f"{nbytes} B"


def fmt(value: Optional[float], digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(header: list[str], rows: list[list[str]], markdown: bool = False) -> str:
    """Aligned columns for a terminal, or a Markdown table (first column text, the
    others right-aligned figures)."""
    if markdown:
        def cell(text: str) -> str:    # a row label's indent survives as an em space
            text = (text or " ").replace("|", "\\|")
            return "&emsp;" + text.lstrip() if text.startswith("  ") else text
        lines = ["| " + " | ".join(cell(c) for c in header) + " |",
                 "| --- |" + " ---: |" * (len(header) - 1)]
        lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.rjust(w) if i else cell.ljust(w)
                       for i, (cell, w) in enumerate(zip(row, widths))) for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def irq_pct(detail: Optional[dict]) -> Optional[float]:
    """irq + softirq % per Gb/s of the host CPUs over the receiver's interval."""
    if not detail or "recv" not in detail or not detail["recv"].get("bytes"):
        return None
    side = detail["recv"]
    return 100.0 * side.get("host_irq_softirq_s", 0.0) / (side["bytes"] * 8 / 1e9)


def interrupts_per_mb(detail: Optional[dict], side: str) -> Optional[float]:
    """Interrupts the engine raised for ``side``'s QP per MB it moved (offload)."""
    irq = ((detail or {}).get(side) or {}).get("interrupts")
    return None if not irq else irq["per_mb"]


def table_columns(runs: list[dict], details: list[dict]) -> list[tuple[str, dict, str]]:
    """(side, run, label) per column: sending then receiving, largest chunk first.

    On a TAP (details "tap") each run has one toad side and one Linux side: toad's
    columns come first ("toad sending 128 KB"), then the Linux peer's.
    """
    order = sorted(zip(runs, details), key=lambda rd: -rd[0]["chunk_bytes"])
    verb = {"send": "sending", "recv": "receiving"}
    if not any("tap" in d for _r, d in order):
        return [(s, r, f"{verb[s]} {size_label(r['chunk_bytes'])}")
                for s in ("send", "recv") for r, _d in order]
    toad, linux = [], []
    for s in ("send", "recv"):
        for r, d in order:
            size = size_label(r["chunk_bytes"])
            if d.get("tap", {}).get("toad_side") == s:
                toad.append((s, r, f"toad {verb[s]} {size}"))
            else:
                linux.append((s, r, f"Linux {verb[s]} {size}"))
    return toad + linux


def titled(title: str, body: str, markdown: bool) -> str:
    return f"**{title}**\n\n{body}" if markdown else f"{title}\n{body}"


def bulk_table(mode: str, runs: list[dict], details: Optional[list[dict]] = None,
               markdown: bool = False) -> str:
    """TOAD Tables I/II: rows copies / driver or stack / total; columns side x chunk."""
    details = details or [{} for _ in runs]
    irq = {id(r): irq_pct(d) for r, d in zip(runs, details)}
    labelled = table_columns(runs, details)
    columns = [(s, r) for s, r, _label in labelled]
    header = ["% of one CPU per Gb/s"] + [label for _s, _r, label in labelled]
    stack_label = STACK_LABEL[mode]
    if any(label.startswith("Linux") for _s, _r, label in labelled):
        stack_label += " (Linux: its stack)"
    rows = [["memory copies"] + [fmt(r[s]["copy_pct_per_gbps"]) for s, r in columns]]
    if any(r[s].get("copy_timed_pct_per_gbps") is not None for s, r in columns):
        rows.append(["  the same, timed in the run"]
                    + [fmt(r[s].get("copy_timed_pct_per_gbps")) for s, r in columns])
    rows.append([stack_label] + [fmt(r[s]["driver_pct_per_gbps"]) for s, r in columns])
    if any(bus_report.active(r) for _s, r in columns):
        rows.append(["  of which bus (PIO)"] + [fmt(bus_report.host_bus_pct(r, s))
                                                for s, r in columns])
    rows += [["total"] + [fmt(r[s]["cpu_pct_per_gbps"]) for s, r in columns],
            *spread_rows(columns),
            ["goodput Gb/s"] + [fmt(r["goodput_gbps"]) for s, r in columns],
            ["host CPUs busy (both sides)"] + [fmt(r["host_cpus_busy_pct_per_gbps"])
                                               for s, r in columns],
            ["  of which irq + softirq"] + [fmt(irq[id(r)]) for s, r in columns]]
    if mode == "offload":
        by_run = {id(r): d for r, d in zip(runs, details)}
        rows.append(["interrupts per MB"] + [fmt(interrupts_per_mb(by_run[id(r)], s), 3)
                                             for s, r in columns])
        rows.append(["engine CPU % / busy %"] + [
            f"{fmt(r['engine']['cpu_pct'], 0)} / {fmt(r['engine']['busy_pct'], 0)}"
            for s, r in columns])
        rows.append(["host + engine per Gb/s"] + [fmt(r["total_cpu_pct_per_gbps"])
                                                  for s, r in columns])
    rows += counters.table_rows(columns)
    return titled(f"{mode} (bulk)", table(header, rows, markdown), markdown)


def spread_rows(columns: list[tuple[str, dict]]) -> list[list[str]]:
    """With repeats: the smallest and largest total of each column's runs."""
    if not any("spread" in r for _s, r in columns):
        return []
    return [["  min - max over runs"] + [span_text(r, s) for s, r in columns]]


def span_text(run: dict, key: str, digits: int = 2) -> str:
    spread = run.get("spread") or {}
    lo_hi = spread.get(key)
    if not lo_hi:
        return "-"
    return f"{lo_hi[0]:.{digits}f} - {lo_hi[1]:.{digits}f} ({spread['runs']})"


def rr_table(runs: list[dict], markdown: bool = False) -> str:
    header = ["mode", "workload", "size", "p50 us", "p99 us", "p99.9 us", "trans/s",
              "client %CPU/Gb/s", "server %CPU/Gb/s", "Gb/s"]
    repeated = any("spread" in r for r in runs)
    if repeated:
        header.insert(4, "p50 min - max (runs)")
    many = any(r.get("connections") for r in runs)
    if many:
        header[3:3] = ["conns", "set-up s", "engine B/conn"]
    rows = []
    for r in runs:
        row = [r["mode"], r["workload"], size_label(r["chunk_bytes"]),
               fmt(r["latency_us"]["p50"], 1), fmt(r["latency_us"]["p99"], 1),
               fmt(r["latency_us"].get("p999"), 1), fmt(r.get("transactions_per_s"), 0),
               fmt(r["send"]["cpu_pct_per_gbps"]), fmt(r["recv"]["cpu_pct_per_gbps"]),
               fmt(r["goodput_gbps"], 3)]
        if repeated:
            row.insert(4, span_text(r, "p50", 1))
        if many:
            c = r.get("connections") or {}
            row[3:3] = [str(c.get("count", 1)), fmt(c.get("setup_s"), 2),
                        fmt(c.get("engine_bytes_per_connection"), 0)]
        rows.append(row)
    return table(header, rows, markdown)


def host_figures(runs: list[dict], details: list[dict]) -> dict:
    """{mode: {(chunk, side): % CPU per Gb/s}} for toad's sides of the bulk runs
    (on a TAP only the side that was toad's)."""
    out: dict = {}
    for r, d in zip(runs, details):
        if r["workload"] != "bulk":
            continue
        sides = [d["tap"]["toad_side"]] if "tap" in d else ["send", "recv"]
        for side in sides:
            out.setdefault(r["mode"], {})[(r["chunk_bytes"], side)] = r[side]["cpu_pct_per_gbps"]
    return out


def factors(runs: list[dict], details: Optional[list[dict]] = None) -> str:
    """Improvement factors of offload over each baseline: baseline total / offload total."""
    figures = host_figures(runs, details or [{} for _ in runs])
    offload = figures.get("offload", {})
    lines = []
    for base in ("kernel", "inhost"):
        chunks = sorted({c for c, _s in figures.get(base, {}) if (c, "send") in offload
                         or (c, "recv") in offload}, reverse=True)
        for chunk in chunks:
            parts = []
            for side, verb in (("send", "sending"), ("recv", "receiving")):
                b, o = figures[base].get((chunk, side)), offload.get((chunk, side))
                if b is not None and o:
                    parts.append(f"{verb} {b / o:.1f}x")
            if parts:
                lines.append(f"offload vs {base} at {size_label(chunk)}: " + ", ".join(parts))
    return "\n".join(lines)


def render(runs: list[dict], details: list[dict], markdown: bool = False) -> str:
    """Every table for a list of runs (repeated points: their medians), then factors
    and the notes and warnings of every run."""
    all_details = details
    runs, details = summarize(runs, details)
    out = []
    modes = list(dict.fromkeys(r["mode"] for r in runs))
    for mode in modes:
        pairs = [(r, d) for r, d in zip(runs, details)
                 if r["mode"] == mode and r["workload"] == "bulk"]
        if pairs:
            out.append(bulk_table(mode, [r for r, _ in pairs], [d for _, d in pairs], markdown))
    rr = [r for r in runs if r["workload"] != "bulk"]
    if rr:
        out.append(rr_table(rr, markdown))
        out.append(counters_table([f"{r['mode']} {r['workload']} {size_label(r['chunk_bytes'])}"
                                   for r in rr], rr, markdown))
    out.append(bus_table([f"{r['mode']} {r['workload']} {size_label(r['chunk_bytes'])}"
                          for r in runs], runs, markdown))
    text = factors(runs, details)
    if text:
        out.append(titled("improvement factors (host CPU per Gb/s):",
                          bullets(text.splitlines()) if markdown else text, markdown))
    out.append(notes(all_details, markdown, bus_report.notes(runs, details)))
    return "\n\n".join(o for o in out if o)


def bullets(lines: list[str]) -> str:
    return "\n".join(f"- {line}" for line in lines)


def notes(details: Iterable[dict], markdown: bool = False,
          bus_lines: Iterable[str] = ()) -> str:
    details = list(details)
    repeats = 1 + max((d.get("repeat", 0) for d in details), default=0)
    lines = ["integrity: every run's CRC-32 matched (bulk: every byte was also compared "
             "with what was sent); the check's own CPU time is measured and excluded "
             "from the figures",
             "memory copies = bytes copied at the socket boundary x the cost of a "
             "chunk-sized copy calibrated on the worker's CPU just before the run",
             "host CPUs busy: /proc/stat over the host CPUs (both workers, interrupts, "
             "softirqs and any other process there; not steal), integrity check time "
             "excluded"]
    if any((d.get(side) or {}).get("copy_timed") for d in details for side in ("send", "recv")):
        lines.insert(2, "timed in the run = the same bytes x the median cost of the boundary "
                        "copies sampled during the run (workload.copy_sample; kernel mode: "
                        "inside Linux, not timed); what it adds over the calibrated copy is "
                        "in the driver/stack row")
    lines.append("counters (faults ... bad frames, interrupts (whole run)): totals over "
                 "each whole run, set-up and warm-up included, summed over toad's stacks "
                 "(offload on loopback: both ends in the engine's stack); kernel mode: "
                 "Linux's counters of the whole network namespace over the run")
    headers = sorted({d["recv"]["stream_header_bytes"] for d in details
                      if "stream_header_bytes" in (d.get("recv") or {})})
    if headers:
        lines.append("Linux sending to toad: iperf 2 (-F), fed toad's stream through a FIFO; "
                     f"the {'/'.join(map(str, headers))} bytes of its own header ahead of "
                     "the stream are counted, not compared; its CPU figures are iperf's "
                     "whole run")
    if repeats > 1:
        lines.append(f"each figure is the median of {repeats} runs of its point "
                     f"(workload.repeat); min - max: the smallest and largest total (rr/crr: p50) "
                     f"over those runs")
    pins = {json.dumps(d.get("pinning"), sort_keys=True) for d in details if d.get("pinning")}
    for pin in sorted(pins):
        obtained = ", ".join(f"{k} {v}" for k, v in json.loads(pin).items())
        lines.append(f"pinning obtained (CPUs): {obtained}")
    lines += bus_lines
    lines += load_notes(details)
    lines += steal_notes(details)
    seen = set()
    for d in details:
        for w in d.get("warnings", []):
            if w not in seen:
                seen.add(w)
                lines.append(f"warning: {w}")
        if (d.get("engine_busy_source") or "").startswith("missing") and "busy" not in seen:
            seen.add("busy")
            lines.append("note: engine busy % is missing (the engine publishes no stats "
                         "block yet); engine CPU % is from /proc")
    return bullets(lines) if markdown else "\n".join(lines)


def sweep_table(name: str, runs: list[dict], details: list[dict],
                markdown: bool = False) -> str:
    """One row per point of a sweep (repeated points: their medians): the value, the
    mode and the per-side figures."""
    all_details = details
    runs, details = summarize(runs, details)
    header = [name, "mode", "unit", "Gb/s", "send copy", "send timed", "send rest",
              "send total", "recv copy", "recv timed", "recv rest", "recv total", "host+engine"]
    latency = any(r["workload"] != "bulk" for r in runs)
    if latency:
        header += ["p50 us", "p99 us"]
    irq = any(interrupts_per_mb(d, s) is not None for d in details for s in ("send", "recv"))
    if irq:
        header += ["send irq/MB", "recv irq/MB"]
    bus = any(bus_report.active(r) for r in runs)
    if bus:
        header += ["send bus", "recv bus"]
    rows = []
    for r, d in zip(runs, details):
        row = [str(d.get("sweep", {}).get("value")), r["mode"], size_label(r["chunk_bytes"]),
               fmt(r["goodput_gbps"], 3)]
        for s in ("send", "recv"):
            row += [fmt(r[s]["copy_pct_per_gbps"]), fmt(r[s].get("copy_timed_pct_per_gbps")),
                    fmt(r[s]["driver_pct_per_gbps"]), fmt(r[s]["cpu_pct_per_gbps"])]
        row.append(fmt(r["total_cpu_pct_per_gbps"]))
        if latency:
            lat = r.get("latency_us") or {}
            row += [fmt(lat.get("p50"), 1), fmt(lat.get("p99"), 1)]
        if irq:
            row += [fmt(interrupts_per_mb(d, s), 3) for s in ("send", "recv")]
        if bus:
            row += [fmt(bus_report.host_bus_pct(r, s)) for s in ("send", "recv")]
        rows.append(row)
    labels = [f"{d.get('sweep', {}).get('value')} {r['mode']} {size_label(r['chunk_bytes'])}"
              for r, d in zip(runs, details)]
    parts = [titled("% of one CPU per Gb/s (copy = memory copies, calibrated; timed = the "
                    "same copies timed in the run; rest = driver or stack"
                    + ("; bus = the host's bus time, part of rest" if bus else "") + ")",
                    table(header, rows, markdown), markdown),
             counters_table(labels, runs, markdown), bus_table(labels, runs, markdown),
             notes(all_details, markdown, bus_report.notes(runs, details))]
    return "\n\n".join(p for p in parts if p)


def bus_table(labels: list[str], runs: list[dict], markdown: bool = False) -> str:
    """What crossed the bus per offload run and side (empty without offload runs)."""
    header, rows = bus_report.table_rows(labels, runs)
    if not rows:
        return ""
    return titled("bus (each side's measured interval: register writes and reads, "
                  "interrupts taken, DMA, time charged to the bus)",
                  table(header, rows, markdown), markdown)


def counters_table(labels: list[str], runs: list[dict], markdown: bool = False) -> str:
    """The runs' counters, one row per run (empty when no run has any)."""
    header, rows = counters.run_table(labels, runs)
    if len(header) == 1:
        return ""
    return titled("counters (faults injected, retransmissions, stalls, drops; - = not "
                  "known in that mode)", table(header, rows, markdown), markdown)


def load_notes(details: list[dict], limit_pct: float = 5.0) -> list[str]:
    """One line per CPU kind that other processes loaded during the runs."""
    out = []
    for key, what in (("host", "the host CPUs"), ("engine", "the engine CPU")):
        values = [d.get("other_load_pct", {}).get(key) for d in details]
        loaded = [v for v in values if v is not None and v > limit_pct]
        if loaded:
            out.append(f"warning: {what} also ran other processes in {len(loaded)} of "
                       f"{len([v for v in values if v is not None])} runs (up to "
                       f"{max(loaded):.0f}% of one CPU): goodput and /proc/stat figures are "
                       f"disturbed, per-process figures much less")
    return out


def steal_notes(details: list[dict], shown_pct: float = 0.5,
                warn_pct: float = 5.0) -> list[str]:
    """Steal time (the hypervisor ran something else on this VM's CPUs) over the
    runs: one line with its range when any run had some, and a warning for the
    engine CPU, whose stolen time comes straight out of the goodput."""
    values = {key: [v for d in details if (v := (d.get("steal_pct") or {}).get(key)) is not None]
              for key in ("engine", "host")}
    spans = [f"{what} {min(values[key]):.1f}-{max(values[key]):.1f}%"
             for key, what in (("engine", "engine CPU"), ("host", "host CPUs"))
             if values[key] and max(values[key]) >= shown_pct]
    worst = [v for v in values["engine"] if v > warn_pct]
    out = []
    if spans:
        out.append("hypervisor steal (the VM's CPU ran something else; /proc/stat, not "
                   "counted as busy): " + ", ".join(spans) + " of one CPU over the runs")
    if worst:
        out.append(f"warning: the hypervisor took more than {warn_pct:.0f}% of the engine "
                   f"CPU in {len(worst)} run(s) (up to {max(worst):.0f}%): goodput and "
                   f"the engine figures of those runs are disturbed")
    return out
