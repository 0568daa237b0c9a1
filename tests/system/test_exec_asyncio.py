"""An unmodified asyncio streams echo server and client, each under ``toad exec``,
on the engine's loopback wire: 1000 connections open at once, every byte compared.

Per-QP limits set through config overrides (each program has its own QP): 1000
connections fit ``qp.max_connections`` (1024 rows, 1023 usable: the server's
listener and its 1000 children); each connection's first send ring is
min(64 KB, ``qp.send_share_bytes``), so a 16 KB share makes 1000 rings 16 MB, inside a
32 MB ``qp.send_buffer_bytes`` (with the built-in 4 MB area the 257th sending
connection of 16 KB, or the 65th of 64 KB, waits for room: issue 22); the receive
pool holds 2048 buffers of 16 KB, two per connection.

The engine's heartbeat timeout is 5 s here: its loop serves 1000 connections' bursts
(handshakes and the first sends all go through the Python slow path) on a CPU it
shares with both programs on a 2-CPU machine, and one such pass has exceeded the
default 1 s, which the programs then took for a dead engine.
"""
from __future__ import annotations

import os
import signal

from tests.system.exec_helpers import finished, last_json, program, toad_exec
from tests.system.test_offload_sockets import engine  # noqa: F401 (the fixture)

CONNECTIONS = int(os.environ.get("TOAD_TEST_CONNECTIONS", 1000))
QP = ["qp.send_share_bytes=16384", "qp.send_space_threshold=8192",
      "qp.send_buffer_bytes=33554432", "qp.recv_buffer_bytes=16384", "qp.recv_buffers=2048"]


def test_thousand_asyncio_connections_echo_every_byte(engine):
    run = engine("engine.heartbeat_timeout_ms=5000")
    server = toad_exec(run, "python3", program("echo_server.py"), "127.0.0.1", "7420",
                       sets=QP)
    try:
        assert server.stdout.readline().strip() == "up", server.stderr.read()
        client = toad_exec(run, "python3", program("echo_client.py"), "127.0.0.1", "7420",
                           str(CONNECTIONS), "20000", sets=QP, measure=True)
        out, err = finished(client, timeout=300)
        report = last_json(out)
        assert report == {"connections": CONNECTIONS, "equal": CONNECTIONS,
                          "bytes_each": 20000}
        assert f"{CONNECTIONS} connections, {CONNECTIONS * 20000} bytes sent, " \
               f"{CONNECTIONS * 20000} received" in err
    finally:
        server.send_signal(signal.SIGINT)
        finished(server, timeout=60)
