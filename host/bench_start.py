"""``toad bench start [--json FILE] [--runs N]``: how long ``toad engine`` takes to start.

Cold: the engine finds no compiled code for this build and compiles it (numba; a
first run after an install or a change to a kernel's source, toad/compiled.py).
Warm: it loads the cache the cold start wrote. Each start is timed from the process's
launch until its OE memory says "running" (a host may attach from then on), in a
fresh temporary cache directory for the cold one (``TOAD_NUMBA_CACHE``), so the
machine's own cache is left as it is. Also timed: the host side's compile (``python
-m host.worker --compile``) after the engine's, and warm.

JSON keys: engine_start_s.{cold,warm} (lists, one per run), host_compile_s.{cold,warm}.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

from toad.engine_stats import EngineNotRunning, read_engine_stats
from toad.experiment.report import write_json

TIMEOUT_S = 600.0


def parse_args(argv):
    p = argparse.ArgumentParser(prog="toad bench start", description=__doc__.splitlines()[0])
    p.add_argument("--json", metavar="FILE", help="write the results as JSON")
    p.add_argument("--runs", type=int, default=1, help="cold and warm starts of each")
    return p.parse_args(argv)


def engine_start(cache: str, name: str) -> float:
    """Seconds from launching ``python -m engine`` until it runs (then it is stopped)."""
    env = dict(os.environ, TOAD_NUMBA_CACHE=cache)
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "engine", "--quiet", "--set", f"name={name}",
                             "--set", "engine.polling=adaptive"], env=env,
                            stderr=subprocess.DEVNULL)
    try:
        while time.monotonic() - start < TIMEOUT_S:
            if proc.poll() is not None:
                raise SystemExit(f"toad bench start: the engine exited ({proc.returncode})")
            try:
                if read_engine_stats(name)["state"] == "running":
                    return time.monotonic() - start
            except EngineNotRunning:
                pass
            time.sleep(0.005)
        raise SystemExit("toad bench start: the engine did not start in time")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def host_compile(cache: str) -> float:
    env = dict(os.environ, TOAD_NUMBA_CACHE=cache)
    start = time.monotonic()
    subprocess.run([sys.executable, "-m", "host.worker", "--compile"], env=env, check=True,
                   stderr=subprocess.DEVNULL, timeout=TIMEOUT_S)
    return time.monotonic() - start


def run(args) -> dict:
    result = {"engine_start_s": {"cold": [], "warm": []},
              "host_compile_s": {"cold": [], "warm": []}}
    for i in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="toad-bench-start-") as cache:
            name = f"start{os.getpid()}-{i}"
            for kind in ("cold", "warm"):
                result["engine_start_s"][kind].append(round(engine_start(cache, name), 3))
            for kind in ("cold", "warm"):
                result["host_compile_s"][kind].append(round(host_compile(cache), 3))
    result["settings"] = {"runs": args.runs, "load_average": list(os.getloadavg())}
    return result


def print_table(result: dict) -> None:
    print(f"{'seconds':<40}{'cold':>10}{'warm':>10}")
    for key, text in (("engine_start_s", "toad engine: launch to running"),
                      ("host_compile_s", "host side: compile or load")):
        cold, warm = result[key]["cold"], result[key]["warm"]
        print(f"{text:<40}{min(cold):>10.2f}{min(warm):>10.2f}")
    print("cold: an empty compiled-code cache (numba compiles); warm: the cache it wrote "
          "(best of the runs)")


def main(argv) -> int:
    args = parse_args(argv)
    result = run(args)
    print_table(result)
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    from toad.errors import run_main
    sys.exit(run_main(main))
