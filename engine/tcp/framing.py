"""Building outgoing frames: the only place Ethernet/IPv4/TCP bytes are laid out.

One frame = one bytearray allocation (the packed headers and the payload joined), and
one payload copy; in software mode a burst without super-frames is one allocation
(its frames end to end, each handed out as a memoryview of its bytes). How the TCP
checksum is made depends on TcpConfig.checksum:

- software:   copy the payload, then one RFC 1071 pass over the TCP segment (for a
              whole burst in one numba call: checksum.burst_kernel);
- integrated: copy the payload into uninitialised frame memory and sum it in the same
              pass, header words included, in one numba call (checksum.copy_sum);
- offloaded:  copy the payload and pre-fill the checksum field with the pseudo-header
              sum, as Linux's CHECKSUM_PARTIAL; the NIC completes it (TxFrame.csum_start/
              csum_offset). Falls back to software when the NIC cannot;
- off:        no checksum at all (field 0; experiments between toad stacks only).

A TSO super-frame (payload > gso_size) always goes out partial: a NIC that segments
also sums each segment. Frames looped inside the stack also stay partial: they never
leave memory, like Linux's lo.
"""
from __future__ import annotations

import struct

import numpy as np

from engine.nic.base import NicFeatures, TxFrame

from .checksum import burst_frames, copy_sum, finish, frame_copy_sum_kernel, region_frame
from .wire import ipv4, tcp
from .wire.ethernet import ETHERTYPE_IPV4

ETH_LEN = 14
TCP_AT = ETH_LEN + ipv4.HEADER_LEN            # TCP header offset (no IP options sent)
DATA_AT = TCP_AT + tcp.HEADER_LEN             # payload offset when there are no options
CHECKSUM_AT = TCP_AT + tcp.CHECKSUM_AT
# Ethernet prefix | IPv4 header (no options) | TCP header without options: one pack.
_HEADERS = struct.Struct("!14sBBHHHBBHII" "HHIIBBHHH")
# the same with the options of almost every data segment and ACK: NOP NOP TS(TSval, TSecr)
_HEADERS_TS = struct.Struct("!14sBBHHHBBHII" "HHIIBBHHH" "4sII")
# the IPv4 header words that never change: version/IHL, DF, TTL/protocol
_JOIN = bytearray().join                        # bytearray result, one allocation
_IP_CONSTANT = 0x4500 + ipv4.FLAG_DF + ((ipv4.DEFAULT_TTL << 8) | ipv4.PROTO_TCP)


def ip_header_checksum(total: int, ident: int, src: int, dst: int) -> int:
    """IPv4 header checksum for the fixed header the stack sends (DF, TTL 64, TCP)."""
    words = (_IP_CONSTANT + total + ident
             + (src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF))
    words = (words & 0xFFFF) + (words >> 16)
    return ~((words & 0xFFFF) + (words >> 16)) & 0xFFFF


class FrameBuilder:
    """Lays out TCP frames for one stack (its checksum mode and NIC features)."""

    def __init__(self, mode: str, nic: NicFeatures):
        self.mode = mode
        self.nic = nic
        self.ident = 0

    def next_ident(self) -> int:
        self.ident = (self.ident + 1) & 0xFFFF
        return self.ident

    def tcp_frame(self, eth_prefix: bytes, src: int, dst: int, seg: tcp.TcpRepr,
                  gso_size: int = 0, local: bool = False, mode: str | None = None) -> TxFrame:
        """One frame for ``seg`` from ``src`` to ``dst``; ``eth_prefix`` is the 14-byte
        Ethernet header. ``gso_size`` > 0 marks a TSO super-frame when the payload is
        longer than it; ``local`` frames are looped inside the stack; ``mode`` is the
        connection's checksum mode (None: the stack's)."""
        out: list = []
        self.tcp_frames(eth_prefix, src, dst, (seg,), gso_size, local, mode, out)
        return out[0]

    def tcp_frames(self, eth_prefix: bytes, src: int, dst: int, segments, gso_size: int,
                   local: bool, mode: str | None, out: list) -> None:
        """``tcp_frame`` of each segment of one flow (a burst), appended to ``out``:
        what is common to the burst (mode, addresses' sums) is worked out once."""
        mode = mode or self.mode
        partial_mode = mode != "off" and ((mode == "offloaded" and self.nic.tx_csum) or local)
        software = mode != "off" and mode != "integrated"
        # the addresses' words, shared by the pseudo-header and the IPv4 header sums
        addresses = (src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF)
        pseudo_base = addresses + ipv4.PROTO_TCP
        ip_base = _IP_CONSTANT + addresses
        ident = self.ident
        # Software checksums of a burst without super-frames: the frames are laid end
        # to end in one buffer and summed by one numba call after the loop (frames
        # of a burst are built in order, so ``out`` keeps the segments' order).
        batched = software and not partial_mode and not gso_size
        parts: list = []
        lengths: list = []
        for seg in segments:
            ts = seg.timestamp
            if (ts is not None and seg.mss is None and seg.window_scale is None
                    and not seg.sack_permitted and not seg.sack_blocks):
                options = None    # the common case, NOP NOP TS: packed with the headers
                header_len = tcp.HEADER_LEN + 12
            else:
                options = tcp.options_bytes(seg)
                header_len = tcp.HEADER_LEN + len(options)
            payload = seg.payload
            tcp_len = header_len + len(payload)
            total = ipv4.HEADER_LEN + tcp_len
            ident = (ident + 1) & 0xFFFF
            gso = gso_size if gso_size and len(payload) > gso_size else 0
            partial = partial_mode or (gso and mode != "off")
            # the pseudo-header sum, unfolded (folded here or by the checksum kernel)
            pseudo = pseudo_base + tcp_len
            if partial:                # fold: the sum is below 2**19, two steps suffice
                field = (pseudo & 0xFFFF) + (pseudo >> 16)
                field = (field & 0xFFFF) + (field >> 16)
            else:
                field = 0
            # the IPv4 header checksum, inline (the stack's fixed header: DF, TTL 64)
            words = ip_base + total + ident
            words = (words & 0xFFFF) + (words >> 16)
            ip_check = ~((words & 0xFFFF) + (words >> 16)) & 0xFFFF
            if options is None:
                headers = _HEADERS_TS.pack(
                    eth_prefix, 0x45, 0, total, ident, ipv4.FLAG_DF, ipv4.DEFAULT_TTL,
                    ipv4.PROTO_TCP, ip_check, src, dst, seg.src_port, seg.dst_port, seg.seq,
                    seg.ack, header_len << 2, seg.flags, seg.window, field, seg.urgent,
                    tcp.TS_ONLY_PREFIX, ts[0], ts[1])
            else:
                headers = _HEADERS.pack(
                    eth_prefix, 0x45, 0, total, ident, ipv4.FLAG_DF, ipv4.DEFAULT_TTL,
                    ipv4.PROTO_TCP, ip_check, src, dst, seg.src_port, seg.dst_port, seg.seq,
                    seg.ack, header_len << 2, seg.flags, seg.window, field,
                    seg.urgent) + options
            if batched:                   # summed after the loop, with the burst
                parts.append(headers)
                parts.append(payload)
                lengths.append(ETH_LEN + total)
            elif partial:                 # CHECKSUM_PARTIAL: the NIC (or nobody) sums
                # One allocation of the whole frame, no zero fill (unlike bytearray(n)):
                # join sizes the result first, then copies headers and payload once.
                out.append(TxFrame(_JOIN((headers, payload)), TCP_AT, tcp.CHECKSUM_AT, gso))
            elif software:                # one pass over the whole segment, in numba
                data = _JOIN((headers, payload))
                value = ~region_frame(data, TCP_AT, len(data), pseudo) & 0xFFFF
                data[CHECKSUM_AT] = value >> 8
                data[CHECKSUM_AT + 1] = value & 0xFF
                out.append(TxFrame(data))
            else:
                out.append(self._unsummed(mode, headers, payload, pseudo))
        self.ident = ident
        if lengths:
            self._summed_burst(parts, lengths, out)

    @staticmethod
    def _summed_burst(parts: list, lengths: list, out: list) -> None:
        """One buffer for the burst (one allocation, one copy of each piece), every
        TCP checksum filled by one numba call; each frame a view of its bytes."""
        data = _JOIN(parts)
        if burst_frames(data, len(lengths)) != len(data):
            raise AssertionError("frame builder: a burst's frames do not tile its buffer")
        view = memoryview(data)
        at = 0
        for n in lengths:
            out.append(TxFrame(view[at:at + n]))
            at += n

    @classmethod
    def _unsummed(cls, mode: str, headers: bytes, payload, pseudo: int) -> TxFrame:
        """The modes other than software and offloaded: integrated, or off (no sum)."""
        if mode == "integrated":
            return cls._integrated(headers, payload, pseudo)
        return TxFrame(_JOIN((headers, payload)))

    @staticmethod
    def _integrated(headers: bytes, payload, pseudo: int) -> TxFrame:
        """Integrated copy+checksum: the payload is copied into uninitialised frame
        memory by the same loop that sums it (and the header words)."""
        data_at = len(headers)
        frame = np.empty(data_at + len(payload), dtype=np.uint8)
        view = memoryview(frame)
        view[:data_at] = headers
        try:                      # one numba call, the payload buffer as it is
            value = ~int(frame_copy_sum_kernel(frame, TCP_AT, data_at - TCP_AT, payload,
                                               pseudo)) & 0xFFFF
        except TypeError:         # a payload of another type: the general wrapper
            value = finish(pseudo + copy_sum(frame[TCP_AT:], payload, data_at - TCP_AT))
        frame[CHECKSUM_AT] = value >> 8
        frame[CHECKSUM_AT + 1] = value & 0xFF
        return TxFrame(view)


def ethernet_prefix(dst_mac: bytes, src_mac: bytes) -> bytes:
    return bytes(dst_mac) + bytes(src_mac) + ETHERTYPE_IPV4.to_bytes(2, "big")
