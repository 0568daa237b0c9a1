"""Fixtures for host/engine tests: a real engine process with a unique name."""
from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time

import pytest

from toad import leftovers
from toad.config import load
from toad.engine_stats import wait_engine_ready

_names = itertools.count()

# Small rings and buffers keep segments small; the engine sleeps quickly when idle so
# it does not take a CPU from the other tests running on this machine.
BASE = ["engine.idle_us=200", "engine.cpu=1", "qp.recv_buffers=4",
        "qp.recv_buffer_bytes=4096", "qp.request_entries=256", "qp.event_entries=512",
        "qp.send_buffer_bytes=65536", "qp.send_share_bytes=65536",
        "qp.send_space_threshold=65536", "qp.max_connections=64"]


class EngineProcess:
    """``python -m engine`` started with overrides; stopped with SIGTERM at the end."""

    def __init__(self, overrides: list[str], name: str | None = None):
        """``name``: the engine's name (default: a fresh one)."""
        self.name = name or f"test{os.getpid()}-{next(_names)}"
        self.overrides = [f"name={self.name}", *BASE, *overrides]
        args = [sys.executable, "-m", "engine", "--quiet"]
        for item in self.overrides:
            args += ["--set", item]
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            # (a dead engine's OE memory of this name says "running" until replaced)
            deadline = time.monotonic() + 20
            while leftovers.engine_identity(self.name)[0] != self.process.pid and \
                    self.process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
            wait_engine_ready(self.name, timeout=20, process=self.process)
        except BaseException:
            self.stop()
            raise

    def config(self, *extra: str):
        """A host-side config matching this engine (plus ``extra`` overrides)."""
        return load(None, [*self.overrides, *extra])

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.communicate()
        return self.process.returncode


@pytest.fixture
def start_engine():
    started: list[EngineProcess] = []

    def start(*overrides: str, name: str | None = None) -> EngineProcess:
        engine = EngineProcess(list(overrides), name)
        started.append(engine)
        return engine

    yield start
    for engine in started:
        engine.stop()
