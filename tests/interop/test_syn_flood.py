"""A SYN flood against a toad listener over TAP (issue 21, finding 4): 1,000 SYNs from
on-link addresses that never answer fill the backlog of half-open connections; a
Linux client still connects at once (SYN cookies, RFC 4987) and moves data over the
connection its cookie made."""
from __future__ import annotations

import hashlib
import time

import pytest

from tests.conftest import requires_tap
from tests.interop.conftest import TOAD_IP, finish, linux, python_peer, tap_network
from tests.interop.peer import pattern

pytestmark = [pytest.mark.interop, requires_tap]
PORT, SYNS, SIZE = 5002, 1000, 2_000_000


@pytest.mark.timeout(120)
def test_listener_stays_reachable_under_a_syn_flood():
    with tap_network() as net:
        server = net.socket()
        server.bind(("", PORT))
        server.listen()
        with linux(net, python_peer("flood", TOAD_IP, PORT, SYNS)) as flood:
            assert finish(net, flood, 30) == f"sent {SYNS}"
        # every SYN is in (the kernel answers ARP for toad, none of the sources do)
        count = lambda name: net.counters.get(name, 0)  # noqa: E731
        assert net.wait(lambda: count("tcp.syncookies_sent") + count("tcp.passive_opens")
                        + count("tcp.listen_overflow") >= SYNS, 10)
        assert count("tcp.passive_opens") == 128      # the backlog, half-open
        started = time.monotonic()
        with linux(net, python_peer("connect", TOAD_IP, PORT)) as client:
            assert finish(net, client, 20) == "connected"    # (its limit: 5 s)
        connected_s = time.monotonic() - started
        with linux(net, python_peer("send", TOAD_IP, PORT, SIZE)) as sender:
            server.settimeout(10)
            first, _ = server.accept()            # the connect's, made from its cookie
            first.close()
            conn, _ = server.accept()
            conn.settimeout(30)
            got, total, buf = hashlib.sha256(), 0, bytearray(1 << 16)
            while n := conn.recv_into(buf):
                got.update(memoryview(buf)[:n])
                total += n
            conn.close()
            digest = hashlib.sha256(pattern(SIZE)).hexdigest()
            assert (total, got.hexdigest()) == (SIZE, digest)
            assert finish(net, sender) == f"{SIZE} {digest}"
        server.close()
        assert count("tcp.syncookies_sent") >= SYNS - 128
        assert count("tcp.syncookies_recv") == 2
        assert count("tcp.syncookies_failed") == 0
        assert connected_s < 3, f"the client took {connected_s:.1f} s to connect"
