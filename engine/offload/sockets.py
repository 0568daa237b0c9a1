"""The engine's socket table: what each host connection id stands for.

A host's SOCKET request allocates a connection id in its QP (engine/qp.py); the id's
state is an :class:`EngineSocket` that becomes a listener (a stack Listener) or a
connection (a stack Connection with host-memory buffers, engine/offload/host_buffers.py).
The table also maps stack objects back to (QP, id), so the poller can turn stack events
into QP events.

Lifetime of an id: it lives until the host's CLOSE completes. CLOSE of a connection
is a graceful close (FIN after the queued data); its completion, and the release of
the id and its counter row, wait until every byte the host posted is acknowledged or
the connection is dead, so the host frees its send buffers from that completion and
a reused counter row never confuses two connections. CLOSE with ``value`` = 1 aborts
(RST), as SO_LINGER 0. When a QP detaches (its host exited or died) every connection
it owns is closed as Linux closes the sockets of a process that exits (the poller's
``orphan``: its send bytes copied out of host memory, delivered, then FIN; RST where
received data was left unread), its listeners closed and the table entries dropped.
"""
from __future__ import annotations

from dataclasses import dataclass

from .host_buffers import give_back

NEW, BOUND, LISTENING, CONNECTING, CONNECTED, DEAD = range(6)


@dataclass
class RecvPolicy:
    """When a partly filled anonymous buffer goes to the host (full always does)."""
    push: bool
    delay_s: float


class EngineSocket:
    """One host connection id as the engine sees it."""

    __slots__ = ("qp", "conn_id", "state", "bind_addr", "bind_port", "listener", "conn",
                 "send_buffer", "recv_buffer", "connect_cookie", "close_cookie",
                 "space_target", "policy", "nodelay", "checksum", "error")

    def __init__(self, qp, policy: RecvPolicy):
        self.qp = qp
        self.conn_id = 0
        self.state = NEW
        self.bind_addr = 0
        self.bind_port = 0
        self.listener = None            # stack Listener when LISTENING
        self.conn = None                # stack Connection when CONNECTING/CONNECTED
        self.send_buffer = None
        self.recv_buffer = None
        self.connect_cookie = None      # CONNECT answered when established / failed
        self.close_cookie = None        # CLOSE answered when all data is acked
        self.space_target = None        # SEND_SPACE: event once bytes_acked >= this
        self.policy = policy
        self.nodelay = None             # None: the engine's tcp.nagle; set by OPT_NODELAY
        self.checksum = None            # TcpConfig.checksum override (OPT_CHECKSUM), or None
        self.error = 0


class SocketTable:
    """Stack objects -> EngineSocket, across every QP; counts for leak checks."""

    def __init__(self):
        self.by_stack: dict = {}        # Connection | Listener -> EngineSocket
        self.lingering: set = set()     # sockets whose CLOSE waits for acks
        self.delayed: set = set()       # sockets with a delay-policy partial buffer

    def bind_stack(self, obj, sock: EngineSocket) -> None:
        self.by_stack[obj] = sock

    def unbind_stack(self, obj) -> None:
        self.by_stack.pop(obj, None)

    def sizes(self) -> dict:
        return {"stack_objects": len(self.by_stack), "lingering": len(self.lingering),
                "delayed": len(self.delayed)}


def release(qp, sock: EngineSocket, table: SocketTable) -> None:
    """Forget ``sock``: give back its anonymous buffers, free its id and row."""
    if sock.recv_buffer is not None:
        ids = sock.recv_buffer.detach()
        for buf_id in ids:   # buffers the host gave us and we never filled for it
            give_back(qp, sock.conn_id, buf_id)
    if sock.send_buffer is not None:
        sock.send_buffer.detach()
    table.lingering.discard(sock)
    table.delayed.discard(sock)
    if sock.listener is not None:
        table.unbind_stack(sock.listener)
    sock.state = DEAD
    qp.release_connection(sock.conn_id)
