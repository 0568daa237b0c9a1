"""toad's stack against the Linux kernel's TCP over a TAP device (in-host runner):
100 MB each way with sha256 equal, at MTU 1500 and 9000, with and without TSO."""
from __future__ import annotations

import hashlib

import pytest

from tests.conftest import requires_tap
from tests.interop.conftest import LINUX_IP, finish, linux, python_peer, tap_network
from tests.interop.peer import pattern

pytestmark = [pytest.mark.interop, requires_tap]
SIZE = 100_000_000
CASES = [(1500, ("csum", "tso")), (1500, ()), (9000, ("csum", "tso")), (9000, ()),
         (1500, ("csum",))]
IDS = ["1500-tso", "1500-plain", "9000-tso", "9000-plain", "1500-csum-only"]


@pytest.fixture(scope="module")
def data():
    view = pattern(SIZE)
    return view, hashlib.sha256(view).hexdigest()


@pytest.mark.parametrize("mtu, offloads", CASES, ids=IDS)
def test_toad_sends_to_linux(data, mtu, offloads):
    payload, digest = data
    with tap_network(mtu, offloads) as net:
        with linux(net, python_peer("recv", 5001), wait_line=True) as peer:
            with net.create_connection((LINUX_IP, 5001), timeout=10) as sock:
                sock.settimeout(120)
                sock.sendall(payload)
                sock.shutdown(1)
                assert sock.recv(1) == b""
            assert finish(net, peer) == f"{SIZE} {digest}"
        counters = net.counters
        assert (counters["nic.tx_gso_frames"] > 0) == ("tso" in offloads)
        assert counters["nic.tx_partial_csum"] + counters["nic.tx_gso_frames"] > 0 \
            if offloads else counters["nic.tx_partial_csum"] == 0


@pytest.mark.parametrize("mtu, offloads", CASES, ids=IDS)
def test_toad_receives_from_linux(data, mtu, offloads):
    _payload, digest = data
    with tap_network(mtu, offloads) as net:
        server = net.socket()
        server.bind(("", 5001))
        server.listen()
        with linux(net, python_peer("send", net.address.split("/")[0], 5001, SIZE)) as peer:
            server.settimeout(30)
            conn, _ = server.accept()
            conn.settimeout(120)
            got, total, buf = hashlib.sha256(), 0, bytearray(1 << 20)
            while n := conn.recv_into(buf):
                got.update(memoryview(buf)[:n])
                total += n
            conn.close()
            assert (total, got.hexdigest()) == (SIZE, digest)
            assert finish(net, peer) == f"{SIZE} {digest}"
        server.close()
        counters = net.counters
        assert (counters["nic.rx_gso_frames"] > 0) == ("tso" in offloads)
        if not offloads:
            assert counters["nic.rx_partial_csum"] == 0
