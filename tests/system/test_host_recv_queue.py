"""The driver's compiled poll attaches RECV_DATA buffers to a registered connection's
row itself: the stream stays intact, the buffer count balances, and a closed socket's
row is no longer registered (its late buffers take the general path, back to the
engine)."""
from __future__ import annotations

import hashlib
import os
import socket

from host.sockets import OffloadNetwork
from tests.system.test_offload_sockets import drain, engine, serve_once  # noqa: F401


def test_poll_attaches_buffers_and_the_pool_balances(engine):  # noqa: F811
    run = engine("qp.recv_buffer_bytes=8192", "qp.recv_buffers=64", "qp.recv_small_buffers=0")
    total = 4 << 20
    with OffloadNetwork(run.config()) as net:
        listener = net.listen(7041)
        server = {}
        thread, box = serve_once(listener, lambda sock: (server.update(sock=sock),
                                                        drain(sock, 8192))[1])
        client = net.create_connection((net.listen_address, 7041), timeout=10)
        data = os.urandom(total)
        client.sendall(data)
        client.shutdown(socket.SHUT_WR)
        thread.join(60)
        assert box.get("result") == (total, hashlib.sha256(data).hexdigest()), box.get("error")
        assert server["sock"].closed
        rows = net.driver.conns["conn"]
        assert rows[server["sock"].row] != server["sock"].conn   # dropped at close
        assert rows[client.row] == client.conn
        assert net.driver.recv_attached >= total // 8192     # attached by poll itself
        net.flush_returns()
        assert net.rx_in_engine == 64                       # every buffer went back
        client.close()
        assert rows[client.row] != client.conn
        listener.close()
    run.stop()
