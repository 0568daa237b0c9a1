"""``extra_runs``: more runs at each point of a command, each the config with a few
keys changed (toad/experiment/commands.py variants)."""
import pytest

from toad.config import ConfigError, load
from toad.experiment.commands import plan_size, variants

RR = "extra_runs=[[workload.kind=rr, engine.polling=busy, 'workload.sizes=[64]']]"


def test_each_extra_run_is_the_config_with_its_keys_changed():
    config = load(None, ["workload.chunk_bytes=[8192, 131072]", "bus.preset=pcie4", RR])
    base, rr = variants(config)
    assert base is config
    assert (rr.workload.kind, rr.engine.polling, rr.workload.sizes) == ("rr", "busy", (64,))
    assert rr.bus.preset == "pcie4" and rr.extra_runs == ()     # the rest is the config's
    # two chunk sizes and one rr size, in two modes
    assert plan_size(config, ["kernel", "offload"]) == 2 * (2 + 1)


def test_a_bad_extra_run_is_one_clear_error_before_any_run():
    config = load(None, ["extra_runs=[[workload.kind=rx]]"])
    with pytest.raises(ConfigError, match=r"^extra_runs\[0\]: workload.kind: 'rx' is not"):
        variants(config)
    with pytest.raises(ConfigError, match=r"extra_runs\[0\]: 'mode=kernel': mode cannot"):
        load(None, ["extra_runs=[[mode=kernel]]"])
