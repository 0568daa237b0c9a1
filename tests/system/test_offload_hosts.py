"""Offloaded sockets across host processes and over time: a host SIGKILLed with open
connections (the engine closes them as Linux closes a dead process's sockets: the
data it accepted is delivered, then FIN; RST where unread data is thrown away; and
frees what they held; another host keeps working) and 10,000 connections through one
engine with no leftover state and no growth in engine memory."""
from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from host.sockets import OffloadNetwork
from tests.system.test_offload_sockets import EngineRun

CHILD = r"""
import sys, time
from toad.config import load
from host.sockets import OffloadNetwork
net = OffloadNetwork(load(None, sys.argv[2:]))
socks = [net.create_connection((net.listen_address, int(sys.argv[1])), timeout=10)
         for _ in range(3)]
for s in socks:
    s.sendall(b"hello" * 1000)
print("ready", flush=True)
time.sleep(60)
"""


# A host that sends ``total`` bytes on one connection (sendall returns once they are
# in its send ring: the peer reads nothing and its window is small, so most are not
# acknowledged yet), and gets bytes it never reads on a second one; then waits to be
# killed.
DYING_SENDER = r"""
import sys, time
from toad.config import load
from host.sockets import OffloadNetwork
port, total = map(int, sys.argv[1:3])
net = OffloadNetwork(load(None, sys.argv[3:]))
bulk = net.create_connection((net.listen_address, port), timeout=10)
unread = net.create_connection((net.listen_address, port), timeout=10)
bulk.sendall(bytes(i * 7 & 0xFF for i in range(256)) * (total // 256))
unread.sendall(b"from the dying host")
print("sent", flush=True)
while not unread.readable():         # the peer's bytes are in; never read
    net.driver.try_poll()
    time.sleep(0.001)
print("ready", flush=True)
time.sleep(60)
"""


SENDER = r"""
import hashlib, sys
from toad.config import load
from host.sockets import OffloadNetwork
port, total, seed = map(int, sys.argv[1:4])
with OffloadNetwork(load(None, sys.argv[4:])) as net:
    block = bytes((i * 13 + seed) & 0xFF for i in range(256)) * 256
    digest = hashlib.sha256()
    with net.create_connection((net.listen_address, port), timeout=10) as sock:
        sock.sendall(seed.to_bytes(1, "big"))
        for _ in range(total // len(block)):
            sock.sendall(block)
            digest.update(block)
    print(digest.hexdigest(), flush=True)
"""


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


@pytest.fixture
def engine():
    runs: list[EngineRun] = []

    def start(*overrides: str) -> EngineRun:
        runs.append(EngineRun(list(overrides), f"h{len(runs)}"))
        return runs[-1]

    yield start
    for run in runs:
        if run.process.poll() is None:
            run.stop()


@pytest.mark.timeout(120)
def test_sigkilled_host_s_accepted_data_is_delivered_then_fin(engine):
    total = 900 * 1024
    run = engine("tcp.recv_buffer_bytes=65536")
    with OffloadNetwork(run.config()) as net:
        listener = net.listen(7011)
        child = subprocess.Popen([sys.executable, "-c", DYING_SENDER, "7011", str(total),
                                  *run.overrides], stdout=subprocess.PIPE, text=True)
        try:
            bulk, _ = listener.accept()
            unread, _ = listener.accept()
            assert child.stdout.readline().strip() == "sent"
            unread.settimeout(10)
            assert unread.recv(100) == b"from the dying host"
            unread.sendall(b"never read" * 100)
            assert child.stdout.readline().strip() == "ready"
            child.send_signal(signal.SIGKILL)
            child.wait(10)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
            child.stdout.close()
        bulk.settimeout(30)
        got = bytearray()
        while chunk := bulk.recv(1 << 16):
            got += chunk
        assert len(got) == total            # every byte sendall accepted, then EOF
        assert got == bytes(i * 7 & 0xFF for i in range(256)) * (total // 256)
        with pytest.raises(ConnectionResetError):    # the dead host's unread bytes: RST
            unread.recv(100)
        bulk.close()
        unread.close()
        listener.close()
    summary = run.stop()
    assert summary["offload"]["closed_on_reclaim"] == 1
    assert summary["offload"]["reset_on_reclaim"] == 1
    assert summary["tables"]["qp_connections"] == 0


def test_sigkilled_host_is_closed_and_another_host_keeps_working(engine):
    run = engine()
    with OffloadNetwork(run.config()) as net:
        listener = net.listen(7010)
        child = subprocess.Popen([sys.executable, "-c", CHILD, "7010", *run.overrides],
                                 stdout=subprocess.PIPE, text=True)
        try:
            accepted = [listener.accept()[0] for _ in range(3)]
            assert child.stdout.readline().strip() == "ready"
            for sock in accepted:
                sock.settimeout(10)
                got = b""
                while len(got) < 5000:
                    got += sock.recv(8192)
                assert got == b"hello" * 1000
            child.send_signal(signal.SIGKILL)
            child.wait(10)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        for sock in accepted:            # it read all it got: FIN, as Linux closes them
            assert sock.recv(10) == b""
            sock.close()
        # this host's QP is untouched: a new connection works end to end
        with net.create_connection((net.listen_address, 7010), timeout=10) as client:
            server, _ = listener.accept()
            client.sendall(b"still here")
            assert server.recv(100) == b"still here"
            server.close()
        listener.close()
    leftovers = [p.name for p in Path("/dev/shm").iterdir() if f"-{child.pid}" in p.name]
    assert leftovers == []          # the engine removed the dead host's segment
    summary = run.stop()
    assert summary["offload"]["closed_on_reclaim"] == 3
    assert summary["tables"]["qp_connections"] == 0


def one_connection(net, listener, port: int) -> None:
    client = net.create_connection((net.listen_address, port), timeout=10)
    server, _ = listener.accept()
    client.sendall(b"q" * 200)
    assert server.recv(1000) == b"q" * 200
    server.sendall(b"r" * 300)
    server.close()                   # the server closes first: TIME-WAIT on its side
    got = b""
    while len(got) < 300:
        got += client.recv(1000)
    assert got == b"r" * 300 and client.recv(10) == b""
    client.close()


def test_ten_thousand_connections_leave_nothing_behind(engine):
    run = engine("tcp.time_wait_s=0.05", "tcp.delayed_ack_ms=0")
    total, warmup = 10_000, 1_000
    with OffloadNetwork(run.config()) as net:
        listener = net.listen(7011)
        for _ in range(warmup):
            one_connection(net, listener, 7011)
        rss_warm = rss_kib(run.pid())
        for _ in range(total - warmup):
            one_connection(net, listener, 7011)
        time.sleep(0.2)              # the last TIME-WAITs expire
        rss_end = rss_kib(run.pid())
        listener.close()
        assert net.wait(lambda: not net.closing, 10)   # every CLOSE answered
        assert net.sockets == {}
        assert net.orphans == {}
        area_free = net.area.free_bytes()
        assert area_free == net.area.size
    summary = run.stop()
    tables = summary["tables"]
    assert tables == {"stack_objects": 0, "lingering": 0, "delayed": 0, "tcbs": 0,
                      "listeners": 0, "bound_ports": 0, "qp_connections": 0}, tables
    assert summary["offload"]["accepted"] == total
    assert summary["stack"]["tcp.freed"] == 2 * total
    print(f"engine RSS after {warmup} connections: {rss_warm} KiB, after {total}: {rss_end} KiB")
    # no growth beyond allocator noise: 10,000 connections of state would be megabytes
    assert rss_end - rss_warm < 2048, (rss_warm, rss_end)


def test_several_host_processes_share_one_engine(engine):
    """Three sender processes (three QPs) and this receiver (a fourth) at once."""
    run = engine()
    total = 8 << 20
    with OffloadNetwork(run.config()) as net:
        listener = net.listen(7012, backlog=8)
        senders = [subprocess.Popen([sys.executable, "-c", SENDER, "7012", str(total),
                                     str(seed), *run.overrides], stdout=subprocess.PIPE,
                                    text=True) for seed in (1, 2, 3)]
        digests = {}
        try:
            accepted = [listener.accept()[0] for _ in senders]
            threads = []
            for sock in accepted:
                def read(sock=sock):
                    seed = sock.recv(1)[0]
                    digest, got, buf = hashlib.sha256(), 0, bytearray(65536)
                    while n := sock.recv_into(buf):
                        digest.update(memoryview(buf)[:n])
                        got += n
                    digests[seed] = (got, digest.hexdigest())
                    sock.close()
                threads.append(threading.Thread(target=read))
                threads[-1].start()
            for thread in threads:
                thread.join(120)
            sent = {seed: p.communicate(timeout=60)[0].strip() for seed, p in zip((1, 2, 3), senders)}
        finally:
            for p in senders:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        listener.close()
    assert digests == {seed: (total, sent[seed]) for seed in (1, 2, 3)}
    run.stop()
