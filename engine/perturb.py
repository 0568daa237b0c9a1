"""The engine side of ``toad perturb``: copy blocks inside "OE memory" until stopped.

    python -m engine.perturb --size BYTES --seconds MAX --ready FILE

TOAD section IV: to estimate how much an OE processor loading the memory bus slows
the host, the OE copies large blocks (much larger than the caches) from and to its
own memory while host processors run the same copy test. This process is that OE
load; the launcher pins it to the engine CPU and stops it with SIGTERM (it also stops
by itself after --seconds). It writes --ready once its buffers exist, and prints the
bandwidth it achieved on exit.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time

import numpy as np

from toad.memory import block

def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m engine.perturb")
    p.add_argument("--size", type=int, default=128 << 20)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--ready")
    args = p.parse_args(argv)
    stop = False

    def on_term(signum, frame):
        nonlocal stop
        stop = True
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    src, dst = block(args.size, 7), block(args.size, 7)
    if args.ready:
        with open(args.ready + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.replace(args.ready + ".tmp", args.ready)
    start = time.monotonic()
    copied = 0
    while not stop and time.monotonic() - start < args.seconds:
        np.copyto(dst, src)
        src, dst = dst, src
        copied += args.size
    elapsed = time.monotonic() - start
    print(f"engine copier: {copied / elapsed / 1e6:.0f} MB/s over {elapsed:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
