"""Scripted-exchange helpers for connection tests (in the style of smoltcp's tests).

A test builds a connection in a given state with one of the builders below
(``established()``, ``fin_wait_1()``, ...), then plays the peer: it makes
segments from ``SEG`` with ``seg(...)`` (``dataclasses.replace`` of a template),
feeds them with ``send(conn, seg, t)`` and checks what the connection emits with
``recv(conn, t)`` / ``recv_one`` / ``recv_nothing``. Time is injected: every call
takes ``t``. The default config switches the RFC 7323/2018 options and delayed
ACKs off so exchanges stay short; tests that need them pass ``config(...)``.
"""
from __future__ import annotations

import dataclasses

from engine.tcp.connection import Connection
from engine.tcp.states import State
from engine.tcp.wire.tcp import ACK, FIN, PSH, RST, SYN, TcpRepr
from toad.config.net import TcpConfig

LOCAL = (0x0A000001, 49152)
REMOTE = (0x0A000002, 80)
LOCAL_ISS = 0x1000_0000
REMOTE_ISS = 0x2000_0000
PEER_WINDOW = 64000
MSS = 1460

__all__ = ["ACK", "FIN", "PSH", "RST", "SYN", "State", "TcpRepr"]


def config(**overrides) -> TcpConfig:
    base = dict(timestamps=False, sack=False, window_scale=False, delayed_ack_ms=0.0,
                time_wait_s=10.0, rto_initial_ms=1000.0, rto_min_ms=200.0,
                send_buffer_bytes=64 * 1024, recv_buffer_bytes=64 * 1024)
    base.update(overrides)
    return TcpConfig(**base)


# The peer's segment template: from REMOTE to LOCAL.
SEG = TcpRepr(src_port=REMOTE[1], dst_port=LOCAL[1], seq=0, ack=0, flags=ACK, window=PEER_WINDOW)


def seg(**fields) -> TcpRepr:
    return dataclasses.replace(SEG, **fields)


def send(conn: Connection, segment: TcpRepr, t: float = 0.0) -> None:
    conn.on_segment(segment, t)


def recv(conn: Connection, t: float = 0.0) -> list[TcpRepr]:
    """Everything the connection sends now, payloads as bytes (easy to compare)."""
    out = conn.poll_transmit(t)
    for s in out:
        s.payload = bytes(s.payload)
    return out


def recv_one(conn: Connection, t: float = 0.0) -> TcpRepr:
    out = recv(conn, t)
    assert len(out) == 1, f"expected one segment, got {out}"
    return out[0]


def recv_nothing(conn: Connection, t: float = 0.0) -> None:
    out = recv(conn, t)
    assert out == [], f"expected no segment, got {out}"


def events(conn: Connection) -> list:
    """Drain the connection's events."""
    found = []
    while (event := conn.next_event()) is not None:
        found.append(event)
    return found


def event_names(conn: Connection) -> list[str]:
    return [type(e).__name__ for e in events(conn)]


# -- builders: a connection in each state, reached by real exchanges --------------------

def closed(cfg: TcpConfig | None = None, t: float = 0.0, **kw) -> Connection:
    return Connection(cfg or config(), LOCAL, REMOTE, LOCAL_ISS, t, mss=kw.pop("mss", MSS), **kw)


def syn_sent(cfg=None, t: float = 0.0, **kw) -> tuple[Connection, TcpRepr]:
    conn = closed(cfg, t, **kw)
    conn.open_active(t)
    syn = recv_one(conn, t)
    assert syn.flags == SYN
    return conn, syn


def syn_received(cfg=None, t: float = 0.0, syn_fields=None, **kw) -> Connection:
    """Passive open: a SYN arrived, our SYN-ACK has been sent."""
    syn = seg(seq=REMOTE_ISS, ack=0, flags=SYN, mss=MSS, **(syn_fields or {}))
    conn = Connection.from_syn(cfg or config(), LOCAL, REMOTE, syn, LOCAL_ISS, t,
                               mss=kw.pop("mss", MSS), **kw)
    synack = recv_one(conn, t)
    assert synack.flags == SYN | ACK and synack.ack == theirs()
    return conn


def established(cfg=None, t: float = 0.0, syn_fields=None, **kw) -> Connection:
    """Active open completed; nothing sent yet beyond the handshake."""
    conn, syn = syn_sent(cfg, t, **kw)
    send(conn, seg(seq=REMOTE_ISS, ack=mine(conn), flags=SYN | ACK, mss=MSS,
                   **(syn_fields or {})), t)
    ack = recv_one(conn, t)
    assert ack.flags == ACK and ack.seq == mine(conn) and ack.ack == theirs()
    assert conn.state is State.ESTABLISHED
    events(conn)
    return conn


def mine(conn: Connection, n: int = 0) -> int:
    """Our sequence number n data bytes after the handshake."""
    return (conn.iss + 1 + n) & 0xFFFFFFFF


def theirs(n: int = 0) -> int:
    return (REMOTE_ISS + 1 + n) & 0xFFFFFFFF      # REMOTE_ISS looked up at call time


def fin_wait_1(cfg=None, t: float = 0.0, **kw) -> Connection:
    conn = established(cfg, t, **kw)
    conn.close(t)
    fin = recv_one(conn, t)
    assert fin.flags == FIN | ACK and fin.seq == mine(conn)
    assert conn.state is State.FIN_WAIT_1
    return conn


def fin_wait_2(cfg=None, t: float = 0.0, **kw) -> Connection:
    conn = fin_wait_1(cfg, t, **kw)
    send(conn, seg(seq=theirs(), ack=mine(conn, 1)), t)
    assert conn.state is State.FIN_WAIT_2
    recv_nothing(conn, t)
    return conn


def closing(cfg=None, t: float = 0.0, **kw) -> Connection:
    conn = fin_wait_1(cfg, t, **kw)
    send(conn, seg(seq=theirs(), ack=mine(conn), flags=FIN | ACK), t)
    assert conn.state is State.CLOSING
    ack = recv_one(conn, t)
    assert ack.ack == theirs(1)
    return conn


def time_wait(cfg=None, t: float = 0.0, **kw) -> Connection:
    conn = fin_wait_2(cfg, t, **kw)
    send(conn, seg(seq=theirs(), ack=mine(conn, 1), flags=FIN | ACK), t)
    assert conn.state is State.TIME_WAIT
    ack = recv_one(conn, t)
    assert ack.ack == theirs(1)
    return conn


def close_wait(cfg=None, t: float = 0.0, **kw) -> Connection:
    conn = established(cfg, t, **kw)
    send(conn, seg(seq=theirs(), ack=mine(conn), flags=FIN | ACK), t)
    assert conn.state is State.CLOSE_WAIT
    ack = recv_one(conn, t)
    assert ack.ack == theirs(1)
    return conn


def last_ack(cfg=None, t: float = 0.0, **kw) -> Connection:
    conn = close_wait(cfg, t, **kw)
    conn.close(t)
    fin = recv_one(conn, t)
    assert fin.flags == FIN | ACK
    assert conn.state is State.LAST_ACK
    return conn
