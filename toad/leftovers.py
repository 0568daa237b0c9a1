"""The shared objects of toad engines and hosts in /dev/shm, and which are stale.

Names (toad/layout.py): ``toad-NAME-oe`` (OE memory), ``sem.toad-NAME-wake-GEN``
(the engine's wake semaphore, GEN its generation), ``toad-NAME-qpS-PID-TOKEN`` (a
host segment) and ``sem.toad-NAME-qpS-PID-TOKEN-irq`` (its interrupt). An object is
stale when its creator is dead and nobody else will remove it: OE memory whose engine
died, a wake semaphore of no running engine's generation, a host's objects whose pid
is dead. The next engine of a name removes the stale objects of that name
(:func:`reclaim`); ``toad doctor`` lists them all (:func:`scan`).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from toad import layout
from toad.addresses import pid_alive

SHM = Path("/dev/shm")
_OE = re.compile(r"toad-(.+)-oe")
_WAKE = re.compile(r"sem\.toad-(.+)-wake-([0-9a-f]{16})")
_QP = re.compile(r"(sem\.)?toad-(.+)-qp(\d+)-(\d+)-([0-9a-f]{16})(-irq)?")


@dataclass(frozen=True)
class ShmObject:
    """One toad object in /dev/shm."""
    entry: str                 # its file name in /dev/shm
    engine: str                # the engine name it belongs to
    kind: str                  # "oe", "wake", "segment" or "irq"
    pid: int = 0               # the host's pid (segment, irq)
    generation: int = 0        # the engine's generation (wake)

    @property
    def posix_name(self) -> str:
        """The name posix_ipc takes ("/toad-...", without "sem.")."""
        return "/" + self.entry.removeprefix("sem.")

    def remove(self) -> bool:
        """Unlink it; False when it was gone already (or is not ours to remove)."""
        try:
            (SHM / self.entry).unlink()
            return True
        except (FileNotFoundError, PermissionError):
            return False


def parse(entry: str) -> Optional[ShmObject]:
    """The object a /dev/shm entry names, or None when it is no engine's or host's."""
    match = _QP.fullmatch(entry)
    if match and bool(match.group(1)) == bool(match.group(6)):
        return ShmObject(entry, match.group(2), "irq" if match.group(6) else "segment",
                         pid=int(match.group(4)))
    match = _WAKE.fullmatch(entry)
    if match:
        return ShmObject(entry, match.group(1), "wake", generation=int(match.group(2), 16))
    match = _OE.fullmatch(entry)
    if match:
        return ShmObject(entry, match.group(1), "oe")
    return None


def objects(engine: Optional[str] = None) -> list[ShmObject]:
    """Every toad object in /dev/shm (of engine ``engine`` only, if given)."""
    try:
        entries = sorted(os.listdir(SHM))
    except OSError:
        return []
    found = [parse(entry) for entry in entries if "toad-" in entry]
    return [o for o in found if o is not None and (engine is None or o.engine == engine)]


def engine_identity(engine: str) -> tuple[int, int]:
    """(pid, generation) that engine ``engine``'s OE memory names, (0, 0) when it
    has none or it is not initialised (read from the file: no mapping kept)."""
    path = SHM / layout.oe_name(engine)[1:]
    try:
        with open(path, "rb") as f:
            head = f.read(layout.OE_HEADER.itemsize)
            if len(head) < layout.OE_HEADER.itemsize:
                return 0, 0
            header = np.frombuffer(head, layout.OE_HEADER, 1)[0]
            if int(header["magic"]) != layout.OE_MAGIC or \
                    int(header["version"]) != layout.LAYOUT_VERSION:
                return 0, 0
            f.seek(int(header["registers_offset"]))
            regs = np.frombuffer(f.read(layout.ENGINE_REGISTERS.itemsize),
                                 layout.ENGINE_REGISTERS, 1)[0]
            return int(regs["pid"]), int(regs["generation"])
    except (OSError, ValueError):
        return 0, 0


def is_stale(obj: ShmObject, live: dict[str, tuple[int, int]]) -> bool:
    """Whether nobody alive will remove ``obj``; ``live`` maps engine names to the
    (pid, generation) of a running engine."""
    if obj.kind in ("segment", "irq"):
        return not pid_alive(obj.pid)
    running = live.get(obj.engine)
    if obj.kind == "oe":
        return running is None
    return running is None or running[1] != obj.generation


def live_engines(found: list[ShmObject]) -> dict[str, tuple[int, int]]:
    """The engines among ``found``'s OE memories whose process runs."""
    live = {}
    for obj in found:
        if obj.kind == "oe":
            pid, generation = engine_identity(obj.engine)
            if pid and pid_alive(pid):
                live[obj.engine] = (pid, generation)
    return live


def scan() -> list[tuple[ShmObject, bool]]:
    """Every toad object in /dev/shm with whether it is stale."""
    found = objects()
    live = live_engines(found)
    return [(obj, is_stale(obj, live)) for obj in found]


def reclaim(engine: str, generation: int, attached: frozenset = frozenset()) -> list[str]:
    """Remove what dead engines and hosts of name ``engine`` left (called by the
    engine of that name, generation ``generation``, which owns the name now):
    other generations' wake semaphores and the objects of dead hosts, except the
    segments ``attached`` (the engine still maps them; they go at detach). Returns
    the entries removed."""
    removed = []
    for obj in objects(engine):
        if obj.kind == "oe" or obj.posix_name in attached:
            continue
        if obj.kind == "wake":
            stale = obj.generation != generation
        else:
            stale = not pid_alive(obj.pid)
        if stale and obj.remove():
            removed.append(obj.entry)
    return removed
