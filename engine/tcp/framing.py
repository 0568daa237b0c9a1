"""Building outgoing frames: the only place Ethernet/IPv4/TCP bytes are laid out.

Each frame is written straight into a slot of the stack's frame pool (engine/frames.py):
the headers packed in place, the payload copied once after them; a burst's slots are
allocated by one compiled call. The caller gets slot ids (the NIC's ``send_burst``
takes them). How the TCP checksum is made depends on TcpConfig.checksum:

- software:   copy the payload, then one RFC 1071 pass over the TCP segment (for a
              whole burst of slots in one numba call: checksum.burst_kernel);
- integrated: copy the payload into the slot and sum it in the same pass, header
              words included, in one numba call (checksum.copy_sum);
- offloaded:  copy the payload and pre-fill the checksum field with the pseudo-header
              sum, as Linux's CHECKSUM_PARTIAL; the NIC completes it (the slot's
              csum_start/csum_offset). Falls back to software when the NIC cannot;
- off:        no checksum at all (field 0; experiments between toad stacks only).

A TSO super-frame (payload > gso_size) always goes out partial: a NIC that segments
also sums each segment. Frames looped inside the stack also stay partial: they never
leave memory, like Linux's lo; they go into the loop pool, whose slots hold the
in-stack loop's 64 KB frames whatever the NIC's MTU. A segment that finds no free
slot is dropped (counted ``tx.no_frame_slot``; TCP sends it again, as after a loss).
"""
from __future__ import annotations

import struct
from collections import Counter

import numpy as np

from engine.frames import ETH_HLEN, MAX_IP_PACKET, FramePool, alloc_burst, frame_bytes
from engine.nic.base import NicFeatures

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
LOOP_FRAME = ETH_HLEN + MAX_IP_PACKET           # the in-stack loop's largest frame
# the IPv4 header words that never change: version/IHL, DF, TTL/protocol
_IP_CONSTANT = 0x4500 + ipv4.FLAG_DF + ((ipv4.DEFAULT_TTL << 8) | ipv4.PROTO_TCP)


def ip_header_checksum(total: int, ident: int, src: int, dst: int) -> int:
    """IPv4 header checksum for the fixed header the stack sends (DF, TTL 64, TCP)."""
    words = (_IP_CONSTANT + total + ident
             + (src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF))
    words = (words & 0xFFFF) + (words >> 16)
    return ~((words & 0xFFFF) + (words >> 16)) & 0xFFFF


class FrameBuilder:
    """Lays out TCP frames for one stack (its checksum mode and NIC features) in
    ``pool`` (default: one sized for the NIC); local frames in ``loop_pool``."""

    def __init__(self, mode: str, nic: NicFeatures, pool: FramePool | None = None,
                 counters: Counter | None = None):
        self.mode = mode
        self.nic = nic
        self.ident = 0
        self.pool = pool if pool is not None else FramePool.for_frames(frame_bytes(nic))
        self._loop_pool = self.pool if self.pool.slot_bytes >= LOOP_FRAME else None
        self.counters = counters if counters is not None else Counter()
        self._ids = np.empty(64, np.int32)        # a burst's slots, for compiled calls

    @property
    def loop_pool(self) -> FramePool:
        """The pool of frames looped inside the stack (made when first needed)."""
        if self._loop_pool is None:
            self._loop_pool = FramePool.for_frames(LOOP_FRAME)
        return self._loop_pool

    def next_ident(self) -> int:
        self.ident = (self.ident + 1) & 0xFFFF
        return self.ident

    def tcp_frame(self, eth_prefix: bytes, src: int, dst: int, seg: tcp.TcpRepr,
                  gso_size: int = 0, local: bool = False, mode: str | None = None) -> int:
        """One frame for ``seg`` from ``src`` to ``dst``; ``eth_prefix`` is the 14-byte
        Ethernet header. ``gso_size`` > 0 marks a TSO super-frame when the payload is
        longer than it; ``local`` frames are looped inside the stack (``loop_pool``);
        ``mode`` is the connection's checksum mode (None: the stack's). Returns its
        slot, or -1 when there was none."""
        out: list = []
        self.tcp_frames(eth_prefix, src, dst, (seg,), gso_size, local, mode, out)
        return out[0] if out else -1

    def alloc(self, pool: FramePool, count: int) -> int:
        """``count`` slots of ``pool`` into ``self._ids`` (fewer when it runs dry)."""
        ids = self._ids
        if count > ids.size:
            ids = self._ids = np.empty(1 << (count - 1).bit_length(), np.int32)
        got = alloc_burst(pool.free, pool.state, pool.held, ids, count)
        if got < count:
            self.counters["tx.no_frame_slot"] += count - got
        return got

    def tcp_frames(self, eth_prefix: bytes, src: int, dst: int, segments, gso_size: int,
                   local: bool, mode: str | None, out: list) -> None:
        """``tcp_frame`` of each segment of one flow (a burst), their slots appended to
        ``out`` in order: what is common to the burst (mode, addresses' sums, the slot
        allocation) is worked out once. Segments past the pool's last free slot are
        dropped (counted)."""
        pool = self.loop_pool if local else self.pool
        got = self.alloc(pool, len(segments))
        if not got:
            return
        ids = self._ids[:got].tolist()
        mode = mode or self.mode
        partial_mode = mode != "off" and ((mode == "offloaded" and self.nic.tx_csum) or local)
        software = mode != "off" and mode != "integrated"
        # the addresses' words, shared by the pseudo-header and the IPv4 header sums
        addresses = (src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF)
        pseudo_base = addresses + ipv4.PROTO_TCP
        ip_base = _IP_CONSTANT + addresses
        ident = self.ident
        # Software checksums of a burst without super-frames: summed by one numba call
        # over the burst's slots after the loop.
        batched = software and not partial_mode and not gso_size
        data, slot_bytes = pool.bytes, pool.slot_bytes
        lengths, starts, offsets, gsos = (pool.lengths, pool.csum_starts, pool.csum_offsets,
                                          pool.gso_sizes)
        summed = 0
        for slot, seg in zip(ids, segments):
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
            size = ETH_LEN + total
            if size > slot_bytes:          # the pool cannot hold it (a caller's mistake)
                self.counters["tx.frame_too_big"] += 1
                lengths[slot] = 0
                pool.release(slot)
                continue
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
            base = slot * slot_bytes
            if options is None:
                _HEADERS_TS.pack_into(
                    data, base, eth_prefix, 0x45, 0, total, ident, ipv4.FLAG_DF,
                    ipv4.DEFAULT_TTL, ipv4.PROTO_TCP, ip_check, src, dst, seg.src_port,
                    seg.dst_port, seg.seq, seg.ack, header_len << 2, seg.flags, seg.window,
                    field, seg.urgent, tcp.TS_ONLY_PREFIX, ts[0], ts[1])
            else:
                _HEADERS.pack_into(
                    data, base, eth_prefix, 0x45, 0, total, ident, ipv4.FLAG_DF,
                    ipv4.DEFAULT_TTL, ipv4.PROTO_TCP, ip_check, src, dst, seg.src_port,
                    seg.dst_port, seg.seq, seg.ack, header_len << 2, seg.flags, seg.window,
                    field, seg.urgent)
                data[base + DATA_AT:base + DATA_AT + len(options)] = options
            data_at = base + TCP_AT + header_len
            lengths[slot] = size
            if partial:                   # CHECKSUM_PARTIAL: the NIC (or nobody) sums
                data[data_at:base + size] = payload
                starts[slot], offsets[slot], gsos[slot] = TCP_AT, tcp.CHECKSUM_AT, gso
                out.append(slot)
                continue
            starts[slot] = offsets[slot] = gsos[slot] = 0
            if mode == "integrated":      # one pass copies and sums, in numba
                self._integrated(pool, base, data_at - base, payload, pseudo)
            else:
                data[data_at:base + size] = payload
                if batched:               # summed after the loop, with the burst
                    summed += 1
                elif software:            # one pass over the whole segment, in numba
                    value = ~region_frame(data, base + TCP_AT, base + size, pseudo) & 0xFFFF
                    data[base + CHECKSUM_AT] = value >> 8
                    data[base + CHECKSUM_AT + 1] = value & 0xFF
            out.append(slot)
        self.ident = ident
        if summed and burst_frames(pool.data, slot_bytes, pool.length, self._ids,
                                   got) != summed:
            raise AssertionError("frame builder: a burst's frames do not match their slots")

    @staticmethod
    def _integrated(pool: FramePool, base: int, data_at: int, payload, pseudo: int) -> None:
        """Integrated copy+checksum: the payload is copied into the slot by the same
        loop that sums it (and the header words)."""
        frame = pool.data
        try:                      # one numba call, the payload buffer as it is
            value = ~int(frame_copy_sum_kernel(frame, base + TCP_AT, data_at - TCP_AT,
                                               payload, pseudo)) & 0xFFFF
        except TypeError:         # a payload of another type: the general wrapper
            value = finish(pseudo + copy_sum(frame[base + TCP_AT:], payload,
                                             data_at - TCP_AT))
        frame[base + CHECKSUM_AT] = value >> 8
        frame[base + CHECKSUM_AT + 1] = value & 0xFF


def ethernet_prefix(dst_mac: bytes, src_mac: bytes) -> bytes:
    return bytes(dst_mac) + bytes(src_mac) + ETHERTYPE_IPV4.to_bytes(2, "big")
