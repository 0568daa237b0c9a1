"""Read OE memory from outside the engine: registers, the stats block, readiness.

:class:`OeMemory` attaches to ``/toad-<name>-oe``, checks the layout header (magic,
version) and finds every region through the offsets the engine published. The host
driver uses it for its PIO writes; tools use :func:`read_engine_stats` (read-only) to
sample the engine's statistics before and after a run, and :func:`wait_engine_ready`
to wait for a freshly started engine.
"""
from __future__ import annotations

import errno
import fcntl
import os
import struct
import time

import numpy as np

from toad import layout
from toad.errors import ToadError
from toad.shm import Segment, ShmError


# struct flock (x86-64 and aarch64 Linux): l_type, l_whence, l_start, l_len, l_pid
# (0 for OFD locks), padded to 32 bytes
_FLOCK = struct.Struct("hhqqi4x")


class EngineNotRunning(ToadError):
    """No usable engine OE memory under this instance name."""


STATE_NAMES = {layout.ENGINE_STARTING: "starting", layout.ENGINE_RUNNING: "running",
               layout.ENGINE_STOPPING: "stopping", layout.ENGINE_STOPPED: "stopped"}


class OeMemory:
    """A checked mapping of an engine's OE memory (registers written by PIO)."""

    def __init__(self, name: str, read_only: bool = False, keep_fd: bool = False):
        """``keep_fd``: keep a descriptor of OE memory open, for :meth:`claim_slot`."""
        self.name = name
        try:
            self.segment = Segment(layout.oe_name(name), read_only=read_only,
                                   keep_fd=keep_fd)
        except ShmError:
            raise EngineNotRunning(f"no engine named {name!r} is running "
                                   f"(start one with: toad engine CONFIG)") from None
        if self.segment.owner_uid not in (os.geteuid(), 0):
            # anyone may create a name in /dev/shm: an engine is this user's or root's
            owner = self.segment.owner_uid
            self.segment.close()
            raise EngineNotRunning(f"engine {name!r}: its OE memory belongs to uid {owner}, "
                                   f"neither this user nor root: not an engine of ours "
                                   f"(`toad doctor` lists it)")
        buf = self.segment.map
        if self.segment.size < layout.OE_HEADER.itemsize:
            self.close()
            raise EngineNotRunning(f"engine {name!r}: OE memory is not initialised yet")
        header = np.frombuffer(buf, layout.OE_HEADER, count=1)[0].copy()
        if int(header["magic"]) != layout.OE_MAGIC:
            self.close()
            raise EngineNotRunning(f"engine {name!r}: OE memory is not initialised yet")
        if int(header["version"]) != layout.LAYOUT_VERSION:
            self.close()
            raise ToadError(f"engine {name!r} speaks layout version {int(header['version'])}, "
                            f"this toad speaks {layout.LAYOUT_VERSION}: run matching versions")
        self.layout = layout.oe_layout_from_header(header)
        self.u32 = memoryview(buf).cast("I")
        self.u64 = memoryview(buf).cast("Q")
        lay = self.layout
        self.config = np.frombuffer(buf, layout.CONFIG_BLOCK, 1, lay.config_offset)[0]
        self.stats = np.frombuffer(buf, layout.ENGINE_STATS, 1, lay.stats_offset)[0]
        self.qp_stats = np.frombuffer(buf, layout.QP_STATS, lay.max_qps, lay.qp_stats_offset)
        self.slots = np.frombuffer(buf, layout.QP_SLOT, lay.max_qps, lay.slots_offset)

    # word indices (u32 view / u64 view) for fast single-register access
    def register_word(self, field: str) -> int:
        return (self.layout.registers_offset + layout.ENGINE_REGISTERS.fields[field][1]) // 4

    def slot_word(self, slot: int, field: str) -> int:
        return (self.layout.slot_offset(slot) + layout.QP_SLOT.fields[field][1]) // 4

    def heartbeat(self) -> int:
        return self.u64[(self.layout.registers_offset
                         + layout.ENGINE_REGISTERS.fields["heartbeat"][1]) // 8]

    def state(self) -> int:
        return self.u32[self.register_word("state")]

    def pid(self) -> int:
        return self.u32[self.register_word("pid")]

    def generation(self) -> int:
        """The engine's generation: the random part of its wake semaphore's name."""
        return self.u64[(self.layout.registers_offset
                         + layout.ENGINE_REGISTERS.fields["generation"][1]) // 8]

    def claim_slot(self, slot: int) -> bool:
        """Claim QP slot ``slot`` for this mapping's owner: an exclusive lock on the
        slot's first byte of OE memory, on this open file description (an OFD lock,
        so two drivers of one process exclude each other too). It holds until
        close() and goes with the process: a dead claimer frees its slot by itself.
        Only processes that may open OE memory (its owner, root) can take one.
        False when another holds it."""
        lock = _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, self.layout.slot_offset(slot), 1, 0)
        try:
            fcntl.fcntl(self.segment.fd, fcntl.F_OFD_SETLK, lock)
            return True
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                return False
            raise

    def close(self) -> None:
        for attr in ("u32", "u64"):
            view = getattr(self, attr, None)
            if view is not None:
                view.release()
        self.u32 = self.u64 = None
        self.config = self.stats = self.qp_stats = self.slots = None
        self.segment.close()


def stats_dict(oe: OeMemory) -> dict:
    """The stats block and per-QP counters as plain numbers."""
    s = oe.stats
    out = {name: int(s[name]) for name in layout.ENGINE_STATS.names}
    out["time_ns"] = time.monotonic_ns()
    out["state"] = STATE_NAMES.get(oe.state(), str(oe.state()))
    out["pid"] = oe.pid()
    out["cpu"] = int(oe.u32[oe.register_word("cpu")]) if oe.u32 is not None else -1
    if out["cpu"] >= 1 << 31:
        out["cpu"] -= 1 << 32
    out["heartbeat"] = oe.heartbeat()
    qps = []
    for slot in range(oe.layout.max_qps):
        row = oe.qp_stats[slot]
        if int(row["enables"]):
            qps.append({"slot": slot, "host_pid": int(oe.slots[slot]["host_pid"]),
                        **{n: int(row[n]) for n in layout.QP_STATS.names}})
    out["qps"] = qps
    return out


def read_engine_stats(name: str) -> dict:
    """Sample engine ``name``'s statistics (loop iterations, busy/sleep ns, per-QP).

    Useful-work fraction over an interval = delta busy_ns / delta time_ns; the
    engine refreshes the block about every millisecond and when it goes to sleep.
    """
    oe = OeMemory(name, read_only=True)
    try:
        return stats_dict(oe)
    finally:
        oe.close()


def wait_engine_ready(name: str, timeout: float = 10.0, process=None) -> None:
    """Wait until engine ``name`` is running; ToadError if it exits or times out."""
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise ToadError(f"engine {name!r} exited (code {process.returncode}) before it was ready")
        try:
            oe = OeMemory(name, read_only=True)
            try:
                if oe.state() == layout.ENGINE_RUNNING:
                    return
            finally:
                oe.close()
        except EngineNotRunning:
            pass
        if time.monotonic() > deadline:
            raise ToadError(f"engine {name!r} did not become ready within {timeout:g} s")
        time.sleep(0.01)
