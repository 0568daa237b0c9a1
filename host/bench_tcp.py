"""``toad bench tcp``: one toad stack on one CPU, to and from Linux over a TAP device.

    toad bench tcp [--json FILE] [--seconds S] [--cases tso,plain,jumbo]
                   [--directions send,recv] [--profile FILE]

Each case runs the in-host runner (host/inhost.py) pinned to one CPU against iperf 2
(or a Python socket when iperf is missing) in a namespace pinned to the other CPUs,
once sending and once receiving, and reports goodput, the toad process's CPU (user +
system, % of one CPU) and CPU % per Gb/s. Cases: ``tso`` (MTU 1500, checksum offload
and TSO/GSO through the virtio-net header), ``plain`` (MTU 1500, no offloads),
``jumbo`` (MTU 9000, no offloads). Byte counts of both ends are compared (a mismatch
fails the run); content is checked by the interop tests (sha256), not here, because
hashing would cost toad's CPU. Needs root and /dev/net/tun.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time

from toad.config import load
from toad.errors import ToadError
from toad.memory import keep_heap
from toad.netns import have_net_admin, install_signal_cleanup

CASES = {
    "tso": (1500, "[csum,tso]"),
    "plain": (1500, "[]"),
    "jumbo": (9000, "[]"),
}
CHUNK = 256 * 1024
WARMUP_S = 0.5
TOAD_IP, LINUX_IP = "10.77.0.2", "10.77.0.1"
IPERF_HEADER = 128            # leading zero bytes: iperf 2 reads them as "no settings"

PY_SINK = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(1)
c, _ = s.accept(); total = 0; buf = bytearray(1 << 20)
while n := c.recv_into(buf):
    total += n
print(",".join(["0"] * 7 + [str(total)]), flush=True)
"""
PY_SOURCE = """
import socket, sys, time
c = socket.create_connection((sys.argv[1], int(sys.argv[2]))); data = bytes(1 << 20)
end, total = time.monotonic() + float(sys.argv[3]), 0
while time.monotonic() < end:
    c.sendall(data); total += len(data)
c.close(); print(",".join(["0"] * 7 + [str(total)]), flush=True)
"""


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="toad bench tcp", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", help="write the results to this file")
    parser.add_argument("--seconds", type=float, default=3.0, help="measured time per run")
    parser.add_argument("--cases", default="tso,plain", help=f"comma list of {', '.join(CASES)}")
    parser.add_argument("--directions", default="send,recv",
                        help="comma list of send (toad sends), recv (toad receives)")
    parser.add_argument("--profile", help="cProfile the runs, write stats to this file")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="extra config overrides (tcp.*)")
    args = parser.parse_args(argv)
    args.case_list = [c.strip() for c in args.cases.split(",") if c.strip()]
    for case in args.case_list:
        if case not in CASES:
            parser.error(f"--cases: unknown case {case!r} (known: {', '.join(CASES)})")
    args.direction_list = [d.strip() for d in args.directions.split(",") if d.strip()]
    for direction in args.direction_list:
        if direction not in ("send", "recv"):
            parser.error(f"--directions: unknown direction {direction!r} (known: send, recv)")
    if args.seconds <= 0:
        parser.error("--seconds must be > 0")
    return args


def pin() -> tuple[int, list[int]]:
    """Pin this process to one CPU (the last one allowed); the peer gets the rest."""
    cpus = sorted(os.sched_getaffinity(0))
    toad_cpu = cpus[-1]
    os.sched_setaffinity(0, {toad_cpu})
    return toad_cpu, [c for c in cpus if c != toad_cpu] or [toad_cpu]


def config_for(case: str, overrides: list[str]):
    mtu, offloads = CASES[case]
    tag = os.getpid() % 100000
    return load(None, [f"name=bench{tag}", "nic.kind=tap", f"nic.tap.netns=toad-bench{tag}",
                       f"nic.tap.device=toadb{tag}", f"nic.tap.mtu={mtu}",
                       f"nic.tap.offloads={offloads}", "tcp.time_wait_s=0.1", *overrides])


def start_peer(net, argv: list[str], peer_cpus: list[int]) -> subprocess.Popen:
    nic = getattr(net.nic, "inner", net.nic)
    return subprocess.Popen(nic.netns.command(["timeout", "300", *argv]),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True,   # stop() kills the whole group
                            preexec_fn=lambda: os.sched_setaffinity(0, set(peer_cpus)))


def stop(peer: subprocess.Popen) -> None:
    """Kill the peer and whatever `timeout` started for it (its process group)."""
    try:
        os.killpg(peer.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    peer.wait()


def peer_bytes(net, peer: subprocess.Popen, timeout: float = 30.0) -> int:
    """The byte count in the peer's CSV report (iperf -y C: field 8)."""
    import select
    ready = lambda: bool(select.select([peer.stdout], [], [], 0)[0])  # noqa: E731
    if not net.wait(ready, timeout):
        raise ToadError(f"the Linux peer gave no report: {peer.stderr.read() if peer.poll() else ''}")
    line = peer.stdout.readline().strip()
    try:
        return int(line.split(",")[7])
    except (IndexError, ValueError):
        raise ToadError(f"unexpected report from the Linux peer: {line!r}") from None
    finally:
        stop(peer)


def connect_retrying(net, port: int):
    for _ in range(100):
        try:
            return net.create_connection((LINUX_IP, port), timeout=5)
        except ConnectionRefusedError:
            net.wait(lambda: False, 0.05)
    raise ToadError(f"the Linux peer never listened on port {port}")


def cpu_times() -> tuple[float, float, float]:
    """(user, system, run-queue wait) seconds of this process. System time includes
    the kernel's work done in toad's write() to the TAP (Linux's receive path often
    runs there); the run-queue wait (/proc/self/schedstat) is time toad was ready to
    run but another process had its CPU: on a loaded machine it caps the goodput."""
    times = os.times()
    try:
        with open("/proc/self/schedstat") as stat:
            waited = int(stat.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        waited = 0.0
    return times.user, times.system, waited


def cpu_delta(start: tuple, end: tuple) -> dict:
    return {"cpu_user": end[0] - start[0], "cpu_system": end[1] - start[1],
            "runqueue_wait": end[2] - start[2]}


def run_send(net, seconds: float, peer_cpus: list[int], iperf: bool) -> dict:
    argv = (["iperf", "-s", "-1", "-p", "5201", "-y", "C"] if iperf
            else [sys.executable, "-c", PY_SINK, "5201"])
    peer = start_peer(net, argv, peer_cpus)
    try:
        sock = connect_retrying(net, 5201)
        chunk = memoryview(bytes(CHUNK))
        sent = sock.send(chunk[:IPERF_HEADER])
        t_start = time.monotonic() + WARMUP_S
        end = t_start + seconds
        acked0 = cpu0 = None
        while True:
            now = time.monotonic()
            if acked0 is None and now >= t_start:
                acked0, cpu0, t0 = sock.conn.bytes_acked, cpu_times(), now
            if now >= end:
                break
            sent += sock.send(chunk)
        acked, cpu, wall = sock.conn.bytes_acked - acked0, cpu_delta(cpu0, cpu_times()), now - t0
        sock.shutdown(1)
        sock.settimeout(30)
        sock.recv(1)
        sock.close()
        counted = peer_bytes(net, peer)
    finally:
        stop(peer)
    if not sent - IPERF_HEADER <= counted <= sent:
        raise ToadError(f"toad sent {sent} bytes but the Linux peer counted {counted}")
    return {"bytes": acked, "seconds": wall, **cpu}


def run_recv(net, seconds: float, peer_cpus: list[int], iperf: bool) -> dict:
    server = net.socket()
    server.bind(("", 5001))
    server.listen(1)
    length = f"{seconds + WARMUP_S + 0.2:.2f}"
    argv = (["iperf", "-c", TOAD_IP, "-p", "5001", "-t", length, "-l", "128K", "-y", "C"]
            if iperf else [sys.executable, "-c", PY_SOURCE, TOAD_IP, "5001", length])
    peer = start_peer(net, argv, peer_cpus)
    try:
        server.settimeout(30)
        conn, _ = server.accept()
        conn.settimeout(60)
        buf = bytearray(CHUNK)
        total, marks, last = 0, None, None
        t_start = time.monotonic() + WARMUP_S
        # CPU times are read twice only (they open /proc/self/schedstat: reading them
        # per recv would bill the benchmark's own bookkeeping to toad's CPU); the run
        # ends at the first recv past the end, bytes counted up to it.
        while n := conn.recv_into(buf):
            total += n
            if last is None:
                now = time.monotonic()
                if marks is None and now >= t_start:
                    marks = (total, cpu_times(), now)
                elif marks is not None and now >= t_start + seconds:
                    last = (total, cpu_times(), now)
        if marks is not None and last is None:     # the peer stopped a little early
            last = (total, cpu_times(), time.monotonic())
        conn.close()
        server.close()
        counted = peer_bytes(net, peer)
    finally:
        stop(peer)
    if counted != total:
        raise ToadError(f"the Linux peer sent {counted} bytes but toad received {total}")
    if marks is None:
        raise ToadError("the Linux peer stopped before the measurement started")

    return {"bytes": last[0] - marks[0], "seconds": last[2] - marks[2],
            **cpu_delta(marks[1], last[1])}


def measure(case: str, direction: str, args, peer_cpus, iperf: bool) -> dict:
    from host.inhost import InhostNetwork
    config = config_for(case, args.overrides)
    with InhostNetwork(config) as net:
        run = run_send if direction == "send" else run_recv
        result = run(net, args.seconds, peer_cpus, iperf)
        counters = net.counters
    gbps = result["bytes"] * 8 / result["seconds"] / 1e9
    cpu_pct = 100.0 * (result["cpu_user"] + result["cpu_system"]) / result["seconds"]
    return {"case": case, "direction": direction, "mtu": config.nic.tap.mtu,
            "offloads": list(config.nic.tap.offloads), "goodput_gbps": round(gbps, 3),
            "toad_cpu_percent": round(cpu_pct, 1),
            "toad_system_percent": round(100.0 * result["cpu_system"] / result["seconds"], 1),
            "toad_runqueue_wait_percent": round(100.0 * result["runqueue_wait"]
                                                / result["seconds"], 1),
            # what one whole CPU would move at this cost (the figure a loaded machine,
            # where toad waits for its CPU, cannot show directly)
            "gbps_per_cpu": round(100.0 / (cpu_pct / gbps), 2) if gbps and cpu_pct else None,
            "cpu_percent_per_gbps": round(cpu_pct / gbps, 1) if gbps else None,
            "bytes": result["bytes"], "seconds": round(result["seconds"], 3),
            "retransmits": counters.get("conn.tx_retransmit", 0),
            "nic_gso_frames": counters.get("nic.tx_gso_frames", 0) + counters.get(
                "nic.rx_gso_frames", 0)}


def table(rows: list[dict]) -> str:
    lines = [f"{'case':<6} {'dir':<5} {'MTU':>5} {'offloads':<9} {'Gb/s':>7} "
             f"{'toad CPU %':>10} {'of it sys':>9} {'CPU wait %':>10} {'CPU %/Gb/s':>10} "
             f"{'Gb/s/CPU':>8}"]
    for r in rows:
        lines.append(f"{r['case']:<6} {r['direction']:<5} {r['mtu']:>5} "
                     f"{','.join(r['offloads']) or '-':<9} {r['goodput_gbps']:>7.2f} "
                     f"{r['toad_cpu_percent']:>10.1f} {r['toad_system_percent']:>9.1f} "
                     f"{r['toad_runqueue_wait_percent']:>10.1f} "
                     f"{r['cpu_percent_per_gbps'] or 0:>10.1f} {r['gbps_per_cpu'] or 0:>8.2f}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if not have_net_admin():
        raise ToadError("toad bench tcp needs root (or CAP_NET_ADMIN) and /dev/net/tun")
    install_signal_cleanup()
    # the stack runs in this process: the heap rule of its config (--set included)
    keep_heap(config_for(args.case_list[0], args.overrides).heap_trim_bytes)
    iperf = shutil.which("iperf") is not None
    toad_cpu, peer_cpus = pin()
    profiler = None
    if args.profile:
        import cProfile
        profiler = cProfile.Profile()
        profiler.enable()
    rows = []
    for case in args.case_list:
        for direction in args.direction_list:
            print(f"bench tcp: {case} {direction} ...", file=sys.stderr, flush=True)
            rows.append(measure(case, direction, args, peer_cpus, iperf))
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(args.profile)
    print(table(rows))
    result = {"benchmark": "tcp", "command": "toad bench tcp " + " ".join(argv),
              "toad_cpu": toad_cpu, "peer_cpus": peer_cpus,
              "peer": "iperf 2" if iperf else "python socket",
              "shared_cpu": toad_cpu in peer_cpus, "seconds": args.seconds, "runs": rows}
    print("CPU wait %: toad ready to run while other processes held its CPU; "
          "Gb/s/CPU = 100 / (CPU %/Gb/s)")
    if toad_cpu in peer_cpus:
        print("warning: one CPU only: toad and the Linux peer share it", file=sys.stderr)
    if any(r["toad_runqueue_wait_percent"] > 10 for r in rows):
        print("warning: toad waited for its CPU (other processes run there): goodput is "
              "capped by the machine's load; CPU %/Gb/s still holds", file=sys.stderr)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(result, out, indent=2)
    return 0
