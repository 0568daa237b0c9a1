"""Hand-built frames for talking to Linux over a TAP without toad's stack."""
from __future__ import annotations

import select
import socket
import struct
import time

from engine.nic import virtio

BROADCAST = b"\xff" * 6


def ip_bytes(text: str) -> bytes:
    return socket.inet_aton(text.split("/")[0])


def arp_request(src_mac: bytes, src_ip: str, target_ip: str) -> bytearray:
    body = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, src_mac, ip_bytes(src_ip),
                       b"\0" * 6, ip_bytes(target_ip))
    return bytearray(BROADCAST + src_mac + b"\x08\x06" + body)


def parse_arp(frame) -> tuple[int, bytes, str, str] | None:
    """(opcode, sender MAC, sender IP, target IP) of an ARP frame, else None."""
    data = bytes(frame)
    if len(data) < 42 or data[12:14] != b"\x08\x06":
        return None
    op, sha, spa, _tha, tpa = struct.unpack("!6xH6s4s6s4s", data[14:42])
    return op, sha, socket.inet_ntoa(spa), socket.inet_ntoa(tpa)


def tcp_segment(dst_mac: bytes, src_mac: bytes, src_ip: str, dst_ip: str, sport: int,
                dport: int, seq: int, flags: int, payload: bytes, full_checksum: bool) -> bytearray:
    """Ethernet + IPv4 + TCP; the TCP checksum is complete or partial (pseudo-header)."""
    tcp_len = 20 + len(payload)
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + tcp_len, 7, 0x4000, 64, 6, 0,
                               ip_bytes(src_ip), ip_bytes(dst_ip)))
    ip[10:12] = (0xFFFF - virtio.sum16(ip)).to_bytes(2, "big")
    tcp = bytearray(struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, flags, 65535, 0, 0))
    pseudo = ip_bytes(src_ip) + ip_bytes(dst_ip) + struct.pack("!BBH", 0, 6, tcp_len)
    tcp[16:18] = virtio.sum16(pseudo).to_bytes(2, "big")
    frame = bytearray(dst_mac + src_mac + b"\x08\x00") + ip + tcp + payload
    if full_checksum:
        virtio.complete_checksum(frame, 34, 16)
    return frame


def parse_tcp(frame) -> dict | None:
    data = bytes(frame)
    if len(data) < 54 or data[12:14] != b"\x08\x00" or data[23] != 6:
        return None
    ihl = (data[14] & 0x0F) * 4
    sport, dport, seq, ack, off, flags = struct.unpack("!HHIIBB", data[14 + ihl:14 + ihl + 14])
    return {"sport": sport, "dport": dport, "seq": seq, "ack": ack, "flags": flags,
            "src": socket.inet_ntoa(data[26:30]), "len": len(data)}


def wait_for(nic, match, timeout: float = 5.0):
    """Receive from ``nic`` until ``match(frame, csum_ok)`` returns a value (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for frame, ok in nic.receive(time.monotonic()):
            found = match(bytes(frame), ok)
            if found is not None:
                return found
        select.select([nic.fileno()], [], [], 0.05)
    raise AssertionError("expected frame not seen within the timeout")
