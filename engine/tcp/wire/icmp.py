"""ICMP (RFC 792): the 8-byte header with the echo identifier and sequence number.
Other message types parse too (the Stack ignores them); the checksum covers the
whole message."""
from __future__ import annotations

import struct
from dataclasses import dataclass

from . import MalformedPacket
from ..checksum import checksum

HEADER_LEN = 8
ECHO_REPLY = 0
DEST_UNREACHABLE = 3
ECHO_REQUEST = 8
_LAYOUT = struct.Struct("!BBHHH")   # type, code, checksum, identifier, sequence


@dataclass(slots=True)
class IcmpRepr:
    type: int
    code: int
    ident: int = 0                 # echo only (rest-of-header for other types)
    seq_no: int = 0
    payload: bytes | memoryview = b""


def parse(view: memoryview, check_checksum: bool = True) -> IcmpRepr:
    if len(view) < HEADER_LEN:
        raise MalformedPacket("icmp.truncated", f"{len(view)} bytes")
    if check_checksum and checksum(view) != 0:
        raise MalformedPacket("icmp.bad_checksum")
    kind, code, _csum, ident, seq_no = _LAYOUT.unpack_from(view)
    return IcmpRepr(kind, code, ident, seq_no, view[HEADER_LEN:])


def emit(repr: IcmpRepr, view: memoryview) -> None:
    """Write header and payload, then the checksum over both."""
    end = HEADER_LEN + len(repr.payload)
    _LAYOUT.pack_into(view, 0, repr.type, repr.code, 0, repr.ident, repr.seq_no)
    view[HEADER_LEN:end] = repr.payload
    value = checksum(view[:end])
    view[2] = value >> 8
    view[3] = value & 0xFF


def buffer_len(repr: IcmpRepr) -> int:
    return HEADER_LEN + len(repr.payload)
