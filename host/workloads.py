"""The workloads the host workers run, over any "network" object.

A network (host.kernelnet.KernelNetwork, host.inhost.InhostNetwork,
host.sockets.OffloadNetwork) gives ``socket()`` and ``create_connection()``; its
sockets behave like Python's (bind, listen, accept, sendall, recv_into, shutdown,
close). So one code path measures the three modes.

- bulk (iperf-like): one connection; the sender writes ``chunk`` bytes per call for
  warmup + duration, the receiver reads ``chunk`` bytes per call until EOF.
- rr: the client sends ``size`` bytes, the server answers ``size`` bytes; latency of
  each round trip is sampled.
- crr: rr with a new connection per request (TOAD's "short-lived connections").

Integrity (host.integrity): each side keeps the exact CRC-32 of the whole byte stream
it sent and received; a bulk receiver also compares every byte with the one the
sender wrote. The check's own CPU time is measured apart, so it can be excluded from
the figures.
"""
from __future__ import annotations

import itertools
import socket
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from host import bus_counts
from host.copy_timer import COPY_TIMER
from host.integrity import ExpectedStream, Integrity, SendPattern, pattern
from toad.errors import ToadError
from toad.experiment.accounting import process_cpu_seconds, read_cpu_times

MAX_LATENCY_SAMPLES = 1 << 20


@dataclass
class Meter:
    """CPU time, bytes and host-CPU busy time over one side's measured interval
    (``cpu_clock``: this process's CPU seconds, or e.g. its waited-for children's)."""
    host_cpus: tuple[int, ...]
    cpu_clock: Callable[[], float] = process_cpu_seconds
    started: bool = False
    t0: float = 0.0
    t1: float = 0.0
    cpu0: float = 0.0
    cpu1: float = 0.0
    integrity0: float = 0.0
    integrity1: float = 0.0
    bytes0: int = 0
    bytes1: int = 0
    busy0: dict = field(default_factory=dict)
    busy1: dict = field(default_factory=dict)
    bus0: Optional[dict] = None     # what the drivers paid the bus (host/bus_counts.py)
    bus1: Optional[dict] = None

    def start(self, nbytes: int, *checks: "Integrity") -> None:
        self.busy0 = read_cpu_times(self.host_cpus)
        self.integrity0, self.bytes0 = sum(c.cpu_s for c in checks), nbytes
        COPY_TIMER.start()       # boundary copies are sampled inside the interval only
        self.bus0 = bus_counts.totals()
        self.cpu0, self.t0 = self.cpu_clock(), time.monotonic()
        self.started = True

    def stop(self, nbytes: int, *checks: "Integrity") -> None:
        self.t1, self.cpu1 = time.monotonic(), self.cpu_clock()
        self.bus1 = bus_counts.totals()
        COPY_TIMER.stop()
        self.integrity1, self.bytes1 = sum(c.cpu_s for c in checks), nbytes
        self.busy1 = read_cpu_times(self.host_cpus)

    def as_json(self) -> dict:
        cpus = [c for c in self.busy1 if c in self.busy0]
        busy, irq, steal = (sum(getattr(self.busy1[c], key) - getattr(self.busy0[c], key)
                                for c in cpus) for key in ("busy", "irq", "steal"))
        return {"t0": self.t0, "t1": self.t1, "wall_s": self.t1 - self.t0,
                "cpu_s": self.cpu1 - self.cpu0,
                "integrity_s": self.integrity1 - self.integrity0,
                "bytes": self.bytes1 - self.bytes0, "host_busy_s": busy, "host_irq_s": irq,
                "host_steal_s": steal, "bus": bus_counts.delta(self.bus0, self.bus1)}


def set_nodelay(sock) -> None:
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError, NotImplementedError):
        pass  # a socket layer without the option simply keeps its default


def accept_nodelay(listener):
    """The next connection, with TCP_NODELAY set (both ends of an rr do, as netperf's
    TCP_RR): a reply split in two writes must not wait for the ACK of its first part."""
    sock, _ = listener.accept()
    set_nodelay(sock)
    return sock


def recv_exact(sock, view: memoryview, n: int) -> int:
    """Read exactly ``n`` bytes into ``view``; fewer only at EOF."""
    got = 0
    while got < n:
        k = sock.recv_into(view[got:n], n - got)
        if k == 0:
            break
        got += k
    return got


def listen(network, address: str, port: int, backlog: int = 128):
    """A listening socket; networks may offer their own ``listen`` (port-in-use errors)."""
    if hasattr(network, "listen"):
        return network.listen(port, backlog)
    sock = network.socket()
    try:
        sock.bind((address, port))
    except OSError as exc:
        sock.close()
        raise ToadError(f"workload.port: cannot listen on {address}:{port} ({exc}); "
                        f"pick another with --set workload.port=N") from None
    sock.listen(backlog)
    return sock


@dataclass
class Plan:
    """What one worker does; built by host.worker from the config."""
    chunk: int
    size: int
    warmup_s: float
    duration_s: float
    host_cpus: tuple[int, ...]
    seed: int = 1
    flip_at: int = -1
    connections: int = 1          # rr/crr: connections at once (host/workloads_many.py)


def bulk_send(sock, plan: Plan) -> dict:
    """Write the ``chunk``-byte slices of ``SendPattern`` in turn for warmup + duration
    seconds."""
    chunk = plan.chunk
    sending = SendPattern(chunk, plan.seed)
    views, known = sending.views, sending.known
    integrity, meter = Integrity(), Meter(plan.host_cpus)
    sent = 0
    sendall, update, clock = sock.sendall, integrity.update_known, time.monotonic
    start = clock()
    measure_at, stop_at = start + plan.warmup_s, start + plan.warmup_s + plan.duration_s
    for index, view in itertools.cycle(enumerate(views)):
        now = clock()
        if now >= measure_at:
            if not meter.started:
                meter.start(sent, integrity)
            elif now >= stop_at and sent > meter.bytes0:
                break  # at least one write inside the interval, however long a write blocks
        sendall(view)
        update(known, index)
        sent += chunk
    meter.stop(sent, integrity)
    sock.shutdown(socket.SHUT_WR)
    # wait for the receiver to close: all bytes were delivered before we report
    drain = bytearray(64)
    while sock.recv_into(drain) > 0:
        pass
    return {"measured": meter.as_json(), "crc_sent": integrity.crc, "total_bytes": sent,
            "bytes_copied": meter.bytes1 - meter.bytes0}


def skip_stream_header(sock, integrity: ExpectedStream, longest: int) -> tuple[int, int]:
    """Read past a sending program's own header (iperf 2's, host/iperf_peer.py): the
    stream ``bulk_send`` writes must start within its first ``longest`` bytes. Checks
    the bytes read after the header; returns (bytes read, header length), the length
    -1 if the stream's start was not found (nothing after it is compared then)."""
    sent = integrity.sent
    marker = bytes(sent.views[0][:min(64, sent.chunk)])
    head = bytearray(longest + len(marker))
    view = memoryview(head)
    got = 0
    while got < len(head):
        n = sock.recv_into(view[got:])
        if n == 0:
            break
        got += n
    start = head.find(marker, 0, got)
    if start < 0:
        integrity.first_bad = 0
        return got, -1
    buffer, position = integrity.buffer, start
    while position < got:      # what followed the header, as reads of the buffer
        take = min(got - position, len(buffer))
        buffer[:take] = head[position:position + take]
        integrity.received(take)
        position += take
    return got, start


def bulk_recv(sock, plan: Plan, header_max: int = 0) -> dict:
    """Read ``chunk`` bytes per call until EOF, each byte checked against what
    ``bulk_send`` writes; measuring starts warmup_s after byte 1.

    ``header_max``: the sender is another program that puts up to that many bytes of
    its own ahead of the stream (skip_stream_header); they are counted, not checked.
    ``plan.flip_at`` (tests only, from TOAD_TEST_FLIP_AT): flip the byte at that
    stream offset after it arrived, to prove a damaged stream fails the run.
    """
    chunk = plan.chunk
    buffer = bytearray(chunk)
    buf = memoryview(buffer)
    integrity, meter = ExpectedStream(SendPattern(chunk, plan.seed), buffer), Meter(plan.host_cpus)
    got, measure_at, flip_at, header = 0, None, plan.flip_at, None
    if header_max:
        got, header = skip_stream_header(sock, integrity, header_max)
        measure_at = time.monotonic() + plan.warmup_s if got else None
    recv_into, received = sock.recv_into, integrity.received
    while True:
        n = recv_into(buf, chunk)
        if n == 0:
            break
        if measure_at is None:
            measure_at = time.monotonic() + plan.warmup_s
        if got <= flip_at < got + n:
            buf[flip_at - got] ^= 0xFF
        received(n)
        got += n
        if not meter.started and time.monotonic() >= measure_at:
            meter.start(got, integrity)
    integrity.finish()
    if not meter.started:
        meter.start(got, integrity)  # nothing measured: the launcher reports it
    meter.stop(got, integrity)
    result = {"measured": meter.as_json(), "crc_recv": integrity.crc, "total_bytes": got,
              "first_bad_offset": integrity.first_bad,
              "bytes_copied": meter.bytes1 - meter.bytes0}
    if header is not None:
        result["stream_header_bytes"] = header
    return result


PERCENTILE_KEYS = {"p50": 50, "p90": 90, "p99": 99, "p999": 99.9, "min": 0, "max": 100}
CDF_PERCENTS = (0, 1, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 98, 99, 99.5, 99.9,
                99.99, 100)


class Latencies:
    """Round-trip times in nanoseconds, kept in a preallocated array."""

    def __init__(self) -> None:
        self.samples = np.empty(MAX_LATENCY_SAMPLES, dtype=np.int64)
        self.count = 0

    def add(self, ns: int) -> None:
        if self.count < MAX_LATENCY_SAMPLES:
            self.samples[self.count] = ns
            self.count += 1

    def as_json(self) -> dict:
        """count, p50/p90/p99/p99.9, min, max, mean (us), and ``cdf``: [percent, us]
        at CDF_PERCENTS (the distribution's shape for plots, without the samples)."""
        if not self.count:
            return {"count": 0, **dict.fromkeys(PERCENTILE_KEYS), "mean": None, "cdf": []}
        us = self.samples[:self.count] / 1000.0
        points = np.percentile(us, CDF_PERCENTS)
        at = dict(zip(CDF_PERCENTS, (round(float(v), 3) for v in points)))
        return {"count": self.count,
                **{key: at[percent] for key, percent in PERCENTILE_KEYS.items()},
                "mean": round(float(us.mean()), 3),
                "cdf": [[percent, value] for percent, value in at.items()]}


def _transact(sock, request: memoryview, reply: memoryview, sent: Integrity,
              got: Integrity) -> int:
    """One request/response on ``sock``; the perf_counter_ns when the reply was in
    (the checksums are computed after it, outside the latency), or 0 if the server
    closed early."""
    sock.sendall(request)
    n = recv_exact(sock, reply, len(request))
    done = time.perf_counter_ns()
    sent.update(request)
    got.update(reply[:n])
    return done if n == len(request) else 0


def rr_client(network, address: tuple[str, int], plan: Plan, new_connection: bool) -> dict:
    """Requests of ``size`` bytes for warmup + duration; one connection or one each (crr)."""
    size = plan.size
    data = memoryview(pattern(4 * size + 4093, plan.seed))
    span = len(data) - size
    reply = memoryview(bytearray(size))
    sent, got, meter, lat = Integrity(), Integrity(), Meter(plan.host_cpus), Latencies()
    moved, i = 0, 0
    sock = None if new_connection else network.create_connection(address, timeout=30)
    if sock is not None:
        set_nodelay(sock)
    start = time.monotonic()
    measure_at, stop_at = start + plan.warmup_s, start + plan.warmup_s + plan.duration_s
    while True:
        now = time.monotonic()
        if not meter.started and now >= measure_at:
            meter.start(moved, sent, got)
        if now >= stop_at and meter.started and moved > meter.bytes0:
            break  # at least one transaction inside the interval
        offset = (i * 7919) % span
        t = time.perf_counter_ns()
        if new_connection:
            done = _one_connection(network, address, data[offset:offset + size], reply, sent, got)
        else:
            done = _transact(sock, data[offset:offset + size], reply, sent, got)
        if not done:
            raise ToadError("the rr server closed the connection before answering")
        if meter.started:
            lat.add(done - t)
        moved += 2 * size
        i += 1
    meter.stop(moved, sent, got)
    _finish_client(network, address, sock, new_connection)
    return {"measured": meter.as_json(), "crc_sent": sent.crc, "crc_recv": got.crc,
            "total_bytes": moved, "bytes_copied": meter.bytes1 - meter.bytes0,
            "latency_us": lat.as_json(), "transactions": i}


def _one_connection(network, address, request, reply, sent, got) -> int:
    """crr: connect, one request/response, wait for the server's close; the time the
    whole exchange was over (the connection closed), or 0 if the server closed early."""
    sock = network.create_connection(address, timeout=30)
    try:
        set_nodelay(sock)
        done = _transact(sock, request, reply, sent, got)
        drain = bytearray(16)
        while done and sock.recv_into(drain) > 0:  # the server closes first
            pass
        return time.perf_counter_ns() if done else 0
    finally:
        sock.close()


def _finish_client(network, address, sock, new_connection: bool) -> None:
    """Tell the server the run is over: EOF (rr) or an empty connection (crr)."""
    if new_connection:
        sock = network.create_connection(address, timeout=30)
    sock.shutdown(socket.SHUT_WR)
    drain = bytearray(16)
    while sock.recv_into(drain) > 0:
        pass
    sock.close()


def rr_server(listener, plan: Plan, new_connection: bool) -> dict:
    """Answer each ``size``-byte request with the same bytes until the client is done.

    The run ends at EOF where a request should start: the rr connection shut down, or
    (crr) a connection closed without a request.
    """
    size = plan.size
    buf = memoryview(bytearray(size))
    sent, got, meter = Integrity(), Integrity(), Meter(plan.host_cpus)
    moved, measure_at = 0, None
    sock = accept_nodelay(listener)
    while True:
        n = recv_exact(sock, buf, size)
        if n < size:
            got.update(buf[:n])
            sock.close()
            break
        sock.sendall(buf)            # answer first: the checksums stay off the round trip
        got.update(buf)
        sent.update(buf)
        if measure_at is None:
            measure_at = time.monotonic() + plan.warmup_s
        moved += 2 * size
        if new_connection:
            sock.close()  # the server closes first: TIME-WAIT stays on this side
            sock = accept_nodelay(listener)
        if not meter.started and time.monotonic() >= measure_at:
            meter.start(moved, sent, got)
    if not meter.started:
        meter.start(moved, sent, got)
    meter.stop(moved, sent, got)
    return {"measured": meter.as_json(), "crc_sent": sent.crc, "crc_recv": got.crc,
            "total_bytes": moved, "bytes_copied": meter.bytes1 - meter.bytes0}
