"""rr and crr over many connections at once (``workload.connections`` > 1).

- rr: the client opens N connections (their set-up timed: ``setup``), then runs
  waves for warmup + duration: a request of ``size`` bytes on every connection, then
  each reply read in turn; so each connection always has one request outstanding.
  The server accepts the N connections and answers in waves likewise until each one
  ends (EOF where a request should start).
- crr: waves of N new connections: each opened, one request, its reply, the server's
  close; the server is host.workloads.rr_server's crr loop (one connection after the
  other, in the order they are accepted).

Latency of a transaction: from its request's send (crr: from its wave's start, which
opens its connection) to its reply (crr: to the server's close) as the client read
it, reading the wave in turn: a closed loop with N requests in flight.

Integrity: every byte of every message is checked, as with one connection, but the
two ends may serve the connections in different orders (the server's accept order is
the engine's), so each side keeps a CRC-32 per connection stream (crr: per
connection, one message each) and reports their sum (ConnectionSums); a byte changed,
lost or moved within a stream changes its stream's CRC and the sum.
"""
from __future__ import annotations

import resource
import socket
import time
import zlib

import numpy as np

from host.integrity import SAMPLE_EVERY, clock_overhead, pattern
from host.workloads import (Latencies, Meter, Plan, accept_nodelay, recv_exact,
                            set_nodelay)
from toad.errors import ToadError

CONNECT_TIMEOUT_S = 30.0
_MASK64 = (1 << 64) - 1
_SAMPLE_MASK = SAMPLE_EVERY - 1
_crc32 = zlib.crc32


class ConnectionSums:
    """CRC-32s of many byte streams (one per connection) and the CPU time they cost;
    ``crc`` is their sum mod 2**64, the same whatever order the streams were served
    in."""

    def __init__(self, count: int, clock=time.thread_time) -> None:
        self.crcs = [0] * count
        self.extra = 0                  # the sum of streams added whole (crr)
        self.clock = clock
        self.calls = 0
        self.nbytes = self.timed_bytes = 0
        self.timed_s = 0.0
        self.overhead_s = clock_overhead(clock)

    def update(self, index: int, view) -> None:
        """``view`` continues stream ``index``."""
        calls = self.calls
        self.calls = calls + 1
        self.nbytes += len(view)
        if calls & _SAMPLE_MASK:
            self.crcs[index] = _crc32(view, self.crcs[index])
            return
        start = self.clock()
        self.crcs[index] = _crc32(view, self.crcs[index])
        self.timed_s += max(0.0, self.clock() - start - self.overhead_s)
        self.timed_bytes += len(view)

    def add(self, view) -> None:
        """A whole stream of its own (a crr connection's one message)."""
        calls = self.calls
        self.calls = calls + 1
        self.nbytes += len(view)
        if calls & _SAMPLE_MASK:
            self.extra += _crc32(view)
            return
        start = self.clock()
        self.extra += _crc32(view)
        self.timed_s += max(0.0, self.clock() - start - self.overhead_s)
        self.timed_bytes += len(view)

    @property
    def crc(self) -> int:
        return (sum(self.crcs) + self.extra) & _MASK64

    @property
    def cpu_s(self) -> float:
        if not self.timed_bytes:
            return self.timed_s
        return self.timed_s * self.nbytes / self.timed_bytes


def raise_descriptor_limit(connections: int) -> int:
    """Linux sockets are file descriptors: raise RLIMIT_NOFILE (soft, and the hard
    limit too when allowed) to fit ``connections`` and a margin; returns the limit."""
    need = connections + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need:
        return soft
    if hard != resource.RLIM_INFINITY and hard < need:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, need))
            return need
        except (ValueError, OSError):
            raise ToadError(f"workload.connections: {connections} connections need {need} "
                            f"file descriptors and the hard limit is {hard} (raise it: "
                            f"ulimit -Hn {need}, or lower workload.connections)") from None
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    return need


def open_connections(network, address: tuple[str, int], count: int) -> list:
    """``count`` connected sockets with TCP_NODELAY: by the network's own opener when it
    has one (offload, kernel: many handshakes in flight at once), else one
    create_connection after the other."""
    opener = getattr(network, "open_connections", None)
    if opener is not None:
        socks = opener(address, count, CONNECT_TIMEOUT_S)
    else:
        socks = [network.create_connection(address, timeout=CONNECT_TIMEOUT_S)
                 for _ in range(count)]
    for sock in socks:
        set_nodelay(sock)
    return socks


def engine_rss_kib(network) -> int | None:
    """The engine process's resident memory (offload mode), else None."""
    reader = getattr(network, "engine_rss_kib", None)
    return reader() if reader is not None else None


def rr_many_client(network, address: tuple[str, int], plan: Plan) -> dict:
    """rr over ``plan.connections`` connections at once (see the module's doc)."""
    count, size = plan.connections, plan.size
    data = memoryview(pattern(4 * size + 4093, plan.seed))
    span = len(data) - size
    reply = memoryview(bytearray(size))
    sent, got = ConnectionSums(count), ConnectionSums(count)
    meter, lat = Meter(plan.host_cpus), Latencies()
    rss = [engine_rss_kib(network)]
    started = time.monotonic()
    socks = open_connections(network, address, count)
    setup_s = time.monotonic() - started
    sent_at = np.zeros(count, np.int64)
    moved = i = waves = 0
    start = time.monotonic()
    measure_at, stop_at = start + plan.warmup_s, start + plan.warmup_s + plan.duration_s
    clock = time.perf_counter_ns
    while True:
        now = time.monotonic()
        if not meter.started and now >= measure_at:
            meter.start(moved, sent, got)
        if now >= stop_at and meter.started and moved > meter.bytes0:
            break
        for k, sock in enumerate(socks):
            offset = (i * 7919) % span
            request = data[offset:offset + size]
            sent_at[k] = clock()
            sock.sendall(request)
            sent.update(k, request)
            i += 1
        measured = meter.started
        for k, sock in enumerate(socks):
            if recv_exact(sock, reply, size) < size:
                raise ToadError("the rr server closed a connection before answering")
            done = clock()
            got.update(k, reply)
            if measured:
                lat.add(done - sent_at[k])
        moved += 2 * size * count
        waves += 1
        if waves == 1:
            rss.append(engine_rss_kib(network))
    meter.stop(moved, sent, got)
    for sock in socks:
        sock.shutdown(socket.SHUT_WR)
    drain = bytearray(16)
    for sock in socks:
        while sock.recv_into(drain) > 0:
            pass
        sock.close()
    transactions = (meter.bytes1 - meter.bytes0) // (2 * size)
    return {"measured": meter.as_json(), "crc_sent": sent.crc, "crc_recv": got.crc,
            "total_bytes": moved, "bytes_copied": meter.bytes1 - meter.bytes0,
            "latency_us": lat.as_json(), "transactions": i,
            "many": many_json(count, setup_s, transactions, meter, rss, waves)}


def many_json(count: int, setup_s: float | None, transactions: int, meter: Meter,
              rss: list, waves: int) -> dict:
    """The client's figures of a many-connection run (docs/measurement.md)."""
    wall = meter.t1 - meter.t0
    before, after = (rss + [None, None])[:2]
    return {"connections": count, "waves": waves,
            "setup_s": None if setup_s is None else round(setup_s, 4),
            "setup_per_s": None if not setup_s else round(count / setup_s, 1),
            "transactions_per_s": round(transactions / wall, 1) if wall > 0 else None,
            "engine_rss_kib": [before, after]}


def rr_many_server(listener, plan: Plan) -> dict:
    """Accept ``plan.connections`` connections, then answer in waves until each one
    ends (EOF where a request should start)."""
    count, size = plan.connections, plan.size
    buf = memoryview(bytearray(size))
    sent, got, meter = ConnectionSums(count), ConnectionSums(count), Meter(plan.host_cpus)
    started = time.monotonic()
    socks = [accept_nodelay(listener) for _ in range(count)]
    accept_s = time.monotonic() - started
    open_ = list(range(count))
    moved, measure_at = 0, None
    while open_:
        still = []
        for k in open_:
            sock = socks[k]
            n = recv_exact(sock, buf, size)
            if n < size:
                got.update(k, buf[:n])
                sock.close()
                continue
            sock.sendall(buf)          # answer first: the checksums stay off the round trip
            got.update(k, buf)
            sent.update(k, buf)
            moved += 2 * size
            still.append(k)
        open_ = still
        if measure_at is None:
            measure_at = time.monotonic() + plan.warmup_s
        if not meter.started and time.monotonic() >= measure_at:
            meter.start(moved, sent, got)
    if not meter.started:
        meter.start(moved, sent, got)
    meter.stop(moved, sent, got)
    return {"measured": meter.as_json(), "crc_sent": sent.crc, "crc_recv": got.crc,
            "total_bytes": moved, "bytes_copied": meter.bytes1 - meter.bytes0,
            "accept_s": round(accept_s, 4)}


def crr_many_client(network, address: tuple[str, int], plan: Plan) -> dict:
    """crr in waves of ``plan.connections`` new connections (see the module's doc)."""
    count, size = plan.connections, plan.size
    data = memoryview(pattern(4 * size + 4093, plan.seed))
    span = len(data) - size
    reply = memoryview(bytearray(size))
    sent, got = ConnectionSums(0), ConnectionSums(0)
    meter, lat = Meter(plan.host_cpus), Latencies()
    rss = [engine_rss_kib(network)]
    drain = bytearray(16)
    moved = i = waves = 0
    setup_s = None
    start = time.monotonic()
    measure_at, stop_at = start + plan.warmup_s, start + plan.warmup_s + plan.duration_s
    clock = time.perf_counter_ns
    while True:
        now = time.monotonic()
        if not meter.started and now >= measure_at:
            meter.start(moved, sent, got)
        if now >= stop_at and meter.started and moved > meter.bytes0:
            break
        wave_start = clock()
        socks = open_connections(network, address, count)
        if setup_s is None:
            setup_s = (clock() - wave_start) / 1e9
        for sock in socks:
            offset = (i * 7919) % span
            request = data[offset:offset + size]
            sock.sendall(request)
            sent.add(request)
            i += 1
        measured = meter.started
        for sock in socks:
            if recv_exact(sock, reply, size) < size:
                raise ToadError("the crr server closed a connection before answering")
            while sock.recv_into(drain) > 0:   # the server closes first
                pass
            done = clock()
            sock.close()
            got.add(reply)
            if measured:
                lat.add(done - wave_start)
        moved += 2 * size * count
        waves += 1
        if waves == 1:
            rss.append(engine_rss_kib(network))
    meter.stop(moved, sent, got)
    last = network.create_connection(address, timeout=CONNECT_TIMEOUT_S)   # the end
    last.shutdown(socket.SHUT_WR)
    while last.recv_into(drain) > 0:
        pass
    last.close()
    transactions = (meter.bytes1 - meter.bytes0) // (2 * size)
    return {"measured": meter.as_json(), "crc_sent": sent.crc, "crc_recv": got.crc,
            "total_bytes": moved, "bytes_copied": meter.bytes1 - meter.bytes0,
            "latency_us": lat.as_json(), "transactions": i,
            "many": many_json(count, setup_s, transactions, meter, rss, waves)}


def crr_many_server(listener, plan: Plan) -> dict:
    """One connection after the other, in accept order: a request, its answer, the
    close (as host.workloads.rr_server's crr), each message its own stream."""
    size = plan.size
    buf = memoryview(bytearray(size))
    sent, got, meter = ConnectionSums(0), ConnectionSums(0), Meter(plan.host_cpus)
    moved, measure_at = 0, None
    while True:
        sock = accept_nodelay(listener)
        n = recv_exact(sock, buf, size)
        if n < size:                   # the client's last, empty connection: the end
            if n:
                got.add(buf[:n])
            sock.close()
            break
        sock.sendall(buf)
        sock.close()
        got.add(buf)
        sent.add(buf)
        moved += 2 * size
        if measure_at is None:
            measure_at = time.monotonic() + plan.warmup_s
        if not meter.started and time.monotonic() >= measure_at:
            meter.start(moved, sent, got)
    if not meter.started:
        meter.start(moved, sent, got)
    meter.stop(moved, sent, got)
    return {"measured": meter.as_json(), "crc_sent": sent.crc, "crc_recv": got.crc,
            "total_bytes": moved, "bytes_copied": meter.bytes1 - meter.bytes0}

