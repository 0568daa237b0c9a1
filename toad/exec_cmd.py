"""``toad exec``: an unmodified Python program with its TCP sockets offloaded.

    toad exec [CONFIG] [--set KEY=VALUE]... [--measure] [--kernel] [--json FILE]
              -- PROGRAM [ARGS...]

PROGRAM runs with its TCP/IPv4 sockets offloaded to the running engine of CONFIG
(``toad engine CONFIG``; the config's ``name`` and ``qp`` keys matter here). UDP,
Unix, IPv6 sockets stay the kernel's. PROGRAM ``python``/``python3`` means the
Python toad runs on; a ``.py`` file runs with it; anything else runs as it is (a
script whose interpreter can import toad). The hook is a ``sitecustomize`` put first
on the program's PYTHONPATH (host/exec_site); a Python started with ``-S``, ``-I`` or
``-E`` skips it and stays on kernel sockets.

``--measure``: at exit, the program's CPU seconds (user + system, every thread and
every child it waited for, from wait4) and the bytes its sockets moved (each Python
process of it reports its own), on stderr; ``--json FILE`` writes them too.
``--kernel``: the same program and measurement over the kernel's TCP (bytes from
TCP_INFO at close), for a comparison. toad itself imports nothing of ``host`` here:
the hook does, inside the program.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from toad.config import load
from toad.engine_stats import OeMemory
from toad import layout
from toad.errors import ToadError

ROOT = Path(__file__).resolve().parents[1]
HOOK_DIR = ROOT / "host" / "exec_site"
PYTHONS = ("python", "python3", f"python3.{sys.version_info[1]}")
USAGE = ("usage: toad exec [CONFIG] [--set KEY=VALUE]... [--measure] [--kernel] "
         "[--json FILE] -- PROGRAM [ARGS...]")


def parse(argv: list[str]) -> tuple[dict, list[str]]:
    if "--" not in argv:
        raise ToadError(f"toad exec: put -- before the program ({USAGE})")
    split = argv.index("--")
    own, program = argv[:split], argv[split + 1:]
    if not program:
        raise ToadError(f"toad exec: no program after -- ({USAGE})")
    opts = {"config": None, "set": [], "measure": False, "kernel": False, "json": None}
    items = iter(own)
    for item in items:
        if item in ("--set", "--json"):
            value = next(items, None)
            if value is None:
                raise ToadError(f"toad exec: {item} needs a value ({USAGE})")
            if item == "--set":
                opts["set"].append(value)
            else:
                opts["json"] = value
        elif item.startswith("--set="):
            opts["set"].append(item[6:])
        elif item in ("--measure", "--kernel"):
            opts[item[2:]] = True
        elif item.startswith("-") or opts["config"] is not None:
            raise ToadError(f"toad exec: unknown argument {item!r} ({USAGE})")
        else:
            opts["config"] = item
    if opts["json"]:
        opts["measure"] = True
    return opts, program


def check_engine(name: str) -> None:
    """A clear error unless engine ``name`` runs."""
    oe = OeMemory(name, read_only=True)      # EngineNotRunning names the fix
    try:
        if oe.state() != layout.ENGINE_RUNNING:
            raise ToadError(f"engine {name!r} is not running (it is starting or stopping); "
                            f"start one with: toad engine CONFIG")
    finally:
        oe.close()


def resolve(program: list[str]) -> list[str]:
    first = program[0]
    if first in PYTHONS:
        return [sys.executable, *program[1:]]
    if first.endswith(".py"):
        if not Path(first).is_file():
            raise ToadError(f"toad exec: {first}: no such file")
        return [sys.executable, *program]
    found = shutil.which(first)
    if found is None:
        raise ToadError(f"toad exec: program {first!r} not found (give a path, or "
                        "python3 -m MODULE, or a .py file)")
    return [found, *program[1:]]


def environment(opts: dict, report: str | None) -> dict:
    env = dict(os.environ)
    path = [str(HOOK_DIR), str(ROOT)]
    if env.get("PYTHONPATH"):
        path.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(path)
    config = str(Path(opts["config"]).resolve()) if opts["config"] else None
    env["TOAD_EXEC"] = json.dumps({"config": config, "set": opts["set"], "report": report,
                                   "kernel": opts["kernel"]})
    return env


def main(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0
    opts, program = parse(argv)
    config = load(opts["config"], opts["set"])      # bad keys: one line, before anything
    if not opts["kernel"]:
        check_engine(config.name)
    command = resolve(program)
    if not opts["measure"]:
        os.execve(command[0], command, environment(opts, None))
    return measured(opts, command, config)


def measured(opts: dict, command: list[str], config) -> int:
    fd, report = tempfile.mkstemp(prefix="toad-exec-", suffix=".jsonl")
    os.close(fd)
    try:
        start = time.monotonic()
        child = subprocess.Popen(command, env=environment(opts, report))
        forward = {sig: signal.signal(sig, lambda s, _f: child.send_signal(s))
                   for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            _, status, usage = os.wait4(child.pid, 0)
        finally:
            for sig, old in forward.items():
                signal.signal(sig, old)
        child.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - start
        lines = [json.loads(line) for line in Path(report).read_text().splitlines() if line]
    finally:
        os.unlink(report)
    summary = summarize(opts, config, command, usage, wall, lines, child.returncode)
    print(describe(summary), file=sys.stderr)
    if opts["json"]:
        Path(opts["json"]).write_text(json.dumps(summary, indent=1) + "\n")
    return child.returncode if child.returncode >= 0 else 128 - child.returncode


def summarize(opts, config, command, usage, wall, lines, code) -> dict:
    cpu = usage.ru_utime + usage.ru_stime
    sent = sum(line.get("sent", 0) for line in lines)
    received = sum(line.get("received", 0) for line in lines)
    gbps = 8 * (sent + received) / wall / 1e9 if wall > 0 else 0.0
    return {"mode": "kernel" if opts["kernel"] else "offload",
            "engine": None if opts["kernel"] else config.name, "command": command,
            "exit_code": code, "wall_s": wall, "cpu_s": cpu, "user_s": usage.ru_utime,
            "system_s": usage.ru_stime, "python_processes": len(lines),
            "connections": sum(line.get("connections", 0) for line in lines),
            "bytes_sent": sent, "bytes_received": received, "gbps": gbps,
            "cpu_percent_per_gbps": 100 * cpu / wall / gbps if gbps > 0 else None,
            "pump_wakeups": sum(line.get("pump_wakeups", 0) for line in lines)}


def describe(s: dict) -> str:
    where = "kernel TCP" if s["mode"] == "kernel" else f"offloaded to engine {s['engine']!r}"
    per = "" if s["cpu_percent_per_gbps"] is None else \
        f"; {s['gbps']:.3f} Gb/s -> {s['cpu_percent_per_gbps']:.1f} % of a CPU per Gb/s"
    return (f"toad exec ({where}): {s['cpu_s']:.3f} s CPU (user {s['user_s']:.3f} + system "
            f"{s['system_s']:.3f}) in {s['wall_s']:.3f} s; {s['connections']} connections, "
            f"{s['bytes_sent']} bytes sent, {s['bytes_received']} received{per}")
