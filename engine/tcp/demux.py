"""The connection table: a dict keyed by the 4-tuple (Python hashes the tuple), and
the ephemeral-port allocator.

Connections are either *active* (the Stack polls them for output and deadlines on
every round) or *waiting* in TIME-WAIT: those stay in the table, so a late segment
finds its TCB rather than a RST, but only a segment or their own timer can make them
do anything, so they sit in a deadline heap instead of being polled. A run that opens
many short connections (connect/request/response) keeps thousands of them without
slowing every poll down.

The active connections' timers sit in a second heap (:meth:`ConnectionTable.arm`), so
finding the next deadline or the connections due costs the connections that changed,
not all of them: with 10,000 connections open, a walk over every one on each engine
pass made each new connection slower than the one before.
"""
from __future__ import annotations

import heapq
import itertools
import random

EPHEMERAL_FIRST = 49152          # IANA dynamic range (RFC 6335)
EPHEMERAL_LAST = 65535

Key = tuple[int, int, int, int]  # (local ip, local port, remote ip, remote port)


class ActiveSet(dict):
    """connection -> key of the active connections, remembering the order they joined
    in (``rank``), so a few of them can be put in table order without a walk over all;
    ``joined(conn)`` runs when a connection joins (its timers may be armed)."""

    __slots__ = ("rank", "order", "joined")

    def __init__(self, joined=None):
        super().__init__()
        self.rank: dict = {}
        self.order = itertools.count()
        self.joined = joined

    def __setitem__(self, conn, key) -> None:
        if conn not in self:
            self.rank[conn] = next(self.order)
            if self.joined is not None:
                self.joined(conn)
        dict.__setitem__(self, conn, key)

    def in_order(self, conns) -> list:
        """Those of ``conns`` that are active, in the order they joined."""
        rank = self.rank
        return sorted([conn for conn in conns if conn in self], key=rank.__getitem__)


class ConnectionTable:
    def __init__(self, rng: random.Random, joined=None):
        self.by_key: dict[Key, object] = {}
        self.active = ActiveSet(joined)  # connection -> key, polled every round
        self.waiting: dict = {}          # connection -> its TIME-WAIT deadline
        self.heap: list = []             # (deadline, tie-break, connection); lazy
        self.order = itertools.count()
        # active connections' timers: the earliest deadline each is known to have
        # (``armed``: connection -> (deadline, entry number)) and a lazy heap of
        # (deadline, entry number); ``timer_of`` maps the number of each valid entry
        # to its connection (a stale entry names nobody, so it keeps no freed
        # connection alive)
        self.armed: dict = {}
        self.timer_of: dict = {}
        self.timers: list = []
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
            self.active.rank.pop(conn, None)
            self.waiting.pop(conn, None)
            self.disarm(conn)
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

    def arm(self, conn, deadline: float | None) -> None:
        """An active connection's next deadline is ``deadline`` (None: no timer). Only
        a deadline earlier than the one armed is pushed: a later one is found when the
        armed entry comes due and the connection is asked again (due_timers' caller
        re-arms it), so a timer pushed back on every ACK costs no heap entry."""
        if deadline is None:
            return
        armed = self.armed.get(conn)
        if armed is not None:
            if deadline >= armed[0]:
                return
            del self.timer_of[armed[1]]
        number = next(self.order)
        self.armed[conn] = (deadline, number)
        self.timer_of[number] = conn
        heapq.heappush(self.timers, (deadline, number))
        if len(self.timers) > 2 * len(self.timer_of) + 1024:
            self._compact_timers()

    def disarm(self, conn) -> None:
        armed = self.armed.pop(conn, None)
        if armed is not None:
            del self.timer_of[armed[1]]

    def _compact_timers(self) -> None:
        valid = self.timer_of
        self.timers[:] = [entry for entry in self.timers if entry[1] in valid]
        heapq.heapify(self.timers)                   # (in place: callers hold the list)

    def due_timers(self, now: float) -> list:
        """Active connections whose armed deadline has come, disarmed (the caller
        asks each for its real deadline, runs its timer if due and arms it again)."""
        out = []
        heap, valid, armed = self.timers, self.timer_of, self.armed
        while heap and heap[0][0] <= now:
            conn = valid.pop(heapq.heappop(heap)[1], None)
            if conn is not None:
                del armed[conn]
                out.append(conn)
        return out

    def next_timer(self, deadline_of) -> float | None:
        """The earliest deadline of the active connections: the armed ones, each at
        the top asked again (``deadline_of(conn)``) until one holds, so a deadline
        that moved later since it was armed is not reported."""
        heap, valid, active = self.timers, self.timer_of, self.active
        while heap:
            deadline, number = heap[0]
            conn = valid.get(number)
            if conn is None:
                heapq.heappop(heap)                  # stale
                continue
            now_due = deadline_of(conn) if conn in active else None
            if now_due == deadline:
                return deadline
            heapq.heappop(heap)
            self.disarm(conn)
            if now_due is not None:
                self.arm(conn, now_due)
        return None

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
