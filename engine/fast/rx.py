"""The fast path's receive kernel: a burst of frames per call.

For each frame it repeats the Stack's own receive fast path (engine/tcp/stack.py
``receive_frame``: a plain IPv4 packet to our address and MAC, no IP options or
fragment, a TCP header with the timestamp option alone) and, for a connection whose
row the kernels own (``FAST``), BSD header prediction as engine/tcp/tcp_input.py
``fast_path`` does it, field for field: here the in-order pure ACK of new data,
with the RTT sample, cwnd growth, window update and retransmission timer it implies.

Anything else is left to the Python stack: a frame of another shape, of an unknown
or Python-owned connection, or with a bad checksum gets verdict ``SLOW`` and is
untouched; a frame of a ``FAST`` connection that prediction does not take hands the
connection back first (owner ``SLOW``, mark ``HANDBACK``), so that frame and every
later one of the burst go to Python with the state. After the burst Python reads
``touched``: rows whose acknowledged bytes it must release (``ACKED``), rows handed
back, rows with output due (new data the window now lets out: the Python stack's
output sends it).
"""
from __future__ import annotations

import numpy as np
from numba import types

from engine.fast.flows import _FLOWS, FAST, NONE, SLOW, find
from engine.tcp.checksum import sum_kernel
from toad.compiled import entry, helper, kernel, loaded

TAKEN, SLOW_FRAME = 0, 1                  # verdicts
ACKED, HANDBACK = 1, 2                    # marks
# why a row was handed back (its ``reason``)
R_SHAPE, R_OUTPUT = 1, 2

MASK, HALF = 0xFFFFFFFF, 0x80000000
GRANULARITY = 0.001
ETHERTYPE_IPV4 = 0x0800
FRAME_TS = 66                    # Ethernet + IPv4 + TCP with NOP NOP TS
IP_LEN_TS = 52
HP_MASK = 0x02 | 0x01 | 0x04 | 0x20 | 0x10          # SYN FIN RST URG ACK
ACK = 0x10
# counters of the burst (added to the Stack's)
C_IP_RX, C_TCP_RX = 0, 1

_U8, _I8A = types.uint8[::1], types.int64[::1]


@helper
def be16(data, at):
    return (np.int64(data[at]) << 8) | np.int64(data[at + 1])


@helper
def be32(data, at):
    return ((np.int64(data[at]) << 24) | (np.int64(data[at + 1]) << 16)
            | (np.int64(data[at + 2]) << 8) | np.int64(data[at + 3]))


@helper
def fold(total):
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return (total & 0xFFFF) + (total >> 16)


@helper
def rtt_sample(f, rtt):
    """RttEstimator.sample (engine/tcp/rtt.py), on the row."""
    if rtt < 0:
        rtt = 0.0
    if np.isnan(f.srtt):
        srtt = rtt
        rttvar = rtt / 2
    else:
        error = f.srtt - rtt
        rttvar = 0.75 * f.rttvar + 0.25 * (error if error >= 0 else -error)
        srtt = 0.875 * f.srtt + 0.125 * rtt
    f.srtt = srtt
    f.rttvar = rttvar
    variation = 4 * rttvar
    rto = srtt + (max(GRANULARITY, variation))
    rto = max(rto, f.rto_min)
    f.base_rto = min(f.rto_max, rto)
    f.backoff = 0


@helper
def rto(f):
    if not f.backoff:
        return f.base_rto
    value = f.base_rto * (1 << f.backoff)
    return min(f.rto_max, value)


@helper
def update_window(f, seq, ack, window):
    """tcp_input.update_window for a nonzero window on an open one (what prediction
    lets through: no reopening, no persist timer to stop)."""
    wl1 = f.snd_wl1
    if (wl1 != seq and (seq - wl1) & MASK < HALF) or (
            wl1 == seq and (ack - f.snd_wl2) & MASK < HALF):
        wnd = window << f.snd_scale
        if wnd != f.snd_wnd:
            f.rx_window_update += 1
        f.snd_wnd = wnd
        f.snd_wl1 = seq
        f.snd_wl2 = ack
        f.max_snd_wnd = max(f.max_snd_wnd, wnd)


@helper
def predicted_ack(f, seq, ack, window, tsval, tsecr, now):
    """tcp_input.fast_path for a segment without payload; False: not predicted."""
    if seq != f.rcv_nxt or f.snd_nxt != f.snd_max:
        return False
    if f.ts_enabled and (tsval - f.ts_recent) & MASK >= HALF:
        return False
    window_moved = (window << f.snd_scale) != f.snd_wnd
    if window_moved and (window == 0 or f.snd_wnd == 0):
        return False
    advance = (ack - f.snd_una) & MASK
    if advance == 0 or advance > ((f.snd_max - f.snd_una) & MASK):
        return False
    if (f.last_ack_sent - seq) & MASK < HALF:
        f.ts_recent = tsval
        f.ts_recent_time = now
    f.rx_hp_ack += 1
    # ack_new_data, the part a predicted ACK reaches
    data = min(f.send_held, advance)
    if data > 0:
        f.send_held -= data
        f.acked += data
    f.snd_una = ack
    if f.snd_nxt != ack and (ack - f.snd_nxt) & MASK < HALF:
        f.snd_nxt = ack
    if f.ts_enabled:
        if tsecr:
            ticks = ((np.int64(now * 1000) + f.ts_offset) - tsecr) & MASK
            if ticks < 0x7FFFFFFF:
                rtt_sample(f, ticks / 1000)
    elif f.rtt_seq != NONE and (ack - f.rtt_seq) & MASK < HALF and ack != f.rtt_seq:
        rtt_sample(f, now - f.rtt_time)
        f.rtt_seq = NONE
    # Reno / NewReno on_ack outside recovery
    if f.cwnd < f.ssthresh:
        cwnd = f.cwnd + data
        f.cwnd = min(f.ssthresh, cwnd)
    else:
        f.ca_bytes += data
        if f.ca_bytes >= f.cwnd:
            f.ca_bytes -= f.cwnd
            f.cwnd += f.cc_mss
    if ack == f.snd_max:
        f.t_rexmit = np.inf
    else:
        f.t_rexmit = now + (rto(f) if f.backoff else f.base_rto)
    if window_moved:
        update_window(f, seq, ack, window)
    return True


@helper
def good_shape(frame, size, our_ip, our_mac, trusted):
    """The Stack's receive fast path's test (stack.py receive_frame): plain IPv4 to
    our address and MAC, no fragment, a TCP header with NOP NOP TS alone, a good
    IPv4 header checksum, and a good TCP checksum unless ``trusted``."""
    if size < FRAME_TS or frame[14] != 0x45:
        return False
    if (((be16(frame, 0) << 32) | be32(frame, 2)) != our_mac
            or be32(frame, 30) != our_ip or be16(frame, 20) & 0x3FFF):
        return False
    if (frame[46] >> 4 != 8 or frame[54] != 1 or frame[55] != 1 or frame[56] != 8
            or frame[57] != 10):
        return False
    total = be16(frame, 16)
    if total < IP_LEN_TS or total > size - 14:
        return False
    words = 0
    for k in range(14, 34, 2):
        words += be16(frame, k)
    if fold(words) != 0xFFFF:
        return False
    if trusted:
        return True
    src = be32(frame, 26)
    pseudo = (src >> 16) + (src & 0xFFFF) + (our_ip >> 16) + (our_ip & 0xFFFF) + 6 + total - 20
    return fold(np.int64(sum_kernel(frame[34:14 + total])) + pseudo) == 0xFFFF


@helper
def mark(marks, touched, count, row, bit):
    if marks[row] == 0:
        touched[count] = row
        count += 1
    marks[row] |= bit
    return count


@kernel(types.int64(_U8, _I8A, _I8A, _U8, types.int64, types.int8[::1], _FLOWS, _I8A,
                    types.int64, types.int64, types.float64, _I8A, _I8A, _I8A))
def receive(data, starts, lengths, csum_ok, count, verdict, flows, slots, our_ip, our_mac,
            now, marks, touched, counters):
    """Frames ``data[starts[i]:starts[i]+lengths[i]]`` for i < ``count``: verdicts,
    rows touched (returned: how many), burst counters. ``our_mac`` is the 48-bit
    address as an integer; ``csum_ok[i]`` says the NIC vouched for frame i's TCP
    checksum."""
    n_touched = 0
    for i in range(count):
        verdict[i] = SLOW_FRAME
        at = starts[i]
        size = lengths[i]
        if at < 0 or size < 54 or at + size > data.shape[0]:
            continue
        frame = data[at:at + size]
        # whose frame is it? (any IPv4 TCP frame with its ports inside the frame)
        if be16(frame, 12) != ETHERTYPE_IPV4 or frame[14] >> 4 != 4 or frame[23] != 6:
            continue
        tcp_at = 14 + (frame[14] & 15) * 4
        if tcp_at < 34 or size < tcp_at + 20:
            continue
        src = be32(frame, 26)
        dst = be32(frame, 30)
        sport = be16(frame, tcp_at)
        dport = be16(frame, tcp_at + 2)
        row = find(flows, slots, dst, dport, src, sport)
        if row < 0 or flows[row].owner != FAST:
            continue
        # A frame of a fast connection: taken here, or the connection goes back to
        # Python with it (and with every later frame of the burst).
        f = flows[row]
        if good_shape(frame, size, our_ip, our_mac, csum_ok[i] or f.checksum_off):
            seq = be32(frame, 38)
            ack = be32(frame, 42)
            window = be16(frame, 48)
            total = be16(frame, 16)
            held = f.acked
            if (frame[47] & HP_MASK == ACK and total == IP_LEN_TS
                    and predicted_ack(f, seq, ack, window, be32(frame, 58), be32(frame, 62),
                                      now)):
                verdict[i] = TAKEN
                counters[C_IP_RX] += 1
                counters[C_TCP_RX] += 1
                f.rx_frames += 1
                f.last_rx = now
                if f.acked != held:
                    n_touched = mark(marks, touched, n_touched, row, ACKED)
                # output due: the ACK let new data out (the Python stack's output sends it)
                if f.send_held > ((f.snd_nxt - f.snd_una) & MASK):
                    f.owner = SLOW
                    f.reason = R_OUTPUT
                    n_touched = mark(marks, touched, n_touched, row, HANDBACK)
                continue
        f.owner = SLOW
        f.reason = R_SHAPE
        n_touched = mark(marks, touched, n_touched, row, HANDBACK)
    return n_touched


receive_entry = entry(receive)

loaded(__name__)
