"""A run's ``bus`` figures: the bus model it used and what crossed the bus per side.

    {"model": "pcie4" | "none" | "pcie4 pio_read_ns=700" | null (not offload),
     "send": {...} | null, "recv": {...} | null}

Per side, over that side's measured interval (offload only; null for a side that is
not toad's driver, e.g. the Linux peer on a TAP):

* from the side's driver (host/bus_counts.py): ``doorbells`` (register writes),
  ``register_reads``, ``interrupts`` (sleeps an interrupt ended), ``host_bus_s`` (the
  host CPU time the model charged for them) and ``host_bus_pct_per_gbps`` (that time
  as percent of one CPU per Gb/s: a part of the side's driver figure);
* from the engine's stats row of the side's QP (sampled, interpolated at the interval's
  ends): ``dma_transactions``, ``dma_bytes`` and ``engine_bus_s`` (the engine's time
  waiting on the bus for them).
"""
from __future__ import annotations

from typing import Optional

from .accounting import pct_per_gbps, span_delta

ENGINE_KEYS = {"dma_transactions": "dma_transactions", "dma_bytes": "dma_bytes",
               "engine_bus_s": "bus_ns"}


def qp_series(busy_samples, pid: int, field: str) -> list[tuple[float, float]]:
    """(time, value) of one field of the QP stats row of host ``pid``."""
    return [(t, float(row[field])) for t, block in busy_samples or ()
            for row in block.get("qps", ()) if row.get("host_pid") == pid and field in row]


def side_bus(result: dict, busy_samples) -> Optional[dict]:
    """One side's bus figures (None when its process had no offload driver)."""
    m = result["measured"]
    host = m.get("bus")
    if host is None:
        return None
    span = (m["t0"], m["t1"])
    out = {"doorbells": host["doorbells"], "register_reads": host["register_reads"],
           "interrupts": host["interrupts"], "host_bus_s": round(host["bus_ns"] / 1e9, 6),
           "host_bus_pct_per_gbps": round(pct_per_gbps(host["bus_ns"] / 1e9, m["bytes"]), 4)
           if m["bytes"] > 0 else None}
    for key, field in ENGINE_KEYS.items():
        grew = span_delta(qp_series(busy_samples, result["pid"], field), span)
        if grew is not None and key == "engine_bus_s":
            grew = round(grew / 1e9, 6)
        elif grew is not None:
            grew = round(grew)
        out[key] = grew
    return out


def run_bus(config, send: dict, recv: dict, busy_samples) -> dict:
    """The run's ``bus`` object (see the module docstring)."""
    if config.mode != "offload":
        return {"model": None, "send": None, "recv": None}
    return {"model": config.bus.describe(), "send": side_bus(send, busy_samples),
            "recv": side_bus(recv, busy_samples)}
