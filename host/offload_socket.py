"""One offloaded connection, host side: the socket calls over its OffloadNetwork.

host/sockets.py has the QP-wide part (OffloadNetwork: the driver, event dispatch,
the shared send area and receive pool) and the contract both follow; this module
has what one connection does: synchronous calls by cookie, ``send`` (one copy into
the connection's send ring, one SEND), ``recv`` (one copy out of an anonymous
buffer), the send ring's growth and space waits, shutdown and close. A send or a
receive that finds what it needs is one compiled call (host/datapath.py); Python
takes over to open or grow a ring, to wait, and for errors.
"""
from __future__ import annotations

import errno
import socket as pysocket
import threading
import time
from typing import TYPE_CHECKING

import numpy as np

from host import datapath
from host.copy_timer import COPY_TIMER
from host.datapath import COUNT, DRAINED, EMPTY, WAKE
from host.driver import Q
from host.offload_setup import MIN_SHARE, SocketSetup, check, error  # noqa: F401 (re-exported)
from host.readiness import Readiness
from host.send_buffers import SendRing
from toad import layout

if TYPE_CHECKING:
    from host.sockets import OffloadNetwork

ABORT = 1                 # CLOSE value: reset (SO_LINGER 0)
FIRST_RING = 65536        # the largest first ring (a bulk writer's; it grows from there)
MIN_RING = 1024           # the smallest: a first ring is twice the first write, rounded
SPACE_POLL_S = 0.002      # a writer waiting for send-area space looks again this often
ROW_MASK = (1 << layout.CONN_ROW_BITS) - 1
SEND_BY_TYPE = {kind: datapath.send_by_source[i] for kind, i in datapath.SOURCES.items()}
RECV_BY_TYPE = {kind: datapath.recv_by_target[i] for kind, i in datapath.TARGETS.items()}
_SEND_VIEW, _RECV_VIEW = SEND_BY_TYPE[memoryview], RECV_BY_TYPE[memoryview]
_COPY_CYCLES = Q["copy_cycles"]

class OffloadSocket(SocketSetup):
    """A TCP socket whose protocol runs in the engine (IPv4 stream sockets only).
    ``fileno()`` is a readiness descriptor made at its first call (host/readiness.py):
    select, poll, epoll and asyncio can wait on it. host/offload_selector.py waits on
    many without descriptors."""

    family = pysocket.AF_INET
    type = pysocket.SOCK_STREAM
    proto = 0

    def __init__(self, network: OffloadNetwork, conn: int, connected: bool = False,
                 peer: tuple[str, int] | None = None):
        self.net = network
        self.driver = network.driver
        self.conn = conn
        self.timeout: float | None = None
        self.connected = connected
        self.listening = False
        self.closed = False
        self.local: tuple[str, int] = ("0.0.0.0", 0)
        self.peer = peer
        self.row = conn & ROW_MASK     # its row in the QP's tables (host/datapath.py)
        # the arrays of the compiled calls (host/datapath.py), passed one by one (a
        # star-call costs more than the attribute loads)
        driver = network.driver
        self.seg, self.regs, self.qp = driver.seg, driver.regs, driver.qp
        self.conns, self.bufs, self.scratch = driver.conns, driver.bufs, network.scratch
        self.q = self.driver.q
        self.eof = False
        self.error = 0
        self.shut_rd = self.shut_wr = False
        self.accept_ready = 0          # ACCEPT_READY events seen
        self.accept_matched = 0        # of those, the ones an ACCEPT answered (or EAGAIN)
        self.space_events = 0          # SEND_SPACE events seen
        self.checked_view = None       # the last memoryview recv_into found usable as is
        self.tx = self.driver.conns[self.row]    # its row (a view): send ring, receive
        self.retired: list = []        # (offset, size, posted at retirement) of old rings
        self.abort_on_close = False    # SO_LINGER {1, 0}
        self.share = network.share     # send-buffer bytes this socket may hold (SO_SNDBUF)
        self.connecting: tuple[int, int, int] | None = None   # (cookie, addr, port)
        self.connect_answer = None     # its COMPLETION or ERROR event, once in
        self.local_cookie = 0          # a BIND before connect whose answer names our port
        self.readiness: Readiness | None = None   # the descriptor fileno() gives
        self.so_error = 0              # a non-blocking connect's failure (SO_ERROR)
        self.error_read = False        # SO_ERROR has reported ``error``
        self.send_lock = threading.Lock()
        self.recv_lock = threading.Lock()
        # bytes copied out of its buffers when the QP's pool ran low (spill_out), read
        # before anything attached; ``spill_at``: how far they are read
        self.spill = bytearray()
        self.spill_at = 0

    # ---- events (consumer thread) ------------------------------------------------------
    def on_event(self, event) -> None:
        kind = event.type
        if kind == layout.EV_RECV_DATA:      # one the compiled poll did not attach
            driver = self.driver
            if self.closed or not datapath.attach_one(driver.qp, driver.conns, driver.bufs,
                                                      self.conn, event.buffer, event.length):
                if 0 <= event.buffer < driver.layout.total_buffers:
                    self.net.give_back(event.buffer)
        elif kind == layout.EV_PEER_CLOSED:
            self.eof = True
        elif kind == layout.EV_RESET:
            self.error = event.status or errno.ECONNRESET
        elif kind == layout.EV_ACCEPT_READY:
            self.accept_ready += 1
        elif kind == layout.EV_SEND_SPACE:
            if event.status:
                self.error = self.error or event.status
            self.space_events += 1
        if self.readiness is not None:
            self.readiness.on_event(kind)

    def _wait(self, ready, deadline: float | None, batched: bool = False) -> bool:
        """Sleep until ``ready()`` (events are handled meanwhile) or the deadline;
        a non-blocking socket takes the events in now and does not wait."""
        if ready():
            return True
        if self.timeout == 0:
            self.net.flush_returns()
            self.driver.try_poll()
            return ready()
        if deadline is None:
            return self.net.wait(ready, None, batched)
        return self.net.wait(ready, max(0.0, deadline - time.monotonic()), batched)

    def _deadline(self) -> float | None:
        return None if self.timeout is None else time.monotonic() + self.timeout

    def _would_block(self, what: str) -> OSError:
        if self.timeout == 0:
            return BlockingIOError(errno.EAGAIN, f"{what} would block")
        return TimeoutError("timed out")

    # ---- sending ---------------------------------------------------------------------
    @property
    def ring(self) -> SendRing | None:
        """The send ring as it stands (a copy of the row's fields), None before the
        first send."""
        tx = self.tx
        if not tx["tx_size"]:
            return None
        ring = SendRing(int(tx["tx_offset"]), int(tx["tx_size"]), int(tx["tx_posted"]),
                        int(tx["tx_acked"]))
        ring.base = int(tx["tx_base"])
        return ring

    def send(self, data, flags: int = 0) -> int:
        if flags:
            raise error(errno.EOPNOTSUPP, "send flags")
        view = memoryview(data).cast("B") if not isinstance(data, memoryview) or \
            data.format != "B" or data.ndim != 1 else data
        if not len(view):
            return 0
        return self._send_view(view, False)

    def sendall(self, data, flags: int = 0) -> None:
        """Send every byte. The common case (the whole buffer fits in the ring's free
        space before its end) is one compiled call: the copy, the SEND, the doorbell.
        Otherwise _send_view makes room for the whole rest (acked space, a bigger ring,
        or a wait) before it writes, so a bulk writer's chunks are never split by a
        partial write and stay aligned in the ring (only a ring's end splits one)."""
        if flags:
            raise error(errno.EOPNOTSUPP, "sendall flags")
        send = SEND_BY_TYPE.get(type(data))
        # a flat byte buffer is copied as it is; any other goes through a byte cast
        if send is not None and not (self.error or self.closed or self.shut_wr) and (
                send is not _SEND_VIEW or (data.format == "B" and data.c_contiguous
                                           and data.ndim == 1)):
            timer = COPY_TIMER              # one copy in N is timed (copy_timer.py)
            timer.countdown -= 1
            if timer.countdown:
                result = send(self.seg, self.regs, self.qp, self.conns, self.scratch, data,
                              self.row, 0)
            else:
                result = send(self.seg, self.regs, self.qp, self.conns, self.scratch, data,
                              self.row, 1)
                if result >= 0:
                    timer.add_cycles(int(self.q[_COPY_CYCLES]), result & COUNT)
                else:
                    timer.countdown = 1     # time the next one instead
            if result >= 0:
                if result & WAKE:
                    self.driver.wake.release()
                return
        view = data if type(data) is memoryview and data.format == "B" and \
            data.ndim == 1 and data.c_contiguous else memoryview(data).cast("B")
        total = len(view)
        done = 0
        while done < total:
            done += self._send_view(view[done:] if done else view, True)

    def _send_view(self, view: memoryview, whole: bool) -> int:
        """Copy the head of ``view`` into the send ring, post one SEND; bytes taken.
        ``whole`` (sendall): first make room for all of ``view`` (up to the share),
        else (send) for at least ``qp.send_space_threshold`` bytes or what is left."""
        want = len(view)
        with self.send_lock:
            if self.closed or self.error or self.shut_wr or not self.connected:
                self._check_send()
            if not self.tx["tx_size"]:
                self._open_ring(want)
            while True:
                space, room = self._room()
                if room < want and (whole or space < self.net.threshold):
                    self._make_room(want if whole else 1)
                    space, room = self._room()
                n = want if want < room else room
                piece = view[:n] if n < want else view
                timer = COPY_TIMER
                timer.countdown -= 1
                result = _SEND_VIEW(self.seg, self.regs, self.qp, self.conns, self.scratch,
                                    piece, self.row, 0 if timer.countdown else 1)
                if result == datapath.NO_SLOT:
                    timer.countdown += 1
                    self.driver._wait_request_space(1)
                    continue
                if result < 0:                  # acknowledged bytes moved: look again
                    timer.countdown += 1
                    continue
                if not timer.countdown:
                    timer.add_cycles(int(self.q[_COPY_CYCLES]), n)
                if result & WAKE:
                    self.driver.wake.release()
                return n

    def _room(self) -> tuple[int, int]:
        """(free bytes, contiguous free bytes from the write position) of the ring."""
        tx = self.tx
        size, base, posted, acked = (int(tx[f]) for f in
                                     ("tx_size", "tx_base", "tx_posted", "tx_acked"))
        space = size - posted + (acked if acked > base else base)
        return space, min(space, size - (posted - base) % size)

    def _make_room(self, need: int) -> None:
        """Free what the engine acked (lazily, from its counter). If ``need`` bytes
        still do not fit before the ring's end, a ring below the share moves to a
        bigger extent (before any partial write: a fresh ring starts at a write's
        first byte, so chunk-sized writes stay whole and aligned); else wait until
        ``need`` (at most the ring's size) bytes are free."""
        acked = self.driver.bytes_acked(self.conn)
        self.tx["tx_acked"] = acked
        if self.retired:
            self._free_retired(acked)
        if self._room()[1] >= need:
            return
        self._grow()
        need = min(need, int(self.tx["tx_size"]))
        if self._room()[0] >= need:
            return
        self._wait_space(need)

    def _check_send(self) -> None:
        self._check_open()
        if self.error:
            raise error(self.error, "send")
        if self.shut_wr:
            raise error(errno.EPIPE, "send after shutdown")
        if not self.connected:
            if self.connecting is None:
                raise error(errno.ENOTCONN, "send")
            self._finish_connect(errno.EAGAIN)   # connected now, or raises

    def _open_ring(self, want: int) -> None:
        """A first, small ring in the send area (taken when the connection sends and
        holds none): twice the write, at least MIN_RING, at most FIRST_RING and the
        share; smaller (down to MIN_RING) if the area has no such block free. When
        the area is full, rings whose bytes are all acknowledged are taken back from
        the connections that hold them; if that frees nothing, a non-blocking
        socket gets EAGAIN and a blocking one waits (within its timeout) while
        bytes in flight elsewhere can free space, ENOBUFS when none are."""
        net = self.net
        largest = min(FIRST_RING, self.share)
        size = min(largest, max(MIN_RING, 1 << (2 * want - 1).bit_length()))
        deadline = self._deadline()
        while True:
            for attempt in (size, MIN_RING):
                offset = net.area.allocate(attempt)
                if offset is None and net.reclaim_send_space(attempt, self):
                    offset = net.area.allocate(attempt)
                if offset is not None:
                    datapath.set_ring(self.driver.conns, self.row, offset, attempt,
                                      int(self.tx["tx_posted"]))
                    net.ring_holders[self.conn] = self
                    return
            net.host_counters["send_area_full"] += 1
            if not net.send_in_flight():
                raise error(errno.ENOBUFS, "send: the QP's send area is exhausted and no "
                                           "byte in it awaits acknowledgement "
                                           "(raise qp.send_buffer_bytes)")
            if self.timeout == 0:
                raise self._would_block("send")
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise self._would_block("send")
            self.net.wait(lambda: False, SPACE_POLL_S if left is None
                          else min(SPACE_POLL_S, left))
            if self.error or self.closed:
                self._check_send()

    def drop_drained_ring(self) -> bool:
        """Give the send ring back to the area if every byte posted in it (and in the
        rings it retired) is acknowledged: True if it was. Skipped (False) while this
        socket's own writer holds its lock."""
        if not self.send_lock.acquire(False):
            return False
        try:
            tx = self.tx
            acked = self.driver.bytes_acked(self.conn)
            tx["tx_acked"] = acked
            if self.retired:
                self._free_retired(acked)
            size = int(tx["tx_size"])
            if not size or self.retired or acked < int(tx["tx_posted"]):
                return False
            self.net.area.free(int(tx["tx_offset"]), size)
            datapath.set_ring(self.driver.conns, self.row, 0, 0, int(tx["tx_posted"]))
            self.net.host_counters["send_rings_reclaimed"] += 1
            return True
        finally:
            self.send_lock.release()

    def _grow(self) -> None:
        """A ring short of room below the share moves to a 4x bigger extent (if the
        area has it and room for another connection's first ring besides); the old
        one is freed once its bytes are acked. (Asking for twice the new size free
        kept a 1 MB share at a 256 KB ring in a 2 MB area.)"""
        tx = self.tx
        old, posted = int(tx["tx_size"]), int(tx["tx_posted"])
        size = min(old * 4, self.share)
        if size <= old or self.net.area.free_bytes() < size + FIRST_RING:
            return
        offset = self.net.area.allocate(size)
        if offset is None:
            return
        self.retired.append((int(tx["tx_offset"]), old, posted))
        datapath.set_ring(self.driver.conns, self.row, offset, size, posted)

    def _free_retired(self, acked: int) -> None:
        while self.retired and self.retired[0][2] <= acked:
            offset, size, _ = self.retired.pop(0)
            self.net.area.free(offset, size)

    def _wait_space(self, need: int) -> None:
        """Used our share: ask for an event once the engine has freed ``need`` bytes
        of room, and at least ``threshold`` (fewer wake-ups) but not more than half
        the ring, then wait for it. (Waiting for a whole ring is stop-and-wait: a ring
        that could not grow to a threshold-sized share, in a small send area, moved
        0.9 Gb/s, one round trip of wake-ups per ring.)"""
        tx = self.tx
        size, base, posted, acked = (int(tx[f]) for f in
                                     ("tx_size", "tx_base", "tx_posted", "tx_acked"))
        behind = max(base - acked, 0)       # bytes of retired rings still unacked
        short = need - self._room()[0] + behind
        want = max(min(self.net.threshold, size // 2) + behind, short)
        # never more than is outstanding (a partly free ring whose size the threshold
        # reaches would wait for bytes never sent); short never exceeds it
        want = min(want, posted - acked)
        readiness = self.readiness
        if readiness is not None and self.timeout == 0:
            readiness.block_write()     # before the request whose event restores it
        self.ask_space(acked, want)
        target, acked_of, conn = acked + want, self.driver.bytes_acked, self.conn

        def ready() -> bool:
            # the counter, not the event: the engine writes the counter before it
            # posts SEND_SPACE, and an event may answer an earlier request (when the
            # counter itself ended that wait), which would end this wait with no space
            return acked_of(conn) >= target or bool(self.error)

        if not self._wait(ready, self._deadline()):
            raise self._would_block("send")
        if readiness is not None:
            readiness.unblock_write()
        tx["tx_acked"] = acked_of(conn)
        if self.error:
            raise error(self.error, "send")

    def ask_space(self, acked: int, want: int) -> None:
        """Ask for a SEND_SPACE event once the engine's acked count reaches
        ``acked + want`` (the engine keeps one such target per connection)."""
        self.driver.post(layout.OP_SEND_SPACE, 0, self.conn, 0, 0, 0, 0, 0, acked, want)

    # ---- receiving -------------------------------------------------------------------
    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        buf = bytearray(bufsize)
        n = self.recv_into(buf, bufsize, flags)
        return bytes(buf[:n])

    def recv_into(self, target, nbytes: int = 0, flags: int = 0) -> int:
        """Copy out of the first attached buffer (the one copy at the boundary); a
        buffer read to its end goes back to the engine (in batches). One compiled call
        when data is there."""
        if flags:
            raise error(errno.EOPNOTSUPP, "recv flags")
        recv = RECV_BY_TYPE.get(type(target))
        if recv is _RECV_VIEW and target is not self.checked_view:
            if target.format == "B" and target.ndim == 1 and target.c_contiguous \
                    and not target.readonly:
                self.checked_view = target       # a reader's own view: checked once
            else:
                recv = None
        if recv is None:
            target, recv = self._byte_view(target), _RECV_VIEW
        if nbytes:
            if nbytes < 0:
                raise ValueError("negative buffersize in recv_into")
            if nbytes < len(target):
                target, recv = memoryview(target)[:nbytes], _RECV_VIEW
        if self.closed:
            self._check_open()
        timer = COPY_TIMER                      # one copy in N is timed
        timer.countdown -= 1
        if timer.countdown:
            result = recv(self.seg, self.regs, self.qp, self.conns, self.bufs, self.scratch,
                          target, self.row, 0)
        else:
            result = recv(self.seg, self.regs, self.qp, self.conns, self.bufs, self.scratch,
                          target, self.row, 1)
            if result >= 0:
                timer.add_cycles(int(self.q[_COPY_CYCLES]), result & COUNT)
            else:
                timer.countdown = 1
        if result >= 0:
            if result > COUNT:
                return self._recv_flags(result)
            return result
        return self._recv_wait(target, recv)

    def _recv_flags(self, result: int) -> int:
        """A recv whose result carries WAKE (post the engine's semaphore) or DRAINED
        (the last attached buffer is read: the descriptor stops saying readable)."""
        if result & WAKE:
            self.driver.wake.release()
        if result & DRAINED and self.readiness is not None:
            self.readiness.update_read()
        return result & COUNT

    @staticmethod
    def _byte_view(target) -> memoryview:
        view = memoryview(target).cast("B")        # (raises for a non-contiguous one)
        if view.readonly:
            raise TypeError("recv_into() argument 'buffer' must be read-write "
                            "bytes-like object")
        return view

    def _recv_wait(self, target, recv) -> int:
        """Nothing attached: take the events ready now, wait if needed (unless EOF,
        an error or a zero-length read), then copy."""
        if not len(target):
            return 0
        with self.recv_lock:
            while True:
                if self.tx["spilled"]:
                    return self._read_spill(target)
                self.driver.try_poll()   # events ready now need no wait machinery
                result = recv(self.seg, self.regs, self.qp, self.conns, self.bufs,
                              self.scratch, target, self.row, 0)
                if result != EMPTY:
                    return self._recv_flags(result) if result > COUNT else result
                if self.eof or self.error or self.shut_rd or self.closed:
                    # this reader is done: the buffers it read go back now, not at
                    # some other thread's next wait
                    self.net.flush_returns()
                    if self.closed:
                        self._check_open()
                    if self.error and not self.eof:
                        raise error(self.error, "recv")
                    return 0
                self._wait_data()

    def _read_spill(self, target) -> int:
        """Copy from the spilled bytes (caller holds ``recv_lock``)."""
        spill, at = self.spill, self.spill_at
        count = min(len(target), len(spill) - at)
        target[:count] = memoryview(spill)[at:at + count]
        at += count
        if at < len(spill):
            self.spill_at = at
            self.tx["spilled"] -= count
        else:
            self.spill, self.spill_at = bytearray(), 0
            self.tx["spilled"] = 0
            if self.readiness is not None:
                self.readiness.update_read()
        return count

    def spill_out(self) -> int:
        """Copy what this socket's attached buffers hold into its own memory and give
        the buffers back (OffloadNetwork.relieve_pool); the bytes copied. Skipped (0)
        while its reader holds ``recv_lock`` (it is reading them anyway)."""
        if not self.recv_lock.acquire(False):
            return 0
        try:
            if self.closed:
                return 0
            bufs, count = self.bufs, self.net.rx_count[self.row]
            if not count:
                return 0
            head, need = int(self.tx["rx_head"]), -int(self.tx["rx_start"])
            while head >= 0:
                need += int(bufs["length"][head])
                head = int(bufs["next"][head])
            dst = np.empty(need, np.uint8)
            done = datapath.spill(self.seg, self.qp, self.conns, bufs, self.row, dst)
            if self.spill_at:
                del self.spill[:self.spill_at]
                self.spill_at = 0
            self.spill += dst[:done].data
            return done
        finally:
            self.recv_lock.release()

    def readable(self) -> bool:
        """Data attached or spilled, EOF, an error or SHUT_RD: a recv would not wait."""
        return self.net.rx_count[self.row] > 0 or self.tx["spilled"] > 0 or self.eof \
            or bool(self.error) or self.shut_rd

    def _wait_data(self) -> None:
        """Sleep until data, EOF or an error (caller holds ``recv_lock``)."""
        if not self.connected:
            if self.connecting is None:
                raise error(errno.ENOTCONN, "recv")
            self._finish_connect(errno.EAGAIN)   # connected now, or raises
        # a pure reader in mid-stream (bulk) is woken once per batch of
        # buffers; a conversation (rr: it sent since its last read) or a
        # first read (crr: one request per connection) at every event
        tx, count, row, net = self.tx, self.net.rx_count, self.row, self.net
        batched = tx["consumed"] > 0 and not tx["talking"]
        if not self._wait(lambda: count[row] or tx["spilled"] or self.eof or self.error
                          or net.relieve_pool(self), self._deadline(), batched):
            if self.readiness is not None:     # a stale "readable" goes (EAGAIN)
                self.readiness.update_read()
            raise self._would_block("recv")

    # ---- teardown --------------------------------------------------------------------
    def shutdown(self, how: int) -> None:
        if how not in (pysocket.SHUT_RD, pysocket.SHUT_WR, pysocket.SHUT_RDWR):
            raise error(errno.EINVAL, "shutdown")
        if not self.connected:
            raise error(errno.ENOTCONN, "shutdown")
        if how in (pysocket.SHUT_RD, pysocket.SHUT_RDWR):
            self.shut_rd = True
        if how in (pysocket.SHUT_WR, pysocket.SHUT_RDWR):
            with self.send_lock:
                self._call(layout.OP_SHUTDOWN, "shutdown", value=how)
                self.shut_wr = True
        if self.readiness is not None:
            self.readiness.fd.shut(how)

    def close(self, abort: bool = False) -> None:
        """Return at once; the engine answers once the data sent is acknowledged, and
        only then are the send buffers freed and the id forgotten (release())."""
        if self.closed:
            return
        self.closed = True
        if self.connecting is not None:        # its answer is nobody's now
            self.net.connects.pop(self.connecting[0], None)
            self.connecting = None
        if self.local_cookie:
            self.driver.forget(self.local_cookie)
        if self.readiness is not None:
            self.readiness.close()
        if self.net.sockets.get(self.conn) is self:   # later buffers: the general path
            for buf_id in self.driver.unregister(self.conn):
                self.net.give_back(buf_id)
        if self.net.driver.closed or self.net.driver.engine_dead:
            self.release()
            return
        self.net.flush_returns()   # its consumed counter goes out before its row is reused
        cookie = self.driver.new_cookie()
        self.net.closing[cookie] = self
        self.driver.post(layout.OP_CLOSE, 0, self.conn, cookie, 0, 0, 0, 0, 0,
                         ABORT if abort or self.abort_on_close else 0)

    def release(self) -> None:
        """The engine forgot the connection: free the send share and the id."""
        if self.net.sockets.get(self.conn) is self:
            size = int(self.tx["tx_size"])
            if size:
                self.net.area.free(int(self.tx["tx_offset"]), size)
                datapath.set_ring(self.driver.conns, self.row, 0, 0, 0)
            del self.net.sockets[self.conn]
            self.net.ring_holders.pop(self.conn, None)
        self._free_retired(1 << 63)

    def __enter__(self) -> "OffloadSocket":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "listening" if self.listening else \
            "connected" if self.connected else "new"
        return f"<OffloadSocket conn={self.conn:#x} {state} local={self.local} peer={self.peer}>"
