"""``toad nc``: netcat over toad's stack.

    toad nc [--config FILE] [--set key=value]... [--mode inhost|offload] (--listen PORT | HOST PORT)

stdin goes to the connection, the connection goes to stdout. On stdin EOF the sending
side is shut down (FIN); the program exits once the peer has closed too. In the
loopback topology two ``toad nc`` processes talk over the shared-memory wire (the
listener is side a by default, a client of side a's address side b; ``--side``
overrides); in the tap topology the peer is any Linux program in ``nic.tap.netns``.
One thread: a select() on stdin and the NIC fd, with the stack's next timer as timeout.
``--mode offload`` attaches to the running engine of the config (``toad engine CONFIG``;
a clear error when none runs): TCP runs there, on its internal wire (127.0.0.1 and the
engine's own address stay inside it) or on its TAP device.
"""
from __future__ import annotations

import argparse
import os
import select
import socket
import sys

from toad.config import load
from toad.errors import ToadError, run_main
from toad.memory import keep_heap
from toad.netns import install_signal_cleanup

CHUNK = 65536


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="toad nc", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="YAML config file (defaults when omitted)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a config key (repeatable)")
    parser.add_argument("--mode", choices=("inhost", "offload"), default="inhost",
                        help="where TCP runs (inhost: in this process)")
    parser.add_argument("--side", choices=("a", "b"), default=None,
                        help="loopback topology: which end of the shared-memory wire")
    parser.add_argument("--listen", "-l", type=int, metavar="PORT", help="accept one connection")
    parser.add_argument("address", nargs="*", metavar="HOST PORT",
                        help="connect to this address and port (without --listen)")
    args = parser.parse_args(argv)
    if (args.listen is None) == (len(args.address) != 2):
        parser.error("give either --listen PORT or HOST PORT")
    if args.listen is not None and not 1 <= args.listen <= 65535:
        parser.error(f"--listen: port {args.listen} must be 1..65535")
    if args.address:
        try:
            args.port = int(args.address[1])
        except ValueError:
            parser.error(f"PORT: {args.address[1]!r} is not a number")
    return args


def choose_side(args, config) -> str:
    if args.side or config.nic.kind == "tap":
        return args.side or "a"
    if args.listen is not None:
        return "a"
    return "b" if args.address[0] == config.nic.address.split("/")[0] else "a"


def open_connection(net, args):
    """The connected socket (after accept, for --listen)."""
    if args.listen is None:
        return net.create_connection((args.address[0], args.port))
    with net.socket() as server:
        server.bind(("", args.listen))
        server.listen(1)
        conn, peer = server.accept()
    return conn


def pump(net, conn, stdin: int, stdout: int) -> None:
    """Copy both ways until stdin has ended, everything is sent and the peer closed."""
    conn.setblocking(False)
    pending = b""
    stdin_open, peer_open = True, True
    while stdin_open or pending or peer_open:
        net.step()
        while peer_open:
            try:
                data = conn.recv(CHUNK)
            except BlockingIOError:
                break
            if not data:
                peer_open = False
                break
            write_all(stdout, data)
        if pending:
            try:
                pending = pending[conn.send(pending):]
            except BlockingIOError:
                pass
            if not pending and not stdin_open:
                conn.shutdown(socket.SHUT_WR)
        if not (stdin_open or pending or peer_open):
            break
        waiting = [net.fileno()]
        if stdin_open and not pending:
            waiting.append(stdin)
        ready = select.select([fd for fd in waiting if fd is not None], [], [],
                              net.idle_timeout(net.clock()))[0]
        if stdin in ready:
            data = os.read(stdin, CHUNK)
            if data:
                pending = data
            else:
                stdin_open = False
                conn.shutdown(socket.SHUT_WR)


def pump_offload(conn, stdin: int, stdout: int) -> None:
    """Offload mode: a thread copies stdin to the connection (then FIN), this thread
    copies the connection to stdout until the peer closes; both block in the driver."""
    import threading
    failure: list = []

    def send_side() -> None:
        try:
            while True:
                data = os.read(stdin, CHUNK)
                if not data:
                    break
                conn.sendall(data)
            conn.shutdown(socket.SHUT_WR)
        except OSError as exc:
            failure.append(exc)

    sender = threading.Thread(target=send_side, name="nc-stdin", daemon=True)
    sender.start()
    buf = bytearray(CHUNK)
    while True:
        n = conn.recv_into(buf)
        if not n:
            break
        write_all(stdout, memoryview(buf)[:n])
    sender.join()
    if failure:
        raise failure[0]


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    config = load(args.config, args.overrides)
    keep_heap(config.heap_trim_bytes)
    install_signal_cleanup()
    if args.mode == "offload":   # TCP in the running engine of this config
        from host.sockets import OffloadNetwork
        net = OffloadNetwork(config)
    else:
        from host.inhost import InhostNetwork   # after the cheap argument checks
        try:
            net = InhostNetwork(config, choose_side(args, config))
        except ValueError as exc:                # e.g. the pcap path
            raise ToadError(str(exc)) from None
    try:
        conn = open_connection(net, args)
        with conn:
            if args.mode == "offload":
                pump_offload(conn, sys.stdin.fileno(), sys.stdout.fileno())
            else:
                pump(net, conn, sys.stdin.fileno(), sys.stdout.fileno())
    except ConnectionRefusedError:
        raise ToadError(f"connection to {args.address[0]}:{args.port} refused") from None
    except (ConnectionResetError, BrokenPipeError):
        raise ToadError("connection reset by the peer") from None
    except TimeoutError:
        raise ToadError("connection timed out") from None
    except OSError as exc:
        raise ToadError(f"{exc.strerror or exc}") from None
    finally:
        net.close()
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
