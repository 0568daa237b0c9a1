"""``toad bench offload``: bulk TCP through the engine's loopback wire, offload mode.

    toad bench offload [--chunk 131072,8192] [--seconds 5] [--config YAML]
                       [--set KEY=VALUE]... [--json FILE] [--profile PREFIX]
                       [--profile-hosts PREFIX] [--call-times]

Per chunk size: a fresh engine (pinned to ``engine.cpu``, anonymous buffers of the
chunk size; the other qp keys from ``--config``'s file, else the built-in
defaults), a receiving and a sending process (pinned to ``host.cpus``), each with its
own QP. The sender writes ``chunk`` bytes per call for ``--seconds``; the receiver
reads ``chunk`` bytes per call to EOF. Reported: goodput at the receiver, CPU seconds
(user + system, all threads) of each side per GB moved, the engine's useful-work
share. ``--profile PREFIX`` runs the engine under cProfile and writes
``PREFIX-<chunk>.prof`` plus the top functions by own time. No integrity check here
(the tests do that); ``toad run --set mode=offload`` is the full, checked experiment.
"""
from __future__ import annotations

import argparse
import json
import os
import pstats
import subprocess
import sys
import time

import numpy as np

from toad.config import load, read_yaml
from toad.engine_stats import read_engine_stats, wait_engine_ready
from toad.errors import ToadError
from toad.memory import keep_heap

PORT = 5301


def worker(role: str, chunk: int, seconds: float, overrides: list[str],
           call_times: bool = False) -> dict:
    """One side, in its own process: returns bytes, wall and CPU seconds (and with
    ``call_times`` the median and 90th percentile of a send/recv call, in ns)."""
    from host.sockets import OffloadNetwork
    config = load(None, overrides)
    keep_heap(config.heap_trim_bytes)
    net = OffloadNetwork(config)
    buf = bytearray(os.urandom(chunk))
    times = np.zeros(1 << 20, np.int64) if call_times else None
    try:
        if role == "recv":
            listener = net.listen(PORT)
            print("ready", flush=True)
            sock, _ = listener.accept()
            total, view = 0, memoryview(buf)
            n = sock.recv_into(view)
            cpu0, t0 = os.times(), time.monotonic()
            total = _recv_loop(sock, view, n, times)
        else:
            sock = net.create_connection((net.listen_address, PORT), timeout=10)
            total, view = 0, memoryview(buf)
            cpu0, t0 = os.times(), time.monotonic()
            total = _send_loop(sock, view, t0 + seconds, times)
            sock.shutdown(1)
        wall, cpu1 = time.monotonic() - t0, os.times()
        sock.close()
    finally:
        net.close()
    out = {"role": role, "bytes": total, "wall_s": wall,
           "cpu_s": (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system),
           "sys_s": cpu1.system - cpu0.system, "sleeps": net.driver.sleeps,
           "spin_s": net.driver.waited_s - net.driver.slept_s,
           "batch_sleeps": net.driver.batch_sleeps, "batch_timeouts": net.driver.batch_timeouts,
           "waits": net.driver.waits, "requests": net.driver.request_producer,
           "chunks": total // chunk}
    if times is not None:
        calls = times[:min(len(times), total // chunk)]
        out["call_ns"] = [int(x) for x in np.percentile(calls, [50, 90])] if len(calls) else []
    return out


def _send_loop(sock, view, end: float, times) -> int:
    total, chunk, i = 0, len(view), 0
    if times is None:
        while time.monotonic() < end:
            sock.sendall(view)
            total += chunk
        return total
    clock, limit = time.perf_counter_ns, len(times)
    while time.monotonic() < end:
        t = clock()
        sock.sendall(view)
        if i < limit:
            times[i] = clock() - t
        i += 1
        total += chunk
    return total


def _recv_loop(sock, view, n: int, times) -> int:
    total, i = 0, 0
    clock = time.perf_counter_ns
    limit = 0 if times is None else len(times)
    while n:
        total += n
        if i < limit:
            t = clock()
            n = sock.recv_into(view)
            times[i] = clock() - t
            i += 1
        else:
            n = sock.recv_into(view)
    return total


def qp_settings(path: str) -> list[str]:
    """The qp keys an experiment file sets, as overrides (the bench keeps its own
    receive pool: chunk-sized buffers, 8 MB in all)."""
    qp = read_yaml(path).get("qp") or {}
    if not isinstance(qp, dict):
        raise ToadError(f"{path}: qp must be a mapping")
    return [f"qp.{key}={json.dumps(value)}" for key, value in qp.items()
            if key not in ("recv_buffers", "recv_buffer_bytes", "recv_pool_bytes")]


def start(argv: list[str], cpu: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *argv], stdout=subprocess.PIPE, text=True,
                            preexec_fn=lambda: os.sched_setaffinity(0, {cpu}))


def one_chunk(chunk: int, args, base: list[str]) -> dict:
    name = f"benchoff{os.getpid()}c{chunk}"
    overrides = [f"name={name}", f"qp.recv_buffer_bytes={chunk}",
                 f"qp.recv_buffers={max(16, (8 << 20) // chunk)}", *base]
    config = load(None, overrides)
    sets = [x for item in overrides for x in ("--set", item)]
    engine_argv = ["-m", "engine", *sets]
    prof = f"{args.profile}-{chunk}.prof" if args.profile else None
    if prof:
        engine_argv = ["-m", "cProfile", "-o", prof, *engine_argv]
    engine = start(engine_argv, config.engine.cpu)
    try:
        wait_engine_ready(name, timeout=30, process=engine)
        host_cpu = config.host.cpus[0]
        me = ["-m", "host.bench_offload", "--worker", "--chunk", str(chunk),
              "--seconds", str(args.seconds), *sets] + (["--call-times"] if args.call_times else [])
        if args.profile_hosts:   # cProfile each host worker: PREFIX-<chunk>-<role>.prof
            host_prof = f"{args.profile_hosts}-{chunk}"
            recv = start(["-m", "cProfile", "-o", f"{host_prof}-recv.prof", *me,
                          "--role", "recv"], host_cpu)
        else:
            recv = start([*me, "--role", "recv"], host_cpu)
        if recv.stdout.readline().strip() != "ready":
            raise ToadError("bench offload: the receiver did not start")
        stats0 = read_engine_stats(name)
        send = start(["-m", "cProfile", "-o", f"{host_prof}-send.prof", *me, "--role", "send"]
                     if args.profile_hosts else [*me, "--role", "send"], host_cpu)
        out_send = json.loads(send.communicate(timeout=args.seconds + 120)[0])
        out_recv = json.loads(recv.communicate(timeout=120)[0])
        stats1 = read_engine_stats(name)
    finally:
        engine.terminate()
        out = engine.communicate(timeout=30)[0]
    summary = next((json.loads(line.split(": offload ", 1)[1]) for line in out.splitlines()
                    if ": offload {" in line), {})
    busy = (stats1["busy_ns"] - stats0["busy_ns"]) / 1e9
    gb = out_recv["bytes"] / 1e9
    row = {"chunk_bytes": chunk, "goodput_gbps": 8 * gb / out_recv["wall_s"],
           "send_cpu_s_per_gb": out_send["cpu_s"] / gb, "recv_cpu_s_per_gb": out_recv["cpu_s"] / gb,
           "send_sys_s_per_gb": out_send["sys_s"] / gb, "recv_sys_s_per_gb": out_recv["sys_s"] / gb,
           "send_sleeps_per_mb": out_send["sleeps"] / (gb * 1000),
           "send_spin_s_per_gb": out_send["spin_s"] / gb, "recv_spin_s_per_gb": out_recv["spin_s"] / gb,
           "recv_sleeps_per_mb": out_recv["sleeps"] / (gb * 1000),
           "engine_busy_share": busy / out_recv["wall_s"], "bytes": out_recv["bytes"],
           "seconds": out_recv["wall_s"], "engine_cpu": config.engine.cpu,
           "host_cpu": config.host.cpus[0],
           "stalls": {k: v for k, v in summary.get("connections", {}).items()
                      if k in ("delayed_ack_timeout", "persist_timeout", "rto",
                               "tx_window_probe", "fast_retransmit")},
           "rx_out_of_buffers": summary.get("offload", {}).get("rx_out_of_buffers", 0),
           "send_call_ns": out_send.get("call_ns"), "recv_call_ns": out_recv.get("call_ns")}
    for side, out in (("send", out_send), ("recv", out_recv)):   # what each chunk cost
        chunks = max(1, out["chunks"])
        row[f"{side}_waits_per_chunk"] = out["waits"] / chunks
        row[f"{side}_requests_per_chunk"] = out["requests"] / chunks
    if prof:
        row["profile"] = prof
        pstats.Stats(prof).sort_stats("tottime").print_stats(args.top)
    return row


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="toad bench offload", description="Bulk TCP through the engine, offload mode.")
    parser.add_argument("--chunk", default="131072,8192",
                        help="chunk sizes in bytes, comma-separated (default 131072,8192)")
    parser.add_argument("--seconds", type=float, default=5.0,
                        help="measured time per chunk size (default 5)")
    parser.add_argument("--config", metavar="YAML",
                        help="take the qp settings of this experiment file (e.g. "
                             "configs/default.yaml; default: built-in defaults)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key (YAML value), e.g. --set qp.rx_batch_max=8")
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")
    parser.add_argument("--profile", metavar="PREFIX",
                        help="cProfile the engine: PREFIX-<chunk>.prof, and print its top")
    parser.add_argument("--profile-hosts", metavar="PREFIX",
                        help="cProfile the two host workers: PREFIX-<chunk>-<role>.prof")
    parser.add_argument("--top", type=int, default=25,
                        help="functions --profile prints (default 25)")
    parser.add_argument("--call-times", action="store_true",
                        help="time every send/recv call: median and p90 ns per side")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--role", choices=("send", "recv"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.role, int(args.chunk), args.seconds, args.set,
                                args.call_times)))
        return 0
    base = qp_settings(args.config) + args.set if args.config else args.set
    rows = [one_chunk(int(c), args, base) for c in args.chunk.split(",")]
    print(f"{'chunk':>8} {'Gb/s':>7} {'send CPU s/GB':>14} {'recv CPU s/GB':>14} {'engine busy':>12}")
    for r in rows:
        print(f"{r['chunk_bytes']:>8} {r['goodput_gbps']:>7.2f} {r['send_cpu_s_per_gb']:>14.3f} "
              f"{r['recv_cpu_s_per_gb']:>14.3f} {r['engine_busy_share']:>11.0%}  "
              f"sys s/GB {r['send_sys_s_per_gb']:.3f}/{r['recv_sys_s_per_gb']:.3f} "
              f"sleeps/MB {r['send_sleeps_per_mb']:.1f}/{r['recv_sleeps_per_mb']:.1f} "
              f"spin s/GB {r['send_spin_s_per_gb']:.3f}/{r['recv_spin_s_per_gb']:.3f} "
              f"stalls {r['stalls']} out-of-buffers {r['rx_out_of_buffers']} "
              f"per chunk: waits {r['send_waits_per_chunk']:.3f}/{r['recv_waits_per_chunk']:.3f} "
              f"requests {r['send_requests_per_chunk']:.3f}/{r['recv_requests_per_chunk']:.3f}"
              + (f" call ns p50/p90 send {r['send_call_ns']} recv {r['recv_call_ns']}"
                 if r["send_call_ns"] else ""))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"bench": "offload", "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    from toad.errors import run_main
    sys.exit(run_main(main))
