"""TCP header: the representation shared by the wire layer and the connection.

``TcpRepr`` is what the connection consumes (``on_segment``) and produces
(``poll_transmit``). Sequence and acknowledgement numbers are plain ints modulo
2**32; ``window`` is the raw 16-bit field (the connection applies scaling).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

FIN = 0x01
SYN = 0x02
RST = 0x04
PSH = 0x08
ACK = 0x10
URG = 0x20
ECE = 0x40
CWR = 0x80

Buffer = Union[bytes, bytearray, memoryview]


@dataclass(slots=True)
class TcpRepr:
    src_port: int
    dst_port: int
    seq: int
    ack: int
    flags: int
    window: int                                   # raw field, before window scaling
    mss: Optional[int] = None                     # option kind 2 (SYN only)
    window_scale: Optional[int] = None            # option kind 3 (SYN only), shift count
    sack_permitted: bool = False                  # option kind 4 (SYN only)
    sack_blocks: tuple = ()                       # option kind 5: ((left, right), ...)
    timestamp: Optional[tuple] = None             # option kind 8: (TSval, TSecr)
    urgent: int = 0                               # urgent pointer (ignored by the stack)
    payload: Buffer = b""                         # one contiguous buffer

    @property
    def seg_len(self) -> int:
        """Sequence space the segment occupies: payload plus one for SYN and FIN."""
        return len(self.payload) + (1 if self.flags & SYN else 0) + (1 if self.flags & FIN else 0)


# ---- wire format: offsets, parse, emit (RFC 9293 3.1, RFC 7323, RFC 2018) ----------

import struct  # noqa: E402  (kept next to the wire code it serves)

from . import MalformedPacket  # noqa: E402
from ..checksum import region_kernel, region_sum  # noqa: E402

HEADER_LEN = 20                 # without options
MAX_HEADER_LEN = 60
CHECKSUM_AT = 16                # offset of the checksum field in the TCP header
OPT_EOL, OPT_NOP, OPT_MSS, OPT_WSCALE, OPT_SACK_PERM, OPT_SACK, OPT_TIMESTAMP = 0, 1, 2, 3, 4, 5, 8
MAX_WINDOW_SCALE = 14           # RFC 7323 2.3: larger shift counts are clamped
# src port, dst port, seq, ack, data offset (high nibble), flags, window, checksum, urgent
_LAYOUT = struct.Struct("!HHIIBBHHH")
_TS_ONLY = b"\x01\x01\x08\x0a"  # the common data-segment options: NOP NOP TS(10)
_TS_VALUES = struct.Struct("!II")
TS_ONLY_PREFIX = _TS_ONLY       # the frame builder packs it with the headers
_TS_OPTION = struct.Struct("!4sII")   # NOP NOP kind length, TSval, TSecr


def _parse_options(opts, seg: TcpRepr) -> None:
    """Fill option fields; unknown kinds are skipped by their length, known kinds with
    a wrong length are ignored (as Linux does); a length that overruns is malformed."""
    if len(opts) == 12 and opts[:4] == _TS_ONLY:          # fast path: timestamps only
        seg.timestamp = _TS_VALUES.unpack_from(opts, 4)
        return
    i, end = 0, len(opts)
    while i < end:
        kind = opts[i]
        if kind == OPT_EOL:
            return
        if kind == OPT_NOP:
            i += 1
            continue
        if i + 1 >= end or opts[i + 1] < 2 or i + opts[i + 1] > end:
            raise MalformedPacket("tcp.bad_option", f"kind {kind} at {i}")
        size = opts[i + 1]
        if kind == OPT_MSS and size == 4:
            seg.mss = (opts[i + 2] << 8) | opts[i + 3]
        elif kind == OPT_WSCALE and size == 3:
            seg.window_scale = min(opts[i + 2], MAX_WINDOW_SCALE)
        elif kind == OPT_SACK_PERM and size == 2:
            seg.sack_permitted = True
        elif kind == OPT_SACK and size >= 10 and (size - 2) % 8 == 0:
            edges = struct.unpack_from(f"!{(size - 2) // 4}I", opts, i + 2)
            seg.sack_blocks = tuple(zip(edges[0::2], edges[1::2]))
        elif kind == OPT_TIMESTAMP and size == 10:
            seg.timestamp = _TS_VALUES.unpack_from(opts, i + 2)
        i += size


def parse(view: memoryview, pseudo: int | None = None) -> TcpRepr:
    """Parse a TCP segment (``view`` = the IP payload). With ``pseudo`` (the folded
    pseudo-header sum) the checksum is verified first; None trusts it (NIC said ok,
    or checksums are off). The payload is a memoryview into ``view``: no copy."""
    return parse_at(view, 0, len(view), pseudo)


def parse_at(frame, start: int, end: int, pseudo: int | None = None) -> TcpRepr:
    """``parse`` of the segment at ``frame[start:end]`` (e.g. inside a whole Ethernet
    frame), without slicing the headers off first: the receive path's entry point.
    ``pseudo`` is the pseudo-header sum (folded or not, below 2**32)."""
    size = end - start
    if size < HEADER_LEN:
        raise MalformedPacket("tcp.truncated", f"{size} bytes")
    src, dst, seq, ack, offset, flags, window, _csum, urgent = _LAYOUT.unpack_from(frame, start)
    data_at = (offset >> 4) * 4
    if data_at < HEADER_LEN or data_at > size:
        raise MalformedPacket("tcp.bad_data_offset", f"{data_at} of {size} bytes")
    if pseudo is not None:
        try:                           # the kernel itself: one call less per segment
            total = region_kernel(frame, start, end, pseudo)
        except TypeError:              # not a plain byte buffer: the general wrapper
            total = region_sum(frame, start, end, pseudo)
        if total != 0xFFFF:
            raise MalformedPacket("tcp.bad_checksum")
    if type(frame) is not memoryview:
        frame = memoryview(frame)
    if data_at == HEADER_LEN + 12:                  # the common case: NOP NOP TS alone?
        prefix, tsval, tsecr = _TS_OPTION.unpack_from(frame, start + HEADER_LEN)
        if prefix == _TS_ONLY:
            return TcpRepr(src, dst, seq, ack, flags, window, None, None, False, (),
                           (tsval, tsecr), urgent, frame[start + data_at:end])
    seg = TcpRepr(src, dst, seq, ack, flags, window, None, None, False, (), None, urgent,
                  frame[start + data_at:end])
    if data_at > HEADER_LEN:
        _parse_options(frame[start + HEADER_LEN:start + data_at], seg)
    return seg


def _options(seg: TcpRepr) -> bytes:
    """Option bytes, 4-byte aligned, in the order Linux uses (MSS, SACK-perm+TS, WS)."""
    out = bytearray()
    if seg.mss is not None:
        out += struct.pack("!BBH", OPT_MSS, 4, seg.mss)
    if seg.timestamp is not None:
        head = bytes((OPT_SACK_PERM, 2)) if seg.sack_permitted else b"\x01\x01"
        out += head + struct.pack("!BBII", OPT_TIMESTAMP, 10, *seg.timestamp)
    elif seg.sack_permitted:
        out += bytes((OPT_NOP, OPT_NOP, OPT_SACK_PERM, 2))
    if seg.window_scale is not None:
        out += bytes((OPT_NOP, OPT_WSCALE, 3, seg.window_scale))
    room = (MAX_HEADER_LEN - HEADER_LEN - len(out) - 4) // 8
    blocks = seg.sack_blocks[:max(room, 0)]
    if blocks:
        out += bytes((OPT_NOP, OPT_NOP, OPT_SACK, 2 + 8 * len(blocks)))
        for left, right in blocks:
            out += struct.pack("!II", left & 0xFFFFFFFF, right & 0xFFFFFFFF)
    return bytes(out)


def options_bytes(seg: TcpRepr) -> bytes:
    """The option bytes ``emit`` writes (the frame builder sizes the header with it)."""
    if seg.timestamp is not None and seg.mss is None and seg.window_scale is None \
            and not seg.sack_permitted and not seg.sack_blocks:
        return _TS_ONLY + _TS_VALUES.pack(*seg.timestamp)          # the common case
    if seg.mss is None and seg.timestamp is None and seg.window_scale is None \
            and not seg.sack_permitted and not seg.sack_blocks:
        return b""
    return _options(seg)


def header_len(seg: TcpRepr) -> int:
    return HEADER_LEN + len(options_bytes(seg))


def emit(seg: TcpRepr, view: memoryview, options: bytes | None = None) -> int:
    """Write the header and options (checksum field 0; the payload is the caller's:
    the frame builder copies it, summing on the way). Returns the header length."""
    if options is None:
        options = options_bytes(seg)
    size = HEADER_LEN + len(options)
    _LAYOUT.pack_into(view, 0, seg.src_port, seg.dst_port, seg.seq & 0xFFFFFFFF,
                      seg.ack & 0xFFFFFFFF, (size // 4) << 4, seg.flags & 0xFF,
                      seg.window, 0, seg.urgent)
    view[HEADER_LEN:size] = options
    return size


def buffer_len(seg: TcpRepr) -> int:
    return header_len(seg) + len(seg.payload)
