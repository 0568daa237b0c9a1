"""The report's bus parts: the model each run used and what crossed the bus per side
(the runs' ``bus`` objects, toad/experiment/bus.py)."""
from __future__ import annotations

from typing import Optional

SIDES = ("send", "recv")


def active(run: dict) -> bool:
    """Whether the run's bus model charged anything (offload with a preset or figures)."""
    return (run.get("bus") or {}).get("model") not in (None, "none")


def host_bus_pct(run: dict, side: str) -> Optional[float]:
    """The host time charged to the bus, % of one CPU per Gb/s (None: not known)."""
    return ((run.get("bus") or {}).get(side) or {}).get("host_bus_pct_per_gbps")


def model_text(figures: dict) -> str:
    """A model's figures in one line."""
    caps = "/".join(f"{figures[k]:g}" if figures[k] else "uncapped"
                    for k in ("dma_read_gbps", "dma_write_gbps"))
    return (f"{figures['preset']}: PIO write {figures['pio_write_ns']:g} ns, PIO read "
            f"{figures['pio_read_ns']:g} ns per access on the host; DMA read latency "
            f"{figures['dma_latency_us']:g} us, read/write {caps} Gb/s; interrupts "
            f"{figures['interrupt_us']:g} us late, {figures['interrupt_reads']} register "
            f"read(s) each")


def notes(runs: list[dict], details: list[dict]) -> list[str]:
    """One line per bus model the offload runs used (with its figures); ``details[i]``
    is ``runs[i]``'s (summarized runs go with their summarized details)."""
    seen: dict = {}
    for run, detail in zip(runs, details):
        model = (run.get("bus") or {}).get("model")
        if model is not None and model not in seen and detail.get("bus_figures"):
            seen[model] = detail["bus_figures"]
    return [f"bus model {model!r} ({model_text(figures)}); the host's share is in the "
            f"driver figure" for model, figures in seen.items()]


def cell(value, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if digits else str(int(round(value)))


def table_rows(labels: list[str], runs: list[dict]) -> tuple[list[str], list[list[str]]]:
    """(header, rows): one row per offload run side, the counts of its measured
    interval: doorbells, register reads, interrupts taken, DMA transactions and KB,
    the host's and the engine's time charged to the bus (ms)."""
    header = ["run", "side", "bus model", "doorbells", "reg reads", "irqs", "DMA txns",
              "DMA KB", "host bus ms", "engine bus ms"]
    rows = []
    for label, run in zip(labels, runs):
        bus = run.get("bus") or {}
        for side in SIDES:
            figures = bus.get(side)
            if not figures:
                continue
            kb = figures["dma_bytes"] / 1024 if figures["dma_bytes"] is not None else None
            engine_ms = figures["engine_bus_s"] * 1e3 \
                if figures["engine_bus_s"] is not None else None
            rows.append([label, side, bus["model"], cell(figures["doorbells"]),
                         cell(figures["register_reads"]), cell(figures["interrupts"]),
                         cell(figures["dma_transactions"]), cell(kb),
                         cell(figures["host_bus_s"] * 1e3, 2), cell(engine_ms, 2)])
    return header, rows
