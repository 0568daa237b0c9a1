"""iperf 2 as the Linux sender of a TAP run (toad receives), with every byte checked.

    python -m host.iperf_peer --config RUN.yaml --out RESULT.json --connect-to ADDR [--cpu N]

Run inside the namespace like the kernel-mode worker it stands in for. iperf 2.1.8
``-c ADDR -F FILE`` sends a header of its own (60 bytes with these options) and then
the file's bytes verbatim, until the file ends (``-t`` does not stop it). The file is
a FIFO this program fills with the stream toad's receiver expects (host.integrity's
SendPattern, one chunk per write) for warmup + duration seconds, then closes: iperf
sends what it read, closes the connection, and prints its byte count (``-y C``).

The result has the worker's keys (host/worker.py): "crc_sent" is the CRC-32 of the
bytes written into the FIFO, which toad's receiver compares byte by byte after it has
found where iperf's header ends (workloads.skip_stream_header); "total_bytes" is
iperf's own count, header included. The CPU figures are iperf's (the FIFO's writer
is this program's thread: a stand-in for the file iperf would read, not counted).
"""
from __future__ import annotations

import argparse
import fcntl
import os
import resource
import subprocess
import sys
import threading
import time

from host.integrity import Integrity, SendPattern
from host.workloads import Meter
from host.worker import fail, pin, plan_of, write_json
from toad.config import load
from toad.errors import ToadError
from toad.experiment.accounting import calibrate_copy_median

F_SETPIPE_SZ = 1031
PIPE_BYTES = 1 << 20


class Feeder(threading.Thread):
    """Writes the bulk sender's chunks into the FIFO until ``seconds`` have passed
    since iperf opened it; keeps their CRC."""

    def __init__(self, fifo: str, chunk: int, seed: int, seconds: float) -> None:
        super().__init__(daemon=True)
        self.fifo, self.seconds = fifo, seconds
        self.pattern = SendPattern(chunk, seed)
        self.integrity = Integrity()
        self.error: BaseException | None = None
        self.opened = False

    def release(self) -> None:
        """iperf ended without opening the FIFO: let the blocked open return."""
        if not self.opened:
            try:
                os.close(os.open(self.fifo, os.O_RDONLY | os.O_NONBLOCK))
            except OSError:
                pass

    def run(self) -> None:
        try:
            fd = os.open(self.fifo, os.O_WRONLY)     # returns once iperf opened it
        except OSError as exc:
            self.error = exc
            return
        self.opened = True
        try:
            try:
                fcntl.fcntl(fd, F_SETPIPE_SZ, PIPE_BYTES)
            except OSError:
                pass                                  # the default pipe size works too
            views, known, update = self.pattern.views, self.pattern.known, self.integrity.update_known
            end = time.monotonic() + self.seconds
            index = 0
            while time.monotonic() < end:
                view, done = views[index], 0
                while done < len(view):
                    done += os.write(fd, view[done:])
                update(known, index)
                index = index + 1 if index + 1 < len(views) else 0
        except BrokenPipeError as exc:               # iperf went away early
            self.error = exc
        finally:
            os.close(fd)                              # EOF: iperf finishes


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(config, address: str, workdir: str) -> dict:
    """Feed iperf through a FIFO in ``workdir`` (the launcher's: removed with it)."""
    plan = plan_of(config)
    copy_cost, copy_low, copy_high = calibrate_copy_median(plan.chunk)
    fifo = os.path.join(workdir, f"iperf-stream-{os.getpid()}")
    os.mkfifo(fifo)
    try:
        feeder = Feeder(fifo, plan.chunk, plan.seed, plan.warmup_s + plan.duration_s)
        meter = Meter(plan.host_cpus, cpu_clock=children_cpu_seconds)   # iperf's CPU
        meter.start(0)
        feeder.start()
        done = subprocess.run(["iperf", "-c", address, "-p", str(config.workload.port),
                               "-F", fifo, "-l", str(plan.chunk), "-y", "C"],
                              capture_output=True, text=True,
                              timeout=plan.warmup_s + plan.duration_s + 60)
        feeder.release()
        feeder.join(10)
    finally:
        os.unlink(fifo)
    report = [line for line in done.stdout.splitlines() if line.count(",") >= 8]
    if done.returncode != 0 or not report:
        text = (done.stderr or done.stdout).strip().splitlines()
        raise ToadError(f"iperf -c {address}: {text[-1] if text else f'exit {done.returncode}'}")
    if feeder.error is not None:
        raise ToadError(f"iperf stopped reading its input early ({feeder.error})")
    sent = int(report[-1].split(",")[7])
    meter.stop(sent)
    return {
        "measured": meter.as_json(),
        "crc_sent": feeder.integrity.crc, "total_bytes": sent, "bytes_copied": sent,
        "role": "send", "pid": os.getpid(),
        "affinity": sorted(os.sched_getaffinity(0)), "copy_s_per_byte": copy_cost,
        "copy_s_per_byte_range": [copy_low, copy_high], "copy_timed": None,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m host.iperf_peer")
    parser.add_argument("--config", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--connect-to", required=True)
    parser.add_argument("--cpu", type=int)
    parser.add_argument("--role", choices=("send",), default="send")
    args = parser.parse_args(argv)
    try:
        config = load(args.config)
        if args.cpu is not None:
            pin(args.cpu)
        write_json(args.out, run(config, args.connect_to,
                                 os.path.dirname(os.path.abspath(args.out))))
        return 0
    except (ToadError, OSError, subprocess.TimeoutExpired) as exc:
        return fail(args.out, f"iperf peer: {exc}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
