"""Readiness for offloaded sockets: a ``selectors`` selector over one OffloadNetwork.

An offloaded socket's news comes through the QP's event ring and interrupt. Its
``fileno()`` (host/readiness.py) lets ``select``/``poll``/``epoll`` wait on it at the
cost of an event pump thread and a system call per transition; this selector needs
neither: it answers the same question from the sockets' own state, after the driver
has consumed the events that are in, and sleeps on the QP's interrupt (the driver's
spin-then-sleep wait) until one registered socket is ready or the timeout ends:

    sel = OffloadSelector(net)
    sel.register(listener, EVENT_READ)
    for key, events in sel.select(timeout=1.0):
        ...

Readable (EVENT_READ), as on Linux: data attached, the peer's FIN, an error or a
read-side shutdown (``recv`` returns or raises at once); a listener with a
connection ``accept`` has not taken. Writable (EVENT_WRITE): a non-blocking
``connect`` has its outcome (then ``getsockopt(SO_ERROR)``, as Linux's pattern); a
connected socket whose send ring has room for ``send`` to take bytes at once (the
smaller of ``qp.send_space_threshold`` and half the ring, as a blocked writer
waits for); an error or a write-side shutdown (``send`` raises at once). A
connected writer short of room asks the engine for a SEND_SPACE event at that
room, once per stall, so its wait ends on an interrupt, not a timeout.

Like epoll, a socket closed while registered is never reported (unregister it).
Keys are the socket objects; ``SelectorKey.fd`` is the connection id, not a file
descriptor, so this selector cannot be mixed with kernel file descriptors (a
thread per kind does that).
"""
from __future__ import annotations

from collections.abc import Mapping
from selectors import EVENT_READ, EVENT_WRITE, BaseSelector, SelectorKey

from host.offload_socket import OffloadSocket


def readable(sock: OffloadSocket) -> bool:
    if sock.closed:
        return False
    if sock.listening:
        return sock.accept_ready > sock.accept_matched or bool(sock.error)
    return sock.readable()


def room_wanted(sock: OffloadSocket) -> int:
    """Free send-ring bytes that make ``sock`` writable (a ring exists)."""
    return min(sock.net.threshold, sock.ring.size // 2)


def send_room(sock: OffloadSocket) -> int:
    """Free bytes in the send ring by the engine's acked counter (read, not stored:
    the ring's fields belong to the writer, under its lock)."""
    ring = sock.ring
    acked = sock.driver.bytes_acked(sock.conn)
    return ring.size - ring.posted + (acked if acked > ring.base else ring.base)


def writable(sock: OffloadSocket) -> bool:
    if sock.closed:
        return False
    if sock.connecting is not None:
        return sock.connect_answer is not None
    if sock.error or sock.shut_wr:
        return True
    if not sock.connected:
        return False
    return sock.ring is None or send_room(sock) >= room_wanted(sock)


class _Map(Mapping):
    """get_map(): socket -> SelectorKey, read-only."""

    def __init__(self, keys: dict):
        self._keys = keys

    def __len__(self) -> int:
        return len(self._keys)

    def __getitem__(self, sock) -> SelectorKey:
        return self._keys[sock]

    def __iter__(self):
        return iter(self._keys)


class OffloadSelector(BaseSelector):
    """``selectors.BaseSelector`` for the offloaded sockets of one OffloadNetwork."""

    def __init__(self, network):
        self.net = network
        self._keys: dict[OffloadSocket, SelectorKey] = {}
        self._asked: dict[OffloadSocket, int] = {}   # writer -> acked count it waits for
        self._map = _Map(self._keys)

    def register(self, fileobj, events, data=None) -> SelectorKey:
        if not isinstance(fileobj, OffloadSocket) or fileobj.net is not self.net:
            raise ValueError(f"{fileobj!r}: OffloadSelector takes this network's "
                             "offloaded sockets only")
        if not events or events & ~(EVENT_READ | EVENT_WRITE):
            raise ValueError(f"Invalid events: {events!r}")
        if fileobj.closed:
            raise ValueError(f"{fileobj!r} is closed")
        if fileobj in self._keys:
            raise KeyError(f"{fileobj!r} is already registered")
        key = SelectorKey(fileobj, fileobj.conn, events, data)
        self._keys[fileobj] = key
        return key

    def unregister(self, fileobj) -> SelectorKey:
        try:
            key = self._keys.pop(fileobj)
        except KeyError:
            raise KeyError(f"{fileobj!r} is not registered") from None
        self._asked.pop(fileobj, None)
        return key

    def get_map(self) -> Mapping:
        return self._map

    def close(self) -> None:
        self._keys.clear()
        self._asked.clear()

    def select(self, timeout: float | None = None) -> list[tuple[SelectorKey, int]]:
        """Ready (key, events) pairs; waits up to ``timeout`` seconds (None: until
        one is ready; 0 or less: no wait) for the first."""
        ready: list[tuple[SelectorKey, int]] = []

        def scan() -> bool:
            ready[:] = self._scan()
            return bool(ready)

        self.net.driver.try_poll()           # events already in need no wait
        if scan() or (timeout is not None and timeout <= 0):
            return ready
        self._ask_space()
        self.net.wait(scan, timeout)
        return ready

    def _scan(self) -> list[tuple[SelectorKey, int]]:
        out = []
        for sock, key in self._keys.items():
            events = 0
            if key.events & EVENT_READ and readable(sock):
                events = EVENT_READ
            if key.events & EVENT_WRITE and writable(sock):
                events |= EVENT_WRITE
            if events:
                out.append((key, events))
        return out

    def _ask_space(self) -> None:
        """A SEND_SPACE request for each registered writer short of room, unless the
        one asked before is still pending (the engine keeps one target per socket)."""
        for sock, key in self._keys.items():
            if not key.events & EVENT_WRITE or sock.closed or sock.ring is None \
                    or not sock.connected or sock.connecting is not None or sock.error:
                continue
            ring, acked = sock.ring, sock.driver.bytes_acked(sock.conn)
            target = ring.posted + room_wanted(sock) - ring.size   # acked count needed
            if target <= max(acked, ring.base) or self._asked.get(sock, -1) > acked:
                continue
            self._asked[sock] = target
            sock.ask_space(acked, target - acked)
