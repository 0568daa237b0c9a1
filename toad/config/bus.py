"""The ``bus`` section: what talking to the card over an I/O bus costs (TOAD's second
emulation rule: the host cycles spent on the interface equal a real card's).

In toad a doorbell is a store to a shared cache line and the engine's "DMA" is a
memcpy: both far cheaper than a real bus, while an interrupt (a semaphore wake-up)
costs more than a real one. The bus model charges what a real bus would:

* PIO write (a doorbell or any register write) and PIO read (a register read): host
  CPU spent busy in the compiled call that makes the access (host/datapath.py);
* DMA: each transfer of the engine waits for the bus (one card, one bus: transfers
  follow each other at the direction's bandwidth); a read also waits ``dma_latency_us``
  for its data, a posted write does not (toad/rings/bus.py);
* interrupt: raised ``interrupt_us`` later than the engine decides it (delivery), and
  its handler makes ``interrupt_reads`` register reads on the host.

A preset gives every figure; a field set in the config overrides the preset's. The
README's "The bus model" section has the table of figures and where each comes from.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal, Optional

from .loader import ConfigError, doc

FIGURES = ("pio_write_ns", "pio_read_ns", "dma_latency_us", "dma_read_gbps",
           "dma_write_gbps", "interrupt_us", "interrupt_reads")

# Figures of each preset (kind: m = measured, s = from a specification, e = estimate;
# the sources are named in the field docs below and in the README).
PRESETS = {
    "none": dict(pio_write_ns=0.0, pio_read_ns=0.0, dma_latency_us=0.0, dma_read_gbps=0.0,
                 dma_write_gbps=0.0, interrupt_us=0.0, interrupt_reads=0),
    # a PCIe 4.0 x16 card in a server of today, MSI-X interrupts
    "pcie4": dict(pio_write_ns=200.0, pio_read_ns=1000.0, dma_latency_us=0.55,
                  dma_read_gbps=200.0, dma_write_gbps=220.0, interrupt_us=1.0,
                  interrupt_reads=0),
    # TOAD's testbed: a Sun Fire V480's 64-bit/66 MHz PCI bus (2004), pin interrupts
    "pci66": dict(pio_write_ns=300.0, pio_read_ns=500.0, dma_latency_us=1.0,
                  dma_read_gbps=1.12, dma_write_gbps=3.0, interrupt_us=1.0,
                  interrupt_reads=1),
}


@dataclass(frozen=True)
class BusConfig:
    preset: Literal["none", "pcie4", "pci66"] = doc(
        "the bus the emulated card sits on. none: no cost (toad's own costs only); "
        "pcie4: a PCIe 4.0 x16 card in a server of today (MSI-X); pci66: TOAD's "
        "testbed, a Sun Fire V480's 64-bit/66 MHz PCI bus (pin interrupts). Each figure "
        "below is the preset's unless set; README 'The bus model' lists them with "
        "their sources", default="none")
    pio_write_ns: Optional[float] = doc(
        "host CPU per register write (a doorbell: a posted uncached store), spent busy "
        "in the call that writes it. null = the preset's: pcie4 200 (UC writes leave a "
        "Xeon core 50-300 ns apart, Intel Software Tuning forum 'Why do MemReq TLPs "
        "take 100s nanoseconds...', 2020), pci66 300 (estimate)", default=None)
    pio_read_ns: Optional[float] = doc(
        "host CPU per register read (an uncached load the CPU waits for). null = the "
        "preset's: pcie4 1000 (32-bit register reads measured at 0.79-1.58 us with "
        "pcie-lat, github.com/andre-richter/pcie-lat), pci66 500 (estimate: PCI-era "
        "reads were 3-25x shorter than PCIe's, Miller, Watts, Moore, ANCS 2009)",
        default=None)
    dma_latency_us: Optional[float] = doc(
        "engine wait per DMA read for its data (posted writes do not wait). null = the "
        "preset's: pcie4 0.55 (64 B DMA read median 546 ns, NFP6000 on a Xeon "
        "E5-2630v4, github.com/pcie-bench/data), pci66 1.0 (estimate: a PCI 2.2 target "
        "answers or retries within 16 clocks, 240 ns at 66 MHz, and a host bridge "
        "serves a read as a delayed transaction)", default=None)
    dma_read_gbps: Optional[float] = doc(
        "bus bandwidth of engine reads of host memory (requests, send payload), Gb/s; "
        "0 = no cap. null = the preset's: pcie4 200 (16 GT/s x 16 lanes x 128/130 = "
        "252 raw, less TLP overheads), pci66 1.12 (host to network peak on TOAD's "
        "V480, the TOAD paper section IV)", default=None)
    dma_write_gbps: Optional[float] = doc(
        "bus bandwidth of engine writes to host memory (events, received payload, "
        "counters), Gb/s; 0 = no cap. null = the preset's: pcie4 220 (252 raw, less "
        "~24 B per 256 B TLP), pci66 3.0 (network to host peak, the TOAD paper)",
        default=None)
    interrupt_us: Optional[float] = doc(
        "interrupt delivery: the engine raises an interrupt this long after it decides "
        "to (on top of the host's measured wake-up). null = the preset's: pcie4 1.0, "
        "pci66 1.0 (estimates: an MSI is a posted write of the card, Linux's MSI "
        "HOWTO, about half a 546 ns DMA read round trip, plus the CPU's interrupt "
        "entry)", default=None)
    interrupt_reads: Optional[int] = doc(
        "register reads the host's interrupt handler makes per interrupt. null = the "
        "preset's: pcie4 0 (MSI-X: the event ring says why), pci66 1 (a pin interrupt "
        "may overtake the card's DMA writes: the handler reads a register first, "
        "Linux's MSI HOWTO)", default=None)

    def __post_init__(self) -> None:
        # unset figures are the preset's: every consumer reads plain numbers
        preset = PRESETS.get(self.preset, PRESETS["none"])
        for name in FIGURES:
            if getattr(self, name) is None:
                object.__setattr__(self, name, preset[name])

    def validate(self, path: str) -> None:
        for name in FIGURES:
            if getattr(self, name) < 0:
                raise ConfigError(f"{path}.{name}: {getattr(self, name)} must be >= 0 "
                                  f"(null = the preset's)")
        if self.interrupt_reads > 16:
            raise ConfigError(f"{path}.interrupt_reads: {self.interrupt_reads} must be "
                              f"0..16")
        if self.dma_latency_us > 1000 or self.interrupt_us > 1000:
            raise ConfigError(f"{path}: dma_latency_us and interrupt_us must be at most "
                              f"1000 (us)")

    @property
    def active(self) -> bool:
        """Whether the model charges anything at all."""
        return any(getattr(self, name) for name in FIGURES)

    def describe(self) -> str:
        """The model in a few words: the preset, and the figures set apart from it."""
        preset = PRESETS[self.preset]
        changed = [f"{name}={getattr(self, name):g}" for name in FIGURES
                   if getattr(self, name) != preset[name]]
        return " ".join([self.preset, *changed])

    def figures(self) -> dict:
        """Every figure, by name (for reports)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}
