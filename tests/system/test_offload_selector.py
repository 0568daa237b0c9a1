"""host/offload_selector.py through a real engine process: one thread, non-blocking
offloaded sockets, everything driven by select() (accept, connect's outcome, reads,
writes short of room, EOF), and the selector's own rules."""
from __future__ import annotations

import errno
import hashlib
import os
import socket
import threading
from selectors import EVENT_READ, EVENT_WRITE

import pytest

from host.offload_selector import OffloadSelector
from host.sockets import OffloadNetwork
from tests.system.test_offload_sockets import engine  # noqa: F401 (the fixture)

SMALL_SHARE = ["qp.send_share_bytes=65536", "qp.send_space_threshold=16384"]


class Client:
    """A non-blocking client that sends ``payload`` and reads its echo back."""

    def __init__(self, sock, payload: bytes):
        self.sock, self.payload = sock, memoryview(payload)
        self.sent, self.echo, self.connected = 0, bytearray(), False


def test_one_thread_echoes_three_clients_through_select(engine):
    run = engine(*SMALL_SHARE)
    payloads = [os.urandom(700_000 + 1000 * i) for i in range(3)]
    with OffloadNetwork(run.config()) as net:
        sel = OffloadSelector(net)
        listener = net.listen(7300)
        listener.setblocking(False)
        sel.register(listener, EVENT_READ, "listener")
        clients = []
        for payload in payloads:
            sock = net.socket()
            sock.setblocking(False)
            assert sock.connect_ex((net.listen_address, 7300)) == errno.EINPROGRESS
            client = Client(sock, payload)
            clients.append(client)
            sel.register(sock, EVENT_WRITE, client)     # writable: connect's outcome
        servers: dict = {}                       # server socket -> [unsent echo, eof]
        done = empty_selects = 0
        while done < len(clients):
            events = sel.select(timeout=10)
            if not events:
                empty_selects += 1
                assert empty_selects < 3, "select found nothing ready for 30 s"
                continue
            for key, mask in events:
                sock, role = key.fileobj, key.data
                if role == "listener":
                    child, _ = sock.accept()
                    child.setblocking(False)
                    servers[child] = [bytearray(), False]
                    sel.register(child, EVENT_READ, "server")
                elif role == "server":
                    state = servers[sock]
                    if mask & EVENT_READ:
                        data = sock.recv(65536)
                        state[0] += data
                        state[1] = not data
                    flush(sock, state[0])
                    if state[1] and not state[0]:          # echoed all, peer done
                        sel.unregister(sock)
                        sock.close()
                        continue
                    want = (0 if state[1] else EVENT_READ) | (EVENT_WRITE if state[0] else 0)
                    if want != key.events:
                        sel.modify(sock, want, "server")
                else:                                       # a client
                    client = role
                    if not client.connected:               # connect's outcome, once
                        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
                        assert sock.connected
                        client.connected = True
                    if mask & EVENT_WRITE and client.sent < len(client.payload):
                        try:
                            client.sent += sock.send(client.payload[client.sent:])
                        except BlockingIOError:
                            pass
                        if client.sent == len(client.payload):
                            sock.shutdown(socket.SHUT_WR)
                    if mask & EVENT_READ:
                        data = sock.recv(65536)
                        client.echo += data
                        if not data:
                            sel.unregister(sock)
                            sock.close()
                            done += 1
                            continue
                    want = EVENT_READ | (EVENT_WRITE if client.sent < len(client.payload) else 0)
                    if want != key.events:
                        sel.modify(sock, want, client)
        for client, payload in zip(clients, payloads):
            assert hashlib.sha256(client.echo).digest() == hashlib.sha256(payload).digest()
        sel.close()
        listener.close()
    summary = run.stop()
    assert summary["tables"]["qp_connections"] == 0


def flush(sock, pending: bytearray) -> None:
    while pending:
        try:
            n = sock.send(pending)
        except BlockingIOError:
            return
        del pending[:n]


def test_a_writer_short_of_room_is_woken_by_the_engine_not_the_timeout(engine):
    """The writer's network (QP) has no other traffic: only the SEND_SPACE the selector
    asks for can end its wait. The reader is on a second QP and drains in a thread."""
    run = engine(*SMALL_SHARE)
    with OffloadNetwork(run.config()) as writer_net, OffloadNetwork(run.config()) as reader_net:
        listener = reader_net.listen(7301)
        got = hashlib.sha256()
        received = []

        def read_all():
            sock, _ = listener.accept()
            with sock:
                while data := sock.recv(65536):
                    got.update(data)
                    received.append(len(data))

        reader = threading.Thread(target=read_all, daemon=True)
        reader.start()
        sock = writer_net.create_connection((writer_net.listen_address, 7301), timeout=10)
        sock.setblocking(False)
        sel = OffloadSelector(writer_net)
        sel.register(sock, EVENT_WRITE)
        payload = memoryview(os.urandom(4 << 20))
        sent = stalls = 0
        while sent < len(payload):
            # wait first, then send at most the room writable promises (16 KB): no send
            # fails, so no send asks for SEND_SPACE itself; select must
            if not sel.select(timeout=0):
                stalls += 1
                ready = sel.select(timeout=10)     # bounded: a missing wake-up fails here
                assert ready and ready[0][1] == EVENT_WRITE, f"no room after 10 s at {sent}"
            sent += sock.send(payload[sent:sent + 16384])
        sock.setblocking(True)
        sock.close()
        reader.join(30)
        assert not reader.is_alive()
        assert stalls > 0                      # the ring did fill: the waits were real
        assert sock.space_events > 0           # the selector asked the engine for room
        assert sum(received) == len(payload)
        assert got.digest() == hashlib.sha256(payload).digest()
        listener.close()
    run.stop()


def test_selector_rules(engine):
    run = engine()
    with OffloadNetwork(run.config()) as net, OffloadNetwork(run.config()) as other:
        sel = OffloadSelector(net)
        listener = net.listen(7302)
        with pytest.raises(ValueError, match="Invalid events"):
            sel.register(listener, 4)
        with socket.socket() as kernel_socket, \
                pytest.raises(ValueError, match="offloaded sockets only"):
            sel.register(kernel_socket, EVENT_READ)
        foreign = other.socket()
        with pytest.raises(ValueError, match="offloaded sockets only"):
            sel.register(foreign, EVENT_READ)
        foreign.close()
        key = sel.register(listener, EVENT_READ, "x")
        assert key.fd == listener.conn and sel.get_key(listener) is key
        with pytest.raises(KeyError):
            sel.register(listener, EVENT_READ)
        assert sel.select(timeout=0) == []           # nothing pending, no wait
        assert sel.select(timeout=0.05) == []        # waits, times out, nothing

        client = net.create_connection((net.listen_address, 7302), timeout=10)
        [(ready, mask)] = sel.select(timeout=10)
        assert ready is key and mask == EVENT_READ
        server, _ = listener.accept()
        assert sel.select(timeout=0) == []           # the one connection was taken

        sel.register(server, EVENT_READ | EVENT_WRITE, "server")
        [(ready, mask)] = sel.select(timeout=10)     # writable at once, nothing to read
        assert ready.data == "server" and mask == EVENT_WRITE
        sel.modify(server, EVENT_READ, "server")
        client.sendall(b"ping")
        client.shutdown(socket.SHUT_WR)
        data, eof = b"", False
        for _ in range(10):                          # the data, then the FIN: readable
            for ready, mask in sel.select(timeout=10):
                if ready.data == "server":
                    chunk = server.recv(100)
                    data += chunk
                    eof = not chunk
            if eof:
                break
        assert data == b"ping" and eof

        server.close()                               # closed while registered:
        assert all(k.data != "server" for k, _ in sel.select(timeout=0))   # never reported
        sel.unregister(server)
        with pytest.raises(KeyError):
            sel.unregister(server)
        closed = net.socket()
        closed.close()
        with pytest.raises(ValueError, match="closed"):
            sel.register(closed, EVENT_READ)
        sel.close()
        assert len(sel.get_map()) == 0
        client.close()
        listener.close()
    run.stop()
