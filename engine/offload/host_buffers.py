"""Stream buffers backed by host memory: what the Stack reads and writes in offload mode.

:class:`HostSendBuffer` is the Connection's SendBuffer (docs/stack-api.md). It holds
no payload: only a queue of descriptors, ranges of the host's send area that the host
posted with OP_SEND. ``peek`` returns DMA views of host memory (gather), so the frame
builder's copy into the frame is the only copy before the wire, and a retransmission
reads host memory again. ``consume`` drops acknowledged bytes from the head and
DMA-writes the cumulative acked counter into the connection's counter row: the host
frees its send buffers lazily from it, with no event and no interrupt (TOAD III-C).

:class:`HostRecvBuffer` is the Connection's RecvBuffer. In-order payload is DMA-written
into anonymous buffers taken from the QP's receive-buffer ring; a buffer is posted to
the host (EV_RECV_DATA) when full, when PSH is seen (if enabled) or when its first byte
has waited ``delay`` (if enabled; the poller checks). The receive window is
``limit - (delivered - consumed)`` in bytes of buffer space: ``delivered`` counts the
bytes placed plus the unused tail of every buffer posted partly filled, and the host's
cumulative ``consumed`` counter likewise adds a buffer's unused tail when it returns
the buffer. So a slow reader closes the window instead of draining the pool, and a
partly filled buffer costs the window a whole buffer, as it costs the pool. ``limit``
is each receiver's share (:class:`RxPool`): the QP's pool less one buffer, divided by
the QP's receiving connections, less one more buffer (held back for a partly filled
buffer's unused tail); never more than ``tcp.recv_buffer_bytes``, never less than one
buffer.

Buffers that fit the traffic: the pool has two groups (io_uring's buffer groups),
chunk-sized buffers and small ones (``qp.recv_small_buffers``). A pushed segment that
fits a small buffer and arrives when its connection fills no buffer (an rr message)
goes into a small one and is posted at once: 64 B spend 2 KB of the pool, not a
chunk, as in the window.

Data that finds no free buffer at all is staged in engine memory (a card's on-board
memory, up to ``engine.staging_bytes`` per QP): accepted and acknowledged as placed
data is, then DMAed into buffers of the fitting size, in arrival order, as the host
returns buffers (:meth:`RxPool.drain`). A connection's later bytes queue behind its
staged ones. Past the budget a segment is refused (``rx_out_of_buffers``): never
acknowledged, so the peer sends it again.
"""
from __future__ import annotations

from collections import Counter, deque

import numpy as np

from engine import ring_calls
from engine.tcp.buffers import ByteSendBuffer
from toad import layout

_RECV_DATA = layout.EV_RECV_DATA
_PUSH = layout.EVF_PUSH
UNLIMITED = 1 << 62


class HostSendBuffer:
    """Descriptors (host offset, length) of unacknowledged and unsent host bytes."""

    __slots__ = ("qp", "dma", "ranges", "size", "acked", "conn", "fast_row")

    def __init__(self, qp, conn: int | None):
        self.qp = qp
        self.dma = qp.dma
        self.ranges: deque = deque()     # [offset, length] lists, stream order
        self.size = 0
        self.acked = 0                   # cumulative bytes acknowledged
        self.conn = conn                 # the host's id (its counter row), once known
        self.fast_row = None             # (FastPath, row) while the fast path sends

    def __len__(self) -> int:
        return self.size

    def free_space(self) -> int:
        return UNLIMITED                 # the host enforces its own share

    def append(self, data) -> int:
        raise TypeError("offload send buffers take host descriptors (add), not bytes")

    def add(self, offset: int, length: int) -> None:
        """Queue ``length`` host bytes at ``offset``; adjacent ranges merge, so a
        segment usually maps to one view (no gather copy in the frame builder)."""
        if length <= 0:
            return
        ranges = self.ranges
        if ranges:
            last = ranges[-1]
            if last[0] + last[1] == offset:
                last[1] += length
                self.size += length
                return
        ranges.append([offset, length])
        self.size += length

    def peek(self, offset: int, length: int) -> list[memoryview]:
        """DMA views of stream bytes [offset, offset+length) from the first unacked."""
        views = []
        read = self.dma.read
        for start, size in self.ranges:
            if offset >= size:
                offset -= size
                continue
            take = size - offset
            if take > length:
                take = length
            views.append(read(start + offset, take))
            length -= take
            if length <= 0:
                break
            offset = 0
        return views

    def consume(self, n: int) -> None:
        """``n`` more bytes acknowledged: release them, mirror the counter to the host."""
        if n < 0 or n > self.size:
            raise ValueError(f"cannot release {n} bytes of {self.size} held")
        self.size -= n
        self.acked += n
        ranges = self.ranges
        while n:
            head = ranges[0]
            if head[1] > n:
                head[0] += n
                head[1] -= n
                break
            n -= head[1]
            ranges.popleft()
        if self.conn is not None:
            self.qp.set_bytes_acked(self.conn, self.acked)

    def detach(self) -> None:
        """The host id is gone: keep sending nothing new, write no counter."""
        self.conn = None

    def copy_out(self) -> ByteSendBuffer:
        """The bytes held (unacknowledged and unsent), copied into engine memory: for
        a connection that outlives its host's memory (a dead host's, closed as Linux
        closes a dead process's sockets: its data still goes out)."""
        copy = ByteSendBuffer(max(self.size, 1))
        for view in self.peek(0, self.size):
            copy.append(view)
        return copy


class RxPool:
    """One QP's anonymous buffers as the receive windows see them.

    Free buffers are taken from the receive-buffer ring in batches (one compiled call
    takes and checks up to ``BATCH`` entries) into two caches, by size.
    """

    BATCH = 256
    __slots__ = ("qp", "window_bytes", "receivers", "buffer_bytes", "pool_bytes", "cache",
                 "limit_bytes", "taken", "refused", "low", "small", "small_bytes",
                 "staging_limit", "staged_bytes", "stalled", "counters")

    def __init__(self, qp, window_bytes: int, staging_bytes: int = 0, counters=None):
        self.qp = qp
        lay = qp.layout
        self.window_bytes = window_bytes
        self.receivers = 0                        # the QP's connections not detached
        self.limit_bytes = 0                      # one receiver's window limit (below)
        self.buffer_bytes = lay.recv_buffer_bytes
        self.small_bytes = lay.small_buffer_bytes  # 0: no small group
        self.pool_bytes = ((lay.recv_buffers - 1) * self.buffer_bytes
                           + lay.small_buffers * lay.small_buffer_bytes)
        self.cache: deque = deque()               # (offset, length, id) taken, unused
        self.small: deque = deque()               # ... the small ones
        self.taken = np.zeros(self.BATCH, ring_calls.RXBUF_TAKEN)
        self.refused = np.zeros(self.BATCH, ring_calls.RXBUF_REFUSED)
        # receivers whose last offered window was under half their limit: the ones a
        # read may owe a window update (the offload poller asks only them, so a
        # returned buffer costs the connections that need it, not all of the QP's)
        self.low: dict = {}
        self.staging_limit = staging_bytes
        self.staged_bytes = 0
        self.stalled: dict = {}                   # receivers with staged bytes, in order
        self.counters = counters if counters is not None else Counter()
        self.add_receiver(0)

    def refill(self) -> bool:
        """Take every free buffer the host has published into the caches (a small
        buffer by its length); True if any came."""
        qp, small_max, came = self.qp, self.small_bytes, False
        while True:
            count = qp.take_rx_buffers(self.taken, self.refused)
            if count:
                for entry in self.taken[:count].tolist():
                    (self.small if entry[1] <= small_max else self.cache).append(entry)
                came = True
                continue
            if qp.rx_buffers_pending() <= 0 or qp.backlog_full():
                return came                       # (refused ones: the next batch)

    def take(self, small: bool = False):
        """A free anonymous buffer (offset, length, id), or None: a small one first
        when ``small``, else a chunk-sized one first; the other group when the first
        has none. Small buffers are taken last returned first: a few thousand of them
        cycled in order would touch all their pages (and cache lines) where a few
        suffice."""
        for _ in range(2):
            if small and self.small:
                return self.small.pop()
            if self.cache:
                return self.cache.popleft()
            if self.small:
                return self.small.pop()
            if not self.refill():
                return None
        return None

    def room(self) -> int:
        """Bytes of free buffers the engine could take now."""
        if self.qp.rx_buffers_pending() > 0:
            self.refill()
        return len(self.cache) * self.buffer_bytes + len(self.small) * self.small_bytes

    def add_receiver(self, delta: int) -> None:
        """A connection attached (+1) or detached (-1): each receiver's window limit
        is its share of the pool less one buffer, at most the TCP window, at least
        one buffer. The buffer held back absorbs a partly filled buffer posted
        (PSH, delay) after the window was advertised: its unused tail is spent, but
        the peer may still send up to the advertised edge."""
        self.receivers += delta
        share = self.pool_bytes // (self.receivers or 1) - self.buffer_bytes
        if share > self.window_bytes:
            share = self.window_bytes
        self.limit_bytes = share if share > self.buffer_bytes else self.buffer_bytes

    def stage(self, receiver: "HostRecvBuffer", data) -> bool:
        """Keep ``data`` (the receiver's next bytes) in engine memory; False, nothing
        kept, past the staging budget."""
        n = len(data)
        if self.staged_bytes + n > self.staging_limit:
            return False
        if receiver.staged is None:
            receiver.staged = bytearray(data)
            self.stalled[receiver] = None
        else:
            receiver.staged += data
        self.staged_bytes += n
        counters = self.counters
        counters["rx_staged"] += 1
        counters["rx_staged_bytes"] += n
        return True

    def drain(self) -> int:
        """Place staged bytes into the free buffers, receiver after receiver in the
        order they began to wait, until the buffers or the staged bytes run out;
        returns the bytes placed."""
        placed = 0
        for receiver in list(self.stalled):
            done, whole = receiver.place_staged()
            placed += done
            if not whole:
                break                             # no buffer left: the rest wait
        return placed

    def unstage(self, receiver: "HostRecvBuffer", n: int) -> None:
        """``n`` staged bytes of ``receiver`` left engine memory (placed or dropped)."""
        self.staged_bytes -= n
        if receiver.staged is None:
            self.stalled.pop(receiver, None)


def give_back(qp, conn: int, buf_id: int) -> None:
    """Hand an unfilled buffer back to the host (an empty RECV_DATA, e.g. one a
    closed connection held): the engine no longer holds it."""
    qp.release_rx_buffer(buf_id)
    qp.post_event(_RECV_DATA, 0, conn, 0, 0, 0, 0, buf_id, 0, 0, 0)


class HostRecvBuffer:
    """Places in-order payload into anonymous host buffers and posts them."""

    __slots__ = ("qp", "conn", "pool", "policy", "delivered", "current", "filled",
                 "first_at", "held", "counters", "clock", "detached", "window_closed",
                 "connection", "staged", "staged_push")

    def __init__(self, pool: RxPool, policy, counters, clock):
        self.qp = pool.qp
        self.pool = pool
        self.conn = None                 # host connection id (None until accepted)
        self.policy = policy             # RecvPolicy (push, delay_s), per socket
        self.delivered = 0               # cumulative buffer bytes used (placed + tails)
        self.current = None              # (offset, length, id) being filled
        self.filled = 0
        self.first_at = None             # time the current buffer got its first byte
        self.held: list = []             # posted before the host knew the connection
        self.counters = counters         # the offload layer's Counter
        self.clock = clock               # () -> now (seconds), the poller's time
        self.detached = False
        self.window_closed = False
        self.connection = None           # the stack Connection (notify_read), until detach
        self.staged = None               # bytes waiting in engine memory (RxPool.stage)
        self.staged_push = False         # ... the last of them came with PSH
        # a receiver from its creation (a child: at its SYN, long before ACCEPT), so
        # the window a connection advertises is already its share when a peer's
        # first scaled window goes out (counted at attach, a child's arrival halved
        # the limit of a connection that had advertised the whole pool: a window the
        # edge rule kept, that ran the shared pool dry)
        pool.add_receiver(1)

    def attach(self, conn: int) -> None:
        """The host knows this connection as ``conn``: release held buffers."""
        self.conn = conn
        for entry in self.held:
            self._post(*entry)
        self.held = []

    def free_space(self) -> int:
        pool = self.pool
        if self.detached:
            return pool.limit_bytes
        # this runs for every segment sent (its window field) and every returned-buffer
        # doorbell
        conn = self.conn
        free = pool.limit_bytes - (self.delivered
                                   - (pool.qp.bytes_consumed(conn) if conn is not None else 0))
        # Never offer more than the pool and the staging budget hold right now
        # (shared by the QP's connections; the advertised edge never moves left, so
        # this only slows the window's growth).
        room = pool.room() + pool.staging_limit - pool.staged_bytes
        if self.current is not None:
            room += self.current[1] - self.filled
        if room < free:
            free = room
        if free < pool.limit_bytes >> 1:
            pool.low[self] = None
        if free <= 0:
            if not self.window_closed:          # a slow reader closed the window
                self.window_closed = True
                self.counters["rx_window_closed"] += 1
            return 0
        if self.window_closed:
            self.window_closed = False
            self.counters["rx_window_reopened"] += 1
        return free

    def write(self, data, push: bool) -> int:
        if self.detached:                 # the host closed: nobody will read this
            self.counters["rx_bytes_after_close"] += len(data)
            return len(data)
        # The Stack hands over only bytes inside the window it advertised; they are
        # all taken while anonymous buffers last, then staged while the budget lasts
        # (a shrunken limit never drops them).
        n = len(data)
        if self.staged is not None:       # older bytes wait in engine memory: behind them
            return self._stage(data, push)
        pool = self.pool
        current = self.current
        if n and current is None and push and n <= pool.small_bytes and self.policy.push:
            # a message that fits a small buffer, posted at once (rr)
            entry = pool.take(True)
            if entry is not None:
                offset, length, buf_id = entry
                self.qp.dma.write(offset, data)              # DMA
                self.delivered += length                     # its unused tail too
                self._post(buf_id, n, _PUSH)
                return n
        if n and (current is not None or pool.cache):
            # The usual segment (an rr message, most bulk segments): it fits in the
            # buffer being filled, or a cached free one, and leaves room in it. The
            # same writes, counts and post as the loop below, without its list.
            if current is None:
                current = pool.cache.popleft()
                filled = 0
            else:
                filled = self.filled
            offset, length, buf_id = current
            if filled + n < length:
                self.qp.dma.write(offset + filled, data)      # DMA
                filled += n
                self.delivered += n
                if push and self.policy.push:
                    self.delivered += length - filled   # the unused tail is spent too
                    self.current, self.filled, self.first_at = None, 0, None
                    self._post(buf_id, filled, _PUSH)
                    return n
                self.current, self.filled = current, filled
                if self.first_at is None:
                    self.first_at = self.clock()        # the delay policy counts from here
                return n
            if self.current is None:      # taken from the cache: the loop starts with it
                pool.cache.appendleft(current)
        done = 0
        write = self.qp.dma.write
        current, filled = self.current, self.filled
        full = []                         # (id, length, flags) of buffers filled here
        while done < n:
            if current is None:
                if full and not pool.cache:   # taking may post ERROR events: keep order
                    self._post_all(full)
                    full = []
                current = pool.take()
                if current is None:
                    break
                filled = 0
            offset, length, buf_id = current
            take = length - filled
            if take > n - done:
                take = n - done
            write(offset + filled, data[done:done + take] if take < n else data)  # DMA
            done += take
            filled += take
            if filled == length:          # full: posted below, with the others
                current, filled = None, 0
                self.first_at = None
                full.append((buf_id, length, _PUSH if push and done == n else 0))
        self.current, self.filled = current, filled
        self.delivered += done
        if filled:
            if push and self.policy.push:
                full.append((current[2], filled, _PUSH))
                self.delivered += current[1] - filled   # the unused tail is spent too
                self.current, self.filled, self.first_at = None, 0, None
            elif self.first_at is None:
                self.first_at = self.clock()    # the delay policy counts from here
        if full:
            self._post_all(full)
        if done < n:                      # no buffer free: the rest waits in the engine
            done += self._stage(data[done:] if done else data, push)
        return done

    def _stage(self, data, push: bool) -> int:
        """Keep ``data`` in engine memory until buffers come back (RxPool.drain);
        the bytes taken (0: past the staging budget, counted and refused)."""
        if not self.pool.stage(self, data):
            self.counters["rx_out_of_buffers"] += 1
            return 0
        self.staged_push = push
        self.delivered += len(data)
        return len(data)

    def place_staged(self) -> tuple[int, bool]:
        """DMA staged bytes into free buffers of the fitting size and post them (the
        last with PSH if the last staged bytes had it). Returns (bytes placed, all
        placed)."""
        data, pool = self.staged, self.pool
        n, done, posts = len(data), 0, []
        view = memoryview(data)
        while done < n:
            left = n - done
            entry = pool.take(left <= pool.small_bytes)
            if entry is None:
                break
            offset, length, buf_id = entry
            take = min(left, length)
            self.qp.dma.write(offset, view[done:done + take])          # DMA
            done += take
            self.delivered += length - take           # the unused tail is spent too
            posts.append((buf_id, take, _PUSH if done == n and self.staged_push else 0))
        view.release()
        if posts:
            self.counters["rx_staged_placed"] += len(posts)
            self._post_all(posts)
        if done == n:
            self.staged = None
        elif done:
            del data[:done]
        pool.unstage(self, done)
        return done, self.staged is None

    def _post_all(self, entries: list) -> None:
        """RECV_DATA for filled buffers (one DMA run), or hold them until the host
        knows the connection id."""
        if self.conn is None:
            self.held.extend(entries)
            return
        self.counters["rx_buffers_posted"] += len(entries)
        conn, qp = self.conn, self.qp
        for buf_id, length, flags in entries:
            qp.release_rx_buffer(buf_id)     # the host's again
            qp.post_event(_RECV_DATA, flags, conn, 0, 0, 0, 0, buf_id, 0, 0, length)

    def flush(self, push: bool = False) -> None:
        """Post the current buffer (if it holds bytes) to the host."""
        if self.current is None or self.filled == 0:
            return
        buf_id, filled = self.current[2], self.filled
        self.delivered += self.current[1] - filled   # the unused tail is spent too
        self.current = None
        self.filled = 0
        self.first_at = None
        self._post(buf_id, filled, _PUSH if push else 0)

    def _post(self, buf_id: int, length: int, flags: int) -> None:
        """RECV_DATA for a filled buffer, or hold it until the host knows the id."""
        if self.conn is None:
            self.held.append((buf_id, length, flags))
            return
        self.counters["rx_buffers_posted"] += 1
        self.qp.release_rx_buffer(buf_id)    # the host's again
        self.qp.post_event(_RECV_DATA, flags, self.conn, 0, 0, 0, 0, buf_id, 0, 0, length)

    def delay_due(self, now: float) -> bool:
        """A partly filled buffer has waited its delay (the poller posts it)."""
        first = self.first_at
        return first is not None and self.policy.delay_s > 0 and now - first >= self.policy.delay_s

    def unread(self) -> bool:
        """Whether the host has not read everything placed for it: bytes placed and
        not posted yet, buffers posted and not handed back (the consumed counter it
        writes lags what was delivered), or held for a connection it never learned.
        (Linux resets a connection closed with unread data.)"""
        if self.filled or self.held:
            return True
        return self.conn is not None and self.delivered > self.qp.bytes_consumed(self.conn)

    def detach(self) -> list:
        """The host closed or vanished: return the ids of buffers we still hold
        (still held by the QP: the caller hands them back, give_back)."""
        if not self.detached:
            self.pool.add_receiver(-1)
        self.detached = True
        self.connection = None           # (no cycle with the Connection left behind)
        if self.staged is not None:      # nobody will read them
            n, self.staged = len(self.staged), None
            self.pool.unstage(self, n)
        ids = [entry[0] for entry in self.held]
        if self.current is not None:
            ids.append(self.current[2])
        self.current = None
        self.held = []
        return ids
