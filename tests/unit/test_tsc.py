"""toad/tsc.py: the TSC's rate is measured once per process."""
from __future__ import annotations

import pytest

from toad import tsc


@pytest.mark.skipif(not tsc.constant_tsc(), reason="the TSC is not constant-rate here")
def test_the_rate_is_measured_once_and_is_a_rate():
    first = tsc.ns_per_cycle()
    assert first is not None and first > 0
    assert tsc.ns_per_cycle() is first        # the same measurement, not a new one
