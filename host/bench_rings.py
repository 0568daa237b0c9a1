"""``toad bench rings [CONFIG] [--set k=v]... [--json FILE]``: the host/engine interface.

Starts a busy-polling engine on ``engine.cpu``, pins itself to ``host.cpus[0]``, and
measures through a real QP:

* request -> event round trip (ECHO) with the host busy polling the event ring;
* the same with a host that never spins (``qp.busy_poll_us=0``): the round trips in
  which it slept on the QP's interrupt (an answer that is in by the time the host has
  armed the interrupt costs no sleep; how many slept is reported);
* one-way records per second: batches of silent NOPs, one doorbell per batch;
* the baseline the interrupt path is judged against: a bare semaphore wake-up
  between the same two CPUs (a peer on the engine CPU posts a semaphore the host
  sleeps on; measured from the post to the sleeper running), the least an
  interrupt can cost on this machine.

JSON keys: roundtrip_us.busy.{p50,p99}, roundtrip_us.interrupt.{p50,p99,slept} (of the
round trips that slept; null if none did),
records_per_s, baseline_us.semaphore_wakeup.{p50,p99}, plus the settings used.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import numpy as np
import posix_ipc

from host.driver import Driver
from toad import layout
from toad.config import load
from toad.engine_stats import read_engine_stats, wait_engine_ready
from toad.experiment.report import write_json
from toad.pinning import pin
from toad.shm import Segment, StopSignals, create_semaphore, open_semaphore, unlink_semaphore


def parse_args(argv):
    p = argparse.ArgumentParser(prog="toad bench rings", description=__doc__.splitlines()[0])
    p.add_argument("config", nargs="?", help="YAML config (default: built-in defaults)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (YAML value), e.g. --set engine.cpu=1")
    p.add_argument("--json", metavar="FILE", help="write the results as JSON")
    p.add_argument("--samples", type=int, default=20000, help="busy round trips")
    p.add_argument("--irq-samples", type=int, default=3000, help="interrupt round trips")
    p.add_argument("--seconds", type=float, default=1.0, help="duration of the records/s run")
    p.add_argument("--batch", type=int, default=256, help="records per doorbell")
    p.add_argument("--sem-peer", nargs=3, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def percentiles(samples_ns: list[int]) -> dict:
    arr = np.asarray(samples_ns, dtype=np.float64) / 1000.0
    return {"p50": round(float(np.percentile(arr, 50)), 2),
            "p99": round(float(np.percentile(arr, 99)), 2)}


def drain(semaphore) -> None:
    """Take back the posts nobody slept on: an interrupt the engine raised while the
    host, at its re-check after arming, found the answer in anyway."""
    while True:
        try:
            semaphore.acquire(0)
        except posix_ipc.BusyError:
            return


def round_trips(drv: Driver, count: int) -> tuple[list[int], list[int]]:
    """``count`` ECHO round trips: (every one's ns, the ns of those that slept on the
    interrupt: its semaphore drained of stale posts first, so each of those is a
    real wake-up)."""
    clock, call, op = time.perf_counter_ns, drv.call, layout.OP_ECHO
    for i in range(min(1000, count)):   # warm-up
        call(op, value=i)
    samples, slept = [], []
    for i in range(count):
        drain(drv.irq)
        sleeps = drv.sleeps
        start = clock()
        call(op, value=i)
        took = clock() - start
        samples.append(took)
        if drv.sleeps != sleeps:
            slept.append(took)
    return samples, slept


def records_per_second(drv: Driver, seconds: float, batch: int) -> float:
    records = np.zeros(batch, layout.REQUEST)
    records["opcode"] = layout.OP_NOP
    records["flags"] = layout.REQ_SILENT
    sent, start = 0, time.perf_counter()
    end = start + seconds
    while time.perf_counter() < end:
        drv.post_array(records)
        sent += batch
    consumed_word = drv.request_consumer_word
    while drv.u32[consumed_word] != drv.request_producer:   # engine has read them all
        drv.check_engine()
    return sent / (time.perf_counter() - start)


PEER_DELAY_NS = 200_000   # long enough for the host to be asleep when the post comes


def semaphore_peer(flag_name: str, sem_name: str, cpu: str) -> int:
    """Spin on a shared flag; when it changes, wait until the host sleeps, stamp the
    time (CLOCK_MONOTONIC, shared by both processes) and post the semaphore."""
    pin([int(cpu)])
    seg = Segment(flag_name)
    words, sem = memoryview(seg.map).cast("I"), open_semaphore(sem_name)
    stamps = memoryview(seg.map).cast("Q")
    clock, last = time.perf_counter_ns, 0
    while True:
        value = words[0]
        if value != last:
            if value == 0xFFFFFFFF:
                break
            last = value
            post_at = clock() + PEER_DELAY_NS
            while clock() < post_at:
                pass
            stamps[1] = clock()
            sem.release()
    stamps.release()
    words.release()
    sem.close()
    seg.close()
    return 0


ALL_CPUS = sorted(os.sched_getaffinity(0))


def unpinned() -> None:
    """preexec_fn: children start with the CPUs this program started with."""
    os.sched_setaffinity(0, ALL_CPUS)


def semaphore_wakeups(config, count: int) -> list[int]:
    """Bare cross-CPU wake-up: host sleeps on a semaphore, a spinning peer posts it."""
    base = f"/toad-{config.name}-semtest"
    seg = Segment(base, 4096, create=True)
    sem = create_semaphore(base + "-sem")
    peer = None
    words = memoryview(seg.map).cast("I")
    stamps = memoryview(seg.map).cast("Q")
    try:
        peer = subprocess.Popen([sys.executable, "-m", "host.bench_rings", "--sem-peer", base,
                                 base + "-sem", str(config.engine.cpu)], preexec_fn=unpinned)
        samples, clock = [], time.perf_counter_ns
        for i in range(1, count + 100):
            words[0] = i
            sem.acquire(5.0)
            woke = clock()
            if i > 100:
                samples.append(woke - stamps[1])   # post -> sleeper running again
        return samples
    finally:
        words[0] = 0xFFFFFFFF
        if peer is not None:
            peer.wait(timeout=10)
        words.release()
        stamps.release()
        sem.close()
        unlink_semaphore(base + "-sem")
        seg.close()
        seg.unlink()


def run(args) -> dict:
    config = load(args.config, [f"name=bench{os.getpid()}", *args.set, "engine.polling=busy"])
    overrides = [f"name={config.name}", *args.set, "engine.polling=busy"]
    # configs are validated before pinning (validation checks CPUs against affinity)
    busy_config = load(args.config, [*overrides, "qp.busy_poll_us=1000000000"])
    irq_config = load(args.config, [*overrides, "qp.busy_poll_us=0"])
    host_cpu = pin([config.host.cpus[0]], what="host.cpus[0]")
    cmd = [sys.executable, "-m", "engine", "--quiet"]
    if args.config:
        cmd.append(args.config)
    for item in overrides:
        cmd += ["--set", item]
    engine = subprocess.Popen(cmd, preexec_fn=unpinned)
    try:
        wait_engine_ready(config.name, timeout=20, process=engine)
        before = read_engine_stats(config.name)
        with Driver(busy_config) as drv:
            busy, _ = round_trips(drv, args.samples)
            rate = records_per_second(drv, args.seconds, args.batch)
        with Driver(irq_config) as drv:
            _, irq = round_trips(drv, args.irq_samples)
            sleeps = drv.sleeps
        after = read_engine_stats(config.name)
    finally:
        engine.terminate()
        engine.wait(timeout=20)
    sem = semaphore_wakeups(config, args.irq_samples)
    return {
        "roundtrip_us": {"busy": percentiles(busy),
                         "interrupt": dict(percentiles(irq) if irq else
                                           {"p50": None, "p99": None}, slept=len(irq))},
        "records_per_s": round(rate),
        "baseline_us": {"semaphore_wakeup": percentiles(sem)},
        "settings": {"samples": args.samples, "irq_samples": args.irq_samples,
                     "batch": args.batch, "seconds": args.seconds,
                     "engine_cpu": after["cpu"], "host_cpu": host_cpu,
                     "interrupt_sleeps": sleeps, "load_average": list(os.getloadavg())},
        "engine": {"iterations": after["iterations"] - before["iterations"]},
    }


def print_table(result: dict) -> None:
    rt, base = result["roundtrip_us"], result["baseline_us"]["semaphore_wakeup"]
    print(f"{'measure':<38}{'p50':>10}{'p99':>10}")
    print(f"{'request->event round trip, busy (us)':<38}{rt['busy']['p50']:>10}{rt['busy']['p99']:>10}")
    irq = rt["interrupt"]
    print(f"{'round trip with interrupt (us)':<38}{irq['p50'] or '-':>10}{irq['p99'] or '-':>10}"
          f"   ({irq['slept']} of {result['settings']['irq_samples']} slept: the rest found "
          f"the answer in when they armed the interrupt)")
    print(f"{'bare semaphore wake-up (us)':<38}{base['p50']:>10}{base['p99']:>10}")
    print(f"one-way records/s (batch {result['settings']['batch']}): {result['records_per_s']:,}")
    s = result["settings"]
    print(f"engine CPU {s['engine_cpu']}, host CPU {s['host_cpu']}, "
          f"load average {', '.join(f'{x:.2f}' for x in s['load_average'])}")


def main(argv) -> int:
    args = parse_args(argv)
    if args.sem_peer:
        return semaphore_peer(*args.sem_peer)
    with StopSignals(raise_interrupt=True):
        result = run(args)
    print_table(result)
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    from toad.errors import run_main
    sys.exit(run_main(main))
