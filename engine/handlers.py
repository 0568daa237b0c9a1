"""Request handling: validation, then a dispatch table opcode -> handler(qp, request).

Every request is validated before its handler runs, from the tables below:
requests about a connection must name one this QP owns; a SEND's (offset, length)
must lie inside this QP's send-buffer area; a request answered with a new connection
id (SOCKET, ACCEPT) must not be silent. A failure answers with an ERROR event
(cookie, errno, reason code) and a counter; the engine carries on.

This module handles NOP, ECHO, SOCKET (allocate a connection id) and CLOSE (free it).
The socket layer registers its own handlers for the other opcodes (and replaces
SOCKET/CLOSE) with :meth:`Dispatcher.register`; until then they are answered with
ERROR / ERR_UNSUPPORTED, never silently dropped.
"""
from __future__ import annotations

import errno
import struct
from typing import Callable, NamedTuple

import numpy as np

from engine.dma import DmaError
from toad import layout

Handler = Callable[["QueuePair", "Request"], None]  # noqa: F821 (engine.qp.QueuePair)


class Request(NamedTuple):
    """One request record, in REQUEST_STRUCT field order."""
    opcode: int
    flags: int
    conn: int
    cookie: int
    addr: int
    port: int
    option: int
    offset: int
    length: int
    value: int


class RequestError(Exception):
    """A handler refuses a request: becomes an ERROR event."""

    def __init__(self, status: int, reason: int):
        super().__init__(f"errno {status}, reason {reason}")
        self.status, self.reason = status, reason


# Which opcodes name a connection the QP must own, and which carry a send range.
NEEDS_CONNECTION = frozenset({layout.OP_BIND, layout.OP_LISTEN, layout.OP_CONNECT,
                              layout.OP_ACCEPT, layout.OP_SEND, layout.OP_SHUTDOWN,
                              layout.OP_CLOSE, layout.OP_SETOPT, layout.OP_SEND_SPACE})
NEEDS_SEND_RANGE = frozenset({layout.OP_SEND})
# Requests whose answer is a new connection id: silent, the host never learns the id
# and it (with an accepted connection) lives until the QP detaches. Such a request is
# refused (ERROR, bad_records), not answered despite the flag: REQ_SILENT means "no
# COMPLETION on success", so a host that sets it here is wrong, and an ERROR tells it
# so without allocating anything. (BIND/LISTEN's port is only informative: the host
# knows the connection and can CLOSE it.)
NEEDS_ANSWER = frozenset({layout.OP_SOCKET, layout.OP_ACCEPT})
KNOWN_OPCODES = frozenset(layout.OPCODE_NAMES)
# opcode, conn, offset, length of a REQUEST record (what a SEND run needs)
_SEND_FIELDS = struct.Struct("<H2xI16xQQ24x")
assert _SEND_FIELDS.size == layout.REQUEST.itemsize
assert layout.REQUEST.fields["conn"][1] == 4 and layout.REQUEST.fields["offset"][1] == 24
assert layout.REQUEST.fields["length"][1] == 32


def complete(qp, request: Request, status: int = 0, value: int = 0, **fields) -> None:
    """Post the COMPLETION of a request (unless REQ_SILENT and it succeeded)."""
    if status == 0 and request.flags & layout.REQ_SILENT:
        return
    qp.post_event(layout.EV_COMPLETION, conn=request.conn, cookie=request.cookie,
                  status=status, value=value, **fields)


def handle_nop(qp, request: Request) -> None:
    if not request.flags & layout.REQ_SILENT:
        qp.post_event(layout.EV_COMPLETION, 0, request.conn, request.cookie)


def handle_echo(qp, request: Request) -> None:
    # REQ_SILENT as for every request: a probe has no reason to be the exception
    if request.flags & layout.REQ_SILENT:
        return
    # positional: type, flags, conn, cookie, status, reason, port, buffer, addr,
    # offset, length, value (the interface's own latency probe, kept lean)
    qp.post_event(layout.EV_COMPLETION, 0, request.conn, request.cookie, 0, 0, request.port,
                  0, request.addr, 0, request.length, request.value)


def handle_socket(qp, request: Request) -> None:
    conn = qp.allocate_connection(None)
    if conn is None:
        raise RequestError(errno.EMFILE, layout.ERR_NO_RESOURCES)
    complete(qp, request, value=conn)


def handle_close(qp, request: Request) -> None:
    qp.release_connection(request.conn)
    complete(qp, request)


class Dispatcher:
    """Validates requests and calls the handler registered for their opcode."""

    def __init__(self):
        self.handlers: dict[int, Handler] = {
            layout.OP_NOP: handle_nop, layout.OP_ECHO: handle_echo,
            layout.OP_SOCKET: handle_socket, layout.OP_CLOSE: handle_close,
        }
        self.bulk_nops = 0
        # send_run(qp, conn, [(offset, length)...]) -> bool: a span of SENDs for one
        # connection, already validated; False = handle them one by one instead
        self.send_run = None
        self.send_runs = 0

    def register(self, opcode: int, handler: Handler) -> None:
        if opcode not in layout.OPCODE_NAMES:
            raise ValueError(f"opcode {opcode} is not defined in toad/layout.py")
        self.handlers[opcode] = handler

    def register_send_run(self, handler) -> None:
        """Handle a span made only of SENDs for one owned connection with one call
        (the bulk sender's case): ``handler(qp, conn, ranges) -> bool``."""
        self.send_run = handler

    def handle(self, qp, request: Request) -> None:
        opcode = request.opcode
        if opcode not in KNOWN_OPCODES:
            qp.post_error(request, errno.EINVAL, layout.ERR_UNKNOWN_OPCODE)
            return
        if opcode in NEEDS_CONNECTION and not qp.owns(request.conn):
            qp.post_error(request, errno.EBADF, layout.ERR_WRONG_CONNECTION)
            return
        if opcode in NEEDS_SEND_RANGE and not qp.check_send_range(request.offset, request.length):
            qp.post_error(request, errno.EFAULT, layout.ERR_OUT_OF_BOUNDS)
            return
        handler = self.handlers.get(opcode)
        if handler is None:
            qp.post_error(request, errno.EOPNOTSUPP, layout.ERR_UNSUPPORTED)
            return
        if opcode in NEEDS_ANSWER and request.flags & layout.REQ_SILENT:
            qp.post_error(request, errno.EINVAL, layout.ERR_BAD_ARGUMENT)
            return
        # handled errors become ERROR events; anything else is a bug and stops the engine
        try:
            handler(qp, request)
        except RequestError as exc:
            qp.post_error(request, exc.status, exc.reason)
        except DmaError:
            qp.post_error(request, errno.EFAULT, layout.ERR_OUT_OF_BOUNDS)

    def send_one(self, qp, values: tuple) -> bool:
        """One SEND record (REQUEST_STRUCT values) with :meth:`handle`'s checks (owned
        connection, range inside the send area), through the send-run handler; False
        (nothing done) when it needs the general path: no such handler, a check
        failed, or the handler refused it (the general path posts the error)."""
        send_run = self.send_run
        if send_run is None:
            return False
        conn, offset, length = values[2], values[7], values[8]
        lay = qp.layout
        if (conn not in qp.connections or offset < lay.send_offset
                or offset + length > lay.send_offset + lay.send_bytes):
            return False
        return send_run(qp, conn, ((offset, length),))

    def handle_span(self, qp, raw: memoryview, count: int) -> None:
        """Handle ``count`` request records lying contiguously in ``raw``.

        A span made only of SENDs for one connection (the bulk sender's) goes to the
        send-run handler with one call. Silent NOPs (batched doorbell tests and
        benchmarks) are recognised with one vectorised check and only counted; every
        other record is unpacked and dispatched in ring order.
        """
        if count >= 2 and self.send_run is not None and self._sends(qp, raw):
            return
        record = layout.REQUEST_STRUCT
        if count >= 8:
            batch = np.frombuffer(raw, layout.REQUEST, count)
            others = np.flatnonzero((batch["opcode"] != layout.OP_NOP)
                                    | ((batch["flags"] & layout.REQ_SILENT) == 0))
            self.bulk_nops += count - len(others)
            del batch
            for i in others.tolist():
                self.handle(qp, Request._make(record.unpack_from(raw, i * 64)))
            return
        for values in record.iter_unpack(raw):
            self.handle(qp, Request._make(values))

    def _sends(self, qp, raw) -> bool:
        """A span of SENDs for one connection this QP owns, every range inside its send
        area (the checks :meth:`handle` makes per record): handled with one call.
        Plain struct and Python compares: cheaper than numpy below ~64 records."""
        opcode, conn, _, _ = _SEND_FIELDS.unpack_from(raw, 0)
        if opcode != layout.OP_SEND or not qp.owns(conn):
            return False
        lay = qp.layout
        start = lay.send_offset
        end = start + lay.send_bytes
        ranges = []
        for opcode, owner, offset, length in _SEND_FIELDS.iter_unpack(raw):
            if opcode != layout.OP_SEND or owner != conn or offset < start \
                    or offset + length > end:
                return False
            ranges.append((offset, length))
        if not self.send_run(qp, conn, ranges):
            return False
        self.send_runs += 1
        return True
