"""Request handling: validation, then a dispatch table opcode -> handler(qp, request).

Every request is validated before its handler runs, from the tables below:
requests about a connection must name one this QP owns; a SEND's (offset, length)
must lie inside this QP's send-buffer area; a request answered with a new connection
id (SOCKET, ACCEPT) must not be silent. A failure answers with an ERROR event
(cookie, errno, reason code) and a counter; the engine carries on.

NOP and ECHO never get here: the compiled request pass answers them
(engine/ring_calls.py serve_requests), and hands every other record over in ring
order. This module handles SOCKET (allocate a connection id) and CLOSE (free it). The
socket layer registers its own handlers for the other opcodes (and replaces
SOCKET/CLOSE) with :meth:`Dispatcher.register`; until then they are answered with
ERROR / ERR_UNSUPPORTED, never silently dropped.
"""
from __future__ import annotations

import errno
from typing import Callable, NamedTuple


from engine.dma import DmaError
from toad import layout

Handler = Callable[["QueuePair", "Request"], None]  # noqa: F821 (engine.qp.QueuePair)


class Request(NamedTuple):
    """One request record, in REQUEST field order (64-bit fields signed: see
    REQUEST_SIGNED)."""
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
REQUEST_SIGNED = layout.REQUEST_SIGNED
assert REQUEST_SIGNED.names == Request._fields


def complete(qp, request: Request, status: int = 0, value: int = 0, **fields) -> None:
    """Post the COMPLETION of a request (unless REQ_SILENT and it succeeded)."""
    if status == 0 and request.flags & layout.REQ_SILENT:
        return
    qp.post_event(layout.EV_COMPLETION, conn=request.conn, cookie=request.cookie,
                  status=status, value=value, **fields)


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
            layout.OP_SOCKET: handle_socket, layout.OP_CLOSE: handle_close,
        }
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

    def handle_records(self, qp, records: list) -> None:
        """Handle request records (tuples in Request order), in ring order. A run of
        SENDs for one connection goes to the send-run handler with one call when every
        one of them passes :meth:`handle`'s checks (the bulk sender's case); else each
        record is handled on its own (their errors, one per record)."""
        i, count = 0, len(records)
        while i < count:
            values = records[i]
            if values[0] == layout.OP_SEND and self.send_run is not None:
                conn, end = values[2], i + 1
                while end < count and records[end][0] == layout.OP_SEND \
                        and records[end][2] == conn:
                    end += 1
                if self._sends(qp, conn, records[i:end]):
                    i = end
                    continue
                for values in records[i:end]:
                    self.handle(qp, Request._make(values))
                i = end
                continue
            self.handle(qp, Request._make(values))
            i += 1

    def _sends(self, qp, conn: int, records: list) -> bool:
        """SENDs for ``conn``: handled with one call if this QP owns it and every range
        lies inside its send area (the checks :meth:`handle` makes per record)."""
        if not qp.owns(conn):
            return False
        lay = qp.layout
        start, end = lay.send_offset, lay.send_offset + lay.send_bytes
        ranges = []
        for values in records:
            offset, length = values[7], values[8]
            if offset < start or length < 0 or offset + length > end:
                return False
            ranges.append((offset, length))
        if not self.send_run(qp, conn, ranges):
            return False
        self.send_runs += 1
        return True
