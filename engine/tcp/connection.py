"""One TCP connection (the TCB) and its public API (docs/stack-api.md).

The connection does no I/O and reads no clock: the caller feeds it segments
(``on_segment``), the time (``on_timer``) and user calls, and reads back segments
(``poll_transmit``), events (``next_event``) and the next deadline. The work is
split as FreeBSD splits it: input processing in ``tcp_input``, segment building in
``tcp_output`` (the only place segments are made), timers in ``timers``, the
state tables in ``states``; this module holds the TCB, the user calls and the
lifecycle helpers (enter CLOSED, queue an RST, report an error).
"""
from __future__ import annotations

import errno as errno_mod
from collections import Counter, deque

from . import cc as cc_mod
from . import tcp_input, tcp_output, timers
from .buffers import ByteRecvBuffer, ByteSendBuffer
from .events import CLOSED, TcpEvent, DataReceived, SendAcked
from .reassembly import Reassembly
from .rtt import RttEstimator
from .sack import ReceiverBlocks, Scoreboard
from .seq import MASK, seq_add, seq_diff, seq_gt
from .states import ABORT_SENDS_RST, CAN_QUEUE_DATA, ON_SHUTDOWN, State
from .wire.tcp import ACK, RST, SYN, TcpRepr

MIN_MSS = 64                   # floor for a peer's MSS option (RFC 9293 allows any)
DEFAULT_PEER_MSS = 536         # RFC 9293 3.7.1: MSS assumed when the option is absent


def ts_origin(iss: int) -> int:
    """A connection's TSval origin: per connection, from its ISS (RFC 7323 5.4)."""
    return (iss * 2654435761) & MASK


def choose_window_shift(capacity: int) -> int:
    """The smallest RFC 7323 shift that lets ``capacity`` be advertised (max 14)."""
    shift = 0
    while shift < 14 and (capacity >> shift) > 0xFFFF:
        shift += 1
    return shift


class Connection:
    __slots__ = (
        "config", "local", "remote", "state", "passive", "counters", "error",
        # send sequence space (RFC 9293 3.3.1); snd_max is BSD's highest sent
        "iss", "snd_una", "snd_nxt", "snd_max", "snd_wnd", "snd_wl1", "snd_wl2",
        "max_snd_wnd", "snd_scale", "syn_acked", "fin_queued", "fin_seq", "fin_acked",
        # receive sequence space
        "irs", "rcv_nxt", "rcv_adv", "rcv_scale", "rcv_cap", "last_ack_sent",
        # buffers and queues
        "send_buffer", "recv_buffer", "reasm", "rx_blocks", "scoreboard", "ctl_out", "events",
        # segment sizes
        "our_mss", "peer_mss", "eff_mss", "tso_max",
        # options
        "ws_enabled", "ts_enabled", "ts_recent", "ts_recent_time", "ts_offset", "sack_enabled",
        # retransmission, RTT, congestion control
        "rtt", "rtt_seq", "rtt_time", "cc", "dupacks", "in_recovery", "recover",
        "rexmit_next", "rexmit_una_pending", "retries",
        # timers (absolute deadlines or None) and output requests
        "t_rexmit", "t_delack", "t_persist", "t_timewait", "persist_shift", "force_probe",
        "last_rx", "keepalive_probes", "ack_now", "window_update_only", "acks_owed", "delack_bytes",
        # user side
        "nodelay", "user_closed", "header_prediction", "bytes_acked", "rx_pending",
        "acked_dirty", "closed_reported", "challenge_start", "challenge_count",
        # the fast path (engine/fast): its row, and the FastPath while it owns the row
        "flow", "fast",
    )

    def __init__(self, config, local, remote, iss, now, send_buffer=None, recv_buffer=None,
                 mss=1460, tso_max=0):
        if not MIN_MSS <= mss <= 65495:
            raise ValueError(f"mss: {mss} must be {MIN_MSS}..65495 (MTU - 40)")
        if tso_max < 0 or tso_max > 0xFFFFF:
            raise ValueError(f"tso_max: {tso_max} must be 0 (no TSO) or a segment size in bytes")
        self.config = config
        self.local = local
        self.remote = remote
        self.state = State.CLOSED
        self.passive = False
        self.counters: Counter = Counter()
        self.error: int | None = None
        self.events: deque = deque()
        self.ctl_out: list[TcpRepr] = []
        self.init_sequence_space(iss & MASK)
        self.init_buffers(send_buffer, recv_buffer)
        self.init_segments(mss, tso_max, now)
        self.init_recovery()
        self.init_timers(now)
        self.nodelay = not config.nagle
        self.user_closed = False
        self.header_prediction = config.header_prediction
        self.bytes_acked = 0
        self.rx_pending = 0
        self.acked_dirty = False
        self.closed_reported = False
        self.flow = -1
        self.fast = None

    def init_sequence_space(self, iss: int) -> None:
        self.iss = iss
        self.snd_una = self.snd_nxt = self.snd_max = iss
        self.snd_wnd = self.max_snd_wnd = 0
        self.snd_wl1 = self.snd_wl2 = 0
        self.snd_scale = 0
        self.syn_acked = False
        self.fin_queued = False
        self.fin_seq: int | None = None
        self.fin_acked = False
        self.irs = self.rcv_nxt = self.rcv_adv = self.last_ack_sent = 0

    def init_buffers(self, send_buffer, recv_buffer) -> None:
        config = self.config
        self.send_buffer = send_buffer if send_buffer is not None else ByteSendBuffer(
            config.send_buffer_bytes)
        self.recv_buffer = recv_buffer if recv_buffer is not None else ByteRecvBuffer(
            config.recv_buffer_bytes)
        self.rcv_cap = max(self.recv_buffer.free_space(), 1)
        # The shift is fixed at the SYN: size it for the configured buffer even when an
        # engine's buffer pool is short at this moment.
        self.rcv_scale = (choose_window_shift(max(self.rcv_cap, config.recv_buffer_bytes))
                          if config.window_scale else 0)
        self.reasm = Reassembly()
        self.rx_blocks = ReceiverBlocks()
        self.scoreboard = Scoreboard()

    def init_segments(self, mss: int, tso_max: int, now: float) -> None:
        """Sizes before the peer's SYN is known, and the options' state."""
        self.our_mss = mss
        self.peer_mss = DEFAULT_PEER_MSS
        self.eff_mss = min(mss, DEFAULT_PEER_MSS)
        self.tso_max = tso_max
        self.ws_enabled = False
        self.ts_enabled = False
        self.ts_recent = 0
        self.ts_recent_time = now
        self.ts_offset = ts_origin(self.iss)
        self.sack_enabled = False

    def init_recovery(self) -> None:
        config = self.config
        self.rtt = RttEstimator(config.rto_initial_ms / 1000, config.rto_min_ms / 1000,
                                config.rto_max_ms / 1000)
        self.rtt_seq: int | None = None
        self.rtt_time = 0.0
        self.cc = cc_mod.create(config.cc, self.eff_mss)
        self.dupacks = 0
        self.in_recovery = False
        self.recover = self.iss
        self.rexmit_next = self.iss
        self.rexmit_una_pending = False
        self.retries = 0

    def init_timers(self, now: float) -> None:
        self.t_rexmit = self.t_delack = self.t_persist = self.t_timewait = None
        self.persist_shift = 0
        self.force_probe = False
        self.last_rx = now
        self.keepalive_probes = 0
        self.ack_now = False
        self.window_update_only = False            # ack_now only for notify_read's update
        self.acks_owed = 0                         # duplicate ACKs for out-of-order segments
        self.delack_bytes = 0
        self.challenge_start = now
        self.challenge_count = 0

    def __repr__(self) -> str:
        return (f"<Connection {self.local}->{self.remote} {self.state.value} "
                f"una={self.snd_una} nxt={self.snd_nxt} rcv_nxt={self.rcv_nxt}>")

    # -- opening ---------------------------------------------------------------------

    def open_active(self, now: float) -> None:
        """CLOSED -> SYN-SENT; the SYN goes out at the next poll_transmit."""
        if self.state is not State.CLOSED or self.syn_acked:
            raise ValueError(f"open_active: connection is {self.state.value}, not a new one")
        self.state = State.SYN_SENT
        self.counters["active_opens"] += 1

    @classmethod
    def from_syn(cls, config, local, remote, syn: TcpRepr, iss, now, send_buffer=None,
                 recv_buffer=None, mss=1460, tso_max=0) -> "Connection":
        """A passive open: the TCB for an arriving SYN, in SYN-RECEIVED."""
        conn = cls(config, local, remote, iss, now, send_buffer, recv_buffer, mss, tso_max)
        conn.passive = True
        conn.state = State.SYN_RECEIVED
        conn.accept_syn(syn, now)
        conn.counters["passive_opens"] += 1
        if syn.payload:
            conn.counters["rx_syn_data_ignored"] += 1   # not acknowledged: the peer resends
        return conn

    def synack_sent_statelessly(self, window: int, rcv_scale: int) -> None:
        """Our SYN-ACK went out before this TCB existed (a SYN cookie: engine/tcp/
        syncookies.py), with ``window`` and, if window scaling is on, ``rcv_scale``:
        the state build_syn leaves, so the ACK of it is processed as usual."""
        if self.ws_enabled:
            self.rcv_scale = rcv_scale
        self.snd_nxt = self.snd_max = (self.iss + 1) & MASK
        self.rcv_adv = (self.rcv_nxt + window) & MASK
        self.last_ack_sent = self.rcv_nxt
        self.counters["syncookie_opens"] += 1

    def accept_syn(self, syn: TcpRepr, now: float) -> None:
        """Take the peer's ISN and options (MSS, window scale, SACK, timestamps)."""
        config = self.config
        self.irs = syn.seq
        self.rcv_nxt = self.rcv_adv = self.last_ack_sent = seq_add(syn.seq, 1)
        peer_mss = syn.mss if syn.mss else DEFAULT_PEER_MSS
        if peer_mss < MIN_MSS:
            self.counters["rx_syn_mss_clamped"] += 1
            peer_mss = MIN_MSS
        self.peer_mss = peer_mss
        self.ws_enabled = bool(config.window_scale and syn.window_scale is not None)
        if self.ws_enabled:
            self.snd_scale = min(syn.window_scale, 14)
        else:
            self.snd_scale = self.rcv_scale = 0
        self.ts_enabled = bool(config.timestamps and syn.timestamp is not None)
        if self.ts_enabled:
            self.ts_recent = syn.timestamp[0]
            self.ts_recent_time = now
        self.sack_enabled = bool(config.sack and syn.sack_permitted)
        self.eff_mss = max(min(peer_mss, self.our_mss) - (12 if self.ts_enabled else 0), MIN_MSS)
        self.cc.set_mss(self.eff_mss)
        self.snd_wnd = self.max_snd_wnd = syn.window     # never scaled in a SYN
        self.snd_wl1 = syn.seq
        self.snd_wl2 = syn.ack

    # -- driving (sans-IO) -----------------------------------------------------------

    # on_segment(seg, now) and poll_transmit(now) -> list[TcpRepr]: the input and
    # output modules' functions bound as methods (no wrapper call per segment).
    on_segment = tcp_input.segment_arrives
    poll_transmit = tcp_output.output

    def on_timer(self, now: float) -> None:
        timers.on_timer(self, now)

    def next_deadline(self) -> float | None:
        return timers.next_deadline(self)

    def next_event(self) -> TcpEvent | None:
        if not self.events:
            self.flush_counts()
            if not self.events:
                return None
        return self.events.popleft()

    def flush_counts(self) -> None:
        """Turn bytes counted per segment into (at most) one event of each kind."""
        if self.rx_pending:
            self.events.append(DataReceived(self.rx_pending))
            self.rx_pending = 0
        if self.acked_dirty:
            self.events.append(SendAcked(self.bytes_acked))
            self.acked_dirty = False

    def emit(self, event: TcpEvent) -> None:
        """Queue an event after the byte counts it must follow."""
        self.flush_counts()
        self.events.append(event)

    # -- user calls ------------------------------------------------------------------

    def send(self, data) -> int:
        """Append to the send buffer; returns the bytes taken (0 when it is full)."""
        self.check_can_send()
        return self.send_buffer.append(data)

    def check_can_send(self) -> None:
        if self.state in CAN_QUEUE_DATA and not self.fin_queued:
            return
        if self.error is not None:
            raise OSError(self.error, f"connection failed: {errno_mod.errorcode[self.error]}")
        raise BrokenPipeError(errno_mod.EPIPE, "connection closed for sending")

    def notify_appended(self, now: float) -> None:
        """The engine's send buffer grew by itself; the next poll sends it."""
        self.check_can_send()

    def notify_read(self, now: float) -> None:
        """The reader freed receive space: ask for a window update if it opened enough."""
        if self.state is State.CLOSED or not self.syn_acked and self.state is State.SYN_SENT:
            return
        if tcp_output.window_opens(self):
            if not self.ack_now:
                self.window_update_only = True
            self.ack_now = True
            self.counters["tx_window_update_requested"] += 1

    def set_nodelay(self, on: bool) -> None:
        self.nodelay = bool(on)

    def shutdown(self, now: float) -> None:
        """No more data from us: a FIN follows the queued data (RFC 9293 3.10.4)."""
        if self.fin_queued:
            return
        nxt = ON_SHUTDOWN.get(self.state)
        if nxt is None:
            return
        if nxt is State.CLOSED:
            self.enter_closed()
            return
        self.fin_queued = True
        self.state = nxt

    def close(self, now: float) -> None:
        """shutdown(), and the application reads no more: later data gets an RST."""
        self.user_closed = True
        self.shutdown(now)

    def abort(self, now: float) -> None:
        """Drop the connection, sending an RST where the peer has a TCB (3.10.5)."""
        if self.state in ABORT_SENDS_RST:
            self.queue_rst(self.snd_max, self.rcv_nxt, with_ack=True)
            self.counters["tx_rst_abort"] += 1
        if self.state is not State.CLOSED:
            self.enter_closed()

    # -- read-only views -------------------------------------------------------------

    def syn_reopens_time_wait(self, syn: TcpRepr) -> bool:
        """Whether a new SYN may take over this TIME-WAIT 4-tuple (RFC 6191 with
        timestamps, else RFC 1122 4.2.2.13: its sequence number is above RCV.NXT).
        The Stack asks before ``on_segment``; if True it frees this TCB and hands the
        SYN to the listener. Otherwise ``on_segment`` answers with a challenge ACK."""
        if self.state is not State.TIME_WAIT or syn.flags & (SYN | ACK | RST) != SYN:
            return False
        if self.ts_enabled and syn.timestamp is not None:
            return seq_gt(syn.timestamp[0], self.ts_recent)
        return seq_gt(syn.seq, self.rcv_nxt)

    @property
    def effective_mss(self) -> int:
        return self.eff_mss

    @property
    def gso_size(self) -> int:
        return self.eff_mss

    @property
    def cwnd(self) -> int:
        return self.cc.cwnd

    # -- lifecycle helpers used by input, output and timers ---------------------------

    def queue_rst(self, seq: int, ack: int, with_ack: bool) -> None:
        self.ctl_out.append(TcpRepr(self.local[1], self.remote[1], seq & MASK,
                                    ack & MASK if with_ack else 0,
                                    RST | ACK if with_ack else RST, 0))

    def fail(self, event: TcpEvent, errno_name: str | None) -> None:
        """Report ``event`` with ``conn.error`` set, then close."""
        if errno_name is not None:
            self.error = getattr(errno_mod, errno_name)
        self.emit(event)
        self.enter_closed()

    def enter_closed(self) -> None:
        """CLOSED: timers off, queues dropped, ``Closed`` reported once."""
        if self.closed_reported:
            return
        self.closed_reported = True
        self.state = State.CLOSED
        self.t_rexmit = self.t_delack = self.t_persist = self.t_timewait = None
        self.ack_now = False
        self.reasm.drop_all()
        self.emit(CLOSED)
        self.counters["closed"] += 1

    def enter_time_wait(self, now: float) -> None:
        self.state = State.TIME_WAIT
        self.t_rexmit = self.t_persist = None
        if self.config.time_wait_s <= 0:
            if self.ack_now:                        # the ACK of the peer's FIN still goes out
                self.ctl_out.append(tcp_output.build(self, self.snd_max, ACK, b"", now))
            self.enter_closed()
        else:
            self.t_timewait = now + self.config.time_wait_s
