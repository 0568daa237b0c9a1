"""``toad bench stack [--mb N] [--modes m1,m2] [--json FILE]``: the stack's own costs,
no Linux involved (the TAP figures are ``toad bench tcp``).

* checksum kernels (numba): RFC 1071 sum, integrated copy+sum, and a plain memcpy
  for scale, at 1460 and 65536 bytes (best of many, microseconds);
* frame building per checksum mode at 1448- and 65483-byte payloads (microseconds);
* bulk TCP through whole stacks on the in-process loopback wire, timed on the wall
  clock with the receiver's sha256 check taken off the clock:
  - ``self``: one stack talking to its own address through a wire that hears itself
    (the offload engine's internal-wire topology), MTU 65535;
  - ``pair``: two stacks at the two ends of one wire, MTU 65535 and 1500.
  Both ends run in this one process on one CPU, so the figure is what one CPU moves
  while doing the sender's and the receiver's work.

JSON keys: checksum_us.{sum,copy_sum,memcpy}.{1460,65536}, build_us.<mode>.{1448,65483},
bulk[]: {topology, mtu, checksum, bytes, seconds, gbps, cpu_seconds, gbps_per_cpu, intact}
(gbps_per_cpu = bytes moved per CPU-second of this process: the figure that holds on a
busy machine, where wall-clock gbps also counts time the CPU spent on others).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time

from engine.nic.loopback import LoopbackWire
from engine.tcp.checksum import copy_sum, ones_sum
from engine.tcp.framing import FrameBuilder, ethernet_prefix
from engine.tcp.stack import Stack
from engine.tcp.wire.tcp import ACK, TcpRepr
from toad.config import TcpConfig
from toad.errors import ToadError, run_main

MAC_A = bytes.fromhex("02000000000a")
MAC_B = bytes.fromhex("02000000000b")
IP_A, IP_B = 0x0A000001, 0x0A000002
MODES = ("software", "integrated", "offloaded", "off")


def best_us(fn, repeat: int) -> float:
    """Best per-call time of ``fn`` over 5 batches of ``repeat`` calls."""
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeat):
            fn()
        best = min(best, (time.perf_counter() - start) / repeat)
    return best * 1e6


def checksum_figures() -> dict:
    out: dict = {"sum": {}, "copy_sum": {}, "memcpy": {}}
    for size in (1460, 65536):
        src = bytearray(os.urandom(size))
        dst = bytearray(size + 64)
        target = memoryview(dst)[54:54 + size]
        ones_sum(src), copy_sum(target, src)                  # load the compiled kernels
        repeat = 2000 if size > 10000 else 20000
        out["sum"][size] = best_us(lambda: ones_sum(src), repeat)
        out["copy_sum"][size] = best_us(lambda: copy_sum(target, src), repeat)
        out["memcpy"][size] = best_us(lambda: target.__setitem__(slice(None), src), repeat)
    return out


def build_figures(modes) -> dict:
    out: dict = {}
    from engine.nic.base import NicFeatures
    nic = NicFeatures(mtu=65535, mac=MAC_A, tx_csum=True, rx_csum=True, tso=False, tso_max=0)
    prefix = ethernet_prefix(MAC_B, MAC_A)
    for mode in modes:
        builder = FrameBuilder(mode, nic)
        out[mode] = {}
        for size in (1448, 65483):
            seg = TcpRepr(5001, 40000, 1, 1, ACK, 1000, timestamp=(1, 2),
                          payload=memoryview(bytearray(os.urandom(size))))
            repeat = 1000 if size > 10000 else 10000
            out[mode][size] = best_us(lambda: builder.tcp_frame(prefix, IP_A, IP_B, seg), repeat)
    return out


class Endpoint:
    """A stack and its NIC, driven as the in-host runner drives them."""

    def __init__(self, stack: Stack, nic):
        self.stack, self.nic = stack, nic

    def step(self, now: float) -> None:
        for frame, csum_ok in self.nic.receive(now, 1 << 20):
            self.stack.receive_frame(frame, now, csum_ok)
        deadline = self.stack.next_deadline()
        if deadline is not None and deadline <= now:
            self.stack.on_timer(now)
        frames = self.stack.poll_transmit(now)
        if frames:
            self.nic.send(frames)
        self.stack.events()


def bulk(topology: str, mtu: int, mode: str, total: int, write_size: int = 1 << 20) -> dict:
    """Move ``total`` bytes from a client to a server connection; wall-clock timed."""
    config = TcpConfig(checksum=mode, time_wait_s=0.0)
    wire = LoopbackWire(mtu=mtu, clock=time.monotonic)
    nic_a = wire.attach(MAC_A)
    client = Endpoint(Stack(config, "10.0.0.1/24", MAC_A, nic_a.features), nic_a)
    if topology == "self":
        server, server_ip = client, IP_A
    else:
        nic_b = wire.attach(MAC_B)
        server = Endpoint(Stack(config, "10.0.0.2/24", MAC_B, nic_b.features, seed=2), nic_b)
        server_ip = IP_B
    endpoints = [client] if server is client else [client, server]
    block = os.urandom(write_size)
    listener = server.stack.listen(5001)
    conn = client.stack.connect(server_ip, 5001, time.monotonic())
    accepted, sent, received, hash_time, hash_cpu = None, 0, 0, 0.0, 0.0
    sent_hash, got_hash = hashlib.sha256(), hashlib.sha256()
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    while received < total:
        now = time.monotonic()
        for endpoint in endpoints:
            endpoint.step(now)
        if accepted is None:
            accepted = listener.accept()
        elif len(accepted.recv_buffer):
            chunk = accepted.recv_buffer.read(len(accepted.recv_buffer))
            received += len(chunk)
            mark, mark_cpu = time.perf_counter(), time.process_time()
            got_hash.update(chunk)
            hash_time += time.perf_counter() - mark
            hash_cpu += time.process_time() - mark_cpu
            accepted.notify_read(now)
        if sent < total and conn.state.name == "ESTABLISHED":
            piece = memoryview(block)[:min(write_size, total - sent)]
            taken = conn.send(piece)
            if taken:
                mark, mark_cpu = time.perf_counter(), time.process_time()
                sent_hash.update(piece[:taken])
                hash_time += time.perf_counter() - mark
                hash_cpu += time.process_time() - mark_cpu
                sent += taken
        if time.perf_counter() - start_wall > 600:
            raise ToadError(f"bench stack: {topology} mtu {mtu} stalled at {received} bytes")
    seconds = time.perf_counter() - start_wall - hash_time
    cpu = time.process_time() - start_cpu - hash_cpu
    return {"topology": topology, "mtu": mtu, "checksum": mode, "bytes": total,
            "seconds": round(seconds, 4), "gbps": round(total * 8 / seconds / 1e9, 3),
            "cpu_seconds": round(cpu, 4),
            "gbps_per_cpu": round(total * 8 / max(cpu, 1e-9) / 1e9, 3),
            "intact": sent_hash.digest() == got_hash.digest()}


def parse_args(argv):
    p = argparse.ArgumentParser(prog="toad bench stack", description=__doc__.splitlines()[0])
    p.add_argument("--mb", type=int, default=256, help="MB per bulk run at MTU 65535 "
                   "(MTU 1500 runs move a quarter of it); default 256")
    p.add_argument("--modes", default="offloaded,integrated,software,off",
                   help="checksum modes, comma-separated")
    p.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    args = p.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    for mode in modes:
        if mode not in MODES:
            raise ToadError(f"--modes: {mode!r} is not one of {', '.join(MODES)}")
    if args.mb < 1:
        raise ToadError("--mb: must be >= 1")
    args.modes = modes
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    result = {"checksum_us": checksum_figures(), "build_us": build_figures(args.modes),
              "bulk": [], "load_average": os.getloadavg()}
    for name, sizes in result["checksum_us"].items():
        print(f"checksum {name:9s} " + "  ".join(f"{s} B: {us:7.2f} us" for s, us in sizes.items()))
    for mode, sizes in result["build_us"].items():
        print(f"build    {mode:10s}" + "  ".join(f"{s} B: {us:7.2f} us" for s, us in sizes.items()))
    for topology, mtu in (("self", 65535), ("pair", 65535), ("pair", 1500)):
        for mode in args.modes:
            total = args.mb << 20 if mtu > 9000 else args.mb << 18
            row = bulk(topology, mtu, mode, total)
            result["bulk"].append(row)
            print(f"bulk {topology:4s} mtu {mtu:5d} {mode:10s} {row['gbps']:6.2f} Gb/s wall, "
                  f"{row['gbps_per_cpu']:6.2f} Gb/s per CPU-second ({row['bytes'] >> 20} MB, "
                  f"cpu {row['cpu_seconds']:.2f} s, intact={row['intact']})", flush=True)
            if not row["intact"]:
                raise ToadError(f"bench stack: data corrupted in {topology} mtu {mtu} {mode}")
    print(f"load average (1 min) at the start: {result['load_average'][0]:.2f}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(result, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
