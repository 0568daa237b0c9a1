"""Config sections of an experiment: the workload and the host workers."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from .engine import check_cpu
from .loader import ConfigError, doc


@dataclass(frozen=True)
class HostConfig:
    cpus: tuple[int, ...] = doc("CPUs the host workers are pinned to", default=(0,))

    def validate(self, path: str) -> None:
        if not self.cpus:
            raise ConfigError(f"{path}.cpus: give at least one CPU")
        for i, cpu in enumerate(self.cpus):
            check_cpu(f"{path}.cpus[{i}]", cpu)


MAX_CONNECTIONS = 16000    # below toad's 16,384 ephemeral ports (engine/tcp/demux.py)


@dataclass(frozen=True)
class WorkloadConfig:
    kind: Literal["bulk", "rr", "crr"] = doc(
        "bulk: one long connection (iperf-like); rr: request/response; "
        "crr: a new connection per request", default="bulk")
    duration_s: float = doc("length of one measured run", default=5.0)
    warmup_s: float = doc("time run before measuring starts", default=0.5)
    chunk_bytes: tuple[int, ...] = doc(
        "application write/read size = anonymous buffer size; one run per value",
        default=(131072, 8192))
    sizes: tuple[int, ...] = doc("rr/crr: request = response size in bytes, one run per value",
                                 default=(64,))
    port: int = doc("TCP port of the receiving side", default=5001)
    connections: int = doc(
        "rr/crr: connections in request/response at once, each with one request "
        "outstanding (rr: opened before the measured waves, their set-up rate "
        "reported; crr: waves of this many new connections); the run reports "
        "transactions/s and the engine's memory per connection too. Each offload host "
        "gets qp.max_connections and each kernel-mode worker its descriptor limit "
        "(RLIMIT_NOFILE) raised to fit", default=1)
    repeat: int = doc(
        "measured runs per point (mode x chunk or size), interleaved; tables show the "
        "median of each figure and the min-max of the totals, JSON keeps every run",
        default=1)
    copy_sample: int = doc(
        "offload and inhost: time one socket-boundary copy in this many (offload: the "
        "TSC inside the compiled call; inhost: the wall clock) and report the copy as "
        "it cost in the run beside the calibrated one; 0 = off", default=64)
    peer: Literal["auto", "iperf", "python"] = doc(
        "tap topology, bulk: the Linux sender where toad receives. auto: iperf 2 when "
        "installed (fed toad's stream through a FIFO, every byte after its header "
        "checked), else toad's kernel-mode worker in the namespace; iperf: iperf 2 or an "
        "error; python: the worker. Where toad sends, the receiver is always the worker "
        "(iperf 2's server cannot check the bytes it gets)", default="auto")

    def validate(self, path: str) -> None:
        if self.duration_s <= 0:
            raise ConfigError(f"{path}.duration_s: {self.duration_s} must be > 0")
        if self.warmup_s < 0:
            raise ConfigError(f"{path}.warmup_s: {self.warmup_s} must be >= 0")
        for i, c in enumerate(self.chunk_bytes):
            if not 1 <= c <= 16 << 20:
                raise ConfigError(f"{path}.chunk_bytes[{i}]: {c} must be 1..16777216")
        for i, s in enumerate(self.sizes):
            if not 1 <= s <= 1 << 20:
                raise ConfigError(f"{path}.sizes[{i}]: {s} must be 1..1048576")
        if not 1 <= self.repeat <= 100:
            raise ConfigError(f"{path}.repeat: {self.repeat} must be 1..100")
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"{path}.port: {self.port} must be 1..65535")
        if not 1 <= self.connections <= MAX_CONNECTIONS:
            raise ConfigError(f"{path}.connections: {self.connections} must be "
                              f"1..{MAX_CONNECTIONS} (the ephemeral ports toad's stack "
                              f"has toward one server port)")
        if not 0 <= self.copy_sample <= 1 << 20:
            raise ConfigError(f"{path}.copy_sample: {self.copy_sample} must be 0..1048576 "
                              "(0 = off)")
