import pytest

from toad.config import ConfigError, load, from_dict, available_cpus


def test_defaults_load():
    cfg = load(None)
    assert cfg.nic.kind == "loopback"
    assert cfg.qp.request_entries & (cfg.qp.request_entries - 1) == 0


@pytest.mark.parametrize("override, message", [
    ("engine.cpu=97", "engine.cpu: 97 is not an available CPU"),
    ("nic.tapp.x=1", "nic.tapp: unknown key"),
    ("qp.request_entries=1000", "qp.request_entries: 1000 must be a power of two"),
    ("nic.kind=foo", "nic.kind: 'foo' is not one of loopback, tap"),
    ("tcp.sack=maybe", "tcp.sack: 'maybe' is not true or false"),
    ("nic.tap.address=10.1.1.1", "nic.tap.address"),
    ("workload.duration_s=-1", "workload.duration_s"),
    ("workload.repeat=0", "workload.repeat: 0 must be 1..100"),
    ("workload.connections=0", "workload.connections: 0 must be 1..16000"),
    ("workload.connections=20000", "workload.connections: 20000 must be 1..16000"),
    ("nic", "expected key.sub=value"),
])
def test_bad_values_name_the_key(override, message):
    with pytest.raises(ConfigError) as info:
        load(None, [override])
    assert message in str(info.value)


def test_override_types_and_lists():
    cfg = load(None, ["workload.chunk_bytes=8192", "nic.mtu=9000", "tcp.delayed_ack_ms=0"])
    assert cfg.workload.chunk_bytes == (8192,)
    assert cfg.nic.mtu == 9000
    assert cfg.tcp.delayed_ack_ms == 0.0


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("engine: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load(bad)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("engine:\n  cpuu: 1\n")
    with pytest.raises(ConfigError, match=r"engine.cpuu: unknown key"):
        load(wrong)


def test_config_is_frozen():
    cfg = from_dict({"engine": {"cpu": available_cpus()[-1]}})
    with pytest.raises(Exception):
        cfg.engine.cpu = 0


def test_yaml_booleans_stand_for_the_word_they_were():
    # YAML 1.1 reads `off` as false; the one choice spelled that way is meant
    assert load(None, ["tcp.checksum=off"]).tcp.checksum == "off"
    assert load(None, ['tcp.checksum="off"']).tcp.checksum == "off"
    with pytest.raises(ConfigError) as info:
        load(None, ["nic.kind=yes"])                # no choice is spelled yes/on/true
    assert "nic.kind: True is not one of loopback, tap" in str(info.value)
    assert "quote" in str(info.value)


def test_the_bus_is_off_by_default_and_a_preset_gives_every_figure():
    from toad import layout
    from toad.config.bus import FIGURES, PRESETS
    assert not load(None).bus.active and load(None).bus.describe() == "none"
    bus = load(None, ["bus.preset=pci66"]).bus
    assert {name: getattr(bus, name) for name in FIGURES} == PRESETS["pci66"]
    assert bus.describe() == "pci66"
    # a figure set in the config overrides the preset's, and the model says so
    bus = load(None, ["bus.preset=pcie4", "bus.pio_read_ns=700"]).bus
    assert bus.pio_read_ns == 700 and bus.pio_write_ns == PRESETS["pcie4"]["pio_write_ns"]
    assert bus.describe() == "pcie4 pio_read_ns=700"
    # the OE config block numbers the presets in the schema's order
    assert set(layout.BUS_PRESETS) == set(PRESETS)


def test_the_old_dma_keys_name_their_successors():
    with pytest.raises(ConfigError, match=r"^dma\.bus_gbps: moved to bus\.dma_read_gbps"):
        load(None, ["dma.bus_gbps=10"])
    with pytest.raises(ConfigError, match=r"^dma\.latency_us: moved to bus\.dma_latency_us"):
        load(None, ["dma.latency_us=1"])
    with pytest.raises(ConfigError, match=r"bus\.pio_write_ns: -1.0 must be >= 0"):
        load(None, ["bus.pio_write_ns=-1"])


def test_many_connections_raise_each_hosts_qp_limit():
    """An offload host's QP gets the rows workload.connections needs (as a kernel
    worker raises its descriptor limit); crr also keeps a wave that is closing."""
    from toad.experiment.runner import CONNECTION_MARGIN, effective
    rr = load(None, ["workload.kind=rr", "workload.connections=5000"])
    assert effective(rr, "offload", 64, "x").qp.max_connections == 5000 + CONNECTION_MARGIN
    crr = load(None, ["workload.kind=crr", "workload.connections=5000"])
    assert effective(crr, "offload", 64, "x").qp.max_connections == 10000 + CONNECTION_MARGIN
    one = load(None, ["workload.kind=rr"])
    assert effective(one, "offload", 64, "x").qp.max_connections == 1024
