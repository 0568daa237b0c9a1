"""Frames in one preallocated pool, as DPDK's mbuf pool: (slot, length) entries of a
single numpy buffer, handed between the NIC backends, the stack and compiled kernels.

    pool = FramePool(slots, slot_bytes)      # or FramePool.for_frames(max_frame, window)
    slot = pool.alloc()                      # -1 when none is free (counted)
    pool.space(slot)[:n] = frame; pool.length[slot] = n
    pool.view(slot)                          # memoryview of its ``length`` bytes
    pool.release(slot)                       # exactly once

Every field is a plain numpy array, so a numba kernel takes them as arguments:

    data         uint8[slots * slot_bytes]  slot i's frame starts at i * slot_bytes
    length       int32[slots]   bytes of the frame in the slot
    csum_ok      uint8[slots]   receive: the NIC vouches for the L4 checksum
    csum_start   int32[slots]   transmit: > 0, the NIC completes a partial L4 checksum
    csum_offset  int32[slots]     summed from csum_start, written at csum_start+csum_offset
    gso_size     int32[slots]   transmit: > 0, a TSO super-frame cut at this payload size
    free         int32[slots]   the free stack: free[0:state[DEPTH]] are free slots
    held         uint8[slots]   1 while a slot is allocated (a second release is refused)
    state        int64[STATE_WORDS]   DEPTH, ALLOC_FAILED, BAD_RELEASE, LOW_WATER

Whoever fills a slot sets every field of its direction: a receiver ``length`` and
``csum_ok``, a transmitter ``length``, ``csum_start``, ``csum_offset`` and
``gso_size``; alloc clears none of them. Ownership moves with the slot id: a NIC's
``receive_burst`` hands its slots to the caller, ``send_burst`` takes the caller's.

The free stack is LIFO: the slot released last is allocated next, still in the cache.
With the buffer in fresh anonymous pages (``anonymous_buffer``, committed when
first touched), a pool's resident memory follows the frames in flight, not its size.
Running out of slots is counted (ALLOC_FAILED), never fatal: the frame that found no
slot is dropped, as a NIC drops a frame with no receive buffer (rx_no_buffer).
"""
from __future__ import annotations

import mmap

import numpy as np

from toad.compiled import entry, helper, kernel, loaded

ETH_HLEN = 14
MAX_IP_PACKET = 65535          # an IPv4 packet's total length is 16 bits
SLOT_ALIGN = 64                # a cache line: each slot's frame starts on one
# Slot counts: a pool holds at least FRAMES_PER_WINDOW windows' worth of full frames
# (the data in flight plus an ACK for every two segments, with room to spare), never
# fewer than MIN_SLOTS, never more than MAX_SLOTS; a power of two.
FRAMES_PER_WINDOW = 3
MIN_SLOTS = 1024
MAX_SLOTS = 1 << 18
DEFAULT_WINDOW = 4 << 20       # tcp.recv_buffer_bytes' default

# state[] words
DEPTH = 0                      # free slots: free[0:DEPTH]
ALLOC_FAILED = 1               # allocations that found no free slot
BAD_RELEASE = 2                # releases of a free slot or a slot id out of range
LOW_WATER = 3                  # the fewest free slots seen
STATE_WORDS = 8                # (4 spare)


# ---- compiled: the one implementation of alloc and release ------------------------

@helper
def alloc(free, state, held):
    """A free slot (now held), or -1 with ALLOC_FAILED counted."""
    depth = state[DEPTH]
    if depth <= 0:
        state[ALLOC_FAILED] += 1
        return -1
    depth -= 1
    slot = free[depth]
    state[DEPTH] = depth
    state[LOW_WATER] = min(state[LOW_WATER], depth)
    held[slot] = 1
    return slot


@helper
def release(free, state, held, slot):
    """Give ``slot`` back; a slot not held (released twice, never allocated) or out of
    range is refused and counted in BAD_RELEASE. Returns whether it was released."""
    if slot < 0 or slot >= held.size or held[slot] == 0:
        state[BAD_RELEASE] += 1
        return False
    held[slot] = 0
    depth = state[DEPTH]
    free[depth] = slot
    state[DEPTH] = depth + 1
    return True


_ARRAYS = "int32[::1], int64[::1], uint8[::1]"


@kernel(f"int64({_ARRAYS})")
def _alloc_one(free, state, held):
    return alloc(free, state, held)


@kernel(f"boolean({_ARRAYS}, int64)")
def _release_one(free, state, held, slot):
    return release(free, state, held, slot)


@kernel(f"int64({_ARRAYS}, int32[::1], int64)")
def _alloc_burst(free, state, held, out, count):
    """Up to ``count`` slots into ``out`` (as many as it holds and are free); the ones
    not found are counted in ALLOC_FAILED. Returns how many were allocated."""
    count = min(count, out.size)
    got = 0
    while got < count:
        slot = alloc(free, state, held)
        if slot < 0:
            state[ALLOC_FAILED] += count - got - 1    # (alloc counted one)
            break
        out[got] = slot
        got += 1
    return got


@kernel(f"int64({_ARRAYS}, int32[::1], int64)")
def _release_burst(free, state, held, slots, count):
    """Release ``slots[:count]``; returns how many were (the rest counted refused)."""
    count = min(count, slots.size)
    done = 0
    for k in range(count):
        if release(free, state, held, slots[k]):
            done += 1
    return done


alloc_one = entry(_alloc_one)
release_one = entry(_release_one)
alloc_burst = entry(_alloc_burst)
release_burst = entry(_release_burst)


# ---- sizing -------------------------------------------------------------------------

def frame_bytes(features) -> int:
    """The largest frame a NIC with ``features`` (engine/nic/base.py NicFeatures)
    delivers or is given: 14 + MTU, or with TSO (and the receive side's GRO, which
    a TAP with offloads also delivers) an IPv4 packet of up to 64 KB."""
    return ETH_HLEN + (MAX_IP_PACKET if features.tso else features.mtu)


def geometry(max_frame: int, window_bytes: int = DEFAULT_WINDOW) -> tuple[int, int]:
    """(slots, slot_bytes) for frames up to ``max_frame`` bytes and a TCP window of
    ``window_bytes``: e.g. MTU 1500 and a 4 MB window, 16384 slots of 1536 bytes
    (24 MB); MTU 65535 (or TSO), 1024 slots of 65600 bytes (64 MB of address space,
    resident only as frames touch it)."""
    if not ETH_HLEN <= max_frame <= ETH_HLEN + MAX_IP_PACKET:
        raise ValueError(f"frame pool: frames of {max_frame} bytes")
    slot_bytes = (max_frame + SLOT_ALIGN - 1) // SLOT_ALIGN * SLOT_ALIGN
    payload = max(max_frame - ETH_HLEN - 40, 1)
    wanted = max(MIN_SLOTS, FRAMES_PER_WINDOW * window_bytes // payload)
    slots = 1 << (wanted - 1).bit_length()
    return min(slots, MAX_SLOTS), slot_bytes


def anonymous_buffer(size: int) -> np.ndarray:
    """``size`` zero bytes of fresh anonymous memory, in 4 KB pages (committed as they
    are first touched). Not numpy's own allocation: numpy asks the kernel for huge
    pages on arrays of 4 MB and more (MADV_HUGEPAGE), and with them the frame pool
    moved 64 KB frames measurably slower on this machine (docs/stack-api.md, Frames)."""
    memory = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if hasattr(mmap, "MADV_NOHUGEPAGE"):
        memory.madvise(mmap.MADV_NOHUGEPAGE)
    return np.frombuffer(memory, np.uint8)


# ---- the pool -------------------------------------------------------------------------

class FramePool:
    """``slots`` frames of up to ``slot_bytes`` bytes each (see the module docstring)."""

    def __init__(self, slots: int, slot_bytes: int):
        if slots < 1 or slot_bytes < ETH_HLEN:
            raise ValueError(f"frame pool of {slots} slots of {slot_bytes} bytes")
        self.slots = slots
        self.slot_bytes = slot_bytes
        self.data = anonymous_buffer(slots * slot_bytes)
        self.length = np.zeros(slots, np.int32)
        self.csum_ok = np.zeros(slots, np.uint8)
        self.csum_start = np.zeros(slots, np.int32)
        self.csum_offset = np.zeros(slots, np.int32)
        self.gso_size = np.zeros(slots, np.int32)
        self.free = np.arange(slots - 1, -1, -1, dtype=np.int32)   # slot 0 on top
        self.held = np.zeros(slots, np.uint8)
        self.state = np.zeros(STATE_WORDS, np.int64)
        self.state[DEPTH] = self.state[LOW_WATER] = slots
        # The same memory as memoryviews, for Python's per-frame reads and writes
        # (~30 ns an item against numpy's ~55, and plain ints come back).
        self.bytes = memoryview(self.data)
        self.lengths = memoryview(self.length)
        self.csum_oks = memoryview(self.csum_ok)
        self.csum_starts = memoryview(self.csum_start)
        self.csum_offsets = memoryview(self.csum_offset)
        self.gso_sizes = memoryview(self.gso_size)
        self._scratch = np.empty(64, np.int32)

    @classmethod
    def for_frames(cls, max_frame: int, window_bytes: int = DEFAULT_WINDOW) -> FramePool:
        return cls(*geometry(max_frame, window_bytes))

    # ---- ownership ---------------------------------------------------------------
    def alloc(self) -> int:
        """A free slot, or -1 (counted) when none is left."""
        return alloc_one(self.free, self.state, self.held)

    def release(self, slot: int) -> None:
        release_one(self.free, self.state, self.held, slot)

    def alloc_many(self, count: int) -> list[int]:
        """Up to ``count`` slots in one compiled call (fewer when the pool runs dry)."""
        out = self._scratch
        if count > out.size:
            out = self._scratch = np.empty(1 << (count - 1).bit_length(), np.int32)
        got = alloc_burst(self.free, self.state, self.held, out, count)
        return out[:got].tolist()

    def release_many(self, slots, count: int | None = None) -> None:
        """Release ``slots[:count]`` (an int32 array or a list of ids) in one call."""
        if type(slots) is not np.ndarray:
            slots = np.array(slots, np.int32)
        release_burst(self.free, self.state, self.held, slots,
                      len(slots) if count is None else count)

    # ---- frames ------------------------------------------------------------------
    def view(self, slot: int) -> memoryview:
        """The frame in ``slot``: a memoryview of its ``length`` bytes."""
        base = slot * self.slot_bytes
        return self.bytes[base:base + self.lengths[slot]]

    def space(self, slot: int) -> memoryview:
        """The whole slot, writable (a NIC reads a frame into it)."""
        base = slot * self.slot_bytes
        return self.bytes[base:base + self.slot_bytes]

    def put(self, data, csum_ok: bool = False) -> int:
        """A received frame copied into a new slot (length and csum_ok set): its slot,
        or -1 when it does not fit (the caller counts that) or no slot is free."""
        n = len(data)
        if n > self.slot_bytes:
            return -1
        slot = alloc_one(self.free, self.state, self.held)
        if slot >= 0:
            base = slot * self.slot_bytes
            self.bytes[base:base + n] = data
            self.lengths[slot] = n
            self.csum_oks[slot] = csum_ok
        return slot

    # ---- accounting --------------------------------------------------------------
    @property
    def available(self) -> int:
        """Free slots now."""
        return int(self.state[DEPTH])

    def counters(self) -> dict:
        state = self.state
        return {"slots": self.slots, "slot_bytes": self.slot_bytes,
                "free": int(state[DEPTH]), "peak_in_use": self.slots - int(state[LOW_WATER]),
                "alloc_failed": int(state[ALLOC_FAILED]),
                "bad_release": int(state[BAD_RELEASE])}


loaded(__name__)
