"""``toad run``, ``toad compare`` and ``toad sweep``: argument parsing and the run loop.

    toad run CONFIG [--set key=value]... [--json FILE] [--plot FILE]
    toad compare [CONFIG] [--modes kernel,inhost,offload] [--set ...] [--json FILE] [--plot FILE]
    toad sweep CONFIG [--param NAME=V1,V2,...] [--modes ...] [--set ...] [--json FILE] [--plot FILE]

``toad sweep`` varies the config's ``sweep:`` key when --param is not given, and
writes a PNG only with --plot.

Each run is one (mode, chunk or size) pair, ``workload.repeat`` times over (all pairs
once, then again: repeats.py); the first failing run stops the command with one line
and a non-zero exit (a run with wrong bytes is never a figure).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from typing import Optional, Sequence

from toad.config import Config, ConfigError, from_dict, load

from . import capture, report
from .progress import Progress
from .repeats import summarize
from .runner import ModeNotBuilt, run_once

MODES = ("kernel", "inhost", "offload")


def default_config() -> str:
    """configs/default.yaml of the source tree (or of the current directory)."""
    here = Path(__file__).resolve().parents[2] / "configs" / "default.yaml"
    return str(here if here.exists() else Path("configs") / "default.yaml")


def parser(prog: str, config_optional: bool = False) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog)
    if config_optional:
        p.add_argument("config", nargs="?", default=None,
                       help="YAML experiment file (default: configs/default.yaml)")
    else:
        p.add_argument("config", help="YAML experiment file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config key (YAML value), e.g. --set workload.duration_s=2")
    p.add_argument("--json", metavar="FILE", help="write the results as JSON")
    p.add_argument("--plot", metavar="FILE", help="write a PNG plot")
    p.add_argument("--pcap", metavar="FILE",
                   help="capture the frames on toad's NIC (pcap, each frame once; several "
                        "runs: a file each, named after the run; inhost: also FILE-b for "
                        "the sending host); the same as --set nic.pcap=FILE")
    return p


def overrides(args) -> list[str]:
    """The --set overrides, and --pcap as one of them (quoted: any file name)."""
    extra = [f"nic.pcap={json.dumps(args.pcap)}"] if args.pcap else []
    return [*args.overrides, *extra]


def parse_modes(text: Optional[str], config: Config) -> list[str]:
    if not text:
        return list(config.modes)
    modes = [m.strip() for m in text.split(",") if m.strip()]
    for m in modes:
        if m not in MODES:
            raise ConfigError(f"--modes: {m!r} is not one of {', '.join(MODES)}")
    return modes


def units(config: Config) -> tuple[int, ...]:
    w = config.workload
    return w.chunk_bytes if w.kind == "bulk" else w.sizes


def variants(config: Config) -> list[Config]:
    """The config and one config per entry of its ``extra_runs`` (its overrides
    applied), each checked now: a bad extra run fails before any run starts."""
    from .runner import as_plain
    out = [config]
    base = as_plain(config)
    base["extra_runs"] = []
    for i, extra in enumerate(config.extra_runs):
        try:
            out.append(from_dict(base, extra))
        except ConfigError as exc:
            raise ConfigError(f"extra_runs[{i}]: {exc}") from None
    return out


def stop_on_sigterm() -> None:
    """SIGTERM tears down like Ctrl-C (the launcher's cleanup runs on the way out)."""
    def handler(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, handler)


def run_all(config: Config, modes: list[str], label: str = "",
            skip_unbuilt: bool = False, more_runs: bool = False,
            progress: Optional[Progress] = None) -> tuple[list[dict], list[dict]]:
    """Every (mode, unit) run of ``config`` and of each of its ``extra_runs``, in
    order, with a progress line.

    With ``skip_unbuilt`` (compare over the config's default modes) a mode whose host
    modules do not exist yet is left out with a note on stderr instead of stopping
    the comparison; asked for explicitly, it is an error. ``more_runs``: the command
    makes other runs too (a sweep): each capture gets its own file (capture.py),
    and ``progress`` counts them all.
    """
    w = config.workload
    plan = [(r, c, m, u) for r in range(w.repeat) for c in variants(config) for m in modes
            for u in units(c)]
    one_run = len(plan) == 1 and not more_runs
    progress = progress or Progress(len(plan))
    runs, details, skipped = [], [], set()
    try:
        for repeat, run_config, mode, unit in plan:
            if mode in skipped:
                continue
            nth = f" ({repeat + 1}/{w.repeat})" if w.repeat > 1 else ""
            rw = run_config.workload
            progress.begin(f"{label}{mode} {rw.kind} {report.size_label(unit)}{nth}",
                           rw.warmup_s + rw.duration_s)
            if config.nic.pcap and not one_run:
                run_config = capture.for_run(run_config, capture.point_path(
                    config.nic.pcap, label, mode,
                    f"{rw.kind}-" * bool(config.extra_runs)
                    + report.size_label(unit).replace(" ", ""),
                    f"r{repeat + 1}" if w.repeat > 1 else ""))
            try:
                pairs = run_once(run_config, mode, unit, tick=progress.tick)
            except ModeNotBuilt as exc:
                if not skip_unbuilt:
                    raise
                skipped.add(mode)
                progress.done()
                print(f"toad: {mode} left out: {exc}", file=sys.stderr)
                continue
            progress.end(", ".join(outcome(run) for run, _ in pairs))
            for _, detail in pairs:
                detail["repeat"] = repeat   # (details: the run keys stay the documented ones)
            runs += [run for run, _ in pairs]
            details += [detail for _, detail in pairs]
    finally:
        progress.done()
    if not runs:
        raise ConfigError("no mode could run (see above)")
    return runs, details


def outcome(run: dict) -> str:
    """A run in a few words, for its progress line."""
    if run["workload"] == "bulk":
        return f"{run['goodput_gbps']:.2f} Gb/s"
    return f"p50 {run['latency_us']['p50']:.1f} us"


def plan_size(config: Config, modes: list[str]) -> int:
    return config.workload.repeat * len(modes) * sum(len(units(c)) for c in variants(config))


def emit(text: str) -> None:
    """Print the report; a closed pipe (``toad compare | head``) is not an error."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python's exit-time flush goes nowhere


def finish(config: Config, args, runs: list[dict], details: list[dict], plot) -> int:
    if args.json:  # the JSON first: it is the stable record, the table is for eyes
        report.write_json(args.json, report.document(config, runs, details))
    emit(report.render(runs, details))
    print_captures(details)
    if args.plot:
        plot(summarize(runs, details)[0], args.plot)
        print(f"plot: {args.plot}")
    return 0


def print_captures(details: list[dict]) -> None:
    for detail in details:
        for path in detail.get("pcap", ()):
            print(f"pcap: {path}")


def run_main(argv: Sequence[str]) -> int:
    args = parser("toad run").parse_args(argv)
    stop_on_sigterm()
    config = load(args.config, overrides(args))
    runs, details = run_all(config, [config.mode])
    from . import plots
    return finish(config, args, runs, details, plots.compare_plot)


def compare_main(argv: Sequence[str]) -> int:
    p = parser("toad compare", config_optional=True)
    p.add_argument("--modes", help="comma-separated modes (default: the config's `modes`)")
    args = p.parse_args(argv)
    stop_on_sigterm()
    config = load(args.config or default_config(), overrides(args))
    runs, details = run_all(config, parse_modes(args.modes, config),
                            skip_unbuilt=not args.modes)
    from . import plots
    return finish(config, args, runs, details, plots.compare_plot)


def sweep_main(argv: Sequence[str]) -> int:
    p = parser("toad sweep")
    p.add_argument("--param", metavar="NAME=V1,V2,...",
                   help="the config key to vary and its values, e.g. nic.mtu=1500,9000,65535 "
                        "(default: the config's `sweep`)")
    p.add_argument("--modes", help="comma-separated modes (default: the config's `mode`)")
    args = p.parse_args(argv)
    stop_on_sigterm()
    base = load(args.config, overrides(args))
    if not (args.param or base.sweep):
        raise ConfigError("toad sweep: give --param NAME=V1,V2,... (or `sweep:` in the config)")
    name, values = parse_param(args.param or base.sweep)
    modes = parse_modes(args.modes, base) if args.modes else [base.mode]
    runs, details = [], []
    progress = Progress(len(values) * plan_size(base, modes))
    for value in values:
        config = load(args.config, [*overrides(args), f"{name}={value}"])
        more_runs, more_details = run_all(config, modes, label=f"{name}={value} ",
                                          more_runs=len(values) > 1, progress=progress)
        for run, detail in zip(more_runs, more_details):
            detail["sweep"] = {"param": name, "value": config_value(config, name)}
        runs += more_runs
        details += more_details
    emit(report.sweep_table(name, runs, details))
    print_captures(details)
    if args.json:
        report.write_json(args.json, report.document(base, runs, details))
    if args.plot:
        from .sweep_plot import sweep_plot
        sweep_plot(name, *summarize(runs, details), args.plot)
        print(f"plot: {args.plot}")
    return 0


def config_value(config: Config, name: str):
    """The value of key ``name`` (a.b.c) in the loaded config: what the run used
    (``tcp.checksum=off`` is the word "off", not YAML's false)."""
    value = config
    for part in name.split("."):
        value = getattr(value, part)
    if isinstance(value, tuple):   # a list key given one value (chunk_bytes=8192)
        return value[0] if len(value) == 1 else list(value)
    return value


def parse_param(text: str) -> tuple[str, list[str]]:
    if "=" not in text:
        raise ConfigError(f"--param {text!r}: expected NAME=V1,V2,...")
    name, raw = text.split("=", 1)
    values = [v.strip() for v in raw.split(",") if v.strip()]
    if not name.strip() or not values:
        raise ConfigError(f"--param {text!r}: expected NAME=V1,V2,...")
    return name.strip(), values


if __name__ == "__main__":
    from toad.errors import run_main as boundary
    sys.exit(boundary(run_main))
