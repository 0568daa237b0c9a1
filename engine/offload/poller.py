"""The NIC + Stack poller of the engine loop, and the stack -> QP event translation.

Each call of :meth:`OffloadPoller.poll` (once per engine-loop iteration, after the
request rings were served) runs rounds of: frames in from the NIC, due timers, frames
out (``stack.poll_transmit``: where host memory is gathered into frames), stack events
turned into QP events. Between rounds it serves the request rings and the
receive-buffer doorbells again (a request posted during a long round waits one round,
not the whole pass). It stops when a round did nothing (the loopback wire delivers a
frame sent in one round to the next one) or after ``MAX_ROUNDS``. Output runs only
when frames came in, a timer fired or a request/doorbell changed a connection (a
"kick"), so an idle pass of a busy-polling engine does not walk every connection; and
the Stack's output tracking (engine/tcp/tracking.py: each kick names its connection)
makes that output poll only the connections that changed, or nothing at all when none
has anything to send (an rr request whose ACK is delayed). Interrupts: the loop
raises each QP's interrupt after its pollers, when the host armed it and moderation
allows (engine/interrupts.py), so a host sleeping on a CONNECT, an ACCEPT_READY, a
SEND_SPACE or receive data is woken, and nobody else is; the poller also runs that
check (``raise_interrupts``) right after a round's input and its event translation,
so a sleeping host is not kept waiting for the rest of the pass (~80 us per rr leg).

Event rules (ARCHITECTURE.md): a completed handshake answers the CONNECT; a child
joining a listener's accept queue posts ACCEPT_READY; a FIN posts the partly filled
receive buffer, then PEER_CLOSED; RST / refusal / time-out answer a pending CONNECT or
post RESET with the errno; acknowledged bytes move the counter (host_buffers.py), and
post SEND_SPACE only for a writer that asked. Acked bytes also finish a lingering CLOSE.
"""
from __future__ import annotations

import errno
import time
from collections import Counter

import numpy as np

from engine.tcp.events import (Closed, DataReceived, Established, PeerClosed, Refused,
                               Reset, SendAcked, TimedOut)
from engine.tcp.connection import Connection
from engine.tcp.listener import Listener
from engine.tcp.states import State
from toad import layout

from .handlers import Handlers, complete_cookie
from .host_buffers import HostSendBuffer, RxPool
from .sockets import CONNECTED, SocketTable, release

MAX_ROUNDS = 16
MAX_FRAMES = 64
# Timers wait while frames that reached the NIC are not taken in yet: the engine runs
# both ends of a loopback wire, and an overloaded engine (10,000 connections' delayed
# ACKs queued behind each other) fired its senders' RTOs at ACKs waiting in its own
# backlog. At most this long (a NIC that never drains).
MAX_TIMER_DEFER_S = 0.5
ERRNO_OF = {Reset: errno.ECONNRESET, Refused: errno.ECONNREFUSED, TimedOut: errno.ETIMEDOUT}


class OffloadPoller:
    """Owns the Stack and the NIC; serves every QP's sockets."""

    def __init__(self, config, stack, nic, clock=time.perf_counter, raise_interrupts=None,
                 service_requests=None, rx_doorbells=None):
        self.config = config
        self.stack = stack
        self.nic = nic
        self.pool = stack.pool                  # the NIC fills it, the stack builds in it
        self.rx_slots = np.empty(MAX_FRAMES, np.int32)
        self.clock = clock
        self.counters: Counter = Counter()
        self.table = SocketTable()
        self.handlers = Handlers(self)
        self.kicked = False           # a handler changed a connection: run output
        # the Stack polls only the connections it or we marked (Stack.mark): every
        # kick names the connection it changed (None: walk them all)
        self.tracking = hasattr(stack, "output_tracking")
        if self.tracking:
            stack.output_tracking = True
        self.timer_at = None          # the stack's next deadline (recomputed on work)
        self.pools: dict = {}         # qp -> RxPool (receive windows share the pool)
        self.window_bytes = config.tcp.recv_buffer_bytes
        # the loop's interrupt check (Engine.raise_interrupts), run as soon as a round
        # posted events: a host sleeping on them wakes before the round's output and
        # the further rounds (ACKs crossing the wire) are done
        self.raise_interrupts = raise_interrupts
        # the loop's request-ring pass (Engine.service_all), run between rounds with
        # the receive-buffer doorbells: a request the host posted while a round was
        # busy (e.g. an rr response posted while the engine handled the ACK of the
        # request) is picked up at the next round, not after the whole pass
        self.service_requests = service_requests
        # the QPs whose host rang the receive-buffer doorbell since the last call
        # (Engine.rx_doorbells): it read data, windows may reopen
        self.rx_doorbells = rx_doorbells

    # ---- set-up ------------------------------------------------------------------
    def on_attach(self, qp) -> None:
        qp.reclaim_hooks.append(self.reclaim)
        self.pools[qp] = RxPool(qp, self.window_bytes, self.config.engine.staging_bytes,
                                self.counters)

    def kick(self, conn=None) -> None:
        """A request changed ``conn`` (None: some connections, not said which): its
        output runs in this pass."""
        self.kicked = True
        if self.tracking:
            self.stack.mark(conn)

    # ---- the poller interface ---------------------------------------------------
    def poll(self, now: float) -> bool:
        # the idle case first: no frame in, no request changed a connection, no host
        # returned buffers (the loop's scan saw the doorbells), no timer or delayed post
        frames = self.nic.receive_burst(now, self.pool, self.rx_slots)
        rung = self.rx_doorbells(False) if self.pools and self.rx_doorbells else ()
        if not (frames or rung or self.kicked or self.table.delayed
                or (self.timer_at is not None and now >= self.timer_at)):
            return False
        return self._pass(now, frames, rung)

    def _pass(self, now: float, frames: int, rung) -> bool:
        """Rounds of input, timers, output and events until one does nothing.
        ``frames``: how many the NIC put in ``rx_slots`` (this round's input)."""
        stack, nic, pool, rx_slots = self.stack, self.nic, self.pool, self.rx_slots
        changed = worked = self.kicked
        self.kicked = False
        service = self.service_requests
        out = None
        # windows reopen before this pass's input and output (its kicks are the
        # pass's output)
        if rung and self.notify_read(rung, now):
            worked = changed = True
            self.kicked = False
        for round_no in range(MAX_ROUNDS):
            if round_no:
                now = self.clock()
                served = service is not None and service(int(now * 1e9))
                # returned buffers (window updates) wait while a request's output or
                # frames just sent are in flight: they and their interrupt come first
                if served:
                    worked = True
                elif self.pools and not out and self.check_rx_doorbells(now):
                    worked = True
                if self.kicked:           # a request or a window update is due
                    self.kicked = False
                    changed = True
                frames = nic.receive_burst(now, pool, rx_slots)
            if frames:
                stack.receive_frames(pool, rx_slots, frames, now)   # and released
            if frames and self.raise_interrupts is not None:
                self.raise_interrupts(int(now * 1e9))   # RECV_DATA posted on input
            if self.timer_at is not None and now >= self.timer_at and (
                    now - self.timer_at >= MAX_TIMER_DEFER_S or not nic.due(now)):
                stack.on_timer(now)
                changed = True
            # Output only when something could have changed what a connection may
            # send: frames in, a timer, a request (kick). An idle pass then costs no
            # walk over the connections.
            # With tracking, the Stack also knows when none of them has anything new
            # (e.g. after a data segment whose ACK is delayed): no call at all.
            out = (stack.poll_transmit(now) if (frames or changed) and (
                not self.tracking or stack.output_due()) else None)
            if out:
                nic.send_burst(pool, out, len(out))
            events = stack.events()
            if events:
                self.translate(events)
                if self.raise_interrupts is not None:
                    self.raise_interrupts(int(now * 1e9))
            if not (frames or out or events or changed):
                break
            worked = True
            changed = False
        if self.table.delayed:
            worked |= self.post_delayed(now)
        if worked:
            self.timer_at = stack.next_deadline()
        return worked

    def next_deadline(self):
        times = [t for t in (self.timer_at, self.nic.next_deadline()) if t is not None]
        for sock in self.table.delayed:
            first = sock.recv_buffer.first_at
            if first is not None:
                times.append(first + sock.policy.delay_s)
        return min(times) if times else None

    # ---- receive side ------------------------------------------------------------
    def check_rx_doorbells(self, now: float, fresh: bool = True) -> bool:
        """The host returned anonymous buffers (it read data): reopen windows.
        ``fresh`` False: the doorbells the loop's scan found this iteration."""
        rung = self.rx_doorbells(fresh) if self.rx_doorbells is not None else []
        return self.notify_read(rung, now)

    def notify_read(self, rung, now: float) -> bool:
        """Buffers came back to the QPs in ``rung``: place the bytes staged in engine
        memory, then tell the connections that offered less than half their window
        (RxPool.low; the others owe no window update for a read)."""
        for qp in rung:
            pool = self.pools.get(qp)
            if pool is None:
                continue
            if pool.stalled:              # staged bytes first: they are the oldest
                pool.drain()
            if not pool.low:
                continue
            low, pool.low = pool.low, {}
            for receiver in low:
                conn = receiver.connection
                if receiver.detached:
                    continue
                if conn is None:                  # a child not accepted yet: kept
                    pool.low[receiver] = None
                    continue
                if conn.flow >= 0 and type(conn) is not Connection:
                    # the compiled fast path holds it: its row has no receive ring
                    # for host buffers, so its window test would see none free
                    conn.fast.reclaim(conn)
                conn.notify_read(now)             # (back in pool.low while still low)
                if conn.ack_now:      # a window update is due: run output next pass
                    self.kick(conn)
        return bool(rung)

    def post_delayed(self, now: float) -> bool:
        done = [s for s in self.table.delayed if s.recv_buffer.first_at is None
                or s.recv_buffer.delay_due(now)]
        for sock in done:
            self.table.delayed.discard(sock)
            if sock.recv_buffer.first_at is not None:
                sock.recv_buffer.flush()
                self.counters["rx_posted_by_delay"] += 1
        return bool(done)

    # ---- stack events -> QP events --------------------------------------------------
    def translate(self, events: list) -> None:
        by_stack = self.table.by_stack
        for obj, event in events:
            sock = by_stack.get(obj)
            if sock is None:
                continue                  # the host already forgot this connection
            kind = type(event)
            if kind is DataReceived:
                if sock.policy.delay_s > 0 and sock.recv_buffer.first_at is not None:
                    self.table.delayed.add(sock)
            elif kind is SendAcked:
                self.on_acked(sock)
            elif kind is Established:
                self.on_established(obj, sock)
            elif kind is PeerClosed:
                sock.recv_buffer.flush(True)
                sock.qp.post_event(layout.EV_PEER_CLOSED, conn=sock.conn_id)
            elif kind is Closed:
                self.on_closed(obj, sock)
            else:
                self.on_failed(obj, sock, kind)

    def on_acked(self, sock) -> None:
        acked = sock.send_buffer.acked
        target = sock.space_target
        if target is not None and acked >= target:
            sock.space_target = None
            sock.qp.post_event(layout.EV_SEND_SPACE, conn=sock.conn_id, value=acked)
        if sock.close_cookie is not None and len(sock.send_buffer) == 0:
            self.finish_close(sock)

    def on_established(self, obj, sock) -> None:
        if isinstance(obj, Listener):
            sock.qp.post_event(layout.EV_ACCEPT_READY, conn=sock.conn_id)
            return
        sock.state = CONNECTED
        if sock.connect_cookie is not None:
            complete_cookie(sock.qp, sock, sock.connect_cookie, value=sock.conn_id)
            sock.connect_cookie = None

    def on_failed(self, obj, sock, kind) -> None:
        status = getattr(obj, "error", None) or ERRNO_OF.get(kind, errno.ECONNRESET)
        sock.error = status
        if sock.connect_cookie is not None:
            complete_cookie(sock.qp, sock, sock.connect_cookie, status=status)
            sock.connect_cookie = None
            return
        sock.recv_buffer.flush(True)
        sock.qp.post_event(layout.EV_RESET, conn=sock.conn_id, status=status)
        if sock.space_target is not None:
            sock.space_target = None
            sock.qp.post_event(layout.EV_SEND_SPACE, conn=sock.conn_id, status=status)

    def on_closed(self, obj, sock) -> None:
        """The TCB is freed; the id lives on until the host's CLOSE."""
        self.table.unbind_stack(obj)
        if sock.connect_cookie is not None:   # closed without a reason: still a failure
            complete_cookie(sock.qp, sock, sock.connect_cookie, status=errno.ECONNABORTED)
            sock.connect_cookie = None
        if sock.close_cookie is not None:
            self.finish_close(sock)
        elif sock.space_target is not None:
            sock.space_target = None
            sock.qp.post_event(layout.EV_SEND_SPACE, conn=sock.conn_id,
                               status=sock.error or errno.EPIPE)

    def finish_close(self, sock) -> None:
        """Answer a CLOSE: the host may now free the connection's send buffers."""
        cookie, sock.close_cookie = sock.close_cookie, None
        if sock.conn is not None:
            self.table.unbind_stack(sock.conn)
        release(sock.qp, sock, self.table)
        complete_cookie(sock.qp, sock, cookie)

    # ---- a QP goes away ----------------------------------------------------------
    def reclaim(self, qp) -> None:
        """The host detached or died with these sockets open: they are closed as Linux
        closes a dead process's sockets (orphan), its listeners closed (children not
        accepted yet are reset)."""
        now = self.clock()
        self.pools.pop(qp, None)
        for sock in list(qp.connections.values()):
            if sock is None:
                continue
            if sock.listener is not None:
                self.table.unbind_stack(sock.listener)
                self.stack.close_listener(sock.listener)
            if sock.conn is not None:
                self.table.unbind_stack(sock.conn)
                self.orphan(sock, now)
            if sock.recv_buffer is not None:
                sock.recv_buffer.detach()
            if sock.send_buffer is not None:
                sock.send_buffer.detach()
            self.table.lingering.discard(sock)
            self.table.delayed.discard(sock)
            self.handlers._unbind_port(sock)
        # what is due goes out now (RSTs; FINs and data of connections whose bytes
        # fit the peer's window), before the QP's memory is unmapped
        if self.tracking:
            self.stack.mark(None)
        out = self.stack.poll_transmit(now)
        self.nic.send_burst(self.pool, out, len(out))
        self.translate(self.stack.events())   # this QP's objects are unbound: skipped
        self.kick()

    def orphan(self, sock, now: float) -> None:
        """Close ``sock``'s connection for a host that is gone, as Linux's tcp_close
        for a process that exits: unread received data resets it (RST: those bytes
        are thrown away), else the bytes the host had handed over (its send ring:
        already "sent" for it) are copied out of its memory before that goes and are
        delivered, then FIN. A handshake still in progress is dropped. A connection
        the host had closed itself (its CLOSE waits for acks) just keeps going."""
        conn = sock.conn
        if conn.state is State.CLOSED:
            return
        closed_by_host = sock.close_cookie is not None
        if sock.state is not CONNECTED or not closed_by_host and sock.recv_buffer.unread():
            conn.abort(now)
            self.counters["reset_on_reclaim"] += 1
            return
        # (the read takes the connection back from the fast path, if it held it)
        if isinstance(conn.send_buffer, HostSendBuffer):
            conn.send_buffer = conn.send_buffer.copy_out()
        conn.close(now)
        self.kick(conn)
        self.counters["closed_on_reclaim"] += 1

    def sizes(self) -> dict:
        """Table sizes for leak checks (logged by the engine at exit)."""
        out = self.table.sizes()
        out["tcbs"] = len(self.stack.table)
        out["listeners"] = len(self.stack.listeners)
        out["bound_ports"] = len(self.handlers.bound_ports)
        out["qp_connections"] = sum(len(qp.connections) for qp in self.pools)
        return out

    def summary(self) -> dict:
        """Tables, offload counters and stack counters, for logs and tests."""
        wire = getattr(self.nic, "wire_counters", None)
        return {"tables": self.sizes(), "offload": dict(self.counters),
                "stack": dict(self.stack.counters), "wire": dict(wire or {}),
                "connections": dict(self.stack.connection_counters())}
