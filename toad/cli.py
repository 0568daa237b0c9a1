"""The ``toad`` command: a thin dispatcher.

Commands that run on the host side of the contract live in ``toad`` and are imported
lazily. Commands that *are* another process (the engine, a host program) are started
with ``python -m <module>`` instead of being imported, so that ``toad`` never imports
``engine`` or ``host`` (ARCHITECTURE.md: rooms).
"""
from __future__ import annotations

import importlib
import os
import sys
from typing import Sequence

from toad.errors import run_main

# name -> (kind, target, one-line help). kind "call": import toad module, call main(argv);
# kind "exec": replace this process with ``python -m target``.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "run": ("call", "toad.experiment.commands:run_main", "one experiment from a YAML config"),
    "compare": ("call", "toad.experiment.commands:compare_main",
                "the same workload in each mode, TOAD-style table"),
    "sweep": ("call", "toad.experiment.commands:sweep_main",
              "vary one parameter: a table (a plot with --plot)"),
    "report": ("call", "toad.experiment.report_cmd:main",
               "tables (and a plot) from saved --json results, without rerunning"),
    "doctor": ("call", "toad.doctor:main", "what this machine allows, each with the fix"),
    "perturb": ("call", "toad.perturb:main", "host copy bandwidth, engine idle vs copying"),
    "config-reference": ("call", "toad.config.reference_cmd:main",
                         "every config key with its type, default and meaning"),
    "exec": ("call", "toad.exec_cmd:main",
             "run a Python program with its TCP sockets offloaded to a running engine"),
    "engine": ("exec", "engine", "run the engine alone in the foreground"),
    "nc": ("exec", "host.nc", "netcat over toad (inhost or offload)"),
    "bench": ("exec", "host.bench",
              "micro-benchmarks: toad bench rings|tcp|stack|offload|copy|start|readiness [--json FILE]"),
}


def usage() -> str:
    lines = ["usage: toad COMMAND [args...]", "", "commands:"]
    for name, (_kind, _target, text) in COMMANDS.items():
        lines.append(f"  {name:<17} {text}")
    lines.append("")
    lines.append("toad COMMAND --help shows a command's options.")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"toad: error: unknown command {name!r} (commands: {', '.join(COMMANDS)})",
              file=sys.stderr)
        return 2
    kind, target, _ = COMMANDS[name]
    if kind == "exec":
        os.execv(sys.executable, [sys.executable, "-m", target, *rest])
    module_name, func_name = target.split(":")
    func = getattr(importlib.import_module(module_name), func_name)
    return run_main(func, rest)


if __name__ == "__main__":
    sys.exit(main())
