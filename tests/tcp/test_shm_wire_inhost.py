"""The in-host runner and its socket API, over the shared-memory wire; and `toad nc`."""
from __future__ import annotations

import errno
import hashlib
import os
import socket
import subprocess
import sys

import pytest

from host.inhost import InhostNetwork
from toad.config import load

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def config(tag: str, *extra: str):
    return load(None, [f"name=t{tag}{os.getpid()}", "tcp.time_wait_s=0.5", *extra])


@pytest.fixture
def net():
    with InhostNetwork(config("n")) as network:
        yield network


def pair(net, port=6000):
    """A connected pair inside one stack (its own address loops inside the stack)."""
    server = net.socket()
    server.bind(("", port))
    server.listen()
    client = net.create_connection(("10.0.0.1", port), timeout=5)
    conn, peer = server.accept()
    assert peer == client.getsockname()
    return server, client, conn


def test_data_both_ways_and_end_of_stream(net):
    server, client, conn = pair(net)
    data = os.urandom(1_500_000)
    with server, client, conn:
        client.settimeout(10)
        conn.settimeout(10)
        client.sendall(data)
        client.shutdown(socket.SHUT_WR)
        got = bytearray()
        buf = bytearray(70000)
        while True:
            n = conn.recv_into(buf, 65536)
            if not n:
                break
            got += buf[:n]
        assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
        conn.sendall(b"reply")
        conn.close()
        assert client.recv(100) == b"reply"
        assert client.recv(100) == b""
        with pytest.raises(BrokenPipeError) as info:
            client.send(b"late")
        assert info.value.errno == errno.EPIPE


def test_connect_refused(net):
    with pytest.raises(ConnectionRefusedError) as info:
        net.create_connection(("10.0.0.1", 6001), timeout=5)
    assert info.value.errno == errno.ECONNREFUSED


def test_timeouts_and_non_blocking(net):
    server, client, conn = pair(net, 6002)
    with server, client, conn:
        client.settimeout(0.05)
        with pytest.raises(TimeoutError):
            client.recv(10)
        client.setblocking(False)
        with pytest.raises(BlockingIOError) as info:
            client.recv(10)
        assert info.value.errno == errno.EAGAIN
        server.settimeout(0.0)
        with pytest.raises(BlockingIOError):
            server.accept()
        assert client.gettimeout() == 0.0


def test_send_blocks_when_the_peer_does_not_read(net):
    """The receiver's window closes; a non-blocking sender then gets EAGAIN."""
    server, client, conn = pair(net, 6003)
    with server, client, conn:
        client.setblocking(False)
        total = 0
        with pytest.raises(BlockingIOError):
            for _ in range(1000):
                total += client.send(bytes(1 << 20))
                net.step()
        assert total >= 4 << 20           # at least the peer's receive buffer


def test_errors_name_the_misuse(net):
    sock = net.socket()
    with pytest.raises(OSError) as info:
        sock.recv(1)
    assert info.value.errno == errno.ENOTCONN
    sock.bind(("", 6004))
    other = net.socket()
    with pytest.raises(OSError) as info:
        other.bind(("0.0.0.0", 6004))
    assert info.value.errno == errno.EADDRINUSE
    with pytest.raises(OSError) as info:
        other.bind(("10.9.9.9", 6005))
    assert info.value.errno == errno.EADDRNOTAVAIL
    with pytest.raises(OSError) as info:
        other.accept()
    assert info.value.errno == errno.EINVAL
    sock.close()
    with pytest.raises(OSError) as info:
        sock.listen()
    assert info.value.errno == errno.EBADF
    with pytest.raises(socket.gaierror):
        other.connect(("example.com", 80))
    other.close()


def test_nodelay_option(net):
    server, client, conn = pair(net, 6006)
    with server, client, conn:
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        assert client.conn.nodelay
        with pytest.raises(OSError) as info:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        assert info.value.errno == errno.ENOPROTOOPT


SENDER = """
import hashlib, os, sys
from host.inhost import InhostNetwork
from toad.config import load
cfg = load(None, [f"name={sys.argv[1]}", "tcp.time_wait_s=0.5"])
data = bytes(range(256)) * 8192
with InhostNetwork(cfg, side="b") as net:
    with net.create_connection(("10.0.0.1", 5001), timeout=10) as sock:
        sock.sendall(data)
        sock.shutdown(1)
        assert sock.recv(1) == b""
print(hashlib.sha256(data).hexdigest(), flush=True)
"""


def test_two_processes_over_the_shm_wire():
    cfg = config("p")
    with InhostNetwork(cfg, side="a") as net:
        server = net.socket()
        server.bind(("", 5001))
        server.listen()
        child = subprocess.Popen([sys.executable, "-c", SENDER, cfg.name], cwd=ROOT,
                                 stdout=subprocess.PIPE, text=True)
        try:
            server.settimeout(20)
            conn, peer = server.accept()
            assert peer[0] == "10.0.0.2"
            conn.settimeout(20)
            digest = hashlib.sha256()
            while data := conn.recv(1 << 20):
                digest.update(data)
            conn.close()
            server.close()
            assert child.wait(timeout=20) == 0
            assert child.stdout.read().strip() == digest.hexdigest()
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
            child.stdout.close()


def run_nc(*args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "host.nc", *args], cwd=ROOT, **kwargs)


def test_nc_over_the_shm_wire(tmp_path):
    name = f"name=tnc{os.getpid()}"
    payload = os.urandom(300_000)
    (tmp_path / "in").write_bytes(payload)
    with open(tmp_path / "out", "wb") as out, open(tmp_path / "in", "rb") as stdin, \
            open(tmp_path / "reply", "wb") as reply:
        server = run_nc("--set", name, "--listen", "7001", stdin=subprocess.DEVNULL, stdout=out)
        try:
            client = run_nc("--set", name, "10.0.0.1", "7001", stdin=stdin, stdout=reply)
            try:
                assert client.wait(timeout=60) == 0
            finally:
                if client.poll() is None:
                    client.kill()
                    client.wait()
            assert server.wait(timeout=30) == 0
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
    assert (tmp_path / "out").read_bytes() == payload


def test_nc_offload_mode_without_engine_is_a_clear_error():
    done = subprocess.run([sys.executable, "-m", "host.nc", "--mode", "offload",
                           "--set", f"name=tnoeng{os.getpid()}", "-l", "5"],
                          cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert done.returncode != 0
    assert done.stderr.startswith("toad: error:") and "engine" in done.stderr


def test_unwritable_pcap_is_a_clear_error(tmp_path):
    from toad.errors import ToadError
    with pytest.raises(ToadError, match="nic.pcap"):
        InhostNetwork(config("c", f"nic.pcap={tmp_path}/missing/dir/x.pcap"))


def test_arp_timeout_reaches_both_stacks():
    """nic.arp_timeout_s is the ARP cache's timeout in the in-host worker's stack and
    in the engine's (installed here on a stand-in loop: only its stack is looked at)."""
    from types import SimpleNamespace

    from engine.offload import close, install

    cfg = config("arp", "nic.arp_timeout_s=7.5")
    with InhostNetwork(cfg) as network:
        assert network.stack.arp.timeout == 7.5
    loop = SimpleNamespace(config=cfg, dispatcher=SimpleNamespace(
        register=lambda *a: None, register_send_run=lambda *a: None),
        slots=SimpleNamespace(attach_hooks=[]), add_poller=lambda p: None,
        raise_interrupts=None, service_all=None, rx_doorbells=None)
    poller = install(loop)
    try:
        assert poller.stack.arp.timeout == 7.5
    finally:
        close(poller)
