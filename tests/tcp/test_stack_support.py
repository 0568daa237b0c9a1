"""Helpers for the Stack tests (no tests here): a scripted peer that builds frames with the wire
modules and reads the Stack's output back."""
from __future__ import annotations

import numpy as np

from engine.nic.base import NicFeatures
from engine.tcp.checksum import checksum, fill_partial, pseudo_sum
from engine.tcp.wire import arp, ethernet, icmp, ipv4, tcp
from engine.tcp.wire.tcp import TcpRepr
from tests.nicframes import Frame, sent

STACK_MAC = bytes.fromhex("02000000000a")
PEER_MAC = bytes.fromhex("02000000000b")
STACK_IP = ipv4.aton("10.0.0.1")
PEER_IP = ipv4.aton("10.0.0.2")


def features(mtu: int = 1500, tx_csum: bool = False, hears_itself: bool = False) -> NicFeatures:
    return NicFeatures(mtu=mtu, mac=STACK_MAC, tx_csum=tx_csum, rx_csum=tx_csum, tso=False,
                       tso_max=0, hears_itself=hears_itself)


def ip_frame(protocol: int, body: bytes, src: int = PEER_IP, dst: int = STACK_IP,
             dst_mac: bytes = STACK_MAC, frag: int = 0x4000) -> bytearray:
    data = bytearray(14 + 20) + body
    data[:14] = ethernet.header(dst_mac, PEER_MAC, ethernet.ETHERTYPE_IPV4)
    ipv4.emit(ipv4.Ipv4Repr(src, dst, protocol, len(body)), memoryview(data)[14:])
    if frag != 0x4000:                                  # rewrite flags, re-sum
        data[20:22] = frag.to_bytes(2, "big")
        data[24:26] = b"\0\0"
        data[24:26] = checksum(data[14:34]).to_bytes(2, "big")
    return data


def tcp_frame(seg: TcpRepr, src: int = PEER_IP, dst: int = STACK_IP,
              good_checksum: bool = True) -> bytearray:
    body = bytearray(tcp.buffer_len(seg))
    size = tcp.emit(seg, memoryview(body))
    body[size:] = seg.payload
    value = checksum(body, pseudo_sum(src, dst, 6, len(body)))
    if not good_checksum:
        value ^= 0x0101
    body[16:18] = value.to_bytes(2, "big")
    return ip_frame(ipv4.PROTO_TCP, bytes(body), src, dst)


def arp_frame(op: int, target_ip: int = STACK_IP, sender_ip: int = PEER_IP,
              dst_mac: bytes = ethernet.BROADCAST) -> bytearray:
    data = bytearray(14 + 28)
    data[:14] = ethernet.header(dst_mac, PEER_MAC, ethernet.ETHERTYPE_ARP)
    target_mac = bytes(6) if op == arp.OP_REQUEST else STACK_MAC
    arp.emit(arp.ArpRepr(op, PEER_MAC, sender_ip, target_mac, target_ip), memoryview(data)[14:])
    return data


def echo_request(ident: int, seq_no: int, payload: bytes) -> bytearray:
    message = icmp.IcmpRepr(icmp.ECHO_REQUEST, 0, ident, seq_no, payload)
    body = bytearray(icmp.buffer_len(message))
    icmp.emit(message, memoryview(body))
    return ip_frame(ipv4.PROTO_ICMP, bytes(body))


def parse_out(frame: Frame):
    """(ethernet, ip-or-arp, tcp/icmp-or-None) of a frame the Stack sent (a copy,
    tests.nicframes.sent); a partial checksum is completed first, and every checksum
    is verified."""
    if frame.csum_start:
        fill_partial(frame.data, frame.csum_start, frame.csum_offset)
        frame.csum_start = frame.csum_offset = 0
    eth = ethernet.parse(memoryview(frame.data))
    if eth.ethertype == ethernet.ETHERTYPE_ARP:
        return eth, arp.parse(eth.payload), None
    packet = ipv4.parse(eth.payload)
    if packet.protocol == ipv4.PROTO_ICMP:
        return eth, packet, icmp.parse(packet.payload)
    seg = tcp.parse(packet.payload, pseudo_sum(packet.src, packet.dst, 6, packet.payload_len))
    return eth, packet, seg


def learn_peer(stack, now: float = 0.0) -> None:
    """Teach the stack the peer's MAC the ordinary way: the peer asks for ours."""
    stack.receive_frame(memoryview(arp_frame(arp.OP_REQUEST)), now)
    sent(stack, now)


# ---- driving whole stacks over a loopback wire ---------------------------------------

import hashlib  # noqa: E402

from engine.nic.loopback import LoopbackWire  # noqa: E402


class Clock:
    """Injected time: the wire reads it on send, the driver advances it."""

    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


class Host:
    """A stack and its NIC, plus every (owner, event) the stack reported."""

    def __init__(self, stack, nic):
        self.stack, self.nic = stack, nic
        self.events: list = []
        self.slots = np.empty(256, np.int32)

    def step(self, now: float) -> bool:
        """One pass of the runner's loop; True if any frame moved."""
        moved = False
        pool = self.stack.pool
        while n := self.nic.receive_burst(now, pool, self.slots):
            self.stack.receive_frames(pool, self.slots, n, now)
            moved = True
        deadline = self.stack.next_deadline()
        if deadline is not None and deadline <= now:
            self.stack.on_timer(now)
        frames = self.stack.poll_transmit(now)
        if frames:
            self.nic.send_burst(pool, frames, len(frames))
            moved = True
        events = self.stack.events()
        self.events += events
        return moved or bool(events)          # looped traffic moves no NIC frame

    def deadline(self):
        times = [t for t in (self.stack.next_deadline(), self.nic.next_deadline()) if t is not None]
        return min(times) if times else None


def run(hosts, clock: Clock, done, tick=lambda: None, max_steps: int = 500_000) -> int:
    """Step every host until ``done()``; when nothing moves, jump the clock to the next
    deadline. Returns the steps taken; fails if the bound is hit or all goes idle."""
    for step in range(max_steps):
        tick()
        if done():
            return step
        moved = False
        for host in hosts:
            moved |= host.step(clock.now)
        if not moved:
            times = [t for t in (h.deadline() for h in hosts) if t is not None]
            later = [t for t in times if t > clock.now]
            if times and min(times) <= clock.now:
                continue
            if not later:
                raise AssertionError("idle before done: no deadline left")
            clock.now = min(later)
    raise AssertionError(f"not done after {max_steps} steps")


def make_pair(config_a, config_b=None, wire_config=None, mtu: int = 1500, clock=None,
              csum_offload: bool = True, shared_pool: bool = False):
    """Two stacks (10.0.0.1 and 10.0.0.2) on the two ends of one loopback wire, each
    with its own frame pool (the wire copies frames across) or, with ``shared_pool``,
    both in a's (the wire moves slot ids)."""
    from engine.tcp.stack import Stack
    clock = clock or Clock()
    wire = LoopbackWire(wire_config, mtu=mtu, csum_offload=csum_offload, clock=clock)
    nic_a, nic_b = wire.attach(STACK_MAC), wire.attach(PEER_MAC)
    a = Host(Stack(config_a, "10.0.0.1/24", STACK_MAC, nic_a.features, seed=1), nic_a)
    b = Host(Stack(config_b or config_a, "10.0.0.2/24", PEER_MAC, nic_b.features, seed=2,
                   pool=a.stack.pool if shared_pool else None), nic_b)
    return a, b, wire, clock


class Transfer:
    """Bulk data from ``client`` (connects) to ``server`` (listens), then both close.
    The tick feeds the sender and drains the receiver; ``done`` when the receiver has
    every byte and the FIN. ``digest`` is the sha256 of what arrived."""

    def __init__(self, client: Host, server: Host, server_ip: int, data: bytes, clock: Clock,
                 port: int = 5001, write_size: int = 65536):
        self.client, self.server, self.data, self.clock = client, server, data, clock
        self.write_size = write_size
        self.listener = server.stack.listen(port)
        self.conn = client.stack.connect(server_ip, port, clock.now)
        self.accepted = None
        self.sent = 0
        self.received = 0
        self.hasher = hashlib.sha256()
        self.view = memoryview(data)

    def tick(self) -> None:
        now = self.clock.now
        if self.accepted is None:
            self.accepted = self.listener.accept()
        if self.accepted is not None:
            buffer = self.accepted.recv_buffer
            if len(buffer):
                chunk = buffer.read(len(buffer))
                self.received += len(chunk)
                self.hasher.update(chunk)
                self.accepted.notify_read(now)
        if self.sent < len(self.data) and self.conn.state.name in ("ESTABLISHED", "CLOSE_WAIT"):
            self.sent += self.conn.send(self.view[self.sent:self.sent + self.write_size])
            if self.sent == len(self.data):
                self.conn.shutdown(now)

    def done(self) -> bool:
        if self.accepted is None or self.received < len(self.data):
            return False
        return any(owner is self.accepted and type(ev).__name__ == "PeerClosed"
                   for owner, ev in self.server.events)

    def ok(self) -> bool:
        return self.hasher.digest() == hashlib.sha256(self.data).digest()
