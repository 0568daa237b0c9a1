"""QP slot lifecycle: enable (attach the host segment once), disable, reclaim.

A host claims slot ``s`` with a lock on the slot's byte of OE memory (OeMemory.
claim_slot: only processes that may open OE memory can take one, and it goes with
its holder), creates its segment and interrupt semaphore exclusively under names
with a random part (toad/layout.py), fills the slot registers and writes
``CMD_ENABLE`` then ``command_seq``. The engine notices a new ``command_seq`` during
housekeeping, acts, writes ``state`` and ``error``, and publishes ``ack_seq`` last.

Enable maps the host segment ONCE (a persistent mapping, as TOAD's OE maps host
memory once) after checking its name (this engine's, this slot's, the pid's), the
QP header (magic, version, slot, owner, region bounds), opens the interrupt
semaphore and a pidfd on the owner, then unlinks the segment's and the semaphore's
names: both sides hold them now, and no other process can open them by name. It
writes SLOT_ACTIVE into the QP's own page (QP_HEADER.state) before the slot's ack.

OE memory is writable by every host, so an enabled QP takes no orders from it: a
slot command for a QP whose host lives is refused (EBUSY in ``error``, counted in
ENGINE_STATS.commands_refused); its host disables it through its own page
(QP_HEADER.command, acked in QP_HEADER.ack_seq). When the owner dies (pidfd
readable) the QP is reclaimed: reclaim hooks run and the mapping goes (its names
went at enable). Once a second, the objects of hosts that died before enabling (or
before the engine saw them) are removed too (toad/leftovers.py).
"""
from __future__ import annotations

import errno
import os
import re
import select

from engine.dma import Dma
from engine.interrupts import InterruptLine
from engine.qp import QueuePair
from toad import layout, leftovers
from toad.shm import Segment, ShmError, open_semaphore, unlink_segment, unlink_semaphore

SWEEP_NS = 1_000_000_000      # how often dead hosts' leftovers are looked for
_H = layout.QP_HEADER_FIELDS
PAGE_COMMAND, PAGE_SEQ = _H["command"] // 4, _H["command_seq"] // 4   # (uint32 words
PAGE_STATE, PAGE_ACK = _H["state"] // 4, _H["ack_seq"] // 4           # of QueuePair.regs)
PAGE_ENGINE_STATE, PAGE_HEARTBEAT = _H["engine_state"] // 4, _H["heartbeat"] // 4


class EnableError(Exception):
    def __init__(self, code: int, why: str):
        super().__init__(why)
        self.code = code


class SlotManager:
    """Attaches and detaches QPs for an :class:`engine.loop.Engine`."""

    def __init__(self, engine, bus, ns_per_cycle: float = 0.0):
        self.engine = engine
        self.registers = engine.registers
        self.u32 = engine.registers.u32
        self.bus = bus                    # the bus state of the model, or None
        self.ns_per_cycle = ns_per_cycle  # (bus cycles to ns in the stats rows)
        self.max_qps = engine.registers.layout.max_qps
        self.qps: list = [None] * self.max_qps
        self.attach_hooks: list = []      # called with each new QueuePair (socket layer)
        self.reclaimed = 0
        self.host_poll = select.poll()
        self.by_pidfd: dict[int, QueuePair] = {}
        self.host_check_ns = engine.config.engine.host_check_ms * 1_000_000
        self.next_host_check = 0
        self.failures: list[str] = []     # last enable failures (for logs and tests)
        self.next_sweep = 0
        self.leftovers_removed = 0        # dead hosts' objects the sweep removed
        self.refused = 0                  # slot commands for a live host's QP
        self.page_seq = [0] * self.max_qps  # each attached QP's last page command seen

    def words(self, slot: int) -> dict:
        return self.registers.slot_words[slot]

    def commands_pending(self) -> bool:
        u32 = self.u32
        return any(u32[w["command_seq"]] != u32[w["ack_seq"]] for w in self.registers.slot_words) \
            or any(qp.regs[PAGE_SEQ] != self.page_seq[qp.slot] for qp in self.engine.active)

    def scan_commands(self) -> int:
        """Act on new slot commands (OE memory) and QPs' own commands (their pages)."""
        done = 0
        for slot, w in enumerate(self.registers.slot_words):
            seq = self.u32[w["command_seq"]]
            if seq == self.u32[w["ack_seq"]]:
                continue
            command = self.u32[w["command"]]
            old = self.qps[slot]
            if old is not None:
                if not self._exited(old):
                    # another process wrote into a live host's slot (its own host
                    # disables through its page): the QP is not touched
                    self.refused += 1
                    why = (f"slot {slot}: command {command} refused: the QP of live "
                           f"host {old.host_pid} is enabled")
                    self.failures = (self.failures + [why])[-8:]
                    self.u32[w["error"]] = errno.EBUSY
                    self.u32[w["ack_seq"]] = seq
                    done += 1
                    continue
                self.detach(old, host_dead=True)   # (a death the pidfd check missed)
            if command == layout.CMD_ENABLE:
                self.enable(slot)
            self.u32[w["ack_seq"]] = seq   # publish: state and error are written
            done += 1
        for qp in list(self.engine.active):
            seq = int(qp.regs[PAGE_SEQ])
            if seq == self.page_seq[qp.slot]:
                continue
            self.page_seq[qp.slot] = seq
            if qp.regs[PAGE_COMMAND] == layout.CMD_DISABLE:
                self.detach(qp, host_dead=False, page_ack=seq)
            else:
                qp.regs[PAGE_ACK] = seq
            done += 1
        return done

    def enable(self, slot: int) -> None:
        w = self.words(slot)
        try:
            qp = self._attach(slot)
        except EnableError as exc:
            self.failures = (self.failures + [f"slot {slot}: {exc}"])[-8:]
            self.u32[w["error"]] = exc.code
            self.u32[w["state"]] = layout.SLOT_FAILED
            return
        self.qps[slot] = qp
        self.page_seq[slot] = int(qp.regs[PAGE_SEQ])
        self.engine.active.append(qp)
        self.host_poll.register(qp.pidfd, select.POLLIN)
        self.by_pidfd[qp.pidfd] = qp
        self.registers.qp_stats[slot]["enables"] += 1
        for hook in self.attach_hooks:
            hook(qp)
        qp.regs[PAGE_ENGINE_STATE] = layout.ENGINE_RUNNING
        qp.regs[PAGE_STATE] = layout.SLOT_ACTIVE   # (the host believes its own page)
        self.u32[w["error"]] = 0
        self.u32[w["state"]] = layout.SLOT_ACTIVE

    def _attach(self, slot: int) -> QueuePair:
        w, name = self.words(slot), self.engine.name
        pid = self.u32[w["host_pid"]]
        seg_name = self.registers.slot_name(slot)
        expected = layout.qp_segment_name(re.escape(name), slot, pid, "[0-9a-f]{16}")
        if not re.fullmatch(expected, seg_name):
            raise EnableError(errno.EINVAL, f"segment name {seg_name!r} is not "
                                            f"{layout.qp_segment_name(name, slot, pid, 'TOKEN')!r}")
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            raise EnableError(errno.ESRCH, f"host pid {pid} does not exist") from None
        segment = semaphore = None
        try:
            segment = Segment(seg_name)
            dma = Dma(segment.map, segment.size, self.bus)
            lay = self._check_header(dma, slot, pid, segment.size)
            semaphore = open_semaphore(layout.irq_name(seg_name))
            # both sides have them now: no other process may open them by name
            unlink_segment(seg_name)
            unlink_semaphore(layout.irq_name(seg_name))
            irq = self.engine.config.interrupts
            doorbells = dma.seg[:segment.size - segment.size % 4].view("<u4")
            return QueuePair(slot, pid, segment, dma, lay, doorbells, layout.DOORBELL_WORDS,
                             InterruptLine(semaphore), pidfd,
                             moderation=(irq.moderation_events, irq.moderation_us),
                             state=self.engine.qp_table[slot:slot + 1])
        except (ShmError, EnableError) as exc:
            os.close(pidfd)
            if semaphore is not None:
                semaphore.close()
            if segment is not None:
                segment.close()
            raise exc if isinstance(exc, EnableError) else EnableError(errno.ENOENT, str(exc))

    @staticmethod
    def _check_header(dma: Dma, slot: int, pid: int, size: int) -> layout.QpLayout:
        if size < layout.QP_HEADER.itemsize:
            raise EnableError(errno.EINVAL, f"segment of {size} bytes has no room for a header")
        header = dma.array(0, 1, layout.QP_HEADER)[0].copy()
        if int(header["magic"]) != layout.QP_MAGIC or int(header["version"]) != layout.LAYOUT_VERSION:
            raise EnableError(errno.EPROTO, "QP header magic/version mismatch")
        if int(header["slot"]) != slot or int(header["owner_pid"]) != pid:
            raise EnableError(errno.EINVAL, "QP header names another slot or owner")
        lay = layout.qp_layout_from_header(header)
        why = layout.check_qp_layout(lay, size)
        if why:
            raise EnableError(errno.EINVAL, why)
        return lay

    def detach(self, qp: QueuePair, host_dead: bool, page_ack: int | None = None) -> None:
        """Detach ``qp`` (its names went at enable); ``page_ack``: the sequence of
        the host's own disable command, acknowledged in its page with the state."""
        self.flush_qp_stats(qp)
        self.qps[qp.slot] = None
        if qp in self.engine.active:
            self.engine.active.remove(qp)
        self.host_poll.unregister(qp.pidfd)
        self.by_pidfd.pop(qp.pidfd, None)
        os.close(qp.pidfd)
        try:
            if not host_dead:        # (the page goes with the mapping: status first)
                qp.regs[PAGE_STATE] = layout.SLOT_FREE
                if page_ack is not None:
                    qp.regs[PAGE_ACK] = page_ack   # publish: the state is written
            qp.detach()
        finally:
            w = self.words(qp.slot)
            if host_dead:
                self.reclaimed += 1
                self.u32[w["ack_seq"]] = self.u32[w["command_seq"]]
            self.u32[w["state"]] = layout.SLOT_FREE

    def mirror_liveness(self, state: int, heartbeat: int) -> None:
        """Copy the engine's state and heartbeat into every attached QP's page (each
        housekeeping pass): a host trusts its own page over OE memory, which any host
        may write, before it gives the engine up."""
        beat = heartbeat & 0xFFFFFFFF
        for qp in self.engine.active:
            regs = qp.regs
            regs[PAGE_ENGINE_STATE] = state
            regs[PAGE_HEARTBEAT] = beat

    def check_hosts(self, now_ns: int) -> int:
        """Reclaim the QPs whose host process has exited (pidfd became readable)."""
        if now_ns < self.next_host_check or not self.by_pidfd:
            return 0
        self.next_host_check = now_ns + self.host_check_ns
        dead = [self.by_pidfd[fd] for fd, _ in self.host_poll.poll(0) if fd in self.by_pidfd]
        for qp in dead:
            self.detach(qp, host_dead=True)
        return len(dead)

    @staticmethod
    def _exited(qp: QueuePair) -> bool:
        """Whether ``qp``'s host has exited (its pidfd is readable)."""
        probe = select.poll()
        probe.register(qp.pidfd, select.POLLIN)
        return bool(probe.poll(0))

    def sweep_leftovers(self, now_ns: int) -> int:
        """Once a second: remove the segments and semaphores of this engine's dead
        hosts that no attached QP holds (a host that died between creating them and
        enabling its slot; its slot lock went with it). Returns how many."""
        if now_ns < self.next_sweep:
            return 0
        self.next_sweep = now_ns + SWEEP_NS
        attached = frozenset(name for qp in self.qps if qp is not None for name in
                             (qp.segment.name, layout.irq_name(qp.segment.name)))
        removed = leftovers.reclaim(self.engine.name, self.registers.generation, attached)
        self.leftovers_removed += len(removed)
        return len(removed)

    def detach_all(self) -> None:
        for qp in list(self.engine.active):
            self.detach(qp, host_dead=self._exited(qp))

    def flush_qp_stats(self, qp: QueuePair) -> None:
        u64, field = self.registers.u64, self.registers.qp_stats_fields
        row = self.registers.qp_stats_word(qp.slot)
        rings = qp.take_counts()            # what the compiled ring calls did
        u64[row + field["requests"]] += rings["requests"]
        u64[row + field["events"]] += rings["events"]
        u64[row + field["interrupts"]] += rings["irq_raised"]
        u64[row + field["bad_records"]] += qp.bad_records
        u64[row + field["reports_dropped"]] += qp.reports_dropped
        u64[row + field["dma_bytes"]] += qp.dma.bytes + rings["dma_bytes"]
        u64[row + field["dma_transactions"]] += qp.dma.transactions + rings["dma_transactions"]
        u64[row + field["bus_ns"]] += round((qp.dma.bus_cycles + rings["bus_cycles"])
                                            * self.ns_per_cycle)
        qp.bad_records = qp.reports_dropped = 0
        qp.dma.bytes = qp.dma.transactions = qp.dma.bus_cycles = 0
