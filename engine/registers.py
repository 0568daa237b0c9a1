"""The engine's side of OE memory: creates it, publishes the layout, serves registers.

The engine creates ``/toad-<name>-oe`` (mode 0600) and its wake semaphore, writes
the config block and the layout header, and publishes the magic LAST, so a host that
sees the magic sees a complete layout. Hot-path register reads go through memoryview
casts (one indexed load per register); the word indices are computed once here.
"""
from __future__ import annotations

import os
import secrets

import numpy as np
import posix_ipc

from toad import layout, leftovers
from toad.addresses import pid_alive
from toad.errors import ToadError
from toad.shm import (Segment, ShmError, close_semaphore, create_semaphore, unlink_segment,
                      unlink_semaphore)

SLOT_FIELDS = ("command", "command_seq", "host_pid", "state", "ack_seq", "error")



def remove_stale_oe(name: str) -> None:
    """Remove OE memory of this name that no running engine owns (a dead engine's,
    or one another process created: uninitialised, bad magic); error if an engine
    of this name runs."""
    try:
        old = Segment(layout.oe_name(name), read_only=True)
    except ShmError:
        old = None              # none, or empty (a creator that never sized it)
    if old is not None:
        try:
            regs_pid = 0
            if old.size >= layout.OE_HEADER.itemsize:
                header = np.frombuffer(old.map, layout.OE_HEADER, 1)[0]
                if int(header["magic"]) == layout.OE_MAGIC:
                    off = int(header["registers_offset"]) + layout.ENGINE_REGISTERS.fields["pid"][1]
                    regs_pid = int.from_bytes(old.map[off:off + 4], "little")
                del header
        finally:
            old.close()
        if regs_pid and regs_pid != os.getpid() and pid_alive(regs_pid):
            raise ToadError(f"an engine named {name!r} is already running (pid {regs_pid}); "
                            f"stop it or choose another name with --set name=...")
    try:
        unlink_segment(layout.oe_name(name))
    except posix_ipc.PermissionsError:
        raise ToadError(f"/dev/shm{layout.oe_name(name)} belongs to another user and is no "
                        f"running engine's; remove it as root, or choose another name with "
                        f"--set name=...") from None


def new_generation() -> int:
    """A random, nonzero engine generation (64 bits)."""
    return secrets.randbits(64) or 1


class RegisterFile:
    """OE memory as created and owned by the engine, and its wake semaphore.

    The wake semaphore's name carries the engine's generation (random, published in
    the registers before the magic), created exclusively: no other process can have
    made it first, and a host of an earlier engine of this name never confuses it
    with its own engine's. What earlier engines and their hosts left under this
    name is removed once OE memory is ours (toad/leftovers.py): ``reclaimed``.
    """

    def __init__(self, name: str, config):
        self.name = name
        self.layout = layout.oe_layout(config.engine.max_qps)
        remove_stale_oe(name)
        self.segment = Segment(layout.oe_name(name), self.layout.total_bytes, create=True)
        try:
            self.generation = new_generation()
            self.reclaimed = leftovers.reclaim(name, self.generation)
            self.wake = create_semaphore(layout.wake_name(name, self.generation))
        except BaseException:
            self.segment.close()
            self.segment.unlink()
            raise
        buf = self.segment.map
        self.u32 = memoryview(buf).cast("I")
        self.u64 = memoryview(buf).cast("Q")
        lay = self.layout
        self.stats = np.frombuffer(buf, layout.ENGINE_STATS, 1, lay.stats_offset)[0]
        self.qp_stats = np.frombuffer(buf, layout.QP_STATS, lay.max_qps, lay.qp_stats_offset)
        # u64 word indices of the stats fields: the loop's flushes write words, not
        # numpy record fields (~10x cheaper; they run on every sleep and every 10 ms)
        assert lay.stats_offset % 8 == 0 and lay.qp_stats_offset % 8 == 0
        self.stats_words = {name: (lay.stats_offset + layout.ENGINE_STATS.fields[name][1]) // 8
                            for name in layout.ENGINE_STATS.names}
        self.qp_stats_fields = {name: layout.QP_STATS.fields[name][1] // 8
                                for name in layout.QP_STATS.names}
        self.slots = np.frombuffer(buf, layout.QP_SLOT, lay.max_qps, lay.slots_offset)
        regs = lay.registers_offset
        self.state_word = (regs + layout.ENGINE_REGISTERS.fields["state"][1]) // 4
        self.sleeping_word = (regs + layout.ENGINE_REGISTERS.fields["sleeping"][1]) // 4
        self.heartbeat_word = (regs + layout.ENGINE_REGISTERS.fields["heartbeat"][1]) // 8
        self.slot_words = [{f: (lay.slot_offset(s) + layout.QP_SLOT.fields[f][1]) // 4
                            for f in SLOT_FIELDS} for s in range(lay.max_qps)]
        self._write_config(config)
        self._write_registers()
        self._publish_header()

    def _write_config(self, config) -> None:
        block = np.frombuffer(self.segment.map, layout.CONFIG_BLOCK, 1, self.layout.config_offset)
        e, irq, bus = config.engine, config.interrupts, config.bus
        block["polling"] = layout.POLLING_ADAPTIVE if e.polling == "adaptive" else layout.POLLING_BUSY
        block["idle_us"] = e.idle_us
        block["cpu"] = e.cpu
        block["heartbeat_timeout_ms"] = e.heartbeat_timeout_ms
        block["moderation_events"] = irq.moderation_events
        block["moderation_us"] = irq.moderation_us
        block["max_qps"] = e.max_qps
        # the bus the card sits on: hosts charge their PIO costs from here
        block["bus_preset"] = layout.BUS_PRESETS.index(bus.preset)
        for field in ("pio_write_ns", "pio_read_ns", "dma_latency_us", "dma_read_gbps",
                      "dma_write_gbps", "interrupt_us", "interrupt_reads"):
            block[field] = getattr(bus, field)
        block["sleep_slice_ms"] = e.sleep_slice_ms
        del block

    def _write_registers(self) -> None:
        regs = np.frombuffer(self.segment.map, layout.ENGINE_REGISTERS, 1, self.layout.registers_offset)
        regs["state"] = layout.ENGINE_STARTING
        regs["pid"] = os.getpid()
        regs["generation"] = self.generation
        regs["cpu"] = -1
        del regs

    def _publish_header(self) -> None:
        header = np.frombuffer(self.segment.map, layout.OE_HEADER, 1)
        lay = self.layout
        header["version"] = layout.LAYOUT_VERSION
        header["features"] = layout.FEATURES
        header["header_bytes"] = layout.OE_HEADER.itemsize
        header["max_qps"] = lay.max_qps
        header["config_offset"] = lay.config_offset
        header["registers_offset"] = lay.registers_offset
        header["stats_offset"] = lay.stats_offset
        header["qp_stats_offset"] = lay.qp_stats_offset
        header["slots_offset"] = lay.slots_offset
        header["slot_bytes"] = layout.QP_SLOT.itemsize
        header["total_bytes"] = lay.total_bytes
        header["magic"] = layout.OE_MAGIC  # publish: everything above is in place
        del header

    def set_state(self, state: int) -> None:
        self.u32[self.state_word] = state

    def set_cpu(self, cpu: int) -> None:
        regs = np.frombuffer(self.segment.map, layout.ENGINE_REGISTERS, 1, self.layout.registers_offset)
        regs["cpu"] = cpu
        del regs

    def qp_stats_word(self, slot: int) -> int:
        """u64 word index of slot ``slot``'s QP_STATS row (add qp_stats_fields[name])."""
        return (self.layout.qp_stats_offset + slot * layout.QP_STATS.itemsize) // 8

    def slot_name(self, slot: int) -> str:
        return bytes(self.slots[slot]["segment_name"]).rstrip(b"\0").decode(errors="replace")

    def slot_bytes(self, slot: int) -> int:
        return int(self.slots[slot]["segment_bytes"])

    def close(self) -> None:
        """Remove the wake semaphore, unmap and remove OE memory (the engine owns both)."""
        close_semaphore(self.wake)
        unlink_semaphore(layout.wake_name(self.name, self.generation))
        self.u32.release()
        self.u64.release()
        self.stats = self.qp_stats = self.slots = None
        self.segment.close()
        self.segment.unlink()
