"""Offloaded sockets through a real engine process: API, errors, bulk integrity, the
receive policy, a slow reader, a faulty wire.

Every test starts ``python -m engine`` (adaptive polling, so it sleeps when idle) and
talks to it through host.sockets.OffloadNetwork; the engine's exit summary (tables and
counters, printed as JSON) is parsed to check what happened inside it.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest

from host.sockets import OffloadNetwork
from toad import layout
from toad.config import load
from toad.engine_stats import wait_engine_ready

BASE = ["engine.cpu=1", "engine.idle_us=500", "qp.event_entries=1024",
        "qp.request_entries=512"]


class EngineRun:
    """``python -m engine`` with overrides; ``stop()`` returns its offload summary."""

    def __init__(self, overrides: list[str], tag: str):
        self.name = f"toff{os.getpid()}{tag}"
        self.overrides = [f"name={self.name}", *BASE, *overrides]
        args = [sys.executable, "-m", "engine"]
        for item in self.overrides:
            args += ["--set", item]
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True)
        try:
            wait_engine_ready(self.name, timeout=30, process=self.process)
        except BaseException:
            self.stop()
            raise
        self.summary: dict | None = None

    def config(self, *extra: str):
        return load(None, [*self.overrides, *extra])

    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> dict:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        out, err = self.process.communicate()
        for line in out.splitlines():
            if ": offload {" in line:
                self.summary = json.loads(line.split(": offload ", 1)[1])
        assert self.summary is not None, f"no offload summary from the engine: {out} {err}"
        return self.summary


@pytest.fixture
def engine():
    started: list[EngineRun] = []

    def start(*overrides: str) -> EngineRun:
        run = EngineRun(list(overrides), str(len(started)))
        started.append(run)
        return run

    yield start
    for run in started:
        if run.process.poll() is None:
            run.stop()


def serve_once(listener, handler):
    """Accept one connection in a thread and run ``handler(sock)``; returns (thread, box)."""
    box: dict = {}

    def run():
        try:
            sock, peer = listener.accept()
            box["peer"] = peer
            with sock:
                box["result"] = handler(sock)
        except BaseException as exc:   # surfaced by the test
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


def drain(sock, chunk: int = 65536) -> tuple[int, str]:
    digest, total = hashlib.sha256(), 0
    buf = bytearray(chunk)
    view = memoryview(buf)
    while True:
        n = sock.recv_into(buf)
        if n == 0:
            return total, digest.hexdigest()
        digest.update(view[:n])
        total += n


def pump(sock, total: int, chunk: int, seed: int) -> str:
    """Send ``total`` bytes in ``chunk``-sized calls from a seeded pattern."""
    pattern = memoryview(os.urandom(chunk * 4) if seed is None else
                         bytes((i * 7 + seed) & 0xFF for i in range(256)) * (chunk * 4 // 256))
    digest, sent = hashlib.sha256(), 0
    while sent < total:
        start = (sent // chunk) % 4 * chunk
        piece = pattern[start:start + min(chunk, total - sent)]
        sock.sendall(piece)
        digest.update(piece)
        sent += len(piece)
    return digest.hexdigest()


def test_socket_api_and_errors(engine):
    run = engine("tcp.syn_retries=1", "tcp.rto_initial_ms=50")
    with OffloadNetwork(run.config()) as net:
        listener = net.socket()
        listener.bind(("", 7000))
        listener.listen(8)
        assert listener.getsockname()[1] == 7000
        busy = net.socket()
        with pytest.raises(OSError) as info:
            busy.bind(("", 7000))
        assert info.value.errno == errno.EADDRINUSE
        busy.close()

        thread, box = serve_once(listener, lambda s: (s.recv(100), s.sendall(b"pong")))
        with net.create_connection((net.listen_address, 7000), timeout=5) as client:
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            client.sendall(b"ping")
            assert client.recv(100) == b"pong"
            assert client.getpeername() == (net.listen_address, 7000)
            thread.join(10)
            assert box["result"][0] == b"ping" and "error" not in box
            assert client.recv(100) == b""                 # the server closed: EOF

        # nothing to read: a timeout, then EAGAIN in non-blocking mode
        thread, box = serve_once(listener, lambda s: s.recv(10))
        client = net.create_connection(("127.0.0.1", 7000), timeout=5)
        client.settimeout(0.1)
        with pytest.raises(TimeoutError):
            client.recv(10)
        client.setblocking(False)
        with pytest.raises(BlockingIOError):
            client.recv(10)
        client.setblocking(True)
        client.sendall(b"x")
        thread.join(10)
        assert box["result"] == b"x"
        client.close()

        with pytest.raises(ConnectionRefusedError) as info:
            net.create_connection((net.listen_address, 7999), timeout=5)
        assert info.value.errno == errno.ECONNREFUSED
        # nobody answers ARP for .99: SYN retries run out
        with pytest.raises(TimeoutError) as info:
            net.create_connection(("10.0.0.99", 7000), timeout=10)
        assert info.value.errno == errno.ETIMEDOUT
        listener.close()
    summary = run.stop()
    tables = summary["tables"]
    assert tables == {"stack_objects": 0, "lingering": 0, "delayed": 0, "tcbs": tables["tcbs"],
                      "listeners": 0, "bound_ports": 0, "qp_connections": 0}


def test_reset_surfaces_as_econnreset_and_epipe(engine):
    run = engine()
    with OffloadNetwork(run.config()) as net:
        listener = net.listen(7001)
        ready = threading.Event()

        def abort(sock):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            ready.wait(10)

        thread, box = serve_once(listener, abort)
        client = net.create_connection((net.listen_address, 7001), timeout=5)
        ready.set()
        thread.join(10)
        with pytest.raises(ConnectionResetError) as info:
            client.recv(10)
        assert info.value.errno == errno.ECONNRESET
        with pytest.raises(OSError) as info:
            client.sendall(b"more")
        assert info.value.errno in (errno.ECONNRESET, errno.EPIPE)
        client.close()
        listener.close()
    summary = run.stop()
    assert summary["connections"]["tx_rst_abort"] >= 1


@pytest.mark.parametrize("chunk", [8192, 131072])
def test_256_mb_each_way_over_the_loopback_wire(engine, chunk):
    """Both directions at once on one connection, sha256 of each stream."""
    # a 4 MB pool: both receiving ends share this one QP (one process)
    run = engine(f"qp.recv_buffer_bytes={chunk}", f"qp.recv_buffers={(4 << 20) // chunk}")
    total = int(os.environ.get('TOAD_TEST_MB', 256)) << 20
    with OffloadNetwork(run.config()) as net:
        listener = net.listen(7002)

        def server(sock):
            out = {}
            sender = threading.Thread(target=lambda: out.update(sent=pump(sock, total, chunk, 1)))
            sender.start()
            out["received"] = drain(sock, chunk)
            sender.join(120)
            return out

        thread, box = serve_once(listener, server)
        # the two readers share a 4 MB pool. Before consumed counters went out with
        # the returned buffers (sockets.flush_returns) the pool ran dry ~7 times a run
        # at 8 KB (each repaired by a retransmission; one by an RTO that backed off
        # past 10 s, seen once in CI): now never (asserted below). 60 s is a bound
        client = net.create_connection((net.listen_address, 7002), timeout=60)
        sent_digest = {}
        sender = threading.Thread(
            target=lambda: (sent_digest.update(d=pump(client, total, chunk, 2)),
                            client.shutdown(socket.SHUT_WR)))
        sender.start()
        received = drain(client, chunk)
        sender.join(120)
        thread.join(120)
        client.close()
        listener.close()
    assert "error" not in box, box.get("error")
    assert box["result"]["received"] == (total, sent_digest["d"])
    assert received == (total, box["result"]["sent"])
    summary = run.stop()
    # every byte crossed the engine's wire once per direction (no losses: no resends)
    assert summary["connections"]["tx_data"] >= 2 * total // 65536
    assert summary["wire"]["lost"] == 0
    # each connection's window stayed within its share of the shared pool
    assert summary["offload"].get("rx_out_of_buffers", 0) == 0


def test_slow_reader_closes_and_reopens_the_window(engine):
    # TOAD's chunk-sized pool alone (no small group, no staging): the pool is what
    # closes the window
    run = engine("qp.recv_buffers=8", "qp.recv_buffer_bytes=16384", "nic.mtu=1500",
                 "qp.recv_small_buffers=0", "engine.staging_bytes=0")
    total = 1 << 20
    with OffloadNetwork(run.config()) as net:
        listener = net.listen(7003)

        def slow(sock):
            digest, got, buf = hashlib.sha256(), 0, bytearray(16384)
            while True:
                time.sleep(0.01)
                n = sock.recv_into(buf)
                if not n:
                    return got, digest.hexdigest()
                digest.update(memoryview(buf)[:n])
                got += n

        thread, box = serve_once(listener, slow)
        with net.create_connection((net.listen_address, 7003), timeout=10) as client:
            digest = pump(client, total, 65536, 3)
            client.shutdown(socket.SHUT_WR)
            thread.join(60)
    assert box["result"] == (total, digest)
    summary = run.stop()
    assert summary["offload"]["rx_window_closed"] >= 1
    assert summary["offload"]["rx_window_reopened"] >= 1
    assert summary["offload"].get("rx_out_of_buffers", 0) == 0


def test_receive_policy_full_only_waits_for_a_full_buffer(engine):
    """TOAD's policy: no PSH or delay posting; a partial buffer waits for the FIN."""
    run = engine("qp.recv_post_push=false", "qp.recv_post_delay_us=0",
                 "qp.recv_buffer_bytes=4096", "qp.recv_buffers=16")
    with OffloadNetwork(run.config()) as net:
        listener = net.listen(7004)
        client = net.create_connection((net.listen_address, 7004), timeout=10)
        server, _ = listener.accept()
        client.sendall(b"a" * 100)
        server.settimeout(0.3)
        with pytest.raises(TimeoutError):
            server.recv(4096)                   # 100 bytes sit in a partial buffer
        client.sendall(b"b" * 4000)             # 4100 bytes: one full buffer goes up
        server.settimeout(5)
        assert server.recv(8192) == b"a" * 100 + b"b" * 3996
        server.set_receive_policy(push=True)    # per socket: PSH posts again
        client.sendall(b"c" * 10)
        assert server.recv(8192) == b"b" * 4 + b"c" * 10
        client.close()
        assert server.recv(10) == b""
        server.close()
        listener.close()
    run.stop()


def test_loss_duplication_reordering_keep_the_stream_intact(engine):
    run = engine("nic.wire.loss=0.01", "nic.wire.duplicate=0.01", "nic.wire.reorder=0.02",
                 "nic.wire.seed=11", "nic.mtu=9000", "tcp.rto_min_ms=20",
                 "qp.recv_buffer_bytes=65536")
    total = 24 << 20
    with OffloadNetwork(run.config()) as net:
        listener = net.listen(7005)
        thread, box = serve_once(listener, drain)
        with net.create_connection((net.listen_address, 7005), timeout=10) as client:
            digest = pump(client, total, 65536, 4)
            client.shutdown(socket.SHUT_WR)
            thread.join(120)
    assert box["result"] == (total, digest)
    wire = run.stop()["wire"]
    assert wire["lost"] > 0 and wire["duplicated"] > 0 and wire["reordered"] > 0


def test_listener_with_many_pending_connections(engine):
    """60 connections complete their handshake before the first accept; each is then
    accepted with its own early data, and a send after shutdown is EPIPE."""
    run = engine()
    with OffloadNetwork(run.config()) as net:
        listener = net.listen(7006, backlog=64)
        clients = []
        for i in range(60):
            client = net.create_connection((net.listen_address, 7006), timeout=10)
            client.sendall(i.to_bytes(2, "big"))
            clients.append(client)
        seen = set()
        for _ in clients:
            server, _ = listener.accept()
            seen.add(int.from_bytes(server.recv(2), "big"))
            server.close()
        assert seen == set(range(60))
        clients[0].shutdown(socket.SHUT_WR)
        with pytest.raises(BrokenPipeError) as info:
            clients[0].send(b"late")
        assert info.value.errno == errno.EPIPE
        for client in clients:
            client.close()
        listener.close()
    summary = run.stop()
    assert summary["offload"]["accepted"] == 60
    assert summary["stack"].get("tcp.listen_overflow", 0) == 0


def test_closed_listener_gives_back_its_childrens_buffers(engine):
    """Children that got data but were never accepted: closing the listener resets
    them and their anonymous buffers return to the pool (none leaks)."""
    run = engine("qp.recv_buffers=14", "qp.recv_buffer_bytes=4096", "qp.recv_small_buffers=0")
    with OffloadNetwork(run.config()) as net:
        listener = net.listen(7007, backlog=8)
        clients = [net.create_connection((net.listen_address, 7007), timeout=10)
                   for _ in range(3)]
        # six receivers (3 clients, 3 children) share 13 buffers: a window of 4778
        # bytes each, their share less one buffer (RxPool.add_receiver)
        for client in clients:
            client.sendall(b"z" * 4500)         # a full buffer and a partial one each
        assert net.wait(lambda: all(c.ring and c.driver.bytes_acked(c.conn) == 4500
                                    for c in clients), 10)
        listener.close()
        for client in clients:
            with pytest.raises(ConnectionResetError):
                client.recv(10)
            client.close()
        # each child held one full and one partly filled buffer: all six come back
        assert net.wait(lambda: net.unowned_returns == 6, 10), net.unowned_returns
        assert net.rx_in_engine == 14
    summary = run.stop()
    assert summary["offload"]["children_lost_before_accept"] == 3


def transfer_with_checksum_mode(run, mode: str, port: int) -> bool:
    """1 MB client -> server with ``mode`` set on both sockets; True when intact."""
    data = bytes(range(256)) * 4000
    with OffloadNetwork(run.config()) as net:
        listener = net.socket()
        listener.set_checksum_mode(mode)
        listener.bind(("", port))
        listener.listen(4)
        client = net.socket()
        client.set_checksum_mode(mode)
        client.connect((net.listen_address, port))
        with pytest.raises(OSError) as info:
            client.set_checksum_mode("software")    # the TCB exists: its mode is fixed
        assert info.value.errno == errno.EISCONN
        server, _ = listener.accept()
        server.settimeout(20)
        client.sendall(data)
        client.shutdown(socket.SHUT_WR)
        got = bytearray()
        while chunk := server.recv(65536):
            got += chunk
        for sock in (client, server, listener):
            sock.close()
    return bytes(got) == data


def test_checksum_mode_is_a_per_socket_option(engine):
    """A corrupting wire: 'software' catches every bad segment, 'off' lets them in."""
    faulty = ("nic.wire.corrupt=0.3", "nic.wire.seed=3")
    checked = engine(*faulty)
    assert transfer_with_checksum_mode(checked, "software", 7011)
    summary = checked.stop()
    assert summary["wire"]["corrupted"] > 0
    assert summary["stack"].get("tcp.bad_checksum", 0) >= 1
    unchecked = engine(*faulty)
    transfer_with_checksum_mode(unchecked, "off", 7012)
    summary = unchecked.stop()
    assert summary["stack"].get("tcp.bad_checksum", 0) < summary["wire"]["corrupted"]
    with OffloadNetwork(engine().config()) as net, net.socket() as sock:
        with pytest.raises(OSError) as info:
            sock.set_checksum_mode("crc32")
        assert info.value.errno == errno.EINVAL


def test_sndbuf_sets_the_socket_send_share(engine):
    """SO_SNDBUF is the socket's share of the send area: its ring never outgrows it,
    and a writer past it sleeps on send-space events while the stream stays intact."""
    run = engine()
    with OffloadNetwork(run.config()) as net:
        listener = net.listen(7013)
        client = net.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
        client.connect((net.listen_address, 7013))
        thread, box = serve_once(listener, drain)
        digest = pump(client, 4 << 20, 65536, seed=5)
        assert client.ring.size == 16384
        assert client.space_events > 0
        client.close()
        thread.join(30)
        assert box.get("result") == (4 << 20, digest), box.get("error")
        listener.close()
    run.stop()


@pytest.mark.parametrize("nagle", [False, True])
def test_tcp_nagle_config_applies_without_setsockopt(engine, nagle):
    """Sockets that never set TCP_NODELAY keep the engine's ``tcp.nagle``: with Nagle
    on, a second small write waits for the ACK of the first (the peer delays it);
    with Nagle off it goes at once. (An accepted socket once forced Nagle on.)"""
    run = engine(f"tcp.nagle={str(nagle).lower()}", "tcp.delayed_ack_ms=200")

    def two_writes(sock):
        sock.recv(8)
        sock.sendall(b"a" * 10)
        time.sleep(0.02)              # two SEND requests, never one span
        sock.sendall(b"b" * 10)
        return sock.recv(8)

    with OffloadNetwork(run.config()) as net:
        listener = net.listen(7010)
        thread, box = serve_once(listener, two_writes)
        with net.create_connection((net.listen_address, 7010), timeout=5) as client:
            client.sendall(b"hello!!!")
            got = b""
            while len(got) < 20:
                got += client.recv(100)
            assert got == b"a" * 10 + b"b" * 10
            client.sendall(b"bye!!!!!")
            thread.join(10)
            assert "error" not in box and box["result"] == b"bye!!!!!"
        listener.close()
    held = run.stop()["connections"].get("tx_held_nagle_sws", 0)
    assert (held > 0) if nagle else (held == 0), held


def test_nodelay_is_posted_and_a_waiting_accept_asks_once(engine):
    """TCP_NODELAY costs no round trip yet holds for the SENDs after it (Nagle on in
    the engine, the peer's ACK delayed: without it the second write would wait);
    an accept already waiting when the connection comes makes one ACCEPT request;
    a connection reset before it was accepted leaves accept waiting, not stuck."""
    run = engine("tcp.nagle=true", "tcp.delayed_ack_ms=200")
    with OffloadNetwork(run.config()) as net:
        calls: list[int] = []
        call = net.driver.call

        def counted(opcode, *args, **fields):
            calls.append(opcode)
            return call(opcode, *args, **fields)

        net.driver.call = counted
        listener = net.listen(7020)
        calls.clear()
        accepted = threading.Event()

        def two_writes(sock):
            accepted.set()
            got = b""
            while len(got) < 20:
                got += sock.recv(100)
            return got

        thread, box = serve_once(listener, two_writes)
        time.sleep(0.1)                   # the accept waits before the client connects
        client = net.socket()
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client.connect((net.listen_address, 7020))
        assert accepted.wait(10)
        client.sendall(b"a" * 10)
        time.sleep(0.02)                  # two SEND requests, never one span
        client.sendall(b"b" * 10)
        thread.join(10)
        assert "error" not in box and box["result"] == b"a" * 10 + b"b" * 10
        assert calls.count(layout.OP_ACCEPT) == 1, calls
        assert layout.OP_SETOPT not in calls, calls
        client.close()

        # a child reset before accept: its ACCEPT_READY is answered EAGAIN, then the
        # next connection is accepted
        doomed = net.create_connection((net.listen_address, 7020), timeout=5)
        net.driver.wait_for(lambda: listener.accept_ready == 2, 5)
        doomed.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        doomed.close()
        time.sleep(0.1)                   # the RST crosses the loopback wire
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()
        assert listener.accept_matched == listener.accept_ready == 2
        listener.setblocking(True)
        thread, box = serve_once(listener, lambda s: s.recv(10))
        with net.create_connection((net.listen_address, 7020), timeout=5) as late:
            late.sendall(b"late")
            thread.join(10)
        assert box.get("result") == b"late", box
        listener.close()
    held = run.stop()["connections"].get("tx_held_nagle_sws", 0)
    assert held == 0, held


def test_a_reader_buffer_at_memcpys_slow_distance_gets_every_byte(engine):
    """A recv_into target 16 bytes into a page, 16 bytes after the page-aligned
    receive buffers modulo a page (memcpy's slow case here): the copies go through
    the QP's scratch buffer (host/datapath.py recv) and every byte arrives."""
    from host.copy_align import PAGE, address
    from host.driver import Q

    run = engine()
    total = 4 << 20
    with OffloadNetwork(run.config()) as net:
        lay = net.driver.layout
        assert (address(net.driver.seg) + lay.recv_offset) % PAGE == 0
        assert lay.recv_buffer_bytes % PAGE == 0
        listener = net.listen(7030)
        thread, box = serve_once(listener, lambda s: pump(s, total, 65536, 5))
        with net.create_connection((net.listen_address, 7030), timeout=5) as client:
            raw = bytearray(lay.recv_buffer_bytes + 2 * PAGE)
            start = (16 - address(raw)) % PAGE
            view = memoryview(raw)[start:start + lay.recv_buffer_bytes]
            digest, got = hashlib.sha256(), 0
            while (n := client.recv_into(view)) > 0:
                digest.update(view[:n])
                got += n
            thread.join(10)
            assert "error" not in box and got == total
            assert digest.hexdigest() == box["result"]
            assert net.driver.q[Q["bounced"]] > 0
        listener.close()
    run.stop()


def test_a_sender_buffer_at_memcpys_slow_distance_gets_every_byte_across(engine):
    """8 KB sends from 256 start addresses 16 bytes apart, so that some lie at
    memcpy's slow distance before their place in the page-aligned send ring: those
    go through the QP's scratch buffer (host/datapath.py boundary_copy) and the
    receiver gets every byte, in order."""
    from host.driver import Q

    run = engine()
    chunk, steps = 8192, 256
    source = bytes((i * 31 + 7) & 0xFF for i in range(chunk + 16 * steps))
    view = memoryview(source)
    expected = b"".join(source[16 * k:16 * k + chunk] for k in range(steps))
    with OffloadNetwork(run.config()) as net:
        listener = net.listen(7036)
        thread, box = serve_once(listener, lambda s: drain(s, chunk))
        with net.create_connection((net.listen_address, 7036), timeout=5) as client:
            for k in range(steps):
                client.sendall(view[16 * k:16 * k + chunk])
            client.shutdown(socket.SHUT_WR)
            thread.join(30)
            assert net.driver.q[Q["bounced"]] > 0
        listener.close()
    assert box.get("result") == (len(expected), hashlib.sha256(expected).hexdigest()), box
    run.stop()


def test_non_blocking_connect_runs_the_handshake_as_linux_does(engine):
    """EINPROGRESS, then EALREADY while the handshake runs, then the outcome once
    (0, or the error; SO_ERROR reports it too), then EISCONN."""
    run = engine()
    with OffloadNetwork(run.config()) as net:
        listener = net.listen(7100)
        thread, box = serve_once(listener, lambda s: s.recv(100))
        client = net.socket()
        client.setblocking(False)
        with pytest.raises(BlockingIOError) as info:
            client.connect((net.listen_address, 7100))
        assert info.value.errno == errno.EINPROGRESS
        outcomes, deadline = [], time.monotonic() + 10   # bounded: no timing assertion
        while time.monotonic() < deadline:
            code = client.connect_ex((net.listen_address, 7100))
            outcomes.append(code)
            if code != errno.EALREADY:
                break
        assert set(outcomes[:-1]) <= {errno.EALREADY} and outcomes[-1] == 0
        assert client.connect_ex((net.listen_address, 7100)) == errno.EISCONN
        assert client.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
        client.setblocking(True)
        client.sendall(b"hello")
        thread.join(10)
        assert box["result"] == b"hello"
        client.close()

        # refused: reported once by SO_ERROR (the poll-for-writable pattern)
        refused = net.socket()
        refused.setblocking(False)
        assert refused.connect_ex((net.listen_address, 7199)) == errno.EINPROGRESS
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            status = refused.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if status or refused.connecting is None:
                break
        assert status == errno.ECONNREFUSED
        assert refused.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
        with pytest.raises(OSError) as info:
            refused.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assert info.value.errno == errno.ENOPROTOOPT
        refused.close()

        # a send on a socket still connecting: EAGAIN, or it waits when blocking
        pending = net.socket()
        thread, box = serve_once(listener, lambda s: s.recv(100))
        pending.setblocking(False)
        assert pending.connect_ex((net.listen_address, 7100)) == errno.EINPROGRESS
        pending.setblocking(True)
        pending.sendall(b"later")
        thread.join(10)
        assert box["result"] == b"later"
        pending.close()
        listener.close()
    summary = run.stop()
    assert summary["tables"]["qp_connections"] == 0


def test_timing_every_copy_keeps_partial_reads_and_writes_intact(engine):
    """host/copy_timer.py armed at every copy: the timed branch of send and recv must do
    what the untimed one does, also for reads that take part of a buffer."""
    from host.copy_timer import COPY_TIMER
    run = engine("qp.recv_buffer_bytes=4096", "qp.recv_buffers=64")
    total = 300_000
    with OffloadNetwork(run.config()) as net:
        listener = net.listen(7011)

        def odd_reads(sock):
            digest, got, buf = hashlib.sha256(), 0, bytearray(1000)   # < a buffer
            while True:
                n = sock.recv_into(buf, 700)
                if not n:
                    return got, digest.hexdigest()
                digest.update(memoryview(buf)[:n])
                got += n

        saved = COPY_TIMER.period
        COPY_TIMER.period = 1
        COPY_TIMER.start()
        try:
            thread, box = serve_once(listener, odd_reads)
            with net.create_connection((net.listen_address, 7011), timeout=10) as client:
                digest = pump(client, total, 3001, 5)
                client.shutdown(socket.SHUT_WR)
                thread.join(60)
        finally:
            COPY_TIMER.stop()
            COPY_TIMER.period = saved
        samples = COPY_TIMER.summary()["samples"]
    assert box.get("result") == (total, digest), box.get("error")
    assert samples >= total // 3001 + total // 700     # each send and each read timed
    run.stop()
