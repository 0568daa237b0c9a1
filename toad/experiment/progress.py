"""A one-line progress display on stderr for long runs (only when stderr is a TTY)."""
from __future__ import annotations

import sys
import time


class Progress:
    """``[2/6] kernel bulk 8 KB  1.2/3.0 s`` rewritten in place, at most 5 times a second."""

    def __init__(self, total_runs: int, stream=None, clock=time.monotonic):
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.total = total_runs
        self.clock = clock
        self.index = 0
        self.label = ""
        self.expected_s = 0.0
        self.started = 0.0
        self.last = 0.0

    def begin(self, label: str, expected_s: float) -> None:
        self.index += 1
        self.label, self.expected_s = label, expected_s
        self.started = self.last = self.clock()
        self._show(force=True)

    def tick(self) -> None:
        self._show()

    def _show(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = self.clock()
        if not force and now - self.last < 0.2:
            return
        self.last = now
        elapsed = now - self.started
        self.stream.write(f"\r[{self.index}/{self.total}] {self.label}  "
                          f"{elapsed:4.1f}/{self.expected_s:.1f} s   ")
        self.stream.flush()

    def done(self) -> None:
        if self.enabled:
            self.stream.write("\r" + " " * 70 + "\r")
            self.stream.flush()
