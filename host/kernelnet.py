"""The kernel baseline: Linux TCP through Python's socket module, in the same shape
as ``host.inhost.InhostNetwork`` and ``host.sockets.OffloadNetwork``.

The workloads (host/workloads.py) only see a "network" object with ``socket()``,
``create_connection()``, ``listen_address`` and ``close()``, so one workload code path
measures all three modes.
"""
from __future__ import annotations

import errno
import os
import selectors
import socket
import time

from toad.config import Config
from toad.errors import ToadError

OPEN_BATCH = 256          # open_connections: handshakes in flight at once


class KernelNetwork:
    """Linux sockets over 127.0.0.1 (loopback) or inside a namespace (tap peer)."""

    mode = "kernel"

    def __init__(self, config: Config, side: str = "a", address: str = "127.0.0.1"):
        self.config = config
        self.side = side
        self.listen_address = address
        self.connect_address = address

    def socket(self) -> socket.socket:
        return socket.socket(socket.AF_INET, socket.SOCK_STREAM)

    def listen(self, port: int, backlog: int = 128) -> socket.socket:
        """A listening socket on ``port``; a port in use is a clear ToadError."""
        sock = self.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.listen_address, port))
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                raise ToadError(f"workload.port: {port} is in use on {self.listen_address}; "
                                f"pick a free one with --set workload.port=N") from None
            raise ToadError(f"cannot bind {self.listen_address}:{port}: {exc.strerror}") from None
        sock.listen(backlog)
        return sock

    def create_connection(self, address: tuple[str, int], timeout: float | None = None):
        return socket.create_connection(address, timeout=timeout)

    def open_connections(self, address: tuple[str, int], count: int,
                         timeout: float) -> list[socket.socket]:
        """``count`` connections (workload.connections), up to OPEN_BATCH handshakes
        in flight at once (non-blocking connects, waited for with a selector); each
        returned with ``timeout`` set, as create_connection's."""
        socks: list[socket.socket] = []
        try:
            for first in range(0, count, OPEN_BATCH):
                batch = [socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                         for _ in range(min(OPEN_BATCH, count - first))]
                socks += batch
                with selectors.DefaultSelector() as selector:
                    for sock in batch:
                        sock.setblocking(False)
                        code = sock.connect_ex(address)
                        if code not in (0, errno.EINPROGRESS):
                            raise OSError(code, f"connect to {address}: {os.strerror(code)}")
                        selector.register(sock, selectors.EVENT_WRITE)
                    deadline = time.monotonic() + timeout
                    waiting = len(batch)
                    while waiting:
                        ready = selector.select(max(0.0, deadline - time.monotonic()))
                        if not ready:
                            raise TimeoutError(f"connect to {address}: timed out")
                        for key, _ in ready:
                            selector.unregister(key.fileobj)
                            waiting -= 1
                            code = key.fileobj.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                            if code:
                                raise OSError(code, f"connect to {address}: "
                                                    f"{os.strerror(code)}")
                for sock in batch:
                    sock.settimeout(timeout)
        except BaseException:
            for sock in socks:
                sock.close()
            raise
        return socks

    def close(self) -> None:
        """Nothing to release: the kernel owns the stack."""
