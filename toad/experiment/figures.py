"""Turn the workers' raw results (and the engine samples) into one run's figures.

The run object has exactly the keys README/ARCHITECTURE document (stable JSON);
everything else a reader may want (pinning obtained, checksum cost, copy
calibration, raw CPU seconds) goes into a separate "details" object.

Which interval is the run's: bulk uses the receiver's measured interval (bytes that
arrived), rr/crr the client's ("send" side). Each side's percent per Gb/s uses its own
CPU seconds and bytes over its own interval (see accounting.py): the ratio does not
depend on the two intervals coinciding.
"""
from __future__ import annotations

from typing import Optional

from toad.config import Config

from .accounting import gigabits, interpolate, overlap, pct_per_gbps, side_figures, span_delta
from .bus import run_bus
from .launcher import RunFailed


STREAM_HEADER_MAX = 256   # bytes a sending program (iperf 2) may put ahead of the stream


def check_integrity(kind: str, send: dict, recv: dict) -> None:
    """Raise RunFailed unless every byte stream arrived as it was sent."""
    problems = []
    if recv.get("stream_header_bytes", 0) < 0:
        problems.append("the sender's stream did not start within the first "
                        f"{STREAM_HEADER_MAX} bytes (after iperf's header)")
    elif send.get("crc_sent") != recv.get("crc_recv"):
        problems.append(f"sender CRC {send.get('crc_sent'):#010x} != receiver CRC "
                        f"{recv.get('crc_recv'):#010x}")
    if recv.get("first_bad_offset", -1) >= 0 and recv.get("stream_header_bytes", 0) >= 0:
        problems.append(f"the first byte that differs from what was sent is at stream "
                        f"offset {recv['first_bad_offset']}")
    if kind == "bulk" and send.get("total_bytes") != recv.get("total_bytes"):
        problems.append(f"{send.get('total_bytes')} bytes sent, {recv.get('total_bytes')} received")
    if kind != "bulk" and recv.get("crc_sent") != send.get("crc_recv"):
        problems.append("the responses the client got differ from those the server sent")
    if problems:
        raise RunFailed("integrity check failed (the run is not a figure): " + "; ".join(problems))


def side(result: dict) -> tuple[dict, object]:
    """The JSON of one side and its figures (CPU excludes the integrity checksum)."""
    m = result["measured"]
    if m["bytes"] <= 0:
        raise RunFailed(f"the {result['role']} side measured no data (a call outlasted the "
                        f"run); raise workload.duration_s")
    cpu_s = max(0.0, m["cpu_s"] - m["integrity_s"])
    timed = result.get("copy_timed") or {}
    figures = side_figures(cpu_s, m["bytes"], result["bytes_copied"], result["copy_s_per_byte"],
                           timed.get("s_per_byte"))
    return figures.as_json(), figures


def host_busy(reference: dict, other: dict) -> Optional[float]:
    """Host-CPU busy % per Gb/s over the reference side's interval, checksums excluded.

    /proc/stat sees both workers (and anything else on those CPUs); the checksum time
    of the reference side is subtracted as measured, the other side's in proportion
    to how much of its interval overlaps the reference one.
    """
    ref, oth = reference["measured"], other["measured"]
    if ref["bytes"] <= 0:
        return None
    span = (ref["t0"], ref["t1"])
    other_wall = oth["t1"] - oth["t0"]
    share = overlap(span, (oth["t0"], oth["t1"])) / other_wall if other_wall > 0 else 0.0
    busy = ref["host_busy_s"] - ref["integrity_s"] - share * oth["integrity_s"]
    return pct_per_gbps(max(0.0, busy), ref["bytes"])


def engine_figures(span: tuple[float, float], cpu_samples, busy_samples,
                   nbytes: int) -> tuple[dict, Optional[float]]:
    """{"cpu_pct", "busy_pct"} of the engine over ``span`` and its % per Gb/s."""
    start, end = (interpolate(cpu_samples, t) for t in span)
    wall = span[1] - span[0]
    if start is None or end is None or wall <= 0:
        return {"cpu_pct": None, "busy_pct": None}, None
    cpu_s = end - start
    busy_pct = None
    if busy_samples:
        busy_pct = engine_busy_pct(span, busy_samples)
    return ({"cpu_pct": round(100.0 * cpu_s / wall, 2),
             "busy_pct": None if busy_pct is None else round(busy_pct, 2)},
            pct_per_gbps(cpu_s, nbytes))


def engine_busy_pct(span: tuple[float, float], samples) -> Optional[float]:
    """Useful-work % from the engine's stats block: delta busy_ns over the span's wall.

    The block (toad.engine_stats.read_engine_stats) is sampled as (time, dict); its
    ``busy_ns`` counts time in loop iterations that did work, refreshed about every
    millisecond, so it is interpolated at the span's ends like the CPU time.
    """
    series = [(t, float(block["busy_ns"])) for t, block in samples if "busy_ns" in block]
    wall_ns = (span[1] - span[0]) * 1e9
    if len(series) < 2 or wall_ns <= 0:
        return None
    busy = interpolate(series, span[1]) - interpolate(series, span[0])
    return min(100.0, max(0.0, 100.0 * busy / wall_ns))


def build_run(config: Config, send: dict, recv: dict, engine=None) -> tuple[dict, dict]:
    """(run JSON, details JSON) of one finished run; raises RunFailed on bad data."""
    kind = config.workload.kind
    check_integrity(kind, send, recv)
    reference, other = (recv, send) if kind == "bulk" else (send, recv)
    m = reference["measured"]
    if m["bytes"] <= 0 or m["wall_s"] <= 0:
        raise RunFailed("no data was measured: the run was shorter than its warm-up; "
                        "raise workload.duration_s")
    send_json, send_fig = side(send)
    recv_json, recv_fig = side(recv)
    run = {
        "mode": config.mode, "workload": kind,
        "chunk_bytes": config.workload.chunk_bytes[0] if kind == "bulk" else config.workload.sizes[0],
        "mtu": config.nic.tap.mtu if config.nic.kind == "tap" else config.nic.mtu,
        "duration_s": round(m["wall_s"], 4), "bytes": m["bytes"],
        "goodput_gbps": round(gigabits(m["bytes"]) / m["wall_s"], 6),   # crr: a few KB/s
        "integrity_ok": True, "send": send_json, "recv": recv_json,
        "host_cpus_busy_pct_per_gbps": round4(host_busy(reference, other)),
        "engine": {"cpu_pct": None, "busy_pct": None}, "total_cpu_pct_per_gbps": None,
    }
    total = send_fig.cpu_pct_per_gbps + recv_fig.cpu_pct_per_gbps
    if engine is not None:
        run["engine"], engine_pct = engine_figures((m["t0"], m["t1"]), engine["cpu"],
                                                   engine["busy"], m["bytes"])
        total = None if engine_pct is None else total + engine_pct
    run["total_cpu_pct_per_gbps"] = round4(total)
    run["bus"] = run_bus(config, send, recv, (engine or {}).get("busy"))
    if kind != "bulk":
        lat = send["latency_us"]
        # p50, p90, p99, p999, min, max, mean and cdf (host/workloads.py Latencies);
        # the sample count goes in the details
        run["latency_us"] = {key: value for key, value in lat.items() if key != "count"}
        run["transactions_per_s"] = round(m["bytes"] / (2 * run["chunk_bytes"]) / m["wall_s"], 1)
        if send.get("many"):
            run["connections"] = connections_figures(config, send["many"])
    info = details(send, recv)
    if engine is not None:
        for name, result in (("send", send), ("recv", recv)):
            info[name]["interrupts"] = side_interrupts(result, engine["busy"])
    if config.mode == "offload":
        info["bus_figures"] = config.bus.figures()       # what the model charged per access
    info["other_load_pct"] = {"host": other_host_load(reference, other),
                              "engine": other_engine_load((m["t0"], m["t1"]), engine)}
    info["steal_pct"] = {"host": host_steal(reference),
                         "engine": engine_steal((m["t0"], m["t1"]), engine)}
    return run, info


def connections_figures(config: Config, many: dict) -> dict:
    """A many-connection run's ``connections`` (host/workloads_many.py): how many, the
    client's set-up time and rate (rr: the N connections opened before the waves;
    crr: the first wave's), and the engine's resident memory grown from before the
    set-up to after the first wave, per connection it held (on loopback it holds both
    ends of each: 2 per client connection)."""
    count = many["connections"]
    before, after = many.get("engine_rss_kib") or (None, None)
    per_connection = None
    if before is not None and after is not None:
        ends = 2 if config.nic.kind == "loopback" else 1
        per_connection = round((after - before) * 1024 / (count * ends))
    return {"count": count, "setup_s": many.get("setup_s"),
            "setup_per_s": many.get("setup_per_s"),
            "engine_bytes_per_connection": per_connection,
            "engine_rss_kib": [before, after]}


def side_interrupts(result: dict, busy_samples) -> Optional[dict]:
    """The interrupts the engine raised for this side's QP over its measured interval
    (the stats block's per-QP counter, found by the worker's pid): the count, per
    second and per MB moved. None when the samples do not cover it."""
    m = result["measured"]
    series = [(t, float(row["interrupts"])) for t, block in busy_samples or ()
              for row in block.get("qps", ()) if row.get("host_pid") == result["pid"]]
    ends = [interpolate(series, t) for t in (m["t0"], m["t1"])] if len(series) >= 2 else [None]
    if None in ends or m["wall_s"] <= 0 or m["bytes"] <= 0:
        return None
    count = ends[1] - ends[0]
    return {"count": round(count), "per_s": round(count / m["wall_s"], 1),
            "per_mb": round(count / (m["bytes"] / 1e6), 3)}


def other_host_load(reference: dict, other: dict) -> Optional[float]:
    """% of one CPU the host CPUs spent on anything but the two workers (interrupts,
    softirqs, other processes) over the reference interval."""
    ref, oth = reference["measured"], other["measured"]
    if ref["wall_s"] <= 0:
        return None
    other_wall = oth["t1"] - oth["t0"]
    share = overlap((ref["t0"], ref["t1"]), (oth["t0"], oth["t1"])) / other_wall if other_wall > 0 else 0
    workers = ref["cpu_s"] + share * oth["cpu_s"]
    return round(100.0 * max(0.0, ref["host_busy_s"] - workers) / ref["wall_s"], 1)


def other_engine_load(span: tuple[float, float], engine) -> Optional[float]:
    """% of the engine CPU used by anything but the engine over ``span``."""
    engine, wall = engine or {}, span[1] - span[0]
    busy, own = span_delta(engine.get("cpu_busy"), span), span_delta(engine.get("cpu"), span)
    if wall <= 0 or busy is None or own is None:
        return None
    return round(100.0 * max(0.0, busy - own) / wall, 1)


def host_steal(reference: dict) -> Optional[float]:
    """% of one CPU the hypervisor took from the host CPUs (steal time, summed over
    them) over the reference interval; None from a worker that did not read it."""
    m = reference["measured"]
    if "host_steal_s" not in m or m["wall_s"] <= 0:
        return None
    return round(100.0 * m["host_steal_s"] / m["wall_s"], 1)


def engine_steal(span: tuple[float, float], engine) -> Optional[float]:
    """% of the engine CPU's time the hypervisor ran something else over ``span``."""
    stolen, wall = span_delta((engine or {}).get("cpu_steal"), span), span[1] - span[0]
    if stolen is None or wall <= 0:
        return None
    return round(100.0 * max(0.0, stolen) / wall, 1)


def details(send: dict, recv: dict) -> dict:
    out = {}
    for name, r in (("send", send), ("recv", recv)):
        m = r["measured"]
        out[name] = {"pid": r["pid"], "affinity": r["affinity"],
                     "cpu_s_with_integrity": round(m["cpu_s"], 6),
                     "integrity_s": round(m["integrity_s"], 6),
                     "bytes": m["bytes"], "bytes_copied": r["bytes_copied"],
                     "wall_s": round(m["wall_s"], 4),
                     "host_busy_s": round(m["host_busy_s"], 4),
                     "host_irq_softirq_s": round(m.get("host_irq_s", 0.0), 4),
                     "host_steal_s": round(m.get("host_steal_s", 0.0), 4),
                     "copy_ns_per_kb": round(r["copy_s_per_byte"] * 1e9 * 1024, 2),
                     "copy_ns_per_kb_range": [round(x * 1e9 * 1024, 2)
                                              for x in r["copy_s_per_byte_range"]],
                     "copy_timed": timed_details(r.get("copy_timed"))}
        if "latency_us" in r:
            out[name]["latency_samples"] = r["latency_us"]["count"]
    if "stream_header_bytes" in recv:   # the sender was iperf (host/iperf_peer.py)
        out["recv"]["stream_header_bytes"] = recv["stream_header_bytes"]
    return out


def timed_details(timed: Optional[dict]) -> Optional[dict]:
    """The sampled boundary copies (host/copy_timer.py) in ns per KB: p10, median, p90."""
    if not timed:
        return None
    return {"samples": timed["samples"],
            "ns_per_kb": [round(timed[k] * 1e9 * 1024, 2)
                          for k in ("s_per_byte_p10", "s_per_byte", "s_per_byte_p90")]}


def round4(value: Optional[float]) -> Optional[float]:
    return None if value is None else round(value, 4)
