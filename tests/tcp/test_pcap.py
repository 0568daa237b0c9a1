"""The pcap wrapper writes files tshark reads without a malformed frame, and
completes partial checksums in what it records."""
from __future__ import annotations

import shutil
import struct
import subprocess

import pytest

from engine.nic.loopback import LoopbackWire
from engine.nic.pcap import PcapNic
from engine.tcp.checksum import pseudo_sum
from engine.tcp.wire import arp, ethernet, icmp, ipv4, tcp
from engine.tcp.wire.tcp import ACK, PSH, TcpRepr
from tests.nicframes import Frame, FrameNic

MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")
IP_A, IP_B = ipv4.aton("10.0.0.1"), ipv4.aton("10.0.0.2")

needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")


def arp_frame() -> Frame:
    data = bytearray(14 + 28)
    ethernet.emit(ethernet.EthernetRepr(ethernet.BROADCAST, MAC_A, ethernet.ETHERTYPE_ARP),
                  memoryview(data))
    arp.emit(arp.ArpRepr(arp.OP_REQUEST, MAC_A, IP_A, bytes(6), IP_B), memoryview(data)[14:])
    return Frame(data)


def icmp_frame() -> Frame:
    echo = icmp.IcmpRepr(icmp.ECHO_REQUEST, 0, 1, 1, b"ping" * 8)
    data = bytearray(14 + 20 + icmp.buffer_len(echo))
    ethernet.emit(ethernet.EthernetRepr(MAC_B, MAC_A, ethernet.ETHERTYPE_IPV4), memoryview(data))
    ipv4.emit(ipv4.Ipv4Repr(IP_A, IP_B, ipv4.PROTO_ICMP, icmp.buffer_len(echo)),
              memoryview(data)[14:])
    icmp.emit(echo, memoryview(data)[34:])
    return Frame(data)


def partial_tcp_frame(payload: bytes) -> Frame:
    seg = TcpRepr(40000, 5001, 1000, 1, ACK | PSH, 100, timestamp=(5, 6), payload=payload)
    length = tcp.buffer_len(seg)
    data = bytearray(34 + length)
    ethernet.emit(ethernet.EthernetRepr(MAC_B, MAC_A, ethernet.ETHERTYPE_IPV4), memoryview(data))
    ipv4.emit(ipv4.Ipv4Repr(IP_A, IP_B, ipv4.PROTO_TCP, length), memoryview(data)[14:])
    size = tcp.emit(seg, memoryview(data)[34:])
    data[34 + size:] = payload
    data[50:52] = pseudo_sum(IP_A, IP_B, 6, length).to_bytes(2, "big")
    return Frame(data, csum_start=34, csum_offset=16)


def test_file_layout_and_completed_checksum(tmp_path):
    path = tmp_path / "cap.pcap"
    wire = LoopbackWire(clock=lambda: 0.0)
    nic = FrameNic(PcapNic(wire.attach(MAC_A), str(path), clock=lambda: 1234.5))
    frame = partial_tcp_frame(b"x" * 101)
    nic.send([frame])
    (received, csum_ok), = nic.receive(0.0)
    nic.close()
    raw = path.read_bytes()
    magic, major, minor, _, _, snaplen, link = struct.unpack_from("<IHHiIII", raw)
    assert (magic, major, minor, link) == (0xA1B2C3D4, 2, 4, 1) and snaplen >= 65549
    sec, usec, kept, orig = struct.unpack_from("<IIII", raw, 24)
    assert (sec, usec, kept, orig) == (1234, 500000, len(frame.data), len(frame.data))
    recorded = raw[40:40 + kept]
    # the recorded TCP segment verifies; the frame in its slot still holds the partial sum
    tcp.parse(memoryview(recorded[34:]), pseudo_sum(IP_A, IP_B, 6, len(recorded) - 34))
    assert csum_ok and received[50:52] == pseudo_sum(IP_A, IP_B, 6, len(recorded) - 34).to_bytes(2, "big")
    assert len(raw) == 24 + 16 + kept            # it came back: recorded once, on arrival


def test_the_wire_counters_stay_visible_through_a_capture(tmp_path):
    wire = LoopbackWire(clock=lambda: 0.0)
    inner = wire.attach(MAC_A)
    inner.wire_counters = wire.counters          # as the engine's build_nic sets them
    nic = FrameNic(PcapNic(inner, str(tmp_path / "cap.pcap")))
    nic.send([partial_tcp_frame(b"x")])
    nic.close()
    assert nic.nic.wire_counters is wire.counters and wire.counters["sent"] == 1


@needs_tshark
def test_tshark_reads_it_with_no_malformed_frame(tmp_path):
    path = tmp_path / "cap.pcap"
    wire = LoopbackWire(clock=lambda: 0.0)
    nic = FrameNic(PcapNic(wire.attach(MAC_A), str(path), clock=lambda: 1.0))
    nic.send([arp_frame(), icmp_frame(), partial_tcp_frame(b"y" * 1000),
              partial_tcp_frame(b"z" * 60000)])
    assert len(nic.receive(0.0)) == 4                # a one-ended wire: all come back
    nic.close()
    run = lambda *args: subprocess.run(["tshark", "-n", "-r", str(path), *args],
                                       capture_output=True, text=True, timeout=60)
    listing = run()
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.strip().splitlines()
    assert len(lines) == 4
    assert "ARP" in lines[0] and "ICMP" in lines[1] and "TCP" in lines[2]
    assert run("-Y", "_ws.malformed").stdout.strip() == ""
    checked = run("-o", "tcp.check_checksum:TRUE", "-Y", "tcp.checksum.status == 0")
    assert checked.stdout.strip() == ""           # no bad TCP checksum either


@needs_tshark
def test_capture_of_a_whole_connection_is_clean(tmp_path):
    from toad.config import TcpConfig
    from .test_stack_support import PEER_IP, Transfer, make_pair, run
    a, b, wire, clock = make_pair(TcpConfig(time_wait_s=1.0), mtu=1500)
    path = tmp_path / "conn.pcap"
    a.nic = PcapNic(a.nic, str(path), clock=clock)
    transfer = Transfer(a, b, PEER_IP, bytes(range(256)) * 400, clock)
    run([a, b], clock, transfer.done, transfer.tick)
    a.nic.close()
    run_shark = lambda *args: subprocess.run(["tshark", "-n", "-r", str(path), *args],
                                             capture_output=True, text=True, timeout=60)
    assert run_shark("-Y", "_ws.malformed").stdout.strip() == ""
    bad = run_shark("-o", "tcp.check_checksum:TRUE", "-Y", "tcp.checksum.status == 0")
    sent = run_shark("-Y", "ip.src == 10.0.0.1 && tcp.len > 0")
    assert bad.stdout.strip() == "" and len(sent.stdout.splitlines()) >= 100000 // 1460
    handshake = run_shark("-Y", "tcp.flags.syn == 1").stdout.splitlines()
    assert len(handshake) == 2                       # SYN and SYN-ACK
