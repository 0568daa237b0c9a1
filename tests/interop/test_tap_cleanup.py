"""Every exit path of a TAP user removes what toad created (namespace, device), keeps
what it did not, and bad TAP settings end with one clear line."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from engine.nic.tap import TapError, TapNic
from tests.conftest import requires_tap, toad_links
from tests.nicframes import FrameNic
from toad.config import TapConfig
from toad.netns import NetnsError, list_netns, run_ip

pytestmark = [pytest.mark.interop, requires_tap]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def names(tag: str) -> tuple[str, str]:
    n = os.getpid() % 100000
    return f"toad-c{tag}{n}", f"toadc{tag}{n}"


def nc(netns: str, device: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "host.nc", "--set", "nic.kind=tap", "--set",
            f"nic.tap.netns={netns}", "--set", f"nic.tap.device={device}", *extra]


def wait_until(predicate, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_removes_namespace_and_device(sig):
    netns, device = names("s")
    proc = subprocess.Popen(nc(netns, device, "--listen", "5001"), cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert wait_until(lambda: netns in list_netns() and device in ns_links(netns))
        proc.send_signal(sig)
        code = proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdin.close()
        proc.stderr.close()
    assert code != 0
    assert wait_until(lambda: netns not in list_netns(), 5)
    assert device not in toad_links()


def ns_links(netns: str) -> str:
    return run_ip(["-n", netns, "-o", "link", "show"], check=False).stdout


def test_existing_namespace_is_kept_and_device_goes():
    netns, device = names("k")
    run_ip(["netns", "add", netns])
    try:
        with TapNic(TapConfig(netns=netns, device=device)) as nic:
            assert device in ns_links(netns) and not nic.netns.created
        assert netns in list_netns()
        assert wait_until(lambda: device not in ns_links(netns), 5)
    finally:
        run_ip(["netns", "del", netns], check=False)


def test_bad_peer_address_is_one_clear_line_and_leaves_nothing():
    netns, device = names("b")
    done = subprocess.run(nc(netns, device, "--set", "nic.tap.peer_address=10.9.9.9",
                             "--listen", "5001"),
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "toad: error: nic.tap.peer_address: 10.9.9.9 is not in toad's subnet 10.77.0.0/24"]
    assert netns not in list_netns()


def test_device_name_taken_in_the_namespace():
    netns, device = names("d")
    with TapNic(TapConfig(netns=netns, device=device)):
        with pytest.raises(NetnsError, match="already exists in namespace"):
            TapNic(TapConfig(netns=netns, device=device))
        assert netns in list_netns()          # the failed second user did not remove it
    assert netns not in list_netns()


def test_tso_without_csum_refused():
    netns, device = names("o")
    with pytest.raises(TapError, match="tso needs csum"):
        TapNic(TapConfig(netns=netns, device=device, offloads=("tso",)))
    assert netns not in list_netns()


def test_namespace_deleted_under_a_running_nic_is_a_clear_error():
    netns, device = names("g")
    with TapNic(TapConfig(netns=netns, device=device)) as nic:
        run_ip(["netns", "del", netns])
        assert wait_until(lambda: netns not in list_netns(), 5)
        with pytest.raises(TapError, match=f"TAP device {device}.*namespace"):
            for _ in range(100):
                FrameNic(nic).receive(0.0)
                time.sleep(0.01)
