"""bench offload --config: the qp keys of an experiment file become overrides."""
from __future__ import annotations

import pytest

from host.bench_offload import qp_settings
from host.offload_socket import FIRST_RING
from toad.config import load
from toad.errors import ToadError


def test_qp_settings_carry_the_files_qp_keys_but_not_the_pool(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("name: x\nqp:\n  send_share_bytes: 2097152\n  busy_poll_mode: yield\n"
                    "  recv_post_push: false\n  recv_buffers: 7\n  recv_pool_bytes: 65536\n")
    sets = qp_settings(str(path))
    assert not any(s.startswith(("qp.recv_buffers=", "qp.recv_pool_bytes=")) for s in sets)
    qp = load(None, sets).qp
    assert (qp.send_share_bytes, qp.busy_poll_mode, qp.recv_post_push) == (2097152, "yield", False)


def test_qp_settings_reject_a_qp_that_is_not_a_mapping(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("qp: 3\n")
    with pytest.raises(ToadError, match="qp must be a mapping"):
        qp_settings(str(path))


def test_default_config_gives_a_bulk_writer_a_4_mb_share():
    qp = load(None, qp_settings("configs/default.yaml")).qp
    assert qp.send_share_bytes == 4 << 20 and qp.send_space_threshold == 2 << 20
    # the ring can grow to the share beside its last, quarter-size one
    assert qp.send_buffer_bytes >= qp.send_share_bytes * 5 // 4 + FIRST_RING


def test_default_config_batches_a_readers_wake_ups_by_32_buffers():
    qp = load("configs/default.yaml", ["qp.recv_buffer_bytes=8192"]).qp
    assert qp.rx_batch_max == 32 and qp.recv_buffers // 4 >= qp.rx_batch_max


def test_default_config_pool_is_8_mb_at_each_chunk_size():
    for chunk, count in ((131072, 64), (8192, 1024)):
        qp = load("configs/default.yaml", [f"qp.recv_buffer_bytes={chunk}"]).qp
        assert (qp.recv_buffers, qp.recv_buffers * qp.recv_buffer_bytes) == (count, 8 << 20)


def test_recv_pool_bytes_sets_the_count_and_0_leaves_it():
    assert load(None, ["qp.recv_pool_bytes=65536", "qp.recv_buffer_bytes=4096"]).qp.recv_buffers == 16
    assert load(None, ["qp.recv_pool_bytes=4096", "qp.recv_buffer_bytes=4096"]).qp.recv_buffers == 8
    assert load(None, ["qp.recv_buffers=5"]).qp.recv_buffers == 5
    with pytest.raises(Exception, match="qp.recv_pool_bytes: -1 must be 0..1073741824"):
        load(None, ["qp.recv_pool_bytes=-1"])


def test_each_experiment_run_derives_its_pool_from_its_chunk():
    from toad.experiment.runner import effective
    base = load("configs/default.yaml")
    for chunk, count in ((131072, 64), (8192, 1024)):
        qp = effective(base, "offload", chunk, "x").qp
        assert (qp.recv_buffer_bytes, qp.recv_buffers) == (chunk, count)
