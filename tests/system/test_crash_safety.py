"""Crashes and hangs on either side of the interface (issue 21): an engine that dies or
hangs is an OSError with an errno to every host call, and nothing a host does waits
without a deadline on it."""
from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time

import pytest

from host.sockets import OffloadNetwork
from tests.system.test_offload_sockets import EngineRun
from toad import leftovers

HEARTBEAT = "engine.heartbeat_timeout_ms=300"


@pytest.fixture
def engine():
    runs: list[EngineRun] = []

    def start(*overrides: str) -> EngineRun:
        runs.append(EngineRun(list(overrides), f"c{len(runs)}"))
        return runs[-1]

    yield start
    for run in runs:
        if run.process.poll() is None:
            os.kill(run.pid(), signal.SIGCONT)
            run.process.kill()
        run.process.communicate()
        for obj in leftovers.objects(run.name):   # a killed engine's (toad doctor's fix)
            obj.remove()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSTOP], ids=["killed", "hung"])
def test_engine_death_or_hang_is_an_oserror_to_a_blocked_recv(engine, sig):
    run = engine(HEARTBEAT)
    net = OffloadNetwork(run.config())
    try:
        listener = net.listen(7020)
        client = net.create_connection((net.listen_address, 7020), timeout=10)
        server, _ = listener.accept()
        client.sendall(b"x" * 1000)
        assert server.recv(1000)
        os.kill(run.pid(), sig)
        server.settimeout(30)
        started = time.monotonic()
        with pytest.raises(OSError) as info:
            server.recv(1000)
        assert info.value.errno == errno.ENETDOWN
        assert time.monotonic() - started < 5        # the heartbeat's timeout, not 30 s
        with pytest.raises(OSError) as info:          # and every later call says so
            client.sendall(b"y")
        assert info.value.errno == errno.ENETDOWN
    finally:
        net.close()


# Another process of the same user writes a disable command into a host's slot (as
# issue 21's finding 1 did): the engine drops that QP while its host uses it.
DISABLER = r"""
import sys
from toad import layout
from toad.engine_stats import OeMemory
oe = OeMemory(sys.argv[1])
slot = int(sys.argv[2])
seq = oe.u32[oe.slot_word(slot, "command_seq")]
oe.u32[oe.slot_word(slot, "command")] = layout.CMD_DISABLE
oe.u32[oe.slot_word(slot, "command_seq")] = (seq + 1) & 0xFFFFFFFF
oe.close()
"""


@pytest.mark.timeout(60)
def test_a_qp_dropped_under_a_blocked_recv_is_enetreset_not_a_hang(engine):
    run = engine()
    net = OffloadNetwork(run.config())
    try:
        listener = net.listen(7021)
        client = net.create_connection((net.listen_address, 7021), timeout=10)
        server, _ = listener.accept()
        subprocess.run([sys.executable, "-c", DISABLER, run.name, str(net.driver.slot)],
                       check=True, timeout=30)
        server.settimeout(30)
        started = time.monotonic()
        with pytest.raises(OSError) as info:
            server.recv(1000)
        assert info.value.errno == errno.ENETRESET
        assert time.monotonic() - started < 5
        with pytest.raises(OSError) as info:
            client.sendall(b"y")
        assert info.value.errno == errno.ENETRESET
    finally:
        net.close()
