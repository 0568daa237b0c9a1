"""Connection set-up and options of an offloaded socket (a mixin of OffloadSocket).

host/offload_socket.py has the socket's data path (send, recv, their waits) and
teardown; this module has what happens around it: options, bind, listen, accept,
connect (blocking or not) and SO_ERROR. Each synchronous call posts one request and
waits for its answer by cookie (host/driver.py).
"""
from __future__ import annotations

import errno
import socket as pysocket
import struct
import time
from typing import TYPE_CHECKING

from toad import layout
from toad.addresses import aton, ntoa, parse_address

if TYPE_CHECKING:
    from host.offload_socket import OffloadSocket

MIN_SHARE = 16384         # the smallest send share (SO_SNDBUF) and first ring



def error(code: int, text: str) -> OSError:
    """OSError(code, ...) is built as the matching subclass (ConnectionResetError...)."""
    return OSError(code, f"{text}: {errno.errorcode.get(code, code)}")


def check(event, what: str) -> None:
    if event.type == layout.EV_ERROR or event.status:
        raise error(event.status or errno.EIO, what)



class SocketSetup:
    """OffloadSocket's options and connection set-up (see the module docstring)."""

    # ---- options ----------------------------------------------------------------------
    def settimeout(self, value: float | None) -> None:
        if value is not None and value < 0:
            raise ValueError("Timeout value out of range")
        self.timeout = value

    def gettimeout(self) -> float | None:
        return self.timeout

    def setblocking(self, flag: bool) -> None:
        self.timeout = None if flag else 0.0

    def getblocking(self) -> bool:
        return self.timeout != 0.0

    def setsockopt(self, level: int, option: int, value) -> None:
        if level == pysocket.IPPROTO_TCP and option == pysocket.TCP_NODELAY:
            # Posted, not waited for (as Linux sets it without a round trip): the engine
            # applies requests in order, so the option holds for every later SEND. It
            # cannot fail for a socket this QP owns; if the engine refused the request
            # anyway, its ERROR event sets the socket's error (host/sockets.py).
            self._check_open()
            self.driver.post(layout.OP_SETOPT, layout.REQ_SILENT, self.conn,
                             option=layout.OPT_NODELAY, value=int(bool(value)))
        elif level == pysocket.SOL_SOCKET and option == pysocket.SO_LINGER:
            on, seconds = struct.unpack("ii", value)
            self.abort_on_close = bool(on) and seconds == 0   # close() sends an RST
        elif level == pysocket.SOL_SOCKET and option == pysocket.SO_SNDBUF:
            # this socket's share of the QP's send area (TOAD's per-connection buffer
            # share); a ring already open grows up to it, never beyond the area
            self.share = max(MIN_SHARE, min(int(value), self.net.area.size))
        elif level == pysocket.SOL_SOCKET and option in (pysocket.SO_REUSEADDR,
                                                          pysocket.SO_RCVBUF):
            return   # ports are reused at once; the receive window follows the QP's pool
        else:
            raise error(errno.ENOPROTOOPT, f"option {level}/{option} is not supported")

    def set_checksum_mode(self, mode: str) -> None:
        """TCP checksum mode of this socket's connection (software, integrated,
        offloaded or off), before connect() or listen(); EISCONN after."""
        if mode not in layout.CHECKSUM_MODES:
            raise error(errno.EINVAL, f"checksum mode {mode!r}: choose one of "
                                      f"{', '.join(layout.CHECKSUM_MODES)}")
        self._call(layout.OP_SETOPT, "setsockopt", option=layout.OPT_CHECKSUM,
                   value=layout.CHECKSUM_MODES.index(mode))

    def set_receive_policy(self, push: bool | None = None, delay_us: int | None = None) -> None:
        """When partly filled receive buffers are posted to this socket (engine side)."""
        if push is not None:
            self._call(layout.OP_SETOPT, "setsockopt", option=layout.OPT_RECV_PUSH,
                       value=int(push))
        if delay_us is not None:
            self._call(layout.OP_SETOPT, "setsockopt", option=layout.OPT_RECV_DELAY_US,
                       value=int(delay_us))

    def getsockname(self) -> tuple[str, int]:
        if self.local_cookie:            # the port a connect was bound to, once known
            event = self.driver.answer(self.local_cookie)
            if event is not None:
                self.local_cookie = 0
                if not (event.type == layout.EV_ERROR or event.status):
                    self.local = (self.local[0], event.port)
        return self.local

    def getpeername(self) -> tuple[str, int]:
        if self.peer is None:
            raise error(errno.ENOTCONN, "getpeername")
        return self.peer

    def fileno(self) -> int:
        """The readiness descriptor (host/readiness.py), made at the first call."""
        if self.closed:
            return -1
        if self.readiness is None:
            self.readiness = self.net.watch(self)
        return self.readiness.fileno()

    # ---- connection set-up --------------------------------------------------------
    def _call(self, opcode: int, what: str, timeout: float | None = None, **fields):
        self._check_open()
        event = self.driver.call(opcode, timeout=timeout, conn=self.conn, **fields)
        check(event, what)
        return event

    def _check_open(self) -> None:
        if self.closed:
            raise error(errno.EBADF, "socket is closed")

    def bind(self, address) -> None:
        addr, port = parse_address(address, "bind")
        event = self._call(layout.OP_BIND, "bind", addr=addr, port=port)
        self.local = (ntoa(addr) if addr else "0.0.0.0", event.port or port)

    def listen(self, backlog: int | None = None) -> None:
        event = self._call(layout.OP_LISTEN, "listen", value=max(backlog or 128, 1))
        self.listening = True
        self.local = (self.local[0], event.port or self.local[1])
        if self.readiness is not None:
            self.readiness.sync()        # a listener is never writable

    def accept(self) -> tuple["OffloadSocket", tuple[str, int]]:
        if not self.listening:
            raise error(errno.EINVAL, "accept: socket is not listening")
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        # The engine posts one ACCEPT_READY per connection it queues, before any ACCEPT
        # can take it, so an ACCEPT is asked only when an event is not matched yet: a
        # server waiting for its next connection makes one round trip, not two (a
        # probe answered EAGAIN, then the ACCEPT after the event).
        unmatched = lambda: self.accept_ready > self.accept_matched or self.closed
        while True:
            self._check_open()
            if unmatched():
                seen = self.accept_ready
                event = self.driver.call(layout.OP_ACCEPT, conn=self.conn)
                if event.type == layout.EV_COMPLETION and event.status == 0:
                    self.accept_matched += 1
                    peer = (ntoa(event.addr), event.port)
                    child = type(self)(self.net, event.value, connected=True, peer=peer)
                    # the engine answers a loopback peer from 127.0.0.1 (engine/tcp)
                    child.local = ("127.0.0.1" if event.addr >> 24 == 127 else
                                   self.net.listen_address, self.local[1])
                    if self.readiness is not None:
                        self.readiness.update_read()
                    return self.net.adopt(child), peer
                if event.status != errno.EAGAIN:
                    check(event, "accept")
                self.accept_matched = seen  # those connections died before they were taken
            if not self._wait(unmatched, deadline):
                if self.readiness is not None:     # a stale "readable" goes (EAGAIN)
                    self.readiness.update_read()
                raise self._would_block("accept")

    def connect(self, address, learn_local: bool = False) -> None:
        """Blocking: the handshake's outcome. Non-blocking (timeout 0), as Linux: the
        first call starts the handshake and raises EINPROGRESS; later calls raise
        EALREADY until it is over, then return (or raise its error) once; after that
        EISCONN. SO_ERROR also reports a failed handshake. ``learn_local``: an unbound
        socket is bound to a port the engine picks first (BIND, posted just before the
        CONNECT, not waited for), so getsockname() names it; the engine's CONNECT
        answer does not carry the port it chose."""
        self._check_open()
        if self.connecting is not None:
            return self._finish_connect()
        if self.connected:
            raise error(errno.EISCONN, "connect")
        addr, port = parse_address(address, "connect")
        if addr == 0:
            addr = aton("127.0.0.1")
        if learn_local and not self.local[1]:
            self.local_cookie = self.driver.start(layout.OP_BIND, conn=self.conn)
            self.local = ("127.0.0.1" if addr >> 24 == 127 else self.net.connect_address, 0)
        if self.timeout == 0:
            cookie = self.driver.new_cookie()
            self.net.connects[cookie] = self          # its answer: connect_answered
            self.connecting = (cookie, addr, port)
            self.connect_answer = None
            if self.readiness is not None:
                self.readiness.update_write()          # not writable while connecting
            self.driver.post(layout.OP_CONNECT, 0, self.conn, cookie, addr, port)
            raise error(errno.EINPROGRESS, "connect")
        try:
            event = self.driver.call(layout.OP_CONNECT, timeout=self.timeout, conn=self.conn,
                                     addr=addr, port=port)
        except TimeoutError:
            self.close(abort=True)
            raise TimeoutError("timed out") from None
        if self.readiness is not None and (event.type == layout.EV_ERROR or event.status):
            self.readiness.fd.fail()
            self.readiness.fd.clear_error()          # (the call reports it)
        check(event, f"connect to {ntoa(addr)}:{port}")
        self.connected = True
        self.peer = (ntoa(addr), port)

    def connect_answered(self, event) -> None:
        """A non-blocking connect's answer (consuming thread)."""
        self.connect_answer = event
        if self.readiness is not None:
            failed = event.type == layout.EV_ERROR or event.status
            self.readiness.connected(event.status or errno.EIO if failed else 0)

    def _finish_connect(self, in_progress: int = errno.EALREADY) -> None:
        """A connect started non-blocking: its outcome if in (waiting for it unless
        the socket is non-blocking: then ``in_progress`` is raised while it is not)."""
        _cookie, addr, port = self.connecting
        if not self._wait(lambda: self.connect_answer is not None, self._deadline()):
            if self.timeout != 0:
                raise TimeoutError("timed out")
            raise error(in_progress, "connect in progress")
        event = self.connect_answer
        status = self._connect_done(event)
        if status:
            raise error(status, f"connect to {ntoa(addr)}:{port}")

    def _connect_done(self, event) -> int:
        """Record a started connect's answer: 0 (connected now) or its errno."""
        _cookie, addr, port = self.connecting
        self.connecting = None
        self.connect_answer = None
        if event.type == layout.EV_ERROR or event.status:
            return event.status or errno.EIO
        self.connected = True
        self.peer = (ntoa(addr), port)
        return 0

    def getsockopt(self, level: int, option: int, buflen: int = 0) -> int:
        """SO_ERROR: a non-blocking connect's failure (0 while it is in progress or
        succeeded), then 0: the poll-for-writable pattern of non-blocking clients; a
        connection's error (a reset) once."""
        if (level, option) != (pysocket.SOL_SOCKET, pysocket.SO_ERROR) or buflen:
            raise error(errno.ENOPROTOOPT, "getsockopt: only SOL_SOCKET SO_ERROR")
        if self.connecting is not None:
            if self.connect_answer is None:
                self.driver.try_poll()
            if self.connect_answer is not None:
                self.so_error = self._connect_done(self.connect_answer)
        value, self.so_error = self.so_error, 0
        if not value and self.error and not self.error_read:
            value, self.error_read = self.error, True    # a reset's error, once (Linux)
        if self.readiness is not None:
            self.readiness.fd.clear_error()
        return value

    def connect_ex(self, address) -> int:
        """connect(), returning the errno instead of raising it (0 on success)."""
        try:
            self.connect(address)
        except OSError as exc:
            return exc.errno or errno.ETIMEDOUT
        return 0
