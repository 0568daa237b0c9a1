"""``toad perturb``: does the engine CPU slow the host down? (TOAD section IV)

    toad perturb [CONFIG] [--set k=v]... [--seconds S] [--size BYTES] [--rounds N] [--json FILE]

One copier process per host CPU (pinned) copies a block much larger than the caches
back and forth and reports its bandwidth, first with the engine CPU idle, then while
``python -m engine.perturb`` (pinned to the engine CPU) copies blocks in its own
memory; rounds alternate idle / loaded. The report gives the mean host copy bandwidth
in both conditions and the slowdown (TOAD measured 642 -> 637 MB/s, < 1%).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Sequence

from toad.config import load
from toad.errors import ToadError
from toad.memory import block

def copier_main(argv: Sequence[str]) -> int:
    """``python -m toad.perturb --copier --cpu C --size B --seconds S --out F``."""
    import numpy as np
    p = argparse.ArgumentParser(prog="python -m toad.perturb --copier")
    p.add_argument("--copier", action="store_true")
    p.add_argument("--cpu", type=int, required=True)
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    os.sched_setaffinity(0, {args.cpu})
    src, dst = block(args.size, 3), block(args.size, 3)
    np.copyto(dst, src)  # warm: TLB and page tables
    copied, start = 0, time.monotonic()
    while time.monotonic() - start < args.seconds:
        np.copyto(dst, src)
        src, dst = dst, src
        copied += args.size
    elapsed = time.monotonic() - start
    with open(args.out + ".tmp", "w") as f:
        json.dump({"cpu": args.cpu, "mb_per_s": copied / elapsed / 1e6}, f)
    os.replace(args.out + ".tmp", args.out)
    return 0


def parse(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="toad perturb")
    p.add_argument("config", nargs="?", default=None,
                   help="YAML config for engine.cpu and host.cpus (default: built-in defaults)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (YAML value), e.g. --set engine.cpu=1")
    p.add_argument("--seconds", type=float, default=2.0, help="length of one measurement")
    p.add_argument("--size", type=int, default=128 << 20, help="bytes per copied block")
    p.add_argument("--rounds", type=int, default=2, help="idle/loaded pairs")
    p.add_argument("--json", metavar="FILE", help="write the results as JSON")
    args = p.parse_args(argv)
    if args.seconds <= 0 or args.rounds < 1 or args.size < 1 << 20:
        raise ToadError("toad perturb: use --seconds > 0, --rounds >= 1, --size >= 1048576")
    return args


def host_bandwidth(launcher, cpus, size: int, seconds: float, tag: str) -> float:
    """Total MB/s of one copier per host CPU, run at the same time."""
    children = []
    for cpu in cpus:
        out = launcher.workdir / f"copy-{tag}-{cpu}.json"
        argv = ["-m", "toad.perturb", "--copier", "--cpu", str(cpu), "--size", str(size),
                "--seconds", str(seconds), "--out", str(out)]
        children.append(launcher.start(f"host copier {cpu}", argv, out_path=out))
    launcher.wait_exit(children, seconds + 60)
    return sum(json.loads(c.out_path.read_text())["mb_per_s"] for c in children)


def measure(config, args) -> dict:
    from toad.experiment.launcher import Launcher, stop_child
    idle, loaded = [], []
    with Launcher(f"perturb-{os.getpid()}") as launcher:
        for r in range(args.rounds):
            idle.append(host_bandwidth(launcher, config.host.cpus, args.size, args.seconds,
                                       f"idle{r}"))
            ready = launcher.workdir / f"engine{r}.ready"
            engine = launcher.start(f"engine copier {r}", [
                "-m", "engine.perturb", "--size", str(args.size),
                "--seconds", str(args.seconds + 60), "--ready", str(ready)])
            os.sched_setaffinity(engine.pid, {config.engine.cpu})
            launcher.wait_until(ready.exists, 60, "the engine copier")
            loaded.append(host_bandwidth(launcher, config.host.cpus, args.size, args.seconds,
                                         f"loaded{r}"))
            stop_child(engine)
            launcher.children.remove(engine)
    a, b = statistics.mean(idle), statistics.mean(loaded)
    return {"host_cpus": list(config.host.cpus), "engine_cpu": config.engine.cpu,
            "block_bytes": args.size, "seconds": args.seconds,
            "idle_mb_per_s": round(a, 1), "loaded_mb_per_s": round(b, 1),
            "idle_rounds": [round(x, 1) for x in idle],
            "loaded_rounds": [round(x, 1) for x in loaded],
            "slowdown_pct": round(100.0 * (a - b) / a, 2)}


def main(argv: Sequence[str]) -> int:
    args = parse(argv)
    config = load(args.config, args.overrides)
    if config.engine.cpu in config.host.cpus:
        raise ToadError(f"engine.cpu: {config.engine.cpu} is also a host CPU; the check needs "
                        f"the engine on its own CPU (set host.cpus without it)")
    result = measure(config, args)
    print(f"host copy bandwidth (CPUs {result['host_cpus']}, {args.size >> 20} MB blocks):")
    print(f"  engine CPU {result['engine_cpu']} idle:    {result['idle_mb_per_s']:.0f} MB/s "
          f"{result['idle_rounds']}")
    print(f"  engine CPU {result['engine_cpu']} copying: {result['loaded_mb_per_s']:.0f} MB/s "
          f"{result['loaded_rounds']}")
    print(f"  slowdown: {result['slowdown_pct']:.1f}%  (TOAD: 642 -> 637 MB/s, < 1%)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    if "--copier" in sys.argv[1:]:
        sys.exit(copier_main(sys.argv[1:]))
    from toad.errors import run_main
    sys.exit(run_main(main))
