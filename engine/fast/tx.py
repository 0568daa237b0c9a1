"""The fast path's transmit kernel: what fast connections owe the wire, as
tcp_output.output and engine/tcp/framing.py build it for an ordinary connection,
byte for byte: new data from an in-host send ring or an offload connection's host
ranges (a DMA read of each piece, bounds-checked) (segments of the MSS or TSO
super-frames, Nagle and sender SWS avoidance, PSH on a burst's last segment, the
retransmission timer, the persist timer when the window holds everything back),
else the pure ACK or window update owed (receiver SWS avoidance, the update dropped
when it would repeat the last ACK). Timestamps, the IPv4 identification (the
Stack's counter, shared) and the checksum mode are framing.py's.

Each frame goes into a slot of the Stack's frame pool (engine/frames.py), allocated
here and handed to the caller in ``slots[k]`` with the pool's ``length``,
``csum_start``/``csum_offset`` (34/16 when the TCP checksum is left to the NIC, else
0) and ``gso_size`` (> 0: a TSO super-frame) set. When ``slots`` is full the call
stops and is continued: ``state[NEXT]`` says where the next call goes on, in the
middle of a row's burst if need be (the same frames as one burst). When the pool has
no free slot (counted by the pool) the call stops with ``state[DRY]`` set; the rows
from ``state[NEXT]`` on are still owed.
"""
from __future__ import annotations

import numpy as np
from numba import carray, types

from engine.fast.flows import _FLOWS, CSUM_NONE, CSUM_PARTIAL, FAST, SLOW
from engine.fast.rx import fold, rto
from engine.frames import alloc, release
from engine.tcp.checksum import sum_kernel
from toad.compiled import entry, helper, kernel, loaded
from toad.rings.atomics import byte_pointer, copy_bytes

MASK, HALF = 0xFFFFFFFF, 0x80000000
TCP_AT, CHECKSUM_AT = 34, 16         # a partial checksum: from TCP_AT, at TCP_AT + 16
ACK_FRAME = 66                       # Ethernet + IPv4 + TCP with NOP NOP TS, no payload
IP_CONSTANT = 0x4500 + 0x4000 + ((64 << 8) | 6)     # version/IHL, DF, TTL 64 / TCP
ACK, PSH = 0x10, 0x08
R_ROUTE = 3                          # handed back: the route (ARP entry) needs Python
R_RANGE = 4                          # handed back: a host range outside its segment
# state[] words
NEXT, HANDED, DRY = 0, 1, 2

_I8A = types.int64[::1]
_I4A = types.int32[::1]
_U1A = types.uint8[::1]
# the frame pool's arrays, in this order: data, slot_bytes, free, state, held, length,
# csum_start, csum_offset, gso_size
_POOL = (_U1A, types.int64, _I4A, _I8A, _U1A, _I4A, _I4A, _I4A, _I4A)


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
def headers(f, out, at, ident, seq, flags, window, n, now):
    """Ethernet, IPv4 and TCP (NOP NOP TS) headers of a segment of ``n`` payload
    bytes at out[at:at+66]; the TCP checksum field left 0."""
    put48(out, at, f.eth_dst)
    put48(out, at + 6, f.eth_src)
    put16(out, at + 12, 0x0800)
    total = ACK_FRAME - 14 + n
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
    put32(out, t + 4, seq)
    put32(out, t + 8, f.rcv_nxt)
    out[t + 12] = 32 << 2
    out[t + 13] = flags
    put16(out, t + 14, window)
    put16(out, t + 16, 0)
    put16(out, t + 18, 0)
    put32(out, t + 20, 0x0101080A)
    put32(out, t + 24, (np.int64(now * 1000) + f.ts_offset) & MASK)
    put32(out, t + 28, f.ts_recent)
    return addresses


@helper
def checksum(f, out, at, n, addresses, gso):
    """The TCP checksum field of the frame at ``at``: framing.py's rule (partial for
    the NIC in offloaded mode and for super-frames, none when off, else summed).
    Returns whether it is partial."""
    if f.csum_mode == CSUM_NONE:
        return False
    pseudo = addresses + 6 + 32 + n
    t = at + 34
    if f.csum_mode == CSUM_PARTIAL or gso:
        put16(out, t + 16, fold(pseudo))
        return True
    total = np.int64(sum_kernel(out[t:t + 32 + n])) + pseudo
    put16(out, t + 16, ~fold(total) & 0xFFFF)
    return False


@helper
def sent_ack(f):
    """What build() and burst_sent() do to the ACK state: the ACK went out."""
    f.last_ack_sent = f.rcv_nxt
    f.ack_now = 0
    f.delack_bytes = 0
    f.t_delack = np.inf


@helper
def frame_done(slot, size, partial, gso, length, csum_start, csum_offset, gso_size):
    """The pool's fields of a transmitted frame."""
    length[slot] = size
    csum_start[slot] = TCP_AT if partial else 0
    csum_offset[slot] = CHECKSUM_AT if partial else 0
    gso_size[slot] = gso


@helper
def gather(f, ranges, memory, out, at, off, n):
    """HostSendBuffer.peek into the frame: ``n`` stream bytes from ``off`` past the
    first unacknowledged, read from the host's ranges (one DMA read each piece, each
    checked against the segment: the IOMMU). False: a range outside it."""
    skip = off + f.acked
    done = 0
    for k in range(f.tx_nranges):
        start = ranges[k, 0]
        size = ranges[k, 1]
        if skip >= size:
            skip -= size
            continue
        take = min(size - skip, n - done)
        begin = start + skip
        if begin < 0 or begin + take > f.tx_cap:
            return False
        copy_bytes(out, at + done, memory, begin, take)
        f.dma_reads += 1
        f.dma_read_bytes += take
        done += take
        skip = 0
        if done == n:
            return True
    return False


@helper
def send_data(f, ranges, k, ident, now, data, slot_bytes, free, pstate, held, length,
              csum_start, csum_offset, gso_size, slots, state):
    """tcp_output.send_data for an ordinary connection (no SACK, no FIN, no
    recovery): segments from SND.NXT up to min(cwnd, window), each in a pool slot;
    returns (frames, whether it stopped for room: ``slots`` full or the pool dry, the
    burst going on in the next call, as if one)."""
    off = (f.snd_nxt - f.snd_una) & MASK
    avail = f.send_held - off
    if avail <= 0:
        return k, False
    limit = min(f.cwnd, f.snd_wnd)
    if limit <= off:
        if limit >= f.snd_wnd:
            f.tx_limited_by_peer_window += 1
        else:
            f.tx_limited_by_cwnd += 1
        return k, False
    mss = f.eff_mss
    maxseg = min(f.maxseg, slot_bytes - ACK_FRAME)      # (the pool is sized for it)
    window = advertise(f)
    memory = carray(byte_pointer(f.tx_addr), f.tx_cap)
    seq = f.snd_nxt
    sent = 0
    full = False
    while avail > 0:
        n = limit - off
        if n <= 0:
            if limit >= f.snd_wnd:
                f.tx_limited_by_peer_window += 1
            else:
                f.tx_limited_by_cwnd += 1
            break
        n = min(n, avail, maxseg)
        if n < avail and n > mss:
            n -= n % mss
        # Nagle (RFC 896) and sender SWS avoidance: tcp_output.may_send_small
        small_ok = (n == avail and (f.nodelay or f.snd_max == f.snd_una)) or (
            f.max_snd_wnd > 0 and n >= f.max_snd_wnd >> 1)
        if n < mss and not small_ok:
            f.tx_held_nagle_sws += 1
            break
        if k >= slots.shape[0]:
            full = True
            break
        slot = alloc(free, pstate, held)
        if slot < 0:
            state[DRY] = 1
            full = True
            break
        at = slot * slot_bytes
        flags = ACK | PSH if n == avail else ACK
        ident[0] = (ident[0] + 1) & 0xFFFF
        addresses = headers(f, data, at, ident[0], seq, flags, window, n, now)
        if f.tx_host:
            if not gather(f, ranges, memory, data, at + ACK_FRAME, off, n):
                f.owner = SLOW                  # a range outside the segment: Python's
                f.reason = R_RANGE
                release(free, pstate, held, slot)
                break
        else:
            # the payload: ring bytes from SND.UNA's index + off, maybe wrapping
            start = f.tx_head + f.acked + off
            start %= f.tx_cap
            first = min(n, f.tx_cap - start)
            copy_bytes(data, at + ACK_FRAME, memory, start, first)
            if first < n:
                copy_bytes(data, at + ACK_FRAME + first, memory, 0, n - first)
        gso = f.gso_size if f.gso_size and n > f.gso_size else 0
        partial = checksum(f, data, at, n, addresses, gso)
        # (framing.py marks a super-frame only with a partial checksum)
        frame_done(slot, ACK_FRAME + n, partial, gso if partial else 0, length, csum_start,
                   csum_offset, gso_size)
        slots[k] = slot
        k += 1
        seq = (seq + n) & MASK
        if seq != f.snd_max and (seq - f.snd_max) & MASK < HALF:
            f.snd_max = seq
        off += n
        avail -= n
        sent += 1
    if sent:
        f.snd_nxt = seq
        f.tx_data += sent
        if f.t_rexmit == np.inf:
            f.t_rexmit = now + rto(f)
        sent_ack(f)
    return k, full


@kernel(types.int64(_FLOWS, types.int64[:, :, ::1], _I8A, types.int64, types.float64, _I8A,
                    *_POOL, _I4A, _I8A, _I8A))
def output(flows, tx_ranges, rows, count, now, ident, data, slot_bytes, free, pstate, held,
           length, csum_start, csum_offset, gso_size, slots, handed, state):
    """tcp_output.output for each row of ``rows[state[NEXT]:count]`` (its data, else
    the ACK it owes) into frame-pool slots listed in ``slots``; returns the frames
    built. A row whose route must be looked up again, or whose host range the DMA
    check refuses, is handed back (owner SLOW) into ``handed[:state[HANDED]]``."""
    k = 0
    index = state[NEXT]
    while index < count:
        row = rows[index]
        f = flows[row]
        if f.owner != FAST:
            index += 1
            continue
        if now >= f.route_until:
            f.owner = SLOW
            f.reason = R_ROUTE
            handed[state[HANDED]] = row
            state[HANDED] += 1
            index += 1
            continue
        unsent = max(f.send_held - ((f.snd_nxt - f.snd_una) & MASK), 0) if f.tx_cap else 0
        if not f.ack_now and unsent == 0:       # tcp_output.idle: nothing at all to do
            index += 1
            continue
        if k >= slots.shape[0]:
            break                               # not even an ACK fits: the next call
        sent_before = k
        if f.tx_cap:
            k, full = send_data(f, tx_ranges[row], k, ident, now, data, slot_bytes, free,
                                pstate, held, length, csum_start, csum_offset, gso_size,
                                slots, state)
            if f.owner != FAST:
                handed[state[HANDED]] = row
                state[HANDED] += 1
                index += 1
                continue
            if full:                            # the rest of its burst: the next call
                break
        if f.ack_now and k == sent_before:
            if (f.window_update_only and f.rcv_nxt == f.last_ack_sent
                    and not window_opens(f)):
                # the reader freed room, but what arrived since took it again
                f.ack_now = 0
                f.tx_window_update_dropped += 1
            else:
                slot = alloc(free, pstate, held)
                if slot < 0:
                    state[DRY] = 1
                    break
                at = slot * slot_bytes
                ident[0] = (ident[0] + 1) & 0xFFFF
                addresses = headers(f, data, at, ident[0], ack_seq(f), ACK, advertise(f), 0,
                                    now)
                partial = checksum(f, data, at, 0, addresses, 0)
                sent_ack(f)
                f.tx_pure_ack += 1
                frame_done(slot, ACK_FRAME, partial, 0, length, csum_start, csum_offset,
                           gso_size)
                slots[k] = slot
                k += 1
        f.window_update_only = 0
        if f.t_rexmit == np.inf and f.t_persist == np.inf:
            if f.snd_nxt != f.snd_una:
                f.t_rexmit = now + rto(f)
            elif f.send_held > 0:              # arm_persist: data waits on the window
                f.t_persist = now + min(max(rto(f), 0.005), f.rto_max)
                f.tx_window_stall += 1
        index += 1
    state[NEXT] = index
    return k


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


output_entry, read_done_entry = entry(output), entry(read_done)

loaded(__name__)
