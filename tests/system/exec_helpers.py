"""Running programs under ``toad exec`` against an engine a test started."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PROGRAMS = Path(__file__).with_name("programs")
ROOT = Path(__file__).resolve().parents[2]


def toad_exec(run, *program, sets=(), measure=False, **popen):
    """``toad exec`` of ``program`` on engine ``run`` (an EngineRun), not waited for."""
    args = [sys.executable, "-m", "toad", "exec"]
    for item in [f"name={run.name}", *sets]:
        args += ["--set", item]
    if measure:
        args.append("--measure")
    popen.setdefault("stdout", subprocess.PIPE)
    popen.setdefault("stderr", subprocess.PIPE)
    return subprocess.Popen([*args, "--", *program], cwd=ROOT, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"), **popen)


def finished(proc, timeout: float = 120) -> tuple[str, str]:
    """(stdout, stderr) of a program that must exit 0 within ``timeout`` (killed if not)."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"{proc.args} did not finish: {out[-2000:]} {err[-2000:]}")
    assert proc.returncode == 0, f"{proc.args} failed ({proc.returncode}): {err[-3000:]}"
    return out, err


def program(name: str) -> str:
    return str(PROGRAMS / name)


def last_json(text: str):
    return json.loads(text.strip().splitlines()[-1])
