"""CPU accounting: where the host's (and the engine's) CPU time goes, per Gb/s.

The figures follow ARCHITECTURE.md "Measurement" and TOAD section IV:

- Process CPU time of each worker (user + system, all threads, ``getrusage``) over its
  own measured interval, minus the time the worker spent on the integrity checksum
  (host/integrity.py times one checksum call in SAMPLE_EVERY with ``thread_time``,
  less the timer's own cost, and charges its cost per byte to every checked byte):
  the checksum is the experiment's cost, not the network's.
- Busy time of the host CPUs from ``/proc/stat`` (every state but idle, iowait and
  steal). Steal is time the hypervisor gave the virtual CPU's host core to something
  else: the guest did no work then, so it is not busy time; it is kept apart and
  reported (a run whose engine CPU was stolen from moved fewer bytes for reasons
  outside toad).
- Engine CPU time from ``/proc/<pid>/stat`` (utime + stime).
- "memory copies": bytes copied at the socket boundary times the per-byte cost of a
  chunk-sized copy, calibrated on the worker's own (pinned) CPU right before the run;
  the rest of the side's CPU is "driver" (offload) or "stack" (inhost, kernel).
- "memory copies, timed in the run" (offload, inhost): the same bytes times the median
  per-byte cost of the boundary copies sampled during the run (host/copy_timer.py).
  Beside the calibrated figure it shows what the run's cache traffic added to the copy
  (the calibrated row books that to the driver). Kernel mode copies inside Linux: none.

Percent of one CPU per Gb/s = 100 * (cpu_s / wall_s) / (Gb/s) = 100 * cpu_s / gigabits,
so each side's figure only needs CPU seconds and bytes over the same interval.
"""
from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass
from typing import Iterable, NamedTuple, Optional

from toad.memory import populated_map


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
MAX_REPS = 100_000


def process_cpu_seconds() -> float:
    """User + system CPU seconds of this process (all threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class CpuTimes(NamedTuple):
    """Seconds since boot of one CPU, from /proc/stat."""
    busy: float      # user, nice, system, irq, softirq (not idle, iowait or steal)
    irq: float       # irq + softirq (part of busy)
    steal: float     # the hypervisor ran something else on this virtual CPU


def read_cpu_times(cpus: Iterable[int], path: str = "/proc/stat") -> dict[int, CpuTimes]:
    """:class:`CpuTimes` of each CPU in ``cpus`` since boot.

    Interrupt and softirq time is busy time no process is charged for: Linux's
    loopback receive path runs there, so kernel mode's per-process figures miss it
    while the /proc/stat figure includes it. Steal time is not busy time (field 8,
    zero on bare metal); guest time is already inside user time, so only the first
    eight fields count.
    """
    wanted = set(cpus)
    times: dict[int, CpuTimes] = {}
    with open(path) as f:
        for line in f:
            if not line.startswith("cpu") or line.startswith("cpu "):
                continue
            name, *values = line.split()
            cpu = int(name[3:])
            if cpu not in wanted:
                continue
            ticks = [int(v) for v in values[:8]] + [0] * (8 - len(values[:8]))
            user, nice, system, _idle, _iowait, irq, softirq, steal = ticks
            times[cpu] = CpuTimes((user + nice + system + irq + softirq) / CLOCK_TICKS,
                                  (irq + softirq) / CLOCK_TICKS, steal / CLOCK_TICKS)
    return times


def read_pid_cpu_seconds(pid: int) -> Optional[float]:
    """utime + stime of process ``pid`` (all threads) from /proc, None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    # after the ")" field 0 is state (stat field 3); utime, stime are stat fields 14, 15
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def calibrate_copy(chunk_bytes: int, region_bytes: int = 4 << 20,
                   min_bytes: int = 64 << 20, clock=time.thread_time) -> float:
    """Seconds per byte of copying one chunk into a rotating region, on this CPU now.

    The socket-boundary copy moves an application buffer (hot in the cache, reused by
    the workload) into a send buffer or out of a receive buffer that rotates over a
    larger area; the calibration does the same: ``chunk_bytes`` from one buffer into
    successive slots of a ``region_bytes`` area (at least two chunks), repeated until
    ``min_bytes`` have moved (at most MAX_REPS copies). The first pass is not timed.
    The copy is a memoryview slice assignment (a memcpy plus Python's per-call cost,
    ~0.1 us), what a Python socket layer does at the boundary; for tiny rr sizes the
    per-call cost dominates.
    """
    chunk = max(1, int(chunk_bytes))
    region = max(region_bytes, 2 * chunk)
    slots = region // chunk
    src = memoryview(os.urandom(chunk))
    area = populated_map(slots * chunk)   # pages present before timing (toad.memory)
    try:
        dst = memoryview(area)
        for slot in range(0, min(slots, MAX_REPS) * chunk, chunk):
            dst[slot:slot + chunk] = src  # first pass, untimed: page tables, TLB
        # at least one pass over the region, at most MAX_REPS copies (tiny rr sizes)
        reps = min(max(slots, min_bytes // chunk), MAX_REPS)
        start = clock()
        for i in range(reps):
            slot = (i % slots) * chunk
            dst[slot:slot + chunk] = src
        elapsed = clock() - start
        dst.release()
    finally:
        area.close()
    return elapsed / (reps * chunk)


def calibrate_copy_median(chunk_bytes: int, trials: int = 5) -> tuple[float, float, float]:
    """(median, lowest, highest) seconds per byte over ``trials`` fresh regions.

    One trial can be disturbed (a page of the region reclaimed, another process on
    the CPU's cache); the median of several is charged and the spread is reported.
    """
    costs = sorted(calibrate_copy(chunk_bytes) for _ in range(max(1, trials)))
    return costs[len(costs) // 2], costs[0], costs[-1]


@dataclass(frozen=True)
class SideFigures:
    """One side (send or receive) of a run, in percent of one CPU per Gb/s."""
    cpu_s: float
    cpu_pct_per_gbps: float
    copy_pct_per_gbps: float
    driver_pct_per_gbps: float
    copy_timed_pct_per_gbps: Optional[float] = None

    def as_json(self) -> dict:
        timed = self.copy_timed_pct_per_gbps
        return {"cpu_s": round(self.cpu_s, 6),
                "cpu_pct_per_gbps": round(self.cpu_pct_per_gbps, 4),
                "copy_pct_per_gbps": round(self.copy_pct_per_gbps, 4),
                "driver_pct_per_gbps": round(self.driver_pct_per_gbps, 4),
                "copy_timed_pct_per_gbps": None if timed is None else round(timed, 4)}


def gigabits(nbytes: float) -> float:
    return nbytes * 8 / 1e9


def pct_per_gbps(cpu_s: float, nbytes: float) -> float:
    """100 * cpu_s / gigabits moved: percent of one CPU needed for 1 Gb/s."""
    gb = gigabits(nbytes)
    return 100.0 * cpu_s / gb if gb > 0 else float("nan")


def side_figures(cpu_s: float, nbytes: int, bytes_copied: int, copy_s_per_byte: float,
                 timed_s_per_byte: Optional[float] = None) -> SideFigures:
    """Split a side's CPU into the boundary copy and the rest (copy + driver = total),
    with the copy as timed in the run beside it when there is one.

    Both copy shares are capped at the side's total: a copy cost that says the copies
    alone took longer than the whole side would be a measurement artefact, and the
    driver share is never reported negative.
    """
    total = pct_per_gbps(cpu_s, nbytes)
    copy = min(pct_per_gbps(bytes_copied * copy_s_per_byte, nbytes), total)
    timed = None
    if timed_s_per_byte is not None:
        timed = min(pct_per_gbps(bytes_copied * timed_s_per_byte, nbytes), total)
    return SideFigures(cpu_s, total, copy, total - copy, timed)


def interpolate(samples: list[tuple[float, float]], when: float) -> Optional[float]:
    """Linear interpolation of a cumulative counter sampled as (time, value) pairs."""
    if not samples:
        return None
    if when <= samples[0][0]:
        return samples[0][1]
    for (t_a, v_a), (t_b, v_b) in zip(samples, samples[1:]):
        if t_a <= when <= t_b:
            if t_b == t_a:
                return v_b
            return v_a + (v_b - v_a) * (when - t_a) / (t_b - t_a)
    return samples[-1][1]


def span_delta(samples: list[tuple[float, float]], span: tuple[float, float]) -> Optional[float]:
    """How much a cumulative counter sampled as (time, value) pairs grew over
    ``span``, interpolated at both ends; None without samples."""
    if not samples:
        return None
    return interpolate(samples, span[1]) - interpolate(samples, span[0])


def overlap(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Length of the intersection of two time intervals."""
    return max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
