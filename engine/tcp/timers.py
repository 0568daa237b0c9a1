"""Timers: small handlers that change state or set a flag; output does the rest.

Deadlines are absolute times (the injected clock) kept in the TCB:
``t_rexmit`` (RTO, RFC 6298 with backoff; also retransmits zero-window probes),
``t_persist`` (zero-window probing / SWS override), ``t_delack`` (delayed ACK),
``t_timewait`` (2 MSL) and the keepalive deadline, derived from the time the last
segment arrived so that no per-segment work is needed to keep it.
"""
from __future__ import annotations

from .events import TIMED_OUT
from .seq import MASK, seq_diff
from .states import State
from .tcp_output import build
from .wire.tcp import ACK

KEEPALIVE_STATES = frozenset({State.ESTABLISHED, State.CLOSE_WAIT})


def keepalive_deadline(c) -> float | None:
    idle = c.config.keepalive_s
    if idle is None or c.state not in KEEPALIVE_STATES:
        return None
    return c.last_rx + idle + c.keepalive_probes * c.config.keepalive_interval_s


def next_deadline(c) -> float | None:
    """The earliest armed timer (runs on every engine pass that did work: plain
    comparisons, the keepalive deadline only when keepalives are on)."""
    best = c.t_rexmit
    t = c.t_delack
    if t is not None and (best is None or t < best):
        best = t
    t = c.t_persist
    if t is not None and (best is None or t < best):
        best = t
    t = c.t_timewait
    if t is not None and (best is None or t < best):
        best = t
    if c.config.keepalive_s is not None:
        t = keepalive_deadline(c)
        if t is not None and (best is None or t < best):
            best = t
    return best


def on_timer(c, now: float) -> None:
    if c.t_timewait is not None and now >= c.t_timewait:
        c.t_timewait = None
        c.counters["time_wait_done" if c.state is State.TIME_WAIT else "fin_wait_2_timeout"] += 1
        c.enter_closed()
        return
    if c.t_rexmit is not None and now >= c.t_rexmit:
        retransmit_timeout(c, now)
    if c.t_persist is not None and now >= c.t_persist:
        c.t_persist = None
        c.force_probe = True
        if c.rtt.rto() * (1 << c.persist_shift) < c.rtt.rto_max:
            c.persist_shift += 1
        c.counters["persist_timeout"] += 1
    if c.t_delack is not None and now >= c.t_delack:
        c.t_delack = None
        c.ack_now = True
        c.counters["delayed_ack_timeout"] += 1
    deadline = keepalive_deadline(c)
    if deadline is not None and now >= deadline:
        keepalive_timeout(c, now)


def retransmit_timeout(c, now: float) -> None:
    """RFC 6298 5.4-5.7: go back to SND.UNA, back off, collapse cwnd (RFC 5681)."""
    c.t_rexmit = None
    if c.snd_una == c.snd_max or c.state is State.CLOSED:
        return
    probing = c.syn_acked and c.snd_wnd == 0
    if not probing:
        c.retries += 1
        limit = c.config.max_retries if c.syn_acked else c.config.syn_retries
        if c.retries > limit:
            c.counters["rto_give_up"] += 1
            if c.passive and not c.syn_acked:
                c.enter_closed()                    # embryonic: nobody to tell
            else:
                c.fail(TIMED_OUT, "ETIMEDOUT")
            return
    c.counters["rto"] += 1
    c.rtt.back_off()
    c.rtt_seq = None                                # Karn: never time a retransmission
    if not c.syn_acked:
        c.snd_nxt = c.iss
        return
    c.snd_nxt = c.snd_una
    if probing:
        c.force_probe = True                        # resend the probe byte, not congestion
        return
    c.cc.on_timeout(seq_diff(c.snd_max, c.snd_una))
    c.in_recovery = False
    c.rexmit_una_pending = False
    c.dupacks = 0
    c.recover = c.snd_max
    if c.rtt.backoff >= 2:
        c.scoreboard.clear()                        # a second expiry: the peer may renege


def keepalive_timeout(c, now: float) -> None:
    if c.keepalive_probes >= c.config.keepalive_probes:
        c.counters["keepalive_give_up"] += 1
        c.fail(TIMED_OUT, "ETIMEDOUT")
        return
    c.keepalive_probes += 1
    c.counters["tx_keepalive"] += 1
    # A probe is an ACK one below SND.UNA: out of the peer's window, so it answers.
    c.ctl_out.append(build(c, (c.snd_una - 1) & MASK, ACK, b"", now))
