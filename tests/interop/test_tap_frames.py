"""The TAP NIC against Linux with hand-built frames (no toad stack involved):
ARP answered, ping from the namespace seen, and toad's transmit offloads (partial
checksum, GSO super-frame) accepted by the kernel, proven by its RST replies."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from engine.nic import tap as tapmod
from tests.conftest import requires_tap
from tests.interop import rawframes as raw
from tests.nicframes import Frame, FrameNic
from toad.config import TapConfig
from toad.netns import list_netns

pytestmark = [pytest.mark.interop, requires_tap]
PSH, RST, ACK = 0x08, 0x04, 0x10


@pytest.fixture(params=[("csum", "tso"), ()], ids=["offloads", "no-offloads"])
def nic(request):
    tag = os.getpid() % 100000
    config = TapConfig(netns=f"toad-tf{tag}", device=f"toadtf{tag}", mtu=1500,
                       offloads=request.param)
    with tapmod.TapNic(config) as nic:
        yield FrameNic(nic)
    assert config.netns not in list_netns()


def resolve_peer(nic) -> bytes:
    cfg = nic.config
    nic.send([Frame(raw.arp_request(nic.features.mac, cfg.address, cfg.peer_address))])

    def reply(frame, _ok):
        arp = raw.parse_arp(frame)
        if arp and arp[0] == 2 and arp[2] == cfg.peer_address:
            return arp[1]
    return raw.wait_for(nic, reply)


def test_arp_request_answered(nic):
    mac = resolve_peer(nic)
    assert len(mac) == 6 and mac != nic.features.mac
    assert nic.counters["tx_frames"] == 1 and nic.counters["rx_frames"] >= 1
    assert nic.device_io.vnet == bool(nic.config.offloads)   # no header without offloads


def test_traffic_from_namespace_reaches_the_tap(nic):
    """A datagram sent by Linux to toad's address first shows up as Linux's ARP request."""
    cfg = nic.config
    send = ("import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
            f"s.sendto(b'hi', ('{cfg.address.split('/')[0]}', 9))")
    ping = subprocess.Popen(["ip", "netns", "exec", cfg.netns, sys.executable, "-c", send],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def request(frame, _ok):
            arp = raw.parse_arp(frame)
            if arp and arp[0] == 1 and arp[3] == cfg.address.split("/")[0]:
                return arp
        op, _mac, sender, _target = raw.wait_for(nic, request)
        assert sender == cfg.peer_address
    finally:
        ping.kill()
        ping.wait()


def rst_for(nic, payload: bytes, frame: Frame, seq: int) -> dict:
    nic.send([frame])

    def rst(data, _ok):
        seg = raw.parse_tcp(data)
        if seg and seg["flags"] & RST and seg["dport"] == 40000:
            return seg
    return raw.wait_for(nic, rst)


@pytest.mark.parametrize("size", [100, 30000])
def test_transmit_offloads_accepted_by_linux(nic, size):
    """Linux answers a data segment to a closed port with RST, ack = seq + length: only
    a segment with a good checksum gets one, and only a whole super-frame acks all."""
    cfg, mac = nic.config, resolve_peer(nic)
    payload = bytes((i * 13) & 0xFF for i in range(size))
    seq = 0xFFFFF000                     # the acknowledgement wraps past 2**32
    offloaded = nic.features.tx_csum
    data = raw.tcp_segment(mac, nic.features.mac, cfg.address, cfg.peer_address, 40000, 9,
                           seq, PSH, payload, full_checksum=not offloaded)
    if size > 1460 and not nic.features.tso:
        pytest.skip("a super-frame needs TSO")
    frame = Frame(data, csum_start=34 if offloaded else 0, csum_offset=16 if offloaded else 0,
                    gso_size=1448 if size > 1460 else 0)
    seg = rst_for(nic, payload, frame, seq)
    assert seg["ack"] == (seq + size) % 2**32
    if size > 1460:
        assert nic.counters["tx_gso_frames"] == 1


def test_missing_offload_is_done_in_software():
    """A partial-checksum frame sent through a NIC without checksum offload is
    completed by the NIC object itself, and Linux accepts it."""
    tag = os.getpid() % 100000
    config = TapConfig(netns=f"toad-tg{tag}", device=f"toadtg{tag}", offloads=())
    with tapmod.TapNic(config) as tap:
        nic = FrameNic(tap)
        mac = resolve_peer(nic)
        data = raw.tcp_segment(mac, nic.features.mac, config.address, config.peer_address,
                               40000, 9, 5, PSH, b"x" * 200, full_checksum=False)
        seg = rst_for(nic, b"", Frame(data, csum_start=34, csum_offset=16), 5)
        assert seg["ack"] == 205


def test_bad_config_is_refused_before_anything_is_created():
    with pytest.raises(tapmod.TapError, match="tso needs csum"):
        tapmod.offload_flags(("tso",))
