"""The fast path's transmit kernel: the pure ACKs (and window updates) that fast
connections owe, built as tcp_output.output and engine/tcp/framing.py build them,
byte for byte: the same ACK number and window (receiver SWS avoidance), the same
timestamps, IPv4 identification (the Stack's counter, shared), and checksum mode.

Frames are laid end to end in ``out``; ``lengths[k]`` and ``partial[k]`` (the
TCP checksum left to the NIC: csum_start 34, csum_offset 16) describe frame k.
"""
from __future__ import annotations

import numpy as np
from numba import types

from engine.fast.flows import _FLOWS, CSUM_NONE, CSUM_PARTIAL, FAST, SLOW
from toad.compiled import entry, helper, kernel, loaded

MASK, HALF = 0xFFFFFFFF, 0x80000000
TCP_AT, CHECKSUM_AT = 34, 16         # a partial checksum: from TCP_AT, at TCP_AT + 16
ACK_FRAME = 66                       # Ethernet + IPv4 + TCP with NOP NOP TS, no payload
IP_CONSTANT = 0x4500 + 0x4000 + ((64 << 8) | 6)     # version/IHL, DF, TTL 64 / TCP
R_ROUTE = 3                          # handed back: the route (ARP entry) needs Python

_I8A = types.int64[::1]


@helper
def put16(out, at, value):
    out[at] = (value >> 8) & 0xFF
    out[at + 1] = value & 0xFF


@helper
def put32(out, at, value):
    out[at] = (value >> 24) & 0xFF
    out[at + 1] = (value >> 16) & 0xFF
    out[at + 2] = (value >> 8) & 0xFF
    out[at + 3] = value & 0xFF


@helper
def put48(out, at, value):
    put16(out, at, value >> 32)
    put32(out, at + 2, value & MASK)


@helper
def fold(total):
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return (total & 0xFFFF) + (total >> 16)


@helper
def seq_diff(a, b):
    d = (a - b) & MASK
    return d - (1 << 32) if d >= HALF else d


@helper
def free_space(f):
    return f.rx_cap - f.rx_size


@helper
def window_opens(f):
    """tcp_output.window_opens on the row."""
    cur = max(seq_diff(f.rcv_adv, f.rcv_nxt), 0)
    return free_space(f) - cur >= min(f.rcv_cap >> 1, f.eff_mss)


@helper
def advertise(f):
    """tcp_output.advertise on the row: the window field, RCV.ADV moved."""
    free = free_space(f)
    cur = (f.rcv_adv - f.rcv_nxt) & MASK
    if cur >= HALF:
        cur = 0
    threshold = min(f.rcv_cap >> 1, f.eff_mss)
    win = free if free - cur >= threshold else cur
    field = min(win >> f.rcv_scale, 0xFFFF)
    right = (f.rcv_nxt + (field << f.rcv_scale)) & MASK
    if right != f.rcv_adv and (right - f.rcv_adv) & MASK < HALF:
        f.rcv_adv = right
    return field


@helper
def ack_seq(f):
    """tcp_output.ack_seq: SND.MAX unless it lies beyond the peer's window."""
    right = (f.snd_una + f.snd_wnd) & MASK
    if f.snd_max == right or (right - f.snd_max) & MASK < HALF:
        return f.snd_max
    return right


@helper
def build_ack(f, out, at, ident, now):
    """One pure ACK of row ``f`` at out[at:at+66] (tcp_output.build + framing)."""
    put48(out, at, f.eth_dst)
    put48(out, at + 6, f.eth_src)
    put16(out, at + 12, 0x0800)
    total = ACK_FRAME - 14
    src, dst = f.local_ip, f.remote_ip
    addresses = (src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF)
    out[at + 14] = 0x45
    out[at + 15] = 0
    put16(out, at + 16, total)
    put16(out, at + 18, ident)
    put16(out, at + 20, 0x4000)
    out[at + 22] = 64
    out[at + 23] = 6
    put16(out, at + 24, ~fold(IP_CONSTANT + addresses + total + ident) & 0xFFFF)
    put32(out, at + 26, src)
    put32(out, at + 30, dst)
    t = at + 34
    put16(out, t, f.local_port)
    put16(out, t + 2, f.remote_port)
    put32(out, t + 4, ack_seq(f))
    put32(out, t + 8, f.rcv_nxt)
    out[t + 12] = 32 << 2
    out[t + 13] = 0x10
    put16(out, t + 14, advertise(f))
    put16(out, t + 16, 0)
    put16(out, t + 18, 0)
    put32(out, t + 20, 0x0101080A)
    put32(out, t + 24, (np.int64(now * 1000) + f.ts_offset) & MASK)
    put32(out, t + 28, f.ts_recent)
    pseudo = addresses + 6 + 32
    if f.csum_mode == CSUM_PARTIAL:
        put16(out, t + 16, fold(pseudo))
    elif f.csum_mode != CSUM_NONE:
        words = pseudo
        for k in range(0, 32, 2):
            words += (np.int64(out[t + k]) << 8) | np.int64(out[t + k + 1])
        put16(out, t + 16, ~fold(words) & 0xFFFF)
    f.last_ack_sent = f.rcv_nxt
    f.ack_now = 0
    f.delack_bytes = 0
    f.t_delack = np.inf


@kernel(types.int64(_FLOWS, _I8A, types.int64, types.float64, _I8A, types.uint8[::1], _I8A,
                    _I8A, _I8A))
def acks(flows, rows, count, now, ident, out, lengths, partial, handed):
    """The ACK each row of ``rows[:count]`` owes (tcp_output.output's last step),
    into ``out``; returns the frames built. A row whose route must be looked up
    again is handed back (owner SLOW) into ``handed`` (-1 ends the list)."""
    frames = 0
    n_handed = 0
    for k in range(count):
        row = rows[k]
        f = flows[row]
        if f.owner != FAST or not f.ack_now:
            continue
        if now >= f.route_until:
            f.owner = SLOW
            f.reason = R_ROUTE
            handed[n_handed] = row
            n_handed += 1
            continue
        if f.window_update_only and f.rcv_nxt == f.last_ack_sent and not window_opens(f):
            # the reader freed room, but what arrived since took it again
            f.ack_now = 0
            f.window_update_only = 0
            f.tx_window_update_dropped += 1
            continue
        at = frames * ACK_FRAME
        if at + ACK_FRAME > out.shape[0]:
            break
        ident[0] = (ident[0] + 1) & 0xFFFF
        build_ack(f, out, at, ident[0], now)
        f.tx_pure_ack += 1
        f.window_update_only = 0
        lengths[frames] = ACK_FRAME
        partial[frames] = f.csum_mode == CSUM_PARTIAL
        frames += 1
    handed[n_handed] = -1
    return frames


@kernel(types.int64(_FLOWS, types.int64))
def read_done(flows, row):
    """Connection.notify_read on a fast row: 1 when a window update is now owed."""
    f = flows[row]
    if not window_opens(f):
        return 0
    if not f.ack_now:
        f.window_update_only = 1
    f.ack_now = 1
    f.tx_window_update_requested += 1
    return 1


acks_entry, read_done_entry = entry(acks), entry(read_done)

loaded(__name__)
