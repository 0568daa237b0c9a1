"""``toad bench NAME``: micro-benchmarks that write JSON and print a table.

    toad bench rings [--json FILE]   host<->engine rings: round trip and records/s
    toad bench tcp [--json FILE]     one stack on one CPU against Linux over TAP
    toad bench stack [--json FILE]   checksum kernels, frame building, bulk TCP through
                                     stacks on the in-process loopback wire
    toad bench offload [--json FILE] bulk TCP through the engine (offload mode): goodput,
                                     host CPU s/GB per side; --profile profiles the engine
    toad bench copy [--json FILE]    one chunk copy back to back, after a spin, after a
                                     sleep, after a spin and a read of the destination
                                     (why a copy costs more in a run than calibrated)
    toad bench start [--json FILE]   toad engine's start with its compiled code cold
                                     (numba compiles it) and warm (cached)
    toad bench readiness [--json FILE]  an offloaded socket's readiness descriptor: cost
                                     per event; 64 B rr through asyncio, offloaded and
                                     over the kernel
"""
from __future__ import annotations

import importlib
import sys

from toad.errors import run_main

BENCHES = {
    "rings": "host.bench_rings",
    "tcp": "host.bench_tcp",
    "stack": "host.bench_stack",
    "offload": "host.bench_offload",
    "copy": "host.bench_copy",
    "start": "host.bench_start",
    "readiness": "host.bench_readiness",
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in BENCHES:
        print(__doc__.strip(), file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    module = importlib.import_module(BENCHES[argv[0]])
    return module.main(argv[1:])


if __name__ == "__main__":
    sys.exit(run_main(main))
