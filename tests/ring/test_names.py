"""Shared-memory names across processes and engine lifetimes (issue 21, findings 2
and 3): a host that outlives a crashed engine leaves the next engine of that name
alone; names another user created beforehand keep nobody out; a stale engine's
leftovers are reported by ``toad doctor`` and reclaimed by the next engine."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import posix_ipc

from host.driver import Driver
from toad import layout

SHM = Path("/dev/shm")

# A host that attaches, says so, waits for a line on stdin, then makes a call (the
# engine is dead by then) and leaves through its context manager's cleanup.
OUTLIVING_HOST = r"""
import sys
from host.driver import Driver, EngineDead
from tests.ring.test_engine import wait_until
from toad import layout, leftovers
from toad.config import load
with Driver(load(None, sys.argv[1:])) as drv:
    print("up", flush=True)
    sys.stdin.readline()
    try:
        drv.call(layout.OP_ECHO, value=1, timeout=10)
        print("answered", flush=True)
    except EngineDead as exc:
        print("dead", flush=True)
"""

def squat(name: str, slots: int) -> int:
    """Fork another user's process (nobody, when the test runs as root: a fork, since
    that user cannot read this Python) that creates, and keeps re-creating, every
    name a host or engine of ``name`` could predict: the per-slot interrupt
    semaphores of the old scheme and the engine's wake semaphore. Returns its pid
    once every name exists."""
    names = [f"/toad-{name}-qp{s}-irq" for s in range(slots)] + [f"/toad-{name}-wake"]
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:                              # the squatter
        try:
            os.close(ready_r)
            if os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            while True:
                for sem_name in names:
                    try:
                        posix_ipc.Semaphore(sem_name, posix_ipc.O_CREX, mode=0o666).close()
                    except posix_ipc.ExistentialError:
                        pass
                if ready_w >= 0:
                    os.write(ready_w, b"up")
                    os.close(ready_w)
                    ready_w = -1
                time.sleep(0.01)
        finally:
            os._exit(0)
    os.close(ready_w)
    with os.fdopen(ready_r, "rb") as ready:
        assert ready.read(2) == b"up"
    return pid


def named(name: str) -> list[str]:
    return sorted(p.name for p in SHM.iterdir() if f"toad-{name}-" in p.name)


def test_host_outliving_a_crashed_engine_leaves_the_next_engine_alone(start_engine):
    first = start_engine()
    host = subprocess.Popen([sys.executable, "-c", OUTLIVING_HOST, *first.overrides],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert host.stdout.readline().strip() == "up"
        first.process.send_signal(signal.SIGKILL)
        first.process.wait()
        second = start_engine(name=first.name)     # takes the dead engine's name
        host.stdin.write("go\n")
        host.stdin.flush()
        assert host.stdout.readline().strip() == "dead"
        assert host.wait(20) == 0
        # the host removed only what it had created: the new engine still serves
        with Driver(first.config()) as drv:
            assert drv.call(layout.OP_ECHO, value=9).value == 9
    finally:
        if host.poll() is None:
            host.kill()
            host.wait()
    second.stop()
    assert named(first.name) == []


def test_names_squatted_by_another_user_keep_no_host_out(start_engine):
    name = f"sq{os.getpid()}"
    squatter = squat(name, 16)
    try:
        engine = start_engine(name=name)
        with Driver(engine.config()) as drv:
            assert drv.call(layout.OP_ECHO, value=3).value == 3
        engine.stop()
    finally:
        os.kill(squatter, signal.SIGKILL)
        os.waitpid(squatter, 0)
        for leftover in named(name):           # the squatter's own names
            os.unlink(SHM / leftover)

