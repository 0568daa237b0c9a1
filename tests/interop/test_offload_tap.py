"""Offloaded sockets against Linux over TAP: the engine's Stack on a TAP device, Linux's
TCP (a Python socket) in the namespace. 256 MB each way at once on one connection,
with 8 KB and 128 KB chunks, sha256 of both streams; and the errno of a refused
connect. Skipped without root and /dev/net/tun."""
from __future__ import annotations

import errno
import hashlib
import json
import os
import socket
import subprocess
import sys
import threading

import pytest

from host.sockets import OffloadNetwork
from tests.conftest import requires_tap
from tests.system.test_offload_sockets import EngineRun, drain, pump

pytestmark = [pytest.mark.interop, requires_tap]
LINUX_IP = "10.77.0.1"

# Linux side: accept one connection, send N bytes of the seeded pattern while reading
# to EOF; print the sha256 of both streams as JSON.
PEER = r"""
import hashlib, json, socket, sys, threading
port, total, chunk, seed = map(int, sys.argv[1:5])
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("0.0.0.0", port)); server.listen(1)
print("up", flush=True)
conn, _ = server.accept()
pattern = memoryview(bytes((i * 7 + seed) & 0xFF for i in range(256)) * (chunk * 4 // 256))
out = {}
def send():
    digest, sent = hashlib.sha256(), 0
    while sent < total:
        start = (sent // chunk) % 4 * chunk
        piece = pattern[start:start + min(chunk, total - sent)]
        conn.sendall(piece); digest.update(piece); sent += len(piece)
    conn.shutdown(socket.SHUT_WR)
    out["sent"] = digest.hexdigest()
thread = threading.Thread(target=send); thread.start()
digest, got = hashlib.sha256(), 0
while data := conn.recv(1 << 20):
    digest.update(data); got += len(data)
thread.join()
out["received"] = [got, digest.hexdigest()]
print(json.dumps(out), flush=True)
"""


def tap_engine(tag: str, *extra: str) -> EngineRun:
    pid = os.getpid() % 100000
    return EngineRun([f"nic.kind=tap", f"nic.tap.netns=toad-of{pid}{tag}",
                      f"nic.tap.device=toadof{pid}{tag}", "nic.tap.mtu=1500",
                      "tcp.time_wait_s=0.2", *extra], f"t{tag}")


@pytest.fixture
def engine():
    runs: list[EngineRun] = []

    def start(tag: str, *extra: str) -> EngineRun:
        runs.append(tap_engine(tag, *extra))
        return runs[-1]

    yield start
    for run in runs:
        if run.process.poll() is None:
            run.stop()


@pytest.mark.parametrize("chunk", [8192, 131072])
def test_256_mb_each_way_with_linux(engine, chunk):
    run = engine(str(chunk // 8192), f"qp.recv_buffer_bytes={chunk}",
                 f"qp.recv_buffers={(4 << 20) // chunk}")
    total = int(os.environ.get("TOAD_TEST_MB", 256)) << 20
    netns = run.config().nic.tap.netns
    peer = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-c", PEER,
                             "7100", str(total), str(chunk), "5"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert peer.stdout.readline().strip() == "up"
        with OffloadNetwork(run.config()) as net:
            sock = net.create_connection((LINUX_IP, 7100), timeout=10)
            sent = {}
            sender = threading.Thread(target=lambda: (sent.update(d=pump(sock, total, chunk, 6)),
                                                      sock.shutdown(socket.SHUT_WR)))
            sender.start()
            received = drain(sock, chunk)
            sender.join(300)
            sock.close()
        result = json.loads(peer.stdout.readline())
        peer.wait(30)
    finally:
        if peer.poll() is None:
            peer.kill()
            peer.wait()
    assert result["received"] == [total, sent["d"]]
    assert received == (total, result["sent"])
    summary = run.stop()
    assert summary["stack"]["tcp.active_opens"] == 1


def test_refused_by_linux_is_econnrefused(engine):
    run = engine("r")
    with OffloadNetwork(run.config()) as net:
        with pytest.raises(ConnectionRefusedError) as info:
            net.create_connection((LINUX_IP, 7199), timeout=10)
        assert info.value.errno == errno.ECONNREFUSED
        # 127.0.0.1 stays inside the engine's stack even in the TAP topology
        listener = net.listen(7101)
        client = net.create_connection(("127.0.0.1", 7101), timeout=10)
        server, peer = listener.accept()
        assert peer[0] == "127.0.0.1"
        client.sendall(b"inside")
        assert server.recv(10) == b"inside"
        for sock in (client, server, listener):
            sock.close()
    run.stop()
