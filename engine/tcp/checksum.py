"""The Internet checksum (RFC 1071) in numba: plain sum, pseudo-header sum, and the
integrated copy+checksum pass (one loop that copies payload into the frame and sums
it, as the checksum/copy-cost papers propose).

The numba kernels sum the buffer as native (little-endian) 64-bit words: RFC 1071's
sum is byte-order independent, so the folded result only needs one byte swap at the
end. Unaligned views are fine on x86 (and numba does not check alignment). The
kernels have explicit signatures (writable and read-only buffers) and are cached
(toad/compiled.py), so a machine pays the JIT once.

Sums returned here are 16-bit folded and NOT complemented; :func:`finish` turns a sum
into the value written in a header.
"""
from __future__ import annotations

import numpy as np
from numba import types

from toad.compiled import entry, helper, kernel, loaded

# Explicit signatures: the kernels load from the on-disk cache at import, so the
# first checksum of a process does not pay numba's type inference (about a second).
_WRITABLE = types.Array(types.uint8, 1, "C")
_READONLY = types.Array(types.uint8, 1, "C", readonly=True)
_LOW32 = np.uint64(0xFFFFFFFF)
_SHIFT32 = np.uint64(32)


@helper(nogil=True)
def _fold_swap(acc, tail_sum):
    """Fold a 64-bit little-endian-domain sum to 16 bits and swap to network order."""
    acc = (acc & _LOW32) + (acc >> _SHIFT32) + tail_sum
    acc = (acc & _LOW32) + (acc >> _SHIFT32)
    acc = (acc & np.uint64(0xFFFF)) + (acc >> np.uint64(16))
    acc = (acc & np.uint64(0xFFFF)) + (acc >> np.uint64(16))
    acc = (acc & np.uint64(0xFFFF)) + (acc >> np.uint64(16))
    return ((acc & np.uint64(0xFF)) << np.uint64(8)) | (acc >> np.uint64(8))


@helper(nogil=True)
def _tail(buf, start):
    """Little-endian-domain sum of the bytes from ``start`` (fewer than 8 of them)."""
    n = buf.size
    tail = np.uint64(0)
    i = start
    while i + 1 < n:
        tail += np.uint64(buf[i]) | (np.uint64(buf[i + 1]) << np.uint64(8))
        i += 2
    if i < n:
        tail += np.uint64(buf[i])       # a last odd byte is the high byte of its word
    return tail


@kernel(*[types.uint64(_WRITABLE), types.uint64(_READONLY)], nogil=True)
def sum_kernel(buf):
    """One's-complement sum of a uint8 array, network order, folded, not complemented."""
    n8 = buf.size // 8
    words = buf[:n8 * 8].view(np.uint64)
    acc = np.uint64(0)
    for i in range(n8):
        x = words[i]
        acc += (x & _LOW32) + (x >> _SHIFT32)
    return _fold_swap(acc, _tail(buf, n8 * 8))


@kernel(*[types.uint64(_WRITABLE, types.int64, _WRITABLE),
             types.uint64(_WRITABLE, types.int64, _READONLY)], nogil=True)
def copy_sum_kernel(dst, head, src):
    """Sum ``dst[:head]`` (headers already written; ``head`` even), then copy ``src``
    into ``dst[head:]`` summing it in the same pass; returns the sum of both."""
    n = src.size
    n8 = n // 8
    words = src[:n8 * 8].view(np.uint64)
    out = dst[head:head + n8 * 8].view(np.uint64)
    acc = np.uint64(0)
    for i in range(n8):
        x = words[i]
        out[i] = x
        acc += (x & _LOW32) + (x >> _SHIFT32)
    for i in range(n8 * 8, n):
        dst[head + i] = src[i]
    tail = _tail(src, n8 * 8)
    for i in range(0, head - 1, 2):
        tail += np.uint64(dst[i]) | (np.uint64(dst[i + 1]) << np.uint64(8))
    return _fold_swap(acc, tail)


# A frame as the NICs hand it over: a byte memoryview (writable or not) or a bytearray.
# Taking them as they are skips np.frombuffer per call (about half the cost of a
# checksum of a 1500-byte frame is the Python-side wrapping, not the sum).
_REGION_SIGNATURES = [types.uint64(kind, types.int64, types.int64, types.int64)
                      for kind in (types.MemoryView(types.uint8, 1, "C"),
                                   types.MemoryView(types.uint8, 1, "C", readonly=True),
                                   types.ByteArray(types.uint8, 1, "C"))]


@kernel(*_REGION_SIGNATURES, nogil=True)
def region_kernel(buf, start, end, initial):
    """Folded sum of ``buf[start:end]`` plus ``initial`` (network order, any size
    below 2**48), not complemented."""
    data = np.frombuffer(buf, np.uint8)[start:end]
    n8 = data.size // 8
    words = data[:n8 * 8].view(np.uint64)
    acc = np.uint64(0)
    for i in range(n8):
        x = words[i]
        acc += (x & _LOW32) + (x >> _SHIFT32)
    acc = _fold_swap(acc, _tail(data, n8 * 8)) + np.uint64(initial)
    acc = (acc & np.uint64(0xFFFF)) + (acc >> np.uint64(16))
    acc = (acc & np.uint64(0xFFFF)) + (acc >> np.uint64(16))
    return (acc & np.uint64(0xFFFF)) + (acc >> np.uint64(16))


@kernel(*[types.uint64(_WRITABLE, types.int64, types.int64, kind, types.int64)
             for kind in (types.MemoryView(types.uint8, 1, "C"),
                          types.MemoryView(types.uint8, 1, "C", readonly=True),
                          types.ByteArray(types.uint8, 1, "C"),
                          types.Bytes(types.uint8, 1, "C"))], nogil=True)
def frame_copy_sum_kernel(frame, start, head, src, initial):
    """``copy_sum_kernel`` on ``frame[start:]`` taking the payload as the buffer it is
    (no np.frombuffer per call), plus ``initial``; returns the folded sum."""
    acc = copy_sum_kernel(frame[start:], head, np.frombuffer(src, np.uint8)) + np.uint64(initial)
    acc = (acc & np.uint64(0xFFFF)) + (acc >> np.uint64(16))
    acc = (acc & np.uint64(0xFFFF)) + (acc >> np.uint64(16))
    return (acc & np.uint64(0xFFFF)) + (acc >> np.uint64(16))


# region_kernel on a frame of the per-frame paths, called directly (compiled.entry:
# about half of a 1500-byte frame's checksum call is the dispatcher's type
# resolution). Callers pass only contiguous byte buffers (memoryview, bytearray or
# bytes: what struct.unpack_from accepts); a non-buffer raises TypeError.
region_frame = entry(region_kernel, 0)


@kernel("int64(uint8[::1], int64, int32[::1], int32[::1], int64)", nogil=True)
def burst_kernel(data, slot_bytes, length, slots, count):
    """Fill the TCP checksums of the frames in frame-pool slots ``slots[:count]``
    (engine/frames.py: slot i at i * slot_bytes, ``length[i]`` bytes), each Ethernet +
    IPv4 (no options) + TCP with its checksum field zero, as the frame builder lays
    them out: the pseudo-header comes from its IPv4 header. Same sum as
    ``region_kernel``, for a whole burst in one call. A slot whose length disagrees
    with its IPv4 header (not a frame of the builder's) is left alone. Returns the
    frames summed (the caller checks it)."""
    done = 0
    for k in range(count):
        slot = slots[k]
        if slot < 0 or slot >= length.size:
            continue
        at = np.int64(slot) * slot_bytes
        n = np.int64(length[slot])
        if n < 54 or n > slot_bytes:
            continue
        total = (np.int64(data[at + 16]) << 8) | np.int64(data[at + 17])
        if total + 14 != n:
            continue
        tcp_at = at + 34
        end = at + n
        pseudo = np.uint64(6 + total - 20)
        for i in range(at + 26, at + 34, 2):         # source and destination address
            pseudo += (np.uint64(data[i]) << np.uint64(8)) | np.uint64(data[i + 1])
        acc = sum_kernel(data[tcp_at:end]) + pseudo
        acc = (acc & np.uint64(0xFFFF)) + (acc >> np.uint64(16))
        acc = (acc & np.uint64(0xFFFF)) + (acc >> np.uint64(16))
        acc = (acc & np.uint64(0xFFFF)) + (acc >> np.uint64(16))
        value = ~acc & np.uint64(0xFFFF)
        data[tcp_at + 16] = value >> np.uint64(8)
        data[tcp_at + 17] = value & np.uint64(0xFF)
        done += 1
    return done


burst_frames = entry(burst_kernel)


def region_sum(buf, start: int, end: int, initial: int = 0) -> int:
    """Folded sum of ``buf[start:end]`` plus ``initial``, in one numba call on the
    buffer itself (a frame and its offsets: no slice, no numpy view per call)."""
    if end <= start:
        return fold(initial)
    try:
        return int(region_kernel(buf, start, end, initial))
    except TypeError:            # not a plain byte buffer (e.g. a numpy-typed view)
        return fold(initial + ones_sum(memoryview(buf)[start:end]))


def as_array(buf) -> np.ndarray:
    """A uint8 numpy view of a bytes-like object (no copy)."""
    return np.frombuffer(buf, dtype=np.uint8)


def fold(value: int) -> int:
    """Fold an arbitrary non-negative int to a 16-bit one's-complement sum."""
    while value >> 16:
        value = (value & 0xFFFF) + (value >> 16)
    return value


def finish(total: int) -> int:
    """The checksum field value for a sum: one's complement of the folded sum."""
    return ~fold(total) & 0xFFFF


def ones_sum(buf) -> int:
    """Folded sum of a bytes-like object (RFC 1071), network order, not complemented."""
    if len(buf) == 0:
        return 0
    return int(sum_kernel(as_array(buf)))


def copy_sum(dst, src, head: int = 0) -> int:
    """Copy ``src`` into ``dst`` (bytes-like) at offset ``head`` and return the sum of
    ``dst[:head]`` plus ``src``, in one pass over the payload. ``head`` must be even."""
    if head & 1:
        raise ValueError("copy_sum: head must be even")
    if len(src) == 0 and head == 0:
        return 0
    target = dst if isinstance(dst, np.ndarray) else as_array(dst)
    return int(copy_sum_kernel(target, head, as_array(src)))


def shift_sum(partial: int, odd: bool) -> int:
    """A partial sum of a piece that starts at an odd offset of the summed region
    counts with its bytes swapped (RFC 1071 section 2, byte-order independence)."""
    return ((partial & 0xFF) << 8) | (partial >> 8) if odd else partial


def pseudo_sum(src_ip: int, dst_ip: int, protocol: int, length: int) -> int:
    """Folded sum of the IPv4 pseudo-header (RFC 9293 3.1): addresses, protocol, length."""
    return fold((src_ip >> 16) + (src_ip & 0xFFFF) + (dst_ip >> 16) + (dst_ip & 0xFFFF)
                + protocol + length)


def checksum(buf, initial: int = 0) -> int:
    """The checksum field value over ``buf`` with ``initial`` (e.g. a pseudo-header sum)."""
    return finish(initial + ones_sum(buf))


def fill_partial(frame, csum_start: int, csum_offset: int) -> None:
    """What a NIC does for a CHECKSUM_PARTIAL frame: sum from ``csum_start`` to the end
    (the field holds the pseudo-header sum already) and write the complement."""
    at = csum_start + csum_offset
    view = memoryview(frame)
    value = finish(ones_sum(view[csum_start:]))
    view[at] = value >> 8
    view[at + 1] = value & 0xFF


loaded(__name__)
