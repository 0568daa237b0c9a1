"""One run end to end: effective config, engine (offload), workers, figures.

    [(run, details)] = run_once(config, mode, unit)     # loopback: one run; TAP: two

The effective config of the run (the user's config with this run's mode, chunk or
size, and a unique instance name) is written as YAML into the launcher's temporary
directory; the engine and both workers load that file, so every process sees the
same validated settings.
"""
from __future__ import annotations

import dataclasses
import itertools
import os
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import yaml

from toad.config import Config, ConfigError, from_dict

from . import capture, counters
from .figures import build_run
from .launcher import Child, Launcher, RunFailed, read_json, stop_child

START_TIMEOUT_S = 60.0   # engine start (numba compiles on first use) and worker start
FINISH_MARGIN_S = 60.0   # beyond warmup + duration
_counter = itertools.count()
CONNECTION_MARGIN = 64   # QP rows beyond workload.connections (the listener, ...)


def instance_name(config: Config) -> str:
    """A name no other run (or test) on this machine uses at the same time."""
    suffix = f"-{os.getpid()}-{next(_counter)}"
    return config.name[:40 - len(suffix)] + suffix


def as_plain(value):
    """Dataclass -> YAML-ready dicts and lists."""
    if dataclasses.is_dataclass(value):
        return {f.name: as_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [as_plain(v) for v in value]
    return value


def effective(config: Config, mode: str, unit: int, name: str) -> Config:
    """This run's config: one mode, one chunk (bulk) or size (rr/crr), its own name."""
    data = as_plain(config)
    data.update(mode=mode, name=name)
    if config.workload.kind == "bulk":
        data["workload"]["chunk_bytes"] = [unit]
        # the anonymous receive buffer is the chunk (TOAD); how many: qp.recv_buffers
        # as configured, or qp.recv_pool_bytes / chunk (derived when the config loads)
        data["qp"]["recv_buffer_bytes"] = max(512, unit)
    else:
        data["workload"]["sizes"] = [unit]
        # each offload host's QP holds its connections (as a kernel-mode worker
        # raises its descriptor limit: host/workloads_many.py); crr's closing ones
        # keep their rows until the engine answers their CLOSE, beside the next wave
        waves = 2 if config.workload.kind == "crr" else 1
        need = waves * config.workload.connections + CONNECTION_MARGIN
        if config.workload.connections > 1 and data["qp"]["max_connections"] < need:
            data["qp"]["max_connections"] = need
    return from_dict(data)


class EngineStatsReader:
    """Samples the engine's stats block through one read-only mapping of OE memory
    (opening it per sample cost the launcher ~10% of a CPU); None when unreadable."""

    def __init__(self, name: str):
        self.name = name
        self.oe = None

    def __call__(self) -> Optional[dict]:
        from toad.engine_stats import OeMemory, stats_dict
        try:
            if self.oe is None:
                self.oe = OeMemory(self.name, read_only=True)
            return stats_dict(self.oe)
        except Exception:  # the engine may be gone (or not yet up) between two samples
            self.close()
            return None

    def close(self) -> None:
        if self.oe is not None:
            try:
                self.oe.close()
            except Exception:
                pass
            self.oe = None


def worker_cpus(config: Config) -> tuple[int, int]:
    """(send CPU, receive CPU): the first two host CPUs, or both on the only one."""
    cpus = config.host.cpus
    return cpus[0], cpus[min(1, len(cpus) - 1)]


def tap_allowed() -> Optional[str]:
    """None when this process may create a TAP device, else what is missing."""
    if not os.path.exists("/dev/net/tun"):
        return "/dev/net/tun is missing (load the tun module: modprobe tun)"
    if not os.access("/dev/net/tun", os.R_OK | os.W_OK):
        return "/dev/net/tun is not readable and writable by this user"
    if not has_net_admin():  # root without CAP_NET_ADMIN cannot create a TAP either
        return "this process lacks CAP_NET_ADMIN"
    return None


def has_net_admin() -> bool:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) & (1 << 12))
    except OSError:
        pass
    return False


def check_topology(config: Config, mode: str) -> None:
    """Refuse what cannot run here before starting anything."""
    if config.nic.kind != "tap":
        return
    missing = tap_allowed()
    if missing:
        raise ConfigError(f"nic.kind: tap needs root or CAP_NET_ADMIN and a usable "
                          f"/dev/net/tun: {missing} (run as root, or use nic.kind: loopback)")
    if mode == "kernel":
        raise ConfigError("nic.kind: tap runs toad's stack against Linux; use mode inhost "
                          "or offload (kernel mode is Linux against itself: nic.kind loopback)")


def run_once(config: Config, mode: str, unit: int,
             tick: Callable[[bool], None] = None) -> list[tuple[dict, dict]]:
    """Run ``config``'s workload in ``mode``: a list of (run JSON, details JSON).
    ``tick(measuring)`` is called while the run goes on (measuring: the workload
    has begun).

    Loopback gives one run (both sides are toad's); TAP gives two (toad sending to
    Linux, toad receiving from Linux: toad.experiment.tap).
    """
    check_topology(config, mode)
    if config.nic.kind == "tap":
        from .tap import run_tap
        return run_tap(config, mode, unit, tick)
    run_config = effective(config, mode, unit, instance_name(config))
    with Launcher(run_config.name) as launcher:
        path = prepare(launcher, run_config)
        engine = start_engine(launcher, run_config, path) if mode == "offload" else None
        send_cpu, recv_cpu = worker_cpus(run_config)
        linux_before = counters.read_linux() if mode == "kernel" else None
        recv = start_worker(launcher, path, "recv", recv_cpu)
        ready = launcher.workdir / "recv.ready"
        launcher.wait_until(ready.exists, START_TIMEOUT_S, "the receiving worker to listen")
        send = start_worker(launcher, path, "send", send_cpu)
        run, details = collect(launcher, run_config, send, recv, engine, tick, linux_before)
    note_leftovers(launcher, details)
    return [(run, details)]


def prepare(launcher: Launcher, run_config: Config) -> Path:
    """Write the run's effective config; compile the data path if this is its first
    run; check the mode's modules exist."""
    path = launcher.workdir / "run.yaml"
    path.write_text(yaml.safe_dump(as_plain(run_config), sort_keys=False))
    if run_config.mode != "kernel":
        compile_data_path(launcher)
        check_mode(launcher, path)
    return path


def compile_data_path(launcher: Launcher) -> None:
    """The first run after an install or a change compiles both sides' kernels (numba,
    cached: toad/compiled.py), each in a process of its own, before anything
    is started or timed; later runs find them all marked and skip this."""
    from toad.compiled import CACHE_DIR, missing
    if not missing():
        return
    print(f"toad: compiling the data path with numba (first run after an install or a "
          f"change; cached in {CACHE_DIR})", file=sys.stderr, flush=True)
    start = time.monotonic()
    for side in ("engine", "host.worker"):
        child = launcher.start(f"compile-{side}", ["-m", side, "--compile"])
        launcher.wait_exit([child], COMPILE_TIMEOUT_S)
    print(f"toad: compiled in {time.monotonic() - start:.0f} s", file=sys.stderr, flush=True)


def collect(launcher: Launcher, run_config: Config, send: Child, recv: Child,
            engine: Optional[Child], tick, linux_before: Optional[dict] = None
            ) -> tuple[dict, dict]:
    """Wait for both workers, then turn their results into the run's figures."""
    w = run_config.workload
    started = measuring(launcher, send)
    launcher.wait_exit([recv, send], w.warmup_s + w.duration_s + FINISH_MARGIN_S,
                       tick and (lambda: tick(started())))
    linux_after = counters.read_linux() if linux_before is not None else None
    samples = None
    if engine is not None:
        sampler = launcher.samplers[0]
        sampler.stop()
        samples = {"cpu": sampler.cpu, "busy": sampler.busy, "cpu_busy": sampler.cpu_busy,
                   "cpu_steal": sampler.cpu_steal}
    results = {"send": read_json(send.out_path), "recv": read_json(recv.out_path)}
    run, details = build_run(run_config, results["send"], results["recv"], samples)
    details["pinning"] = pinning(run_config, results, engine)   # (the engine still runs)
    run["counters"] = run_counters(launcher, run_config, results, engine, samples,
                                   linux_before, linux_after)
    details["warnings"] = warnings(run_config, details["pinning"], engine is not None)
    if run_config.nic.pcap:
        details["pcap"] = capture.files(run_config)
        if run_config.mode == "kernel":
            details["warnings"].append(capture.KERNEL_NOT_CAPTURED)
    if engine is not None and run["counters"]["retransmits"]["segments"] is None:
        details["warnings"].append("the engine wrote no counters when it stopped "
                                   "(its stack's counters are null in this run)")
    details["engine_busy_source"] = ("read_engine_stats" if samples and samples["busy"]
                                     else "missing (the engine's stats block was unreadable)"
                                     if engine is not None else None)
    return run, details


def run_counters(launcher: Launcher, run_config: Config, results: dict,
                 engine: Optional[Child], samples: Optional[dict],
                 linux_before: Optional[dict], linux_after: Optional[dict]) -> dict:
    """The run's ``counters`` (toad/experiment/counters.py) from the mode's source.
    Offload: the engine is stopped here, so that it writes its summary."""
    if engine is not None:
        stop_child(engine)
        path = summary_path(launcher)
        summary = read_json(path) if path.exists() else None
        pids = {side: results[side]["pid"] for side in ("send", "recv")}
        return counters.from_engine(summary, counters.qp_rows(samples["busy"], pids))
    if run_config.mode == "inhost":
        return counters.from_stacks(results["send"].get("stack_counters"),
                                    results["recv"].get("stack_counters"))
    return counters.from_linux(linux_before, linux_after)


def started_path(launcher: Launcher) -> Path:
    """Created by the sending worker when its workload begins (the progress counts
    measured time from there)."""
    return launcher.workdir / "send.started"


def measuring(launcher: Launcher, send: Child) -> Callable[[], bool]:
    """Whether the workload runs (a sender that writes no marker: from its start)."""
    marker = started_path(launcher)
    if "--started" not in send.proc.args:
        return lambda: True
    return marker.exists


def summary_path(launcher: Launcher) -> Path:
    return launcher.workdir / "engine-summary.json"


def note_leftovers(launcher: Launcher, details: dict) -> None:
    if launcher.leftovers:
        details["warnings"].append("removed shared memory a child left behind: "
                                   + ", ".join(launcher.leftovers))


class ModeNotBuilt(RunFailed):
    """The mode's host modules do not exist yet (a compare can go on without it)."""


COMPILE_TIMEOUT_S = 600.0


def check_mode(launcher: Launcher, path: Path) -> None:
    """Fail with the worker's one line when the mode's host modules do not exist."""
    child = launcher.start("check", ["-m", "host.worker", "--config", str(path), "--check"])
    try:
        launcher.wait_exit([child], START_TIMEOUT_S)
    except RunFailed as exc:
        if "not built yet" in str(exc):
            raise ModeNotBuilt(str(exc)) from None
        raise


def start_engine(launcher: Launcher, config: Config, path: Path) -> Child:
    """``python -m engine RUN.yaml``, pinned; returns once its OE memory exists."""
    engine = launcher.start("engine", ["-m", "engine", str(path),
                                       "--summary", str(summary_path(launcher))])
    launcher.wait_until(lambda: engine_running(config.name), START_TIMEOUT_S,
                        "the engine's OE memory to be up")
    try:
        os.sched_setaffinity(engine.pid, {config.engine.cpu})
    except OSError as exc:
        raise RunFailed(f"engine.cpu: cannot pin the engine to CPU {config.engine.cpu}: "
                        f"{exc.strerror}") from None
    launcher.sample(engine, stats=EngineStatsReader(config.name), cpu=config.engine.cpu)
    return engine


def engine_running(name: str) -> bool:
    """True once the engine's OE memory exists and says "running"."""
    from toad.engine_stats import EngineNotRunning, read_engine_stats
    try:
        return read_engine_stats(name)["state"] == "running"
    except EngineNotRunning:
        return False


def start_worker(launcher: Launcher, path: Path, role: str, cpu: int,
                 extra: tuple[str, ...] = (), prefix: tuple[str, ...] = (),
                 name: Optional[str] = None, module: str = "host.worker") -> Child:
    """``python -m host.worker`` (or ``module``, which takes the same arguments)."""
    name = name or role
    out = launcher.workdir / f"{name}.json"
    argv = ["-m", module, "--config", str(path), "--role", role,
            "--cpu", str(cpu), "--out", str(out), *extra]
    if role == "recv" and "--ready" not in extra:
        argv += ["--ready", str(launcher.workdir / "recv.ready")]
    if role == "send" and module == "host.worker":
        argv += ["--started", str(started_path(launcher))]
    return launcher.start(name, argv, out_path=out, prefix=prefix)


def pinning(config: Config, results: dict, engine: Optional[Child]) -> dict:
    """The CPUs each process actually ran on (as the processes reported them)."""
    out = {role: results[role]["affinity"] for role in ("send", "recv")}
    if engine is not None:
        out["engine"] = engine.affinity()
    return out


def warnings(config: Config, obtained: dict, offload: bool) -> list[str]:
    out = []
    if offload:
        engine_cpus = set(obtained.get("engine") or [config.engine.cpu])
        for role in ("send", "recv"):
            shared = engine_cpus & set(obtained[role])
            if shared:
                out.append(f"the engine shares CPU {sorted(shared)} with the {role} worker: "
                           f"host and engine figures disturb each other")
    wire = config.nic.wire
    if config.mode == "kernel" and any((wire.loss, wire.duplicate, wire.reorder,
                                        wire.corrupt)):
        out.append("nic.wire faults apply to toad's NICs only: Linux's TCP in kernel mode "
                   "met none in this run")
    if (wire.bandwidth_gbps or wire.delay_us) and not (
            config.mode == "offload" and config.nic.kind == "loopback"):
        out.append("nic.wire.bandwidth_gbps and delay_us shape the engine's loopback wire "
                   "only: this run had neither")
    if obtained["send"] == obtained["recv"]:
        out.append(f"send and receive workers share CPU {obtained['send']} "
                   f"(host.cpus has one CPU); per-Gb/s figures stay valid")
    return out
