"""``socket.socket`` for offloaded TCP: what an unmodified program's sockets become.

:class:`ToadSocket` is a subclass of ``socket.socket`` (``isinstance`` holds) whose
TCP runs in the engine: each method is the matching OffloadSocket call
(host/offload_socket.py) with Python's signature, argument checks and Linux's errno.
Its file descriptor (the C socket object underneath) is the app end of the socket's
readiness pair (host/readiness.py): ``fileno()`` is a real descriptor select, poll,
epoll and asyncio wait on, and nothing else is ever done to it by the program's
calls, all of which are overridden here.

Where Python's behaviour rests on the kernel's, this module copies it:
``makefile`` (inherited: SocketIO over recv_into and send), ``sendfile`` (the send
fallback, always: there is no kernel socket to sendfile into), ``dup`` (the
inherited one, through ``socket.socket(fileno=...)``: a second owner of the same
connection; it closes with its last owner), ``detach`` (the descriptor stays open,
the connection lives, and ``socket.socket(fileno=fd)`` takes it up again),
``settimeout``/``setblocking`` (the socket's own timeout; the descriptor itself
always stays non-blocking), common options (TCP_NODELAY, SO_LINGER, SO_SNDBUF act;
the rest are remembered and read back), names (``getaddrinfo`` for host names;
IPv4 only). Not supported: MSG_* flags other than MSG_DONTWAIT (EOPNOTSUPP),
ancillary data, recvmsg.

Which network the sockets use is set by :func:`use_network_config` (host/offload_exec.py
calls it); the network itself (one QP for the process) is made at the first socket.
"""
from __future__ import annotations

import _socket
import errno
import os
import socket as pysocket
import struct
import threading
import warnings

from host.offload_socket import error

_SO, _TCP = pysocket.SOL_SOCKET, pysocket.IPPROTO_TCP
# options only remembered (the engine has no such setting) and their Linux defaults
REMEMBERED = {(_SO, pysocket.SO_REUSEADDR): 0, (_SO, pysocket.SO_REUSEPORT): 0,
              (_SO, pysocket.SO_KEEPALIVE): 0, (_SO, pysocket.SO_RCVBUF): 131072,
              (_SO, pysocket.SO_BROADCAST): 0, (_SO, pysocket.SO_OOBINLINE): 0,
              (_TCP, pysocket.TCP_KEEPIDLE): 7200, (_TCP, pysocket.TCP_KEEPINTVL): 75,
              (_TCP, pysocket.TCP_KEEPCNT): 9, (_TCP, pysocket.TCP_QUICKACK): 1,
              (pysocket.IPPROTO_IP, pysocket.IP_TOS): 0,
              (pysocket.IPPROTO_IP, pysocket.IP_TTL): 64}
_lock = threading.Lock()
_config = None
_network = None
_connections: dict[tuple[int, int], "_Connection"] = {}   # (st_dev, st_ino) -> connection
moved = {"sent": 0, "received": 0, "connections": 0}   # of connections closed so far


def use_network_config(config) -> None:
    """New TCP sockets go to the engine of ``config`` (None: no more offloading)."""
    global _config
    _config = config


def network():
    """The process's OffloadNetwork (attached at the first call)."""
    global _network
    with _lock:
        if _network is None or _network.closed:
            if _config is None:
                raise error(errno.EAFNOSUPPORT, "no toad engine configured for offloaded "
                                                "sockets (host.offload_exec.install)")
            from host.sockets import OffloadNetwork
            _network = OffloadNetwork(_config)
        return _network


def close_network() -> None:
    """Close the process's network (sockets still open are closed with it)."""
    global _network
    with _lock:
        net, _network = _network, None
    if net is not None:
        net.close()
    _connections.clear()


def forget_network_after_fork() -> None:
    """In a forked child: the parent's QP is not ours (never close it from here)."""
    global _network
    _network = None
    _connections.clear()


def current_network():
    return _network


def bytes_moved() -> dict:
    """Bytes sent and received through offloaded sockets so far, and connections."""
    out = dict(moved)
    for conn in list(_connections.values()):
        out["sent"] += conn.sent
        out["received"] += conn.received
        out["connections"] += 1
    return out


class _Connection:
    """One offloaded connection and the descriptors (a socket and its dups) on it."""

    def __init__(self, sock, key: tuple[int, int]):
        self.sock = sock
        self.key = key
        self.fds: list[int] = []
        self.options: dict = {}
        self.sent = self.received = 0     # bytes through the program's calls

    def attach(self, fd: int) -> None:
        self.fds.append(fd)

    def detach(self, fd: int) -> bool:
        """``fd`` is no longer an owner; True when it was the last."""
        self.fds.remove(fd)
        ready = self.sock.readiness
        if self.fds and ready is not None and ready.fd.app_fd == fd:
            ready.fd.move(self.fds[0])
        return not self.fds


def _key(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def connection_of(fd: int) -> _Connection | None:
    """The offloaded connection whose readiness descriptor ``fd`` is (a dup, a
    detached one), else None."""
    if not _connections:
        return None
    try:
        return _connections.get(_key(fd))
    except OSError:
        return None


def _timeout_value(value) -> float | None:
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError("Timeout value must be int, float or None") from None
    if value < 0:
        raise ValueError("Timeout value out of range")
    return value


def _resolve(address, what: str) -> tuple[str, int]:
    """A (host, port) pair with the host as a dotted quad (names resolved, IPv4)."""
    if not isinstance(address, tuple) or len(address) != 2:
        raise TypeError(f"{what}(): AF_INET address must be tuple, not "
                        f"{type(address).__name__}")
    host, port = address
    if isinstance(host, bytes):
        host = host.decode()
    if not isinstance(port, int):
        raise TypeError(f"'{type(port).__name__}' object cannot be interpreted as an integer")
    if not 0 <= port <= 65535:
        raise OverflowError(f"{what}(): port must be 0-65535.")
    if host in ("", "0.0.0.0", "localhost") or host.replace(".", "").isdigit():
        return host, port
    info = pysocket.getaddrinfo(host, port, pysocket.AF_INET, pysocket.SOCK_STREAM)
    return info[0][4][0], port


class ToadSocket(pysocket.socket):
    """A TCP/IPv4 ``socket.socket`` whose protocol runs in the engine."""

    def __init__(self, family=-1, type=-1, proto=-1, fileno=None):
        if fileno is not None:               # a dup or a detached descriptor
            conn = connection_of(fileno)
            if conn is None:
                raise error(errno.EBADF, "not an offloaded socket's descriptor")
            self._take(conn, fileno, proto)
            return
        sock = network().socket()
        try:
            ready = sock.net.watch(sock)
            sock.readiness = ready
            ready.fd.owns_app = False         # this object owns the app end now
            fd = ready.fd.app_fd
            conn = _Connection(sock, _key(fd))
            _connections[conn.key] = conn
            self._take(conn, fd, proto)
        except BaseException:
            sock.close()
            raise
        timeout = pysocket.getdefaulttimeout()
        if type != -1 and type & pysocket.SOCK_NONBLOCK:
            timeout = 0.0
        sock.settimeout(timeout)

    def _take(self, conn: _Connection, fd: int, proto: int) -> None:
        _socket.socket.__init__(self, pysocket.AF_UNIX, pysocket.SOCK_STREAM, 0, fd)
        _socket.socket.setblocking(self, False)    # the descriptor never blocks
        self._io_refs = 0
        self._closed = False
        self._conn = conn
        self._toad = conn.sock
        self._proto = proto if proto and proto > 0 else 0
        conn.attach(fd)

    @classmethod
    def _accepted(cls, sock, proto: int) -> ToadSocket:
        """Wrap a connection ``accept`` returned."""
        obj = _socket.socket.__new__(cls)
        try:
            ready = sock.net.watch(sock)
            sock.readiness = ready
            ready.fd.owns_app = False
            conn = _Connection(sock, _key(ready.fd.app_fd))
            _connections[conn.key] = conn
            obj._take(conn, ready.fd.app_fd, proto)
        except BaseException:
            sock.close()
            raise
        sock.settimeout(pysocket.getdefaulttimeout())
        return obj

    # ---- identity ---------------------------------------------------------------------
    @property
    def family(self):
        return pysocket.AddressFamily.AF_INET

    @property
    def type(self):
        return pysocket.SocketKind.SOCK_STREAM

    @property
    def proto(self) -> int:
        return self._proto

    @property
    def timeout(self) -> float | None:
        return self._toad.timeout

    def _check(self):
        if _socket.socket.fileno(self) < 0:     # (closed with a makefile open: not yet)
            raise error(errno.EBADF, "Bad file descriptor")
        return self._toad

    # ---- timeouts ---------------------------------------------------------------------
    def settimeout(self, value) -> None:
        self._check().settimeout(_timeout_value(value))

    def gettimeout(self) -> float | None:
        return self._toad.timeout

    def setblocking(self, flag: bool) -> None:
        self._check().settimeout(None if flag else 0.0)

    def getblocking(self) -> bool:
        return self._toad.timeout != 0.0

    # ---- set-up -----------------------------------------------------------------------
    def bind(self, address) -> None:
        self._check().bind(_resolve(address, "bind"))

    def listen(self, backlog: int = min(pysocket.SOMAXCONN, 128)) -> None:
        self._check().listen(max(int(backlog), 0) or 1)

    def accept(self):
        sock, peer = self._check().accept()
        return ToadSocket._accepted(sock, self._proto), peer

    def _accept(self):
        raise error(errno.EOPNOTSUPP, "an offloaded socket accepts through accept()")

    def connect(self, address) -> None:
        self._check().connect(_resolve(address, "connect"), learn_local=True)

    def connect_ex(self, address) -> int:
        try:
            self.connect(address)
        except OSError as exc:
            if exc.errno is None:
                raise
            return exc.errno
        return 0

    def getsockname(self):
        return self._check().getsockname()

    def getpeername(self):
        return self._check().getpeername()

    # ---- data -------------------------------------------------------------------------
    def _flags(self, flags: int) -> bool:
        """Whether the call must not wait (MSG_DONTWAIT); other flags: EOPNOTSUPP."""
        if flags & ~pysocket.MSG_DONTWAIT:
            raise error(errno.EOPNOTSUPP, f"flags {flags:#x} on an offloaded socket")
        return bool(flags)

    def _once_nonblocking(self, call, *args):
        sock = self._toad
        saved = sock.timeout
        sock.timeout = 0.0
        try:
            return call(*args)
        finally:
            sock.timeout = saved

    def send(self, data, flags: int = 0) -> int:
        sock = self._check()
        sent = self._once_nonblocking(sock.send, data) if flags and self._flags(flags) \
            else sock.send(data)
        self._conn.sent += sent
        return sent

    def sendall(self, data, flags: int = 0) -> None:
        sock = self._check()
        if flags and self._flags(flags):
            self._once_nonblocking(sock.sendall, data)
        else:
            sock.sendall(data)
        self._conn.sent += memoryview(data).nbytes

    def sendto(self, data, flags_or_address, address=None) -> int:
        flags = 0 if address is None else flags_or_address
        return self.send(data, flags)

    def sendmsg(self, buffers, ancdata=(), flags: int = 0, address=None) -> int:
        """Gather send (no ancillary data): the buffers in turn, stopping at the first
        partial one."""
        if ancdata:
            raise error(errno.EOPNOTSUPP, "ancillary data on an offloaded socket")
        total = 0
        for buf in buffers:
            view = memoryview(buf).cast("B")
            try:
                sent = self.send(view, flags)
            except BlockingIOError:
                if total:
                    return total
                raise
            total += sent
            if sent < len(view):
                break
        return total

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        sock = self._check()
        if bufsize < 0:
            raise ValueError("negative buffersize in recv")
        data = self._once_nonblocking(sock.recv, bufsize) if flags and self._flags(flags) \
            else sock.recv(bufsize)
        self._conn.received += len(data)
        return data

    def recv_into(self, buffer, nbytes: int = 0, flags: int = 0) -> int:
        sock = self._check()
        count = self._once_nonblocking(sock.recv_into, buffer, nbytes) \
            if flags and self._flags(flags) else sock.recv_into(buffer, nbytes)
        self._conn.received += count
        return count

    def recvfrom(self, bufsize: int, flags: int = 0):
        return self.recv(bufsize, flags), None

    def recvfrom_into(self, buffer, nbytes: int = 0, flags: int = 0):
        return self.recv_into(buffer, nbytes, flags), None

    def recvmsg(self, *args):
        raise error(errno.EOPNOTSUPP, "recvmsg on an offloaded socket")

    recvmsg_into = recvmsg

    def sendfile(self, file, offset: int = 0, count: int | None = None) -> int:
        """socket.socket's send() fallback (os.sendfile needs a kernel socket)."""
        return self._sendfile_use_send(file, offset, count)

    def shutdown(self, how: int) -> None:
        self._check().shutdown(how)

    # ---- options ----------------------------------------------------------------------
    def setsockopt(self, level: int, option: int, value, optlen=None) -> None:
        sock = self._check()
        if value is None:
            raise error(errno.EINVAL, "setsockopt: a NULL value")
        key = (level, option)
        if key == (_TCP, pysocket.TCP_NODELAY):
            sock.setsockopt(level, option, _int_value(value))
        elif key in ((_SO, pysocket.SO_LINGER), (_SO, pysocket.SO_SNDBUF)):
            sock.setsockopt(level, option, value if key[1] == pysocket.SO_LINGER
                            else _int_value(value))
        elif key not in REMEMBERED:
            raise error(errno.ENOPROTOOPT, f"setsockopt({level}, {option}) on an "
                                           "offloaded socket")
        self._conn.options[key] = value

    def getsockopt(self, level: int, option: int, buflen: int = 0):
        sock = self._check()
        key = (level, option)
        if key == (_SO, pysocket.SO_ERROR):
            value = sock.getsockopt(level, option)
        elif key == (_SO, pysocket.SO_TYPE):
            value = pysocket.SOCK_STREAM
        elif key == (_SO, pysocket.SO_DOMAIN):
            value = pysocket.AF_INET
        elif key == (_SO, pysocket.SO_PROTOCOL):
            value = pysocket.IPPROTO_TCP
        elif key == (_SO, pysocket.SO_ACCEPTCONN):
            value = int(sock.listening)
        elif key == (_SO, pysocket.SO_SNDBUF):
            value = sock.share
        elif key == (_SO, pysocket.SO_LINGER):
            value = self._conn.options.get(key, struct.pack("ii", 0, 0))
        elif key == (_TCP, pysocket.TCP_NODELAY) or key in REMEMBERED:
            value = self._conn.options.get(key, REMEMBERED.get(key, 0))
        else:
            raise error(errno.ENOPROTOOPT, f"getsockopt({level}, {option}) on an "
                                           "offloaded socket")
        if isinstance(value, (bytes, bytearray)):
            return bytes(value)[:buflen] if buflen else struct.unpack_from("i", value)[0]
        value = _int_value(value)
        if buflen:
            return value.to_bytes(4, "little", signed=True).ljust(buflen, b"\0")[:buflen]
        return value

    # ---- descriptors ------------------------------------------------------------------
    def detach(self) -> int:
        """The descriptor, still open, with the connection alive behind it:
        ``socket.socket(fileno=fd)`` takes it up again."""
        self._closed = True
        return _socket.socket.detach(self)

    def _real_close(self, _ss=_socket.socket) -> None:
        fd = _ss.fileno(self)
        if fd >= 0:
            conn = self._conn
            last = conn.detach(fd)
            if last:
                _connections.pop(conn.key, None)
                with _lock:
                    moved["sent"] += conn.sent
                    moved["received"] += conn.received
                    moved["connections"] += 1
                conn.sock.close()
        _ss.close(self)

    def __del__(self) -> None:
        try:
            if _socket.socket.fileno(self) >= 0:
                warnings.warn(f"unclosed {self!r}", ResourceWarning, source=self)
                self._real_close()
        except Exception:     # (interpreter shutdown: modules half gone)
            pass

    def __repr__(self) -> str:
        toad = getattr(self, "_toad", None)
        return f"<ToadSocket fd={_socket.socket.fileno(self)} {toad!r}>"


def _int_value(value) -> int:
    if isinstance(value, (bytes, bytearray)):
        return struct.unpack_from("i", bytes(value).ljust(4, b"\0"))[0]
    return int(value)
