"""Readiness of offloaded sockets' descriptors (host/readiness.py) seen by select,
poll, epoll and selectors, state by state, against Linux: one program
(programs/readiness_states.py) run over kernel sockets and under ``toad exec``;
the two reports must be equal, but for the one documented difference (a socket never
connected: Linux adds HUP, which select() calls readable)."""
from __future__ import annotations

import json
import subprocess
import sys

from tests.system.exec_helpers import finished, last_json, program, toad_exec
from tests.system.test_offload_sockets import engine  # noqa: F401 (the fixture)

STATES = program("readiness_states.py")


def test_every_state_reads_as_over_kernel_sockets(engine):
    run = engine()
    kernel = subprocess.run([sys.executable, STATES, "127.0.0.1", "7311"], capture_output=True,
                            text=True, timeout=120)
    assert kernel.returncode == 0, kernel.stderr
    linux = json.loads(kernel.stdout)
    out, _ = finished(toad_exec(run, "python3", STATES, "127.0.0.1", "7312"))
    toad = last_json(out)
    assert toad.pop("fresh") == {"poll": ["POLLOUT"], "epoll": ["EPOLLOUT"],
                                 "select": [False, True, False], "selectors": [False, True]}
    assert linux.pop("fresh")["poll"] == ["POLLOUT", "POLLHUP"]
    for state in linux:
        assert toad[state] == linux[state], state
    assert set(toad) == set(linux)
    assert toad["reset: SO_ERROR"] == 104 and toad["refused: SO_ERROR"] == 111
