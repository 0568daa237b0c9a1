"""ARP for IPv4 over Ethernet (RFC 826): the 28-byte request/reply body."""
from __future__ import annotations

import struct
from dataclasses import dataclass

from . import MalformedPacket

HTYPE_ETHERNET = 1
PTYPE_IPV4 = 0x0800
OP_REQUEST = 1
OP_REPLY = 2
PACKET_LEN = 28
# htype, ptype, hlen, plen, op, sender mac, sender ip, target mac, target ip
_LAYOUT = struct.Struct("!HHBBH6sI6sI")


@dataclass(slots=True)
class ArpRepr:
    op: int
    sender_mac: bytes
    sender_ip: int
    target_mac: bytes
    target_ip: int


def parse(view: memoryview) -> ArpRepr:
    if len(view) < PACKET_LEN:
        raise MalformedPacket("arp.truncated", f"{len(view)} bytes")
    htype, ptype, hlen, plen, op, smac, sip, tmac, tip = _LAYOUT.unpack_from(view)
    if htype != HTYPE_ETHERNET or ptype != PTYPE_IPV4 or hlen != 6 or plen != 4:
        raise MalformedPacket("arp.unsupported", f"htype {htype} ptype {ptype:#x}")
    if op not in (OP_REQUEST, OP_REPLY):
        raise MalformedPacket("arp.bad_op", str(op))
    return ArpRepr(op, smac, sip, tmac, tip)


def emit(repr: ArpRepr, view: memoryview) -> None:
    _LAYOUT.pack_into(view, 0, HTYPE_ETHERNET, PTYPE_IPV4, 6, 4, repr.op,
                      repr.sender_mac, repr.sender_ip, repr.target_mac, repr.target_ip)


def buffer_len(repr: ArpRepr) -> int:
    return PACKET_LEN
