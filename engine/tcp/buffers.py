"""The byte streams a connection reads from and writes to.

The connection never owns its stream storage: it talks to a ``SendBuffer`` and a
``RecvBuffer`` (docs/stack-api.md). The engine supplies buffers backed by host
memory and anonymous receive buffers; the in-host stack uses the ring buffers
below. Each ring is one fixed anonymous mapping that is never resized, so
memoryviews handed out by ``peek`` stay valid (the bytes under them change only once
they are acknowledged and released).
"""
from __future__ import annotations

import mmap
from typing import Protocol


class SendBuffer(Protocol):
    def __len__(self) -> int: ...
    def free_space(self) -> int: ...
    def append(self, data) -> int: ...
    def peek(self, offset: int, length: int) -> list[memoryview]: ...
    def consume(self, n: int) -> None: ...


class RecvBuffer(Protocol):
    def write(self, data: memoryview, push: bool) -> int: ...
    def free_space(self) -> int: ...


class _Ring:
    """A fixed-capacity byte ring: ``head`` is the first byte held, ``size`` the count."""

    __slots__ = ("capacity", "storage", "view", "head", "size", "fast_row")

    def __init__(self, capacity: int):
        if capacity <= 0:
            raise ValueError(f"buffer capacity must be > 0, got {capacity}")
        self.capacity = capacity
        # Anonymous private memory: the kernel hands out zeroed pages as they are
        # first touched, so a connection costs only what it holds. A bytearray is
        # memset at creation: two 4 MB rings were 2048 page faults (~5 ms on this VM)
        # per in-host connection, and as much memory per connection in TIME-WAIT.
        self.storage = mmap.mmap(-1, capacity, flags=mmap.MAP_PRIVATE)
        self.view = memoryview(self.storage)
        self.head = 0
        self.size = 0
        self.fast_row = None       # (rows, row) while the fast path places into it

    def __len__(self) -> int:
        return self.size

    def free_space(self) -> int:
        return self.capacity - self.size

    def _put(self, data, push: bool = False) -> int:
        """Copy as much of ``data`` as fits at the tail; return the count copied.
        (``push`` is the RecvBuffer.write flag: the ring has no use for it.)"""
        if type(data) is memoryview and data.itemsize != 1:
            data = data.cast("B")
        n = len(data)
        room = self.capacity - self.size
        if n > room:
            if room <= 0:
                return 0
            data = memoryview(data)[:room]
            n = room
        cap = self.capacity
        tail = self.head + self.size
        if tail >= cap:
            tail -= cap
        end = tail + n
        if end <= cap:
            self.view[tail:end] = data
        else:                                          # wraps: the rest goes at 0
            data = memoryview(data)
            first = cap - tail
            self.view[tail:cap] = data[:first]
            self.view[0:n - first] = data[first:]
        self.size += n
        return n

    def _views(self, offset: int, length: int) -> list[memoryview]:
        """Views of the held bytes [offset, offset+length), clipped to what is held."""
        length = min(length, self.size - offset)
        if length <= 0:
            return []
        cap = self.capacity
        start = self.head + offset
        if start >= cap:
            start -= cap
        if start + length <= cap:
            return [self.view[start:start + length]]
        first = cap - start
        return [self.view[start:cap], self.view[0:length - first]]

    def _drop(self, n: int) -> None:
        if n < 0 or n > self.size:
            raise ValueError(f"cannot release {n} bytes of {self.size} held")
        self.size -= n
        self.head = 0 if self.size == 0 else (self.head + n) % self.capacity


class ByteSendBuffer(_Ring):
    """In-host send buffer: unacknowledged and unsent bytes in one ring."""

    __slots__ = ()

    # The ring's own methods under the SendBuffer names: no wrapper call on the
    # per-segment (peek) and per-ACK (consume) paths.
    append = _Ring._put
    peek = _Ring._views
    consume = _Ring._drop


class ByteRecvBuffer(_Ring):
    """In-host receive buffer: in-order bytes the application has not read yet."""

    __slots__ = ()

    write = _Ring._put             # (data, push) -> count: no wrapper call per segment

    def read(self, n: int = -1) -> bytes:
        """Remove and return up to n bytes (all held when n < 0)."""
        if n < 0 or n > self.size:
            n = self.size
        out = b"".join(self._views(0, n))
        self._drop(n)
        return out

    def readinto(self, target) -> int:
        """Move up to len(target) bytes into ``target``; return the count."""
        dst = memoryview(target).cast("B")
        done = 0
        for part in self._views(0, len(dst)):
            dst[done:done + len(part)] = part
            done += len(part)
        self._drop(done)
        return done
