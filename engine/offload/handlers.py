"""Request handlers of the offloaded sockets, registered in the engine's dispatch table.

Each synchronous request (SOCKET, BIND, LISTEN, CONNECT, ACCEPT, SHUTDOWN, CLOSE,
SETOPT) is answered by one COMPLETION event matched by cookie, with status 0 or an
errno. CONNECT is answered when the handshake ends (established, refused, timed out);
CLOSE of a connection when every byte the host posted is acknowledged (engine/offload/
sockets.py). ACCEPT answers at once: a connection id, or EAGAIN when the accept queue
is empty (the host then waits for an ACCEPT_READY event, so a host-side timeout never
leaves an accept outstanding in the engine). SEND is never answered: the cumulative
counter tells the host what it may free. SEND_SPACE is answered by one SEND_SPACE
event once ``length + value`` bytes are acknowledged (``length`` = the acked count the
host saw when it asked, ``value`` = how many more it waits for).

The dispatcher (engine/handlers.py) has already checked that the connection id is
owned by the QP and that a SEND range lies inside the QP's send area.
"""
from __future__ import annotations

import dataclasses

import errno
import socket

from engine.handlers import RequestError, complete
from engine.tcp.states import State
from engine.tcp.wire import ipv4
from toad import layout

from .host_buffers import HostRecvBuffer, HostSendBuffer, give_back
from .sockets import (BOUND, CONNECTED, CONNECTING, DEAD, LISTENING, NEW, EngineSocket,
                      RecvPolicy, release)

ABORT = 1               # CLOSE value: reset instead of a graceful close (SO_LINGER 0)
FIRST_BIND_PORT = 32768


class Handlers:
    """The socket requests of every QP, driving one Stack."""

    def __init__(self, layer):
        self.layer = layer
        self.stack = layer.stack
        self.table = layer.table
        self.counters = layer.counters
        self.bound_ports: dict[int, EngineSocket] = {}
        self.next_bind_port = FIRST_BIND_PORT

    def register(self, dispatcher) -> None:
        for opcode, handler in ((layout.OP_SOCKET, self.socket), (layout.OP_BIND, self.bind),
                                (layout.OP_LISTEN, self.listen),
                                (layout.OP_CONNECT, self.connect),
                                (layout.OP_ACCEPT, self.accept), (layout.OP_SEND, self.send),
                                (layout.OP_SHUTDOWN, self.shutdown),
                                (layout.OP_CLOSE, self.close), (layout.OP_SETOPT, self.setopt),
                                (layout.OP_SEND_SPACE, self.send_space)):
            dispatcher.register(opcode, handler)
        dispatcher.register_send_run(self.send_run)

    # ---- helpers -----------------------------------------------------------------
    def policy(self) -> RecvPolicy:
        qp = self.layer.config.qp
        return RecvPolicy(qp.recv_post_push, qp.recv_post_delay_us / 1e6)

    def buffers(self, qp, sock: EngineSocket, conn_id):
        """A new (send, recv) buffer pair in ``qp``'s memory for ``sock``."""
        send = HostSendBuffer(qp, conn_id)
        recv = HostRecvBuffer(self.layer.pools[qp], sock.policy, self.counters,
                              self.layer.clock)
        if conn_id is not None:
            recv.attach(conn_id)
        return send, recv

    def _free_port(self) -> int:
        for _ in range(65536 - FIRST_BIND_PORT):
            port = self.next_bind_port
            self.next_bind_port = port + 1 if port < 65535 else FIRST_BIND_PORT
            if port not in self.bound_ports and port not in self.stack.listeners:
                return port
        raise RequestError(errno.EADDRINUSE, layout.ERR_NO_RESOURCES)

    def _unbind_port(self, sock: EngineSocket) -> None:
        if sock.bind_port and self.bound_ports.get(sock.bind_port) is sock:
            del self.bound_ports[sock.bind_port]

    # ---- requests ----------------------------------------------------------------
    def socket(self, qp, request) -> None:
        sock = EngineSocket(qp, self.policy())
        conn_id = qp.allocate_connection(sock)
        if conn_id is None:
            raise RequestError(errno.EMFILE, layout.ERR_NO_RESOURCES)
        sock.conn_id = conn_id
        qp.clear_consumed(conn_id)
        self.counters["sockets"] += 1
        complete(qp, request, value=conn_id)

    def bind(self, qp, request) -> None:
        sock = qp.connections[request.conn]
        addr = request.addr
        if sock.state is not NEW:
            raise RequestError(errno.EINVAL, layout.ERR_BAD_ARGUMENT)
        if addr not in (0, self.stack.ip) and not ipv4.is_loopback(addr):
            complete(qp, request, status=errno.EADDRNOTAVAIL)
            return
        port = request.port or self._free_port()
        if port in self.bound_ports or port in self.stack.listeners:
            complete(qp, request, status=errno.EADDRINUSE)
            return
        sock.bind_addr, sock.bind_port, sock.state = addr, port, BOUND
        self.bound_ports[port] = sock
        complete(qp, request, port=port)

    def listen(self, qp, request) -> None:
        sock = qp.connections[request.conn]
        if sock.state is NEW:
            sock.bind_port, sock.state = self._free_port(), BOUND
            self.bound_ports[sock.bind_port] = sock
        if sock.state is not BOUND:
            raise RequestError(errno.EINVAL, layout.ERR_BAD_ARGUMENT)

        def child_buffers(_remote):
            return self.buffers(qp, sock, None)

        try:
            listener = self.stack.listen(sock.bind_port, request.value or None, child_buffers,
                                         config=self._tcp_config(sock))
        except OSError as exc:
            complete(qp, request, status=exc.errno)
            return
        sock.listener, sock.state = listener, LISTENING
        self.table.bind_stack(listener, sock)
        listener.forget = self._child_lost_hook(qp, sock, listener)
        complete(qp, request, port=sock.bind_port)

    def _child_lost_hook(self, qp, sock: EngineSocket, listener):
        """Wrap ``listener.forget`` (the Stack calls it when a child dies before being
        accepted, or the listener closes): buffers such a child filled go back to the
        host's pool, posted with connection 0, instead of leaking from it."""
        forget = listener.forget

        def forget_child(conn) -> None:
            recv = conn.recv_buffer
            if self.table.by_stack.get(listener) is sock and isinstance(recv, HostRecvBuffer) \
                    and recv.conn is None:
                for buf_id in recv.detach():
                    give_back(qp, 0, buf_id)
                self.counters["children_lost_before_accept"] += 1
            forget(conn)

        return forget_child

    def connect(self, qp, request) -> None:
        sock = qp.connections[request.conn]
        if sock.state not in (NEW, BOUND):
            status = errno.EISCONN if sock.state in (CONNECTING, CONNECTED) else errno.EINVAL
            complete(qp, request, status=status)
            return
        send, recv = self.buffers(qp, sock, sock.conn_id)
        try:
            conn = self.stack.connect(request.addr, request.port, self.layer.clock(),
                                      local_port=sock.bind_port, send_buffer=send,
                                      recv_buffer=recv, config=self._tcp_config(sock))
        except OSError as exc:
            complete(qp, request, status=exc.errno or errno.EINVAL)
            return
        self._unbind_port(sock)
        if sock.nodelay is not None:     # else the engine's tcp.nagle stands
            conn.set_nodelay(sock.nodelay)
        sock.conn, sock.send_buffer, sock.recv_buffer = conn, send, recv
        recv.connection = conn
        sock.state, sock.connect_cookie = CONNECTING, request.cookie
        self.table.bind_stack(conn, sock)
        self.layer.kick(conn)

    def accept(self, qp, request) -> None:
        sock = qp.connections[request.conn]
        if sock.state is not LISTENING:
            raise RequestError(errno.EINVAL, layout.ERR_BAD_ARGUMENT)
        conn = sock.listener.accept()
        if conn is None:
            complete(qp, request, status=errno.EAGAIN)
            return
        child = EngineSocket(qp, RecvPolicy(sock.policy.push, sock.policy.delay_s))
        conn_id = qp.allocate_connection(child)
        if conn_id is None:
            conn.abort(self.layer.clock())
            self.layer.kick(conn)
            complete(qp, request, status=errno.EMFILE)
            return
        qp.clear_consumed(conn_id)
        child.conn_id, child.conn, child.state = conn_id, conn, CONNECTED
        child.send_buffer, child.recv_buffer = conn.send_buffer, conn.recv_buffer
        child.recv_buffer.policy = child.policy
        child.send_buffer.conn = conn_id
        child.recv_buffer.attach(conn_id)
        child.recv_buffer.connection = conn
        child.nodelay = sock.nodelay     # inherited from the listener, as in BSD
        if sock.nodelay is not None:
            conn.set_nodelay(sock.nodelay)
            self.layer.kick(conn)
        self.table.bind_stack(conn, child)
        self.counters["accepted"] += 1
        complete(qp, request, value=conn_id, addr=conn.remote[0], port=conn.remote[1])

    def send(self, qp, request) -> None:
        sock = qp.connections[request.conn]
        refused = send_refusal(sock)
        if refused:
            raise RequestError(refused, layout.ERR_BAD_ARGUMENT)
        sock.send_buffer.add(request.offset, request.length)
        self.layer.kick(sock.conn)

    def send_run(self, qp, conn_id: int, ranges: list) -> bool:
        """Several SENDs for one connection (validated by the dispatcher), as
        :meth:`send` each; False (nothing done) when they need per-request errors."""
        sock = qp.connections[conn_id]
        if send_refusal(sock):
            return False
        add = sock.send_buffer.add
        for offset, length in ranges:
            add(offset, length)
        self.layer.kick(sock.conn)
        return True

    def shutdown(self, qp, request) -> None:
        sock = qp.connections[request.conn]
        if sock.state not in (CONNECTED, CONNECTING) or sock.conn is None:
            complete(qp, request, status=sock.error or errno.ENOTCONN)
            return
        if request.value in (socket.SHUT_WR, socket.SHUT_RDWR):
            sock.conn.shutdown(self.layer.clock())
            self.layer.kick(sock.conn)
        complete(qp, request)

    def close(self, qp, request) -> None:
        sock = qp.connections[request.conn]
        if sock.close_cookie is not None:   # a CLOSE of this id waits for its acks:
            raise RequestError(errno.EALREADY, layout.ERR_BAD_ARGUMENT)  # it stands
        self._unbind_port(sock)
        if sock.listener is not None:
            self.stack.close_listener(sock.listener)
            self.layer.kick()
        conn = sock.conn
        if conn is None or sock.state is DEAD or conn.state is State.CLOSED:
            release(qp, sock, self.table)
            complete(qp, request)
            return
        if sock.connect_cookie is not None:   # a CONNECT still waits: it fails now
            complete_cookie(qp, sock, sock.connect_cookie, errno.ECONNABORTED)
            sock.connect_cookie = None
        if request.value == ABORT or sock.state is CONNECTING:
            self.table.unbind_stack(conn)
            conn.abort(self.layer.clock())
            self.layer.kick(conn)
            release(qp, sock, self.table)
            complete(qp, request)
            return
        conn.close(self.layer.clock())
        self.layer.kick(conn)
        sock.close_cookie = request.cookie
        if len(sock.send_buffer) == 0:
            self.layer.finish_close(sock)
        else:
            self.table.lingering.add(sock)

    def _tcp_config(self, sock: EngineSocket):
        """The stack's TcpConfig, or a copy with this socket's checksum mode."""
        if sock.checksum is None:
            return None
        return dataclasses.replace(self.stack.config, checksum=sock.checksum)

    def setopt(self, qp, request) -> None:
        sock = qp.connections[request.conn]
        option, value = request.option, request.value
        if option == layout.OPT_NODELAY:
            sock.nodelay = bool(value)
            if sock.conn is not None:
                sock.conn.set_nodelay(bool(value))
                self.layer.kick(sock.conn)
        elif option == layout.OPT_RECV_PUSH:
            sock.policy.push = bool(value)
        elif option == layout.OPT_RECV_DELAY_US:
            sock.policy.delay_s = value / 1e6
        elif option == layout.OPT_CHECKSUM:
            if not 0 <= value < len(layout.CHECKSUM_MODES):   # (a host's value)
                complete(qp, request, status=errno.EINVAL)
                return
            if sock.state not in (NEW, BOUND):   # the TCB exists: its mode is fixed
                complete(qp, request, status=errno.EISCONN)
                return
            sock.checksum = layout.CHECKSUM_MODES[value]
        else:
            complete(qp, request, status=errno.ENOPROTOOPT)
            return
        complete(qp, request)

    def send_space(self, qp, request) -> None:
        sock = qp.connections[request.conn]
        target = request.length + request.value
        if sock.send_buffer is None or sock.conn is None or sock.state is DEAD:
            qp.post_event(layout.EV_SEND_SPACE, conn=sock.conn_id,
                          status=sock.error or errno.EPIPE)
            return
        if sock.send_buffer.acked >= target:
            qp.post_event(layout.EV_SEND_SPACE, conn=sock.conn_id, value=sock.send_buffer.acked)
            return
        sock.space_target = target


def send_refusal(sock) -> int:
    """0 when ``sock`` may queue data to send, else the errno its SEND gets."""
    if sock.state is not CONNECTED or sock.conn is None:
        return sock.error or errno.EPIPE
    try:
        sock.conn.check_can_send()
    except OSError as exc:
        return exc.errno or errno.EPIPE
    return 0


def complete_cookie(qp, sock: EngineSocket, cookie: int, status: int = 0, value: int = 0) -> None:
    """Answer a deferred request (CONNECT, CLOSE) by its cookie."""
    qp.post_event(layout.EV_COMPLETION, conn=sock.conn_id, cookie=cookie, status=status,
                  value=value)
