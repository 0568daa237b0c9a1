"""Pin a process to CPUs and report the affinity actually obtained."""
from __future__ import annotations

import os
from typing import Iterable

from toad.errors import ToadError


class PinningError(ToadError):
    """The requested CPUs cannot be used by this process."""


def pin(cpus: Iterable[int], pid: int = 0, what: str = "cpus") -> list[int]:
    """Restrict ``pid`` (0 = this process) to ``cpus``; return the CPUs obtained."""
    wanted = set(cpus)
    allowed = sorted(os.sched_getaffinity(pid))
    missing = sorted(wanted - set(allowed))
    if missing or not wanted:
        raise PinningError(f"{what}: {sorted(wanted)} not available "
                           f"(available: {', '.join(map(str, allowed))})")
    try:
        os.sched_setaffinity(pid, wanted)
    except OSError as exc:
        raise PinningError(f"{what}: cannot pin to {sorted(wanted)}: {exc.strerror}") from None
    return sorted(os.sched_getaffinity(pid))


def affinity(pid: int = 0) -> list[int]:
    """CPUs ``pid`` may run on now."""
    return sorted(os.sched_getaffinity(pid))


def current_cpu() -> int:
    """The CPU this process is running on at this instant (-1 if unknown)."""
    try:
        with open("/proc/self/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[36])
    except (OSError, ValueError, IndexError):
        return -1
