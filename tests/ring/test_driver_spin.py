"""The host driver's adaptive spin budget (host/driver_wait.py: _adapt_spin, PROBE_MASK,
re-exported by host/driver.py)."""
from types import SimpleNamespace

from host import driver
from host.driver import Driver


def budget(spin_s: float = 50e-6) -> SimpleNamespace:
    return SimpleNamespace(busy_poll_s=50e-6, spin_s=spin_s)


def test_spins_that_end_asleep_shrink_the_budget_to_none():
    d = budget()
    seen = []
    for _ in range(20):
        Driver._adapt_spin(d, caught=False)
        seen.append(d.spin_s)
    assert seen[0] == 25e-6
    assert all(a >= b for a, b in zip(seen, seen[1:]))
    assert d.spin_s == 0.0


def test_caught_events_grow_it_back_to_busy_poll_and_no_further():
    d = budget(0.0)
    Driver._adapt_spin(d, caught=True)
    assert d.spin_s == driver.MIN_SPIN_S
    for _ in range(30):
        Driver._adapt_spin(d, caught=True)
    assert d.spin_s == d.busy_poll_s


def test_probe_period_is_a_power_of_two_mask():
    assert driver.PROBE_MASK > 0 and (driver.PROBE_MASK + 1) & driver.PROBE_MASK == 0
