"""toad against Linux programs over a TAP: iperf 2 both ways, ping answered, RST for a
closed port, and toad's own pcap read by tshark without a malformed frame."""
from __future__ import annotations

import select
import subprocess

import pytest

from tests.conftest import requires_tap
from tests.interop.conftest import (LINUX_IP, TOAD_IP, finish, linux, need_tool, python_peer,
                                    tap_network)
from tests.interop.peer import pattern

pytestmark = [pytest.mark.interop, requires_tap]
MB = 1 << 20


def test_iperf_client_to_toad_sink():
    need_tool("iperf")
    with tap_network() as net:
        server = net.socket()
        server.bind(("", 5001))
        server.listen()
        with linux(net, ["iperf", "-c", TOAD_IP, "-p", "5001", "-n", "50M", "-y", "C"]) as iperf:
            server.settimeout(30)
            conn, _ = server.accept()
            conn.settimeout(60)
            total, buf = 0, bytearray(MB)
            while n := conn.recv_into(buf):
                total += n
            conn.close()
            report = finish(net, iperf).splitlines()[-1].split(",")
        assert total == 50 * MB
        assert int(report[7]) == 50 * MB           # iperf's own count of bytes sent


def test_toad_to_iperf_server():
    need_tool("iperf")
    with tap_network() as net:
        argv = ["iperf", "-s", "-1", "-p", "5002", "-y", "C"]
        with linux(net, argv) as iperf:
            # iperf 2 reads its client's settings from the first bytes: zeros = none
            payload = bytes(128) + bytes(pattern(30 * MB - 128))
            for _ in range(50):                      # until iperf listens
                try:
                    sock = net.create_connection((LINUX_IP, 5002), timeout=5)
                    break
                except ConnectionRefusedError:
                    net.wait(lambda: False, 0.1)
            else:
                pytest.fail("iperf server never listened")
            with sock:
                sock.settimeout(60)
                sock.sendall(payload)
                sock.shutdown(1)
                sock.recv(1)
            # iperf prints its report when the connection ends (it keeps listening)
            assert net.wait(lambda: select.select([iperf.stdout], [], [], 0)[0], 30)
            line = iperf.stdout.readline().strip().split(",")
        # iperf counts what follows the settings' first word
        assert 30 * MB - 128 <= int(line[7]) <= 30 * MB


def test_ping_answered():
    with tap_network() as net:
        with linux(net, python_peer("ping", TOAD_IP)) as ping:
            assert finish(net, ping, 20) == "reply 71 checksum=ok"
        assert net.counters["icmp.echo_replied"] >= 1


def test_syn_to_closed_port_gets_rst():
    with tap_network() as net:
        with linux(net, python_peer("connect", TOAD_IP, 4999)) as peer:
            assert finish(net, peer, 20) == "refused"
        assert net.counters["tcp.rst_closed_port"] >= 1


@pytest.mark.parametrize("offloads", [("csum", "tso"), ()], ids=["tso", "plain"])
def test_pcap_is_clean_for_tshark(tmp_path, offloads):
    need_tool("tshark")
    capture = tmp_path / "toad.pcap"
    with tap_network(1500, offloads, f"nic.pcap={capture}") as net:
        with linux(net, python_peer("ping", TOAD_IP)) as ping:
            finish(net, ping, 20)
        with linux(net, python_peer("recv", 5001), wait_line=True) as peer:
            with net.create_connection((LINUX_IP, 5001), timeout=10) as sock:
                sock.sendall(pattern(2 * MB))
                sock.shutdown(1)
                sock.recv(1)
            finish(net, peer)
    def count(display_filter: str) -> int:
        done = subprocess.run(["tshark", "-n", "-r", str(capture), "-Y", display_filter],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return len(done.stdout.splitlines())
    assert count("tcp") > 50 and count("icmp") >= 2 and count("arp") >= 2
    assert count("_ws.malformed || _ws.expert.severity == error") == 0
    assert count("tcp.flags.syn == 1") >= 2 and count("tcp.flags.fin == 1") >= 2
