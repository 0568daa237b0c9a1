"""Offloaded sockets, host side: a Python-socket-like API over the OE driver.

    net = OffloadNetwork(config)                 # attaches to `toad engine CONFIG`
    with net.create_connection(("10.0.0.1", 5001)) as s:
        s.sendall(data)
    net.close()

TCP runs in the engine; a host process runs only the driver (host/driver.py), as in
TOAD section III-C. This module has the QP-wide part (OffloadNetwork: the driver,
event dispatch, the shared send area and receive pool); one connection's calls are
in host/offload_socket.py (OffloadSocket, re-exported here):

- synchronous calls (socket, bind, listen, connect, accept, shutdown, close, options)
  post one request and sleep until its completion event (spin, then interrupt);
- ``send`` copies the application's bytes once into the connection's send ring
  (host/send_buffers.py: the kernel-boundary copy), posts a descriptor and returns.
  Space is freed lazily from the engine's cumulative acked counter; a writer that has
  used its share asks for a SEND_SPACE event at ``qp.send_space_threshold`` freed
  bytes and sleeps;
- received data arrives in anonymous buffers (RECV_DATA events) that the driver's
  compiled poll attaches to their connection's row (registered at adopt, dropped at
  close); ``recv``/``recv_into`` copy out once and give a buffer read to its end back
  to the pool (in batches), publishing the consumed-bytes counter (the engine opens
  the window from it) with it (host/datapath.py). Blocked receivers sleep on the QP's interrupt; a socket
  that sent nothing since its last read (a bulk reader) is woken once per batch of
  buffers (driver: batched waits), a conversation (rr) at every event.

Contract details (engine/offload/handlers.py has the engine's side): a connection id
lives until the engine answers its CLOSE, which it does once every byte posted is
acknowledged (or the connection is dead): only then are its send rings freed, so the
engine never reads reused memory; ``network.close()`` waits ``qp.close_linger_s`` for
those answers. CLOSE with value 1 resets (SO_LINGER 0). ACCEPT answers EAGAIN when
the queue is empty and the socket waits for an ACCEPT_READY event. The consumed
counter counts buffer space released: the bytes of each buffer read to its end and
handed back, its unused tail included (a partly read buffer counts when it is done). RECV_DATA of length 0, or for connection 0, gives a buffer back unused.

Events are handled by whichever thread is consuming the event ring (driver rules), so
a socket may be used from several threads. Errors are OSError subclasses with Linux's
errno (ConnectionRefusedError, ConnectionResetError, BrokenPipeError, TimeoutError...).
"""
from __future__ import annotations

import errno
import time

import numpy as np

from host import datapath
from host.copy_timer import COPY_TIMER
from host.driver import Driver, EngineDead, Q
from host.event_pump import EventPump
from host.offload_socket import OffloadSocket, check, error  # noqa: F401 (re-exported)
from host.readiness import Readiness
from host.send_buffers import SendArea
from toad import layout
from toad.errors import ToadError
from toad.memory import rss_kib

_RECV_DATA = layout.EV_RECV_DATA
OPEN_BATCH = 256          # open_connections: handshakes requested at once
RETURN_BATCH = 32         # read anonymous buffers handed back per doorbell (at most)
STARVE_CHECK_S = 0.001    # a waiting reader looks at the pool this often at most
SCRATCH_BYTES = 262144    # the longest send copy that can dodge memcpy's slow distance


class OffloadNetwork:
    """One QP of the engine named ``config.name``, shared by this process's sockets."""

    mode = "offload"

    def __init__(self, config):
        self.config = config
        try:
            self.driver = Driver(config, on_event=self._on_event)
        except ToadError as exc:
            raise ToadError(f"offload mode: {exc}") from None
        driver, lay = self.driver, self.driver.layout
        driver.on_dead = self._engine_dead
        self.listen_address = self.connect_address = (
            config.nic.tap.address if config.nic.kind == "tap" else config.nic.address
        ).split("/")[0]
        self.area = SendArea(lay.send_offset, lay.send_bytes)
        self.share = min(config.qp.send_share_bytes, lay.send_bytes)
        self.threshold = config.qp.send_space_threshold
        self.sockets: dict[int, OffloadSocket] = {}
        # sockets holding a send ring, oldest first (reclaim_send_space looks at them)
        self.ring_holders: dict[int, OffloadSocket] = {}
        self.host_counters: dict[str, int] = {"send_area_full": 0, "send_rings_reclaimed": 0,
                                              "rx_pool_starved": 0, "rx_spilled_buffers": 0,
                                              "rx_spilled_bytes": 0}
        # a waiting reader breaks the cycle of a pool held by sockets nobody reads yet
        # (relieve_pool): below ``starve_low`` buffers out of our hands, others' data
        # is copied out until ``starve_target`` are
        total = lay.total_buffers
        self.starve_low = max(1, total // 32)
        self.starve_target = max(self.starve_low + 1, total // 4)
        self.starve_checked = 0.0
        self.orphans: dict[int, list] = {}     # events that beat their ACCEPT answer
        self.closing: dict[int, OffloadSocket] = {}   # CLOSE cookie -> socket
        self.connects: dict[int, OffloadSocket] = {}  # non-blocking CONNECT cookie -> socket
        self.pump: EventPump | None = None     # started with the first readiness descriptor
        self.ready_ids = np.zeros(256, np.int64)      # take_ready's output
        driver.on_ready = self._signal_ready
        self.closed = False
        self.unowned_returns = 0               # buffers the engine gave back unused
        # buffers read go back in batches of this many (with the consumed counters)
        driver.q[Q["return_batch"]] = max(1, min(RETURN_BATCH, lay.recv_buffers // 8))
        # the buffer a boundary copy at memcpy's slow distance goes through (a bigger
        # send is copied straight)
        self.scratch = np.zeros(max(lay.recv_buffer_bytes, SCRATCH_BYTES) + 4096, np.uint8)
        self.rx_count = driver.conns["rx_count"]      # per row: buffers attached
        driver.post_rx_buffers([(*lay.buffer_at(i), i) for i in range(lay.total_buffers)])
        COPY_TIMER.calibrate()   # the compiled copies are timed in TSC cycles

    # ---- API ----------------------------------------------------------------------
    def socket(self) -> "OffloadSocket":
        self.check_open()
        event = self.driver.call(layout.OP_SOCKET)
        check(event, "socket")
        return self.adopt(OffloadSocket(self, event.value))

    def create_connection(self, address, timeout: float | None = None) -> "OffloadSocket":
        sock = self.socket()
        try:
            sock.settimeout(timeout)
            sock.connect(address)
        except BaseException:
            sock.close()
            raise
        return sock

    def open_connections(self, address, count: int, timeout: float) -> list:
        """``count`` connections (workload.connections): SOCKET and CONNECT requests
        posted OPEN_BATCH at a time, their answers collected after, so the engine
        takes many handshakes per pass; each socket returned with ``timeout`` set."""
        driver, socks, cookies = self.driver, [], []
        try:
            for first in range(0, count, OPEN_BATCH):
                cookies = [driver.start(layout.OP_SOCKET)
                           for _ in range(min(OPEN_BATCH, count - first))]
                batch = []
                while cookies:
                    cookie = cookies.pop(0)
                    if not driver.wait_for(lambda: driver.answered(cookie), timeout):
                        driver.forget(cookie)
                        raise TimeoutError("socket: no answer from the engine")
                    event = driver.answer(cookie)
                    check(event, "socket")
                    batch.append(self.adopt(OffloadSocket(self, event.value)))
                    socks.append(batch[-1])
                for sock in batch:
                    sock.settimeout(0)
                    code = sock.connect_ex(address)
                    if code != errno.EINPROGRESS:
                        raise error(code, f"connect to {address}")
                for sock in batch:
                    sock.settimeout(timeout)
                    sock.connect(address)          # the handshake's outcome
        except BaseException:
            for cookie in cookies:                # answers nobody will claim
                driver.forget(cookie)
            for sock in socks:
                sock.close()
            raise
        return socks

    def engine_rss_kib(self) -> int | None:
        """The engine process's resident memory (for per-connection figures)."""
        return rss_kib(self.driver.engine_pid)

    def listen(self, port: int, backlog: int = 128) -> "OffloadSocket":
        """A listening socket on the engine's address; port in use: a clear ToadError."""
        sock = self.socket()
        try:
            sock.bind(("", port))
        except OSError as exc:
            sock.close()
            if isinstance(exc, EngineDead):
                raise
            raise ToadError(f"workload.port: cannot listen on port {port} in the engine "
                            f"({exc.strerror}); pick another with --set workload.port=N") from None
        sock.listen(backlog)
        return sock

    def close(self) -> None:
        """Close every socket, give closing connections ``qp.close_linger_s`` to get
        their data acknowledged, detach the QP (the engine copies what is still not
        acknowledged out of this QP's memory and finishes sending it)."""
        if self.closed:
            return
        if self.pump is not None:
            self.pump.stop()
        try:
            for sock in list(self.sockets.values()):
                sock.close()
            if self.closing and not self.driver.engine_dead:
                self.driver.wait_for(lambda: not self.closing, self.config.qp.close_linger_s)
        finally:
            self.closed = True
            self.driver.close()

    def __enter__(self) -> "OffloadNetwork":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- internals -------------------------------------------------------------------
    def _engine_dead(self, code: int) -> None:
        """The driver found the engine dead (or this QP dropped): every socket's next
        call fails with ``code`` (ENETDOWN, ENETRESET), as the one that found it."""
        for sock in self.sockets.values():
            if not sock.error:
                sock.error = code

    def check_open(self) -> None:
        if self.closed:
            raise error(errno.EBADF, "the offload network is closed")

    def reclaim_send_space(self, size: int, asking: "OffloadSocket") -> bool:
        """Take back the send rings whose bytes are all acknowledged, oldest holder
        first, until a block of ``size`` bytes is free: True if one is. A holder
        still waiting for acknowledgements goes to the back of the line."""
        holders, area = self.ring_holders, self.area
        for _ in range(len(holders)):
            if area.fits(size):
                return True
            conn = next(iter(holders))
            sock = holders.pop(conn)
            if sock is asking or not sock.drop_drained_ring():
                holders[conn] = sock
        return area.fits(size)

    def send_in_flight(self) -> bool:
        """Whether any connection has bytes in the send area not yet acknowledged
        (space that will come back)."""
        return any(sock.retired or int(sock.tx["tx_posted"]) > self.driver.bytes_acked(conn)
                   for conn, sock in self.ring_holders.items())

    @property
    def rx_in_engine(self) -> int:
        """Anonymous buffers not in our hands: neither attached to a socket nor waiting
        in the return list."""
        q = self.driver.q
        return self.driver.layout.total_buffers - int(self.rx_count.sum()) \
            - int(q[Q["returns"]])

    def relieve_pool(self, waiting: OffloadSocket) -> bool:
        """A reader waits for data on ``waiting``: if the pool is (nearly) all in our
        hands, attached to sockets nobody is reading now, the engine has no buffer for
        the data it waits for and the reader would never wake. Then the other sockets'
        attached bytes are copied into their own memory and their buffers go back
        (counted: rx_pool_starved, rx_spilled_buffers, rx_spilled_bytes). Looked at
        once a millisecond at most; always False (a wait predicate's side task)."""
        now = time.monotonic()
        if now - self.starve_checked < STARVE_CHECK_S:
            return False
        self.starve_checked = now
        if self.rx_in_engine > self.starve_low:
            return False
        counters, rx_count = self.host_counters, self.rx_count
        counters["rx_pool_starved"] += 1
        held = int(rx_count.sum())
        held_at_most = self.driver.layout.total_buffers - self.starve_target
        for sock in list(self.sockets.values()):
            count = int(rx_count[sock.row])
            if count and sock is not waiting:
                done = sock.spill_out()
                back = count - int(rx_count[sock.row])
                if back:
                    counters["rx_spilled_buffers"] += back
                    counters["rx_spilled_bytes"] += done
                    held -= back
                    if held <= held_at_most:
                        break
        self.flush_returns()
        return False

    @property
    def returns(self) -> int:
        """Buffers read and not handed back yet."""
        return int(self.driver.q[Q["returns"]])

    def adopt(self, sock: "OffloadSocket") -> "OffloadSocket":
        self.sockets[sock.conn] = sock
        self.driver.register(sock.conn)        # the compiled poll attaches its buffers
        for event in self.orphans.pop(sock.conn, ()):
            sock.on_event(event)
        return sock

    def wait(self, ready, timeout: float | None, batched: bool = False) -> bool:
        self.flush_returns()      # never sleep on buffers the engine may need
        return self.driver.wait_for(ready, timeout, batched)

    def give_back(self, buf_id: int) -> None:
        """Return an anonymous buffer to the engine's pool (unread: nothing consumed);
        it goes with the next batch, or before any wait."""
        driver = self.driver
        datapath.release(driver.qp, driver.conns, driver.bufs, -1, buf_id, 0)
        if driver.q[Q["returns"]] >= driver.q[Q["return_batch"]]:
            self.flush_returns()

    def flush_returns(self) -> None:
        """Hand the read buffers back, with the consumed counters of their sockets
        (written first, in the same compiled call: a counter counts only buffers back
        in the pool, so every connection's window stays within its share of it)."""
        q = self.driver.q
        if q[Q["returns"]] or q[Q["dirty_head"]] >= 0:
            self.driver.flush_returns()

    def watch(self, sock: OffloadSocket, fd=None) -> Readiness:
        """``sock``'s readiness descriptor (host/readiness.py), made now; the event
        pump runs from the first one on."""
        readiness = Readiness(sock, fd)
        if self.pump is None:
            self.pump = EventPump(self)
            self.driver.pump = self.pump
            self.pump.start()
        return readiness

    def _signal_ready(self) -> None:
        """Rows the compiled poll listed (data for a descriptor that said "nothing to
        read"): their descriptors become readable (consuming thread)."""
        ids, sockets = self.ready_ids, self.sockets
        while True:
            count = datapath.take_ready(self.driver.qp, self.driver.conns, ids)
            for conn in ids[:count].tolist():
                sock = sockets.get(conn)
                if sock is not None and sock.readiness is not None:
                    sock.readiness.update_read()
            if count < len(ids):
                return

    def engine_lost(self) -> None:
        """The engine died (found by the event pump): every descriptor reports an
        error, so a program asleep in a poller wakes and its next call raises."""
        for sock in list(self.sockets.values()):
            sock.error = sock.error or errno.ECONNABORTED
            if sock.readiness is not None:
                sock.readiness.fd.fail()

    def _on_event(self, event) -> None:
        """Runs in the thread consuming events: attach, mark, wake; never waits."""
        kind = event.type
        if kind == layout.EV_COMPLETION or kind == layout.EV_ERROR:
            sock = self.closing.pop(event.cookie, None)
            if sock is not None:
                sock.release()
                return
            sock = self.connects.pop(event.cookie, None)
            if sock is not None:
                sock.connect_answered(event)
                return
            sock = self.sockets.get(event.conn)
            if sock is not None and kind == layout.EV_ERROR:
                sock.error = sock.error or event.status    # a SEND the engine refused
            return
        sock = self.sockets.get(event.conn)
        if kind == _RECV_DATA:    # not attached by the poll: whose is it?
            if sock is not None and not sock.closed and event.length:
                sock.on_event(event)             # (a registered socket: a bad id)
                return
            if sock is None and event.conn != 0 and event.length:
                self.orphans.setdefault(event.conn, []).append(event)   # not accepted yet
                return
            if event.conn == 0:
                self.unowned_returns += 1     # e.g. of a child that was never accepted
            self.give_back(event.buffer)
            return
        if sock is None:
            self.orphans.setdefault(event.conn, []).append(event)
            return
        sock.on_event(event)
