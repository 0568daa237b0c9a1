"""Shared-memory helpers (toad/shm.py): mode 0600, exclusive creation, signals."""
from __future__ import annotations

import os
import signal
import stat
from pathlib import Path

import pytest

from toad.shm import Segment, ShmError, StopSignals, create_semaphore, unlink_semaphore


def test_segment_is_private_and_exclusive():
    name = f"/toad-test{os.getpid()}-seg"
    seg = Segment(name, 8192, create=True)
    try:
        mode = stat.S_IMODE(os.stat(Path("/dev/shm") / name[1:]).st_mode)
        assert mode == 0o600
        with pytest.raises(ShmError, match="already exists"):
            Segment(name, 8192, create=True)
        other = Segment(name)
        other.map[0:4] = b"toad"
        assert seg.map[0:4] == b"toad"
        other.close()
    finally:
        seg.close()
        seg.unlink()
    with pytest.raises(ShmError, match="does not exist"):
        Segment(name)


def test_a_segment_not_sized_yet_is_not_there_yet():
    """Between its creator's shm_open and ftruncate a segment is empty: an opener
    (wait_engine_ready polling the OE memory) gets ShmError and retries, no crash."""
    import posix_ipc
    from toad.engine_stats import EngineNotRunning, OeMemory
    from toad import layout
    name = f"t{os.getpid()}empty"
    shm = posix_ipc.SharedMemory(layout.oe_name(name), posix_ipc.O_CREX, mode=0o600)
    shm.close_fd()
    try:
        with pytest.raises(ShmError, match="is empty"):
            Segment(layout.oe_name(name), read_only=True)
        with pytest.raises(EngineNotRunning):
            OeMemory(name, read_only=True)
    finally:
        shm.unlink()


def test_semaphore_creation_claims_a_name():
    name = f"/toad-test{os.getpid()}-sem"
    sem = create_semaphore(name)
    try:
        with pytest.raises(ShmError):
            create_semaphore(name)
    finally:
        sem.close()
        assert unlink_semaphore(name)
    assert not unlink_semaphore(name)


def test_stop_signals_flag_and_interrupt():
    previous = signal.getsignal(signal.SIGTERM)
    with StopSignals() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.stopped and stop.signal == signal.SIGTERM
    with pytest.raises(KeyboardInterrupt):
        with StopSignals(raise_interrupt=True):
            os.kill(os.getpid(), signal.SIGHUP)
    assert signal.getsignal(signal.SIGTERM) == previous   # handlers restored
