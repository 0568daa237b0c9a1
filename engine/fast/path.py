"""The fast path beside a Stack: who owns a connection's fields, and the hand-over.

A connection is *ordinary* when nothing but header prediction's cases can happen to
it next (ESTABLISHED, nothing queued, owed or being recovered: :func:`ordinary`).
The Stack offers each connection it has just worked on (:meth:`FastPath.offer`); an
ordinary one is *exported*: its fields are copied into its :data:`FLOW` row, the
row's owner becomes ``FAST``, and the connection leaves the Stack's polled set (the
kernels keep its timer). From then on the kernels own those fields and the Python
object is a tripwire: its class becomes :class:`FastOwned`, whose first attribute
read *reclaims* the connection (fields copied back, owner ``SLOW``, polled again)
before the read proceeds. So any Python code that touches a fast connection (a user
call, a timer, the slow path given one of its frames) gets the current state, and the
two sides never both hold it (docs/stack-api.md, "Ownership").

The kernels hand a connection back themselves (owner ``SLOW``, mark ``HANDBACK``)
when a frame needs the slow path or its output is due; :meth:`FastPath.settle`
reclaims those after the burst, before Python sees that frame.
"""
from __future__ import annotations

import math

import numpy as np

from engine.tcp.connection import Connection
from engine.tcp.events import SendAcked
from engine.tcp.states import State

from . import rx
from .flows import FAST, INF, NONE, SLOW, FlowTable, due_entry, earliest_entry

ESTAB = State.ESTABLISHED
MASK = 0xFFFFFFFF
BURST = 256                       # frames per kernel call


class FastOwned(Connection):
    """A connection whose fields the kernels own: any attribute read reclaims it."""

    __slots__ = ()

    def __getattribute__(self, name):
        object.__getattribute__(self, "fast").reclaim(self)
        return object.__getattribute__(self, name)


def ordinary(c, stack) -> bool:
    """Whether only header prediction's cases can come next (the kernels' share):
    ESTABLISHED with timestamps, all data sent, nothing owed, queued or recovering,
    no timer but the retransmission timer, events drained, an accepted connection."""
    return (c.state is ESTAB and c.ts_enabled and c.header_prediction and c.syn_acked
            and not (c.fin_queued or c.user_closed or c.in_recovery or c.dupacks
                     or c.acks_owed or c.ctl_out or c.force_probe or c.ack_now
                     or c.rexmit_una_pending or c.retries or c.persist_shift
                     or c.keepalive_probes or c.events or c.rx_pending or c.acked_dirty)
            and c.fin_seq is None and c.t_persist is None and c.t_delack is None
            and c.t_timewait is None and c.snd_nxt == c.snd_max and c.snd_wnd > 0
            and not c.scoreboard.blocks and not c.reasm.blocks and c.reasm.fin_seq is None
            and c.config.keepalive_s is None
            and len(c.send_buffer) <= ((c.snd_nxt - c.snd_una) & MASK)
            and c not in stack._owner)


class FastPath:
    """The flow table, the kernels' scratch arrays, and the hand-over."""

    def __init__(self, stack, capacity: int):
        self.stack = stack
        self.flows = FlowTable(capacity)
        self.conns: list = [None] * capacity        # row -> its Connection
        self.acked_total: list = [0] * capacity     # row -> bytes acked (conn.bytes_acked)
        self.fast = 0                               # rows owned by the kernels
        self.marks = np.zeros(capacity, np.int64)
        self.touched = np.zeros(BURST, np.int64)
        self.verdict = np.zeros(BURST, np.int8)
        self.starts = np.zeros(BURST, np.int64)
        self.lengths = np.zeros(BURST, np.int64)
        self.csum_ok = np.zeros(BURST, np.uint8)
        self.burst_counters = np.zeros(2, np.int64)
        self.buffer = np.zeros(1 << 16, np.uint8)
        self.mac = int.from_bytes(stack.mac, "big")
        self.counters = stack.counters

    # ---- frames ------------------------------------------------------------------
    def receive(self, frames: list, now: float) -> list:
        """Run the receive kernel over ``frames`` ((frame, csum_ok) pairs); return
        those left to the Python stack, in order (their connections reclaimed)."""
        if not self.fast:
            return frames
        left = []
        for first in range(0, len(frames), BURST):
            left += self._burst(frames[first:first + BURST], now)
        return left

    def _burst(self, frames: list, now: float) -> list:
        count = len(frames)
        size = sum([len(frame) for frame, _ in frames])
        if size > self.buffer.shape[0]:
            self.buffer = np.zeros(1 << (size - 1).bit_length(), np.uint8)
        buffer, starts, lengths, csum_ok = self.buffer, self.starts, self.lengths, self.csum_ok
        at = 0
        for i, (frame, ok) in enumerate(frames):
            n = len(frame)
            buffer[at:at + n] = frame
            starts[i] = at
            lengths[i] = n
            csum_ok[i] = ok
            at += n
        counters = self.burst_counters
        counters[:] = 0
        touched = rx.receive_entry(buffer, starts, lengths, csum_ok, count, self.verdict,
                                   self.flows.rows, self.flows.slots, self.stack.ip, self.mac,
                                   now, self.marks, self.touched, counters)
        if counters[rx.C_TCP_RX]:
            self.counters["ip.rx"] += int(counters[rx.C_IP_RX])
            self.counters["tcp.rx"] += int(counters[rx.C_TCP_RX])
            self.counters["fast.rx"] += int(counters[rx.C_TCP_RX])
        if touched:
            self.settle(touched)
        return [frames[i] for i in np.flatnonzero(self.verdict[:count]).tolist()]

    def settle(self, touched: int) -> None:
        """After a burst: release acknowledged bytes, reclaim rows handed back."""
        marks, rows = self.marks, self.flows.rows
        for row in self.touched[:touched].tolist():
            bits = int(marks[row])
            marks[row] = 0
            conn = self.conns[row]
            if bits & rx.ACKED:
                self.release_acked(row, conn)
            if bits & rx.HANDBACK:
                self.counters[f"fast.handback_{HANDBACK_REASONS.get(int(rows['reason'][row]), 'other')}"] += 1
                self.reclaim(conn)
                self.stack._due[conn] = None          # its output runs in this pass

    def release_acked(self, row: int, conn) -> None:
        """Bytes the kernel saw acknowledged: out of the send buffer (the offload
        buffer writes the host's counter), and a SendAcked event as the Stack's."""
        f = self.flows.rows[row]
        n = int(f["acked"])
        if not n:
            return
        f["acked"] = 0
        object.__getattribute__(conn, "send_buffer").consume(n)
        self.acked_total[row] += n
        self.stack._events.append((conn, SendAcked(self.acked_total[row])))

    # ---- ownership ---------------------------------------------------------------
    def offer(self, conn) -> None:
        """The Stack worked on ``conn``: export it if it is ordinary."""
        stack = self.stack
        if not ordinary(conn, stack):
            return
        row = conn.flow
        if row < 0:
            key = stack._keys.get(conn)
            if key is None:
                return
            row = self.flows.add(*key)
            if row < 0:
                self.counters["fast.table_full"] += 1
                return
            conn.flow = row
            conn.fast = self
            self.conns[row] = conn
        export(conn, self.flows.rows[row])
        self.acked_total[row] = conn.bytes_acked
        self.flows.rows["owner"][row] = FAST
        self.fast += 1
        self.counters["fast.exported"] += 1
        stack.table.active.pop(conn, None)
        stack._due.pop(conn, None)
        stack._touched.pop(conn, None)
        conn.__class__ = FastOwned

    def reclaim(self, conn) -> None:
        """Give ``conn``'s fields back to the Python stack (the tripwire's call)."""
        conn.__class__ = Connection
        row = conn.flow
        f = self.flows.rows[row]
        if f["acked"]:
            self.release_acked(row, conn)
        import_(conn, f)
        conn.bytes_acked = self.acked_total[row]
        f["owner"] = SLOW
        self.fast -= 1
        key = self.stack._keys.get(conn)
        if key is not None:
            self.stack.table.active[conn] = key

    def forget(self, conn) -> None:
        """The Stack frees ``conn``: its row goes too."""
        row = conn.flow
        if row >= 0:
            self.flows.remove(row)
            self.conns[row] = None
            conn.flow = -1

    # ---- time ----------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        if not self.fast:
            return None
        t = earliest_entry(self.flows.rows, self.flows.top)
        return None if t == INF else t

    def expire(self, now: float) -> None:
        """Reclaim the fast connections whose timer is due (Python runs it)."""
        if not self.fast:
            return
        due = due_entry(self.flows.rows, self.flows.top, now, self.touched)
        for row in self.touched[:due].tolist():
            self.reclaim(self.conns[row])
            self.counters["fast.handback_timer"] += 1

    def summary(self) -> dict:
        return {"flows": self.flows.used, "fast": self.fast}


HANDBACK_REASONS = {rx.R_SHAPE: "slow_path", rx.R_OUTPUT: "output"}


def export(c, f) -> None:
    """Copy the fields the kernels use from connection ``c`` into row ``f``."""
    f["reason"] = 0
    f["snd_una"], f["snd_nxt"], f["snd_max"] = c.snd_una, c.snd_nxt, c.snd_max
    f["snd_wnd"], f["snd_wl1"], f["snd_wl2"] = c.snd_wnd, c.snd_wl1, c.snd_wl2
    f["max_snd_wnd"], f["snd_scale"] = c.max_snd_wnd, c.snd_scale
    f["rcv_nxt"], f["rcv_adv"], f["rcv_scale"] = c.rcv_nxt, c.rcv_adv, c.rcv_scale
    f["rcv_cap"], f["last_ack_sent"] = c.rcv_cap, c.last_ack_sent
    f["eff_mss"], f["ts_enabled"] = c.eff_mss, c.ts_enabled
    f["ts_recent"], f["ts_recent_time"], f["ts_offset"] = c.ts_recent, c.ts_recent_time, c.ts_offset
    f["checksum_off"] = c.config.checksum == "off"
    rtt = c.rtt
    f["srtt"] = math.nan if rtt.srtt is None else rtt.srtt
    f["rttvar"], f["base_rto"], f["backoff"] = rtt.rttvar, rtt.base_rto, rtt.backoff
    f["rto_min"], f["rto_max"] = rtt.rto_min, rtt.rto_max
    f["rtt_seq"] = NONE if c.rtt_seq is None else c.rtt_seq
    f["rtt_time"] = c.rtt_time
    cc = c.cc
    f["cwnd"], f["ssthresh"], f["ca_bytes"], f["cc_mss"] = cc.cwnd, cc.ssthresh, cc.ca_bytes, cc.mss
    f["t_rexmit"] = INF if c.t_rexmit is None else c.t_rexmit
    f["last_rx"] = c.last_rx
    f["send_held"] = len(c.send_buffer)
    f["acked"] = 0
    f["rx_hp_ack"] = f["rx_window_update"] = f["rx_frames"] = 0


def import_(c, f) -> None:
    """Copy row ``f`` back into connection ``c`` (the fields the kernels may change)."""
    c.snd_una, c.snd_nxt = int(f["snd_una"]), int(f["snd_nxt"])
    c.snd_wnd, c.snd_wl1, c.snd_wl2 = int(f["snd_wnd"]), int(f["snd_wl1"]), int(f["snd_wl2"])
    c.max_snd_wnd = int(f["max_snd_wnd"])
    c.ts_recent, c.ts_recent_time = int(f["ts_recent"]), float(f["ts_recent_time"])
    rtt = c.rtt
    srtt = float(f["srtt"])
    rtt.srtt = None if math.isnan(srtt) else srtt
    rtt.rttvar, rtt.base_rto, rtt.backoff = float(f["rttvar"]), float(f["base_rto"]), int(f["backoff"])
    c.rtt_seq = None if f["rtt_seq"] == NONE else int(f["rtt_seq"])
    cc = c.cc
    cc.cwnd, cc.ca_bytes = int(f["cwnd"]), int(f["ca_bytes"])
    t = float(f["t_rexmit"])
    c.t_rexmit = None if t == INF else t
    c.last_rx = float(f["last_rx"])
    counters = c.counters
    for name in ("rx_hp_ack", "rx_window_update"):
        if f[name]:
            counters[name] += int(f[name])
            f[name] = 0
    f["rx_frames"] = 0
