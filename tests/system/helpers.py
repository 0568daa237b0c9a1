"""Running ``toad`` as a user would, in a subprocess with a bounded time."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port nothing listens on now (kernel-mode runs bind 127.0.0.1)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


SHORT = ["--set", "workload.duration_s=0.4", "--set", "workload.warmup_s=0.1",
         "--set", f"workload.port={free_port()}"]


def toad(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "toad", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def run_json(tmp_path: Path, *args: str) -> dict:
    out = tmp_path / "out.json"
    done = toad(*args, "--json", str(out))
    assert done.returncode == 0, done.stderr
    return json.loads(out.read_text())


def module_exists(dotted: str) -> bool:
    return (REPO / (dotted.replace(".", "/") + ".py")).exists()


requires_tap = pytest.mark.skipif(
    not (os.geteuid() == 0 and Path("/dev/net/tun").exists()), reason="needs root and /dev/net/tun")
