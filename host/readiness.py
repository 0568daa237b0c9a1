"""A real file descriptor for an offloaded socket, whose readiness follows its state.

An offloaded socket's news comes through the QP's event ring, which select, poll,
epoll and asyncio cannot watch. So each socket that is asked for ``fileno()`` gets a
descriptor of its own: one end (``app``) of a Unix stream socket pair; toad holds the
other end (``ctl``) and moves the pair through the states Linux's ``tcp_poll``
reports, using the kernel's own Unix-socket rules:

=================================  ============================  =====================
TCP state (Linux tcp_poll)         mask                          done with the pair
=================================  ============================  =====================
data, or a connection to accept    IN                            ctl sends one byte
nothing to read                    (no IN)                       app reads it back
send buffer full, connecting,      (no OUT)                      app sends a filler
listening                                                        (fills its send buffer)
room to write                      OUT                           ctl reads the filler
peer's FIN                         IN RDHUP                      ctl shutdown(SHUT_WR)
our SHUT_RD                        IN RDHUP                      app shutdown(SHUT_RD)
our SHUT_WR (+ peer FIN: HUP)      OUT (HUP once both)           ctl shutdown(SHUT_RD)
reset, refused, aborted            IN OUT ERR HUP RDHUP          ctl closed with bytes
                                                                 unread (Linux then
                                                                 sets ECONNRESET on app)
=================================  ============================  =====================

One state differs: a socket never connected nor listening is writable here, while
Linux also reports HUP for it (and select() then calls it readable). A descriptor's
state cannot go back from HUP, and the socket may still connect.

Cost: a transition is one system call (two for a reset); a call that changes
nothing makes none. Readable is raised when data arrives for a socket whose
descriptor said "nothing to read" (the compiled poll lists such rows: host/datapath.py
``ready``), and lowered when a ``recv`` takes the last attached buffer (its DRAINED
result bit) or finds nothing; writable is lowered when a non-blocking send finds no
room (before it asks the engine for a SEND_SPACE event) and raised by that event.
Who consumes the events while the application sleeps in select is
host/event_pump.py. Each transition method takes the descriptor's lock and re-reads
the truth under it, so two threads racing on one socket leave it in the state the
socket is in (never a lost wake-up; at worst one stale "ready", which the next call
answers with EAGAIN and corrects).
"""
from __future__ import annotations

import _socket
import os
import socket as pysocket
import threading
from typing import TYPE_CHECKING

from host.datapath import SIGNALED, UNWATCHED, WATCHING
from toad import layout

if TYPE_CHECKING:
    from host.offload_socket import OffloadSocket

APP_SNDBUF = 4096          # the app end's send buffer (Linux doubles it): a filler of
                           # one send fills it, a 1-byte token leaves it writable
_SCRATCH = bytearray(65536)
_FILLER = bytes(65536)     # more than app's send buffer takes in one send


def _on_fd(fd: int, call, *args):
    """A socket call on descriptor ``fd`` without owning it."""
    sock = _socket.socket(fileno=fd)
    try:
        return call(sock, *args)
    finally:
        sock.detach()


class ReadyFd:
    """The two ends and the transitions (see the module docstring). The app end is
    used by its number (the application's socket object owns it, ``owns_app`` False,
    or this object does); every use holds ``lock``, and ``close`` under it stops them,
    so a number closed by its owner is never touched again."""

    def __init__(self):
        app, ctl = _socket.socketpair(pysocket.AF_UNIX, pysocket.SOCK_STREAM)
        app.setsockopt(pysocket.SOL_SOCKET, pysocket.SO_SNDBUF, APP_SNDBUF)
        app.setblocking(False)
        ctl.setblocking(False)
        self.app_fd = app.detach()
        self.owns_app = True
        self.ctl: _socket.socket | None = ctl
        self.lock = threading.Lock()
        self.readable = False            # a byte waits in app's receive queue
        self.writable = True             # no filler in ctl's receive queue
        self.read_ended = False          # readable for good (EOF, SHUT_RD, failure)
        self.write_ended = False         # writable for good (SHUT_WR, failure)
        self.failed = False
        self.signals = 0                 # transitions made (system calls, roughly)

    def fileno(self) -> int:
        return self.app_fd

    def set_readable(self, on: bool) -> None:
        """Caller holds ``lock``."""
        if on == self.readable or self.read_ended or self.ctl is None:
            return
        if on:
            self.ctl.send(b"r")
        else:
            try:
                while os.readv(self.app_fd, [_SCRATCH]):
                    pass
            except BlockingIOError:
                pass
        self.readable = on
        self.signals += 1

    def set_writable(self, on: bool) -> None:
        """Caller holds ``lock``."""
        if on == self.writable or self.write_ended or self.ctl is None:
            return
        if on:
            try:
                while self.ctl.recv_into(_SCRATCH):
                    pass
            except BlockingIOError:
                pass
        else:
            try:
                os.write(self.app_fd, _FILLER)     # takes what fills it
            except BlockingIOError:
                pass
        self.writable = on
        self.signals += 1

    def end_reading(self) -> None:
        """The peer's FIN: readable (EOF) for good."""
        with self.lock:
            if not self.read_ended and self.ctl is not None:
                self.ctl.shutdown(pysocket.SHUT_WR)
                self.read_ended = True
                self.signals += 1

    def shut(self, how: int) -> None:
        """The application's shutdown: SHUT_RD reads EOF for good, SHUT_WR writes
        (and fails) at once for good."""
        with self.lock:
            if self.ctl is None:
                return
            if how in (pysocket.SHUT_RD, pysocket.SHUT_RDWR) and not self.read_ended:
                _on_fd(self.app_fd, _socket.socket.shutdown, pysocket.SHUT_RD)
                self.read_ended = True
            if how in (pysocket.SHUT_WR, pysocket.SHUT_RDWR) and not self.write_ended:
                self.set_writable(True)
                self._leave_token()       # (a later reset still shows ERR)
                self.ctl.shutdown(pysocket.SHUT_RD)   # app: SEND_SHUTDOWN
                self.write_ended = True
            self.signals += 1

    def fail(self) -> None:
        """Reset, refused or aborted: IN OUT ERR HUP, for good."""
        with self.lock:
            if self.ctl is None or self.failed:
                return
            self._leave_token()           # unread bytes at close: Linux sets app's error
            self.ctl.close()
            self.ctl = None
            self.failed = self.read_ended = self.write_ended = True
            self.readable, self.writable = True, True
            self.signals += 1

    def _leave_token(self) -> None:
        """A byte in ctl's receive queue (nothing if app cannot send any more)."""
        try:
            os.write(self.app_fd, b"!")
        except OSError:
            pass                          # full (a filler is there already) or shut

    def clear_error(self) -> None:
        """The application read SO_ERROR (or got the error from a call): Linux clears
        the socket's error, and the descriptor's goes too (ERR leaves its mask)."""
        with self.lock:
            if self.failed and self.app_fd >= 0:
                _on_fd(self.app_fd, _socket.socket.getsockopt, pysocket.SOL_SOCKET,
                       pysocket.SO_ERROR)

    def move(self, fd: int) -> None:
        """The app end's number is now ``fd`` (a dup of it: its owner closes the other)."""
        with self.lock:
            self.app_fd = fd

    def close(self) -> None:
        """Close toad's end (and the app end if this object owns it); no use after."""
        with self.lock:
            if self.ctl is not None:
                self.ctl.close()
                self.ctl = None
            if self.owns_app and self.app_fd >= 0:
                os.close(self.app_fd)
            self.app_fd = -1
            self.failed = self.read_ended = self.write_ended = True   # (no more calls)


class Readiness:
    """Keeps one OffloadSocket's ReadyFd in step with it. The socket calls it at its
    transitions (events in the consuming thread, its own calls in the caller's)."""

    def __init__(self, sock: OffloadSocket, fd: ReadyFd | None = None):
        self.sock = sock
        self.fd = fd or ReadyFd()
        self.write_blocked = False   # a non-blocking send found no room: no OUT until
                                     # a SEND_SPACE event (or room found)
        sock.tx["ready"] = WATCHING
        self.sync()

    def fileno(self) -> int:
        return self.fd.fileno()

    def sync(self) -> None:
        """Every part of the descriptor from the socket's state (at the start, and
        when it changes in a way no single transition covers)."""
        sock, fd = self.sock, self.fd
        if sock.error or sock.closed:
            fd.fail()
            return
        if sock.eof:
            fd.end_reading()
        if sock.shut_rd or sock.shut_wr:
            fd.shut(pysocket.SHUT_RDWR if sock.shut_rd and sock.shut_wr else
                    pysocket.SHUT_RD if sock.shut_rd else pysocket.SHUT_WR)
        self.update_read()
        self.update_write()

    def update_read(self) -> None:
        """Readable when a recv (accept) would not wait: data attached (a connection
        not accepted yet); EOF, errors and SHUT_RD are for good (ReadyFd)."""
        sock, fd = self.sock, self.fd
        with fd.lock:
            if sock.listening:
                on = sock.accept_ready > sock.accept_matched
            else:
                row = sock.tx
                row["ready"] = WATCHING      # first: an attach from now on lists the row
                on = sock.net.rx_count[sock.row] > 0 or row["spilled"] > 0
                if on:
                    row["ready"] = SIGNALED
            fd.set_readable(on)

    def update_write(self) -> None:
        sock, fd = self.sock, self.fd
        # a connect is pending until its answer is in (connect_answered), not until
        # the application collects it (_connect_done): its poller waits for OUT first
        pending = sock.connecting is not None and sock.connect_answer is None
        with fd.lock:
            fd.set_writable(not (sock.listening or pending or self.write_blocked))

    def block_write(self) -> None:
        """A non-blocking send found no room: OUT goes (before the SEND_SPACE request
        that will bring it back is posted)."""
        self.write_blocked = True
        self.update_write()

    def unblock_write(self) -> None:
        if self.write_blocked:
            self.write_blocked = False
            self.update_write()

    def on_event(self, kind: int) -> None:
        """An event of this socket, dispatched (consuming thread)."""
        if kind == layout.EV_PEER_CLOSED:
            self.fd.end_reading()
        elif kind == layout.EV_RESET:
            self.fd.fail()
        elif kind == layout.EV_ACCEPT_READY:
            self.update_read()
        elif kind == layout.EV_SEND_SPACE:
            if self.sock.error:
                self.fd.fail()
            else:
                self.unblock_write()

    def connected(self, status: int) -> None:
        """A non-blocking connect's outcome."""
        if status:
            self.fd.fail()
        else:
            self.update_write()

    def close(self) -> None:
        row = self.sock.tx
        if row["ready"] != UNWATCHED and self.sock.net.sockets.get(self.sock.conn) is self.sock:
            row["ready"] = UNWATCHED
        self.fd.close()
