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

A few reads are answered without reclaiming (:data:`FAST_READS`): the state
(ESTABLISHED while fast), the receive buffer (a :class:`FastRecvRing`, which keeps
its fill in step with the row the kernel places into), whether an ACK is owed, and
``notify_read`` (the kernel's window-update test); the send ring likewise. So an
application that reads what the kernel placed, frees window or fills the send ring
does not pull its connection out of the fast path. Buffers the kernels do not
place into or send from (an offload connection's host buffers) are Python's: a
read of them, or of ``notify_read``, reclaims.

The kernels hand a connection back themselves (owner ``SLOW``, mark ``HANDBACK``)
when a frame needs the slow path or its output is due; :meth:`FastPath.settle`
reclaims those after the burst, before Python sees that frame. ACKs the kernels
owe go out from :meth:`FastPath.transmit`, called by the Stack's poll_transmit.
"""
from __future__ import annotations

import math

import numpy as np

from engine.offload.host_buffers import HostSendBuffer
from engine.tcp.buffers import ByteRecvBuffer, ByteSendBuffer, _Ring
from engine.tcp.connection import Connection
from engine.tcp.events import DataReceived, SendAcked
from engine.tcp.states import State
from toad.rings.bus import charge_reads

from . import rx, tx
from .flows import (
    CONN_COUNTERS,
    CSUM_FULL,
    CSUM_NONE,
    CSUM_PARTIAL,
    FAST,
    INF,
    NONE,
    SLOW,
    TX_RANGES,
    FlowTable,
    due_entry,
    earliest_entry,
)

ESTAB = State.ESTABLISHED
MASK = 0xFFFFFFFF
BURST = 256                       # frames per kernel call
TX_SLOTS = 1024                   # frames per transmit kernel call


class FastOwned(Connection):
    """A connection whose fields the kernels own: an attribute read reclaims it,
    except the reads in :data:`FAST_READS`."""

    __slots__ = ()

    def __getattribute__(self, name):
        get = object.__getattribute__
        answer = FAST_READS.get(name)
        if answer is not None:
            return answer(self, get)
        get(self, "fast").reclaim(self)
        return get(self, name)


def _read_done(conn, get):
    fast = get(conn, "fast")
    if type(get(conn, "recv_buffer")) is not FastRecvRing:   # Python's window rule
        fast.reclaim(conn)
        return get(conn, "notify_read")

    def read_done(now):
        if type(conn) is FastOwned:
            fast.read_done(conn)
        else:              # reclaimed between the read and the call (an argument's read)
            Connection.notify_read(conn, now)
    return read_done


def _recv_buffer(conn, get):
    ring = get(conn, "recv_buffer")
    if type(ring) is not FastRecvRing:        # Python reads and writes it: Python's
        get(conn, "fast").reclaim(conn)
    return ring


def _send(conn, get):
    ring = get(conn, "send_buffer")
    if type(ring) is not FastSendRing:
        get(conn, "fast").reclaim(conn)       # an offload buffer: Python sends
        return get(conn, "send")

    def send(data):
        if type(ring) is FastSendRing:
            return ring.append(data)
        return Connection.send(conn, data)    # reclaimed between the read and the call
    return send


def _send_buffer(conn, get):
    ring = get(conn, "send_buffer")
    if type(ring) not in SENT_BY_KERNEL:      # Python adds to it: Python's again
        get(conn, "fast").reclaim(conn)
    return ring


def _nothing(*args) -> None:
    return None


# reads a fast connection answers without reclaiming: name -> (conn, getter) -> value
FAST_READS = {
    "state": lambda conn, get: ESTAB,
    "recv_buffer": _recv_buffer,
    "ack_now": lambda conn, get: bool(get(conn, "fast").acks_now[get(conn, "flow")]),
    "notify_read": _read_done,
    "send": _send,
    "check_can_send": lambda conn, get: _nothing,   # ESTABLISHED, no FIN queued
    "send_buffer": _send_buffer,
    "error": lambda conn, get: get(conn, "error"),    # (set only by Python's paths)
    "flow": lambda conn, get: get(conn, "flow"),
    "fast": lambda conn, get: get(conn, "fast"),
    "__class__": lambda conn, get: FastOwned,
}


class FastSendRing(ByteSendBuffer):
    """A connection's send ring while the transmit kernel reads it: Python appends
    (the row learns how much is held and the connection's output becomes due) and
    releases acknowledged bytes (the row learns the new head); the kernel only
    reads. ``fast_row`` is (FastPath, row)."""

    __slots__ = ()

    def append(self, data) -> int:
        n = self._put(data)
        if n:
            fast, row = self.fast_row
            fast.sends_held[row] += n
            if not fast.stack.output_tracking:    # else the caller marks it (Stack.mark)
                fast.due[row] = None
        return n

    def consume(self, n: int) -> None:
        self._drop(n)
        fast, row = self.fast_row
        fast.flows.rows["tx_head"][row] = self.head


class FastHostSend(HostSendBuffer):
    """An offload connection's send buffer while the transmit kernel reads it: the
    host's ranges (at most TX_RANGES of them) mirrored into the row's tx_ranges after
    every change; more ranges hand the connection back to Python. ``fast_row`` is
    (FastPath, row); the engine marks output due (the request handler's kick)."""

    __slots__ = ()

    def add(self, offset: int, length: int) -> None:
        HostSendBuffer.add(self, offset, length)
        self.mirror()

    def consume(self, n: int) -> None:
        HostSendBuffer.consume(self, n)
        self.mirror()

    def mirror(self) -> None:
        fast, row = self.fast_row
        f = fast.flows.rows[row]
        f["send_held"] = self.size
        ranges = self.ranges
        if len(ranges) > TX_RANGES:
            fast.reclaim(fast.conns[row])
            return
        f["tx_nranges"] = len(ranges)
        if ranges:
            fast.tx_ranges[row, :len(ranges)] = ranges


SENT_BY_KERNEL = (FastSendRing, FastHostSend)    # send buffers the kernel reads


class FastRecvRing(ByteRecvBuffer):
    """A connection's receive ring while the kernel places into it: the kernel adds
    to the row's ``rx_size``; Python moves the head and takes bytes out. Each call
    reads the fill from the row once first and writes head and fill back after.
    ``fast_row`` is (the rows' rx_size as a memoryview, their rx_head, row): an item
    of a memoryview costs a third of a numpy structured field's."""

    __slots__ = ()

    def __len__(self) -> int:
        sizes, _, row = self.fast_row
        return sizes[row]

    def free_space(self) -> int:
        sizes, _, row = self.fast_row
        return self.capacity - sizes[row]

    def read(self, n: int = -1) -> bytes:
        sizes, heads, row = self.fast_row
        self.size = sizes[row]
        if n < 0 or n > self.size:
            n = self.size
        out = b"".join(_Ring._views(self, 0, n))
        _Ring._drop(self, n)
        sizes[row], heads[row] = self.size, self.head
        return out

    def readinto(self, target) -> int:
        sizes, heads, row = self.fast_row
        self.size = sizes[row]
        dst = memoryview(target).cast("B")
        done = 0
        for part in _Ring._views(self, 0, len(dst)):
            dst[done:done + len(part)] = part
            done += len(part)
        _Ring._drop(self, done)
        sizes[row], heads[row] = self.size, self.head
        return done

    def write(self, data, push: bool = False) -> int:
        sizes, heads, row = self.fast_row
        self.size = sizes[row]
        n = _Ring._put(self, data, push)
        sizes[row], heads[row] = self.size, self.head
        return n

    def _views(self, offset: int, length: int) -> list:
        sizes, _, row = self.fast_row
        self.size = sizes[row]
        return _Ring._views(self, offset, length)

    def _drop(self, n: int) -> None:
        sizes, heads, row = self.fast_row
        self.size = sizes[row]
        _Ring._drop(self, n)
        sizes[row], heads[row] = self.size, self.head


def ordinary(c, stack) -> bool:
    """Whether only header prediction's cases can come next (the kernels' share):
    ESTABLISHED with timestamps, all data sent (or a send buffer the transmit kernel
    reads: an in-host ring, a few host ranges), nothing owed, queued or recovering,
    no timer but the retransmission and delayed-ACK timers, events drained, an
    accepted connection."""
    return (c.state is ESTAB and c.ts_enabled and c.header_prediction and c.syn_acked
            and not (c.fin_queued or c.user_closed or c.in_recovery or c.dupacks
                     or c.acks_owed or c.ctl_out or c.force_probe or c.ack_now
                     or c.rexmit_una_pending or c.retries or c.persist_shift
                     or c.keepalive_probes or c.events or c.rx_pending or c.acked_dirty
                     or c.window_update_only)
            and c.fin_seq is None and c.t_persist is None
            and c.t_timewait is None and c.snd_nxt == c.snd_max and c.snd_wnd > 0
            and not c.scoreboard.blocks and not c.reasm.blocks and c.reasm.fin_seq is None
            and c.config.keepalive_s is None
            and (len(c.send_buffer) <= ((c.snd_nxt - c.snd_una) & MASK)
                 or type(c.send_buffer) is ByteSendBuffer
                 or (type(c.send_buffer) is HostSendBuffer
                     and len(c.send_buffer.ranges) <= TX_RANGES))
            and c not in stack._owner)


class FastPath:
    """The flow table, the kernels' scratch arrays, and the hand-over."""

    def __init__(self, stack, capacity: int):
        self.stack = stack
        self.flows = FlowTable(capacity)
        # fields Python reads and writes per socket call, as memoryviews of the rows
        rows = self.flows.rows
        self.rx_sizes, self.rx_heads = memoryview(rows["rx_size"]), memoryview(rows["rx_head"])
        self.acks_now, self.sends_held = memoryview(rows["ack_now"]), memoryview(rows["send_held"])
        self.conns: list = [None] * capacity        # row -> its Connection
        self.acked_total: list = [0] * capacity     # row -> bytes acked (conn.bytes_acked)
        self.fast = 0                               # rows owned by the kernels
        self.marks = np.zeros(capacity, np.int64)
        self.touched = np.zeros(BURST, np.int64)
        self.verdict = np.zeros(BURST, np.int8)
        self.left = np.zeros(BURST, np.int32)       # a burst's slots left to Python
        self.burst_counters = np.zeros(3, np.int64)
        self.mac = int.from_bytes(stack.mac, "big")
        self.counters = stack.counters
        self.due: dict = {}                         # rows with output due (ordered set)
        self.due_rows = np.zeros(capacity, np.int64)
        self.handed = np.zeros(capacity, np.int64)
        self.ident = np.zeros(1, np.int64)          # the IPv4 identification counter
        self.tx_slots = np.zeros(TX_SLOTS, np.int32)     # the frames of one kernel call
        self.tx_state = np.zeros(3, np.int64)
        self.tx_ranges = np.zeros((capacity, TX_RANGES, 2), np.int64)
        self.tx_dma: list = [None] * capacity       # row -> its QP's Dma (host ranges)
        self.cooldown = [0] * capacity              # row -> offers left to sit out

    # ---- frames ------------------------------------------------------------------
    def receive(self, pool, slots, count: int, now: float) -> list:
        """Run the receive kernel over the frames in ``slots[:count]`` of frame pool
        ``pool`` (engine/frames.py), read where they lie in ``pool.data``; return the
        slots left to the Python stack, in order (their connections reclaimed). The
        slots stay the caller's."""
        if not self.fast:
            return slots[:count].tolist()
        left = []
        for first in range(0, count, BURST):
            left += self._burst(pool, slots[first:min(count, first + BURST)], now)
        return left

    def _burst(self, pool, slots, now: float) -> list:
        counters = self.burst_counters
        counters[:] = 0
        touched = rx.receive_entry(pool.data, pool.slot_bytes, slots, pool.length,
                                   pool.csum_ok, len(slots), self.verdict, self.left,
                                   self.flows.rows, self.flows.slots, self.stack.ip, self.mac,
                                   now, self.marks, self.touched, counters)
        if counters[rx.C_TCP_RX]:
            self.counters["ip.rx"] += int(counters[rx.C_IP_RX])
            self.counters["tcp.rx"] += int(counters[rx.C_TCP_RX])
            self.counters["fast.rx"] += int(counters[rx.C_TCP_RX])
        if touched:
            self.settle(touched)
        left = int(counters[rx.C_LEFT])
        return self.left[:left].tolist() if left else []

    def settle(self, touched: int) -> None:
        """After a burst: the events of the bytes placed and acknowledged (in the
        Stack's order: data first), rows handed back reclaimed, ACKs owed noted."""
        marks, rows, conns = self.marks, self.flows.rows, self.conns
        events = self.stack._events
        for row in self.touched[:touched].tolist():
            bits = int(marks[row])
            marks[row] = 0
            conn = conns[row]
            f = rows[row]
            if f["rx_pending"]:
                events.append((conn, DataReceived(int(f["rx_pending"]))))
                f["rx_pending"] = 0
            if f["acked"]:
                self.release_acked(row, conn)
            if bits & rx.HANDBACK:
                if f["reason"] == rx.R_DATA:
                    self.cooldown[row] = DATA_COOLDOWN
                reason = HANDBACK_REASONS.get(int(f["reason"]), "other")
                self.counters[f"fast.handback_{reason}"] += 1
                self.reclaim(conn)
                self.stack._due[conn] = None          # its output runs in this pass
            elif f["ack_now"] or bits & rx.OUTPUT:
                self.due[row] = None

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

    def mark(self, conn) -> bool:
        """Stack.mark of a fast connection: its output is due, the transmit kernel's
        when it sends from an in-host ring; else (an offload connection: Python
        sends its new data) it is reclaimed. False: Python's to mark."""
        if type(conn) is not FastOwned:
            return False
        row = object.__getattribute__(conn, "flow")
        if not self.flows.rows["tx_cap"][row]:    # Python sends its new data
            self.reclaim(conn)
            return False
        self.due[row] = None
        return True

    def mark_all(self) -> None:
        """Stack.mark(None): every fast connection's output is due."""
        for conn in self.conns[:self.flows.top]:
            if type(conn) is FastOwned:
                self.mark(conn)

    def read_done(self, conn) -> None:
        """Connection.notify_read of a fast connection: the kernel's window test; an
        update owed goes out at the next poll_transmit."""
        row = object.__getattribute__(conn, "flow")
        if tx.read_done_entry(self.flows.rows, row):
            self.due[row] = None

    def transmit(self, now: float, out: list) -> None:
        """What the fast connections in ``due`` owe the wire (new data from in-host
        rings or host ranges, ACKs, window updates), built by the kernel in slots of
        the Stack's frame pool and appended to ``out``; rows whose route must be
        looked up again are reclaimed (Python's output sends for them). When the pool
        runs dry the rows not served stay due (counted: ``fast.tx_pool_dry``)."""
        due, self.due = self.due, {}
        count = len(due)
        rows = self.due_rows
        rows[:count] = list(due)
        state = self.tx_state
        state[:] = 0
        builder = self.stack.builder
        pool = self.stack.pool
        ident = self.ident
        ident[0] = builder.ident
        slots = self.tx_slots
        while True:
            frames = tx.output_entry(self.flows.rows, self.tx_ranges, rows, count, now, ident,
                                     pool.data, pool.slot_bytes, pool.free, pool.state,
                                     pool.held, pool.length, pool.csum_start,
                                     pool.csum_offset, pool.gso_size, slots, self.handed,
                                     state)
            if frames:
                out += slots[:frames].tolist()
                self.counters["tcp.tx"] += frames
                self.counters["fast.tx"] += frames
            if state[tx.NEXT] >= count:
                break
            if state[tx.DRY] or not frames:
                self.counters["fast.tx_pool_dry"] += 1
                for row in rows[int(state[tx.NEXT]):count].tolist():
                    self.due[row] = None
                break
        builder.ident = int(ident[0])
        reads = self.flows.rows["dma_reads"][rows[:count]]
        for k in np.flatnonzero(reads).tolist():
            self.count_dma(int(rows[k]))
        for row in self.handed[:int(state[tx.HANDED])].tolist():
            conn = self.conns[row]
            self.counters["fast.handback_route"] += 1
            self.reclaim(conn)
            self.stack._due[conn] = None

    def count_dma(self, row: int) -> None:
        """The kernel's reads of host memory, into the QP's DMA counts; with a bus
        model, the engine waits for them here, before their frames leave."""
        f = self.flows.rows[row]
        if f["dma_reads"]:
            dma = self.tx_dma[row]
            reads, nbytes = int(f["dma_reads"]), int(f["dma_read_bytes"])
            dma.transactions += reads
            dma.bytes += nbytes
            if dma.bus is not None:
                dma.bus_cycles += charge_reads(dma.bus, reads, nbytes)
            f["dma_reads"] = f["dma_read_bytes"] = 0

    # ---- ownership ---------------------------------------------------------------
    def offer(self, conn) -> None:
        """The Stack worked on ``conn``: export it if it is ordinary and its frames
        go out to the NIC by a known route (not looped inside the stack)."""
        stack = self.stack
        row = conn.flow
        if row >= 0 and self.cooldown[row]:
            self.cooldown[row] -= 1
            return
        if not ordinary(conn, stack):
            return
        route = self.route(conn)
        if route is None:
            return
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
        rows = self.flows.rows
        f = rows[row]
        export(conn, f)
        f["eth_dst"], f["eth_src"], f["route_until"] = route
        f["csum_mode"] = self.csum_mode(conn)
        ring = conn.recv_buffer
        if type(ring) is ByteRecvBuffer:          # the kernel places into it
            f["rx_addr"] = np.frombuffer(ring.storage, np.uint8).ctypes.data
            f["rx_cap"], f["rx_head"], f["rx_size"] = ring.capacity, ring.head, ring.size
            ring.fast_row = (self.rx_sizes, self.rx_heads, row)
            ring.__class__ = FastRecvRing
        else:                                     # data in hands the connection back
            f["rx_addr"] = f["rx_cap"] = f["rx_head"] = f["rx_size"] = 0
        ring = conn.send_buffer
        f["tx_host"] = f["tx_nranges"] = 0
        if type(ring) is ByteSendBuffer:          # the transmit kernel sends from it
            f["tx_addr"] = np.frombuffer(ring.storage, np.uint8).ctypes.data
            f["tx_cap"], f["tx_head"] = ring.capacity, ring.head
            ring.fast_row = (self, row)
            ring.__class__ = FastSendRing
        elif type(ring) is HostSendBuffer and len(ring.ranges) <= TX_RANGES:
            dma = ring.dma                        # the kernel reads the host's ranges
            f["tx_addr"], f["tx_cap"], f["tx_head"] = dma.seg.ctypes.data, dma.size, 0
            f["tx_host"] = 1
            self.tx_dma[row] = dma
            ring.fast_row = (self, row)
            ring.__class__ = FastHostSend
            ring.mirror()
        else:                                     # new data: Python's output
            f["tx_addr"] = f["tx_cap"] = f["tx_head"] = 0
        f["gso_size"] = conn.eff_mss if conn.tso_max else 0
        self.acked_total[row] = conn.bytes_acked
        f["owner"] = FAST
        self.fast += 1
        self.counters["fast.exported"] += 1
        stack.table.active.pop(conn, None)
        stack._due.pop(conn, None)
        stack._touched.pop(conn, None)
        conn.__class__ = FastOwned

    def route(self, conn) -> tuple | None:
        """(destination MAC, source MAC, valid until) of ``conn``'s frames, as 48-bit
        integers; None when Python must send them (looped, or no ARP entry)."""
        stack = self.stack
        remote = conn.remote[0]
        prefix, looped = stack._route(remote, stack._now)
        if prefix is None or looped:
            return None
        if remote == stack.ip:
            until = INF
        else:
            arp = stack.arp
            until = arp.entries[remote].expires + arp.retry * arp.retries
        return int.from_bytes(prefix[:6], "big"), int.from_bytes(prefix[6:12], "big"), until

    def csum_mode(self, conn) -> int:
        """How the kernel sums a connection's frames (framing.py's rule for a frame
        that is neither looped nor a super-frame)."""
        mode = conn.config.checksum
        if mode == "off":
            return CSUM_NONE
        if mode == "offloaded" and self.stack.builder.nic.tx_csum:
            return CSUM_PARTIAL
        return CSUM_FULL

    def routes_changed(self, ip: int) -> None:
        """ARP learned ``ip`` anew: fast rows to it are handed back at their next
        frame or timer, and exported again with the new route."""
        rows = self.flows.rows[:self.flows.top]
        rows["route_until"][rows["remote_ip"] == ip] = -INF

    def reclaim(self, conn) -> None:
        """Give ``conn``'s fields back to the Python stack (the tripwire's call)."""
        conn.__class__ = Connection
        row = conn.flow
        f = self.flows.rows[row]
        if f["acked"]:
            self.release_acked(row, conn)
        self.due.pop(row, None)
        ring = conn.recv_buffer
        if type(ring) is FastRecvRing:
            ring.__class__ = ByteRecvBuffer
            ring.size, ring.head = int(f["rx_size"]), int(f["rx_head"])
            ring.fast_row = None
        ring = conn.send_buffer
        if type(ring) is FastSendRing:
            ring.__class__ = ByteSendBuffer
            ring.fast_row = None
        elif type(ring) is FastHostSend:
            ring.__class__ = HostSendBuffer
            ring.fast_row = None
            self.count_dma(row)
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
            self.cooldown[row] = 0
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


HANDBACK_REASONS = {rx.R_SHAPE: "slow_path", rx.R_OUTPUT: "output", tx.R_ROUTE: "route",
                    tx.R_RANGE: "range", rx.R_DATA: "data"}
# offers a connection sits out after the kernel handed it back with data it cannot
# place (an offload receiver: its host buffers are Python's), so a receiving
# connection is not exported and reclaimed at every segment
DATA_COOLDOWN = 32


def export(c, f) -> None:
    """Copy the fields the kernels use from connection ``c`` into row ``f``."""
    f["reason"] = 0
    f["snd_una"], f["snd_nxt"], f["snd_max"] = c.snd_una, c.snd_nxt, c.snd_max
    f["snd_wnd"], f["snd_wl1"], f["snd_wl2"] = c.snd_wnd, c.snd_wl1, c.snd_wl2
    f["max_snd_wnd"], f["snd_scale"] = c.max_snd_wnd, c.snd_scale
    f["rcv_nxt"], f["rcv_adv"], f["rcv_scale"] = c.rcv_nxt, c.rcv_adv, c.rcv_scale
    f["rcv_cap"], f["last_ack_sent"] = c.rcv_cap, c.last_ack_sent
    f["eff_mss"], f["ts_enabled"] = c.eff_mss, c.ts_enabled
    mss, tso = c.eff_mss, c.tso_max
    f["maxseg"], f["nodelay"] = (tso - tso % mss if tso > mss else mss), c.nodelay
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
    f["t_delack"] = INF if c.t_delack is None else c.t_delack
    f["t_persist"] = INF
    f["last_rx"] = c.last_rx
    f["ack_now"] = f["window_update_only"] = 0
    f["delack_bytes"] = c.delack_bytes
    f["delayed_ack_s"] = c.config.delayed_ack_ms / 1000
    f["send_held"] = len(c.send_buffer)
    f["acked"] = f["rx_pending"] = f["rx_frames"] = 0
    for name in CONN_COUNTERS:
        f[name] = 0


def import_(c, f) -> None:
    """Copy row ``f`` back into connection ``c`` (the fields the kernels may change)."""
    c.snd_una, c.snd_nxt, c.snd_max = int(f["snd_una"]), int(f["snd_nxt"]), int(f["snd_max"])
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
    t = float(f["t_delack"])
    c.t_delack = None if t == INF else t
    t = float(f["t_persist"])
    c.t_persist = None if t == INF else t
    c.last_rx = float(f["last_rx"])
    c.rcv_nxt, c.rcv_adv = int(f["rcv_nxt"]), int(f["rcv_adv"])
    c.last_ack_sent = int(f["last_ack_sent"])
    c.ack_now, c.window_update_only = bool(f["ack_now"]), bool(f["window_update_only"])
    c.delack_bytes = int(f["delack_bytes"])
    c.rx_pending += int(f["rx_pending"])
    f["rx_pending"] = 0
    counters = c.counters
    for name in CONN_COUNTERS:
        if f[name]:
            counters[name] += int(f[name])
            f[name] = 0
    f["rx_frames"] = 0
