"""``toad nc --mode offload``: two netcats attached to one engine talk over its internal
wire (a listener and a client of the engine's address); without an engine, one clear
error line."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time

from tests.system.test_offload_sockets import EngineRun


def nc(name: str, *args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "toad", "nc", "--mode", "offload",
                             "--set", f"name={name}", *args], **kwargs)


def test_two_netcats_over_the_engine_wire(tmp_path):
    run = EngineRun([], "nc")
    try:
        data = os.urandom(3 << 20)
        (tmp_path / "in.bin").write_bytes(data)
        with open(tmp_path / "out.bin", "wb") as out:
            listener = nc(run.name, "--listen", "7020", stdin=subprocess.DEVNULL, stdout=out)
            time.sleep(1.0)          # bounded: the client retries below if not yet listening
            for _ in range(20):
                with open(tmp_path / "in.bin", "rb") as src:
                    client = nc(run.name, "10.0.0.1", "7020", stdin=src,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                    _, err = client.communicate(timeout=60)
                if client.returncode == 0:
                    break
                assert b"refused" in err
                time.sleep(0.25)
            assert client.returncode == 0
            assert listener.wait(timeout=60) == 0
        got = (tmp_path / "out.bin").read_bytes()
        assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    finally:
        run.stop()


def test_no_engine_is_one_clear_error():
    done = subprocess.run([sys.executable, "-m", "toad", "nc", "--mode", "offload", "--set",
                           f"name=nosuch{os.getpid()}", "127.0.0.1", "9"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "no engine named" in lines[0] and "toad engine" in lines[0]
