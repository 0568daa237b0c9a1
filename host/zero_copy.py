"""Zero-copy calls on an offloaded socket, beside its copying ``send`` and ``recv``.

    view = sock.send_view(65536)         # writable: the next free bytes of the send ring
    n = fill(view)                       # the application writes its bytes in place
    sock.send_commit(view, n)            # one SEND; ``view`` is released from here on

    with sock.received() as data:        # read-only: the next received anonymous buffer
        use(data)                        # (empty at EOF); given back at the block's end

What the bytes are, and who may touch them when (the README's contract):

* A **send view** lends the application the ring bytes at the connection's write
  position, at most N, contiguous: fewer only where the ring's end comes first, or
  on a non-blocking socket whatever is free (``BlockingIOError`` when nothing is).
  A blocking socket waits, as ``sendall`` does, until N bytes (at most the ring) are
  free, growing the ring up to its share. Until commit the bytes are the
  application's alone: the engine has not been told of them, and the connection's
  other senders (copying or not, in any thread) wait for the commit, so the stream
  keeps its order. ``send_commit(view, n)`` posts one SEND for the first ``n`` bytes
  (0: none) and releases the view: from then on the bytes are the engine's, which
  reads them (DMA) until they are acknowledged, retransmissions included, and the
  space comes back through the acknowledged counter, as for copied bytes. A view
  that cannot be released (something still holds a buffer export of it, e.g. a
  ``pickle.PickleBuffer``) is not committed: ``BufferError``, nothing sent. Views
  derived from a view (slices, ``memoryview(view)``, numpy arrays) are not released
  with it: Python cannot revoke them, and the contract forbids using them after
  commit (``recv_done`` for a receive view).
* A **receive view** is the unread part of the connection's next anonymous buffer,
  read-only, in connection order (a copying ``recv`` after it returns the bytes that
  follow). The buffer is the application's until ``recv_done(view)`` (or the end of
  ``received()``'s block) releases the view and gives the buffer back; it then goes
  back to the engine with the next batch, its space in the consumed counter. Views
  not given back hold their buffers: the pool has fewer free buffers and the
  connection's receive window closes as for a slow reader; no byte is lost.
  Giving a view back twice is a no-op.
* **Close** releases the socket's open views: a send view is dropped (nothing sent),
  receive views go back to the pool. A view the application still exports cannot be
  released: a receive view's buffer then stays out of the pool until ``recv_done``
  releases it, a send view's ring is never reused (until the network closes).
  A reset connection makes ``send_commit`` raise its error (the view is released).

A loop that writes or reads one view after another does each step in one compiled
call: ``view = sock.zero_copy.send_next(view, N)`` commits all of ``view`` and lends
the next, ``view = sock.zero_copy.recv_next(view)`` gives ``view`` back and takes the
next (host/workloads_zc.py's bulk loops).

Threads: the calls may come from several threads, as the copying ones. One send
view per connection is open at a time: another thread's ``send_view`` or copying
send waits for its commit (a second ``send_view`` from the thread holding one is an
error, EALREADY: it would wait for itself). Receive views may be many, from any
thread, in any order of return. host/offload_selector.py reports a socket readable
when ``recv_view`` would not wait, writable when ``send_view`` would not.
"""
from __future__ import annotations

import errno
import threading

from host import zc_calls
from host.datapath import EMPTY, NEED_ROOM, NO_SLOT, WAKE
from host.offload_setup import error

_SHIFT, _LENGTH, _VIEW_WAKE = zc_calls.SHIFT, zc_calls.LENGTH, zc_calls.VIEW_WAKE
_OFFSET = _LENGTH            # (offset bits, once shifted down)
_EMPTY_VIEW = memoryview(b"")
_get_ident = threading.get_ident


class ZeroCopy:
    """One offloaded socket's zero-copy state: its open send view, its receive views."""

    __slots__ = ("buffer_bytes", "commit", "commit_next", "give", "give_take",
                 "keeps_ring", "mv", "orphans", "recv_base", "reserve", "ro", "rx", "sock",
                 "state", "take", "tx_offset", "tx_owner", "tx_view")

    def __init__(self, sock):
        driver = sock.driver
        if driver.layout.total_bytes >= 1 << 31:
            raise error(errno.EOPNOTSUPP, "zero-copy calls need a QP segment under 2 GB")
        self.sock = sock
        self.mv = driver.mv                  # the QP segment, writable
        self.ro = driver.mv.toreadonly()     # ... and read-only (receive views)
        self.tx_view = None                  # the open send view
        self.tx_offset = 0                   # its segment offset
        self.tx_owner = 0                    # the thread that holds it
        self.rx: dict[int, tuple] = {}       # id(view) -> (view, buffer id)
        self.orphans: dict[int, tuple] = {}  # views that outlived close, not released
        self.keeps_ring = False              # a send view outlived close, not released
        self.state = threading.Lock()        # the open send view changes hands under it
        self.recv_base = driver.layout.recv_offset
        self.buffer_bytes = driver.layout.recv_buffer_bytes
        self.reserve, self.commit = zc_calls.reserve, zc_calls.commit
        self.take, self.give = zc_calls.take, zc_calls.give
        self.commit_next, self.give_take = zc_calls.commit_next, zc_calls.give_take

    # ---- send --------------------------------------------------------------------------
    def send_view(self, nbytes: int) -> memoryview:
        """A writable view of the next free ring bytes (1 to ``nbytes``)."""
        if nbytes <= 0:
            raise ValueError(f"send_view: nbytes must be positive, not {nbytes}")
        sock = self.sock
        lock = sock.send_lock
        if not lock.acquire(False):
            if self.tx_view is not None and self.tx_owner == _get_ident():
                raise error(errno.EALREADY, "send_view: this thread holds an open send "
                                            "view; commit it first")
            if sock.timeout == 0:
                raise BlockingIOError(errno.EAGAIN, "send_view would block")
            if not lock.acquire(timeout=-1 if sock.timeout is None else sock.timeout):
                raise TimeoutError("timed out")
        try:
            if sock.closed or sock.error or sock.shut_wr or not sock.connected:
                sock._check_send()
            result = self.reserve(sock.seg, sock.qp, sock.conns, sock.row, nbytes, nbytes)
            if result < 0:
                result = self._reserve_slow(nbytes)
            offset = result >> _SHIFT
            view = self.mv[offset:offset + (result & _LENGTH)]
        except BaseException:
            if sock.tx["tx_held"]:
                zc_calls.drop_hold(sock.conns, sock.row)
            lock.release()
            raise
        self.tx_offset, self.tx_owner = offset, _get_ident()
        self.tx_view = view
        return view

    def _reserve_slow(self, nbytes: int) -> int:
        """No view of ``nbytes`` right away: open the ring, free what the engine
        acknowledged, grow it, wait for room as ``sendall`` does (caller holds the
        send lock); a socket that may not wait takes what is free."""
        sock, reserve = self.sock, self.reserve
        if not sock.tx["tx_size"]:
            sock._open_ring()
        need = nbytes
        while True:
            try:
                sock._make_room(need)
            except (BlockingIOError, TimeoutError):
                result = reserve(sock.seg, sock.qp, sock.conns, sock.row, nbytes, 1)
                if result >= 0:
                    return result
                raise
            result = reserve(sock.seg, sock.qp, sock.conns, sock.row, nbytes, 1)
            if result >= 0:
                return result
            if result == zc_calls.HELD:      # (cannot be: the hold comes with the lock)
                raise RuntimeError("send_view: the ring holds a view without its lock")
            need = 1

    def send_commit(self, view: memoryview, nbytes: int | None = None) -> int:
        """Send the first ``nbytes`` of ``view`` (all if None, 0: none) and release it."""
        sock = self.sock
        with self.state:
            if view is not self.tx_view or view is None:
                if sock.closed:
                    raise error(errno.EBADF, "send_commit: the socket is closed (its "
                                             "open view was dropped)")
                raise ValueError("send_commit: not this socket's open send view "
                                 "(committed already?)")
            n = len(view) if nbytes is None else nbytes
            if not 0 <= n <= len(view):
                raise ValueError(f"send_commit: {n} bytes of a {len(view)}-byte view")
            view.release()                   # (BufferError while exported: nothing done)
            self.tx_view, self.tx_owner = None, 0
        try:
            if sock.error:                   # reset while the view was out
                zc_calls.drop_hold(sock.conns, sock.row)
                raise error(sock.error, "send")
            result = self.commit(sock.seg, sock.regs, sock.qp, sock.conns, sock.row,
                                 self.tx_offset, n)
            while result == NO_SLOT:
                sock.driver._wait_request_space(1)
                result = self.commit(sock.seg, sock.regs, sock.qp, sock.conns, sock.row,
                                     self.tx_offset, n)
            if result < 0:
                zc_calls.drop_hold(sock.conns, sock.row)
                raise RuntimeError(f"send_commit: the ring refused the view ({result})")
            if result & WAKE:
                sock.driver.wake.release()
        finally:
            sock.send_lock.release()
        return n

    def send_next(self, view: memoryview, nbytes: int) -> memoryview:
        """``send_commit(view)`` (all of it), then ``send_view(nbytes)``: a writer's
        step, one compiled call when the next view is there at once."""
        sock = self.sock
        with self.state:
            if view is not self.tx_view or view is None or sock.error or sock.closed \
                    or nbytes <= 0:
                slow = True
            else:
                slow = False
                count = len(view)
                view.release()               # (BufferError while exported: nothing done)
                self.tx_view = None
        if slow:
            self.send_commit(view)
            return self.send_view(nbytes)
        result = self.commit_next(sock.seg, sock.regs, sock.qp, sock.conns, sock.row,
                                  self.tx_offset, count, nbytes)
        if result >= 0:
            if result & _VIEW_WAKE:
                sock.driver.wake.release()
            offset = (result >> _SHIFT) & _OFFSET
            self.tx_offset = offset          # (the send lock stays held: a new view)
            view = self.tx_view = self.mv[offset:offset + (result & _LENGTH)]
            return view
        if result in (zc_calls.ROOM_WAKE, NEED_ROOM):     # committed, no room yet
            if result == zc_calls.ROOM_WAKE:
                sock.driver.wake.release()
            self.tx_owner = 0
            sock.send_lock.release()
            return self.send_view(nbytes)
        try:                                 # not committed: the request ring is full
            while result == NO_SLOT:
                sock.driver._wait_request_space(1)
                result = self.commit(sock.seg, sock.regs, sock.qp, sock.conns, sock.row,
                                     self.tx_offset, count)
            if result < 0:
                zc_calls.drop_hold(sock.conns, sock.row)
                raise RuntimeError(f"send_next: the ring refused the view ({result})")
            if result & WAKE:
                sock.driver.wake.release()
        finally:
            self.tx_owner = 0
            sock.send_lock.release()
        return self.send_view(nbytes)

    # ---- receive -----------------------------------------------------------------------
    def recv_view(self) -> memoryview:
        """A read-only view of the next received bytes (one buffer's unread part); an
        empty view at EOF. Waits as ``recv`` does."""
        sock = self.sock
        if sock.closed:
            sock._check_open()
        result = self.take(sock.qp, sock.conns, sock.bufs, sock.row)
        if result < 0:
            result = self._take_wait()
            if result < 0:
                return _EMPTY_VIEW
        offset = (result >> _SHIFT) & _OFFSET
        if result & _VIEW_WAKE:
            sock.driver.wake.release()
        try:
            view = self.ro[offset:offset + (result & _LENGTH)]
        except ValueError:                   # closed by another thread meanwhile
            self._give(offset, -1, 0)
            raise error(errno.EBADF, "socket is closed") from None
        self.rx[id(view)] = (view, (offset - self.recv_base) // self.buffer_bytes)
        if sock.readiness is not None and not sock.net.rx_count[sock.row]:
            sock.readiness.update_read()
        return view

    def _take_wait(self) -> int:
        """Nothing attached: take the events in, wait (unless EOF or an error)."""
        sock = self.sock
        with sock.recv_lock:
            while True:
                sock.driver.try_poll()
                result = self.take(sock.qp, sock.conns, sock.bufs, sock.row)
                if result != EMPTY:
                    return result
                if sock.eof or sock.error or sock.shut_rd or sock.closed:
                    sock.net.flush_returns()
                    if sock.closed:
                        sock._check_open()
                    if sock.error and not sock.eof:
                        raise error(sock.error, "recv")
                    return EMPTY
                sock._wait_data()

    def recv_done(self, view: memoryview) -> None:
        """Release a receive view and give its buffer back (a second time: no-op)."""
        entry = self.rx.pop(id(view), None)
        if entry is None:
            self._done_other(view)
            return
        try:
            view.release()
        except BufferError:
            self.rx[id(view)] = entry        # still exported: still the application's
            raise
        sock = self.sock
        if sock.closed:
            self._give_id(entry[1], -1, 0)
        else:
            self._give_id(entry[1], sock.row, sock.conn)

    def recv_next(self, view: memoryview) -> memoryview:
        """``recv_done(view)``, then ``recv_view()``: a reader's step, one compiled
        call when the next buffer is there."""
        sock = self.sock
        entry = self.rx.pop(id(view), None)
        if entry is None or sock.closed:
            if entry is not None:
                self.rx[id(view)] = entry
            self.recv_done(view)
            return self.recv_view()
        try:
            view.release()
        except BufferError:
            self.rx[id(view)] = entry
            raise
        result = self.give_take(sock.seg, sock.regs, sock.qp, sock.conns, sock.bufs,
                                sock.row, sock.conn, entry[1])
        if result < 0:
            if result == zc_calls.EMPTY_WAKE:
                sock.driver.wake.release()
            return self.recv_view()
        if result & _VIEW_WAKE:
            sock.driver.wake.release()
        offset = (result >> _SHIFT) & _OFFSET
        view = self.ro[offset:offset + (result & _LENGTH)]
        self.rx[id(view)] = (view, (offset - self.recv_base) // self.buffer_bytes)
        if sock.readiness is not None and not sock.net.rx_count[sock.row]:
            sock.readiness.update_read()
        return view

    def _done_other(self, view) -> None:
        entry = self.orphans.pop(id(view), None)
        if entry is not None:                # kept past close: its buffer goes now
            try:
                view.release()
            except BufferError:
                self.orphans[id(view)] = entry
                raise
            self._give_id(entry[1], -1, 0)
            return
        try:
            if not view.nbytes:              # the EOF view
                return
        except ValueError:                   # released: given back already
            return
        raise ValueError("recv_done: not a receive view of this socket")

    def _give(self, offset: int, row: int, conn: int) -> None:
        self._give_id((offset - self.recv_base) // self.buffer_bytes, row, conn)

    def _give_id(self, buffer_id: int, row: int, conn: int) -> None:
        sock = self.sock
        if sock.driver.closed:
            return
        result = self.give(sock.seg, sock.regs, sock.qp, sock.conns, sock.bufs, row, conn,
                           buffer_id)
        if result > 0 and result & WAKE:
            sock.driver.wake.release()

    # ---- the socket's life -------------------------------------------------------------
    def before_shutdown(self, how: int) -> None:
        """SHUT_WR from the thread holding the open send view would wait for itself."""
        if how != 0 and self.tx_view is not None and self.tx_owner == _get_ident():
            raise error(errno.EALREADY, "shutdown: this thread holds an open send view; "
                                        "commit it first")

    def closing(self) -> None:
        """The socket closes: drop the open send view, give the receive views back
        (those the application still exports stay its own: see the module's doc)."""
        sock = self.sock
        with self.state:
            view, self.tx_view, self.tx_owner = self.tx_view, None, 0
        if view is not None:
            try:
                view.release()
            except BufferError:
                self.keeps_ring = True       # its bytes may still be written
            zc_calls.drop_hold(sock.conns, sock.row)
            sock.send_lock.release()
        while self.rx:
            key, entry = self.rx.popitem()
            try:
                entry[0].release()
            except BufferError:
                self.orphans[key] = entry
                continue
            self._give_id(entry[1], -1, 0)
        self.ro.release()

    def views_out(self) -> tuple[int, int]:
        """(open send views, receive views not given back), orphans included."""
        return int(self.tx_view is not None), len(self.rx) + len(self.orphans)


class Received:
    """``with sock.received() as view:`` the next receive view, given back at the end."""

    __slots__ = ("view", "zc")

    def __init__(self, zc: ZeroCopy):
        self.zc = zc
        self.view = None

    def __enter__(self) -> memoryview:
        self.view = self.zc.recv_view()
        return self.view

    def __exit__(self, *exc) -> None:
        view, self.view = self.view, None
        if view is not None:
            self.zc.recv_done(view)
