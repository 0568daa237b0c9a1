"""`toad nc` in the tap topology against socat, Linux's netcat-like tool, both ways."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import requires_tap
from tests.interop.conftest import need_tool
from toad.netns import list_netns, run_ip

pytestmark = [pytest.mark.interop, requires_tap]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def toad_nc(netns: str, device: str, *args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "host.nc", "--set", "nic.kind=tap",
                             "--set", f"nic.tap.netns={netns}", "--set",
                             f"nic.tap.device={device}", "--set", "tcp.time_wait_s=0.2", *args],
                            cwd=ROOT, **kwargs)


def in_netns(netns: str, argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen(["ip", "netns", "exec", netns, "timeout", "60", *argv],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            proc.kill()
    proc.wait()


def listening(netns: str, port: int) -> bool:
    """A TCP socket in LISTEN (state 0A) on ``port`` inside the namespace."""
    table = subprocess.run(["ip", "netns", "exec", netns, "cat", "/proc/net/tcp"],
                           capture_output=True, text=True, timeout=10).stdout
    return any(f":{port:04X}" in line.split()[1] and line.split()[3] == "0A"
               for line in table.splitlines()[1:] if len(line.split()) > 3)


def test_socat_sends_to_toad_nc(tmp_path):
    need_tool("socat")
    tag = os.getpid() % 100000
    netns, device = f"toad-ns{tag}", f"toadns{tag}"
    data = os.urandom(10_000_000)
    (tmp_path / "in").write_bytes(data)
    with open(tmp_path / "out", "wb") as out:
        nc = toad_nc(netns, device, "--listen", "5001", stdin=subprocess.DEVNULL, stdout=out,
                     stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while device not in run_ip(["-n", netns, "link"], check=False).stdout:
            assert time.monotonic() < deadline and nc.poll() is None, "toad nc did not start"
            time.sleep(0.05)
        socat = in_netns(netns, ["socat", "-u", f"FILE:{tmp_path / 'in'}",
                                 "TCP:10.77.0.2:5001,retry=100,interval=0.1"])
        try:
            assert socat.wait(timeout=60) == 0, socat.stderr.read()
            assert nc.wait(timeout=60) == 0, nc.stderr.read()
        finally:
            stop(socat)
            stop(nc)
            socat.stderr.close()
            nc.stderr.close()
    assert (tmp_path / "out").read_bytes() == data
    assert netns not in list_netns()


def test_toad_nc_sends_to_socat(tmp_path):
    need_tool("socat")
    tag = os.getpid() % 100000
    netns, device = f"toad-nt{tag}", f"toadnt{tag}"
    data = os.urandom(10_000_000)
    (tmp_path / "in").write_bytes(data)
    run_ip(["netns", "add", netns])         # socat listens before toad's link arrives
    try:
        socat = in_netns(netns, ["socat", "-u", "TCP-LISTEN:5001,reuseaddr",
                                 f"CREATE:{tmp_path / 'out'}"])
        try:
            deadline = time.monotonic() + 20
            while not listening(netns, 5001):
                assert time.monotonic() < deadline, "socat did not listen"
                time.sleep(0.05)
            with open(tmp_path / "in", "rb") as stdin:
                nc = toad_nc(netns, device, "10.77.0.1", "5001", stdin=stdin,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                try:
                    assert nc.wait(timeout=60) == 0, nc.stderr.read()
                finally:
                    stop(nc)
                    nc.stderr.close()
            assert socat.wait(timeout=30) == 0, socat.stderr.read()
        finally:
            stop(socat)
            socat.stderr.close()
        assert (tmp_path / "out").read_bytes() == data
    finally:
        run_ip(["netns", "del", netns], check=False)
