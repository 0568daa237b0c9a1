"""Events a connection reports to the socket layer (``conn.next_event()``).

Small frozen dataclasses. Events without fields are singletons, so reporting them
allocates nothing. ``DataReceived`` and ``SendAcked`` are coalesced by the
connection: it counts bytes per segment and builds one event when drained.
"""
from __future__ import annotations

from dataclasses import dataclass


class TcpEvent:
    """Base class of every connection event."""
    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Established(TcpEvent):
    """The three-way handshake completed: data may flow."""


@dataclass(frozen=True, slots=True)
class DataReceived(TcpEvent):
    """n more in-order bytes were written to the receive buffer."""
    n: int


@dataclass(frozen=True, slots=True)
class PeerClosed(TcpEvent):
    """The peer's FIN arrived after all its data: end of the receive stream."""


@dataclass(frozen=True, slots=True)
class SendAcked(TcpEvent):
    """The peer has acknowledged ``total`` payload bytes since the start."""
    total: int


@dataclass(frozen=True, slots=True)
class Reset(TcpEvent):
    """An acceptable RST arrived on a synchronized connection (ECONNRESET)."""


@dataclass(frozen=True, slots=True)
class Refused(TcpEvent):
    """An RST answered our SYN (ECONNREFUSED)."""


@dataclass(frozen=True, slots=True)
class TimedOut(TcpEvent):
    """Retransmissions (or keepalive probes) went unanswered (ETIMEDOUT)."""


@dataclass(frozen=True, slots=True)
class Closed(TcpEvent):
    """The connection reached CLOSED: the TCB may be freed. Always the last event."""


ESTABLISHED = Established()
PEER_CLOSED = PeerClosed()
RESET = Reset()
REFUSED = Refused()
TIMED_OUT = TimedOut()
CLOSED = Closed()
