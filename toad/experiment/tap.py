"""Runs against Linux over a TAP device (nic.kind: tap).

toad's stack (the engine in offload mode, the worker itself in inhost mode) owns the
TAP device; the TAP NIC moves the device into the namespace ``nic.tap.netns``
(toad.netns), where the Linux kernel's TCP is the peer. Per chunk size two runs are
made, as TOAD measured its machine's two sides:

- toad sends: toad's worker connects to the peer, which receives;
- toad receives: the peer connects to toad's worker and sends.

Where toad sends, the peer is the kernel-mode worker (``python -m host.worker
--kernel-address``) run inside the namespace with ``ip netns exec``: it keeps the
CRC-32 of every byte like toad's own worker. Where toad receives, the peer is iperf 2
when it is installed (``workload.peer: auto`` or ``iperf``; rr and crr always use the
worker): host/iperf_peer.py feeds it the stream toad's receiver expects through a FIFO
(``iperf -c -F``), and the receiver checks every byte after iperf's own header. iperf 2
cannot be the receiver: its server does not look at the bytes it gets, so nothing
could check them. ``details.tap.peer`` says which program each run used.

In the run JSON "send" and "recv" are the sending and receiving processes; the
details name the side that was toad's ("toad_side"). A namespace this run created
and a child did not remove is removed on the way out.
"""
from __future__ import annotations

import subprocess
from typing import Callable

from toad.config import Config, ConfigError
from toad.doctor import iperf_version

from . import capture
from .figures import STREAM_HEADER_MAX
from .launcher import Launcher, RunFailed
from .runner import (START_TIMEOUT_S, collect, effective, instance_name, note_leftovers,
                     prepare, start_engine, start_worker, worker_cpus)


PYTHON_PEER = "python (kernel-mode worker in netns)"
IPERF_PEER = "iperf 2 (iperf -c -F, fed toad's stream; host/iperf_peer.py)"


def ip(*args: str) -> str:
    try:
        done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RunFailed(f"ip {' '.join(args)}: {exc}") from None
    return done.stdout if done.returncode == 0 else ""


def namespaces() -> set[str]:
    return {line.split()[0] for line in ip("netns", "list").splitlines() if line.strip()}


def peer_ready(config: Config) -> bool:
    """The namespace exists and the peer's address is configured in it."""
    tap = config.nic.tap
    return tap.netns in namespaces() and f"inet {tap.peer_address}/" in ip(
        "-n", tap.netns, "-4", "addr", "show")


def iperf_sends(config: Config) -> bool:
    """Whether iperf 2 is the sender of the run where toad receives."""
    peer = config.workload.peer
    if peer == "python" or config.workload.kind != "bulk":
        return False
    version = iperf_version()
    if version is not None and version.startswith("iperf version 2"):
        return True
    if peer == "iperf":
        raise ConfigError(f"workload.peer: iperf 2 is not installed ({version or 'no iperf'}); "
                          "apt-get install iperf, or use peer: auto")
    return False


def run_tap(config: Config, mode: str, unit: int,
            tick: Callable[[bool], None] = None) -> list[tuple[dict, dict]]:
    iperf = iperf_sends(config)
    netns = config.nic.tap.netns
    existed = netns in namespaces()
    try:
        return [tap_once(config, mode, unit, side, tick, iperf) for side in ("send", "recv")]
    finally:
        # the runs' namespace, if they created it and its owner could not remove it
        # (killed, or a second run adopted the first one's); never any other name
        if not existed and netns in namespaces():
            ip("netns", "delete", netns)


def tap_once(config: Config, mode: str, unit: int, toad_side: str, tick,
             iperf: bool = False) -> tuple[dict, dict]:
    run_config = effective(config, mode, unit, instance_name(config))
    if run_config.nic.pcap:                # the point's two runs: a file each
        run_config = capture.for_run(run_config, capture.point_path(
            run_config.nic.pcap, f"toad-{toad_side}"))
    tap = run_config.nic.tap
    peer = ("ip", "netns", "exec", tap.netns)
    with Launcher(run_config.name) as launcher:
        path = prepare(launcher, run_config)
        engine = start_engine(launcher, run_config, path) if mode == "offload" else None
        send_cpu, recv_cpu = worker_cpus(run_config)
        go = launcher.workdir / "peer.ready"
        if toad_side == "send":
            send = start_worker(launcher, path, "send", send_cpu, extra=(
                "--connect-to", tap.peer_address, "--wait-for", str(go)))
            launcher.wait_until(lambda: peer_ready(run_config), START_TIMEOUT_S,
                                f"the TAP device in namespace {tap.netns}")
            recv = start_worker(launcher, path, "recv", recv_cpu, prefix=peer, extra=(
                "--kernel-address", tap.peer_address, "--ready", str(go)))
        else:
            iperf = iperf and toad_side == "recv"
            recv = start_worker(launcher, path, "recv", recv_cpu, extra=(
                ("--stream-header", str(STREAM_HEADER_MAX)) if iperf else ()))
            launcher.wait_until((launcher.workdir / "recv.ready").exists, START_TIMEOUT_S,
                                "toad's receiving worker to listen")
            launcher.wait_until(lambda: peer_ready(run_config), START_TIMEOUT_S,
                                f"the TAP device in namespace {tap.netns}")
            toad_address = tap.address.split("/")[0]
            if iperf:
                send = start_worker(launcher, path, "send", send_cpu, prefix=peer,
                                    extra=("--connect-to", toad_address),
                                    module="host.iperf_peer")
            else:
                send = start_worker(launcher, path, "send", send_cpu, prefix=peer, extra=(
                    "--kernel-address", tap.peer_address, "--connect-to", toad_address))
        run, details = collect(launcher, run_config, send, recv, engine, tick)
    note_leftovers(launcher, details)
    details["tap"] = {"toad_side": toad_side,
                      "peer": IPERF_PEER if iperf and toad_side == "recv" else PYTHON_PEER,
                      "netns": tap.netns, "device": tap.device, "mtu": tap.mtu}
    return run, details
