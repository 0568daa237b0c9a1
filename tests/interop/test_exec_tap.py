"""Unmodified programs under ``toad exec`` on an engine whose NIC is a TAP device, with
Linux's TCP in the namespace on the other side:

- ``python3 -m http.server`` offloaded, a 10 MB file fetched by ``curl`` from the
  namespace (sha256 equal);
- ``urllib.request`` and ``http.client`` offloaded (programs/http_fetch.py), fetching
  the same file from a Linux ``python3 -m http.server`` in the namespace.

``--measure`` shows that the program's sockets went through the engine (its
connections and bytes are counted by the offloaded sockets). Skipped without root and
/dev/net/tun; the namespace goes with the engine (the fixture stops it).
"""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys

import pytest

from tests.conftest import requires_tap
from tests.interop.conftest import need_tool
from tests.interop.test_offload_tap import LINUX_IP, engine  # noqa: F401 (the fixture)
from tests.system.exec_helpers import finished, last_json, program, toad_exec

pytestmark = [pytest.mark.interop, requires_tap]
TOAD_IP = "10.77.0.2"            # nic.tap.address's default
SIZE = 10 << 20


@pytest.fixture
def served(tmp_path):
    """A directory holding one 10 MB file of random bytes, and its sha256."""
    data = os.urandom(SIZE)
    (tmp_path / "big.bin").write_bytes(data)
    os.chmod(tmp_path, 0o755)            # (readable to a server in the namespace)
    return tmp_path, hashlib.sha256(data).hexdigest()


def stop(proc, timeout: float = 30) -> None:
    """SIGINT (http.server exits on KeyboardInterrupt), then SIGKILL if it lingers."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    proc.communicate()


def test_offloaded_http_server_serves_curl_in_the_namespace(engine, served):
    need_tool("curl")
    run = engine("h")
    directory, digest = served
    netns = run.config().nic.tap.netns
    server = toad_exec(run, "python3", "-m", "http.server", "7180", "--bind", "0.0.0.0",
                       "--directory", str(directory), measure=True)
    try:
        assert server.stdout.readline().startswith("Serving HTTP on 0.0.0.0 port 7180"), \
            server.stderr.read()
        out = directory / "fetched.bin"
        curl = subprocess.run(["ip", "netns", "exec", netns, "curl", "-sS", "--fail",
                               "--max-time", "60", "-o", str(out),
                               f"http://{TOAD_IP}:7180/big.bin"],
                              capture_output=True, text=True, timeout=90)
        assert curl.returncode == 0, curl.stderr
        assert hashlib.sha256(out.read_bytes()).hexdigest() == digest
    finally:
        stop(server)
    assert server.returncode == 0
    summary = run.stop()
    assert summary["offload"]["accepted"] == 1


def test_offloaded_urllib_and_http_client_fetch_from_linux(engine, served):
    run = engine("u")
    directory, digest = served
    netns = run.config().nic.tap.netns
    linux = subprocess.Popen(["ip", "netns", "exec", netns, "timeout", "120", sys.executable,
                              "-m", "http.server", "7181", "--bind", LINUX_IP,
                              "--directory", str(directory)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=dict(os.environ, PYTHONUNBUFFERED="1"), start_new_session=True)
    try:
        assert linux.stdout.readline().startswith("Serving HTTP"), linux.stderr.read()
        client = toad_exec(run, "python3", program("http_fetch.py"),
                           f"http://{LINUX_IP}:7181/big.bin", measure=True)
        out, err = finished(client, timeout=120)
    finally:
        os.killpg(linux.pid, signal.SIGKILL)
        linux.communicate()
    report = last_json(out)
    assert report == {"urllib": [SIZE, digest], "http.client": [SIZE, digest], "status": 200}
    assert "2 connections" in err
    received = int(err.split(" bytes sent, ")[1].split(" received")[0])
    assert received > 2 * SIZE
    summary = run.stop()
    assert summary["stack"]["tcp.active_opens"] == 2
