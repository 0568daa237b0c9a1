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
