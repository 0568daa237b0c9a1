"""``toad doctor``: what this machine allows, each problem with its fix.

    toad doctor [CONFIG]

Checks the CPUs and pinning (an engine CPU of its own), hypervisor steal time on them
(a VM whose CPUs are taken away now and then moves fewer bytes), room in /dev/shm and
what crashed engines and hosts left there (toad/leftovers.py), TAP and
network-namespace permission, and the Linux programs of the TAP tools: iperf 2
(tap-linux's Linux sender where toad receives, the peer of ``toad bench tcp`` and of
the interop tests), socat and tshark (interop tests). Without iperf 2, runs over TAP
use toad's own Python peer in the namespace. Exit status 0 when everything a loopback
run needs is there (TAP, netns and the programs only matter over TAP), 1 otherwise.
"""
from __future__ import annotations

import argparse

import os
import shutil
import subprocess
import time
from typing import Optional, Sequence

from toad import leftovers
from toad.config import Config, ConfigError, load
from toad.experiment.accounting import read_cpu_times

OK, WARN, FAIL = "ok", "warn", "FAIL"
CAP_NET_ADMIN, CAP_SYS_ADMIN = 12, 21


def capability(bit: int) -> bool:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) & (1 << bit))
    except OSError:
        pass
    return False


def check_cpus(config: Config) -> tuple[str, str, str]:
    cpus = sorted(os.sched_getaffinity(0))
    host = [c for c in config.host.cpus if c != config.engine.cpu]
    text = f"CPUs available {cpus}; engine on {config.engine.cpu}, host workers on {list(config.host.cpus)}"
    if len(cpus) < 2:
        return WARN, text, "one CPU: the engine shares it with the host (figures are warned); use a machine with 2+ CPUs"
    if config.engine.cpu in config.host.cpus or not host:
        return WARN, text, "set host.cpus to CPUs other than engine.cpu"
    return OK, text, ""


def check_pinning() -> tuple[str, str, str]:
    mine = os.sched_getaffinity(0)
    try:
        for cpu in sorted(mine):
            os.sched_setaffinity(0, {cpu})
        return OK, "pinning: a process can be pinned to each available CPU", ""
    except OSError as exc:
        return FAIL, f"pinning refused: {exc.strerror}", "run outside a cpuset that forbids sched_setaffinity"
    finally:
        os.sched_setaffinity(0, mine)


STEAL_WARN_PCT = 5.0


def check_steal(config: Config, sample_s: float = 0.5,
                path: str = "/proc/stat") -> tuple[str, str, str]:
    """Steal time (the hypervisor ran something else on a virtual CPU) on the engine
    and host CPUs over ``sample_s`` now, and since boot."""
    cpus = sorted({config.engine.cpu, *config.host.cpus} & os.sched_getaffinity(0))
    before, t0 = read_cpu_times(cpus, path), time.monotonic()
    time.sleep(sample_s)
    after, wall = read_cpu_times(cpus, path), time.monotonic() - t0
    if not after:
        return WARN, "steal time: none of the configured CPUs is available to this process", ""
    now = {c: min(100.0, 100.0 * (after[c].steal - before[c].steal) / max(wall, 1e-9))
           for c in after if c in before}
    boot = sum(t.steal for t in after.values())
    if boot == 0:
        return OK, "steal time: none (bare metal, or a hypervisor that does not report it)", ""
    text = ("steal time (the hypervisor ran something else on these virtual CPUs) over "
            f"{sample_s:g} s: " + ", ".join(f"CPU {c} {v:.1f}%" for c, v in sorted(now.items()))
            + f"; {boot:.0f} s in all since boot")
    if now.get(config.engine.cpu, 0.0) > STEAL_WARN_PCT:
        return WARN, text, ("the engine CPU is being taken away: goodput will be low and "
                            "vary; rerun later or on a quieter host (runs report their steal)")
    return OK, text, ""


def check_shm(config: Config) -> tuple[str, str, str]:
    if not os.path.isdir("/dev/shm"):
        return FAIL, "/dev/shm is missing", "mount -t tmpfs tmpfs /dev/shm"
    free = shutil.disk_usage("/dev/shm").free
    qp = config.qp
    need = 2 * (qp.send_buffer_bytes + qp.recv_buffers * max(qp.recv_buffer_bytes, 131072)) + (8 << 20)
    text = f"/dev/shm: {free >> 20} MB free, a loopback run needs about {need >> 20} MB"
    if free < need:
        return FAIL, text, "mount -o remount,size=1G /dev/shm (or lower qp.recv_buffers)"
    if not os.access("/dev/shm", os.W_OK):
        return FAIL, "/dev/shm is not writable", "run as a user who may write /dev/shm"
    return OK, text, ""


def check_leftovers() -> tuple[str, str, str]:
    """toad objects in /dev/shm that no running engine or host will remove (a crashed
    engine's OE memory and wake semaphore, a killed host's segment), and objects of
    other users under toad names."""
    found = leftovers.scan()
    stale = [obj for obj, is_stale in found if is_stale]
    uid = os.geteuid()
    foreign = [entry for entry in _toad_entries() if _owner(entry) not in (uid, 0, None)]
    if not stale and not foreign:
        live = sorted({obj.engine for obj, _ in found if obj.kind == "oe"})
        return OK, ("/dev/shm: nothing stale" + (f" (running engines: {', '.join(live)})"
                                                   if live else "")), ""
    parts, fixes = [], []
    if stale:
        engines = sorted({obj.engine for obj in stale})
        parts.append(f"{len(stale)} stale object(s) of engine(s) {', '.join(engines)} in "
                     f"/dev/shm: " + ", ".join(obj.entry for obj in stale))
        fixes.append("the next `toad engine` of each name removes them (--set name=NAME); "
                     "or rm " + " ".join(f"/dev/shm/{obj.entry}" for obj in stale))
    if foreign:
        parts.append("toad names owned by another user: " + ", ".join(
            f"{entry} (uid {_owner(entry)})" for entry in foreign))
        fixes.append("hosts and engines ignore objects they did not create; remove those "
                     "as root if they are in the way")
    return WARN, "; ".join(parts), "; ".join(fixes)


def _toad_entries() -> list[str]:
    try:
        return sorted(e for e in os.listdir("/dev/shm") if e.startswith(("toad-", "sem.toad-")))
    except OSError:
        return []


def _owner(entry: str) -> Optional[int]:
    try:
        return os.stat(f"/dev/shm/{entry}").st_uid
    except OSError:
        return None


def check_tap() -> tuple[str, str, str]:
    if not os.path.exists("/dev/net/tun"):
        return WARN, "TAP: /dev/net/tun is missing", "modprobe tun (tap-linux.yaml only)"
    if not os.access("/dev/net/tun", os.R_OK | os.W_OK):
        return WARN, "TAP: /dev/net/tun is not accessible", "run as root (tap-linux.yaml only)"
    if not capability(CAP_NET_ADMIN):
        return WARN, "TAP: no CAP_NET_ADMIN", "run as root or grant CAP_NET_ADMIN (tap-linux.yaml only)"
    return OK, "TAP: /dev/net/tun usable with CAP_NET_ADMIN", ""


def check_netns() -> tuple[str, str, str]:
    if shutil.which("ip") is None:
        return WARN, "netns: the ip command is missing", "apt-get install iproute2"
    if not capability(CAP_SYS_ADMIN):
        return WARN, "netns: no CAP_SYS_ADMIN to create namespaces", "run as root (tap-linux.yaml only)"
    try:
        done = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return WARN, f"netns: ip netns list failed: {exc}", "check iproute2"
    if done.returncode:
        return WARN, f"netns: {done.stderr.strip()}", "run as root (tap-linux.yaml only)"
    return OK, "netns: namespaces can be created (ip netns)", ""


def iperf_version() -> Optional[str]:
    path = shutil.which("iperf")
    if path is None:
        return None
    try:
        done = subprocess.run([path, "-v"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (done.stdout + done.stderr).strip().splitlines()[0] if (done.stdout + done.stderr).strip() else "iperf"


def check_iperf() -> tuple[str, str, str]:
    version = iperf_version()
    if version is None:
        return WARN, ("iperf 2: not installed (tap-linux.yaml and toad bench tcp fall back "
                      "to a Python peer; the iperf interop tests are skipped)"), "apt-get install iperf"
    if "version 2" not in version:
        return WARN, f"iperf: {version} is not iperf 2", "apt-get install iperf (version 2)"
    return OK, f"iperf 2: {version} (tap-linux.yaml's sender, toad bench tcp, interop tests)", ""


def check_program(name: str, package: str, use: str) -> tuple[str, str, str]:
    path = shutil.which(name)
    if path is None:
        return WARN, f"{name}: not installed ({use} are skipped)", f"apt-get install {package}"
    return OK, f"{name}: {path} ({use})", ""


def checks(config: Config) -> list[tuple[str, str, str]]:
    return [check_cpus(config), check_pinning(), check_steal(config), check_shm(config),
            check_leftovers(), check_tap(), check_netns(), check_iperf(),
            check_program("socat", "socat", "the socat interop tests"),
            check_program("tshark", "tshark", "the tshark pcap checks")]


def checked_config(path: Optional[str], overrides: list[str]
                   ) -> tuple[Config, list[tuple[str, str, str]]]:
    """The config to check the machine against, and a finding when the one asked for
    cannot be used here (e.g. engine.cpu names a CPU this machine lacks): the other
    checks then run against the file without the overrides, or the defaults."""
    try:
        return load(path, overrides), []
    except ConfigError as exc:
        finding = (FAIL, f"config: {exc}", "change that key in the config file or the "
                   "--set (toad config-reference lists every key and its values)")
    fallbacks = [(lambda: load(None), "the built-in defaults")]
    if path is not None:
        fallbacks.insert(0, (lambda: load(path), f"{path} without --set"))
    for fallback, what in fallbacks:
        try:
            config = fallback()
        except ConfigError:
            continue
        return config, [finding, (WARN, f"the checks below use {what}", "")]
    raise AssertionError("the built-in defaults always load")


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="toad doctor", description="What this machine allows for toad, each with the fix.")
    parser.add_argument("config", nargs="?", help="YAML config whose CPUs and TAP settings to check")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key (YAML value), e.g. --set engine.cpu=1")
    args = parser.parse_args(argv)
    config, findings = checked_config(args.config, args.set)
    failed = False
    for status, text, fix in findings + checks(config):
        line = f"{status:<4}  {text}"
        if fix:
            line += f"\n      fix: {fix}"
        print(line)
        failed |= status == FAIL
    return 1 if failed else 0
