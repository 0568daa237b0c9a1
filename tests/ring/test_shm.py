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
