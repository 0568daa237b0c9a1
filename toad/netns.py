"""Network namespaces for the Linux side of a TAP link.

toad's TAP NIC keeps the device's file descriptor (toad's side of the wire) and moves
the network device itself into a namespace, where the Linux kernel's TCP is the peer:

    toad process --fd--> /dev/net/tun <==> toad0 (in netns toad-peer, 10.77.0.1/24)

The namespace is created when absent and removed on close only when toad created it.
It has no route out: only the connected route of the TAP link, and nothing else is
placed in it. Cleanup runs on every exit path: ``close()`` (also a context manager),
an ``atexit`` hook for whatever is still open, and :func:`install_signal_cleanup`
turning SIGTERM/SIGHUP into SystemExit so ``finally`` blocks run. Used by the TAP NIC,
the in-host runner, the interop tests and the launcher; only stdlib and ``ip``.
"""
from __future__ import annotations

import atexit
import ipaddress
import os
import signal
import subprocess
import threading
from typing import Sequence

from toad.errors import ToadError

COMMAND_TIMEOUT_S = 20.0
_open: set["PeerNamespace"] = set()
_open_lock = threading.Lock()


class NetnsError(ToadError):
    """A namespace or link operation failed; the message names the command and the fix."""


def run_ip(args: Sequence[str], check: bool = True) -> subprocess.CompletedProcess:
    """Run ``ip ARGS`` with a bounded time; a failure names the command and the fix."""
    argv = ["ip", *args]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    except FileNotFoundError:
        raise NetnsError("the 'ip' command is missing: install iproute2") from None
    except subprocess.TimeoutExpired:
        raise NetnsError(f"'{' '.join(argv)}' did not finish in {COMMAND_TIMEOUT_S:.0f} s") from None
    if check and done.returncode != 0:
        hint = " (needs root or CAP_NET_ADMIN)" if "ermission" in done.stderr else ""
        raise NetnsError(f"'{' '.join(argv)}' failed: {done.stderr.strip()}{hint}")
    return done


def list_netns() -> set[str]:
    out = run_ip(["netns", "list"]).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def peer_interface(address: str, peer_address: str) -> str:
    """The peer's address with the prefix of toad's address ("10.77.0.1/24"); the two
    must share the subnet, or the connected route would not reach toad."""
    mine = ipaddress.IPv4Interface(address)
    peer = ipaddress.IPv4Address(peer_address)
    if peer not in mine.network:
        raise NetnsError(f"nic.tap.peer_address: {peer} is not in toad's subnet {mine.network}")
    if peer == mine.ip:
        raise NetnsError(f"nic.tap.peer_address: {peer} equals toad's own address")
    return f"{peer}/{mine.network.prefixlen}"


class PeerNamespace:
    """One namespace for the Linux side; ``open()`` creates it if absent."""

    def __init__(self, name: str):
        if not name or "/" in name or len(name) > 200:
            raise NetnsError(f"nic.tap.netns: {name!r} is not a valid namespace name")
        self.name = name
        self.created = False
        self.closed = True

    def open(self) -> "PeerNamespace":
        if self.name not in list_netns():
            run_ip(["netns", "add", self.name])
            self.created = True
        self.closed = False
        with _open_lock:
            _open.add(self)
        try:
            run_ip(["-n", self.name, "link", "set", "lo", "up"])
        except BaseException:
            self.close()
            raise
        return self

    def adopt_link(self, device: str, peer_cidr: str, mtu: int) -> None:
        """Move ``device`` into the namespace, address it, set its MTU and bring it up.
        The only route that results is the connected one of ``peer_cidr``."""
        if device in self.links():
            raise NetnsError(f"nic.tap.device: a link named {device!r} already exists in "
                             f"namespace {self.name!r}; choose another device name")
        run_ip(["link", "set", "dev", device, "netns", self.name])
        run_ip(["-n", self.name, "link", "set", "dev", device, "mtu", str(mtu)])
        run_ip(["-n", self.name, "addr", "add", peer_cidr, "dev", device])
        run_ip(["-n", self.name, "link", "set", "dev", device, "up"])
        # A namespace toad did not create might have been given a way out: refuse it.
        if any(r.startswith("default") for r in self.routes()):
            raise NetnsError(f"namespace {self.name!r} has a default route; toad only uses "
                             "namespaces with no route out (remove it or pick another name)")

    def links(self) -> set[str]:
        out = run_ip(["-n", self.name, "-o", "link", "show"]).stdout
        return {line.split(": ")[1].split("@")[0] for line in out.splitlines() if ": " in line}

    def routes(self) -> list[str]:
        out = run_ip(["-n", self.name, "-4", "route", "show", "table", "all"]).stdout
        return [line.strip() for line in out.splitlines()
                if line.strip() and not line.startswith(("local ", "broadcast "))]

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside the namespace (for subprocess)."""
        return ["ip", "netns", "exec", self.name, *argv]

    def close(self) -> None:
        """Remove the namespace if toad created it (idempotent)."""
        if self.closed:
            return
        self.closed = True
        with _open_lock:
            _open.discard(self)
        if self.created:
            self.created = False
            run_ip(["netns", "del", self.name], check=False)

    def __enter__(self) -> "PeerNamespace":
        return self.open() if self.closed else self

    def __exit__(self, *exc) -> None:
        self.close()


@atexit.register
def close_all() -> None:
    """Remove every namespace still open in this process (the last exit path)."""
    with _open_lock:
        pending = list(_open)
    for ns in pending:
        ns.close()


def _exit_on_signal(signum, _frame) -> None:
    raise SystemExit(128 + signum)


def install_signal_cleanup() -> None:
    """Make SIGTERM and SIGHUP unwind like Ctrl-C (``finally`` and atexit run), when
    they still have their default action. Call from a program's main thread."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) == signal.SIG_DFL:
            signal.signal(sig, _exit_on_signal)


def have_net_admin() -> bool:
    """Root and a TUN device: what TAP topologies need."""
    return os.geteuid() == 0 and os.path.exists("/dev/net/tun")
