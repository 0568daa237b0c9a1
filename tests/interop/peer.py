"""Linux-side helper for the interop tests, run inside the namespace with
``ip netns exec NS python3 peer.py COMMAND ...``. Prints one result line.

    recv PORT                  accept one connection, read to EOF: "<bytes> <sha256>"
    send HOST PORT N           connect, send the test pattern's first N bytes, close
    connect HOST PORT          one connect: "refused" / "connected" / "timeout"
    ping HOST                  one ICMP echo over a raw socket: "reply <n bytes>" / "timeout"
    flood HOST PORT N          N SYNs over a raw socket from on-link addresses nobody
                               answers for (spoofed, so no handshake completes): "sent N"
"""
from __future__ import annotations

import hashlib
import os
import socket
import struct
import sys
import time

BLOCK = 1_048_583          # the pattern repeats with a period no segment size divides


def pattern_block() -> bytes:
    seed = hashlib.sha256(b"toad interop").digest()
    out, counter = bytearray(), 0
    while len(out) < BLOCK:
        out += hashlib.sha256(seed + counter.to_bytes(8, "big")).digest()
        counter += 1
    return bytes(out[:BLOCK])


def pattern(n: int) -> memoryview:
    block = pattern_block()
    return memoryview((block * (n // BLOCK + 1))[:n])


def recv(port: int) -> None:
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", port))
    server.listen(1)
    print("up", flush=True)
    conn, _ = server.accept()
    digest, total = hashlib.sha256(), 0
    while data := conn.recv(1 << 20):
        digest.update(data)
        total += len(data)
    conn.close()
    print(total, digest.hexdigest(), flush=True)


def send(host: str, port: int, n: int) -> None:
    data = pattern(n)
    conn = socket.create_connection((host, port), timeout=30)
    conn.sendall(data)
    conn.shutdown(socket.SHUT_WR)
    conn.recv(1)
    conn.close()
    print(n, hashlib.sha256(data).hexdigest(), flush=True)


def connect(host: str, port: int) -> None:
    try:
        socket.create_connection((host, port), timeout=5).close()
        print("connected", flush=True)
    except ConnectionRefusedError:
        print("refused", flush=True)
    except OSError:
        print("timeout", flush=True)


def icmp_checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return 0xFFFF - total


def ping(host: str) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    ident, payload = os.getpid() & 0xFFFF, b"toad-ping" * 7
    header = struct.pack("!BBHHH", 8, 0, 0, ident, 1)
    packet = struct.pack("!BBHHH", 8, 0, icmp_checksum(header + payload), ident, 1) + payload
    deadline = time.monotonic() + 5
    for _ in range(5):
        sock.sendto(packet, (host, 0))
        sock.settimeout(1.0)
        try:
            while time.monotonic() < deadline:
                data, addr = sock.recvfrom(4096)
                icmp = data[(data[0] & 0x0F) * 4:]
                kind, _code, _sum, got_id, seq = struct.unpack("!BBHHH", icmp[:8])
                if kind == 0 and got_id == ident and icmp[8:] == payload:
                    ok = icmp_checksum(icmp) == 0
                    print(f"reply {len(icmp)} checksum={'ok' if ok else 'bad'}", flush=True)
                    return
        except socket.timeout:
            continue
    print("timeout", flush=True)


def tcp_checksum(src: bytes, dst: bytes, segment: bytes) -> int:
    return icmp_checksum(src + dst + struct.pack("!BBH", 0, 6, len(segment)) + segment)


def flood(host: str, port: int, count: int) -> None:
    """SYNs with the IP header built here (IP_HDRINCL): sources 10.77.0.3-254 (the
    test's link, where only .1 and .2 exist), random source ports and sequence
    numbers, options as Linux sends them (MSS 1460, SACK, timestamps, window scale)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    dst = socket.inet_aton(host)
    prefix = dst[:3]
    options = struct.pack("!BBH", 2, 4, 1460) + b"\x04\x02" + \
        struct.pack("!BBII", 8, 10, 1, 0) + b"\x01\x03\x03\x07"
    for i in range(count):
        src = prefix + bytes([3 + i % 252])
        sport = 1024 + int.from_bytes(os.urandom(2), "big") % 60000
        seq = int.from_bytes(os.urandom(4), "big")
        header = struct.pack("!HHIIBBHHH", sport, port, seq, 0, (5 + len(options) // 4) << 4,
                             0x02, 64240, 0, 0) + options
        segment = header[:16] + struct.pack("!H", tcp_checksum(src, dst, header)) + header[18:]
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(segment), i & 0xFFFF, 0x4000,
                         64, 6, 0, src, dst)
        sock.sendto(ip + segment, (host, 0))
    print("sent", count, flush=True)


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    if command == "recv":
        recv(int(args[0]))
    elif command == "send":
        send(args[0], int(args[1]), int(args[2]))
    elif command == "connect":
        connect(args[0], int(args[1]))
    elif command == "flood":
        flood(args[0], int(args[1]), int(args[2]))
    elif command == "ping":
        ping(args[0])
    else:
        sys.exit(f"unknown command {command}")
