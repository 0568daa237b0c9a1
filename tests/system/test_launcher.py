"""The launcher: children watched, failures named, everything torn down."""
from __future__ import annotations

import time

import pytest
import yaml

from toad.config import load
from toad.experiment import runner
from toad.experiment.launcher import Launcher, RunFailed

from .helpers import REPO


def test_a_failing_child_is_named_with_its_error_line():
    with Launcher("t-launch") as launcher:
        launcher.start("sleeper", ["-c", "import time; time.sleep(30)"])
        launcher.start("bad", ["-c", "import sys; print('toad: error: disk on fire', "
                                     "file=sys.stderr); sys.exit(2)"])
        with pytest.raises(RunFailed, match="^bad: disk on fire$"):
            launcher.wait_until(lambda: False, 30, "nothing")
    assert all(c.proc.poll() is not None for c in launcher.children)
    assert not launcher.workdir.exists()


def test_wait_is_bounded():
    with Launcher("t-launch") as launcher:
        launcher.start("sleeper", ["-c", "import time; time.sleep(30)"])
        start = time.monotonic()
        with pytest.raises(RunFailed, match="timed out after 0 s waiting for godot"):
            launcher.wait_until(lambda: False, 0.2, "godot")
        assert time.monotonic() - start < 5


def test_a_child_ignoring_sigterm_is_killed():
    with Launcher("t-launch") as launcher:
        child = launcher.start("stubborn", ["-c", "import signal, time; "
                                            "signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                                            "print('x', flush=True); time.sleep(60)"])
        time.sleep(0.3)
    assert child.proc.returncode is not None


def test_engine_started_pinned_sampled_and_removed():
    base = load(str(REPO / "configs/default.yaml"))
    config = runner.effective(base, "offload", 65536, runner.instance_name(base))
    with Launcher(config.name) as launcher:
        path = launcher.workdir / "run.yaml"
        path.write_text(yaml.safe_dump(runner.as_plain(config)))
        engine = runner.start_engine(launcher, config, path)
        assert engine.affinity() == [config.engine.cpu]
        time.sleep(0.2)
        sampler = launcher.samplers[0]
        sampler.stop()
        assert len(sampler.cpu) >= 2 and sampler.busy
        assert "busy_ns" in sampler.busy[-1][1]
    assert engine.proc.poll() is not None
    assert launcher.leftovers == []  # the engine removed its own OE memory
