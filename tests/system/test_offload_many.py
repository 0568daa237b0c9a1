"""Many offloaded connections on one QP (issue 22): the send area is lent by demand
and taken back from connections whose bytes are all acknowledged, so hundreds of
connections share an area that holds a few dozen rings; a writer that cannot get
space gets EAGAIN or its timeout, never a wait without end.

Every test runs a real engine process (tests/system/test_offload_sockets.py
EngineRun) and talks to it through host.sockets.OffloadNetwork in this process.
"""
from __future__ import annotations

import threading
import time

import pytest

from host.sockets import OffloadNetwork
from tests.system.test_offload_sockets import engine  # noqa: F401 (the fixture)

SMALL_AREA = ["qp.send_buffer_bytes=65536", "qp.send_share_bytes=65536",
              "qp.send_space_threshold=16384"]


def pairs(net, listener, port: int, count: int) -> list:
    """``count`` connected (client, server) pairs."""
    out = []
    for _ in range(count):
        client = net.create_connection((net.listen_address, port), timeout=10)
        server, _ = listener.accept()
        out.append((client, server))
    return out


def test_idle_connections_give_their_send_space_to_the_next(engine):  # noqa: F811
    """A 64 KB area holds 64 rings of 1 KB; 200 connections each send and are answered
    twice: drained rings are taken back for the newcomers, every byte arrives."""
    run = engine(*SMALL_AREA, "qp.max_connections=512", "qp.recv_buffers=512",
                 "qp.recv_buffer_bytes=4096")
    with OffloadNetwork(run.config()) as net:
        listener = net.listen(7101, backlog=256)
        connections = pairs(net, listener, 7101, 200)
        for round_no in range(2):
            for i, (client, _) in enumerate(connections):
                client.sendall(b"%05d request %d" % (i, round_no))
            for i, (client, server) in enumerate(connections):
                request = b"%05d request %d" % (i, round_no)
                assert server.recv(100) == request
                server.sendall(request.upper())
                assert client.recv(100) == request.upper()
        assert net.host_counters["send_rings_reclaimed"] > 0
        assert len(net.ring_holders) <= 64 + 1
        for client, server in connections:
            client.close()
            server.close()
        listener.close()
        assert net.wait(lambda: not net.closing, 10)
        assert net.area.free_bytes() == net.area.size
    run.stop()


def fill_send_area(net, hogs) -> list[int]:
    """Non-blocking writes on every connection of ``hogs`` (toward readers that do not
    read, so nothing is acknowledged past their small windows) until the QP's send
    area is full; returns the bytes each sent."""
    sent = [0] * len(hogs)
    for hog in hogs:
        hog.settimeout(0)
    deadline = time.monotonic() + 10
    while net.area.free_bytes() >= 1024 and time.monotonic() < deadline:
        for i, hog in enumerate(hogs):
            try:
                sent[i] += hog.send(bytes(4096))
            except BlockingIOError:
                time.sleep(0.002)
    assert net.area.free_bytes() < 1024
    time.sleep(0.3)                           # what the windows let through is acked
    for i, hog in enumerate(hogs):            # each ring holds unacked bytes again
        try:
            sent[i] += hog.send(bytes(4096))
        except BlockingIOError:
            pass
    return sent


def drain_hogs(peers, sent) -> None:
    buf = bytearray(65536)
    for peer, total in zip(peers, sent):
        peer.settimeout(10)
        got = 0
        while got < total:
            got += peer.recv_into(buf)


HOG_RECEIVER = ["tcp.recv_buffer_bytes=4096", "qp.recv_buffer_bytes=2048",
                "qp.recv_buffers=256"]   # 4 KB windows: 8 KB rings stay unacked


def test_a_writer_without_send_space_gets_eagain_or_its_timeout(engine):  # noqa: F811
    """Eight connections fill the whole area toward readers that do not read; another
    one's first send finds no space: EAGAIN non-blocking, TimeoutError with a timeout;
    once the readers drain the others, it sends."""
    run = engine(*SMALL_AREA, *HOG_RECEIVER)
    with OffloadNetwork(run.config()) as net:
        listener = net.listen(7102, backlog=16)
        connections = pairs(net, listener, 7102, 9)
        (other, other_peer), hogs = connections[0], connections[1:]
        sent = fill_send_area(net, [hog for hog, _ in hogs])
        other.settimeout(0)
        with pytest.raises(BlockingIOError):
            other.send(b"x" * 100)
        other.settimeout(0.3)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            other.sendall(b"x" * 100)
        assert 0.25 < time.monotonic() - started < 5
        assert net.host_counters["send_area_full"] >= 2
        drain_hogs([peer for _, peer in hogs], sent)
        other.settimeout(10)
        other.sendall(b"y" * 100)             # drained rings are taken back: it fits
        other_peer.settimeout(10)
        assert other_peer.recv(200) == b"y" * 100
        for pair in connections:
            for sock in pair:
                sock.close()
        listener.close()
    run.stop()


def test_blocking_send_waits_for_space_in_flight(engine):  # noqa: F811
    """A blocking writer without space waits while other connections' bytes are in
    flight, and sends once they are acknowledged."""
    run = engine(*SMALL_AREA, *HOG_RECEIVER)
    with OffloadNetwork(run.config()) as net:
        listener = net.listen(7103, backlog=16)
        connections = pairs(net, listener, 7103, 9)
        (other, other_peer), hogs = connections[0], connections[1:]
        sent = fill_send_area(net, [hog for hog, _ in hogs])
        other.settimeout(10)
        done = threading.Event()

        def write():
            other.sendall(b"z" * 100)
            done.set()

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        time.sleep(0.2)
        assert not done.is_set()
        drain_hogs([peer for _, peer in hogs], sent)
        writer.join(10)
        assert done.is_set()
        other_peer.settimeout(10)
        assert other_peer.recv(200) == b"z" * 100
        for pair in connections:
            for sock in pair:
                sock.close()
        listener.close()
    run.stop()


@pytest.mark.parametrize("staging", ["engine.staging_bytes=67108864", "engine.staging_bytes=0"])
def test_a_reader_is_not_starved_by_buffers_held_for_others(engine, staging):  # noqa: F811
    """Eight 4 KB buffers, all attached to connections nobody reads; a blocking recv on
    a ninth still gets its data (staged in the engine, or resent when nothing may be
    staged): the waiting reader copies the others' bytes into their sockets' memory
    and their buffers go back, counted. The copied bytes are read later, in order,
    after the part of a buffer a reader had read before."""
    run = engine("qp.recv_buffers=8", "qp.recv_buffer_bytes=4096",
                 "qp.recv_small_buffers=0", staging)
    with OffloadNetwork(run.config()) as net:
        listener = net.listen(7104, backlog=32)
        connections = pairs(net, listener, 7104, 9)
        messages = [bytes([i]) * 1000 + bytes(range(256)) * 8 for i in range(9)]
        connections[1][0].sendall(messages[1])
        assert connections[1][1].recv(1000) == messages[1][:1000]     # half read
        for i in range(2, 9):
            connections[i][0].sendall(messages[i])
        assert net.wait(lambda: net.rx_in_engine <= 1, 10), net.rx_in_engine
        client, server = connections[0]
        client.sendall(messages[0])
        server.settimeout(20)
        got = bytearray()
        while len(got) < len(messages[0]):
            got += server.recv(len(messages[0]) - len(got))
        assert got == messages[0]
        counters = net.host_counters
        assert counters["rx_pool_starved"] >= 1 and counters["rx_spilled_buffers"] >= 1
        assert counters["rx_spilled_bytes"] >= 3048
        spilled = [s for _, s in connections[1:] if s.tx["spilled"]]
        assert spilled and all(s.readable() for s in spilled)
        for i, (client, server) in enumerate(connections[1:], 1):
            want = messages[i][1000:] if i == 1 else messages[i]
            got = bytearray()
            while len(got) < len(want):
                got += server.recv(len(want) - len(got))
            assert got == want, i
            assert not server.tx["spilled"]
        for client, server in connections:
            client.close()
            server.close()
        listener.close()
    summary = run.stop()
    if staging.endswith("67108864"):        # staged, never refused
        assert summary["offload"].get("rx_out_of_buffers", 0) == 0
        # (staged when the data came before the waiting reader gave buffers back;
        # what was staged was placed: the reader got it)
        offload = summary["offload"]
        if offload.get("rx_staged"):
            assert offload["rx_staged_placed"] >= 1


def test_a_short_message_takes_a_small_buffer_and_a_long_one_a_chunk(engine):  # noqa: F811
    """Two buffer groups: 16 small buffers of 512 B beside 8 of 4 KB. Twelve 100-byte
    messages (more than the chunk-sized group holds) each take a small buffer; a
    2000-byte one takes a chunk-sized one."""
    run = engine("qp.recv_buffers=8", "qp.recv_buffer_bytes=4096",
                 "qp.recv_small_buffers=16", "qp.recv_small_bytes=512")
    with OffloadNetwork(run.config()) as net:
        listener = net.listen(7105, backlog=32)
        connections = pairs(net, listener, 7105, 12)
        sizes = net.driver.bufs["size"]
        for i, (client, _) in enumerate(connections):
            client.sendall(bytes([i]) * 100)
        assert net.wait(lambda: all(s.readable() for _, s in connections), 10)
        assert [int(sizes[s.tx["rx_head"]]) for _, s in connections] == [512] * 12
        for i, (_, server) in enumerate(connections):
            assert server.recv(200) == bytes([i]) * 100
        client, server = connections[0]
        client.sendall(b"L" * 2000)
        assert net.wait(server.readable, 10)
        assert int(sizes[server.tx["rx_head"]]) == 4096
        got = bytearray()
        while len(got) < 2000:
            got += server.recv(4096)
        assert got == b"L" * 2000
        for client, server in connections:
            client.close()
            server.close()
        listener.close()
    summary = run.stop()
    assert summary["offload"].get("rx_out_of_buffers", 0) == 0
