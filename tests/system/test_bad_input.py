"""Bad configs and bad conditions end with one clear line, a non-zero exit and nothing
left behind (the autouse fixture checks processes and /dev/shm)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from .helpers import REPO, SHORT, module_exists, toad


def one_error_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("toad: error: ")
    return lines[0]


@pytest.mark.parametrize("override, words", [
    ("workload.bogus=1", "workload.bogus: unknown key"),
    ("workload.duration_s=fast", "workload.duration_s: 'fast' is not a number"),
    ("engine.cpu=4096", "engine.cpu: 4096 is not an available CPU"),
    ("host.cpus=[0,4096]", "host.cpus[1]: 4096 is not an available CPU"),
    ("mode=teleport", "mode: 'teleport' is not one of"),
])
def test_bad_config_values(override, words):
    line = one_error_line(toad("run", "configs/default.yaml", "--set", override))
    assert words in line


def test_missing_config_file():
    line = one_error_line(toad("compare", "configs/no-such-file.yaml"))
    assert "does not exist" in line


def test_port_in_use_names_the_key_and_the_fix():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        line = one_error_line(toad("run", "configs/default.yaml", "--set", "mode=kernel",
                                   *SHORT, "--set", f"workload.port={port}"))  # last wins
    assert f"workload.port: {port} is in use" in line


def test_tap_without_permission_is_refused_up_front():
    # root without CAP_NET_ADMIN (dropped from the bounding set before exec)
    unprivileged = ["setpriv", "--bounding-set=-net_admin", "--inh-caps=-net_admin"]
    done = subprocess.run([*unprivileged, sys.executable, "-m", "toad", "run",
                           "configs/tap-linux.yaml", *SHORT], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    line = one_error_line(done)
    assert "nic.kind: tap needs" in line


def test_ctrl_c_tears_everything_down(tmp_path):
    """SIGINT to the launcher mid-run: exit 130, no worker, no engine, no temp dir."""
    before = set(os.listdir("/tmp"))
    proc = subprocess.Popen([sys.executable, "-m", "toad", "run", "configs/default.yaml",
                             "--set", "mode=kernel", "--set", "workload.duration_s=30"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not any(n.startswith("toadrun-") for n in set(os.listdir("/tmp")) - before):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    time.sleep(1.0)  # the workers are up and transferring
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert not {n for n in set(os.listdir("/tmp")) - before if n.startswith("toadrun-")}


def children_of(pid: int, needle: str) -> list[int]:
    """Children of ``pid`` whose command line contains ``needle``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode()
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError):
            continue
        if needle in cmd and ppid == pid:
            found.append(int(entry))
    return found


@pytest.mark.skipif(not module_exists("host.sockets"), reason="host/sockets.py not built yet")
@pytest.mark.parametrize("how", ["ctrl-c", "engine killed"])
def test_offload_run_stopped_midway_leaves_nothing(how):
    """Ctrl-C on the launcher, or the engine dying (SIGKILL: it cannot clean up itself):
    one line, non-zero exit, and no process or /dev/shm entry left (fixture checks)."""
    proc = subprocess.Popen([sys.executable, "-m", "toad", "run", "configs/default.yaml",
                             "--set", "mode=offload", "--set", "workload.chunk_bytes=[65536]",
                             "--set", "workload.duration_s=30"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not children_of(proc.pid, "host.worker --config") or len(
            children_of(proc.pid, "--role")) < 2:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    time.sleep(1.0)  # transferring
    if how == "ctrl-c":
        proc.send_signal(signal.SIGINT)
    else:
        (engine,) = children_of(proc.pid, "-m engine")
        os.kill(engine, signal.SIGKILL)
    _out, err = proc.communicate(timeout=60)
    lines = err.strip().splitlines()
    assert proc.returncode != 0 and len(lines) == 1, err
    assert lines[0] == ("toad: interrupted" if how == "ctrl-c"
                        else "toad: error: engine: killed by SIGKILL")
