"""IPv4 header (RFC 791). Options are accepted and skipped; fragments parse (so the
Stack can count them) but carry ``is_fragment``. Addresses are host-order ints."""
from __future__ import annotations

import struct
from dataclasses import dataclass

from toad.addresses import aton, ntoa  # noqa: F401  (re-exported: the stack uses ipv4.aton)

from . import MalformedPacket

HEADER_LEN = 20              # without options
PROTO_ICMP = 1
PROTO_TCP = 6
DEFAULT_TTL = 64
FLAG_DF = 0x4000
FLAG_MF = 0x2000
OFFSET_MASK = 0x1FFF
CHECKSUM_AT = 10
# version/ihl, dscp/ecn, total length, ident, flags/fragment offset, ttl, protocol,
# header checksum, source, destination
_LAYOUT = struct.Struct("!BBHHHBBHII")


@dataclass(slots=True)
class Ipv4Repr:
    src: int
    dst: int
    protocol: int
    payload_len: int
    ttl: int = DEFAULT_TTL
    ident: int = 0
    dont_fragment: bool = True
    is_fragment: bool = False                 # parse only: MF set or offset != 0
    header_len: int = HEADER_LEN              # parse only: with options
    payload: memoryview = memoryview(b"")     # parse only


_WORDS_20 = struct.Struct("!10H")


def header_sum(view, length: int) -> int:
    """Folded one's-complement sum of the first ``length`` bytes (a header: small)."""
    words = _WORDS_20 if length == HEADER_LEN else struct.Struct(f"!{length // 2}H")
    total = sum(words.unpack_from(view))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def parse(view: memoryview, check_checksum: bool = True) -> Ipv4Repr:
    if len(view) < HEADER_LEN:
        raise MalformedPacket("ip.truncated", f"{len(view)} bytes")
    vihl, _tos, total, ident, frag, ttl, proto, _csum, src, dst = _LAYOUT.unpack_from(view)
    ihl = (vihl & 0x0F) * 4
    if vihl >> 4 != 4:
        raise MalformedPacket("ip.bad_version", str(vihl >> 4))
    if ihl < HEADER_LEN or total < ihl:
        raise MalformedPacket("ip.bad_header_len", f"ihl {ihl} total {total}")
    if total > len(view):
        raise MalformedPacket("ip.truncated", f"total length {total} > {len(view)} bytes")
    if check_checksum and header_sum(view, ihl) != 0xFFFF:
        raise MalformedPacket("ip.bad_checksum")
    return Ipv4Repr(src, dst, proto, total - ihl, ttl, ident, bool(frag & FLAG_DF),
                    bool(frag & (FLAG_MF | OFFSET_MASK)), ihl, view[ihl:total])


def emit(repr: Ipv4Repr, view: memoryview) -> None:
    """Write a 20-byte header (no options) with its checksum."""
    _LAYOUT.pack_into(view, 0, 0x45, 0, HEADER_LEN + repr.payload_len, repr.ident,
                      FLAG_DF if repr.dont_fragment else 0, repr.ttl, repr.protocol, 0,
                      repr.src, repr.dst)
    value = ~header_sum(view, HEADER_LEN) & 0xFFFF
    view[CHECKSUM_AT] = value >> 8
    view[CHECKSUM_AT + 1] = value & 0xFF


def buffer_len(repr: Ipv4Repr) -> int:
    return HEADER_LEN + repr.payload_len


def in_network(address: int, network: int, prefix: int) -> bool:
    mask = (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF
    return (address & mask) == (network & mask)


def is_loopback(address: int) -> bool:
    """127.0.0.0/8."""
    return address >> 24 == 127
