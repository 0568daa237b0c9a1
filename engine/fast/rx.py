"""The fast path's receive kernel: a burst of frames per call.

For each frame it repeats the Stack's own receive fast path (engine/tcp/stack.py
``receive_frame``: a plain IPv4 packet to our address and MAC, no IP options or
fragment, a TCP header with the timestamp option alone) and, for a connection whose
row the kernels own (``FAST``), BSD header prediction as engine/tcp/tcp_input.py
``fast_path`` and ``predicted_data`` do it, field for field: the in-order pure ACK of
new data (RTT sample, cwnd growth, window update, retransmission timer), and
in-order data that fits the window and the receive ring, copied to the ring's tail
with the delayed-ACK rule (an ACK owed every second full segment, else the timer).

Anything else is left to the Python stack: a frame of another shape, of an unknown
or Python-owned connection, or with a bad checksum gets verdict ``SLOW_FRAME`` and is
untouched; a frame of a ``FAST`` connection that prediction does not take hands the
connection back first (owner ``SLOW``, mark ``HANDBACK``), so that frame and every
later one of the burst go to Python with the state. After the burst Python reads
``touched`` (rows the burst changed, mark ``TOUCHED``): bytes placed and acknowledged
to report, rows handed back, ACKs owed (the row's ``ack_now``).
"""
from __future__ import annotations

import numpy as np
from numba import carray, types

from engine.fast.flows import _FLOWS, FAST, NONE, SLOW, find
from engine.tcp.checksum import sum_kernel
from toad.compiled import entry, helper, kernel, loaded
from toad.rings.atomics import byte_pointer, copy_bytes

TAKEN, SLOW_FRAME = 0, 1                  # verdicts
HANDBACK, TOUCHED, OUTPUT = 2, 4, 8       # marks
# why a row was handed back (its ``reason``)
R_SHAPE, R_OUTPUT, R_DATA = 1, 2, 5     # (R_DATA: data the row cannot place)

MASK, HALF = 0xFFFFFFFF, 0x80000000
GRANULARITY = 0.001
ETHERTYPE_IPV4 = 0x0800
FRAME_TS = 66                    # Ethernet + IPv4 + TCP with NOP NOP TS
IP_LEN_TS = 52
HP_MASK = 0x02 | 0x01 | 0x04 | 0x20 | 0x10          # SYN FIN RST URG ACK
ACK, PSH = 0x10, 0x08
# counters of the burst (added to the Stack's)
C_IP_RX, C_TCP_RX, C_LEFT = 0, 1, 2         # burst counters: frames taken, and left

_U8, _I8A, _I4A = types.uint8[::1], types.int64[::1], types.int32[::1]


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
    lets through: no reopening); a nonzero window stops the persist timer."""
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
        f.t_persist = np.inf


@helper
def ack_new_data(f, ack, tsecr, now):
    """tcp_input.ack_new_data outside recovery, on the row; returns the bytes acked."""
    advance = (ack - f.snd_una) & MASK
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
        f.cwnd = min(f.ssthresh, f.cwnd + data)
    else:
        f.ca_bytes += data
        if f.ca_bytes >= f.cwnd:
            f.ca_bytes -= f.cwnd
            f.cwnd += f.cc_mss
    if ack == f.snd_max:
        f.t_rexmit = np.inf
    else:
        f.t_rexmit = now + (rto(f) if f.backoff else f.base_rto)
    return data


@helper
def keep_timestamp(f, seq, tsval, now):
    if (f.last_ack_sent - seq) & MASK < HALF:
        f.ts_recent = tsval
        f.ts_recent_time = now


@helper
def predicted(f, frame, seq, ack, window, n, push, tsval, tsecr, now):
    """tcp_input.fast_path (and predicted_data) for a segment of ``n`` payload bytes at
    frame[FRAME_TS:]; False: not predicted (nothing changed)."""
    if seq != f.rcv_nxt or f.snd_nxt != f.snd_max:
        return False
    if f.ts_enabled and (tsval - f.ts_recent) & MASK >= HALF:
        return False
    window_moved = (window << f.snd_scale) != f.snd_wnd
    if window_moved and (window == 0 or f.snd_wnd == 0):
        return False
    advance = (ack - f.snd_una) & MASK
    flight = (f.snd_max - f.snd_una) & MASK
    if n == 0:
        if advance == 0 and window_moved:       # a pure window update
            keep_timestamp(f, seq, tsval, now)
            f.rx_hp_window += 1
            update_window(f, seq, ack, window)
            return True
        if advance == 0 or advance > flight:
            return False
        keep_timestamp(f, seq, tsval, now)
        f.rx_hp_ack += 1
        ack_new_data(f, ack, tsecr, now)
        if window_moved:
            update_window(f, seq, ack, window)
        return True
    # data: in the advertised window, and room for all of it in the ring
    if (f.rcv_adv - seq) & MASK < n or n > f.rx_cap - f.rx_size:
        return False
    if advance:
        if advance > flight:
            return False
        keep_timestamp(f, seq, tsval, now)
        f.rx_hp_data_ack += 1
        ack_new_data(f, ack, tsecr, now)
        update_window(f, seq, ack, window)
    else:
        keep_timestamp(f, seq, tsval, now)
        f.rx_hp_data += 1
        if window_moved:
            update_window(f, seq, ack, window)
    place(f, frame, FRAME_TS, n)
    f.rcv_nxt = (f.rcv_nxt + n) & MASK
    f.rx_pending += n
    f.delack_bytes += n
    if f.delack_bytes >= 2 * f.eff_mss or f.delayed_ack_s <= 0:
        f.ack_now = 1                      # every second full segment (RFC 1122 4.2.3.2)
    elif f.t_delack == np.inf:
        f.t_delack = now + f.delayed_ack_s
    return True


@helper
def place(f, frame, at, n):
    """Copy ``n`` payload bytes at frame[at:] to the tail of the receive ring."""
    ring = carray(byte_pointer(f.rx_addr), f.rx_cap)
    tail = f.rx_head + f.rx_size
    if tail >= f.rx_cap:
        tail -= f.rx_cap
    first = min(n, f.rx_cap - tail)
    copy_bytes(ring, tail, frame, at, first)
    if first < n:
        copy_bytes(ring, 0, frame, at + first, n - first)
    f.rx_size += n


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
    """Note ``row`` in ``touched`` (once per burst) with ``bit`` in its mark."""
    if not marks[row] & TOUCHED:
        touched[count] = row
        count += 1
    marks[row] |= bit | TOUCHED
    return count


@kernel(types.int64(_U8, types.int64, _I4A, _I4A, _U8, types.int64, types.int8[::1], _I4A,
                    _FLOWS, _I8A, types.int64, types.int64, types.float64, _I8A, _I8A, _I8A))
def receive(data, slot_bytes, frames, length, csum_ok, count, verdict, left, flows, slots,
            our_ip, our_mac, now, marks, touched, counters):
    """The frames in frame-pool slots ``frames[:count]`` (the pool's ``data``,
    ``slot_bytes``, ``length`` and ``csum_ok``: the NIC vouched for the frame's TCP
    checksum), read where they lie: the rows touched (returned: how many), the burst
    counters, and the slots left to Python in ``left[:counters[C_LEFT]]``, in order.
    ``our_mac`` is the 48-bit address as an integer."""
    n_touched = 0
    for i in range(count):
        verdict[i] = SLOW_FRAME
        slot = frames[i]
        if slot < 0 or slot >= length.shape[0]:
            continue
        at = slot * slot_bytes
        size = length[slot]
        if size < 54 or size > slot_bytes or at + size > data.shape[0]:
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
        if good_shape(frame, size, our_ip, our_mac, csum_ok[slot] or f.checksum_off):
            seq = be32(frame, 38)
            ack = be32(frame, 42)
            window = be16(frame, 48)
            total = be16(frame, 16)
            flags = frame[47]
            if (flags & HP_MASK == ACK and now < f.route_until
                    and predicted(f, frame, seq, ack, window, total - IP_LEN_TS,
                                  flags & PSH, be32(frame, 58), be32(frame, 62), now)):
                verdict[i] = TAKEN
                counters[C_IP_RX] += 1
                counters[C_TCP_RX] += 1
                f.rx_frames += 1
                f.last_rx = now
                n_touched = mark(marks, touched, n_touched, row, 0)
                # output due: data not sent yet goes out from the transmit kernel
                # (an in-host ring) or the Python stack's output; an ACK owed is the
                # transmit kernel's
                if f.send_held > ((f.snd_nxt - f.snd_una) & MASK):
                    if f.tx_cap:
                        n_touched = mark(marks, touched, n_touched, row, OUTPUT)
                    else:
                        f.owner = SLOW
                        f.reason = R_OUTPUT
                        n_touched = mark(marks, touched, n_touched, row, HANDBACK)
                continue
        f.owner = SLOW
        f.reason = R_DATA if f.rx_cap == 0 and size > FRAME_TS else R_SHAPE
        n_touched = mark(marks, touched, n_touched, row, HANDBACK)
    n_left = 0
    for i in range(count):
        if verdict[i] == SLOW_FRAME:
            left[n_left] = frames[i]
            n_left += 1
    counters[C_LEFT] = n_left
    return n_touched


receive_entry = entry(receive)

loaded(__name__)
