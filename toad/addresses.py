"""IPv4 addresses as the host side's socket APIs take them.

Both socket layers (offloaded and in-host) accept Python's ``(host, port)`` pairs and
hand the stack or the engine an ``int`` address; this is the one place that parses
them. The engine's wire code keeps its own copy-free helpers in engine.tcp.wire.ipv4.
"""
from __future__ import annotations

import os
import socket


def aton(text: str) -> int:
    """Dotted quad to int (host order); ValueError when it is not one."""
    parts = text.split(".")
    if len(parts) != 4 or not all(p.isdigit() and int(p) < 256 for p in parts):
        raise ValueError(f"{text!r} is not a dotted IPv4 address")
    return int.from_bytes(bytes(int(p) for p in parts), "big")


def ntoa(address: int) -> str:
    return ".".join(str(b) for b in address.to_bytes(4, "big"))


def parse_address(address, what: str) -> tuple[int, int]:
    """(ip int, port) from a (host, port) pair; 0 for "" / "0.0.0.0".

    Dotted quads and "localhost" only (toad has no name service): anything else is a
    ``socket.gaierror`` as Python's socket module raises for an unknown name.
    """
    if not isinstance(address, tuple) or len(address) != 2:
        raise TypeError(f"{what} address must be a (host, port) tuple, got {address!r}")
    host, port = address
    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise OverflowError(f"{what}: port must be 0-65535, got {port!r}")
    if host in ("", "0.0.0.0"):
        return 0, port
    if host == "localhost":
        host = "127.0.0.1"
    try:
        return aton(host), port
    except (ValueError, TypeError, AttributeError):
        raise socket.gaierror(socket.EAI_NONAME,
                              f"{what}: {host!r} is not a dotted IPv4 address "
                              "(toad takes IPv4 addresses only)") from None


def pid_alive(pid: int) -> bool:
    """True when process ``pid`` exists (0 is never alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
