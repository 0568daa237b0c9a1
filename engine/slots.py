"""QP slot lifecycle: enable (attach the host segment once), disable, reclaim.

A host claims slot ``s`` by creating its interrupt semaphore exclusively, creates
its segment, fills the slot registers and writes ``command`` then ``command_seq``.
The engine notices a new ``command_seq`` during housekeeping, acts, writes ``state``
and ``error``, and publishes ``ack_seq`` last.

Enable maps the host segment ONCE (a persistent mapping, as TOAD's OE maps host
memory once) after checking the QP header (magic, version, slot, owner, region
bounds) and opens a pidfd on the owner. When the owner dies (pidfd readable) the QP
is reclaimed: reclaim hooks run, the mapping goes, and the engine unlinks the dead
host's segment and interrupt semaphore, since nobody else will.
"""
from __future__ import annotations

import errno
import os
import select

from engine.dma import Dma
from engine.interrupts import InterruptLine
from engine.qp import QueuePair
from toad import layout
from toad.addresses import pid_alive
from toad.shm import Segment, ShmError, open_semaphore, unlink_segment, unlink_semaphore


CLAIM_CHECK_NS = 1_000_000_000



def _semaphore_exists(name: str, slot: int) -> bool:
    return os.path.exists(f"/dev/shm/sem.{layout.irq_name(name, slot)[1:]}")


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
        self.next_claim_check = 0
        self.suspect_claims: dict[int, int] = {}   # slot -> dead pid seen last check

    def words(self, slot: int) -> dict:
        return self.registers.slot_words[slot]

    def commands_pending(self) -> bool:
        u32 = self.u32
        return any(u32[w["command_seq"]] != u32[w["ack_seq"]] for w in self.registers.slot_words)

    def scan_commands(self) -> int:
        done = 0
        for slot, w in enumerate(self.registers.slot_words):
            seq = self.u32[w["command_seq"]]
            if seq == self.u32[w["ack_seq"]]:
                continue
            command = self.u32[w["command"]]
            if self.qps[slot] is not None:
                self.detach(self.qps[slot], host_dead=False)
            if command == layout.CMD_ENABLE:
                self.enable(slot)
            self.u32[w["ack_seq"]] = seq   # publish: state and error are written
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
        self.engine.active.append(qp)
        self.host_poll.register(qp.pidfd, select.POLLIN)
        self.by_pidfd[qp.pidfd] = qp
        self.registers.qp_stats[slot]["enables"] += 1
        for hook in self.attach_hooks:
            hook(qp)
        self.u32[w["error"]] = 0
        self.u32[w["state"]] = layout.SLOT_ACTIVE

    def _attach(self, slot: int) -> QueuePair:
        w, name = self.words(slot), self.engine.name
        pid = self.u32[w["host_pid"]]
        seg_name = self.registers.slot_name(slot)
        if seg_name != layout.qp_segment_name(name, slot, pid):
            raise EnableError(errno.EINVAL, f"segment name {seg_name!r} is not "
                                            f"{layout.qp_segment_name(name, slot, pid)!r}")
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            raise EnableError(errno.ESRCH, f"host pid {pid} does not exist") from None
        segment = semaphore = None
        try:
            segment = Segment(seg_name)
            dma = Dma(segment.map, segment.size, self.bus)
            lay = self._check_header(dma, slot, pid, segment.size)
            semaphore = open_semaphore(layout.irq_name(name, slot))
            irq = self.engine.config.interrupts
            return QueuePair(slot, pid, segment, dma, lay, self.registers.words32, w,
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

    def detach(self, qp: QueuePair, host_dead: bool) -> None:
        """Detach ``qp``; for a dead host also remove its segment and semaphore."""
        self.flush_qp_stats(qp)
        self.qps[qp.slot] = None
        if qp in self.engine.active:
            self.engine.active.remove(qp)
        self.host_poll.unregister(qp.pidfd)
        self.by_pidfd.pop(qp.pidfd, None)
        os.close(qp.pidfd)
        try:
            qp.detach()
        finally:
            w = self.words(qp.slot)
            if host_dead:
                unlink_segment(qp.segment.name)
                unlink_semaphore(layout.irq_name(self.engine.name, qp.slot))
                self.reclaimed += 1
                self.u32[w["ack_seq"]] = self.u32[w["command_seq"]]
            self.u32[w["state"]] = layout.SLOT_FREE

    def check_hosts(self, now_ns: int) -> int:
        """Reclaim the QPs whose host process has exited (pidfd became readable)."""
        if now_ns < self.next_host_check or not self.by_pidfd:
            return 0
        self.next_host_check = now_ns + self.host_check_ns
        dead = [self.by_pidfd[fd] for fd, _ in self.host_poll.poll(0) if fd in self.by_pidfd]
        for qp in dead:
            self.detach(qp, host_dead=True)
        return len(dead)

    def check_stale_claims(self, now_ns: int) -> int:
        """Free slots claimed by a host that died before enabling them.

        A host claims a slot by creating its interrupt semaphore, then writes its pid
        within microseconds. A free slot whose semaphore exists while the recorded
        pid is dead, on two checks a second apart, was abandoned: remove the
        semaphore (and a segment the host may have created) so the slot is usable.
        """
        if now_ns < self.next_claim_check:
            return 0
        self.next_claim_check = now_ns + CLAIM_CHECK_NS
        freed = 0
        for slot in range(self.max_qps):
            if self.qps[slot] is not None or not _semaphore_exists(self.engine.name, slot):
                self.suspect_claims.pop(slot, None)
                continue
            pid = self.u32[self.words(slot)["host_pid"]]
            if pid_alive(pid):
                self.suspect_claims.pop(slot, None)
            elif self.suspect_claims.get(slot) == pid:
                unlink_semaphore(layout.irq_name(self.engine.name, slot))
                unlink_segment(layout.qp_segment_name(self.engine.name, slot, pid))
                del self.suspect_claims[slot]
                self.reclaimed += 1
                freed += 1
            else:
                self.suspect_claims[slot] = pid
        return freed

    def detach_all(self) -> None:
        for qp in list(self.engine.active):
            self.detach(qp, host_dead=not pid_alive(qp.host_pid))

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
