"""``toad bench copy [CONFIG] [--chunk N]... [--gap-us G] [--copies N] [--json FILE]``:
what one boundary copy costs back to back, and after a pause.

A run's "memory copies" row is calibrated back to back (one copy after another, as
toad.experiment.accounting.calibrate_copy does); the row "timed in the run" times the
same copies where the socket layer makes them (host/copy_timer.py), each after other
work, and finds them several times dearer. This bench isolates the pause: on one
pinned CPU (``host.cpus[0]``) it copies a chunk into successive slots of a 4 MB
region (the calibration's set-up) four ways:

* back to back;
* after a busy wait of ``--gap-us`` between copies (Python reading the clock, no
  memory of its own);
* after a sleep of ``--gap-us`` between copies (the CPU goes idle, as a worker
  waiting for its peer does);
* after the same busy wait, with the destination slot read (untimed) just before the
  copy: when this is as cheap as back to back, what the pause costs is the
  destination's cache lines, not the copy's own work.

Each figure is the median over ``--copies`` timed copies, in ns per KB and in percent
of one CPU per Gb/s (what that copy would add to a side's figure). JSON: {"cpu",
"gap_us", "chunks": [{"chunk_bytes", "back_to_back", "after_spin", "after_sleep",
"after_spin_dst_read"}, each {"ns_per_kb", "pct_per_gbps"}]}.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import zlib

from toad.config import load
from toad.experiment.report import write_json
from toad.memory import populated_map
from toad.pinning import pin

REGION = 4 << 20
WAYS = ("back_to_back", "after_spin", "after_sleep", "after_spin_dst_read")


def parse_args(argv):
    # the description: the docstring's first paragraph, as one line
    p = argparse.ArgumentParser(prog="toad bench copy",
                                description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("config", nargs="?", help="YAML config (its host.cpus[0]; default: built-in)")
    p.add_argument("--chunk", type=int, action="append", help="bytes (repeatable; "
                   "default 131072 and 8192)")
    p.add_argument("--gap-us", type=float, default=100.0, help="pause between copies")
    p.add_argument("--copies", type=int, default=2000, help="timed copies per way")
    p.add_argument("--json", metavar="FILE", help="write the results as JSON")
    args = p.parse_args(argv)
    for c in args.chunk or []:
        if not 1 <= c <= REGION // 2:
            p.error(f"--chunk {c}: must be 1..{REGION // 2}")
    if args.gap_us < 0 or args.copies < 1:
        p.error("--gap-us must be >= 0 and --copies >= 1")
    return args


def spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def median_copy_ns(chunk: int, copies: int, pause, read_dst: bool = False) -> float:
    """Median ns of one ``chunk`` copy into successive slots of the region, with
    ``pause()`` (or nothing) before each and, with ``read_dst``, the slot read (a
    CRC-32 over it, untimed) after the pause; one untimed pass first (pages, TLB)."""
    src = memoryview(os.urandom(chunk))
    area = populated_map(REGION)
    try:
        dst = memoryview(area)
        slots = REGION // chunk
        for slot in range(slots):
            dst[slot * chunk:(slot + 1) * chunk] = src
        clock, samples = time.perf_counter_ns, []
        for i in range(copies):
            if pause is not None:
                pause()
            at = (i % slots) * chunk
            if read_dst:
                zlib.crc32(dst[at:at + chunk])
            start = clock()
            dst[at:at + chunk] = src
            samples.append(clock() - start)
        dst.release()
    finally:
        area.close()
    return statistics.median(samples)


def figures(ns: float, chunk: int) -> dict:
    # % of one CPU per Gb/s = 100 * seconds per gigabit = 100 * ns per byte / 8
    return {"ns_per_kb": round(ns * 1024 / chunk, 2),
            "pct_per_gbps": round(100 * ns / chunk / 8, 3)}


def run(args) -> dict:
    cpu = load(args.config).host.cpus[0]
    pin([cpu], what="host.cpus[0]")
    gap = args.gap_us / 1e6
    ways = {"back_to_back": (None, False), "after_spin": (lambda: spin(gap), False),
            "after_sleep": (lambda: time.sleep(gap), False),
            "after_spin_dst_read": (lambda: spin(gap), True)}
    chunks = []
    for chunk in args.chunk or [131072, 8192]:
        row = {"chunk_bytes": chunk}
        for name, (pause, read_dst) in ways.items():
            row[name] = figures(median_copy_ns(chunk, args.copies, pause, read_dst), chunk)
        chunks.append(row)
    return {"cpu": cpu, "gap_us": args.gap_us, "chunks": chunks}


def print_table(result: dict) -> None:
    gap = f"{result['gap_us']:g} us"
    print(f"one copy into a 4 MB region on CPU {result['cpu']}, ns per KB "
          f"(% of one CPU per Gb/s), median")
    heads = ["back to back", f"after {gap} spin", f"after {gap} sleep",
             "spin, destination read"]
    print(f"{'chunk':>8}" + "".join(f"  {h:>22}" for h in heads))
    for row in result["chunks"]:
        cells = [f"{row[k]['ns_per_kb']:.1f} ({row[k]['pct_per_gbps']:.2f})" for k in WAYS]
        print(f"{row['chunk_bytes']:>8}" + "".join(f"  {c:>22}" for c in cells))


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
