"""The connection table: a dict keyed by the 4-tuple (Python hashes the tuple), and
the ephemeral-port allocator. TIME-WAIT connections stay in the table until their
timer closes them, so a late segment for them finds its TCB, not a RST."""
from __future__ import annotations

import random

EPHEMERAL_FIRST = 49152          # IANA dynamic range (RFC 6335)
EPHEMERAL_LAST = 65535

Key = tuple[int, int, int, int]  # (local ip, local port, remote ip, remote port)


class ConnectionTable:
    def __init__(self, rng: random.Random):
        self.by_key: dict[Key, object] = {}
        self.next_port = rng.randrange(EPHEMERAL_FIRST, EPHEMERAL_LAST + 1)

    def __len__(self) -> int:
        return len(self.by_key)

    def get(self, key: Key):
        return self.by_key.get(key)

    def add(self, key: Key, conn) -> None:
        if key in self.by_key:
            raise ValueError(f"connection {key} exists")
        self.by_key[key] = conn

    def remove(self, key: Key, conn) -> bool:
        if self.by_key.get(key) is conn:
            del self.by_key[key]
            return True
        return False

    def connections(self) -> list:
        return list(self.by_key.values())

    def ephemeral_port(self, local_ip: int, remote_ip: int, remote_port: int,
                       taken: set | dict) -> int:
        """A local port unused towards this remote and not a listening port."""
        span = EPHEMERAL_LAST - EPHEMERAL_FIRST + 1
        for _ in range(span):
            port = self.next_port
            self.next_port = EPHEMERAL_FIRST + (port - EPHEMERAL_FIRST + 1) % span
            if port not in taken and (local_ip, port, remote_ip, remote_port) not in self.by_key:
                return port
        raise OSError(98, f"no free ephemeral port towards port {remote_port}")
