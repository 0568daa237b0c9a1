"""POSIX shared memory and semaphores, created 0600 and removed on every exit path.

:class:`Segment` creates or attaches a named segment and maps it. The creator
unlinks the name (``unlink()``); ``close()`` only unmaps. Semaphore helpers wrap
posix_ipc the same way. :class:`StopSignals` turns SIGINT/SIGTERM/SIGHUP into a flag
(for loops that poll) or into KeyboardInterrupt (for code that relies on ``finally``),
so that cleanup runs on signals too.
"""
from __future__ import annotations

import mmap
import os
import signal
from typing import Optional

import posix_ipc

from toad.errors import ToadError

MODE = 0o600


class ShmError(ToadError):
    """A shared-memory object could not be created or opened."""


class Segment:
    """A named POSIX shared-memory segment mapped into this process."""

    def __init__(self, name: str, size: int = 0, create: bool = False,
                 read_only: bool = False, keep_fd: bool = False):
        """``keep_fd``: keep the descriptor open (``self.fd``, closed by close()), for
        byte-range locks on the segment; else it is closed once mapped."""
        self.name = name
        self.created = create
        self.fd = -1
        try:
            if create:
                shm = posix_ipc.SharedMemory(name, posix_ipc.O_CREX, mode=MODE, size=size)
            else:
                shm = posix_ipc.SharedMemory(name, read_only=read_only)
        except posix_ipc.ExistentialError as exc:
            what = "already exists" if create else "does not exist"
            raise ShmError(f"shared memory {name} {what} ({exc})") from None
        except posix_ipc.PermissionsError as exc:
            raise ShmError(f"shared memory {name}: permission denied ({exc})") from None
        if not create and shm.size == 0:
            # shm_open then ftruncate: an opener can come between the two
            shm.close_fd()
            raise ShmError(f"shared memory {name} is empty (its creator has not sized it yet)")
        try:
            self.size = shm.size
            self.owner_uid = os.fstat(shm.fd).st_uid
            prot = mmap.PROT_READ if read_only else mmap.PROT_READ | mmap.PROT_WRITE
            self.map = mmap.mmap(shm.fd, shm.size, prot=prot)
            if keep_fd:
                self.fd = os.dup(shm.fd)
        except Exception:
            if create:
                unlink_segment(name)
            raise
        finally:
            shm.close_fd()

    def close(self) -> None:
        """Unmap. Views that still reference the map keep it alive until released."""
        if self.fd >= 0:
            os.close(self.fd)            # (releases the locks taken on it)
            self.fd = -1
        if self.map is None:
            return
        try:
            self.map.close()
        except BufferError:
            pass  # a numpy/memoryview view is still alive; the OS unmaps at exit
        self.map = None

    def unlink(self) -> None:
        unlink_segment(self.name)


def unlink_segment(name: str) -> bool:
    """Remove a segment name; False when it was already gone."""
    try:
        posix_ipc.unlink_shared_memory(name)
        return True
    except posix_ipc.ExistentialError:
        return False


def create_semaphore(name: str) -> posix_ipc.Semaphore:
    """Create a semaphore exclusively (value 0); ShmError if the name exists."""
    try:
        return posix_ipc.Semaphore(name, posix_ipc.O_CREX, mode=MODE, initial_value=0)
    except posix_ipc.ExistentialError:
        raise ShmError(f"semaphore {name} already exists") from None


def open_semaphore(name: str) -> posix_ipc.Semaphore:
    try:
        return posix_ipc.Semaphore(name)
    except posix_ipc.ExistentialError:
        raise ShmError(f"semaphore {name} does not exist") from None


def unlink_semaphore(name: str) -> bool:
    try:
        posix_ipc.unlink_semaphore(name)
        return True
    except posix_ipc.ExistentialError:
        return False


def close_semaphore(sem: Optional[posix_ipc.Semaphore]) -> None:
    if sem is not None:
        try:
            sem.close()
        except posix_ipc.ExistentialError:
            pass


class StopSignals:
    """Catch SIGINT, SIGTERM and SIGHUP for the lifetime of a ``with`` block.

    ``raise_interrupt=False``: the handler only sets ``self.stopped`` (a polling loop
    checks it). ``True``: it raises KeyboardInterrupt so ``finally`` blocks clean up.
    The previous handlers are restored on exit.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self, raise_interrupt: bool = False):
        self.raise_interrupt = raise_interrupt
        self.stopped = False
        self.signal: Optional[int] = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum, _frame) -> None:
        self.stopped = True
        self.signal = signum
        if self.raise_interrupt:
            raise KeyboardInterrupt(signal.Signals(signum).name)

    def __enter__(self) -> "StopSignals":
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
