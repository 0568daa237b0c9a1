"""The in-host baseline: toad's TCP/IP stack running inside the application's process.

    with InhostNetwork(config, side="a") as net:
        with net.create_connection(("10.0.0.2", 5001)) as sock:
            sock.sendall(data)

``InhostNetwork`` owns one Stack (engine/tcp) and one NIC for this process: the
shared-memory wire in the loopback topology (side a has ``nic.address``, side b
``nic.peer_address``), or the TAP device in the tap topology (``nic.tap.*``, Linux in
a namespace as the peer). There are no threads: a blocking socket call drives the
stack inline (NIC frames in, timers, frames out) and, when nothing is left to do,
sleeps in select() on the NIC's fd until the next timer deadline. That is the point
of this mode: TCP runs on the application's CPU, in its calls.

The socket API follows Python's ``socket`` (see :class:`InhostSocket`); errors are
OSError subclasses with the errno Linux would give. ``host.sockets.OffloadNetwork``
(offload mode) offers the same shape.
"""
from __future__ import annotations

import ipaddress
import os
import select
import time
from typing import Callable

import numpy as np

from engine.nic.faults import FaultyNic, has_faults
from engine.nic.pcap import PcapNic
from engine.nic.shm import ShmWire
from engine.nic.tap import TapNic, local_mac
from engine.tcp.stack import Stack
from engine.tcp.states import State
from engine.tcp.wire import ipv4
from host.inhost_socket import InhostSocket
from toad.errors import ToadError

MAX_RX_BATCHES = 8          # NIC batches taken per step before output runs again
RX_BATCH = 64               # frames per NIC batch
LINGER_S = 2.0              # close(): time given to connections to finish their FINs
QUIET_STATES = (State.CLOSED, State.TIME_WAIT, State.FIN_WAIT_2)


def side_address(config, side: str) -> str:
    """The address/prefix this process's stack uses."""
    nic = config.nic
    if nic.kind == "tap":
        if side != "a":
            raise ToadError("nic.kind tap: the in-host runner is side a (Linux is the "
                            "other side); use side='a'")
        return nic.tap.address
    if side == "a":
        return nic.address
    if side == "b":
        prefix = ipaddress.IPv4Interface(nic.address).network.prefixlen
        return f"{nic.peer_address}/{prefix}"
    raise ToadError(f"in-host side must be 'a' or 'b', got {side!r}")


def pcap_path(path: str, side: str) -> str:
    """Side b of the shared-memory wire writes next to side a's capture."""
    if side == "a":
        return path
    root, ext = os.path.splitext(path)
    return f"{root}-b{ext or '.pcap'}"


def open_nic(config, side: str, address: str):
    """This side's NIC: TAP or its end of the shared-memory wire, inside the fault
    injector when ``nic.wire`` has faults (engine/nic/faults.py: on the wire, each
    side damages what it sends; on TAP, both ways), inside a capture if asked."""
    nic_config = config.nic
    if nic_config.kind == "tap":
        nic = TapNic(nic_config.tap)
        directions = "both"
    else:
        nic = ShmWire(wire_name(config), side, nic_config.mtu, local_mac(address))
        directions = "tx"
    if has_faults(nic_config.wire):
        # side b draws its own stream: the two directions do not lose the same frames
        nic = FaultyNic(nic, nic_config.wire, directions,
                        seed=nic_config.wire.seed + (side == "b"))
    if nic_config.pcap:
        try:
            nic = PcapNic(nic, pcap_path(nic_config.pcap, side))
        except ValueError as exc:           # the capture file cannot be written
            nic.close()
            raise ToadError(str(exc)) from None
        except BaseException:
            nic.close()
            raise
    return nic


def wire_name(config) -> str:
    """The shared-memory wire of an instance (``ShmWire.unlink(wire_name(cfg))``
    removes what a killed process left)."""
    return f"toad-{config.name}-wire"


class InhostNetwork:
    """One Stack and one NIC driven in this process; sockets come from ``socket()``."""

    def __init__(self, config, side: str = "a", clock: Callable[[], float] = time.monotonic):
        self.config = config
        self.side = side
        self.clock = clock
        self.address = side_address(config, side)
        self.nic = open_nic(config, side, self.address)
        try:
            self.stack = Stack(config.tcp, self.address, self.nic.features.mac,
                               self.nic.features, seed=os.getpid(),
                               arp_timeout=config.nic.arp_timeout_s)
        except BaseException:
            self.nic.close()
            raise
        self.ip = ipv4.aton(self.address.split("/")[0])
        self.rx_slots = np.empty(RX_BATCH, np.int32)    # one receive burst's slot ids
        self.sockets: dict = {}          # Connection | Listener -> InhostSocket
        self.bound_ports: set[int] = set()
        self.closed = False

    # ---- sockets -----------------------------------------------------------------

    def socket(self) -> InhostSocket:
        self.check_open()
        return InhostSocket(self)

    def create_connection(self, address, timeout: float | None = None) -> InhostSocket:
        """Like socket.create_connection: a connected socket, or the OSError."""
        sock = self.socket()
        try:
            sock.settimeout(timeout)
            sock.connect(address)
        except BaseException:
            sock.close()
            raise
        return sock

    def check_open(self) -> None:
        if self.closed:
            raise OSError(9, "the in-host network is closed")  # EBADF

    # ---- driving the stack -------------------------------------------------------

    def step(self) -> bool:
        """One round: frames in, due timers, frames out, events to sockets.
        Returns True when anything was received or sent."""
        stack, nic, now = self.stack, self.nic, self.clock()
        pool, slots = stack.pool, self.rx_slots
        busy = False
        for _ in range(MAX_RX_BATCHES):
            frames = nic.receive_burst(now, pool, slots)
            if not frames:
                break
            busy = True
            stack.receive_frames(pool, slots, frames, now)   # consumed and released
        deadline = stack.next_deadline()
        if deadline is not None and deadline <= now:
            stack.on_timer(now)
        out = stack.poll_transmit(now)
        if out:
            nic.send_burst(pool, out, len(out))
            busy = True
        for owner, event in stack.events():
            sock = self.sockets.get(owner)
            if sock is not None:
                sock.on_event(event)
        return busy

    def wait(self, ready: Callable[[], bool], timeout: float | None) -> bool:
        """Drive the stack until ``ready()`` or ``timeout`` seconds (None: forever);
        sleep on the NIC between events. Returns ready()."""
        self.check_open()
        until = None if timeout is None else self.clock() + timeout
        while True:
            busy = self.step()
            if ready():
                return True
            now = self.clock()
            if until is not None and now >= until:
                return False
            if busy:
                continue
            self.sleep(now, until)

    def sleep(self, now: float, until: float | None) -> None:
        """Block on the NIC until a frame, the stack's next deadline or ``until``."""
        delay = self.idle_timeout(now, until)
        if delay == 0.0:
            return
        fd = self.nic.fileno()
        if fd is None:
            time.sleep(min(delay, 0.001) if delay is not None else 0.001)
        else:
            select.select([fd], [], [], delay)

    def idle_timeout(self, now: float, until: float | None = None) -> float | None:
        """Seconds a caller may sleep on ``fileno()`` (None: until a frame arrives)."""
        wake = [t for t in (self.stack.next_deadline(), self.nic.next_deadline(), until)
                if t is not None]
        return max(0.0, min(wake) - now) if wake else None

    def fileno(self) -> int | None:
        """The NIC's fd: readable when frames wait (for callers with their own select)."""
        return self.nic.fileno()

    # ---- teardown ----------------------------------------------------------------

    def close(self, linger: float = LINGER_S) -> None:
        """Close every socket, let FIN exchanges finish (bounded), release the NIC."""
        if self.closed:
            return
        try:
            for sock in list(self.sockets.values()):
                sock.close()
            if linger > 0:
                self.wait(self.quiet, linger)
        finally:
            self.closed = True
            self.nic.close()

    def quiet(self) -> bool:
        return all(c.state in QUIET_STATES for c in self.stack.connections())

    @property
    def counters(self) -> dict:
        """Stack, per-connection (summed) and NIC counters, prefixed by origin."""
        out = dict(self.stack.counters)
        out.update({f"conn.{k}": v for k, v in self.stack.connection_counters().items()})
        faults = getattr(self.nic, "wire_counters", None)   # (a capture forwards them)
        out.update({f"fault.{k}": v for k, v in (faults or {}).items()})
        nic = self.nic
        while hasattr(nic, "inner"):          # the NIC itself, under capture and faults
            nic = nic.inner
        out.update({f"nic.{k}": v for k, v in getattr(nic, "counters", {}).items()})
        return out

    def __enter__(self) -> "InhostNetwork":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
