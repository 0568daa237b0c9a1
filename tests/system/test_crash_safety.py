"""Crashes and hangs on either side of the interface (issue 21): an engine that dies or
hangs is an OSError with an errno to every host call, and nothing a host does waits
without a deadline on it."""
from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from host import driver
from host.sockets import OffloadNetwork
from tests.system.test_offload_sockets import EngineRun
from toad import layout, leftovers
from toad.engine_stats import OeMemory

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
    # the host's segment and interrupt lost their names when the engine enabled them
    assert not [p for p in Path("/dev/shm").iterdir() if f"-{os.getpid()}-" in p.name]


# Issue 21's finding 1, as an attacker: another process of the same user (it may map
# OE memory read-write, as every host does) goes for a victim host's QP. It reads the
# victim's segment name from the slot and tries to open the segment and its interrupt
# semaphore by name, then keeps writing every word of the victim's slot (where the
# doorbells used to be, host_pid, the segment name) and disable and enable commands.
ATTACKER = r"""
import json, os, sys, time
import posix_ipc
from toad import layout
from toad.engine_stats import OeMemory
name, slot, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
oe = OeMemory(name)
seg_name = bytes(oe.slots[slot]["segment_name"]).rstrip(b"\0").decode()
out = {"segment_name": seg_name}
for kind, opener, target in (("segment", posix_ipc.SharedMemory, seg_name),
                             ("irq", posix_ipc.Semaphore, layout.irq_name(seg_name))):
    try:
        opener(target)
        out[kind] = "opened"
    except posix_ipc.ExistentialError:
        out[kind] = "ENOENT"
out["shm_entries"] = [e for e in os.listdir("/dev/shm") if seg_name[1:] in e]
base = oe.layout.slot_offset(slot) // 4
word = {f: oe.slot_word(slot, f) for f in ("command", "command_seq", "ack_seq", "state", "error")}
engine_written = {word["ack_seq"], word["state"], word["error"]}
commands = acked = 0
end = time.monotonic() + seconds
while time.monotonic() < end:
    for w in range(base, base + layout.QP_SLOT.itemsize // 4):
        if w not in engine_written and w != word["command_seq"]:
            oe.u32[w] = (oe.u32[w] + 1000) & 0xFFFFFFFF
    for command in (layout.CMD_DISABLE, layout.CMD_ENABLE):
        seq = (oe.u32[word["command_seq"]] + 1) & 0xFFFFFFFF
        oe.u32[word["command"]] = command
        oe.u32[word["command_seq"]] = seq
        commands += 1
        waited = time.monotonic() + 1
        while oe.u32[word["ack_seq"]] != seq and time.monotonic() < waited:
            time.sleep(0.001)
        acked += oe.u32[word["ack_seq"]] == seq
        out["error"] = oe.u32[word["error"]]
out.update(commands=commands, acked=acked, state=oe.u32[word["state"]])
oe.close()
print(json.dumps(out))
"""


def pattern(start: int, length: int) -> bytes:
    """Bytes ``start``..``start + length`` of the victim's stream (position-dependent,
    so replayed or misplaced bytes would show)."""
    return (np.arange(start, start + length, dtype=np.int64) * 7 % 251).astype(np.uint8).tobytes()


@pytest.mark.timeout(120)
def test_another_process_cannot_reach_a_hosts_doorbells_or_segment(engine):
    run = engine()
    net = OffloadNetwork(run.config())
    chunk = 64 << 10
    received = [0, 0]                 # bytes, bytes that differ from the pattern
    try:
        listener = net.listen(7022)
        client = net.create_connection((net.listen_address, 7022), timeout=10)
        server, _ = listener.accept()
        server.settimeout(30)

        def read_all() -> None:
            while True:
                data = server.recv(1 << 16)
                if not data:
                    return
                expected = pattern(received[0], len(data))
                received[1] += len(data) - sum(a == b for a, b in zip(data, expected)) \
                    if data != expected else 0
                received[0] += len(data)

        reader = threading.Thread(target=read_all)
        reader.start()
        attacker = subprocess.Popen([sys.executable, "-c", ATTACKER, run.name,
                                     str(net.driver.slot), "1.0"],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        sent = after = 0
        while after < 1 << 20:         # the transfer goes on under the attack, and after
            client.sendall(pattern(sent, chunk))
            sent += chunk
            if attacker.poll() is not None:
                after += chunk
            time.sleep(0.001)
        out, err = attacker.communicate(timeout=60)
        client.shutdown(socket.SHUT_WR)
        reader.join(60)
        assert attacker.returncode == 0, err
        report = json.loads(out)
        assert report["segment_name"] == net.driver.segment.name
        assert (report["segment"], report["irq"], report["shm_entries"]) == \
            ("ENOENT", "ENOENT", [])
        # every command it wrote was answered, and refused: the QP is still enabled
        assert report["commands"] > 0 and report["acked"] == report["commands"]
        assert (report["error"], report["state"]) == (errno.EBUSY, layout.SLOT_ACTIVE)
        assert received == [sent, 0]
        oe = OeMemory(run.name)
        try:
            assert int(oe.stats["commands_refused"]) >= report["commands"] - 1
            # (the stats flush may lag the last command)
            assert int(oe.qp_stats[net.driver.slot]["bad_records"]) == 0
        finally:
            oe.close()
        client.close()
        server.close()
    finally:
        net.close()
    assert not [p for p in Path("/dev/shm").iterdir() if f"-{os.getpid()}-" in p.name]


# Another process writes the engine's registers in OE memory: "stopped", and a heartbeat
# that never moves, over and over, for a while.
SPOOFER = r"""
import sys, time
from toad import layout
from toad.engine_stats import OeMemory
oe = OeMemory(sys.argv[1])
state = oe.register_word("state")
beat = (oe.layout.registers_offset + layout.ENGINE_REGISTERS.fields["heartbeat"][1]) // 8
frozen = oe.heartbeat()
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    oe.u32[state] = layout.ENGINE_STOPPED
    oe.u64[beat] = frozen
oe.close()
"""


@pytest.mark.timeout(60)
def test_a_spoofed_engine_state_or_heartbeat_does_not_end_a_hosts_transfer(engine):
    """An enabled host believes "stopped" or a stalled heartbeat only if the copies in
    its own page agree: a transfer under 1.5 s of spoofing (5 heartbeat timeouts)
    goes on, every byte in place."""
    run = engine(HEARTBEAT)
    net = OffloadNetwork(run.config())
    try:
        listener = net.listen(7023)
        client = net.create_connection((net.listen_address, 7023), timeout=10)
        server, _ = listener.accept()
        server.settimeout(30)
        spoofer = subprocess.Popen([sys.executable, "-c", SPOOFER, run.name, "1.5"])
        sent = got = 0
        while spoofer.poll() is None or sent < 4 << 20:
            client.sendall(pattern(sent, 16384))
            sent += 16384
            while got < sent:
                data = server.recv(65536)
                assert data == pattern(got, len(data))
                got += len(data)
            time.sleep(0.002)       # (the waits check the engine between polls)
        assert spoofer.returncode == 0
        assert net.driver.liveness_disputed > 0 and not net.driver.engine_dead
    finally:
        net.close()


@pytest.mark.timeout(60)
def test_a_qp_dropped_under_a_blocked_recv_is_enetreset_not_a_hang(engine):
    """The engine drops a QP its host still uses (here: a disable command written
    into the host's own page behind its driver's back, as only the host itself can):
    the blocked recv raises ENETRESET instead of waiting."""
    run = engine()
    net = OffloadNetwork(run.config())
    try:
        listener = net.listen(7021)
        client = net.create_connection((net.listen_address, 7021), timeout=10)
        server, _ = listener.accept()
        regs = net.driver.regs
        regs[driver.PAGE_COMMAND] = layout.CMD_DISABLE
        regs[driver.PAGE_SEQ] += 1
        net.driver.wake.release()
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
