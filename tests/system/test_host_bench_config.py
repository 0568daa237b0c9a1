"""bench offload --config: the qp keys of an experiment file become overrides."""
from __future__ import annotations

import pytest

from host.bench_offload import qp_settings
from toad.config import load
from toad.errors import ToadError


def test_qp_settings_carry_the_files_qp_keys_but_not_the_pool(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("name: x\nqp:\n  send_share_bytes: 2097152\n  busy_poll_mode: yield\n"
                    "  recv_post_push: false\n  recv_buffers: 7\n")
    sets = qp_settings(str(path))
    assert not any(s.startswith("qp.recv_buffers=") for s in sets)
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
    assert qp.send_buffer_bytes >= 2 * qp.send_share_bytes + (1 << 20)   # the ring can grow


def test_default_config_batches_a_readers_wake_ups_by_32_buffers():
    qp = load("configs/default.yaml").qp
    assert qp.rx_batch_max == 32 and qp.recv_buffers // 4 >= qp.rx_batch_max
