"""``toad bench stack [--mb N] [--modes m1,m2] [--fast-path python|compiled] [--json FILE]``:
the stack's own costs, no Linux involved (the TAP figures are ``toad bench tcp``). With
``--fast-path compiled`` every stack runs the engine/fast kernels, so the per-frame and
rr figures are the kernels' where they take the frame.

* checksum kernels (numba): RFC 1071 sum, integrated copy+sum, and a plain memcpy
  for scale, at 1460 and 65536 bytes (best of many, microseconds);
* frame building per checksum mode at 1448- and 65483-byte payloads (microseconds);
* bulk TCP through whole stacks on the in-process loopback wire, timed on the wall
  clock with the receiver's sha256 check taken off the clock:
  - ``self``: one stack talking to its own address through a wire that hears itself
    (the offload engine's internal-wire topology), MTU 65535;
  - ``pair``: two stacks at the two ends of one wire, MTU 65535 and 1500, in one
    frame pool (one process: the wire moves slot ids, no copy).
  Both ends run in this one process on one CPU, so the figure is what one CPU moves
  while doing the sender's and the receiver's work.

* per-frame costs of a 64-byte request/response (``rr``) through one stack on a wire
  that hears itself, driven round by round as the offload engine's poller drives it
  (frames in, poll_transmit when anything changed, events): microseconds of stack
  time per call of each kind, and frames / poll_transmit calls / stack time per leg,
  with delayed ACKs off (0 ms) and on (40 ms).

* per-frame costs of bulk TCP at MTU 1500, replayed: a sender's poll_transmit of a
  burst of full segments (per frame), the receiver's receive_frame of those frames,
  and the sender's receive_frame of the ACKs (one per two segments); best of 9 runs,
  microseconds (the figure least disturbed by other processes).

JSON keys: fast_path, checksum_us.{sum,copy_sum,memcpy}.{1460,65536}, build_us.<mode>.{1448,65483},
frames_us.<mode>: {tx_data, rx_data, rx_ack},
rr.<delayed_ack_ms>: {legs, frames_per_leg, polls_per_leg, stack_us_per_leg (sum of
median call times x calls per leg), us: {rx_data, rx_ack, tx_data, tx_ack, tx_none,
events} (median per call), calls: {...}, idle_us: {poll_transmit, next_deadline}
(best per call on the idle 2-connection stack)},
bulk[]: {topology, mtu, checksum, fast_path, bytes, seconds, gbps, cpu_seconds, gbps_per_cpu, intact}
(gbps_per_cpu = bytes moved per CPU-second of this process: the figure that holds on a
busy machine, where wall-clock gbps also counts time the CPU spent on others).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import time

import numpy as np

from engine.nic.loopback import LoopbackWire
from engine.tcp.checksum import copy_sum, ones_sum
from engine.tcp.framing import FrameBuilder, ethernet_prefix
from engine.tcp.stack import Stack
from engine.tcp.wire.tcp import ACK, TcpRepr
from toad.config import TcpConfig, load
from toad.errors import ToadError, run_main
from toad.memory import keep_heap

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
            # built into a pool slot and released (as the NIC would): the slot is reused
            out[mode][size] = best_us(lambda b=builder, s=seg: b.pool.release(
                b.tcp_frame(prefix, IP_A, IP_B, s)), repeat)
    return out


class Endpoint:
    """A stack and its NIC, driven as the in-host runner drives them."""

    def __init__(self, stack: Stack, nic):
        self.stack, self.nic = stack, nic
        self.slots = np.empty(1024, np.int32)

    def step(self, now: float) -> None:
        stack, pool = self.stack, self.stack.pool
        while n := self.nic.receive_burst(now, pool, self.slots):
            stack.receive_frames(pool, self.slots, n, now)
        deadline = stack.next_deadline()
        if deadline is not None and deadline <= now:
            stack.on_timer(now)
        frames = stack.poll_transmit(now)
        if frames:
            self.nic.send_burst(pool, frames, len(frames))
        stack.events()


def taken(stack: Stack, slots: list) -> list[tuple[bytes, bool]]:
    """(bytes, checksum left partial) of frames the stack sent; their slots released."""
    pool = stack.pool
    out = [(bytes(pool.view(slot)), bool(pool.csum_starts[slot])) for slot in slots]
    pool.release_many(slots)
    return out


def bulk(topology: str, mtu: int, mode: str, total: int, write_size: int = 1 << 20,
         fast_path: str = "python") -> dict:
    """Move ``total`` bytes from a client to a server connection; wall-clock timed."""
    config = TcpConfig(checksum=mode, time_wait_s=0.0, fast_path=fast_path)
    wire = LoopbackWire(mtu=mtu, clock=time.monotonic)
    nic_a = wire.attach(MAC_A)
    client = Endpoint(Stack(config, "10.0.0.1/24", MAC_A, nic_a.features), nic_a)
    if topology == "self":
        server, server_ip = client, IP_A
    else:     # one process: both stacks in one frame pool, the wire moves slot ids
        nic_b = wire.attach(MAC_B)
        server = Endpoint(Stack(config, "10.0.0.2/24", MAC_B, nic_b.features, seed=2,
                                pool=client.stack.pool), nic_b)
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
    return {"topology": topology, "mtu": mtu, "checksum": mode, "fast_path": fast_path,
            "bytes": total,
            "seconds": round(seconds, 4), "gbps": round(total * 8 / seconds / 1e9, 3),
            "cpu_seconds": round(cpu, 4),
            "gbps_per_cpu": round(total * 8 / max(cpu, 1e-9) / 1e9, 3),
            "intact": sent_hash.digest() == got_hash.digest()}


class Timed:
    """Stack calls timed one by one (perf_counter_ns), every time kept per kind of
    call: the medians stand when other processes preempt this one now and then."""

    def __init__(self):
        self.ns: dict = {}

    def add(self, kind: str, ns: int) -> None:
        self.ns.setdefault(kind, []).append(ns)

    def medians_us(self) -> dict:
        return {kind: round(statistics.median(times) / 1000, 2)
                for kind, times in self.ns.items()}

    def calls(self, *kinds) -> int:
        return sum(len(self.ns.get(kind, ())) for kind in kinds)


RR_SLOTS = np.empty(64, np.int32)


def rr_round(stack: Stack, nic, now: float, changed: bool, timed: Timed) -> bool:
    """One round of the engine poller (engine/offload/poller.py) on ``stack``;
    returns whether it did anything. Frames of more than 66 bytes carry data."""
    clock = time.perf_counter_ns
    pool, slots = stack.pool, RR_SLOTS
    frames = nic.receive_burst(now, pool, slots)
    if frames:     # the burst as the engine hands it over; its time shared per frame
        kinds = ["rx_data" if pool.lengths[slot] > 66 else "rx_ack"
                 for slot in slots[:frames].tolist()]
        start = clock()
        stack.receive_frames(pool, slots, frames, now)
        share = (clock() - start) // frames
        for kind in kinds:
            timed.add(kind, share)
    out = None
    if frames or changed:
        start = clock()
        out = stack.poll_transmit(now)
        spent = clock() - start
        kind = ("tx_none" if not out else "tx_data" if pool.lengths[out[0]] > 66 else "tx_ack")
        timed.add(kind, spent)
        if out:
            nic.send_burst(pool, out, len(out))
    start = clock()
    events = stack.events()
    timed.add("events", clock() - start)
    return bool(frames or out or events or changed)


def rr_costs(delayed_ack_ms: float, legs: int = 4000, size: int = 64,
             fast_path: str = "python") -> dict:
    """Per-call stack costs of ``legs`` one-way legs of a ``size``-byte ping-pong."""
    config = TcpConfig(nagle=False, delayed_ack_ms=delayed_ack_ms, time_wait_s=0.0,
                       fast_path=fast_path)
    wire = LoopbackWire(mtu=65535, clock=time.monotonic)
    nic = wire.attach(MAC_A)
    stack = Stack(config, "10.0.0.1/24", MAC_A, nic.features)
    listener = stack.listen(5001)
    ends = [stack.connect(IP_A, 5001, time.monotonic())]
    timed = Timed()
    while len(ends) < 2:
        rr_round(stack, nic, time.monotonic(), True, timed)
        accepted = listener.accept()
        if accepted is not None:
            ends.append(accepted)
    while not all(end.state.name == "ESTABLISHED" for end in ends):
        rr_round(stack, nic, time.monotonic(), True, timed)
    message = b"x" * size
    timed = Timed()
    for leg in range(legs):
        sender, receiver = ends[leg & 1], ends[1 - (leg & 1)]
        sender.send(message)
        changed = True
        while len(receiver.recv_buffer) < size:
            if not rr_round(stack, nic, time.monotonic(), changed, timed):
                raise ToadError(f"bench stack rr: leg {leg} stalled")
            changed = False
        while rr_round(stack, nic, time.monotonic(), False, timed):
            pass                              # the rest of the leg: its ACK, if any
        receiver.recv_buffer.read(size)
        receiver.notify_read(time.monotonic())
    us = timed.medians_us()
    per_leg = sum(us[kind] * timed.calls(kind) for kind in us) / legs
    now = time.monotonic()                     # the engine's calls on an idle stack
    idle = {"poll_transmit": round(best_us(lambda: stack.poll_transmit(now), 2000), 2),
            "next_deadline": round(best_us(stack.next_deadline, 2000), 2)}
    return {"legs": legs, "frames_per_leg": round(timed.calls("tx_data", "tx_ack") / legs, 3),
            "polls_per_leg": round(timed.calls("tx_data", "tx_ack", "tx_none") / legs, 3),
            "stack_us_per_leg": round(per_leg, 2), "us": us, "idle_us": idle,
            "calls": {kind: timed.calls(kind) for kind in us}}


def connected_pair(mode: str, fast_path: str = "python"):
    """Two stacks on a 1500-MTU wire, a connection accepted, the whole (scaled) receive
    window advertised: (client stack, server stack, client conn, server conn)."""
    config = TcpConfig(checksum=mode, time_wait_s=0.0, fast_path=fast_path)
    wire = LoopbackWire(mtu=1500, clock=time.monotonic)
    ends = [Endpoint(Stack(config, "10.0.0.1/24", MAC_A, nic.features), nic)
            for nic in (wire.attach(MAC_A),)]
    nic_b = wire.attach(MAC_B)
    ends.append(Endpoint(Stack(config, "10.0.0.2/24", MAC_B, nic_b.features, seed=2), nic_b))
    listener = ends[1].stack.listen(5001)
    conn, accepted = ends[0].stack.connect(IP_B, 5001, time.monotonic()), None
    for _ in range(20):
        for end in ends:
            end.step(time.monotonic())
        if accepted is None and (accepted := listener.accept()) is not None:
            accepted.ack_now = True          # the first ACK carries the scaled window
    if accepted is None or conn.snd_wnd < 1 << 20:
        raise ToadError("bench stack: the replay pair did not connect")
    return ends[0].stack, ends[1].stack, conn, accepted


def burst(mode: str, segments: int, fast_path: str = "python"):
    """A connected pair and one burst of ``segments`` full data frames from its
    sender: (sender, receiver, sender's connection, frames, us per frame built)."""
    sender, receiver, conn, _ = connected_pair(mode, fast_path)
    conn.cc.cwnd = 1 << 30
    data = bytes(segments * conn.eff_mss)       # (read before the fast path takes it)
    sender.poll_transmit(time.monotonic())      # (here the fast path exports it)
    conn.send(data)
    start = time.perf_counter_ns()
    frames = sender.poll_transmit(time.monotonic())
    tx_us = (time.perf_counter_ns() - start) / len(frames) / 1000
    if len(frames) != segments:
        raise ToadError(f"bench stack: a burst of {len(frames)} frames, not {segments}")
    if fast_path == "compiled" and sender.counters["fast.tx"] != segments:
        raise ToadError("bench stack: the transmit kernel did not build the burst")
    return sender, receiver, conn, taken(sender, frames), tx_us


def received(stack: Stack, frames, now: float) -> float:
    """Microseconds per frame for ``stack.receive_frames`` of ``frames`` ((bytes,
    csum_ok) pairs) put in its pool first, as one NIC burst."""
    pool = stack.pool
    slots = np.array([pool.put(data, ok) for data, ok in frames], np.int32)
    if (slots < 0).any():
        raise ToadError("bench stack: the replay's frames do not fit the frame pool")
    start = time.perf_counter_ns()
    stack.receive_frames(pool, slots, len(slots), now)
    return (time.perf_counter_ns() - start) / len(slots) / 1000


def frame_replay(mode: str, fast_path: str = "python", segments: int = 600) -> tuple[float, float, float]:
    """(tx per data frame, rx per data frame, rx per ACK) in microseconds, one run.
    Data frames are received in one burst (as a NIC hands them over); the ACKs come
    from a second pair whose receiver answers every second segment, then reach its
    sender in one burst."""
    _, receiver, _, frames, tx_us = burst(mode, segments, fast_path)
    rx_us = received(receiver, frames, time.monotonic())
    sender, receiver, conn, frames, _ = burst(mode, segments, fast_path)
    acks, now = [], time.monotonic()
    for i in range(0, len(frames), 2):
        received(receiver, frames[i:i + 2], now)
        acks += taken(receiver, receiver.poll_transmit(now))
    ack_us = received(sender, acks, now)
    if conn.bytes_acked != segments * conn.eff_mss:
        raise ToadError("bench stack: replayed ACKs did not acknowledge every byte")
    return tx_us, rx_us, ack_us


def frame_figures(modes, fast_path: str) -> dict:
    out = {}
    for mode in modes:
        runs = [frame_replay(mode, fast_path) for _ in range(9)]
        out[mode] = {key: round(min(run[i] for run in runs), 2)
                     for i, key in enumerate(("tx_data", "rx_data", "rx_ack"))}
    return out


def parse_args(argv):
    # the description: the docstring's first paragraph, as one line
    p = argparse.ArgumentParser(prog="toad bench stack",
                                description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("--mb", type=int, default=256, help="MB per bulk run at MTU 65535 "
                   "(MTU 1500 runs move a quarter of it); default 256")
    p.add_argument("--modes", default="offloaded,integrated,software,off",
                   help="checksum modes, comma-separated")
    p.add_argument("--fast-path", default="python", choices=("python", "compiled"),
                   help="tcp.fast_path of every stack (default python)")
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
    keep_heap(load(None).heap_trim_bytes)   # the stacks run here, as in the engine
    result = {"fast_path": args.fast_path, "checksum_us": checksum_figures(),
              "build_us": build_figures(args.modes), "bulk": [],
              "load_average": os.getloadavg()}
    for name, sizes in result["checksum_us"].items():
        print(f"checksum {name:9s} " + "  ".join(f"{s} B: {us:7.2f} us" for s, us in sizes.items()))
    for mode, sizes in result["build_us"].items():
        print(f"build    {mode:10s}" + "  ".join(f"{s} B: {us:7.2f} us" for s, us in sizes.items()))
    result["frames_us"] = frame_figures(args.modes, args.fast_path)
    for mode, row in result["frames_us"].items():
        print(f"frames   {mode:10s} MTU 1500: tx data {row['tx_data']:5.2f} us, rx data "
              f"{row['rx_data']:5.2f} us, rx ACK {row['rx_ack']:5.2f} us per frame", flush=True)
    result["rr"] = {}
    for delayed_ack_ms in (0, 40):
        row = result["rr"][delayed_ack_ms] = rr_costs(delayed_ack_ms,
                                                      fast_path=args.fast_path)
        print(f"rr 64 B delayed_ack_ms={delayed_ack_ms:2d}: {row['frames_per_leg']:.2f} frames, "
              f"{row['polls_per_leg']:.2f} poll_transmit, {row['stack_us_per_leg']:.1f} us "
              "of stack per leg; us per call: "
              + ", ".join(f"{k} {v:.2f}" for k, v in sorted(row["us"].items()))
              + "; idle stack: " + ", ".join(f"{k} {v:.2f}" for k, v in row["idle_us"].items()),
              flush=True)
    for topology, mtu in (("self", 65535), ("pair", 65535), ("pair", 1500)):
        for mode in args.modes:
            total = args.mb << 20 if mtu > 9000 else args.mb << 18
            row = bulk(topology, mtu, mode, total, fast_path=args.fast_path)
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
