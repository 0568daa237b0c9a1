"""``toad bench readiness``: what an offloaded socket's readiness descriptor costs per
event, and 64 B request/response through asyncio, offloaded and over the kernel, in
one run.

    toad bench readiness [--round-trips N] [--warmup N] [--transitions N]
                         [--config YAML] [--set KEY=VALUE]... [--json FILE]

Three parts, one engine (``python -m engine`` pinned to ``engine.cpu``; every host
process pinned to ``host.cpus[0]``). The settings are the ``engine``, ``host``, ``qp``
and ``tcp`` keys of ``--config`` (default configs/latency.yaml, as the README's
latency table: the engine busy-polls, a waiting host thread polls its event ring with
sched_yield for up to 1 ms before it sleeps, no Nagle), then ``--set``.

``transitions``: one descriptor (host/readiness.py ReadyFd) moved back and forth, no
engine involved: ns per transition of "readable" (raise: a byte sent on toad's end;
lower: the app end read empty) and of "writable" (lower: a filler written into the app
end; raise: toad's end read empty). Each is one system call.

``rr``: 64 B ping-pong through the engine from a client process to an echo process
(an OffloadSocket that waits in the driver). The client three ways, one connection
each, on one QP:
- ``plain``: an OffloadSocket, blocking: no descriptor, no event pump (the baseline);
- ``socket_blocking``: a ToadSocket (``socket.socket`` over the engine) in blocking
  mode: it waits in the driver; its descriptor is kept in step, nobody polls it;
- ``socket_epoll``: a non-blocking ToadSocket whose client sleeps in ``epoll`` on
  ``fileno()``: each answer reaches it through the event pump (woken by the QP's
  interrupt) raising the descriptor.
Per variant: round trip p50/p99 µs, the client's CPU µs per round trip (all its
threads, the pump included), descriptor transitions and pump wake-ups per round trip.
``socket_epoll`` minus ``plain`` is what the readiness path costs per event here (one
answer received per round trip).

``asyncio``: an asyncio streams echo server and client (host/bench_programs/
asyncio_rr.py, plain asyncio), 127.0.0.1, under ``toad exec`` on the engine and then
under ``toad exec --kernel`` (Linux's TCP): p50/p99 µs, round trips per second, the
client's and the server's CPU µs per round trip (each process's threads, timed
round trips only).

JSON (``--json``): ``{"bench": "readiness", "config", "settings" (every override
given), "engine_cpu", "host_cpu", "transitions":
{"readable_ns", "writable_ns", "cycles"}, "rr": [{"variant", "round_trips", "p50_us",
"p99_us", "client_cpu_us", "transitions", "pump_wakeups"}], "asyncio": [{"mode",
"round_trips", "p50_us", "p99_us", "round_trips_per_s", "client_cpu_us",
"server_cpu_us"}]}``; every ``*_cpu_us``, ``transitions`` and ``pump_wakeups`` is per
round trip.
"""
from __future__ import annotations

import argparse
import json
import os
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from toad.config import load, read_yaml
from toad.engine_stats import wait_engine_ready
from toad.errors import ToadError

SIZE = 64
RR_PORT, ASYNCIO_PORT = 5311, 5312
SECTIONS = ("engine", "host", "qp", "tcp")
LATENCY = str(Path(__file__).resolve().parents[1] / "configs" / "latency.yaml")
VARIANTS = ("plain", "socket_blocking", "socket_epoll")
PROGRAM = Path(__file__).with_name("bench_programs") / "asyncio_rr.py"


def transitions(cycles: int) -> dict:
    """ns per transition of one ReadyFd, readable and writable (no engine)."""
    from host.readiness import ReadyFd
    fd = ReadyFd()
    clock = time.perf_counter_ns
    try:
        with fd.lock:
            start = clock()
            for _ in range(cycles):
                fd.set_readable(True)
                fd.set_readable(False)
            readable = (clock() - start) / (2 * cycles)
            start = clock()
            for _ in range(cycles):
                fd.set_writable(False)
                fd.set_writable(True)
            writable = (clock() - start) / (2 * cycles)
    finally:
        fd.close()
    return {"readable_ns": readable, "writable_ns": writable, "cycles": cycles}


# ---- the rr processes ------------------------------------------------------------------

def echo(overrides: list[str]) -> None:
    """The echo process: one connection per client variant, each echoed to EOF."""
    from host.sockets import OffloadNetwork
    from host.workloads import accept_nodelay
    net = OffloadNetwork(load(None, overrides))
    try:
        listener = net.listen(RR_PORT)
        print("ready", flush=True)
        view = memoryview(bytearray(65536))
        for _ in VARIANTS:
            sock = accept_nodelay(listener)
            while n := sock.recv_into(view):
                sock.sendall(view[:n])
            sock.close()
    finally:
        net.close()


def client(overrides: list[str], round_trips: int, warmup: int) -> list[dict]:
    """The client process: each variant in turn, on one QP (see the module doc)."""
    from host import toad_socket
    from host.offload_exec import offload_socket
    from host.workloads import set_nodelay
    config = load(None, overrides)
    toad_socket.use_network_config(config)
    net = toad_socket.network()
    address = (net.connect_address, RR_PORT)
    rows = []
    try:
        for variant in VARIANTS:
            if variant == "plain":
                sock = net.create_connection(address, timeout=10)
                set_nodelay(sock)
            else:
                sock = offload_socket(config)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.connect(address)
            with sock:
                rows.append(_timed(variant, sock, net, round_trips, warmup))
    finally:
        toad_socket.close_network()
    return rows


def _timed(variant: str, sock, net, round_trips: int, warmup: int) -> dict:
    message = bytes(range(SIZE))
    reply = memoryview(bytearray(SIZE))
    if variant == "socket_epoll":
        sock.setblocking(False)
        poller = select.epoll()
        poller.register(sock.fileno(), select.EPOLLIN)
        once = lambda: _epoll_round_trip(sock, poller, message, reply)   # noqa: E731
    else:
        once = lambda: _blocking_round_trip(sock, message, reply)      # noqa: E731
    for _ in range(warmup):
        once()
    ready = getattr(getattr(sock, "_toad", None), "readiness", None)
    signals0 = ready.fd.signals if ready else 0
    wakeups0 = net.pump.wakeups if net.pump else 0
    times = np.zeros(round_trips, np.int64)
    clock = time.perf_counter_ns
    cpu0 = time.process_time()
    for i in range(round_trips):
        start = clock()
        once()
        times[i] = clock() - start
    cpu = time.process_time() - cpu0
    if bytes(reply) != message:
        raise ToadError(f"bench readiness: {variant}: the echo differs from the request")
    p50, p99 = np.percentile(times, [50, 99]) / 1000
    return {"variant": variant, "round_trips": round_trips, "p50_us": float(p50),
            "p99_us": float(p99), "client_cpu_us": cpu * 1e6 / round_trips,
            "transitions": ((ready.fd.signals if ready else 0) - signals0) / round_trips,
            "pump_wakeups": ((net.pump.wakeups if net.pump else 0) - wakeups0) / round_trips}


def _blocking_round_trip(sock, message: bytes, reply: memoryview) -> None:
    sock.sendall(message)
    got = 0
    while got < SIZE:
        n = sock.recv_into(reply[got:], SIZE - got)
        if not n:
            raise ToadError("bench readiness: the echo closed early")
        got += n


def _epoll_round_trip(sock, poller, message: bytes, reply: memoryview) -> None:
    if sock.send(message) != SIZE:          # 64 B into an idle connection's send ring
        raise ToadError("bench readiness: a 64 B send did not fit")
    got = 0
    while got < SIZE:
        poller.poll(10)
        try:
            n = sock.recv_into(reply[got:], SIZE - got)
        except BlockingIOError:
            continue
        if not n:
            raise ToadError("bench readiness: the echo closed early")
        got += n


# ---- the runner ------------------------------------------------------------------------

def _pinned(argv: list[str], cpu: int) -> subprocess.Popen:
    return subprocess.Popen(argv, stdout=subprocess.PIPE, text=True,
                            preexec_fn=lambda: os.sched_setaffinity(0, {cpu}))


def _answer(proc: subprocess.Popen, what: str, timeout: float) -> dict:
    try:
        out = proc.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise ToadError(f"bench readiness: {what} did not finish in {timeout:.0f} s") from None
    if proc.returncode != 0 or not out.strip():
        raise ToadError(f"bench readiness: {what} failed (exit {proc.returncode})")
    return json.loads(out.strip().splitlines()[-1])


def _stop(*procs: subprocess.Popen) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def run_rr(sets: list[str], cpu: int, args) -> list[dict]:
    me = [sys.executable, "-m", "host.bench_readiness", *sets]
    server = _pinned([*me, "--role", "echo"], cpu)
    try:
        if server.stdout.readline().strip() != "ready":
            raise ToadError("bench readiness: the echo process did not start")
        driver = _pinned([*me, "--role", "client", "--round-trips", str(args.round_trips),
                          "--warmup", str(args.warmup)], cpu)
        try:
            rows = _answer(driver, "the rr client", 60 + args.round_trips / 100)
        finally:
            _stop(driver)
        server.communicate(timeout=30)
        return rows
    finally:
        _stop(server)


def run_asyncio(mode: str, sets: list[str], cpu: int, args) -> dict:
    toad = [sys.executable, "-m", "toad", "exec", *sets,
            *(["--kernel"] if mode == "kernel" else []), "--", "python3", str(PROGRAM)]
    where = ["127.0.0.1", str(ASYNCIO_PORT)]
    server = _pinned([*toad, "server", *where], cpu)
    try:
        if server.stdout.readline().strip() != "up":
            raise ToadError(f"bench readiness: the asyncio server ({mode}) did not start")
        driver = _pinned([*toad, "client", *where, str(args.round_trips), str(args.warmup)],
                         cpu)
        try:
            ran = _answer(driver, f"the asyncio client ({mode})", 60 + args.round_trips / 100)
        finally:
            _stop(driver)
        served = _answer(server, f"the asyncio server ({mode})", 30)
    finally:
        _stop(server)
    count = ran["round_trips"]
    return {"mode": mode, "round_trips": count, "p50_us": ran["p50_us"],
            "p99_us": ran["p99_us"], "round_trips_per_s": count / ran["wall_s"],
            "client_cpu_us": ran["cpu_s"] * 1e6 / count,
            "server_cpu_us": served["cpu_s"] * 1e6 / served["round_trips"]}


def file_settings(path: str) -> list[str]:
    """The engine, qp, tcp and host keys of an experiment file, as overrides (the
    processes load no file: a host process pinned to one CPU would reject the file's
    engine.cpu)."""
    data = read_yaml(path)
    out = []
    for section in SECTIONS:
        values = data.get(section) or {}
        if not isinstance(values, dict):
            raise ToadError(f"{path}: {section} must be a mapping")
        out += [f"{section}.{key}={json.dumps(value)}" for key, value in values.items()]
    return out


def measure(args) -> dict:
    name = f"benchrdy{os.getpid()}"
    overrides = [*(file_settings(args.config) if args.config else []), f"name={name}",
                 *args.set]
    config = load(None, overrides)
    # a process pinned to one CPU would find the other CPUs named in the config
    # unavailable: the host keys stay here, the engine's go to the engine only (the
    # hosts read what they need of it in OE memory)
    engine_sets = [x for item in overrides if not item.startswith("host.")
                   for x in ("--set", item)]
    sets = [x for item in overrides if not item.startswith(("engine.", "host."))
            for x in ("--set", item)]
    cpu = config.host.cpus[0]
    result = {"bench": "readiness", "config": args.config, "settings": overrides,
              "engine_cpu": config.engine.cpu, "host_cpu": cpu,
              "transitions": transitions(args.transitions)}
    engine = _pinned([sys.executable, "-m", "engine", *engine_sets], config.engine.cpu)
    try:
        wait_engine_ready(name, timeout=60, process=engine)
        result["rr"] = run_rr(sets, cpu, args)
        result["asyncio"] = [run_asyncio(mode, sets, cpu, args)
                             for mode in ("offload", "kernel")]
    finally:
        engine.terminate()
        try:
            engine.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            _stop(engine)
    return result


def table(result: dict) -> str:
    t = result["transitions"]
    lines = [f"readiness descriptor, one transition (one system call): readable "
             f"{t['readable_ns']:.0f} ns, writable {t['writable_ns']:.0f} ns",
             "", "64 B rr through the engine, per round trip:",
             f"{'client':<16} {'p50 us':>8} {'p99 us':>8} {'client CPU us':>14} "
             f"{'transitions':>12} {'pump wake-ups':>14}"]
    for r in result["rr"]:
        lines.append(f"{r['variant']:<16} {r['p50_us']:>8.1f} {r['p99_us']:>8.1f} "
                     f"{r['client_cpu_us']:>14.1f} {r['transitions']:>12.2f} "
                     f"{r['pump_wakeups']:>14.2f}")
    lines += ["", "64 B rr through asyncio streams, per round trip:",
              f"{'mode':<16} {'p50 us':>8} {'p99 us':>8} {'rt/s':>8} {'client CPU us':>14} "
              f"{'server CPU us':>14}"]
    for r in result["asyncio"]:
        lines.append(f"{r['mode']:<16} {r['p50_us']:>8.1f} {r['p99_us']:>8.1f} "
                     f"{r['round_trips_per_s']:>8.0f} {r['client_cpu_us']:>14.1f} "
                     f"{r['server_cpu_us']:>14.1f}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="toad bench readiness",
        description="The readiness descriptor's cost per event; 64 B rr through asyncio, "
                    "offloaded and over the kernel.")
    parser.add_argument("--round-trips", type=int, default=20000,
                        help="timed round trips per variant and mode (default 20000)")
    parser.add_argument("--warmup", type=int, default=1000,
                        help="untimed round trips before them (default 1000)")
    parser.add_argument("--transitions", type=int, default=100000,
                        help="descriptor cycles timed (default 100000)")
    parser.add_argument("--config", metavar="YAML", default=LATENCY,
                        help="take the engine, host, qp and tcp keys of this experiment "
                             "file (default configs/latency.yaml; '' for the built-in "
                             "defaults)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key of the engine and the QPs")
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")
    parser.add_argument("--role", choices=("echo", "client"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if min(args.round_trips, args.transitions) < 1 or args.warmup < 0:
        raise ToadError("bench readiness: --round-trips and --transitions must be >= 1, "
                        "--warmup >= 0")
    overrides = args.set
    if args.role == "echo":
        echo(overrides)
        return 0
    if args.role == "client":
        print(json.dumps(client(overrides, args.round_trips, args.warmup)))
        return 0
    result = measure(args)
    print(table(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    from toad.errors import run_main
    sys.exit(run_main(main))
