"""Fixtures for talking to Linux over a TAP: a toad in-host network whose peer is a
namespace created for the test, and Linux-side programs started and stopped by it."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from host.inhost import InhostNetwork
from toad.config import load

PEER = str(Path(__file__).with_name("peer.py"))
TOAD_IP, LINUX_IP = "10.77.0.2", "10.77.0.1"


def tap_config(mtu: int = 1500, offloads=("csum", "tso"), *extra: str):
    tag = os.getpid() % 100000
    listed = "[" + ",".join(offloads) + "]"
    return load(None, [f"name=it{tag}", f"nic.kind=tap", f"nic.tap.netns=toad-it{tag}",
                       f"nic.tap.device=toadit{tag}", f"nic.tap.mtu={mtu}",
                       f"nic.tap.offloads={listed}", "tcp.time_wait_s=0.2", *extra])


@contextmanager
def tap_network(*args, **kwargs):
    with InhostNetwork(tap_config(*args, **kwargs)) as net:
        yield net


@contextmanager
def linux(net, argv: list[str], wait_line: bool = False):
    """A program inside the namespace, killed on exit; optionally wait for its first line."""
    nic = getattr(net.nic, "inner", net.nic)
    # its own process group: killing the group also stops what `timeout` started
    proc = subprocess.Popen(nic.netns.command(["timeout", "120", *argv]), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        if wait_line:
            first = proc.stdout.readline().strip()
            assert first == "up", f"peer did not start: {first!r} {proc.stderr.read()}"
        yield proc
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
        assert not namespace_pids(nic.netns.name), "a Linux program outlived its test"


def namespace_pids(name: str) -> list[str]:
    """Processes still inside the namespace (a bounded wait for them to go)."""
    deadline = time.monotonic() + 5
    while True:
        pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True,
                              text=True, timeout=10).stdout.split()
        if not pids or time.monotonic() > deadline:
            return pids
        time.sleep(0.05)


def python_peer(*args) -> list[str]:
    return [sys.executable, PEER, *map(str, args)]


def finish(net, proc, timeout: float = 60.0) -> str:
    """Drive toad's stack until the Linux program exits; return its stdout."""
    assert net.wait(lambda: proc.poll() is not None, timeout), "Linux peer did not finish"
    out = proc.stdout.read()
    assert proc.returncode == 0, f"peer failed ({proc.returncode}): {proc.stderr.read()}"
    return out.strip()


def need_tool(name: str) -> None:
    if shutil.which(name) is None:
        pytest.skip(f"{name} is not installed")
