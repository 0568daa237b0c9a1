"""Ethernet II header: destination MAC, source MAC, EtherType (14 bytes, no VLAN)."""
from __future__ import annotations

from dataclasses import dataclass

from . import MalformedPacket

DST = slice(0, 6)
SRC = slice(6, 12)
ETHERTYPE = slice(12, 14)
HEADER_LEN = 14

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_ARP = 0x0806
BROADCAST = b"\xff" * 6


@dataclass(slots=True)
class EthernetRepr:
    dst: bytes                 # 6 bytes
    src: bytes                 # 6 bytes
    ethertype: int
    payload: memoryview = memoryview(b"")   # set by parse; emit ignores it


def parse(view: memoryview) -> EthernetRepr:
    if len(view) < HEADER_LEN:
        raise MalformedPacket("eth.truncated", f"{len(view)} bytes")
    return EthernetRepr(bytes(view[DST]), bytes(view[SRC]),
                        (view[12] << 8) | view[13], view[HEADER_LEN:])


def header(dst: bytes, src: bytes, ethertype: int) -> bytes:
    """The 14 header bytes, for callers that prebuild a per-neighbour prefix."""
    return bytes(dst) + bytes(src) + ethertype.to_bytes(2, "big")


def emit(repr: EthernetRepr, view: memoryview) -> None:
    if len(repr.dst) != 6 or len(repr.src) != 6:
        raise ValueError("Ethernet addresses are 6 bytes")
    view[:HEADER_LEN] = header(repr.dst, repr.src, repr.ethertype)


def buffer_len(repr: EthernetRepr) -> int:
    return HEADER_LEN + len(repr.payload)


def mac_text(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)
