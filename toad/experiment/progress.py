"""Progress of a command's runs on stderr.

On a terminal: one line rewritten in place, at most 5 times a second::

    [2/6] kernel bulk 8 KB  starting
    [2/6] kernel bulk 8 KB  1.2/3.0 s
    [2/6] kernel bulk 8 KB  3.0/3.0 s finishing

The seconds count measured time only (warm-up + duration, from when the sending
worker's workload begins), so they never pass the total; before that the run is
"starting" (processes, copy calibration, connection), after it "finishing".
Elsewhere (CI, ssh without a terminal, a log file): one line as each run ends::

    [2/6] kernel bulk 8 KB: 9.41 Gb/s, 4.2 s in all
"""
from __future__ import annotations

import sys
import time
from typing import Optional


class Progress:
    def __init__(self, total_runs: int, stream=None, clock=time.monotonic,
                 live: Optional[bool] = None):
        self.stream = stream if stream is not None else sys.stderr
        if live is None:
            live = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.live = live
        self.total = total_runs
        self.clock = clock
        self.index = 0
        self.label = ""
        self.expected_s = 0.0
        self.began = 0.0
        self.measured_from: Optional[float] = None
        self.last = 0.0

    def begin(self, label: str, expected_s: float) -> None:
        self.index += 1
        self.label, self.expected_s = label, expected_s
        self.began = self.last = self.clock()
        self.measured_from = None
        self._show(force=True)

    def tick(self, measuring: bool = False) -> None:
        """Called while a run goes on; ``measuring``: its workload has begun."""
        if not measuring:
            self.measured_from = None
        elif self.measured_from is None:
            self.measured_from = self.clock()
        self._show()

    def status(self) -> str:
        if self.measured_from is None:
            return "starting"
        elapsed = self.clock() - self.measured_from
        if elapsed >= self.expected_s:
            return f"{self.expected_s:.1f}/{self.expected_s:.1f} s finishing"
        return f"{elapsed:.1f}/{self.expected_s:.1f} s"

    def _show(self, force: bool = False) -> None:
        if not self.live:
            return
        now = self.clock()
        if not force and now - self.last < 0.2:
            return
        self.last = now
        text = f"[{self.index}/{self.total}] {self.label}  {self.status()}"
        self.stream.write("\r" + text.ljust(70))
        self.stream.flush()

    def end(self, outcome: str) -> None:
        """A run ended with ``outcome`` (e.g. its goodput): its line off a terminal."""
        if self.live:
            return
        self.stream.write(f"[{self.index}/{self.total}] {self.label}: {outcome}, "
                          f"{self.clock() - self.began:.1f} s in all\n")
        self.stream.flush()

    def done(self) -> None:
        if self.live:
            self.stream.write("\r" + " " * 70 + "\r")
            self.stream.flush()
