"""SYN cookies (RFC 4987 section 3.6), as Linux makes them: a listener under a SYN
flood answers with a SYN-ACK that holds no state, and the ACK of it makes the
connection.

When a SYN finds the listener's backlog full of half-open connections (and its accept
queue not full), the Stack answers with a SYN-ACK whose sequence number is a cookie
(Linux's ``secure_tcp_syn_cookie``)::

    cookie = H(key, 0) + peer ISN + (minute << 24) + ((H(key, minute) + mss index) mod 2^24)

``H`` a keyed hash (BLAKE2b, the stack's secret) of the 4-tuple; ``minute`` the stack
time in minutes (mod 256). An ACK to the listener whose ``ack - 1`` decodes, for one of
the last two minutes, to an index of :data:`MSS_TABLE`, within two minutes of the
listener's last cookie, makes the connection (Linux's ``cookie_v4_check``); else the
ACK gets the RST it got before.

Options: with timestamps (the peer's SYN had them and ``tcp.timestamps``), the low 6
bits of the SYN-ACK's TSval carry the peer's window scale (4 bits, 15 = none) and
SACK-permitted (1 bit), and come back in the ACK's TSecr (Linux's
``cookie_init_timestamp``); the TSval is lowered to fit, never raised. Without
timestamps the SYN-ACK offers no window scale and no SACK (Linux clears them too).
Our own window scale is the one the connection takes from ``tcp.recv_buffer_bytes``.
The peer's MSS is rounded down to the table.

Counters (Linux's SyncookiesSent / Recv / Failed): ``tcp.syncookies_sent``,
``tcp.syncookies_recv`` (connections made), ``tcp.syncookies_failed`` (an ACK that
looked like one and did not decode).
"""
from __future__ import annotations

import hashlib

from .connection import Connection, choose_window_shift, ts_origin
from .seq import MASK
from .wire.tcp import ACK, SYN, TcpRepr

# Linux's IPv4 table (536, 1300, 1440, 1460), then jumbo frames and toad's 64 KB MTU
MSS_TABLE = (536, 1300, 1440, 1460, 4312, 8960, 16344, 65495)
COOKIE_BITS = 24
COOKIE_MASK = (1 << COOKIE_BITS) - 1
MINUTE_S = 60.0
MAX_AGE = 2                    # minutes a cookie stays good (MAX_SYNCOOKIE_AGE)
VALID_S = 120.0                # after the last cookie, ACKs are tried as cookies
TS_BITS = 6                    # low TSval bits that carry options
TS_MASK = (1 << TS_BITS) - 1
NO_WSCALE = 0xF
TS_SACK = 1 << 4


def _hash(secret: bytes, key, minute: int, which: int) -> int:
    local_ip, local_port, remote_ip, remote_port = key
    data = (local_ip.to_bytes(4, "big") + remote_ip.to_bytes(4, "big")
            + local_port.to_bytes(2, "big") + remote_port.to_bytes(2, "big")
            + minute.to_bytes(1, "big") + bytes([which]))
    return int.from_bytes(hashlib.blake2b(data, key=secret, digest_size=4).digest(), "big")


def make(secret: bytes, key, peer_isn: int, minute: int, index: int) -> int:
    """The cookie (our ISN) for a SYN with ``peer_isn`` in ``minute``, MSS ``index``."""
    minute &= 0xFF
    return (_hash(secret, key, 0, 0) + peer_isn + (minute << COOKIE_BITS)
            + ((_hash(secret, key, minute, 1) + index) & COOKIE_MASK)) & MASK


def check(secret: bytes, key, peer_isn: int, cookie: int, minute: int) -> int:
    """The MSS index ``cookie`` carries, or -1 when it is not one of ours, or older
    than MAX_AGE minutes."""
    value = (cookie - _hash(secret, key, 0, 0) - peer_isn) & MASK
    age = (minute - (value >> COOKIE_BITS)) & 0xFF
    if age >= MAX_AGE:
        return -1
    index = (value - _hash(secret, key, (minute - age) & 0xFF, 1)) & COOKIE_MASK
    return index if index < len(MSS_TABLE) else -1


def mss_index(peer_mss: int) -> int:
    """The largest table entry not above the peer's MSS (536 when it sent none)."""
    index = 0
    for i, mss in enumerate(MSS_TABLE):
        if mss <= peer_mss:
            index = i
    return index


def ts_options(wscale, sack: bool) -> int:
    return (NO_WSCALE if wscale is None else wscale) | (TS_SACK if sack else 0)


def cookie_tsval(clock: int, options: int) -> int:
    """A TSval no later than ``clock`` whose low bits are ``options``."""
    tsval = (clock & ~TS_MASK & MASK) | options
    if (tsval - clock) & MASK < 1 << 31 and tsval != clock:    # ahead of the clock
        tsval = (tsval - (1 << TS_BITS)) & MASK
    return tsval


def _secret(stack) -> bytes:
    return stack.secret.to_bytes(8, "big")


def _minute(now: float) -> int:
    return int(now // MINUTE_S) & 0xFF


def send_cookie(stack, listener, key, syn: TcpRepr, now: float) -> None:
    """Answer ``syn`` with a cookie SYN-ACK; keep nothing."""
    config = listener.config or stack.config
    local_ip, local_port, remote_ip, remote_port = key
    index = mss_index(syn.mss or 536)
    cookie = make(_secret(stack), key, syn.seq, _minute(now), index)
    window = min(config.recv_buffer_bytes, 0xFFFF)
    reply = TcpRepr(local_port, remote_port, cookie, (syn.seq + 1) & MASK, SYN | ACK, window,
                    mss=stack._mss_for(remote_ip))
    if config.timestamps and syn.timestamp is not None:
        wscale = syn.window_scale if config.window_scale else None
        if wscale is not None:
            reply.window_scale = choose_window_shift(config.recv_buffer_bytes)
        sack = bool(config.sack and syn.sack_permitted)
        reply.sack_permitted = sack
        clock = (int(now * 1000) + ts_origin(cookie)) & MASK
        reply.timestamp = (cookie_tsval(clock, ts_options(wscale, sack)), syn.timestamp[0])
    listener.cookies_at = now
    stack.counters["tcp.syncookies_sent"] += 1
    stack._emit(local_ip, remote_ip, [reply], now, 0, config.checksum)


def connection_from_ack(stack, listener, key, seg: TcpRepr, now: float):
    """The connection a cookie ACK makes (in SYN-RECEIVED, its SYN-ACK sent; the ACK
    itself still to be processed), or None when ``seg`` carries no valid cookie."""
    if seg.flags & (SYN | ACK) != ACK or listener.cookies_at is None \
            or now - listener.cookies_at >= VALID_S:
        return None
    config = listener.config or stack.config
    cookie, peer_isn = (seg.ack - 1) & MASK, (seg.seq - 1) & MASK
    index = check(_secret(stack), key, peer_isn, cookie, _minute(now))
    wscale, sack, timestamp = None, False, None
    if index >= 0 and config.timestamps and seg.timestamp is not None:
        options = seg.timestamp[1] & TS_MASK
        wscale = options & NO_WSCALE
        wscale = None if wscale == NO_WSCALE or not config.window_scale else wscale
        sack = bool(options & TS_SACK) and config.sack
        timestamp = (seg.timestamp[0], 0)
        if wscale is not None and wscale > 14:
            index = -1
    if index < 0:
        stack.counters["tcp.syncookies_failed"] += 1
        return None
    local_ip, local_port, remote_ip, remote_port = key
    syn = TcpRepr(remote_port, local_port, peer_isn, 0, SYN, 0, mss=MSS_TABLE[index],
                  window_scale=wscale, sack_permitted=sack, timestamp=timestamp)
    send_buffer = recv_buffer = None
    if listener.buffers is not None:
        send_buffer, recv_buffer = listener.buffers((remote_ip, remote_port))
    conn = Connection.from_syn(config, (local_ip, local_port), (remote_ip, remote_port), syn,
                               iss=cookie, now=now, send_buffer=send_buffer,
                               recv_buffer=recv_buffer, mss=stack._mss_for(remote_ip),
                               tso_max=stack._tso_for(remote_ip))
    conn.synack_sent_statelessly(min(config.recv_buffer_bytes, 0xFFFF),
                                 choose_window_shift(config.recv_buffer_bytes))
    stack.counters["tcp.syncookies_recv"] += 1
    return conn
