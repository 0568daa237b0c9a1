"""The zero-copy calls (host/zero_copy.py) through a real engine process: the views'
life cycle (commit, release, double release, a view kept past close, a reset while
views are out) as seeded random programs that mix them with the copying calls,
integrity under loss and reordering, several threads, the selector, held receive
views closing the window without a loss, and the engine's bounds checks on every
committed range."""
from __future__ import annotations

import errno
import hashlib
import os
import pickle
import random
import socket
import struct
import threading
import time
from selectors import EVENT_READ, EVENT_WRITE

import pytest

from host.offload_selector import OffloadSelector
from host.sockets import OffloadNetwork
from tests.system.test_offload_sockets import engine  # noqa: F401 (the fixture)
from toad import layout
from toad.engine_stats import read_engine_stats


def pair(net, port: int, timeout: float | None = 10):
    listener = net.listen(port)
    client = net.create_connection((net.listen_address, port), timeout=timeout)
    server, _ = listener.accept()
    listener.close()
    server.settimeout(timeout)
    return client, server


def released(view: memoryview) -> bool:
    try:
        _ = view.nbytes
    except ValueError:
        return True
    return False


def zc_send(sock, data: bytes, most: int) -> None:
    """All of ``data`` through send views of at most ``most`` bytes."""
    at = 0
    while at < len(data):
        view = sock.send_view(min(most, len(data) - at))
        n = len(view)
        view[:] = data[at:at + n]
        assert sock.send_commit(view) == n
        assert released(view)
        at += n


def zc_drain(sock) -> bytes:
    got = bytearray()
    while True:
        with sock.received() as view:
            if not len(view):
                return bytes(got)
            assert view.readonly
            got += view


def test_bulk_both_ways_through_views(engine):
    run = engine()
    data = os.urandom(5_000_000)
    with OffloadNetwork(run.config()) as net:
        client, server = pair(net, 7500)
        box = {}
        thread = threading.Thread(target=lambda: box.setdefault("got", zc_drain(server)))
        thread.start()
        zc_send(client, data, 131072)
        client.shutdown(socket.SHUT_WR)
        thread.join(60)
        assert box["got"] == data
        zc_send(server, data[:300_000], 8192)          # and back
        server.shutdown(socket.SHUT_WR)
        assert zc_drain(client) == data[:300_000]
        client.close()
        server.close()


@pytest.mark.parametrize("seed", range(4))
def test_random_programs_keep_the_stream(engine, seed):
    """Property: any interleaving of send views (committed whole, in part, or not at
    all), copying sends, receive views held and given back in any order (twice,
    sometimes) and copying receives delivers the sender's stream, in order; a
    committed view is released, a second commit of it refused."""
    rng = random.Random(seed)
    run = engine("qp.recv_buffer_bytes=8192", "qp.recv_buffers=32",
                 "qp.send_share_bytes=262144")
    sent = bytearray()
    with OffloadNetwork(run.config()) as net:
        client, server = pair(net, 7510 + seed)
        box: dict = {}

        def reader():
            got, held = bytearray(), []
            buf = bytearray(5000)
            try:
                while True:
                    op = rng.random()
                    if op < 0.5:
                        if held and rng.random() < 0.3:     # give one back, take one
                            given = held.pop(rng.randrange(len(held)))
                            view = server.zero_copy.recv_next(given)
                            assert released(given)
                        else:
                            view = server.recv_view()
                        if not len(view):
                            break
                        got += view
                        held.append(view)
                    elif op < 0.7:
                        n = server.recv_into(buf, rng.randint(1, len(buf)))
                        if not n:
                            break
                        got += buf[:n]
                    while held and (len(held) > 6 or rng.random() < 0.4):
                        view = held.pop(rng.randrange(len(held)))
                        server.recv_done(view)
                        assert released(view)
                        if rng.random() < 0.2:
                            server.recv_done(view)          # a second time: no-op
                for view in held:
                    server.recv_done(view)
                box["got"] = bytes(got)
            except Exception as exc:        # surfaced by the test
                box["error"] = exc

        thread = threading.Thread(target=reader)
        thread.start()
        for _ in range(400):
            payload = os.urandom(rng.randint(1, 40_000))
            if rng.random() < 0.3:
                client.sendall(payload)
                sent += payload
                continue
            view = client.send_view(len(payload))
            if len(view) < len(payload) and rng.random() < 0.5:   # a writer's step
                view[:] = payload[:len(view)]
                sent += payload[:len(view)]
                payload = payload[len(view):]
                old, view = view, client.zero_copy.send_next(view, len(payload))
                assert released(old)
            n = rng.choice([len(view), rng.randint(0, len(view))])
            view[:n] = payload[:n]
            assert client.send_commit(view, n) == n
            sent += payload[:n]
            assert released(view)
            with pytest.raises(ValueError):
                client.send_commit(view)
        client.shutdown(socket.SHUT_WR)
        thread.join(60)
        assert "error" not in box, box.get("error")
        assert box["got"] == bytes(sent)
        client.close()
        server.close()


def test_views_kept_past_close_are_released_and_their_buffers_return(engine):
    run = engine("qp.recv_buffer_bytes=4096", "qp.recv_buffers=16")
    with OffloadNetwork(run.config()) as net:
        client, server = pair(net, 7520)
        client.sendall(os.urandom(30_000))
        views = [server.recv_view() for _ in range(3)]
        kept = server.recv_view()
        exported = pickle.PickleBuffer(kept)               # an export of the view itself
        send_view = server.send_view(1000)
        server.close()
        assert all(released(v) for v in views) and released(send_view)
        assert not released(kept) and exported.raw()[0] == kept[0]
        with pytest.raises(OSError) as info:
            server.send_commit(send_view)
        assert info.value.errno == errno.EBADF
        for view in views:
            server.recv_done(view)                         # after close: no-op
        with pytest.raises(BufferError):
            server.recv_done(kept)                         # still exported
        del exported
        server.recv_done(kept)                             # now its buffer goes back
        assert released(kept)
        client.close()
        net.flush_returns()
        deadline = time.monotonic() + 10
        while net.rx_in_engine < net.driver.layout.recv_buffers and time.monotonic() < deadline:
            net.driver.try_poll()
            net.flush_returns()
            time.sleep(0.01)
        assert net.rx_in_engine == net.driver.layout.recv_buffers


def test_exported_send_view_is_not_committed(engine):
    run = engine()
    with OffloadNetwork(run.config()) as net:
        client, server = pair(net, 7525)
        view = client.send_view(100)
        view[:5] = b"hello"
        exported = pickle.PickleBuffer(view)
        with pytest.raises(BufferError):
            client.send_commit(view, 5)
        del exported
        client.send_commit(view, 5)
        assert server.recv(100) == b"hello"
        client.close()
        server.close()


def test_reset_while_views_are_out(engine):
    run = engine()
    with OffloadNetwork(run.config()) as net:
        client, server = pair(net, 7530)
        server.sendall(b"x" * 20_000)
        held = client.recv_view()
        data = bytes(held)
        view = client.send_view(4096)
        server.close(abort=True)                           # RST
        deadline = time.monotonic() + 10
        while not client.error and time.monotonic() < deadline:
            net.driver.try_poll()
            time.sleep(0.005)
        assert client.error == errno.ECONNRESET
        with pytest.raises(ConnectionResetError):
            client.send_commit(view)
        assert released(view)
        assert bytes(held) == data                         # a received view stays readable
        client.recv_done(held)
        with pytest.raises(ConnectionResetError):
            client.send_view(10)
        client.close()


def test_several_threads_share_a_socket(engine):
    """Four threads write 256-byte records through views of one socket, another two
    copy theirs with sendall: every record arrives whole, each thread's in order."""
    run = engine("qp.send_share_bytes=131072")
    record, per_thread = 256, 2000
    with OffloadNetwork(run.config()) as net:
        client, server = pair(net, 7540, timeout=30)
        box = {}
        reader = threading.Thread(target=lambda: box.setdefault("got", zc_drain(server)))
        reader.start()

        def body(tag: int, seq: int) -> bytes:
            head = struct.pack("<II", tag, seq)
            return head + bytes([tag]) * (record - len(head))

        def viewer(tag: int) -> None:
            seq = 0
            while seq < per_thread:
                view = client.send_view(record * 4)
                assert len(view) % record == 0
                for k in range(len(view) // record):
                    view[k * record:(k + 1) * record] = body(tag, seq + k)
                seq += len(view) // record
                client.send_commit(view)

        def copier(tag: int) -> None:
            for seq in range(0, per_thread, 2):
                client.sendall(body(tag, seq) + body(tag, seq + 1))

        threads = [threading.Thread(target=viewer, args=(t,)) for t in range(4)]
        threads += [threading.Thread(target=copier, args=(t,)) for t in (4, 5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        client.shutdown(socket.SHUT_WR)
        reader.join(60)
        got = box["got"]
        last = {}
        for at in range(0, len(got), record):
            tag, seq = struct.unpack_from("<II", got, at)
            assert got[at:at + record] == body(tag, seq)
            assert seq >= last.get(tag, -1) + 1
            last[tag] = seq
        assert len(got) >= 6 * per_thread * record
        client.close()
        server.close()


def test_selector_drives_views_without_blocking(engine):
    """One thread, non-blocking sockets: send views where select says writable
    (EAGAIN otherwise), receive views where it says readable."""
    run = engine("qp.send_share_bytes=65536", "qp.send_space_threshold=16384")
    data = os.urandom(2_000_000)
    with OffloadNetwork(run.config()) as net:
        client, server = pair(net, 7550)
        client.setblocking(False)
        server.setblocking(False)
        sel = OffloadSelector(net)
        sel.register(client, EVENT_WRITE)
        sel.register(server, EVENT_READ)
        sent, got, eagain = 0, bytearray(), 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for key, mask in sel.select(timeout=5):
                sock = key.fileobj
                if sock is client:
                    try:
                        view = client.send_view(len(data) - sent)
                    except BlockingIOError:
                        eagain += 1
                        continue
                    n = len(view)
                    view[:] = data[sent:sent + n]
                    client.send_commit(view)
                    sent += n
                    if sent == len(data):
                        sel.unregister(client)
                        client.shutdown(socket.SHUT_WR)
                else:
                    try:
                        with server.received() as view:
                            if not len(view):
                                sel.unregister(server)
                                deadline = 0
                                break
                            got += view
                    except BlockingIOError:
                        eagain += 1
        assert bytes(got) == data
        client.close()
        server.close()


def test_held_views_close_the_window_without_a_loss(engine):
    """A reader that holds every view it takes: the engine closes the window as for
    a slow reader (counted), never runs out of buffers; once given back, all arrives."""
    run = engine("qp.recv_buffers=8", "qp.recv_buffer_bytes=16384", "nic.mtu=1500")
    data = os.urandom(1 << 20)
    with OffloadNetwork(run.config()) as net:
        client, server = pair(net, 7560)
        writer = threading.Thread(target=lambda: (client.sendall(data),
                                                  client.shutdown(socket.SHUT_WR)))
        writer.start()
        got, held = bytearray(), []
        while True:
            view = server.recv_view()
            if not len(view):
                break
            got += view
            held.append(view)
            if len(held) == 5:
                time.sleep(0.05)            # the window closes meanwhile
                for v in held:
                    server.recv_done(v)
                held.clear()
        for v in held:
            server.recv_done(v)
        writer.join(30)
        assert bytes(got) == data
        client.close()
        server.close()
    summary = run.stop()
    assert summary["offload"]["rx_window_closed"] >= 1
    assert summary["offload"].get("rx_out_of_buffers", 0) == 0


def test_integrity_under_loss_and_reordering(engine):
    run = engine("nic.mtu=1500", "nic.wire.loss=0.01", "nic.wire.reorder=0.05",
                 "nic.wire.seed=23", "tcp.rto_min_ms=20")
    data = os.urandom(3_000_000)
    with OffloadNetwork(run.config()) as net:
        client, server = pair(net, 7570, timeout=60)
        box = {}
        thread = threading.Thread(target=lambda: box.setdefault("got", zc_drain(server)))
        thread.start()
        zc_send(client, data, 65536)
        client.shutdown(socket.SHUT_WR)
        thread.join(120)
        assert hashlib.sha256(box["got"]).digest() == hashlib.sha256(data).digest()
        client.close()
        server.close()
    wire = run.stop()["wire"]
    assert wire["lost"] > 0 and wire["reordered"] > 0


def test_hostile_committed_ranges_are_counted_and_dropped(engine):
    """A commit the API refuses (beyond the view, a view not open) sends nothing;
    SEND ranges a host writes itself outside its send area (past its end, before
    it, wrapping at 2^64, a negative length) are each answered with an ERROR,
    counted in bad_records and dropped; the engine and the QP's other connections
    carry on."""
    run = engine()
    with OffloadNetwork(run.config()) as net:
        client, server = pair(net, 7580)
        view = client.send_view(64)
        with pytest.raises(ValueError):
            client.send_commit(view, len(view) + 1)
        with pytest.raises(ValueError):
            client.send_commit(memoryview(bytearray(10)))
        client.send_commit(view, 0)
        victim, _ = pair(net, 7581)
        lay = net.driver.layout
        end = lay.send_offset + lay.send_bytes
        hostile = [(end - 10, 11), (end, 1), (lay.send_offset - 1, 1), (0, 64),
                   ((1 << 64) - 8, 16), (lay.send_offset, (1 << 64) - 1),
                   (lay.recv_offset, 100), (end + (1 << 40), 1)]
        before = sum(q["bad_records"] for q in read_engine_stats(run.name)["qps"])
        for offset, length in hostile:
            net.driver.post(layout.OP_SEND, layout.REQ_SILENT, victim.conn, 0, 0, 0, 0,
                            offset, length, 0)
        client.sendall(b"still here")
        assert server.recv(100) == b"still here"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            net.driver.try_poll()
            stats = read_engine_stats(run.name)
            if sum(q["bad_records"] for q in stats["qps"]) - before >= len(hostile):
                break
            time.sleep(0.05)
        assert sum(q["bad_records"] for q in stats["qps"]) - before == len(hostile)
        assert stats["state"] == "running"
        assert victim.error == errno.EFAULT
        client.close()
        server.close()
