"""The workloads through an offloaded socket's zero-copy calls (``workload.zero_copy``).

The same streams as host/workloads.py, checked the same way, without a copy at the
socket boundary:

- bulk: the sender writes each ``chunk`` of ``SendPattern`` into send views (one per
  chunk, two where the ring's end splits it) and commits them; the receiver checks
  each received view against the pattern in place (``ExpectedViews``: memcmp and the
  CRC by table, as ``ExpectedStream``) and gives it back.
- rr / crr: the client writes each request into a send view, reads the response
  through receive views (checksummed after the round trip is timed); the server
  answers each request with the same bytes, written from its receive views into a
  send view.

The bytes an application writes into a send view (the sender's chunk, the server's
answer) are the application's own work, as producing its data is for a copying
sender, whose chunks exist before the run: ``FillTimer`` times them as the checks
time the checksum (one call in ``SAMPLE_EVERY``) and they are left out of the
figures with the checksum's time (``measured.integrity_s``); the result says how much
they were (``fill_s``). Nothing is copied at the boundary (``bytes_copied`` 0).
"""
from __future__ import annotations

import itertools
import socket
import time
import zlib

from host.integrity import (
    _SAMPLE_MASK,
    SEND_SLICES,
    SLICE_STRIDE,
    ExpectedStream,
    Integrity,
    SendPattern,
    clock_overhead,
    pattern,
)
from host.workloads import Latencies, Meter, accept_nodelay, set_nodelay
from toad.errors import ToadError


class FillTimer:
    """The application's writes into send views, ``dst[:] = src``, timed one call in
    SAMPLE_EVERY with the thread's CPU clock (as Integrity times its checksum)."""

    def __init__(self, clock=time.thread_time) -> None:
        self.clock = clock
        self.calls = self.nbytes = self.timed_bytes = 0
        self.timed_s = 0.0
        self.overhead_s = clock_overhead(clock)

    def fill(self, dst: memoryview, src) -> None:
        calls = self.calls
        self.calls = calls + 1
        n = len(dst)
        self.nbytes += n
        if calls & _SAMPLE_MASK:
            dst[:] = src
            return
        start = self.clock()
        dst[:] = src
        self.timed_s += max(0.0, self.clock() - start - self.overhead_s)
        self.timed_bytes += n

    @property
    def cpu_s(self) -> float:
        if not self.timed_bytes:
            return self.timed_s
        return self.timed_s * self.nbytes / self.timed_bytes


class ExpectedViews(ExpectedStream):
    """``ExpectedStream`` over received views: each view is compared where it lies
    (``check``), with the pattern's bytes at the same stream offset."""

    def __init__(self, sent: SendPattern, clock=time.thread_time) -> None:
        super().__init__(sent, bytearray(0), clock)
        span = len(sent.data) - sent.chunk
        self.starts = [(i * SLICE_STRIDE) % span for i in range(SEND_SLICES)]

    def check(self, view) -> None:
        self.buffer = view
        self.received(len(view))

    def _compare(self, n: int) -> None:
        offset = self.offset
        self.offset = offset + n
        view = self.buffer
        if self.first_bad >= 0:
            self.crc = zlib.crc32(view[:n], self.crc)
            return
        sent, index, within = self.sent, self.index, self.within
        chunk, data, starts, position = sent.chunk, sent.data, self.starts, 0
        while position < n:
            take = min(n - position, chunk - within)
            piece = view if take == n else view[position:position + take]
            if not data.startswith(piece, starts[index] + within):   # memcmp in place
                self._diverge(offset, position, n, index, within, take)
                return
            position += take
            within += take
            if within == chunk:
                self.crc = sent.known.extend(self.crc, index)
                index = index + 1 if index + 1 < SEND_SLICES else 0
                within = 0
        self.index, self.within = index, within


def bulk_send(sock, plan) -> dict:
    """``workloads.bulk_send`` through send views."""
    chunk = plan.chunk
    sending = SendPattern(chunk, plan.seed)
    views, known = sending.views, sending.known
    integrity, filler, meter = Integrity(), FillTimer(), Meter(plan.host_cpus)
    zc = sock.zero_copy
    send_view, send_next, fill = zc.send_view, zc.send_next, filler.fill
    update, clock = integrity.update_known, time.monotonic
    sent, fill0 = 0, 0.0
    start = clock()
    measure_at, stop_at = start + plan.warmup_s, start + plan.warmup_s + plan.duration_s
    view = send_view(chunk)               # the open view: committed by the next step
    for index, source in itertools.cycle(enumerate(views)):
        now = clock()
        if now >= measure_at:
            if not meter.started:
                meter.start(sent, integrity, filler)
                fill0 = filler.cpu_s
            elif now >= stop_at and sent > meter.bytes0:
                break
        n = len(view)
        if n == chunk:                    # the usual case: the chunk in one view
            fill(view, source)
        else:                             # the ring's end splits it
            fill(view, source[:n])
            at = n
            while at < chunk:
                view = send_next(view, chunk - at)
                n = len(view)
                fill(view, source[at:at + n])
                at += n
        view = send_next(view, chunk)     # commit it, lend the next chunk's view
        update(known, index)
        sent += chunk
    zc.send_commit(view, 0)               # the last view lent: nothing in it
    meter.stop(sent, integrity, filler)
    sock.shutdown(socket.SHUT_WR)
    drain = bytearray(64)
    while sock.recv_into(drain) > 0:
        pass
    return {"measured": meter.as_json(), "crc_sent": integrity.crc, "total_bytes": sent,
            "bytes_copied": 0, "zero_copy": True,
            "fill_s": filler.cpu_s - fill0 if meter.started else 0.0}


def bulk_recv(sock, plan) -> dict:
    """``workloads.bulk_recv`` through receive views, each checked where it lies."""
    integrity = ExpectedViews(SendPattern(plan.chunk, plan.seed))
    meter = Meter(plan.host_cpus)
    zc = sock.zero_copy
    recv_next, check = zc.recv_next, integrity.check
    got, measure_at, flip_at = 0, None, plan.flip_at
    view = zc.recv_view()
    while True:
        n = len(view)
        if n == 0:
            break
        if measure_at is None:
            measure_at = time.monotonic() + plan.warmup_s
        if got <= flip_at < got + n:       # (tests: a damaged byte must fail the run)
            damaged = bytearray(view)
            damaged[flip_at - got] ^= 0xFF
            check(memoryview(damaged))
        else:
            check(view)
        got += n
        if not meter.started and time.monotonic() >= measure_at:
            meter.start(got, integrity)
        view = recv_next(view)             # give it back, take the next
    integrity.finish()
    if not meter.started:
        meter.start(got, integrity)
    meter.stop(got, integrity)
    return {"measured": meter.as_json(), "crc_recv": integrity.crc, "total_bytes": got,
            "first_bad_offset": integrity.first_bad, "bytes_copied": 0, "zero_copy": True}


def send_from(sock, filler: FillTimer, source) -> None:
    """All of ``source`` (bytes-like, or a list of them) through send views."""
    parts = source if isinstance(source, list) else [source]
    for part in parts:
        at, total = 0, len(part)
        while at < total:
            view = sock.send_view(total - at)
            n = len(view)
            filler.fill(view, part[at:at + n] if at or n < total else part)
            sock.send_commit(view)
            at += n


def recv_views(sock, size: int) -> list:
    """Receive views holding the next ``size`` bytes (fewer only at EOF); the last
    may hold more (the caller gives them all back)."""
    views, got = [], 0
    while got < size:
        view = sock.recv_view()
        if not len(view):
            break
        views.append(view)
        got += len(view)
    return views


def _transact(sock, request, sent: Integrity, got: Integrity, filler: FillTimer) -> int:
    size = len(request)
    send_from(sock, filler, request)
    views = recv_views(sock, size)
    done = time.perf_counter_ns()
    sent.update(request)
    total = 0
    for view in views:
        got.update(view)
        total += len(view)
        sock.recv_done(view)
    if total > size:
        raise ToadError(f"rr: the server answered {total} bytes to a {size}-byte request")
    return done if total == size else 0


def rr_client(network, address, plan, new_connection: bool) -> dict:
    """``workloads.rr_client`` through the zero-copy calls."""
    size = plan.size
    data = memoryview(pattern(4 * size + 4093, plan.seed))
    span = len(data) - size
    sent, got, meter, lat = Integrity(), Integrity(), Meter(plan.host_cpus), Latencies()
    filler = FillTimer()
    moved, i, fill0 = 0, 0, 0.0
    sock = None if new_connection else network.create_connection(address, timeout=30)
    if sock is not None:
        set_nodelay(sock)
    start = time.monotonic()
    measure_at, stop_at = start + plan.warmup_s, start + plan.warmup_s + plan.duration_s
    while True:
        now = time.monotonic()
        if not meter.started and now >= measure_at:
            meter.start(moved, sent, got, filler)
            fill0 = filler.cpu_s
        if now >= stop_at and meter.started and moved > meter.bytes0:
            break
        offset = (i * 7919) % span
        request = data[offset:offset + size]
        t = time.perf_counter_ns()
        if new_connection:
            conn = network.create_connection(address, timeout=30)
            try:
                set_nodelay(conn)
                done = _transact(conn, request, sent, got, filler)
                while done and conn.recv_into(bytearray(16)) > 0:   # the server closes
                    pass
                done = time.perf_counter_ns() if done else 0
            finally:
                conn.close()
        else:
            done = _transact(sock, request, sent, got, filler)
        if not done:
            raise ToadError("the rr server closed the connection before answering")
        if meter.started:
            lat.add(done - t)
        moved += 2 * size
        i += 1
    meter.stop(moved, sent, got, filler)
    if new_connection:
        sock = network.create_connection(address, timeout=30)
    sock.shutdown(socket.SHUT_WR)
    while sock.recv_into(bytearray(16)) > 0:
        pass
    sock.close()
    return {"measured": meter.as_json(), "crc_sent": sent.crc, "crc_recv": got.crc,
            "total_bytes": moved, "bytes_copied": 0, "latency_us": lat.as_json(),
            "transactions": i, "zero_copy": True, "fill_s": filler.cpu_s - fill0}


def rr_server(listener, plan, new_connection: bool) -> dict:
    """``workloads.rr_server`` answering from its receive views into a send view."""
    size = plan.size
    sent, got, meter, filler = Integrity(), Integrity(), Meter(plan.host_cpus), FillTimer()
    moved, measure_at, fill0 = 0, None, 0.0
    sock = accept_nodelay(listener)
    while True:
        views = recv_views(sock, size)
        total = sum(len(v) for v in views)
        if total < size:
            for view in views:
                got.update(view)
                sock.recv_done(view)
            sock.close()
            break
        if total > size:
            raise ToadError(f"rr: a request came with {total - size} bytes more than "
                            f"{size}")
        send_from(sock, filler, views)       # answer first: checksums off the round trip
        for view in views:
            got.update(view)
            sent.update(view)
            sock.recv_done(view)
        if measure_at is None:
            measure_at = time.monotonic() + plan.warmup_s
        moved += 2 * size
        if new_connection:
            sock.close()
            sock = accept_nodelay(listener)
        if not meter.started and time.monotonic() >= measure_at:
            meter.start(moved, sent, got, filler)
            fill0 = filler.cpu_s
    if not meter.started:
        meter.start(moved, sent, got, filler)
        fill0 = filler.cpu_s
    meter.stop(moved, sent, got, filler)
    return {"measured": meter.as_json(), "crc_sent": sent.crc, "crc_recv": got.crc,
            "total_bytes": moved, "bytes_copied": 0, "zero_copy": True,
            "fill_s": filler.cpu_s - fill0}
