"""sendall through a real engine: a chunk-sized writer's SEND descriptors stay whole.

sendall makes room for the whole rest of its buffer (acked space, a bigger ring or a
wait) before it writes, so chunk-sized writes are neither split by a partial write
nor by a ring's end once the ring has its full share (the share is a multiple of the
chunk): one SEND per chunk, at chunk-aligned ring positions.
"""
from __future__ import annotations

import array
import hashlib
import os
import socket

import numpy as np
import pytest

from host.sockets import OffloadNetwork
from toad import layout
from tests.system.test_offload_sockets import drain, engine, serve_once  # noqa: F401


@pytest.mark.parametrize("chunk", [131072, 8192])
def test_chunk_sized_sendall_posts_one_whole_send_per_chunk(engine, chunk):  # noqa: F811
    run = engine(f"qp.recv_buffer_bytes={chunk}", f"qp.recv_buffers={(2 << 20) // chunk}")
    count = (16 << 20) // chunk
    with OffloadNetwork(run.config()) as net:
        listener = net.listen(7031)
        thread, box = serve_once(listener, lambda sock: drain(sock, chunk))
        client = net.create_connection((net.listen_address, 7031), timeout=10)
        posts = []
        drv, requests = client.driver, np.frombuffer(client.driver.seg, layout.REQUEST,
                                                     client.driver.layout.request_entries,
                                                     client.driver.layout.request_offset)
        data = memoryview(os.urandom(chunk))
        for _ in range(count):
            before = drv.request_producer
            client.sendall(data)
            for index in range(before, drv.request_producer):   # the records it posted
                record = requests[index % len(requests)]
                if record["opcode"] == layout.OP_SEND:
                    ring = client.ring
                    posts.append((int(record["offset"]), int(record["length"]), ring.offset,
                                  ring.size))
        client.shutdown(socket.SHUT_WR)
        thread.join(60)
        client.close()
        listener.close()
    assert box.get("result", (0,))[0] == count * chunk, box.get("error")
    assert all(length == chunk for _, length, _, _ in posts), \
        sorted({length for _, length, _, _ in posts})
    assert len(posts) == count
    # once the ring has its full share, every chunk starts at a multiple of the chunk
    full = [(offset, start) for offset, _, start, size in posts if size == client.share]
    assert len(full) > count // 2
    assert all((offset - start) % chunk == 0 for offset, start in full)
    run.stop()


def test_sendall_into_a_partly_free_ring_that_cannot_grow_does_not_hang(engine):  # noqa: F811
    """A ring at its share (64 KB) with a threshold as big: a 48 KB sendall finding
    16 KB free waits for what is outstanding, not for a threshold never reached."""
    run = engine("qp.send_share_bytes=65536", "qp.send_space_threshold=65536")
    chunk, count = 49152, 40
    with OffloadNetwork(run.config()) as net:
        listener = net.listen(7032)
        thread, box = serve_once(listener, lambda sock: drain(sock, chunk))
        client = net.create_connection((net.listen_address, 7032), timeout=5)
        data = memoryview(os.urandom(chunk))
        for _ in range(count):
            client.sendall(data)          # TimeoutError if the wait outlives the data
        assert client.ring.size == 65536
        client.shutdown(socket.SHUT_WR)
        thread.join(30)
        client.close()
        listener.close()
    assert box.get("result", (0,))[0] == count * chunk, box.get("error")
    run.stop()


def test_a_small_send_area_still_gives_the_full_share_and_overlapping_waits(engine):  # noqa: F811
    """A 2 MB area with a 1 MB share and a 1 MB threshold: the ring grows to the share
    (it stayed at 256 KB when growth asked for twice the new size free), and a writer
    at its share asks to be woken when half the ring is free, not all of it (waiting
    for a whole ring is stop-and-wait: these settings moved 0.9 Gb/s)."""
    run = engine("qp.send_buffer_bytes=2097152", "qp.send_share_bytes=1048576",
                 "qp.send_space_threshold=1048576")
    chunk, count = 131072, 48
    with OffloadNetwork(run.config()) as net:
        listener = net.listen(7035)
        thread, box = serve_once(listener, lambda sock: drain(sock, chunk))
        client = net.create_connection((net.listen_address, 7035), timeout=10)
        asked = []
        post = client.driver.post

        def record(op, *args, **kwargs):
            if op == layout.OP_SEND_SPACE:    # (beyond what an old ring still holds)
                ring = client.ring
                asked.append((args[-1] - max(ring.base - ring.acked, 0), ring.size))
            return post(op, *args, **kwargs)

        client.driver.post = record
        data = memoryview(os.urandom(chunk))
        for _ in range(count):
            client.sendall(data)
        assert client.ring.size == 1 << 20
        client.shutdown(socket.SHUT_WR)
        thread.join(30)
        client.close()
        listener.close()
    assert box.get("result", (0,))[0] == count * chunk, box.get("error")
    assert asked and all(want <= size // 2 for want, size in asked), asked
    run.stop()


def test_sendall_takes_any_buffer_as_its_bytes_and_refuses_non_buffers(engine):  # noqa: F811
    """The fast path copies a flat byte buffer as it is; other buffers (items wider
    than a byte, two dimensions, a view that is not 'B') go through a byte cast, so
    the stream carries their bytes; a str is refused with TypeError, sending nothing."""
    run = engine()
    words = array.array("I", range(5000))                       # len 5000, 20000 bytes
    grid = memoryview(bytes(range(256)) * 16).cast("B", (64, 64))  # len 64, 4096 bytes
    signed = memoryview(bytearray(os.urandom(3000))).cast("b")
    pieces = [b"head", bytearray(b"middle"), words, grid, signed, memoryview(b"tail")]
    expected = b"".join(bytes(memoryview(p).cast("B")) if isinstance(p, memoryview)
                        else bytes(p) for p in pieces)
    with OffloadNetwork(run.config()) as net:
        listener = net.listen(7033)
        thread, box = serve_once(listener, lambda sock: drain(sock, 4096))
        client = net.create_connection((net.listen_address, 7033), timeout=5)
        client.sendall(b"x")           # the ring exists: later calls take the fast path
        with pytest.raises(TypeError):
            client.sendall("text")
        for piece in pieces:
            client.sendall(piece)
        client.shutdown(socket.SHUT_WR)
        thread.join(30)
        client.close()
        listener.close()
    assert box.get("result") == (1 + len(expected),
                                 hashlib.sha256(b"x" + expected).hexdigest()), box.get("error")
    run.stop()


def test_a_reader_at_eof_gives_its_read_buffers_back_at_once(engine):  # noqa: F811
    """Buffers read go back in batches (before any wait); a reader that reaches EOF
    hands back what it holds then, so none stay out while other sockets of the QP
    wait (a waiting thread does not flush again)."""
    run = engine("qp.recv_buffer_bytes=4096", "qp.recv_buffers=64",
                 "qp.recv_small_buffers=0")
    with OffloadNetwork(run.config()) as net:
        listener = net.listen(7034)
        thread, box = serve_once(listener, lambda sock: drain(sock, 4096))
        client = net.create_connection((net.listen_address, 7034), timeout=5)
        client.sendall(os.urandom(5 * 4096))     # five buffers: fewer than a batch
        client.shutdown(socket.SHUT_WR)
        thread.join(30)
        assert box.get("result", (0,))[0] == 5 * 4096, box.get("error")
        assert net.returns == 0 and net.rx_in_engine == 64
        client.close()
        listener.close()
    run.stop()
