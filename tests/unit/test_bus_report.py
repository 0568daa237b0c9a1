"""The bus model in the tables: the host's bus share, the per-side counts, the model."""
from toad.config import load
from toad.experiment import report

SIDE = {"cpu_s": 1.0, "cpu_pct_per_gbps": 2.0, "copy_pct_per_gbps": 0.5,
        "driver_pct_per_gbps": 1.5, "copy_timed_pct_per_gbps": None}
COUNTS = {"doorbells": 120, "register_reads": 4, "interrupts": 9, "host_bus_s": 0.0012,
          "host_bus_pct_per_gbps": 0.25, "dma_transactions": 300, "dma_bytes": 2048,
          "engine_bus_s": 0.003}


def run(mode, model):
    bus = {"model": model, "send": dict(COUNTS) if model else None,
           "recv": dict(COUNTS) if model else None}
    return {"mode": mode, "workload": "bulk", "chunk_bytes": 8192, "mtu": 65535,
            "duration_s": 1.0, "bytes": 1000, "goodput_gbps": 5.0, "integrity_ok": True,
            "send": dict(SIDE), "recv": dict(SIDE), "host_cpus_busy_pct_per_gbps": 4.0,
            "engine": {"cpu_pct": None, "busy_pct": None}, "total_cpu_pct_per_gbps": 4.0,
            "bus": bus}


def detail(model):
    figures = load(None, [f"bus.preset={model}"]).bus.figures() if model else None
    return {"sweep": {"value": model}, "bus_figures": figures} if figures else {}


def test_the_bulk_table_shows_the_bus_share_only_with_a_model():
    assert "of which bus" in report.bulk_table("offload", [run("offload", "pcie4")])
    assert "of which bus" not in report.bulk_table("offload", [run("offload", "none")])


def test_the_report_counts_each_side_and_names_the_model():
    runs = [run("kernel", None), run("offload", "pci66")]
    text = report.render(runs, [detail(None), detail("pci66")])
    lines = [line.split() for line in text.splitlines()]
    counts = [line for line in lines if line[:4] == ["offload", "bulk", "8", "KB"]]
    assert [line[4] for line in counts] == ["send", "recv"]        # kernel: no bus row
    # side, model, doorbells, reg reads, irqs, DMA txns, DMA KB, host ms, engine ms
    assert counts[0][5:] == ["pci66", "120", "4", "9", "300", "2", "1.20", "3.00"]
    assert "bus model 'pci66' (pci66: PIO write 300 ns, PIO read 500 ns" in text


def test_a_sweep_over_presets_has_a_bus_column_per_side():
    runs = [run("kernel", None), run("offload", "none"), run("offload", "pcie4")]
    text = report.sweep_table("bus.preset", runs, [detail(None), detail("none"),
                                                   detail("pcie4")])
    header = text.splitlines()[1].split()
    assert header[-4:] == ["send", "bus", "recv", "bus"]
    last = text.splitlines()[5].split()
    assert last[-2:] == ["0.25", "0.25"]


def test_repeated_points_name_each_model_with_its_own_figures():
    """Three runs per preset, in a sweep's order (each value's repeats together): the
    notes pair each summarized run with its own details, not with the unsummarized
    list's first ones."""
    runs, details = [], []
    for model in ("none", "pcie4"):
        for repeat in range(3):
            runs.append(run("offload", model))
            details.append({**detail(model), "repeat": repeat})
    text = report.sweep_table("bus.preset", runs, details)
    assert "bus model 'pcie4' (pcie4: PIO write 200 ns, PIO read 1000 ns" in text
    assert "bus model 'none' (none: PIO write 0 ns" in text
