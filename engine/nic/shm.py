"""The shared-memory wire: an Ethernet cable between two processes.

In the in-host topology each host process runs its own stack; the two stacks are
connected by this wire: one POSIX shared-memory segment holding two single-producer,
single-consumer frame rings (a -> b and b -> a), plus one FIFO per side for wake-ups.

Segment layout (all integers little endian, indices free-running, masked by slots-1):

    0      header: magic u64 (written last), version u32 @8, slot_size u32 @16,
           slots u32 @20, mtu u32 @24,
           pid of side a u32 @64, pid of side b u32 @68 (to detect a stale segment)
    4096   ring a->b: producer index u64 @0, consumer index u64 @64,
           consumer-waiting flag u64 @128, then ``slots`` slots at @256
    ...    ring b->a: the same
    slot:  length u32 @0, flags u32 @4 (bit 0: checksum left to the NIC), frame @16

Ordering rules: the producer writes every frame of a batch, then publishes the new
producer index; the consumer reads frames only below the index it loaded, copies them
into its frame pool (engine/frames.py) and only then hands the records back
(consumer index). Frames are copied by one compiled call per burst each way
(engine/nic/shm_ring.py). Wake-up: before it sleeps, the consumer sets its
waiting flag and re-checks the ring; after publishing, the producer checks the flag
and writes a byte into the consumer's FIFO (the consumer's ``fileno()``, so it sleeps
in select/poll). Both sides fence between their store and their load (Dekker), so
no wake-up is lost. A full ring drops the frame and counts it, as a NIC queue does.
"""
from __future__ import annotations

import ctypes
import mmap
import os
import time

import numpy as np
import posix_ipc

from engine.frames import FramePool
from engine.nic import shm_ring
from engine.nic.base import NicFeatures
from engine.nic.shm_ring import SLOT_HEADER
from toad.errors import ToadError

MAGIC = 0x746F61642D776972          # "toad-wir"
VERSION = 1
HEADER_BYTES = 4096
RING_CONTROL = 256
RING_BUDGET = 16 << 20               # bytes of slots per direction, at most
MAX_SLOTS = 8192                     # at MTU 1500: 11 MB of payload, above a 4 MB window
PRODUCER, CONSUMER, WAITING = 0, 8, 16   # u64 positions in a ring's control block

_libc = ctypes.CDLL(None, use_errno=True)
_fence_lock = ctypes.c_int(0)
_libc.pthread_spin_init(ctypes.byref(_fence_lock), 0)   # glibc/x86: 1 means unlocked
_fence_ref = ctypes.byref(_fence_lock)
_spin_lock, _spin_unlock = _libc.pthread_spin_lock, _libc.pthread_spin_unlock


def fence() -> None:
    """A full memory barrier: pthread_spin_lock is a locked instruction (x86: lock
    xchg/dec), which orders the store before it against the load after it."""
    _spin_lock(_fence_ref)
    _spin_unlock(_fence_ref)


class ShmWireError(ToadError):
    """The wire cannot be set up; the message names the fix."""


def ring_geometry(mtu: int) -> tuple[int, int]:
    """(slot size, slot count) for an MTU: slots hold a whole frame, 64-byte aligned."""
    slot_size = (SLOT_HEADER + 14 + mtu + 63) & ~63
    slots = 1
    while slots * 2 <= MAX_SLOTS and slots * 2 * slot_size <= RING_BUDGET:
        slots *= 2
    return slot_size, slots


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Ring:
    """One direction's control block and slots, as numpy views of the segment."""

    def __init__(self, buffer, offset: int, slot_size: int, slots: int):
        self.control = np.ndarray((RING_CONTROL // 8,), np.uint64, buffer, offset)
        base = offset + RING_CONTROL
        self.records = np.ndarray((slots * slot_size,), np.uint8, buffer, base)
        self.lengths = np.ndarray((slots,), np.uint32, buffer, base, (slot_size,))
        self.slot_size, self.mask, self.size = slot_size, slots - 1, slots

    def reset(self) -> None:
        self.control[:] = 0


class ShmWire:
    """One side ("a" or "b") of the wire named ``name`` (a posix_ipc name, no slash)."""

    def __init__(self, name: str, side: str, mtu: int, mac: bytes, csum_offload: bool = True):
        if side not in ("a", "b"):
            raise ShmWireError(f"shm wire side must be 'a' or 'b', got {side!r}")
        if not 68 <= mtu <= 65535:
            raise ShmWireError(f"nic.mtu: {mtu} must be 68..65535")
        self.name, self.side = name, side
        self.slot_size, self.slots = ring_geometry(mtu)
        self.size = HEADER_BYTES + 2 * (RING_CONTROL + self.slots * self.slot_size)
        self.features = NicFeatures(mtu=mtu, mac=bytes(mac), tx_csum=csum_offload,
                                    rx_csum=csum_offload, tso=False, tso_max=0)
        self.counters = dict.fromkeys(("tx_frames", "tx_bytes", "tx_dropped_full",
                                       "tx_dropped_oversize", "rx_frames", "rx_bytes",
                                       "rx_dropped_bad_length", "rx_no_buffer",
                                       "wakeups_sent"), 0)
        self.tx_counts = np.zeros(shm_ring.COUNT_WORDS, np.int64)   # to_ring's
        self.rx_counts = np.zeros(shm_ring.COUNT_WORDS, np.int64)   # from_ring's
        self.fifo_path = f"/dev/shm/{name}-{side}.fifo"
        self.peer_fifo_path = f"/dev/shm/{name}-{'b' if side == 'a' else 'a'}.fifo"
        self.fifo = self.peer_fifo = -1
        self.map = None
        self.attached = False      # only an attached side clears its pid and unlinks
        try:
            self.attach(mtu)
            self.open_fifo()
        except BaseException:
            self.close()
            raise

    def attach(self, mtu: int) -> None:
        """Create the segment, or join it; a segment whose owners are dead is reset."""
        try:
            shm = posix_ipc.SharedMemory("/" + self.name, posix_ipc.O_CREX, mode=0o600,
                                         size=self.size)
            fresh = True
        except posix_ipc.ExistentialError:
            shm = posix_ipc.SharedMemory("/" + self.name)
            fresh = False
            if shm.size != self.size:
                shm.close_fd()
                raise ShmWireError(f"shm wire /{self.name} exists with another size (the "
                                   f"other side uses another nic.mtu?); both sides need "
                                   f"nic.mtu={mtu}")
        self.map = mmap.mmap(shm.fd, self.size)
        shm.close_fd()
        header = np.ndarray((HEADER_BYTES // 4,), np.uint32, self.map)
        magic = np.ndarray((1,), np.uint64, self.map)
        me, other = (16, 17) if self.side == "a" else (17, 16)
        if not fresh:
            deadline = time.monotonic() + 2.0   # the creator may be initialising it
            while magic[0] != MAGIC and time.monotonic() < deadline:
                time.sleep(0.001)
            if header[me] and pid_alive(int(header[me])):
                raise ShmWireError(f"shm wire /{self.name} side {self.side} is in use by pid "
                                   f"{int(header[me])}; use another instance name")
        stale = not fresh and (magic[0] != MAGIC or header[2] != VERSION
                               or not pid_alive(int(header[other])))
        ring_offsets = (HEADER_BYTES, HEADER_BYTES + RING_CONTROL + self.slots * self.slot_size)
        rings = [Ring(self.map, off, self.slot_size, self.slots) for off in ring_offsets]
        self.tx, self.rx = rings if self.side == "a" else rings[::-1]
        if fresh or stale:
            magic[0] = 0
            for ring in rings:
                ring.reset()
            header[2] = VERSION
            header[4:7] = (self.slot_size, self.slots, mtu)
            header[other] = 0
            header[me] = os.getpid()
            magic[0] = MAGIC                # last: publishes the layout
        header[me] = os.getpid()
        self.header = header
        self.attached = True

    def open_fifo(self) -> None:
        if os.path.exists(self.fifo_path):
            os.unlink(self.fifo_path)       # a stale one (its owner is dead, checked above)
        os.mkfifo(self.fifo_path, 0o600)
        # O_RDWR: on Linux this opens without a writer and never reports EOF.
        self.fifo = os.open(self.fifo_path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)

    def send_burst(self, pool: FramePool, slots, n: int) -> None:
        """Copy the frames into the ring (one compiled call), release their slots,
        publish them, wake the peer if it sleeps. A full ring drops and counts."""
        if n <= 0:
            return
        if type(slots) is not np.ndarray:
            slots = np.array(slots, np.int32)
        ring = self.tx
        control = ring.control
        start = int(control[PRODUCER])
        room = ring.size - (start - int(control[CONSUMER]))
        counts = self.tx_counts
        producer = shm_ring.to_ring(ring.records, ring.slot_size, ring.mask, start, room,
                                    self.features.mtu + 14, pool.data, pool.slot_bytes,
                                    pool.length, pool.csum_start, slots, n, counts)
        pool.release_many(slots, n)
        if producer == start:
            self.add_counts(counts, "tx")
            return
        control[PRODUCER] = producer        # after the frames: publishes them
        fence()                             # the index store before the flag load
        if control[WAITING]:
            self.wake_peer()
        self.add_counts(counts, "tx")

    def add_counts(self, counts: np.ndarray, side: str) -> None:
        """Move a copy call's counts into the named counters."""
        frames, size, bad, full, no_buffer = counts[:5].tolist()
        counts[:] = 0
        count = self.counters
        count[f"{side}_frames"] += frames
        count[f"{side}_bytes"] += size
        if side == "tx":
            count["tx_dropped_oversize"] += bad
            count["tx_dropped_full"] += full
        else:
            count["rx_dropped_bad_length"] += bad
            count["rx_no_buffer"] += no_buffer

    def wake_peer(self) -> None:
        if self.peer_fifo < 0:
            try:
                self.peer_fifo = os.open(self.peer_fifo_path,
                                         os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError:
                return                      # the peer has gone: nobody to wake
        try:
            os.write(self.peer_fifo, b"\1")
            self.counters["wakeups_sent"] += 1
        except BlockingIOError:
            pass                            # the FIFO is full: the peer is already woken
        except OSError:
            os.close(self.peer_fifo)
            self.peer_fifo = -1

    def receive_burst(self, now: float, pool: FramePool, slots: np.ndarray) -> int:
        """Copy up to len(slots) frames out of the ring into new pool slots (one
        compiled call, lengths bounds-checked there), then hand the records back."""
        ring = self.rx
        control = ring.control
        consumer = int(control[CONSUMER])
        available = int(control[PRODUCER]) - consumer
        if available == 0:
            available = self.prepare_sleep()
            if available == 0:
                return 0
        elif control[WAITING]:
            control[WAITING] = 0            # awake and busy: no wake-ups needed
        if not 0 < available <= ring.size:
            available = ring.size if available > ring.size else 0   # a garbled index
        counts = self.rx_counts
        taken = shm_ring.from_ring(ring.records, ring.slot_size, ring.mask, consumer,
                                   available, pool.data, pool.slot_bytes, pool.length,
                                   pool.csum_ok, pool.free, pool.state, pool.held, slots,
                                   counts)
        control[CONSUMER] = consumer + taken   # after the copies: the records are free
        got = int(counts[shm_ring.FRAMES])
        self.add_counts(counts, "rx")
        return got

    def prepare_sleep(self) -> int:
        """The ring looked empty: drain old wake-ups, raise the waiting flag, re-check.
        Returns the frames available (then the flag is lowered again)."""
        control = self.rx.control
        try:
            while os.read(self.fifo, 4096):
                pass
        except BlockingIOError:
            pass
        control[WAITING] = 1
        fence()                             # the flag store before the index load
        available = int(control[PRODUCER]) - int(control[CONSUMER])
        if available:
            control[WAITING] = 0
        return available

    def fileno(self) -> int | None:
        return self.fifo if self.fifo >= 0 else None

    def next_deadline(self) -> float | None:
        return None

    def due(self, now: float) -> bool:
        return False              # (not known without reading the frames)

    def close(self) -> None:
        """Release the segment and FIFOs; unlink names (whichever side is last)."""
        if self.fifo >= 0:                  # ours: we made it in open_fifo
            os.close(self.fifo)
            try:
                os.unlink(self.fifo_path)
            except FileNotFoundError:
                pass
        if self.peer_fifo >= 0:
            os.close(self.peer_fifo)
        self.fifo = self.peer_fifo = -1
        if self.map is not None:
            if self.attached:
                self.header[16 if self.side == "a" else 17] = 0
                try:
                    posix_ipc.unlink_shared_memory("/" + self.name)
                except posix_ipc.ExistentialError:
                    pass
            self.attached = False
            self.tx = self.rx = self.header = None
            try:
                self.map.close()
            except BufferError:
                pass                        # a caller still holds a frame view; GC frees it
            self.map = None

    @staticmethod
    def unlink(name: str) -> list[str]:
        """Remove the segment and FIFOs of wire ``name`` (what a killed process left);
        for launchers cleaning up after a dead worker. Returns the paths removed."""
        removed = []
        try:
            posix_ipc.unlink_shared_memory("/" + name)
            removed.append(f"/dev/shm/{name}")
        except posix_ipc.ExistentialError:
            pass
        for side in ("a", "b"):
            path = f"/dev/shm/{name}-{side}.fifo"
            try:
                os.unlink(path)
                removed.append(path)
            except FileNotFoundError:
                pass
        return removed

    def __enter__(self) -> "ShmWire":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
