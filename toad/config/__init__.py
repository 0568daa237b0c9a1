"""The experiment configuration: one YAML file loaded into frozen dataclasses.

    cfg = load("configs/default.yaml", overrides=["nic.mtu=9000"])

Errors are :class:`ConfigError` with one line that names the key and the fix.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Iterable, Literal, Optional

from .bus import BusConfig
from .engine import EngineConfig, InterruptConfig, QueuePairConfig, available_cpus
from .experiment import HostConfig, WorkloadConfig
from .loader import ConfigError, apply_override, build, doc, parse_override, read_yaml, reference
from .net import NicConfig, TapConfig, TcpConfig, WireConfig

__all__ = [
    "BusConfig", "Config", "ConfigError", "EngineConfig", "HostConfig", "InterruptConfig",
    "NicConfig", "QueuePairConfig", "TapConfig", "TcpConfig", "WireConfig", "WorkloadConfig",
    "available_cpus", "load", "from_dict", "reference",
]


@dataclass(frozen=True)
class Config:
    name: str = doc("instance name; OE memory is /dev/shm/toad-<name>-oe", default="toad")
    mode: Literal["offload", "inhost", "kernel"] = doc(
        "offload: TCP in the engine; inhost: the same stack in each host process; "
        "kernel: Linux sockets", default="offload")
    modes: tuple[Literal["offload", "inhost", "kernel"], ...] = doc(
        "modes `toad compare` runs by default", default=("kernel", "inhost", "offload"))
    engine: EngineConfig = doc("the engine process", default_factory=EngineConfig)
    host: HostConfig = doc("the host workers", default_factory=HostConfig)
    qp: QueuePairConfig = doc("one host queue pair (rings, buffers)", default_factory=QueuePairConfig)
    interrupts: InterruptConfig = doc("interrupt moderation", default_factory=InterruptConfig)
    bus: BusConfig = doc("what the I/O bus costs (PIO, DMA, interrupts); off by default",
                         default_factory=BusConfig)
    nic: NicConfig = doc("the NIC backend", default_factory=NicConfig)
    tcp: TcpConfig = doc("the TCP/IP stack", default_factory=TcpConfig)
    workload: WorkloadConfig = doc("what the host workers do", default_factory=WorkloadConfig)
    heap_trim_bytes: int = doc(
        "glibc malloc's trim threshold (mallopt M_TRIM_THRESHOLD) in every process that "
        "runs toad's stack or a worker: frames up to 64 KB are allocated and freed per "
        "segment, and with glibc's own 128 KB threshold each free gave memory back that "
        "the next frame faulted in again (about 5 page faults per 64 KB segment, a fifth "
        "of the engine's CPU in the kernel); 0 = glibc's default", default=256 << 20)
    extra_runs: tuple[tuple[str, ...], ...] = doc(
        "more runs at each point of run, compare and sweep, after the config's own: "
        "each a list of KEY=VALUE overrides of this config, e.g. [workload.kind=rr, "
        "engine.polling=busy] (a bulk and an rr workload in one command; configs/bus.yaml)",
        default=())
    sweep: Optional[str] = doc(
        "toad sweep: the parameter to vary when --param is not given, NAME=V1,V2,... "
        "(e.g. nic.mtu=1500,9000,65535)", default=None)
    source: Optional[str] = doc("path of the YAML file (set by the loader)", default=None)

    # keys of earlier versions: naming one is an error that names its successor
    MOVED: ClassVar[dict] = {"dma": {
        "bus_gbps": "bus.dma_read_gbps and bus.dma_write_gbps (or bus.preset)",
        "latency_us": "bus.dma_latency_us (or bus.preset)"}}

    def validate(self, path: str) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,40}", self.name):
            raise ConfigError(f"name: {self.name!r} must be 1-40 letters, digits, '_', '-' or '.'")
        for i, run in enumerate(self.extra_runs):
            for text in run:
                keys, _value = parse_override(text)
                if keys[0] in NOT_PER_RUN:
                    raise ConfigError(f"extra_runs[{i}]: {text!r}: {keys[0]} cannot change "
                                      f"per run (set it for the whole command)")
        if not 0 <= self.heap_trim_bytes < 1 << 31:
            raise ConfigError(f"heap_trim_bytes: {self.heap_trim_bytes} must be between 0 "
                              f"and 2147483647 (0 = glibc's default)")
        # The engine sharing a CPU with host workers is allowed (one-CPU machines have
        # no choice); the launcher's report warns about it instead of refusing.


# keys an extra run may not change: they say which runs a command makes
NOT_PER_RUN = ("mode", "modes", "sweep", "extra_runs", "name", "source")


def from_dict(data: dict, overrides: Iterable[str] = ()) -> Config:
    """Build a Config from a mapping plus ``--set`` style overrides."""
    data = dict(data)
    for text in overrides:
        keys, value = parse_override(text)
        apply_override(data, keys, value)
    return build(Config, data)


def load(path: Optional[str | Path], overrides: Iterable[str] = ()) -> Config:
    """Load ``path`` (or only defaults when None) with ``--set`` overrides applied."""
    data = read_yaml(path) if path is not None else {}
    if path is not None:
        data.setdefault("source", str(path))
    return from_dict(data, overrides)
