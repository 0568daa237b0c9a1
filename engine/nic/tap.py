"""The TAP NIC: toad's side of a TAP device whose Linux side lives in a namespace.

With offloads configured, the device is opened with IFF_TAP | IFF_NO_PI | IFF_VNET_HDR,
so every frame read or written is preceded by a virtio-net header (engine/nic/virtio.py);
with none (``nic.tap.offloads: []``) the header could only ever say "nothing to do", so
the device is opened without it: a read is one bare frame, a write one os.write of the
frame (no iovec, no header to pack or check per frame). TUNSETOFFLOAD tells
the kernel what toad accepts: TUN_F_CSUM (frames may arrive with a partial checksum,
NEEDS_CSUM) and TUN_F_TSO4 (TCP super-frames up to 64 KB may arrive, and the device
advertises TSO so Linux's TCP sends them). Toad's transmit path uses the same header:
a pool slot with gso_size becomes a GSO_TCPV4 super-frame the kernel segments, and one
with csum_start becomes NEEDS_CSUM. With offloads off the kernel hands over plain,
fully summed frames and toad sums its own in software.

The fd is non-blocking; ``receive_burst`` drains up to ``len(slots)`` frames per call
straight into frame-pool slots (engine/frames.py), which then belong to the caller.
Malformed headers, runt frames and frames that fill a whole slot (maybe cut short)
are counted and dropped.
"""
from __future__ import annotations

import errno
import fcntl
import io
import ipaddress
import os
import struct

import numpy as np

from engine.frames import FramePool
from engine.nic import virtio
from engine.nic.base import NicFeatures, slot_ids
from toad.config import TapConfig
from toad.errors import ToadError
from toad.netns import PeerNamespace, have_net_admin, peer_interface

# linux/if_tun.h
TUNSETIFF = 0x400454CA
TUNSETOFFLOAD = 0x400454D0
TUNSETVNETHDRSZ = 0x400454D8
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02

ETH_HLEN = 14
# Largest TCP payload of one super-frame: the IPv4 total length (16 bits) must hold it
# plus a 20-byte IP header and a TCP header with 40 bytes of options.
TSO_MAX = 65535 - 20 - 60
_unpack = virtio.HEADER.unpack_from


class TapError(ToadError):
    """The TAP device could not be set up; the message names the fix."""


def local_mac(address: str) -> bytes:
    """A locally administered unicast MAC derived from an IPv4 address (02:74:6f:..)."""
    ip = ipaddress.IPv4Interface(address).ip if "/" in address else ipaddress.IPv4Address(address)
    return bytes([0x02, 0x74, 0x6F]) + ip.packed[1:]


def offload_flags(offloads) -> int:
    """TUNSETOFFLOAD bits for the configured NIC features."""
    flags = 0
    if "csum" in offloads:
        flags |= TUN_F_CSUM
    if "tso" in offloads:
        if "csum" not in offloads:
            raise TapError("nic.tap.offloads: tso needs csum (the kernel cannot segment "
                           "without checksum offload); use [csum, tso], [csum] or []")
        flags |= TUN_F_TSO4
    return flags


def open_tap(device: str, offload: int, vnet: bool = True) -> tuple[int, str]:
    """Open /dev/net/tun as a TAP, with a 10-byte virtio-net header before every frame
    when ``vnet`` (needed for any offload); return (fd, name)."""
    if not have_net_admin():
        raise TapError("nic.kind tap needs root (or CAP_NET_ADMIN) and /dev/net/tun; "
                       "run as root or use nic.kind: loopback")
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        flags = IFF_TAP | IFF_NO_PI | (IFF_VNET_HDR if vnet else 0)
        request = struct.pack("16sH22x", device.encode(), flags)
        try:
            answer = fcntl.ioctl(fd, TUNSETIFF, request)
        except OSError as exc:
            reason = "in use by another process" if exc.errno == errno.EBUSY else exc.strerror
            raise TapError(f"nic.tap.device: cannot create TAP {device!r}: {reason}; "
                           "set another nic.tap.device") from None
        if vnet:
            fcntl.ioctl(fd, TUNSETVNETHDRSZ, struct.pack("i", virtio.HEADER_LEN))
            fcntl.ioctl(fd, TUNSETOFFLOAD, offload)
        elif offload:
            raise TapError("nic.tap.offloads need the virtio-net header (internal error)")
        name = answer[:16].rstrip(b"\0").decode()
        return fd, name
    except BaseException:
        os.close(fd)
        raise


class TapDevice:
    """The fd and its framing: virtio-net header in, virtio-net header out; or, with
    ``vnet`` False (a device opened without IFF_VNET_HDR), bare frames both ways.
    Frames are read straight into frame-pool slots (the header into a scratch buffer,
    one readv) and written from them (one writev of header and slot)."""

    def __init__(self, fd: int, rx_csum: bool, label: str = "TAP", vnet: bool = True):
        self.fd = fd
        self.vnet = vnet
        if not vnet:                  # instance attributes: no branch per batch
            self.read_batch = self.read_bare
            self.write_batch = self.write_bare
        # FileIO on the non-blocking fd (not owned: TapNic closes it) returns None
        # instead of raising when the device is empty, the end of every batch.
        self.reader = io.FileIO(fd, "rb", closefd=False) if fd >= 0 else None
        self.label = label
        self.rx_csum = rx_csum
        self.header = bytearray(virtio.HEADER_LEN)    # where readv puts each header
        self.spare = None             # (pool, slot) allocated but not filled yet
        self.counters = dict.fromkeys(
            ("rx_frames", "rx_bytes", "rx_gso_frames", "rx_partial_csum", "rx_csum_valid",
             "rx_dropped_bad_header", "rx_dropped_runt", "rx_dropped_oversize",
             "rx_no_buffer", "tx_frames", "tx_bytes", "tx_gso_frames", "tx_partial_csum",
             "tx_dropped_no_tso", "tx_errors"), 0)

    def take_slot(self, pool: FramePool) -> int:
        """The slot the next read goes into: the one kept from the last empty read,
        or a new one (-1, counted, when the pool is empty: reading stops)."""
        spare = self.spare
        if spare is not None:
            self.spare = None
            if spare[0] is pool:
                return spare[1]
            spare[0].release(spare[1])
        slot = pool.alloc()
        if slot < 0:
            self.counters["rx_no_buffer"] += 1
        return slot

    def read_batch(self, pool: FramePool, slots) -> int:
        """Up to len(slots) frames, each read with its header into a new slot."""
        readv, fd = os.readv, self.fd
        buffers = [self.header, None]
        got = 0
        while got < len(slots):
            slot = self.take_slot(pool)
            if slot < 0:
                break
            buffers[1] = pool.space(slot)
            try:
                n = readv(fd, buffers)
            except BlockingIOError:   # empty: the end of every batch
                self.spare = (pool, slot)
                break
            except OSError as exc:    # EBADFD: the device was deleted under us
                pool.release(slot)
                raise self.read_failed(exc) from None
            if self.accept(pool, slot, n):
                slots[got] = slot
                got += 1
            else:
                self.spare = (pool, slot)
        return got

    def read_failed(self, exc: OSError) -> TapError:
        return TapError(f"{self.label}: read failed: {exc.strerror} (was its namespace "
                        "deleted by another program?)")

    def read_bare(self, pool: FramePool, slots) -> int:
        """``read_batch`` without the virtio-net header: each read is one frame, its
        checksums unverified (the stack sums them). Counters are added once a batch."""
        readinto = self.reader.readinto
        lengths, csum_oks = pool.lengths, pool.csum_oks
        got = size = runts = 0
        while got < len(slots):
            slot = self.take_slot(pool)
            if slot < 0:
                break
            try:
                n = readinto(pool.space(slot))   # None when empty: no exception
            except OSError as exc:    # EBADFD: the device was deleted under us
                pool.release(slot)
                raise self.read_failed(exc) from None
            if n is None or n < ETH_HLEN:
                self.spare = (pool, slot)
                if n is None:
                    break
                runts += 1
                continue
            lengths[slot] = n
            csum_oks[slot] = False
            slots[got] = slot
            got += 1
            size += n
        count = self.counters
        if got:
            count["rx_frames"] += got
            count["rx_bytes"] += size
        if runts:
            count["rx_dropped_runt"] += runts
        return got

    def write_bare(self, pool: FramePool, ids: list, tx_csum: bool, tso: bool) -> None:
        """``write_batch`` without the virtio-net header: one write per whole frame.
        A partial checksum is completed here; a TSO super-frame cannot be sent."""
        write, fd = os.write, self.fd
        sent = size = 0
        for slot in ids:
            data = pool.view(slot)
            if pool.gso_sizes[slot] or pool.csum_starts[slot]:
                if pool.gso_sizes[slot]:
                    self.counters["tx_dropped_no_tso"] += 1
                    continue
                virtio.complete_checksum(data, pool.csum_starts[slot], pool.csum_offsets[slot])
            try:
                write(fd, data)
            except OSError:
                self.counters["tx_errors"] += 1   # e.g. link down in the namespace
                continue
            sent += 1
            size += len(data)
        pool.release_many(ids)
        if sent:
            count = self.counters
            count["tx_frames"] += sent
            count["tx_bytes"] += size

    def accept(self, pool: FramePool, slot: int, n: int) -> bool:
        """Check one read (header + frame into ``slot``): set its length and csum_ok,
        or count a drop. The header is unpacked inline (no object per frame): this
        runs per frame."""
        count = self.counters
        if n < virtio.HEADER_LEN + ETH_HLEN:
            count["rx_dropped_runt"] += 1
            return False
        frame_len = n - virtio.HEADER_LEN
        if frame_len >= pool.slot_bytes:     # filled the slot: maybe cut short
            count["rx_dropped_oversize"] += 1
            return False
        flags, gso_type, _hdr_len, gso_size, csum_start, csum_offset = _unpack(self.header)
        if (flags & ~virtio.KNOWN_FLAGS or gso_type & ~virtio.GSO_ECN not in virtio.KNOWN_GSO
                or (gso_type and not gso_size)
                or (flags & virtio.F_NEEDS_CSUM and csum_start + csum_offset + 2 > frame_len)):
            count["rx_dropped_bad_header"] += 1
            return False
        pool.lengths[slot] = frame_len
        count["rx_frames"] += 1
        count["rx_bytes"] += frame_len
        if gso_type:
            count["rx_gso_frames"] += 1      # a TCP super-frame: one segment up to 64 KB
        csum_ok = False
        if flags & virtio.F_NEEDS_CSUM:
            count["rx_partial_csum"] += 1
            # The kernel built it and left only the pseudo-header sum: the data is
            # intact. Trust it when the stack uses receive offload, else complete it.
            if not self.rx_csum:
                virtio.complete_checksum(pool.view(slot), csum_start, csum_offset)
            csum_ok = self.rx_csum
        elif flags & virtio.F_DATA_VALID:
            count["rx_csum_valid"] += 1
            csum_ok = self.rx_csum
        pool.csum_oks[slot] = csum_ok
        return True

    def write_batch(self, pool: FramePool, ids: list, tx_csum: bool, tso: bool) -> None:
        count = self.counters
        writev, fd = os.writev, self.fd
        gso_sizes, csum_starts = pool.gso_sizes, pool.csum_starts
        for slot in ids:
            if gso_sizes[slot] or csum_starts[slot]:
                header = self.tx_header(pool, slot, tx_csum, tso)
            else:                     # a fully built frame: the constant header
                header = virtio.NO_OFFLOAD_BYTES
            if header is None:
                count["tx_dropped_no_tso"] += 1
                continue
            frame = pool.view(slot)
            try:
                writev(fd, [header, frame])
            except OSError:
                count["tx_errors"] += 1   # e.g. link down in the namespace: the frame is lost
                continue
            count["tx_frames"] += 1
            count["tx_bytes"] += len(frame)
        pool.release_many(ids)

    def tx_header(self, pool: FramePool, slot: int, tx_csum: bool, tso: bool) -> bytes | None:
        """The virtio-net header for one frame, or None when it cannot be sent."""
        gso_size = pool.gso_sizes[slot]
        csum_start, csum_offset = pool.csum_starts[slot], pool.csum_offsets[slot]
        if gso_size:
            if not tso:
                return None
            self.counters["tx_gso_frames"] += 1
            base = slot * pool.slot_bytes
            tcp_header = (pool.bytes[base + csum_start + 12] >> 4) * 4
            return virtio.HEADER.pack(virtio.F_NEEDS_CSUM, virtio.GSO_TCPV4,
                                      csum_start + tcp_header, gso_size,
                                      csum_start, csum_offset)
        if csum_start:
            if not tx_csum:      # the stack asked for offload the NIC lacks: do it here
                virtio.complete_checksum(pool.view(slot), csum_start, csum_offset)
                return virtio.NO_OFFLOAD_BYTES
            self.counters["tx_partial_csum"] += 1
            return virtio.HEADER.pack(virtio.F_NEEDS_CSUM, virtio.GSO_NONE, 0, 0,
                                      csum_start, csum_offset)
        return virtio.NO_OFFLOAD_BYTES

    def close(self) -> None:
        """Give back the slot kept for the next read."""
        if self.spare is not None:
            self.spare[0].release(self.spare[1])
            self.spare = None


class TapNic:
    """The Nic for TAP topologies: ``TapNic(config.nic.tap)``; close() removes all."""

    def __init__(self, tap: TapConfig):
        offloads = tuple(tap.offloads)
        flags = offload_flags(offloads)
        peer_cidr = peer_interface(tap.address, tap.peer_address)
        self.config = tap
        self.netns = PeerNamespace(tap.netns)
        self.fd = -1
        self.netns.open()
        try:
            self.fd, self.device = open_tap(tap.device, flags, vnet=bool(offloads))
            self.netns.adopt_link(self.device, peer_cidr, tap.mtu)
        except BaseException:
            self.close()
            raise
        self.features = NicFeatures(
            mtu=tap.mtu, mac=local_mac(tap.address), tx_csum="csum" in offloads,
            rx_csum="csum" in offloads, tso="tso" in offloads,
            tso_max=TSO_MAX if "tso" in offloads else 0)
        self.device_io = TapDevice(self.fd, self.features.rx_csum,
                                   f"TAP device {self.device} (namespace {tap.netns})",
                                   vnet=bool(offloads))
        self.counters = self.device_io.counters

    def send_burst(self, pool: FramePool, slots, n: int) -> None:
        if n > 0:
            self.device_io.write_batch(pool, slot_ids(slots, n), self.features.tx_csum,
                                       self.features.tso)

    def receive_burst(self, now: float, pool: FramePool, slots: np.ndarray) -> int:
        return self.device_io.read_batch(pool, slots)

    def fileno(self) -> int | None:
        return self.fd if self.fd >= 0 else None

    def next_deadline(self) -> float | None:
        return None

    def due(self, now: float) -> bool:
        return False              # (not known without reading the frames)

    def close(self) -> None:
        """Close the fd (the kernel deletes the device), then the namespace if ours."""
        if getattr(self, "device_io", None) is not None:
            self.device_io.close()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        self.netns.close()

    def __enter__(self) -> "TapNic":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
