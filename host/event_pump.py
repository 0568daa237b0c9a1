"""The thread that takes a QP's events while the application sleeps elsewhere.

A program that waits in select, poll, epoll or an asyncio loop sleeps on kernel
descriptors, not on the QP's interrupt (a named semaphore, which no poller can
watch). Its readiness descriptors (host/readiness.py) are signaled by whichever
thread consumes the QP's events, so one must run meanwhile: this pump. It plays the
part of a kernel's interrupt handler: it arms the QP's interrupt, sleeps on it, and
when woken drains the event ring (the compiled poll attaches data; the dispatch
signals the descriptors whose state changed), gives read buffers back, and sleeps
again. It never spins: every event it takes costs one wake-up (the engine's interrupt
moderation applies).

An application thread that waits in the driver itself (a blocking call) consumes the
events on its own: it counts itself in ``driver.app_waits`` and, if the pump is
asleep holding the consumer role, wakes it (one semaphore post) so that the pump
hands the role over and stays out until no application thread waits. Blocking
programs thus pay no extra hop per event; programs that wait in a poller pay the
pump's wake-up per event (measured by ``toad bench readiness``).
"""
from __future__ import annotations

import threading

from host.driver import EngineDead

HANDOVER_WAIT_S = 0.05     # the longest the pump naps while a caller waits in the driver


class EventPump(threading.Thread):
    """One per OffloadNetwork with readiness descriptors; started by the first one."""

    def __init__(self, network):
        super().__init__(name="toad-event-pump", daemon=True)
        self.net = network
        self.driver = network.driver
        self.stopping = False
        self.asleep = False              # inside sleep_on_interrupt, holding the role
        self.idle = threading.Condition()
        self.wakeups = 0                 # times it woke and took events
        self.failure: BaseException | None = None

    def run(self) -> None:
        driver = self.driver
        try:
            while not self.stopping and not driver.closed:
                if driver.app_waits:
                    with self.idle:
                        self.idle.wait_for(lambda: not driver.app_waits or self.stopping,
                                           HANDOVER_WAIT_S)
                    continue
                if driver._consumer.acquire(timeout=HANDOVER_WAIT_S):
                    try:
                        self._take_and_sleep()
                    finally:
                        self.asleep = False
                        driver._consumer.release()
                        if driver._waiters:
                            with driver._cond:
                                driver._cond.notify_all()
        except EngineDead as exc:
            self.failure = exc
            self.net.engine_lost()
        except OSError:
            pass                          # the QP was closed under it: done

    def _take_and_sleep(self) -> None:
        driver = self.driver
        while driver.poll():
            self.wakeups += 1
        self.net.flush_returns()          # read buffers go back before we sleep
        self.asleep = True                # (before the last look: see hand_over)
        if driver.app_waits or self.stopping:
            return
        driver.sleep_on_interrupt(driver.sleep_slice)

    def hand_over(self) -> None:
        """An application thread waits in the driver (it counted itself in
        ``app_waits`` first): wake the pump if it sleeps, so it leaves the role."""
        if self.asleep:
            self.driver.irq.release()

    def resume(self) -> None:
        """No application thread waits in the driver any more."""
        with self.idle:
            self.idle.notify()

    def stop(self) -> None:
        self.stopping = True
        self.hand_over()
        self.resume()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout=5)
