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
  poll attaches to their connection's queue (registered at adopt, dropped at close);
  ``recv``/``recv_into`` copy out once and give a buffer read to its end back to the
  pool (in batches), publishing the consumed-bytes counter (the engine opens the
  window from it) with it. Blocked receivers sleep on the QP's interrupt; a socket
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
import threading

from host.copy_align import address
from host.driver import Driver, Event
from host.offload_socket import OffloadSocket, check, error  # noqa: F401 (re-exported)
from host.send_buffers import SendArea
from toad import layout
from toad.errors import ToadError

_RECV_DATA = layout.EV_RECV_DATA
RETURN_BATCH = 32         # read anonymous buffers handed back per doorbell (at most)

class OffloadNetwork:
    """One QP of the engine named ``config.name``, shared by this process's sockets."""

    mode = "offload"

    def __init__(self, config):
        self.config = config
        try:
            self.driver = Driver(config, on_event=self._on_event,
                                 on_recv_data=self._on_recv_data)
        except ToadError as exc:
            raise ToadError(f"offload mode: {exc}") from None
        lay = self.driver.layout
        self.listen_address = self.connect_address = (
            config.nic.tap.address if config.nic.kind == "tap" else config.nic.address
        ).split("/")[0]
        self.area = SendArea(lay.send_offset, lay.send_bytes)
        self.share = min(config.qp.send_share_bytes, lay.send_bytes)
        self.threshold = config.qp.send_space_threshold
        self.buffer_bytes = lay.recv_buffer_bytes
        self.recv_offset = lay.recv_offset
        self.mem_addr = address(self.driver.mv)   # where the QP's memory is mapped
        self.sockets: dict[int, OffloadSocket] = {}
        self.orphans: dict[int, list] = {}     # events that beat their ACCEPT answer
        self.closing: dict[int, OffloadSocket] = {}   # CLOSE cookie -> socket
        self.closed = False
        self._rx_in_engine = lay.recv_buffers  # (see rx_in_engine)
        self.unowned_returns = 0               # buffers the engine gave back unused
        self.returns: list[int] = []           # read buffers not yet handed back
        # consumed-counter word -> value, written by flush_returns with the buffers
        self.released: dict[int, int] = {}
        self._flush_lock = threading.Lock()
        self.return_batch = max(1, min(RETURN_BATCH, lay.recv_buffers // 8))
        self.driver.post_rx_buffers([(self.driver.recv_buffer_offset(i), lay.recv_buffer_bytes, i)
                                     for i in range(lay.recv_buffers)])

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

    def listen(self, port: int, backlog: int = 128) -> "OffloadSocket":
        """A listening socket on the engine's address; port in use: a clear ToadError."""
        sock = self.socket()
        try:
            sock.bind(("", port))
        except OSError as exc:
            sock.close()
            raise ToadError(f"workload.port: cannot listen on port {port} in the engine "
                            f"({exc.strerror}); pick another with --set workload.port=N") from None
        sock.listen(backlog)
        return sock

    def close(self) -> None:
        """Close every socket, give closing connections ``qp.close_linger_s`` to get
        their data acknowledged (the engine resets the rest), detach the QP."""
        if self.closed:
            return
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
    def check_open(self) -> None:
        if self.closed:
            raise error(errno.EBADF, "the offload network is closed")

    @property
    def rx_in_engine(self) -> int:
        """Anonymous buffers not in our hands (the driver's poll attaches most
        RECV_DATA buffers itself and counts them)."""
        return self._rx_in_engine - self.driver.recv_attached

    def adopt(self, sock: "OffloadSocket") -> "OffloadSocket":
        self.sockets[sock.conn] = sock
        self.driver.rx_queues[sock.conn] = sock.rx   # poll attaches its buffers
        for event in self.orphans.pop(sock.conn, ()):
            sock.on_event(event)
        return sock

    def wait(self, ready, timeout: float | None, batched: bool = False) -> bool:
        if self.returns or self.released:
            self.flush_returns()      # never sleep on buffers the engine may need
        return self.driver.wait_for(ready, timeout, batched)

    def give_back(self, buf_id: int) -> None:
        """Return an anonymous buffer to the engine's pool (in small batches: one
        doorbell per ``return_batch`` buffers; everything goes before any wait)."""
        self._rx_in_engine += 1
        self.returns.append(buf_id)
        if len(self.returns) >= self.return_batch:
            self.flush_returns()

    def flush_returns(self) -> None:
        """Hand the read buffers back, with the consumed counters of their sockets.

        A counter counts only buffers that are back in the pool (or go back in this
        call). Counted at read time instead, as before, the QP's unreturned read buffers
        (up to ``return_batch - 1``, plus partly read ones) opened windows with space
        the pool did not have: with two receiving connections both windows could cover
        the same free buffers, and the engine ran out of them (``rx_out_of_buffers``,
        each one repaired by a retransmission, sometimes after an RTO). With the
        counter here every connection's window stays within its share of the pool.
        The counters are stored before the doorbell, so the engine's window update on
        that doorbell reads them; in between, a window they open is one these very
        buffers fill (x86-64 store order; toad/layout.py)."""
        with self._flush_lock:           # (flushes in order: counters never go back)
            # Readers append a buffer, then set its socket's counter, without a lock.
            # Counters are popped first, then the buffers taken, so every buffer a
            # counter counts goes back in this call; what readers add meanwhile stays
            # for the next flush (pop and del are atomic, a swap would lose it).
            released, counters = self.released, []
            for word in list(released):
                total = released.pop(word, None)
                if total is not None:
                    counters.append((word, total))
            returns = self.returns
            count = len(returns)
            batch = returns[:count]
            del returns[:count]
            u64 = self.driver.u64
            for word, total in counters:
                u64[word] = total
            if batch:
                self.driver.return_buffers(batch)

    def _on_recv_data(self, values: tuple) -> None:
        """A RECV_DATA event (a raw EVENT_BODY_STRUCT tuple) the driver's poll did not
        attach itself: attach the buffer to its socket, else the general path."""
        sock = self.sockets.get(values[2])            # conn
        if sock is not None and not sock.closed and values[10]:   # length
            self._rx_in_engine -= 1
            sock.rx.append([values[7], 0, values[10]])  # buffer, start, length
        else:
            self._on_event(Event._make(values))

    def _on_event(self, event) -> None:
        """Runs in the thread consuming events: attach, mark, wake; never waits."""
        kind = event.type
        if kind == _RECV_DATA:        # attach the buffer
            self._rx_in_engine -= 1
            sock = self.sockets.get(event.conn)
            if sock is not None and not sock.closed and event.length:
                sock.rx.append([event.buffer, 0, event.length])
                return
        elif kind == layout.EV_COMPLETION or kind == layout.EV_ERROR:
            sock = self.closing.pop(event.cookie, None)
            if sock is not None:
                sock.release()
                return
            sock = self.sockets.get(event.conn)
            if sock is not None and kind == layout.EV_ERROR:
                sock.error = sock.error or event.status    # a SEND the engine refused
            return
        sock = self.sockets.get(event.conn)
        if sock is None:
            if kind == layout.EV_RECV_DATA and event.conn == 0:
                self.unowned_returns += 1     # e.g. of a child that was never accepted
                self.give_back(event.buffer)
            else:
                self.orphans.setdefault(event.conn, []).append(event)
            return
        sock.on_event(event)
