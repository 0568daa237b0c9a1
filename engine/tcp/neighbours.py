"""ARP and ICMP echo for the Stack (engine/tcp/stack.py): its methods
``_receive_arp``, ``_receive_icmp``, ``_arp_request`` and ``_arp_send``, kept here so
the Stack module stays about IPv4 and TCP. ``self`` is the Stack."""
from __future__ import annotations

from .wire import arp, ethernet, icmp, ipv4

NO_MAC = bytes(6)


def receive_icmp(self, packet, src_mac: bytes, looped: bool) -> None:
    """An ICMP packet for us: echo requests are answered, the rest counted."""
    message = icmp.parse(packet.payload)
    if message.type != icmp.ECHO_REQUEST or message.code != 0:
        self.counters["icmp.rx_other"] += 1
        return
    reply = icmp.IcmpRepr(icmp.ECHO_REPLY, 0, message.ident, message.seq_no,
                          message.payload)
    body_len = icmp.buffer_len(reply)
    pool = self.builder.loop_pool if looped else self.pool
    slot = new_frame(self, pool, 14 + ipv4.HEADER_LEN + body_len)
    if slot < 0:
        return
    view = pool.view(slot)
    view[:14] = ethernet.header(src_mac, self.mac, ethernet.ETHERTYPE_IPV4)
    ipv4.emit(ipv4.Ipv4Repr(packet.dst, packet.src, ipv4.PROTO_ICMP, body_len,
                            ident=self.builder.next_ident()), view[14:])
    icmp.emit(reply, view[14 + ipv4.HEADER_LEN:])
    self.counters["icmp.echo_replied"] += 1
    (self._loop if looped else self._tx).append(slot)


def new_frame(self, pool, size: int) -> int:
    """A slot of ``pool`` for a ``size``-byte frame built in place (no offload fields),
    or -1 when there is none or it is too big (counted)."""
    if size > pool.slot_bytes:
        self.counters["tx.frame_too_big"] += 1
        return -1
    slot = pool.alloc()
    if slot < 0:
        self.counters["tx.no_frame_slot"] += 1
        return -1
    pool.lengths[slot] = size
    pool.csum_starts[slot] = pool.csum_offsets[slot] = pool.gso_sizes[slot] = 0
    return slot


def receive_arp(self, payload, now: float) -> None:
    """An ARP message: learn the sender (releasing frames queued for it), answer
    requests for our address."""
    message = arp.parse(payload)
    counters = self.counters
    counters["arp.rx"] += 1
    for_us = message.target_ip == self.ip
    if message.sender_ip and (for_us or self.arp.known(message.sender_ip)):
        for slot in self.arp.learn(message.sender_ip, message.sender_mac, now):
            self.pool.view(slot)[:6] = message.sender_mac
            self._tx.append(slot)
            counters["arp.released"] += 1
        if self.fast is not None:
            self.fast.routes_changed(message.sender_ip)
    if for_us and message.op == arp.OP_REQUEST:
        self._arp_send(arp.OP_REPLY, message.sender_mac, message.sender_ip)
        counters["arp.tx_reply"] += 1
    elif not for_us:
        counters["arp.not_for_us"] += 1

def arp_request(self, address: int) -> None:
    """Ask who has ``address`` (broadcast)."""
    self.counters["arp.tx_request"] += 1
    self._arp_send(arp.OP_REQUEST, ethernet.BROADCAST, address)

def arp_send(self, op: int, dst_mac: bytes, target_ip: int) -> None:
    """One ARP request or reply, queued for the NIC."""
    slot = new_frame(self, self.pool, 14 + arp.PACKET_LEN)
    if slot < 0:
        return
    view = self.pool.view(slot)
    view[:14] = ethernet.header(dst_mac, self.mac, ethernet.ETHERTYPE_ARP)
    target_mac = NO_MAC if op == arp.OP_REQUEST else dst_mac
    arp.emit(arp.ArpRepr(op, self.mac, self.ip, target_mac, target_ip), view[14:])
    self._tx.append(slot)
