"""Output: "figure out what should be sent and send it" (BSD tcp_output).

This is the only place segments are built. In order: queued control segments
(RSTs, keepalive probes), the SYN or SYN-ACK, loss-recovery retransmissions
(NewReno's next unacknowledged segment, or SACK holes per RFC 6675), new data
limited by the peer's window and cwnd (with Nagle and sender SWS avoidance), the
FIN, a zero-window probe, and finally a pure ACK when one is owed and nothing else
carried it. Payload is taken from the send buffer's gather list without copying
unless the list has more than one element (docs/stack-api.md).
"""
from __future__ import annotations

from .seq import HALF, MASK, MOD, seq_diff, seq_gt, seq_le, seq_lt
from .states import OUT_FLAGS, State
from .wire.tcp import ACK, FIN, PSH, SYN, TcpRepr

CLOSED, LISTEN, ESTAB = State.CLOSED, State.LISTEN, State.ESTABLISHED
SACK_LIMIT_TS, SACK_LIMIT = 3, 4       # blocks that fit in 40 option bytes with/without TS


def output(c, now: float) -> list:
    out = c.ctl_out
    if out:
        c.ctl_out = []
    elif idle(c):
        # Idle (the common poll): nothing queued, no new data, no ACK owed. The full
        # path below would build nothing either (and arm no persist timer, as nothing
        # waits to be sent). The Stack's output tracking asks the same idle().
        return []
    else:
        out = []
    state = c.state
    if state is CLOSED or state is LISTEN:
        return out
    if not c.syn_acked:
        if c.snd_nxt == c.iss:
            out.append(build_syn(c, state, now))
        elif c.ack_now and state is not State.SYN_SENT:
            out.append(build(c, c.snd_nxt, ACK, b"", now))
        return out
    sent = len(out)
    if c.in_recovery:
        recovery_retransmit(c, out, now)
    elif c.scoreboard.blocks and c.snd_nxt != c.snd_max:
        resend_holes(c, out, now, data_limit(c))
    send_data(c, out, now, data_limit(c))
    if c.fin_queued and not c.fin_acked and OUT_FLAGS[state] & FIN:
        send_fin(c, out, now)
    if c.force_probe:
        window_probe(c, out, now)
    if c.acks_owed:
        owed_acks(c, out, len(out) - sent, now)
    if c.ack_now and len(out) == sent:
        if c.window_update_only and c.rcv_nxt == c.last_ack_sent and not window_opens(c):
            # the reader freed room, but what arrived since took it again: this ACK
            # would repeat the last one (a duplicate ACK to the peer), so it is not sent
            c.ack_now = False
            c.counters["tx_window_update_dropped"] += 1
        else:
            out.append(build(c, ack_seq(c), ACK, b"", now))
            c.counters["tx_pure_ack"] += 1
    c.window_update_only = False
    if c.t_rexmit is None and c.t_persist is None:
        if c.snd_nxt != c.snd_una:
            # data in flight keeps the RTO running (RFC 6298 5.1), whatever the pass
            # above sent or skipped (resend_holes skips what a scoreboard says is held)
            c.t_rexmit = now + c.rtt.rto()
        else:
            arm_persist(c, now)                 # (its own first test, inline)
    return out


def idle(c) -> bool:
    """Whether output(c) would return [] at once, changing nothing (output's first
    test): the Stack asks after a segment in, and polls only if not."""
    return (not c.ctl_out and c.state is ESTAB and not c.ack_now and not c.acks_owed
            and not c.force_probe and not c.in_recovery and c.snd_nxt == c.snd_max
            and len(c.send_buffer) <= ((c.snd_nxt - c.snd_una) & MASK))


MAX_OWED_ACKS = 64             # bound on duplicate ACKs sent in one poll


def owed_acks(c, out: list, carried: int, now: float) -> None:
    """One ACK per out-of-order segment received since the last output, less those
    the segments just built already carry."""
    n = min(c.acks_owed, MAX_OWED_ACKS) - carried
    c.acks_owed = 0
    if n <= 0:
        return
    seg = build(c, ack_seq(c), ACK, b"", now)
    out.append(seg)
    for _ in range(n - 1):
        out.append(TcpRepr(seg.src_port, seg.dst_port, seg.seq, seg.ack, ACK, seg.window,
                           sack_blocks=seg.sack_blocks, timestamp=seg.timestamp))
    c.counters["tx_dupack"] += n


def ack_seq(c) -> int:
    """Sequence number of a pure ACK: SND.MAX unless it lies beyond the peer's
    window (after an unaccepted zero-window probe), as Linux's tcp_acceptable_seq."""
    right = (c.snd_una + c.snd_wnd) & MASK
    return c.snd_max if seq_le(c.snd_max, right) else right


def window_opens(c) -> bool:
    """Whether the free receive space exceeds the window last advertised by enough
    to send a window update (receiver SWS avoidance, as :func:`advertise` decides)."""
    cur = seq_diff(c.rcv_adv, c.rcv_nxt)
    return c.recv_buffer.free_space() - max(cur, 0) >= min(c.rcv_cap >> 1, c.eff_mss)


def advertise(c) -> int:
    """The window field to send: free receive space, scaled, with receiver SWS
    avoidance (RFC 9293 3.8.6.2.2) and never moving the right edge left."""
    free = c.recv_buffer.free_space()
    rcv_nxt, rcv_adv = c.rcv_nxt, c.rcv_adv
    cur = (rcv_adv - rcv_nxt) & MASK                # seq_diff, clamped at 0, inline
    if cur >= HALF:
        cur = 0
    threshold = c.rcv_cap >> 1
    if threshold > c.eff_mss:
        threshold = c.eff_mss
    win = free if free - cur >= threshold else cur
    shift = c.rcv_scale
    field = win >> shift
    if field > 0xFFFF:
        field = 0xFFFF
    right = (rcv_nxt + (field << shift)) & MASK
    if right != rcv_adv and (right - rcv_adv) & MASK < HALF:     # seq_gt(right, rcv_adv)
        c.rcv_adv = right
    return field


def build(c, seq: int, flags: int, payload, now: float) -> TcpRepr:
    """One segment of a synchronized connection, carrying ACK, window and options."""
    seg = TcpRepr(c.local[1], c.remote[1], seq, c.rcv_nxt, flags, advertise(c),
                  payload=payload)
    if c.ts_enabled:
        seg.timestamp = ((int(now * 1000) + c.ts_offset) & MASK, c.ts_recent)
    if c.sack_enabled and c.reasm.blocks:
        seg.sack_blocks = sack_option(c)
    c.last_ack_sent = c.rcv_nxt
    c.ack_now = False
    c.delack_bytes = 0
    c.t_delack = None
    return seg


def build_syn(c, state, now: float) -> TcpRepr:
    """SYN (active open) or SYN-ACK: options offered, window never scaled."""
    config = c.config
    synack = state is not State.SYN_SENT          # SYN-RECEIVED, or closed during it
    window = min(c.recv_buffer.free_space(), 0xFFFF)
    seg = TcpRepr(c.local[1], c.remote[1], c.iss, c.rcv_nxt if synack else 0,
                  SYN | ACK if synack else SYN, window, mss=c.our_mss)
    if synack:
        c.rcv_adv = (c.rcv_nxt + window) & MASK
        c.last_ack_sent = c.rcv_nxt
        if c.ws_enabled:
            seg.window_scale = c.rcv_scale
        seg.sack_permitted = c.sack_enabled
        if c.ts_enabled:
            seg.timestamp = ((int(now * 1000) + c.ts_offset) & MASK, c.ts_recent)
    else:
        if config.window_scale:
            seg.window_scale = c.rcv_scale
        seg.sack_permitted = config.sack
        if config.timestamps:
            seg.timestamp = ((int(now * 1000) + c.ts_offset) & MASK, 0)
    if c.snd_max == c.iss:
        c.snd_max = (c.iss + 1) & MASK
        c.rtt_seq, c.rtt_time = c.iss, now          # timed unless options say otherwise
    else:
        c.counters["tx_syn_retransmit"] += 1
        c.rtt_seq = None
    c.snd_nxt = (c.iss + 1) & MASK
    c.ack_now = False
    if c.t_rexmit is None:
        c.t_rexmit = now + c.rtt.rto()
    c.counters["tx_syn"] += 1
    return seg


def data_limit(c) -> int:
    """How far past SND.UNA data may be sent: the peer's window and cwnd (plus two
    segments on the first duplicate ACKs; in SACK recovery: cwnd less the RFC 6675
    pipe estimate)."""
    limit = c.cc.cwnd
    if c.dupacks and not c.in_recovery:
        limit += min(c.dupacks, 2) * c.eff_mss     # limited transmit (RFC 3042)
    elif c.in_recovery and c.sack_enabled and c.scoreboard.blocks:
        board = c.scoreboard
        flight = seq_diff(c.snd_max, c.snd_una)
        pipe = flight - board.sacked_bytes - board.hole_bytes_from(c.rexmit_next, c.snd_una)
        limit = seq_diff(c.snd_nxt, c.snd_una) + limit - pipe
    return limit if limit < c.snd_wnd else c.snd_wnd


def segment_payload(c, offset: int, length: int):
    views = c.send_buffer.peek(offset, length)
    if len(views) == 1:
        return views[0]
    return b"".join(views)


def send_data(c, out: list, now: float, limit: int) -> None:
    """New data (and data after an RTO rewind) from SND.NXT up to ``limit``.

    The hot path of a sender: header fields common to the burst (ACK, window,
    options) are computed once, then each segment costs one TcpRepr.
    """
    buf = c.send_buffer
    off = (c.snd_nxt - c.snd_una) & MASK             # seq_diff, inline
    if off > HALF:
        off -= MOD
    avail = len(buf) - off
    if avail <= 0:
        return
    if limit <= off:
        count_limited(c, limit)
        return
    if c.sack_enabled and c.reasm.blocks:
        sack = sack_option(c)
        mss, maxseg = segment_sizes(c, sack)
    else:                                           # segment_sizes(c, ()), inline
        sack = ()
        mss = c.eff_mss
        maxseg = c.tso_max
        maxseg = maxseg - maxseg % mss if maxseg > mss else mss
    fin_ok = c.fin_queued and OUT_FLAGS[c.state] & FIN
    sport, dport, ack = c.local[1], c.remote[1], c.rcv_nxt
    window = advertise(c)
    ts = ((int(now * 1000) + c.ts_offset) & MASK, c.ts_recent) if c.ts_enabled else None
    peek = buf.peek
    seq = c.snd_nxt
    snd_max = c.snd_max
    sent = retransmitted = 0
    while avail > 0:
        n = limit - off
        if n <= 0:
            count_limited(c, limit)
            break
        if n > avail:
            n = avail
        if n > maxseg:
            n = maxseg
        if n < avail and n > mss:
            n -= n % mss                            # TSO: whole segments except the tail
        # may_send_small's first case inline (the last bytes, Nagle off or idle)
        if n < mss and not (n == avail and (c.nodelay or snd_max == c.snd_una
                                            or c.fin_queued)) \
                and not may_send_small(c, n, avail, snd_max != c.snd_una):
            c.counters["tx_held_nagle_sws"] += 1
            break
        views = peek(off, n)
        payload = views[0] if len(views) == 1 else b"".join(views)
        if n == avail:
            flags = ACK | PSH | FIN if fin_ok else ACK | PSH
        else:
            flags = ACK
        out.append(TcpRepr(sport, dport, seq, ack, flags, window, None, None, False, sack, ts,
                           0, payload))
        end = (seq + n + 1) & MASK if flags & FIN else (seq + n) & MASK
        if seq != snd_max and (snd_max - seq) & MASK < HALF:      # seq_lt(seq, snd_max)
            retransmitted += 1
        elif c.rtt_seq is None and not c.ts_enabled:
            c.rtt_seq, c.rtt_time = seq, now        # time one new segment (Karn-safe)
        if end != snd_max and (end - snd_max) & MASK < HALF:      # seq_gt(end, snd_max)
            snd_max = end
        if flags & FIN:
            c.fin_seq = (end - 1) & MASK
            c.counters["tx_fin"] += 1
        seq = end
        off += n
        avail -= n
        sent += 1
    if sent:
        burst_sent(c, seq, snd_max, sent, retransmitted, now)


def burst_sent(c, snd_nxt: int, snd_max: int, sent: int, retransmitted: int,
               now: float) -> None:
    """Bookkeeping once per burst: sequence space, counters, RTO, the ACK carried."""
    c.snd_nxt = snd_nxt
    c.snd_max = snd_max
    c.counters["tx_data"] += sent - retransmitted
    if retransmitted:
        c.counters["tx_retransmit"] += retransmitted
    if c.t_rexmit is None:
        c.t_rexmit = now + c.rtt.rto()
    c.last_ack_sent = c.rcv_nxt
    c.ack_now = False
    c.delack_bytes = 0
    c.t_delack = None


def segment_sizes(c, sack: tuple) -> tuple[int, int]:
    """(MSS, largest segment) of a burst: TSO multiples of the MSS, none with SACK."""
    mss = c.eff_mss
    if sack:
        mss -= 4 + 8 * len(sack)                   # the SACK option's room
        return mss, mss
    return mss, (c.tso_max - c.tso_max % mss if c.tso_max > mss else mss)


def count_limited(c, limit: int) -> None:
    """Data waits: say whether the peer's window or cwnd (or the pipe) holds it."""
    c.counters["tx_limited_by_peer_window" if limit >= c.snd_wnd else "tx_limited_by_cwnd"] += 1


def sack_option(c) -> tuple:
    if c.sack_enabled and c.reasm.blocks:
        return c.rx_blocks.blocks(c.reasm.ranges(), SACK_LIMIT_TS if c.ts_enabled else SACK_LIMIT)
    return ()


def may_send_small(c, n: int, avail: int, in_flight: bool) -> bool:
    """Nagle (RFC 896) and sender SWS avoidance (RFC 9293 3.8.6.2.1)."""
    if n == avail and (c.nodelay or not in_flight or c.fin_queued):
        return True
    return c.max_snd_wnd > 0 and n >= c.max_snd_wnd >> 1


def sent_data(c, seq: int, seglen: int, now: float) -> None:
    """Advance SND.NXT (and SND.MAX) past a segment; time it; arm the RTO."""
    end = (seq + seglen) & MASK
    c.snd_nxt = end
    if seq_gt(end, c.snd_max):
        if seq_lt(seq, c.snd_max):
            c.counters["tx_retransmit"] += 1
        elif c.rtt_seq is None and not c.ts_enabled:
            c.rtt_seq, c.rtt_time = seq, now
        c.snd_max = end
        c.counters["tx_data"] += 1
    else:
        c.counters["tx_retransmit"] += 1
    if c.t_rexmit is None:
        c.t_rexmit = now + c.rtt.rto()


def recovery_retransmit(c, out: list, now: float) -> None:
    """Fast retransmit / NewReno partial ACK, or RFC 6675 hole retransmission."""
    board = c.scoreboard
    if c.sack_enabled and board.blocks:
        limit = data_limit(c)
        budget = limit - seq_diff(c.snd_nxt, c.snd_una)
        if c.rexmit_una_pending:                    # RFC 6675 (4.3): the first one always
            c.rexmit_una_pending = False
            budget = max(budget, 1)
        while budget > 0:
            hole = board.next_hole(c.rexmit_next, c.snd_una)
            if hole is None:
                break
            n = retransmit(c, out, hole[0], seq_diff(hole[1], hole[0]), now)
            c.rexmit_next = (hole[0] + n) & MASK
            budget -= n
        return
    if c.rexmit_una_pending:
        c.rexmit_una_pending = False
        n = min(c.eff_mss, len(c.send_buffer))
        if n > 0:
            retransmit(c, out, c.snd_una, n, now)


def payload_room(c) -> int:
    """Largest payload of one non-TSO segment: the MSS less any SACK option."""
    if c.sack_enabled and c.reasm.blocks:
        blocks = min(len(c.reasm.blocks), SACK_LIMIT_TS if c.ts_enabled else SACK_LIMIT)
        return c.eff_mss - 4 - 8 * blocks
    return c.eff_mss


def resend_holes(c, out: list, now: float, limit: int) -> None:
    """After an RTO, go back over [SND.NXT, SND.MAX) but skip what the peer SACKed
    (the timer clears the scoreboard only on its second expiry, against reneging)."""
    board = c.scoreboard
    data_end = (c.snd_una + len(c.send_buffer)) & MASK
    while seq_lt(c.snd_nxt, c.snd_max):
        hole = board.next_hole(c.snd_nxt, c.snd_una)
        if hole is None:
            top = board.highest()
            start = top if top is not None and seq_gt(top, c.snd_nxt) else c.snd_nxt
            end = c.snd_max
        else:
            start, end = hole
        if seq_gt(end, data_end):
            end = data_end
        if not seq_lt(start, end):                 # only the FIN is left: send_fin's job
            c.snd_nxt = data_end if seq_lt(start, c.snd_max) else c.snd_max
            return
        c.snd_nxt = start
        room = limit - seq_diff(start, c.snd_una)
        if room <= 0:
            count_limited(c, limit)
            return
        n = retransmit(c, out, start, min(seq_diff(end, start), room), now, "tx_retransmit")
        c.snd_nxt = (start + n) & MASK


def retransmit(c, out: list, seq: int, n: int, now: float,
               counter: str = "tx_fast_retransmit") -> int:
    """Resend [seq, seq+n) (cut to one segment) without moving SND.NXT; returns
    the bytes sent."""
    n = min(n, payload_room(c))
    off = seq_diff(seq, c.snd_una)
    out.append(build(c, seq, ACK, segment_payload(c, off, n), now))
    c.counters[counter] += 1
    if c.t_rexmit is None:
        c.t_rexmit = now + c.rtt.rto()
    return n


def send_fin(c, out: list, now: float) -> None:
    """A FIN alone, once every queued byte has been sent (FIN needs no window)."""
    data_end = (c.snd_una + len(c.send_buffer)) & MASK
    if c.snd_nxt != data_end:
        return
    c.fin_seq = data_end
    out.append(build(c, data_end, ACK | FIN, b"", now))
    sent_data(c, data_end, 1, now)
    c.counters["tx_fin"] += 1


def window_probe(c, out: list, now: float) -> None:
    """The persist timer fired: one byte past a closed window (or what the small
    window allows: the SWS override), which the RTO then retransmits."""
    c.force_probe = False
    off = seq_diff(c.snd_nxt, c.snd_una)
    avail = len(c.send_buffer) - off
    if avail <= 0:
        return
    n = max(1, min(avail, c.snd_wnd - off, payload_room(c)))
    seq = c.snd_nxt
    out.append(build(c, seq, ACK, segment_payload(c, off, n), now))
    sent_data(c, seq, n, now)
    c.counters["tx_window_probe"] += 1


def arm_persist(c, now: float) -> None:
    """Nothing in flight, data waiting, window too small: start the persist timer.

    "Nothing in flight" is SND.NXT = SND.UNA, not SND.MAX = SND.UNA: after an RTO
    rewinds SND.NXT, data held by sender SWS avoidance (a window below a segment and
    below half the largest offered) has nothing in flight either, and without this
    timer (the RFC 9293 3.8.6.2.1 override) it would wait for a window update the peer
    has no reason to send."""
    if c.t_rexmit is not None or c.t_persist is not None or c.snd_nxt != c.snd_una:
        return
    if len(c.send_buffer) == 0 or c.state is State.CLOSED:
        return
    rto = c.rtt.rto() * (1 << c.persist_shift)
    c.t_persist = now + min(max(rto, 0.005), c.rtt.rto_max)
    c.counters["tx_window_stall"] += 1       # data waits on the peer's closed window
