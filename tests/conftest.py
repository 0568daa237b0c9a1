"""Shared fixtures. The autouse ``no_leftovers`` fixture fails any test that leaves a
toad segment or semaphore in /dev/shm, a child process, a toad network namespace or a
toad network interface behind (ARCHITECTURE.md: a run leaves nothing)."""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from toad.compiled import warm

SHM = Path("/dev/shm")
warm()   # compile (first run) or load every kernel once, before any test process starts


def toad_shm_entries() -> set[str]:
    return {p.name for p in SHM.iterdir() if "toad" in p.name} if SHM.is_dir() else set()


def child_pids(root: int) -> set[int]:
    """Every live descendant of ``root`` (read from /proc, no psutil needed)."""
    parent_of: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] == "Z":
            continue
        parent_of[int(entry.name)] = int(fields[1])
    found, frontier = set(), {root}
    while frontier:
        nxt = {pid for pid, ppid in parent_of.items() if ppid in frontier and pid not in found}
        found |= nxt
        frontier = nxt
    return found


def toad_netns() -> set[str]:
    try:
        out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    except FileNotFoundError:
        return set()
    return {line.split()[0] for line in out.splitlines() if "toad" in line}


def toad_links() -> set[str]:
    try:
        out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    except FileNotFoundError:
        return set()
    names = {line.split(": ")[1].split("@")[0] for line in out.splitlines() if ": " in line}
    return {n for n in names if "toad" in n}


@pytest.fixture(autouse=True)
def no_leftovers():
    shm_before, ns_before, links_before = toad_shm_entries(), toad_netns(), toad_links()
    yield
    deadline = time.monotonic() + 5.0  # children get a bounded grace period to exit
    while True:
        shm = toad_shm_entries() - shm_before
        kids = child_pids(os.getpid())
        if (not shm and not kids) or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    ns, links = toad_netns() - ns_before, toad_links() - links_before
    for pid in kids:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    for name in shm:
        (SHM / name).unlink(missing_ok=True)
    assert not shm, f"test left shared memory behind: {sorted(shm)}"
    assert not kids, f"test left processes behind: {sorted(kids)}"
    assert not ns, f"test left network namespaces behind: {sorted(ns)}"
    assert not links, f"test left network interfaces behind: {sorted(links)}"


def have_root_net() -> bool:
    return os.geteuid() == 0 and Path("/dev/net/tun").exists()


requires_tap = pytest.mark.skipif(not have_root_net(), reason="needs root and /dev/net/tun")
