"""A listening port: the backlog of half-open and ready connections.

The Stack creates a child connection for each acceptable SYN (``Connection.from_syn``)
and counts it against the backlog until ``accept()`` takes it: half-open children
(SYN-RECEIVED) plus established ones waiting in the accept queue. A SYN that finds the
backlog full is answered with a SYN cookie (engine/tcp/syncookies.py, with
``tcp.syn_cookies``), or dropped (the peer retransmits it); a SYN that finds the accept
queue itself full is dropped, as Linux does.
"""
from __future__ import annotations

from collections import deque
from typing import Callable


class Listener:
    def __init__(self, port: int, backlog: int, on_accept: Callable, buffers=None,
                 config=None):
        self.port = port
        self.backlog = backlog
        self.buffers = buffers          # None, or callable(remote) -> (send_buf, recv_buf)
        self.config = config            # TcpConfig of accepted connections (None: stack's)
        self.half_open: set = set()     # children still in SYN-RECEIVED
        self.ready: deque = deque()     # established children not yet accepted
        self.closed = False
        self.cookies_at = None          # stack time of the last SYN cookie sent
        self._on_accept = on_accept

    def full(self) -> bool:
        return len(self.half_open) + len(self.ready) >= self.backlog

    def accept_queue_full(self) -> bool:
        return len(self.ready) >= self.backlog

    def accept(self):
        """The next established connection, or None. Events it raised before being
        accepted are reported by the next ``stack.events()``."""
        if not self.ready:
            return None
        conn = self.ready.popleft()
        self._on_accept(conn)
        return conn

    def established(self, conn) -> bool:
        """A child finished its handshake; True if it is new in the accept queue."""
        if conn in self.half_open:
            self.half_open.discard(conn)
            self.ready.append(conn)
            return True
        return False

    def forget(self, conn) -> None:
        """A child died before being accepted."""
        self.half_open.discard(conn)
        try:
            self.ready.remove(conn)
        except ValueError:
            pass

    def __repr__(self) -> str:
        return (f"Listener(port={self.port}, half_open={len(self.half_open)}, "
                f"ready={len(self.ready)}, backlog={self.backlog})")
