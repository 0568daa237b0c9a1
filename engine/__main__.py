"""``toad engine [CONFIG] [--set key=value]... [--summary FILE]``: run the engine in the foreground.

Pins itself to ``engine.cpu`` (and says which CPUs it actually got), creates OE
memory ``/dev/shm/toad-<name>-oe`` and the wake semaphore (removing first what a
dead engine or host of that name left, and saying so), serves host QPs until
SIGINT/SIGTERM/SIGHUP, then detaches every QP and removes what it created.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from toad.config import load
from toad.errors import run_main
from toad.memory import keep_heap
from toad.pinning import pin
from toad.shm import StopSignals


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="toad engine", description="Run the engine in the foreground (pinned, polling).")
    parser.add_argument("config", nargs="?", help="YAML config (default: built-in defaults)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set engine.cpu=1")
    parser.add_argument("--quiet", action="store_true", help="no start/stop lines")
    parser.add_argument("--compile", action="store_true",
                        help="only compile (or load) the engine's compiled code, then exit")
    parser.add_argument("--summary", metavar="FILE",
                        help="on stop, write the offload, stack and wire counters to FILE "
                             "(JSON; the launcher reads it into the run's counters)")
    return parser.parse_args(argv)


def main(argv) -> int:
    args = parse_args(argv)
    if args.compile:
        import engine.loop, engine.offload, engine.fast.path  # noqa: E401,F401 (kernels compile)
        return 0
    config = load(args.config, args.set)
    keep_heap(config.heap_trim_bytes)
    from engine.loop import Engine  # after the config is known to be valid
    from engine.offload import close as close_offload, install as install_offload, stop_watcher

    with StopSignals() as stop:
        obtained = pin([config.engine.cpu], what="engine.cpu")
        engine = Engine(config)
        try:
            offload = install_offload(engine)   # sockets: NIC + Stack poller, handlers
        except BaseException:
            engine.close()
            raise
        try:
            engine.registers.set_cpu(obtained[0] if len(obtained) == 1 else -1)
            if not args.quiet:
                print(f"toad engine {config.name!r}: OE memory /dev/shm/toad-{config.name}-oe, "
                      f"pinned to CPU {config.engine.cpu} (affinity obtained: "
                      f"{', '.join(map(str, obtained))}), {config.engine.polling} polling",
                      flush=True)
                if engine.registers.reclaimed:
                    print(f"toad engine {config.name!r}: removed what a dead engine or host "
                          f"of this name left in /dev/shm: "
                          f"{', '.join(engine.registers.reclaimed)}", flush=True)
            engine.run(stop)
        finally:
            stop_watcher(offload)
            try:
                engine.close()               # resets the QPs' connections on the NIC
            finally:
                close_offload(offload)
    summary = offload.summary()
    if args.summary:
        write_summary(args.summary, summary)
    if not args.quiet:
        busy = engine.busy_ns / 1e9
        print(f"toad engine {config.name!r}: stopped after {engine.iterations} iterations, "
              f"{busy:.3f} s of useful work, {engine.sleep_ns / 1e9:.3f} s asleep, "
              f"{engine.slots.reclaimed} QP(s) reclaimed", flush=True)
        print(f"toad engine {config.name!r}: offload {json.dumps(summary)}", flush=True)
    return 0


def write_summary(path: str, summary: dict) -> None:
    """Write then rename, so the launcher never reads half a file."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(summary, f)
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(run_main(main))
