"""Offloading an unmodified Python program's TCP sockets (``toad exec``'s host side).

    from host.offload_exec import offloaded
    with offloaded(config):                     # TCP/IPv4 sockets made in here are
        urllib.request.urlopen(url).read()      # offloaded to engine config.name

:func:`install` makes ``socket.socket(AF_INET, SOCK_STREAM)`` (and every library
call that makes one: ``create_connection``, ``create_server``, http, asyncio...)
return a :class:`host.toad_socket.ToadSocket`; every other socket (UDP, Unix,
IPv6, raw) stays the kernel's, untouched: ``socket.socket`` keeps its identity (its
``__new__`` is replaced, nothing else), so ``isinstance`` holds for both kinds.
:func:`uninstall` (or leaving :func:`offloaded`) puts ``__new__`` back; sockets made
meanwhile stay offloaded. The QP is attached at the first offloaded socket and
detached at exit.

``toad exec`` (toad/exec_cmd.py) starts a program with ``host/exec_site`` on its
PYTHONPATH: that directory's ``sitecustomize`` calls :func:`start_from_env`, which
reads ``TOAD_EXEC`` (JSON: the config file, the ``--set`` overrides, the report
file of ``--measure``, and ``kernel``: count only, offload nothing) and installs.
TLS (the ``ssl`` module) reads the descriptor itself: wrapping an offloaded socket
raises EOPNOTSUPP. A forked child starts without a network (the parent's QP is not
its own); its own sockets attach a QP of its own.
"""
from __future__ import annotations

import _socket
import atexit
import errno
import json
import os
import resource
import socket as pysocket
import struct
import sys
import time
import weakref
from contextlib import contextmanager

from host import toad_socket
from host.offload_socket import error
from host.toad_socket import ToadSocket, connection_of

_TYPE_FLAGS = pysocket.SOCK_NONBLOCK | pysocket.SOCK_CLOEXEC
_forks_hooked = False


def is_tcp4(family, type, proto) -> bool:
    return family in (-1, pysocket.AF_INET) and \
        (type == -1 or type & ~_TYPE_FLAGS == pysocket.SOCK_STREAM) and \
        proto in (-1, 0, pysocket.IPPROTO_TCP)


def _offloading_new(cls, family=-1, type=-1, proto=-1, fileno=None):
    """socket.socket.__new__ while installed: TCP/IPv4 sockets are ToadSockets."""
    if is_tcp4(family, type, proto):
        if fileno is None:
            if cls is pysocket.socket:
                return _socket.socket.__new__(ToadSocket)
        elif connection_of(fileno) is not None:
            if cls is not pysocket.socket and cls is not ToadSocket:
                raise error(errno.EOPNOTSUPP, f"{cls.__name__} over an offloaded socket "
                            "(it would read the descriptor itself); run this program's "
                            "TLS over kernel sockets")
            return _socket.socket.__new__(ToadSocket)
    return _socket.socket.__new__(cls)


def install(config) -> None:
    """Offload the TCP/IPv4 sockets made from now on to engine ``config.name``."""
    global _forks_hooked
    toad_socket.use_network_config(config)
    pysocket.socket.__new__ = _offloading_new
    if not _forks_hooked:
        os.register_at_fork(after_in_child=toad_socket.forget_network_after_fork)
        atexit.register(toad_socket.close_network)
        _forks_hooked = True


def uninstall() -> None:
    """New sockets are the kernel's again (offloaded ones stay as they are)."""
    if pysocket.socket.__dict__.get("__new__") is _offloading_new:
        del pysocket.socket.__new__
    toad_socket.use_network_config(None)


@contextmanager
def offloaded(config):
    """TCP/IPv4 sockets made inside the block are offloaded (see the module doc)."""
    install(config)
    try:
        yield
    finally:
        uninstall()


def offload_socket(config, *args, **kwargs) -> ToadSocket:
    """One offloaded ``socket.socket`` (AF_INET, SOCK_STREAM), whatever is installed."""
    toad_socket.use_network_config(config)
    return ToadSocket(*args, **kwargs)


# ---- kernel mode: count bytes, offload nothing ------------------------------------------

_TCP_INFO_BYTES = struct.Struct("=QQ")     # tcpi_bytes_acked, tcpi_bytes_received
_TCP_INFO_AT, _TCP_INFO_LEN = 120, 136
kernel_moved = {"sent": 0, "received": 0, "connections": 0}
_kernel_live: weakref.WeakSet = weakref.WeakSet()


def _tcp_info_bytes(sock) -> tuple[int, int]:
    try:
        raw = _socket.socket.getsockopt(sock, pysocket.IPPROTO_TCP, pysocket.TCP_INFO,
                                        _TCP_INFO_LEN)
    except OSError:
        return 0, 0
    if len(raw) < _TCP_INFO_LEN:
        return 0, 0
    return _TCP_INFO_BYTES.unpack_from(raw, _TCP_INFO_AT)


class CountedSocket(pysocket.socket):
    """A kernel TCP socket whose bytes are read from TCP_INFO when it closes (no
    cost per call): ``toad exec --kernel --measure``."""

    def _count(self) -> None:
        if _socket.socket.fileno(self) >= 0 and self in _kernel_live:
            _kernel_live.discard(self)
            sent, received = _tcp_info_bytes(self)
            kernel_moved["sent"] += sent
            kernel_moved["received"] += received
            kernel_moved["connections"] += 1

    def _real_close(self, _ss=_socket.socket) -> None:
        self._count()
        _ss.close(self)

    def detach(self) -> int:
        self._count()
        return super().detach()


def _counting_new(cls, family=-1, type=-1, proto=-1, fileno=None):
    if cls is pysocket.socket and is_tcp4(family, type, proto):
        sock = _socket.socket.__new__(CountedSocket)
        _kernel_live.add(sock)
        return sock
    return _socket.socket.__new__(cls)


def install_counting() -> None:
    pysocket.socket.__new__ = _counting_new


def kernel_bytes() -> dict:
    out = dict(kernel_moved)
    for sock in list(_kernel_live):
        sent, received = _tcp_info_bytes(sock)
        out["sent"] += sent
        out["received"] += received
        out["connections"] += 1
    return out


# ---- toad exec's bootstrap -------------------------------------------------------------

def start_from_env() -> None:
    """Install from ``TOAD_EXEC`` (set by ``toad exec``); a report at exit if asked."""
    spec = json.loads(os.environ["TOAD_EXEC"])
    if spec.get("kernel"):
        install_counting()
        counter = kernel_bytes
    else:
        from toad.config import load
        install(load(spec.get("config"), spec.get("set", [])))
        counter = toad_socket.bytes_moved
    if spec.get("report"):
        atexit.register(_report, spec["report"], counter, os.getpid(), time.monotonic())


def _report(path: str, counter, pid: int, started: float) -> None:
    """One JSON line per process into ``path`` (toad exec --measure sums them)."""
    if os.getpid() != pid:
        return                                   # a forked child's copy of the hook
    usage = resource.getrusage(resource.RUSAGE_SELF)
    net = toad_socket.current_network()
    line = {"pid": pid, "argv": sys.argv, "wall_s": time.monotonic() - started,
            "user_s": usage.ru_utime, "system_s": usage.ru_stime, **counter(),
            "pump_wakeups": net.pump.wakeups if net is not None and net.pump else 0}
    with open(path, "a") as f:
        f.write(json.dumps(line) + "\n")
