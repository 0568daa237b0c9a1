"""The TCP state machine as data (RFC 9293 3.3.2).

Every state change the connection makes is looked up in one of the tables below,
so the whole machine can be read (and drawn) from this file. ``OUT_FLAGS`` is
BSD's ``tcp_outflags``: the control flags a segment built in that state carries
(FIN only once all queued data has been sent).
"""
from __future__ import annotations

import enum

from .wire.tcp import ACK, FIN, RST, SYN


class State(enum.Enum):
    CLOSED = "CLOSED"
    LISTEN = "LISTEN"
    SYN_SENT = "SYN-SENT"
    SYN_RECEIVED = "SYN-RECEIVED"
    ESTABLISHED = "ESTABLISHED"
    FIN_WAIT_1 = "FIN-WAIT-1"
    FIN_WAIT_2 = "FIN-WAIT-2"
    CLOSE_WAIT = "CLOSE-WAIT"
    CLOSING = "CLOSING"
    LAST_ACK = "LAST-ACK"
    TIME_WAIT = "TIME-WAIT"

    # Members are singletons compared by identity: hash them by identity too, in C,
    # rather than by Enum's Python-level hash of the name (the tables below and the
    # state sets are looked up on every segment).
    __hash__ = object.__hash__


S = State

OUT_FLAGS = {
    S.CLOSED: RST | ACK, S.LISTEN: 0, S.SYN_SENT: SYN, S.SYN_RECEIVED: SYN | ACK,
    S.ESTABLISHED: ACK, S.CLOSE_WAIT: ACK, S.FIN_WAIT_1: FIN | ACK, S.CLOSING: FIN | ACK,
    S.LAST_ACK: FIN | ACK, S.FIN_WAIT_2: ACK, S.TIME_WAIT: ACK,
}

# States after the handshake (RFC 9293 "synchronized"), minus SYN-RECEIVED.
SYNCHRONIZED = frozenset({S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2, S.CLOSE_WAIT,
                          S.CLOSING, S.LAST_ACK, S.TIME_WAIT})
# States in which the application may still queue data.
CAN_QUEUE_DATA = frozenset({S.SYN_SENT, S.SYN_RECEIVED, S.ESTABLISHED, S.CLOSE_WAIT})
# States in which segment text is delivered (RFC 9293 3.10.7.4, seventh step).
CAN_RECEIVE_DATA = frozenset({S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2})
# States in which our FIN has been queued.
FIN_QUEUED = frozenset({S.FIN_WAIT_1, S.FIN_WAIT_2, S.CLOSING, S.LAST_ACK, S.TIME_WAIT})

# The user's shutdown/close (RFC 9293 3.10.4). Missing states: nothing to do.
ON_SHUTDOWN = {
    S.SYN_SENT: S.CLOSED, S.SYN_RECEIVED: S.FIN_WAIT_1, S.ESTABLISHED: S.FIN_WAIT_1,
    S.CLOSE_WAIT: S.LAST_ACK,
}

# The peer's FIN, in order (RFC 9293 3.10.7.4, eighth step). FIN-WAIT-1 goes to
# TIME-WAIT instead when our FIN is already acknowledged (see ON_FIN_ACKED first).
ON_FIN_RECEIVED = {
    S.SYN_RECEIVED: S.CLOSE_WAIT, S.ESTABLISHED: S.CLOSE_WAIT, S.FIN_WAIT_1: S.CLOSING,
    S.FIN_WAIT_2: S.TIME_WAIT, S.CLOSE_WAIT: S.CLOSE_WAIT, S.CLOSING: S.CLOSING,
    S.LAST_ACK: S.LAST_ACK, S.TIME_WAIT: S.TIME_WAIT,
}

# Our FIN acknowledged (fifth step).
ON_FIN_ACKED = {S.FIN_WAIT_1: S.FIN_WAIT_2, S.CLOSING: S.TIME_WAIT, S.LAST_ACK: S.CLOSED}

# An acceptable RST (fourth step / RFC 5961): the event to report and the errno.
# SYN-RECEIVED: "refused" for an active (simultaneous) open, silent for a passive one.
RESET_OUTCOME = {
    S.SYN_SENT: ("refused", "ECONNREFUSED"),
    S.SYN_RECEIVED: ("refused", "ECONNREFUSED"),
    S.ESTABLISHED: ("reset", "ECONNRESET"), S.FIN_WAIT_1: ("reset", "ECONNRESET"),
    S.FIN_WAIT_2: ("reset", "ECONNRESET"), S.CLOSE_WAIT: ("reset", "ECONNRESET"),
    S.CLOSING: (None, None), S.LAST_ACK: (None, None), S.TIME_WAIT: (None, None),
}

# States in which abort() sends an RST (RFC 9293 3.10.5).
ABORT_SENDS_RST = frozenset({S.SYN_RECEIVED, S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2,
                             S.CLOSE_WAIT})
