"""The connection table: a dict keyed by the 4-tuple (Python hashes the tuple), and
the ephemeral-port allocator.

Connections are either *active* (the Stack polls them for output and deadlines on
every round) or *waiting* in TIME-WAIT: those stay in the table, so a late segment
finds its TCB rather than a RST, but only a segment or their own timer can make them
do anything, so they sit in a deadline heap instead of being polled. A run that opens
many short connections (connect/request/response) keeps thousands of them without
slowing every poll down.
"""
from __future__ import annotations

import heapq
import itertools
import random

EPHEMERAL_FIRST = 49152          # IANA dynamic range (RFC 6335)
EPHEMERAL_LAST = 65535

Key = tuple[int, int, int, int]  # (local ip, local port, remote ip, remote port)


class ConnectionTable:
    def __init__(self, rng: random.Random):
        self.by_key: dict[Key, object] = {}
        self.active: dict = {}           # connection -> key, polled every round
        self.waiting: dict = {}          # connection -> its TIME-WAIT deadline
        self.heap: list = []             # (deadline, tie-break, connection); lazy
        self.order = itertools.count()
        self.next_port = rng.randrange(EPHEMERAL_FIRST, EPHEMERAL_LAST + 1)

    def __len__(self) -> int:
        return len(self.by_key)

    def get(self, key: Key):
        return self.by_key.get(key)

    def add(self, key: Key, conn) -> None:
        if key in self.by_key:
            raise ValueError(f"connection {key} exists")
        self.by_key[key] = conn
        self.active[conn] = key

    def remove(self, key: Key, conn) -> bool:
        if self.by_key.get(key) is conn:
            del self.by_key[key]
            self.active.pop(conn, None)
            self.waiting.pop(conn, None)
            return True
        return False

    def connections(self) -> list:
        return list(self.by_key.values())

    def polled(self) -> list:
        """The connections to poll this round (a copy: polling may free some)."""
        return list(self.active)

    def park(self, conn, deadline: float | None) -> None:
        """Move a TIME-WAIT connection out of the polled set until ``deadline``."""
        key = self.active.pop(conn, None)
        if key is None and conn not in self.waiting:
            return                                   # already freed
        if deadline is None:                         # no timer: keep polling it
            self.active[conn] = key if key is not None else self._key_of(conn)
            self.waiting.pop(conn, None)
            return
        if self.waiting.get(conn) != deadline:
            self.waiting[conn] = deadline
            heapq.heappush(self.heap, (deadline, next(self.order), conn))

    def unpark(self, conn, key: Key) -> None:
        """A waiting connection left TIME-WAIT (reopened): poll it again."""
        if self.waiting.pop(conn, None) is not None:
            self.active[conn] = key

    def is_waiting(self, conn) -> bool:
        return conn in self.waiting

    def due(self, now: float) -> list:
        """Waiting connections whose deadline has come (stale heap entries skipped)."""
        out = []
        heap = self.heap
        while heap and heap[0][0] <= now:
            deadline, _, conn = heapq.heappop(heap)
            if self.waiting.get(conn) == deadline:
                out.append(conn)
        return out

    def next_waiting_deadline(self) -> float | None:
        heap = self.heap
        while heap and self.waiting.get(heap[0][2]) != heap[0][0]:
            heapq.heappop(heap)                      # drop stale entries
        return heap[0][0] if heap else None

    def _key_of(self, conn) -> Key:
        for key, value in self.by_key.items():
            if value is conn:
                return key
        raise KeyError("connection not in the table")

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
