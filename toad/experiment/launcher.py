"""Start, pin, watch and tear down the processes of one run.

One run = (in offload mode) the engine, ``python -m engine RUN.yaml``, then the
receiving worker, then the sending worker (``python -m host.worker``), each a real
process in its own session so that a Ctrl-C on the terminal reaches only the
launcher, which then stops them in order. Every exit path (success, a child failing,
a timeout, Ctrl-C, SIGTERM) goes through :meth:`Launcher.close`: SIGTERM to each
child's process group, SIGKILL after a grace period, removal of the temporary
directory and of any shared-memory entry of the run's instance name a killed engine
could not unlink. Nothing is left behind.

``toad`` never imports ``engine`` or ``host``: both are started with ``python -m``.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from toad.errors import ToadError

from .accounting import read_cpu_times, read_pid_cpu_seconds

SHM = Path("/dev/shm")
GRACE_S = 3.0


class RunFailed(ToadError):
    """A child process failed or a run's result is not a figure (e.g. wrong bytes)."""


@dataclass
class Child:
    name: str
    proc: subprocess.Popen
    stderr_path: Path
    out_path: Optional[Path] = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def affinity(self) -> list[int]:
        try:
            return sorted(os.sched_getaffinity(self.proc.pid))
        except OSError:
            return []

    def error_line(self) -> str:
        """The one line that says why this child failed."""
        if self.out_path is not None and self.out_path.exists():
            try:
                data = json.loads(self.out_path.read_text())
                if "error" in data:
                    return data["error"]
            except (OSError, ValueError):
                pass
        try:
            lines = [ln.strip() for ln in self.stderr_path.read_text().splitlines() if ln.strip()]
        except OSError:
            lines = []
        for line in reversed(lines):
            if line.startswith("toad: error: "):
                return line[len("toad: error: "):]
        code = self.proc.returncode
        if code is not None and code < 0:
            return f"killed by {signal.Signals(-code).name}"
        last = f": {lines[-1]}" if lines else ""
        return f"exited with status {code}{last}"


@dataclass
class Sampler:
    """Samples a process's CPU seconds (and optionally engine stats) on a thread."""
    pid: int
    period_s: float = 0.05
    stats: Optional[Callable[[], Optional[dict]]] = None
    cpu_of: Optional[int] = None  # also sample this CPU's busy and steal time (/proc/stat)
    cpu: list = field(default_factory=list)
    busy: list = field(default_factory=list)
    cpu_busy: list = field(default_factory=list)
    cpu_steal: list = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: Optional[threading.Thread] = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="toad-sampler", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.period_s)

    def sample(self) -> None:
        now = time.monotonic()
        value = read_pid_cpu_seconds(self.pid)
        if value is not None:
            self.cpu.append((now, value))
        if self.cpu_of is not None:
            times = read_cpu_times([self.cpu_of]).get(self.cpu_of)
            if times is not None:
                self.cpu_busy.append((now, times.busy))
                self.cpu_steal.append((now, times.steal))
        if self.stats is not None:
            block = self.stats()
            if block is not None:
                self.busy.append((now, block))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
            self.sample()
        close = getattr(self.stats, "close", None)
        if close is not None:
            close()


class Launcher:
    """Owns the children and the temporary directory of one run (a context manager)."""

    def __init__(self, instance: str, poll_s: float = 0.05):
        self.instance = instance
        self.poll_s = poll_s
        self.workdir = Path(tempfile.mkdtemp(prefix="toadrun-"))
        self.children: list[Child] = []
        self.samplers: list[Sampler] = []
        self.leftovers: list[str] = []
        self.finished: set[int] = set()  # pids that exited cleanly where expected

    def __enter__(self) -> "Launcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self, name: str, argv: list[str], out_path: Optional[Path] = None,
              prefix: tuple[str, ...] = ()) -> Child:
        """Start ``[prefix...] python argv...`` in its own session, stderr to a file."""
        stderr_path = self.workdir / f"{name}.stderr"
        with open(stderr_path, "wb") as err:
            proc = subprocess.Popen([*prefix, sys.executable, *argv], stdin=subprocess.DEVNULL,
                                    stdout=err, stderr=err, start_new_session=True,
                                    cwd=os.getcwd())
        child = Child(name, proc, stderr_path, out_path)
        self.children.append(child)
        return child

    def check_alive(self, allowed_done: tuple[Child, ...] = ()) -> None:
        """Raise RunFailed naming the first child that died (or ended too early)."""
        for child in self.children:
            code = child.proc.poll()
            if code is None or child.pid in self.finished:
                continue
            if code != 0 or child not in allowed_done:
                prefix = "" if child.name == "check" else f"{child.name}: "
                raise RunFailed(prefix + child.error_line())

    def wait_until(self, ready: Callable[[], bool], timeout_s: float, what: str,
                   allowed_done: tuple[Child, ...] = (), tick: Callable[[], None] = None) -> None:
        """Poll ``ready`` while watching every child; bounded by ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while not ready():
            self.check_alive(allowed_done)
            if time.monotonic() > deadline:
                raise RunFailed(f"timed out after {timeout_s:.0f} s waiting for {what}")
            if tick is not None:
                tick()
            time.sleep(self.poll_s)

    def wait_exit(self, children: list[Child], timeout_s: float, tick=None) -> None:
        """Wait for ``children`` to exit with status 0, watching the others."""
        done = tuple(children)
        self.wait_until(lambda: all(c.proc.poll() is not None for c in children),
                        timeout_s, " and ".join(c.name for c in children) + " to finish",
                        allowed_done=done, tick=tick)
        self.check_alive(done)
        self.finished.update(c.pid for c in children)

    def sample(self, child: Child, stats=None, cpu: Optional[int] = None) -> Sampler:
        sampler = Sampler(child.pid, stats=stats, cpu_of=cpu)
        sampler.start()
        self.samplers.append(sampler)
        return sampler

    def close(self) -> None:
        """Stop everything this launcher started; remove what they may have left."""
        for sampler in self.samplers:
            sampler.stop()
        # workers first, the engine (started first) last: hosts detach before it goes
        for child in reversed(self.children):
            stop_child(child)
        self.leftovers = remove_instance_shm(self.instance)
        shutil.rmtree(self.workdir, ignore_errors=True)


def stop_child(child: Child) -> None:
    """SIGTERM the child's process group, SIGKILL after GRACE_S, then reap it."""
    proc = child.proc
    if proc.poll() is None:
        signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=GRACE_S)
        except subprocess.TimeoutExpired:
            signal_group(proc.pid, signal.SIGKILL)
            proc.wait(timeout=GRACE_S)
    # helpers the child started in its session (e.g. a peer) go with it
    signal_group(proc.pid, signal.SIGKILL)


def signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def remove_instance_shm(instance: str) -> list[str]:
    """Unlink /dev/shm entries of this run's instance (segments and semaphores)."""
    removed = []
    if not SHM.is_dir():
        return removed
    marks = (f"toad-{instance}-", f"toad-{instance}.", f"sem.toad-{instance}-")
    for entry in SHM.iterdir():
        if entry.name.startswith(marks) or entry.name == f"toad-{instance}":
            entry.unlink(missing_ok=True)
            removed.append(entry.name)
    return removed


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())
