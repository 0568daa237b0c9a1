"""Offloaded sockets: the engine runs TCP on behalf of host processes (TOAD III-C).

:func:`install` gives an :class:`engine.loop.Engine` a NIC and a Stack, registers the
socket request handlers in its dispatch table, adds the NIC + Stack poller and hooks
every QP's attach/detach. Topologies (ARCHITECTURE.md):

- ``nic.kind: loopback``: the engine's internal wire with one end, which hears itself:
  both ends of a connection live behind the same engine; 127.0.0.1 and the engine's
  own address (``nic.address``) stay inside it (the own address crosses the wire, so
  its faults, bandwidth cap and pcap apply).
- ``nic.kind: tap``: the Stack on a TAP device whose far side is the Linux kernel in a
  namespace (``nic.tap``); 127.0.0.1 still loops inside the Stack. The ``nic.wire``
  faults are injected around the TAP NIC, both ways (engine/nic/faults.py).
"""
from __future__ import annotations

import threading
import time

from engine.nic.faults import FaultyNic, has_faults
from engine.nic.loopback import LoopbackWire
from engine.tcp.stack import Stack

from .poller import OffloadPoller

LOOPBACK_MAC = bytes([0x02, 0x74, 0x6F, 0x00, 0x00, 0x01])


def build_nic(config, clock=time.perf_counter):
    """(nic, stack address) for ``config.nic``; TAP needs root or CAP_NET_ADMIN."""
    nic_config = config.nic
    if nic_config.kind == "tap":
        from engine.nic.tap import TapNic
        nic, address = TapNic(nic_config.tap), nic_config.tap.address
        if has_faults(nic_config.wire):   # both ways: Linux's frames pass no wrapper
            nic = FaultyNic(nic, nic_config.wire, "both", clock)
    else:                      # (the loopback wire injects its faults in its cable)
        wire = LoopbackWire(nic_config.wire, mtu=nic_config.mtu, clock=clock)
        nic, address = wire.attach(LOOPBACK_MAC), nic_config.address
        nic.wire_counters = wire.counters
    if nic_config.pcap:
        from engine.nic.pcap import PcapNic
        nic = PcapNic(nic, nic_config.pcap)
    return nic, address


def install(engine, clock=time.perf_counter) -> OffloadPoller:
    """Attach offloaded sockets to ``engine``; returns the poller (close() it)."""
    config = engine.config
    nic, address = build_nic(config, clock)
    try:
        stack = Stack(config.tcp, address, nic.features.mac, nic.features,
                      arp_timeout=config.nic.arp_timeout_s)
        poller = OffloadPoller(config, stack, nic, clock,
                               raise_interrupts=engine.raise_interrupts,
                               service_requests=engine.service_all,
                               rx_doorbells=engine.rx_doorbells)
        poller.handlers.register(engine.dispatcher)
        engine.slots.attach_hooks.append(poller.on_attach)
        engine.add_poller(poller)
        if nic.fileno() is not None:
            poller.watcher = FdWatcher(nic.fileno(), engine)
    except BaseException:
        nic.close()
        raise
    return poller


class FdWatcher:
    """Wakes a sleeping engine when its NIC's fd becomes readable (TAP).

    The adaptive loop sleeps on the wake semaphore, not on the TAP fd; this thread
    polls the fd only while the engine's "sleeping" register is set and posts the
    semaphore when a frame arrives, so a frame from Linux never waits for the end of
    a sleep slice. While the engine is awake it reads the fd itself.
    """

    def __init__(self, fd: int, engine):
        import select
        self.poll = select.poll()
        self.poll.register(fd, select.POLLIN)
        self.engine = engine
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.run, name="toad-nic-wake", daemon=True)
        self.thread.start()

    def run(self) -> None:
        regs = self.engine.registers
        while not self.stopped.is_set():
            if not regs.u32[regs.sleeping_word]:
                self.stopped.wait(0.001)
                continue
            if self.poll.poll(5) and regs.u32[regs.sleeping_word]:
                self.engine.wake.release()
                self.stopped.wait(0.001)   # let the engine wake and drain the fd

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=1.0)


def stop_watcher(poller: OffloadPoller) -> None:
    """Stop the fd watcher (before the engine's registers go away)."""
    watcher = getattr(poller, "watcher", None)
    if watcher is not None:
        watcher.close()
        poller.watcher = None


def close(poller: OffloadPoller) -> None:
    """Close the NIC (the TAP device and its namespace), after the QPs are detached."""
    stop_watcher(poller)
    poller.nic.close()
