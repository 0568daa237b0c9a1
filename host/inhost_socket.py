"""A socket over the in-host stack, shaped like Python's ``socket.socket``.

Supported: bind, listen, accept, connect, send, sendall, recv, recv_into, shutdown,
close, settimeout/gettimeout, setblocking, setsockopt(TCP_NODELAY), getsockname,
getpeername and the context manager. Blocking calls drive the network inline
(host/inhost.py ``InhostNetwork.wait``). Errors are OSError subclasses with Linux's
errno: ConnectionRefusedError, ConnectionResetError, BrokenPipeError, TimeoutError
(a socket timeout, errno None, as Python's), BlockingIOError (EAGAIN / EINPROGRESS),
OSError EBADF / ENOTCONN / EISCONN / EINVAL / EADDRINUSE.
"""
from __future__ import annotations

import errno
import socket as pysocket
from time import perf_counter_ns

from engine.tcp.events import Closed, Established, PeerClosed, Refused, Reset, TimedOut
from engine.tcp.states import State
from engine.tcp.wire import ipv4
from host.copy_timer import COPY_TIMER
from toad.addresses import parse_address

OPEN_STATES = (State.SYN_SENT, State.SYN_RECEIVED)


def error(code: int, text: str) -> OSError:
    """OSError(code) is built as the matching subclass (ConnectionResetError, ...)."""
    return OSError(code, f"{text}: {errno.errorcode.get(code, code)}")


class InhostSocket:
    def __init__(self, network, conn=None):
        self.network = network
        self.conn = conn
        self.listener = None
        self.local_port = conn.local[1] if conn is not None else 0
        self.timeout: float | None = None
        self.closed = False
        self.read_shut = False
        self.eof = False
        self.failed: int | None = None     # errno from a Reset/Refused/TimedOut event
        if conn is not None:
            network.sockets[conn] = self

    # ---- events from the network -------------------------------------------------

    def on_event(self, event) -> None:
        if isinstance(event, PeerClosed):
            self.eof = True
        elif isinstance(event, (Reset, Refused, TimedOut)):
            self.failed = self.conn.error if self.conn is not None and self.conn.error else {
                Reset: errno.ECONNRESET, Refused: errno.ECONNREFUSED,
                TimedOut: errno.ETIMEDOUT}[type(event)]
        elif isinstance(event, Closed) and self.conn is not None:
            self.network.sockets.pop(self.conn, None)
        elif isinstance(event, Established):
            pass

    # ---- options -----------------------------------------------------------------

    def settimeout(self, value: float | None) -> None:
        if value is not None and value < 0:
            raise ValueError("Timeout value out of range")
        self.timeout = None if value is None else float(value)

    def gettimeout(self) -> float | None:
        return self.timeout

    def setblocking(self, flag: bool) -> None:
        self.timeout = None if flag else 0.0

    def setsockopt(self, level: int, option: int, value) -> None:
        self.check_open()
        if level == pysocket.IPPROTO_TCP and option == pysocket.TCP_NODELAY:
            self.nodelay = bool(value)
            if self.conn is not None:
                self.conn.set_nodelay(bool(value))
        elif level == pysocket.SOL_SOCKET and option in (pysocket.SO_REUSEADDR,):
            pass        # every port is reusable once its connection is gone
        else:
            raise error(errno.ENOPROTOOPT, "option not supported by the in-host stack")

    nodelay = False

    # ---- addresses ---------------------------------------------------------------

    def getsockname(self) -> tuple[str, int]:
        if self.conn is not None:
            return ipv4.ntoa(self.conn.local[0]), self.conn.local[1]
        return "0.0.0.0", self.local_port

    def getpeername(self) -> tuple[str, int]:
        if self.conn is None:
            raise error(errno.ENOTCONN, "getpeername")
        return ipv4.ntoa(self.conn.remote[0]), self.conn.remote[1]

    def fileno(self) -> int:
        return -1

    # ---- connection setup --------------------------------------------------------

    def bind(self, address) -> None:
        self.check_open()
        ip, port = parse_address(address, "bind")
        if ip not in (0, self.network.ip) and not ipv4.is_loopback(ip):
            raise error(errno.EADDRNOTAVAIL, f"bind: {address[0]} is not this stack's address")
        if self.local_port or self.conn is not None:
            raise error(errno.EINVAL, "bind: socket already bound")
        if port and (port in self.network.bound_ports or port in self.network.stack.listeners):
            raise error(errno.EADDRINUSE, f"bind: port {port}")
        if port == 0:
            port = self.free_port()
        self.local_port = port
        self.network.bound_ports.add(port)

    def free_port(self) -> int:
        used = self.network.bound_ports | set(self.network.stack.listeners)
        for port in range(49152, 65536):
            if port not in used:
                return port
        raise error(errno.EADDRINUSE, "no free port")

    def listen(self, backlog: int | None = None) -> None:
        self.check_open()
        if self.conn is not None:
            raise error(errno.EINVAL, "listen on a connected socket")
        if self.listener is not None:
            return
        if not self.local_port:
            self.bind(("", 0))
        self.listener = self.network.stack.listen(self.local_port, backlog)
        self.network.sockets[self.listener] = self

    def accept(self) -> tuple["InhostSocket", tuple[str, int]]:
        self.check_open()
        if self.listener is None:
            raise error(errno.EINVAL, "accept on a socket that is not listening")
        listener = self.listener
        self.block(lambda: bool(listener.ready))
        conn = listener.accept()
        sock = InhostSocket(self.network, conn)
        sock.timeout = None                # as Python without a default timeout
        if self.nodelay:
            sock.setsockopt(pysocket.IPPROTO_TCP, pysocket.TCP_NODELAY, 1)
        self.network.step()               # its parked events reach it now
        return sock, (ipv4.ntoa(conn.remote[0]), conn.remote[1])

    def connect(self, address) -> None:
        self.check_open()
        if self.conn is not None:
            raise error(errno.EISCONN, "connect")
        if self.listener is not None:
            raise error(errno.EINVAL, "connect on a listening socket")
        ip, port = parse_address(address, "connect")
        if port == 0:
            raise error(errno.ECONNREFUSED, "connect to port 0")
        net = self.network
        self.network.bound_ports.discard(self.local_port)
        self.conn = net.stack.connect(ip or net.ip, port, net.clock(), local_port=self.local_port)
        net.sockets[self.conn] = self
        if self.nodelay:
            self.conn.set_nodelay(True)
        if self.timeout == 0.0:
            net.step()
            raise error(errno.EINPROGRESS, "connect")
        conn = self.conn
        if not net.wait(lambda: conn.state not in OPEN_STATES or self.failed, self.timeout):
            conn.abort(net.clock())
            net.step()
            raise TimeoutError("timed out")
        self.raise_failure("connect")

    # ---- data --------------------------------------------------------------------

    def send(self, data) -> int:
        conn = self.connected()
        view = memoryview(data).cast("B")
        if not view:
            return 0
        self.raise_failure("send")
        conn.check_can_send()
        buffer = conn.send_buffer
        self.block(lambda: buffer.free_space() > 0 or self.failed or conn.state is State.CLOSED)
        self.raise_failure("send")
        timer = COPY_TIMER          # one copy in N is timed (host/copy_timer.py)
        timer.countdown -= 1
        if timer.countdown:
            taken = conn.send(view)     # the copy into the stack's send buffer
        else:
            t0 = perf_counter_ns()
            taken = conn.send(view)
            timer.add(perf_counter_ns() - t0, taken)
        self.network.step()
        return taken

    def sendall(self, data) -> None:
        view = memoryview(data).cast("B")
        deadline = None if self.timeout is None else self.network.clock() + self.timeout
        saved = self.timeout
        try:
            while view:
                if deadline is not None:
                    self.timeout = max(0.0, deadline - self.network.clock())
                sent = self.send(view)
                view = view[sent:]
        finally:
            self.timeout = saved

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        if bufsize < 0:
            raise ValueError("negative buffersize in recv")
        buffer = self.wait_readable()
        if buffer is None or bufsize == 0:
            return b""
        data = buffer.read(bufsize)
        self.after_read()
        return data

    def recv_into(self, target, nbytes: int = 0, flags: int = 0) -> int:
        view = memoryview(target).cast("B")
        if nbytes < 0:
            raise ValueError("negative buffersize in recv_into")
        if nbytes:
            view = view[:nbytes]
        buffer = self.wait_readable()
        if buffer is None or not view:
            return 0
        timer = COPY_TIMER
        timer.countdown -= 1
        if timer.countdown:
            n = buffer.readinto(view)   # the copy out of the stack's receive buffer
        else:
            t0 = perf_counter_ns()
            n = buffer.readinto(view)
            timer.add(perf_counter_ns() - t0, n)
        self.after_read()
        return n

    def wait_readable(self):
        """The receive buffer once it holds data; None at end of stream."""
        conn = self.connected()
        buffer = conn.recv_buffer
        if self.read_shut:
            return None
        self.block(lambda: len(buffer) or self.eof or self.failed
                   or conn.state is State.CLOSED)
        if len(buffer):
            return buffer
        self.raise_failure("recv")
        return None

    def after_read(self) -> None:
        self.conn.notify_read(self.network.clock())
        if self.conn.ack_now:
            self.network.step()            # the window update goes out now

    # ---- teardown ----------------------------------------------------------------

    def shutdown(self, how: int) -> None:
        conn = self.connected()
        if how not in (pysocket.SHUT_RD, pysocket.SHUT_WR, pysocket.SHUT_RDWR):
            raise error(errno.EINVAL, "shutdown")
        if how in (pysocket.SHUT_RD, pysocket.SHUT_RDWR):
            self.read_shut = True
        if how in (pysocket.SHUT_WR, pysocket.SHUT_RDWR):
            conn.shutdown(self.network.clock())
            self.network.step()

    def close(self) -> None:
        """Graceful close: queued data, then FIN (the network finishes the exchange)."""
        if self.closed:
            return
        self.closed = True
        net = self.network
        net.bound_ports.discard(self.local_port)
        if self.listener is not None:
            net.stack.close_listener(self.listener)
            net.sockets.pop(self.listener, None)
        if self.conn is not None and not net.closed:
            self.conn.close(net.clock())
            net.step()

    def detach(self) -> None:
        raise error(errno.EOPNOTSUPP, "detach: an in-host socket has no descriptor")

    def __enter__(self) -> "InhostSocket":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- helpers -----------------------------------------------------------------

    def check_open(self) -> None:
        if self.closed:
            raise error(errno.EBADF, "socket is closed")
        self.network.check_open()

    def connected(self):
        self.check_open()
        if self.conn is None:
            raise error(errno.ENOTCONN, "socket is not connected")
        return self.conn

    def block(self, ready) -> None:
        """Wait for ``ready()`` within the socket's timeout (0: raise EAGAIN now)."""
        if ready():
            return
        if self.timeout == 0.0:
            self.network.step()
            if ready():
                return
            raise error(errno.EAGAIN, "operation would block")
        if not self.network.wait(ready, self.timeout):
            raise TimeoutError("timed out")

    def raise_failure(self, what: str) -> None:
        if self.failed:
            raise error(self.failed, what)
        if self.conn is not None and self.conn.error:
            raise error(self.conn.error, what)
