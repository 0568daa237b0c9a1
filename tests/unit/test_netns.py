"""Namespaces for the Linux side of a TAP: creation, no route out, cleanup paths."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import requires_tap
from toad import netns


def unique(tag: str) -> str:
    return f"toad-t{tag}{os.getpid()}"


def test_peer_interface_uses_toads_prefix():
    assert netns.peer_interface("10.77.0.2/24", "10.77.0.1") == "10.77.0.1/24"
    assert netns.peer_interface("192.168.5.9/30", "192.168.5.10") == "192.168.5.10/30"


@pytest.mark.parametrize("peer, message", [("10.78.0.1", "not in toad's subnet"),
                                           ("10.77.0.2", "equals toad's own")])
def test_peer_interface_rejects(peer, message):
    with pytest.raises(netns.NetnsError, match=message):
        netns.peer_interface("10.77.0.2/24", peer)


def test_bad_names_are_refused():
    for name in ("", "a/b"):
        with pytest.raises(netns.NetnsError, match="nic.tap.netns"):
            netns.PeerNamespace(name)


@requires_tap
def test_create_and_remove():
    name = unique("a")
    with netns.PeerNamespace(name) as ns:
        assert ns.created and name in netns.list_netns()
        assert "lo" in ns.links()
        assert ns.routes() == []           # nothing but lo: no route anywhere
    assert name not in netns.list_netns()


@requires_tap
def test_existing_namespace_is_not_removed():
    name = unique("b")
    netns.run_ip(["netns", "add", name])
    try:
        with netns.PeerNamespace(name) as ns:
            assert not ns.created
        assert name in netns.list_netns()
    finally:
        netns.run_ip(["netns", "del", name], check=False)


@requires_tap
def test_adopted_link_has_only_the_connected_route():
    name, dev = unique("c"), f"toadc{os.getpid() % 100000}"
    with netns.PeerNamespace(name) as ns:
        # a veth pair: the moved end dies with the namespace and takes its twin along
        netns.run_ip(["link", "add", dev, "type", "veth", "peer", "name", dev + "p"])
        ns.adopt_link(dev, "10.77.0.1/24", 9000)
        assert dev in ns.links()
        assert ns.routes() == [r for r in ns.routes() if r.startswith("10.77.0.0/24")]
        assert len(ns.routes()) == 1
        out = netns.run_ip(["-n", name, "link", "show", dev]).stdout
        assert "mtu 9000" in out and "UP" in out
        with pytest.raises(netns.NetnsError, match="already exists"):
            ns.adopt_link(dev, "10.77.0.1/24", 1500)
        # deleting the pair here is synchronous (namespace teardown frees it later)
        netns.run_ip(["-n", name, "link", "del", dev])
    assert name not in netns.list_netns()


@requires_tap
def test_failed_command_names_it():
    with pytest.raises(netns.NetnsError, match="ip link set dev toad-nosuchdev"):
        netns.run_ip(["link", "set", "dev", "toad-nosuchdev", "up"])


CHILD = """
import sys, time
from toad import netns
netns.install_signal_cleanup()
ns = netns.PeerNamespace(sys.argv[1]).open()
{finish}
"""


@requires_tap
@pytest.mark.parametrize("how", ["sigterm", "sigint", "exception", "exit"])
def test_cleanup_on_every_exit_path(how):
    name = unique(how[:3])
    finish = {"sigterm": "print('up', flush=True); time.sleep(30)",
              "sigint": "print('up', flush=True); time.sleep(30)",
              "exception": "raise RuntimeError('boom')",
              "exit": "sys.exit(0)"}[how]
    child = subprocess.Popen([sys.executable, "-c", CHILD.format(finish=finish), name],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        if how.startswith("sig"):
            assert child.stdout.readline().strip() == "up"
            assert name in netns.list_netns()
            child.send_signal(signal.SIGTERM if how == "sigterm" else signal.SIGINT)
        child.wait(timeout=20)
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
        child.stderr.close()
    deadline = time.monotonic() + 5
    while name in netns.list_netns() and time.monotonic() < deadline:
        time.sleep(0.05)
    leftover = name in netns.list_netns()
    if leftover:
        netns.run_ip(["netns", "del", name], check=False)
    assert not leftover
