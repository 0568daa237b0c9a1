"""Input processing: what an arriving segment does to a connection (RFC 9293 3.10.7).

``segment_arrives`` first tries BSD header prediction (Jacobson's fast path, the
switch ``tcp.header_prediction``): an in-order pure ACK or an in-order data segment
on an ESTABLISHED connection with nothing unusual is handled in a few lines. All
other segments take the full path in RFC order: SYN-SENT handling, PAWS,
acceptability and trimming, RST (RFC 5961), SYN (challenge ACK), ACK, text, FIN.
Output is never produced here: input only sets ``ack_now``/timers or queues RSTs,
and ``tcp_output`` builds segments at the next ``poll_transmit``.
"""
from __future__ import annotations

from .events import ESTABLISHED, PEER_CLOSED, REFUSED, RESET
from .seq import HALF, MASK, seq_add, seq_diff, seq_ge, seq_gt, seq_le, seq_lt
from .states import (CAN_RECEIVE_DATA, ON_FIN_ACKED, ON_FIN_RECEIVED, RESET_OUTCOME,
                     State)
from .wire.tcp import ACK, FIN, PSH, RST, SYN, URG

PAWS_IDLE = 24 * 86400.0       # RFC 7323 5.5: TS.Recent is invalid after 24 days idle
HP_MASK = SYN | FIN | RST | URG | ACK
ESTAB = State.ESTABLISHED


def segment_arrives(c, seg, now: float) -> None:
    c.last_rx = now                                 # keepalive: the peer is alive
    c.keepalive_probes = 0
    state = c.state
    if state is ESTAB and c.header_prediction and fast_path(c, seg, now):
        return
    c.counters["rx_slow_path"] += 1
    c.window_update_only = False       # an ACK this segment asks for goes out (3.10.7.4)
    if state is State.CLOSED or state is State.LISTEN:
        c.counters["rx_drop_closed"] += 1
    elif state is State.SYN_SENT:
        syn_sent(c, seg, now)
    else:
        synchronized(c, seg, now)


# -- header prediction ------------------------------------------------------------------

def fast_path(c, seg, now: float) -> bool:
    """BSD header prediction; returns False to fall back to the full path.

    Taken: an in-order pure ACK of new data, and in-order data that fits the window
    and acknowledges nothing new (BSD's two cases) or new data outside loss recovery
    (a reply carrying the ACK of the request, a case Linux's fast path also takes),
    and a pure window update (the full path would only call ``update_window``: as a
    duplicate ACK it does not count, its window having moved).
    A changed window is taken too (both old and new nonzero), through the full
    path's own ``update_window``: a receiver's SWS avoidance moves it every few
    segments. The effects are exactly the full path's for these segments.
    Sequence comparisons are written out here (``(a - b) & MASK`` against HALF,
    exactly what seq.py does) because this runs once per segment.
    """
    seq = seg.seq
    if seg.flags & HP_MASK != ACK or seq != c.rcv_nxt or c.snd_nxt != c.snd_max:
        return False
    ts = seg.timestamp
    if c.ts_enabled:
        # PAWS passes and the timestamp is at least TS.Recent.
        if ts is None or (ts[0] - c.ts_recent) & MASK >= HALF:
            return False
    window_moved = (seg.window << c.snd_scale) != c.snd_wnd
    if window_moved and (not seg.window or not c.snd_wnd):
        return False                                # zero windows: the full path
    if seg.payload:
        return predicted_data(c, seg, now, window_moved)
    # A pure ACK of new data (SND.UNA < ack <= SND.MAX), or a pure window update
    # (ack = SND.UNA, the window moved: a reader freed room), outside loss recovery.
    advance = (seg.ack - c.snd_una) & MASK
    if (advance > ((c.snd_max - c.snd_una) & MASK) or c.in_recovery or c.dupacks
            or seg.sack_blocks or c.scoreboard.blocks or not (advance or window_moved)):
        return False
    if not advance:
        if ts is not None and (c.last_ack_sent - seq) & MASK < HALF:
            c.ts_recent = ts[0]
            c.ts_recent_time = now
        c.counters["rx_hp_window"] += 1
        update_window(c, seg)
        return True
    if ts is not None and (c.last_ack_sent - seq) & MASK < HALF:
        c.ts_recent = ts[0]
        c.ts_recent_time = now
    c.counters["rx_hp_ack"] += 1
    ack_new_data(c, seg, now)
    if window_moved:
        update_window(c, seg)
    return True


def predicted_data(c, seg, now: float, window_moved: bool) -> bool:
    """``fast_path`` for a segment with data, once the common checks passed."""
    payload, seq, ack, ts = seg.payload, seg.seq, seg.ack, seg.timestamp
    n = len(payload)
    if (c.reasm.blocks or c.reasm.fin_seq is not None or c.user_closed
            or (c.rcv_adv - seq) & MASK < n):
        return False
    if ack != c.snd_una:
        if (((ack - c.snd_una) & MASK) > ((c.snd_max - c.snd_una) & MASK) or c.in_recovery
                or c.dupacks or seg.sack_blocks or c.scoreboard.blocks):
            return False
        if ts is not None and (c.last_ack_sent - seq) & MASK < HALF:
            c.ts_recent = ts[0]
            c.ts_recent_time = now
        c.counters["rx_hp_data_ack"] += 1
        ack_new_data(c, seg, now)
        update_window(c, seg)
    else:
        if ts is not None and (c.last_ack_sent - seq) & MASK < HALF:
            c.ts_recent = ts[0]
            c.ts_recent_time = now
        c.counters["rx_hp_data"] += 1
        if window_moved:
            update_window(c, seg)
    # deliver(), inline for the common case: everything taken
    taken = c.recv_buffer.write(payload, bool(seg.flags & PSH))
    if taken < n:
        if taken:
            c.rcv_nxt = (c.rcv_nxt + taken) & MASK
            c.rx_pending += taken
        c.counters["rx_bytes_not_accepted"] += n - taken
        c.ack_now = True
        return True
    c.rcv_nxt = (c.rcv_nxt + n) & MASK
    c.rx_pending += n
    delack_bytes = c.delack_bytes = c.delack_bytes + n
    delay_ms = c.config.delayed_ack_ms
    if delack_bytes >= 2 * c.eff_mss or delay_ms <= 0:
        c.ack_now = True                   # every second full segment (RFC 1122 4.2.3.2)
    elif c.t_delack is None:
        c.t_delack = now + delay_ms / 1000
    return True


def deliver(c, payload, push, now: float) -> int:
    """Write in-order bytes to the receive buffer; only the accepted ones count."""
    n = len(payload)
    taken = c.recv_buffer.write(payload, bool(push))
    if taken:
        c.rcv_nxt = (c.rcv_nxt + taken) & MASK
        c.rx_pending += taken
    if taken < n:
        c.counters["rx_bytes_not_accepted"] += n - taken
        c.ack_now = True
        return taken
    c.delack_bytes += taken
    if c.delack_bytes >= 2 * c.eff_mss or c.config.delayed_ack_ms <= 0:
        c.ack_now = True                   # every second full segment (RFC 1122 4.2.3.2)
    elif c.t_delack is None:
        c.t_delack = now + c.config.delayed_ack_ms / 1000
    return taken


# -- SYN-SENT (RFC 9293 3.10.7.3) ---------------------------------------------------------

def syn_sent(c, seg, now: float) -> None:
    flags = seg.flags
    if flags & ACK and (seq_le(seg.ack, c.iss) or seq_gt(seg.ack, c.snd_max)):
        if not flags & RST:
            c.queue_rst(seg.ack, 0, with_ack=False)
        c.counters["rx_drop_synsent_bad_ack"] += 1
        return
    if flags & RST:
        if flags & ACK:
            c.counters["rx_rst_refused"] += 1
            c.fail(REFUSED, "ECONNREFUSED")
        else:
            c.counters["rx_drop_synsent_rst_no_ack"] += 1
        return
    if not flags & SYN:
        c.counters["rx_drop_synsent_no_syn"] += 1
        return
    c.accept_syn(seg, now)
    if seg.payload or flags & FIN:
        c.counters["rx_syn_data_ignored"] += 1         # not acknowledged: peer resends
    if flags & ACK:
        if c.rtt_seq is not None and not c.ts_enabled:
            c.rtt.sample(now - c.rtt_time)
        c.rtt_seq = None
        if c.ts_enabled and seg.timestamp[1]:
            sample_timestamp(c, seg.timestamp[1], now)
        c.snd_una = seg.ack
        if seq_lt(c.snd_nxt, c.snd_una):
            c.snd_nxt = c.snd_una
        c.syn_acked = True
        c.retries = 0
        c.t_rexmit = None
        c.state = ESTAB
        c.ack_now = True
        c.counters["established_active"] += 1
        c.emit(ESTABLISHED)
        handshake_rto(c)
    else:
        c.state = State.SYN_RECEIVED                   # simultaneous open
        c.snd_nxt = c.iss                              # resend our SYN, now with ACK
        c.counters["simultaneous_open"] += 1


# -- the other states (RFC 9293 3.10.7.4) ------------------------------------------------

def synchronized(c, seg, now: float) -> None:
    flags = seg.flags
    if (c.state is State.SYN_RECEIVED and flags & SYN and not flags & (RST | ACK)
            and seg.seq == c.irs):
        c.snd_nxt = c.iss                              # the peer lost our SYN-ACK
        c.counters["rx_syn_retransmitted"] += 1
        return
    ts = seg.timestamp
    if (c.ts_enabled and ts is not None and not flags & RST and seq_lt(ts[0], c.ts_recent)
            and now - c.ts_recent_time < PAWS_IDLE):
        if disordered_ack(c, seg):
            c.counters["rx_paws_reordered_ack_kept"] += 1
        else:
            c.counters["rx_drop_paws"] += 1
            c.ack_now = True
            return
    if not acceptable(c, seg):
        if flags & RST:
            c.counters["rx_drop_rst_out_of_window"] += 1
        else:
            c.counters["rx_drop_out_of_window"] += 1
            if seg.payload and seq_le(seq_add(seg.seq, len(seg.payload)), c.rcv_nxt):
                c.counters["rx_duplicate_segment"] += 1    # every byte already received
            c.ack_now = True
            if c.state is State.TIME_WAIT and flags & FIN:
                c.t_timewait = now + c.config.time_wait_s     # the peer resent its FIN
        return
    if ts is not None and c.ts_enabled and seq_le(seg.seq, c.last_ack_sent):
        c.ts_recent = ts[0]
        c.ts_recent_time = now
    if flags & RST:
        rst_arrives(c, seg, now)
        return
    if flags & SYN:
        challenge_ack(c, "syn", now)                   # RFC 5961 4.2
        return
    if not flags & ACK:
        c.counters["rx_drop_no_ack"] += 1
        return
    if not c.syn_acked and not syn_received_ack(c, seg, now):
        return
    if not process_ack(c, seg, now):
        return
    if c.state is State.CLOSED:
        return
    text_and_fin(c, seg, now)


def disordered_ack(c, seg) -> bool:
    """A pure duplicate ACK overtaken by a newer one (as Linux's tcp_disordered_ack):
    PAWS would drop it, but it carries a duplicate-ACK signal and nothing old."""
    return (not seg.payload and not seg.flags & (SYN | FIN) and seg.seq == c.rcv_nxt
            and seg.ack == c.snd_una and (seg.window << c.snd_scale) == c.snd_wnd
            and ((c.ts_recent - seg.timestamp[0]) & MASK) <= 1000 * max(c.rtt.rto(), 1.0))


def acceptable(c, seg) -> bool:
    """The four-case test of RFC 9293 3.10.7.4 (first step)."""
    wnd = seq_diff(c.rcv_adv, c.rcv_nxt)
    if wnd < 0:
        wnd = 0
    seglen = seg.seg_len
    off = seq_diff(seg.seq, c.rcv_nxt)
    if seglen == 0:
        return off == 0 if wnd == 0 else 0 <= off < wnd
    if wnd == 0:
        return False
    end = off + seglen - 1
    return 0 <= off < wnd or 0 <= end < wnd


def challenge_ack(c, reason: str, now: float) -> None:
    """An ACK that tells a blind attacker (or a confused peer) where we are, at most
    ``tcp.challenge_ack_per_s`` a second per connection (RFC 5961 section 7)."""
    if now - c.challenge_start >= 1.0:
        c.challenge_start = now
        c.challenge_count = 0
    if c.challenge_count >= c.config.challenge_ack_per_s:
        c.counters["tx_challenge_ack_rate_limited"] += 1
        return
    c.challenge_count += 1
    c.counters["tx_challenge_ack_" + reason] += 1
    c.ack_now = True


def rst_arrives(c, seg, now: float) -> None:
    """RFC 5961 3.2: reset only on an exact match, challenge ACK otherwise."""
    if seg.seq != c.rcv_nxt:
        challenge_ack(c, "rst", now)
        return
    event, errno_name = RESET_OUTCOME[c.state]
    c.counters["rx_rst_accepted"] += 1
    if c.state is State.SYN_RECEIVED and c.passive:
        c.enter_closed()                               # back to LISTEN: the stack drops it
    elif event == "refused":
        c.fail(REFUSED, errno_name)
    elif event == "reset":
        c.fail(RESET, errno_name)
    else:
        c.enter_closed()


def syn_received_ack(c, seg, now: float) -> bool:
    """SYN-RECEIVED: an ACK of our SYN completes the handshake (fifth step)."""
    if not (seq_lt(c.snd_una, seg.ack) and seq_le(seg.ack, c.snd_max)):
        c.queue_rst(seg.ack, 0, with_ack=False)
        c.counters["rx_drop_synrcvd_bad_ack"] += 1
        return False
    if c.state is State.SYN_RECEIVED:
        c.state = ESTAB                                # else closed meanwhile: FIN-WAIT-1
    c.snd_wnd = seg.window << c.snd_scale
    c.max_snd_wnd = max(c.max_snd_wnd, c.snd_wnd)
    c.snd_wl1 = seg.seq
    c.snd_wl2 = seg.ack
    c.counters["established_passive" if c.passive else "established_simultaneous"] += 1
    c.emit(ESTABLISHED)
    handshake_rto(c)
    return True


def handshake_rto(c) -> None:
    """RFC 6298 5.7: a retransmitted SYN and no RTT sample leave the RTO at 3 s."""
    if c.rtt.srtt is None and c.counters["tx_syn_retransmit"]:
        c.rtt.base_rto = min(max(3.0, c.rtt.rto_min), c.rtt.rto_max)
        c.rtt.backoff = 0


# -- ACK processing (fifth step) ---------------------------------------------------------

def process_ack(c, seg, now: float) -> bool:
    """Returns False when the segment must be dropped."""
    ack = seg.ack
    if seq_gt(ack, c.snd_max):
        c.counters["rx_drop_ack_too_new"] += 1
        c.ack_now = True
        return False
    if seq_lt(ack, seq_add(c.snd_una, -c.max_snd_wnd)):
        c.counters["rx_drop_ack_too_old"] += 1
        challenge_ack(c, "old_ack", now)                   # RFC 5961 5.2
        return False
    if seq_gt(ack, c.snd_una):
        ack_new_data(c, seg, now)
    else:
        duplicate_ack(c, seg)
    update_window(c, seg)
    return True


def update_window(c, seg) -> None:
    seq, ack = seg.seq, seg.ack
    wl1 = c.snd_wl1
    # seq_lt(wl1, seq) or (wl1 == seq and seq_le(snd_wl2, ack)), inline (per segment)
    if (wl1 != seq and (seq - wl1) & MASK < HALF) or (
            wl1 == seq and (ack - c.snd_wl2) & MASK < HALF):
        wnd = seg.window << c.snd_scale
        if wnd != c.snd_wnd:
            c.counters["rx_window_update"] += 1
        reopened = wnd and c.snd_wnd == 0
        c.snd_wnd = wnd
        c.snd_wl1 = seq
        c.snd_wl2 = ack
        if wnd > c.max_snd_wnd:
            c.max_snd_wnd = wnd
        if wnd:
            if reopened and c.snd_nxt != c.snd_una:
                # The window reopens with a probe outstanding: it was past a closed
                # window, so the peer dropped it. Resend from SND.UNA now rather than
                # leave a hole for fast retransmit to find.
                c.snd_nxt = c.snd_una
                c.rtt_seq = None
                c.counters["window_reopened_resend_probe"] += 1
            c.t_persist = None
            c.persist_shift = 0


def duplicate_ack(c, seg) -> None:
    """RFC 5681 duplicate ACK: count it, enter fast retransmit at the third. An ACK
    that brings new SACK information counts even if its window moved (RFC 6675)."""
    new_sack = bool(c.sack_enabled and seg.sack_blocks
                    and c.scoreboard.update(seg.sack_blocks, c.snd_una, c.snd_max))
    if c.snd_wnd == 0 or seg.window == 0:
        if c.snd_max != c.snd_una:
            c.retries = 0                          # the peer answers our window probes
        return
    if seg.flags & (SYN | FIN) or c.snd_max == c.snd_una or seg.ack != c.snd_una:
        return
    if not new_sack and (seg.payload or (seg.window << c.snd_scale) != c.snd_wnd):
        return
    c.dupacks += 1
    c.counters["rx_dupack"] += 1
    if c.in_recovery:
        c.cc.on_dupack_in_recovery()
        return
    # Third duplicate, or (RFC 6675 IsLost) more than two segments SACKed above UNA.
    if c.dupacks < 3 and not (c.sack_enabled and c.scoreboard.sacked_bytes > 2 * c.eff_mss):
        return
    if not seq_gt(seg.ack, c.recover) and c.recover != c.iss:
        c.counters["fast_retransmit_suppressed"] += 1      # RFC 6582 step 2
        return
    c.cc.enter_recovery(seq_diff(c.snd_max, c.snd_una), c.sack_enabled)
    c.in_recovery = True
    c.recover = c.snd_max
    c.rexmit_next = c.snd_una
    c.rexmit_una_pending = True
    c.rtt_seq = None                                       # Karn
    c.counters["fast_retransmit"] += 1
    if c.sack_enabled:
        c.counters["sack_recovery"] += 1                   # recovery guided by SACK


def sample_timestamp(c, tsecr: int, now: float) -> None:
    ticks = ((int(now * 1000) + c.ts_offset) - tsecr) & MASK
    if ticks < 0x7FFFFFFF:
        c.rtt.sample(ticks / 1000)


def ack_new_data(c, seg, now: float) -> None:
    """SND.UNA advances: release data, sample RTT, grow cwnd, manage recovery."""
    ack = seg.ack
    acked = (ack - c.snd_una) & MASK                # seq_diff, inline (runs per ACK)
    if acked > HALF:
        acked -= MASK + 1
    if not c.syn_acked:
        c.syn_acked = True
        acked -= 1
    buf = c.send_buffer
    held = len(buf)
    data = acked if acked < held else held
    if data > 0:
        buf.consume(data)
        c.bytes_acked += data
        c.acked_dirty = True
    c.snd_una = ack
    nxt = c.snd_nxt
    if nxt != ack and (ack - nxt) & MASK < HALF:    # seq_lt(snd_nxt, ack)
        c.snd_nxt = ack
    ts = seg.timestamp
    if ts is not None and c.ts_enabled:
        tsecr = ts[1]
        if tsecr:                                   # sample_timestamp, inline
            ticks = ((int(now * 1000) + c.ts_offset) - tsecr) & MASK
            if ticks < 0x7FFFFFFF:
                c.rtt.sample(ticks / 1000)
    elif c.rtt_seq is not None and seq_gt(ack, c.rtt_seq):
        c.rtt.sample(now - c.rtt_time)
        c.rtt_seq = None
    c.retries = 0
    if c.in_recovery:
        recovery_ack(c, ack, data)
    else:
        c.dupacks = 0
        c.cc.on_ack(data)
    if c.scoreboard.blocks or seg.sack_blocks:
        c.scoreboard.prune(ack)
        if c.sack_enabled and seg.sack_blocks:
            c.scoreboard.update(seg.sack_blocks, ack, c.snd_max)
    if ack == c.snd_max:
        c.t_rexmit = None
    else:                                           # rtt.rto(), inline: no backoff here
        rtt = c.rtt                                 # (the sample above cleared it)
        c.t_rexmit = now + (rtt.rto() if rtt.backoff else rtt.base_rto)
    if c.fin_seq is not None and not c.fin_acked and seq_gt(ack, c.fin_seq):
        fin_acked(c, now)


def recovery_ack(c, ack: int, data: int) -> None:
    if seq_ge(ack, c.recover):
        c.in_recovery = False
        c.dupacks = 0
        c.rexmit_una_pending = False
        c.cc.exit_recovery(seq_diff(c.snd_max, ack))
        c.counters["recovery_done"] += 1
        return
    c.counters["rx_partial_ack"] += 1
    if c.cc.on_partial_ack(data):
        c.rexmit_una_pending = not c.sack_enabled         # NewReno: resend the next hole
        if seq_lt(c.rexmit_next, ack):
            c.rexmit_next = ack
    else:
        c.in_recovery = False
        c.dupacks = 0
        c.rexmit_una_pending = False


def fin_acked(c, now: float) -> None:
    c.fin_acked = True
    nxt = ON_FIN_ACKED.get(c.state)
    c.counters["fin_acked"] += 1
    if nxt is State.CLOSED:
        c.enter_closed()
    elif nxt is State.TIME_WAIT:
        c.enter_time_wait(now)
    elif nxt is not None:
        c.state = nxt
        if nxt is State.FIN_WAIT_2 and c.user_closed and c.config.time_wait_s > 0:
            # Orphaned by close(): do not wait for the peer's FIN forever (BSD's
            # FIN-WAIT-2 timeout); the TIME-WAIT timer doubles as its deadline.
            c.t_timewait = now + c.config.time_wait_s
            c.counters["fin_wait_2_timer"] += 1


# -- text and FIN (seventh and eighth steps) ---------------------------------------------

def text_and_fin(c, seg, now: float) -> None:
    payload = seg.payload
    seq = seg.seq
    fin = seg.flags & FIN
    front = seq_diff(c.rcv_nxt, seq)
    if front > 0:                                   # already-received bytes at the front
        payload = payload[front:] if front < len(payload) else b""
        seq = c.rcv_nxt
    room = seq_diff(c.rcv_adv, seq)
    if len(payload) > max(room, 0):                 # beyond the window: trimmed, FIN too
        payload = payload[:max(room, 0)]
        fin = 0
        c.counters["rx_bytes_beyond_window"] += 1
        c.ack_now = True
    if payload and c.state in CAN_RECEIVE_DATA:
        if c.user_closed:
            c.counters["rx_data_after_close"] += 1  # nobody will read it: reset (as Linux)
            c.abort(now)
            return
        if seq == c.rcv_nxt:
            if deliver(c, payload, seg.flags & PSH, now) < len(payload):
                return                              # not all taken: neither is the FIN
            if c.reasm:
                drain_reassembly(c, now)
        else:
            out_of_order(c, seq, payload, fin)
            return
    elif payload:
        c.counters["rx_data_ignored_state"] += 1
    if fin and seq_add(seq, len(payload)) == c.rcv_nxt:
        fin_arrives(c, now)
    elif fin:
        c.reasm.fin_seq = seq_add(seq, len(payload))   # a FIN ahead of missing data
        c.ack_now = True


def out_of_order(c, seq: int, payload, fin) -> None:
    stored = c.reasm.insert(seq, payload, c.rcv_nxt)
    c.rx_blocks.note_arrival(seq)
    c.counters["rx_out_of_order"] += 1
    if stored < len(payload):
        c.counters["rx_duplicate_bytes"] += len(payload) - stored
        if stored == 0:
            c.counters["rx_duplicate_segment"] += 1        # held out of order already
    if fin:
        c.reasm.fin_seq = seq_add(seq, len(payload))
    # One duplicate ACK per out-of-order segment, at once (RFC 5681 4.2), even when a
    # batch of segments is processed before the next output: the sender counts them.
    c.acks_owed += 1


def drain_reassembly(c, now: float) -> None:
    """RCV.NXT moved: pass queued bytes that now follow it to the receive buffer."""
    c.ack_now = True                                # a filled hole is ACKed at once
    while True:
        start = c.rcv_nxt
        data = c.reasm.pop_ready(start)
        if data is None:
            break
        taken = deliver(c, data, True, now)
        if taken < len(data):
            c.reasm.push_back(seq_add(start, taken), data[taken:])
            return
    if c.reasm.fin_seq is not None and c.reasm.fin_seq == c.rcv_nxt and not c.reasm.blocks:
        c.reasm.fin_seq = None
        fin_arrives(c, now)


def fin_arrives(c, now: float) -> None:
    c.rcv_nxt = seq_add(c.rcv_nxt, 1)
    c.ack_now = True
    c.counters["rx_fin"] += 1
    state = c.state
    nxt = ON_FIN_RECEIVED.get(state)
    if nxt is None:
        return
    if state not in (State.CLOSE_WAIT, State.CLOSING, State.LAST_ACK, State.TIME_WAIT):
        c.emit(PEER_CLOSED)
    if nxt is State.TIME_WAIT:
        c.enter_time_wait(now)
    else:
        c.state = nxt
