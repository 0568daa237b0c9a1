"""The bus model on the host side (host/datapath.py pio_write, register_reads): every
register access is counted, and with a bus its cost is spent on the host CPU."""
from __future__ import annotations

from host.driver import Driver, Q
from toad import layout

ECHOES = 20


def echo(drv: Driver, count: int) -> None:
    for value in range(count):
        assert drv.call(layout.OP_ECHO, value=value, timeout=10).value == value


def test_without_a_bus_register_accesses_are_counted_and_cost_nothing(start_engine):
    engine = start_engine()
    with Driver(engine.config()) as drv:
        before = drv.bus_counts()
        echo(drv, ECHOES)
        after = drv.bus_counts()
        # each call rings the request doorbell and writes the event consumer index;
        # waits may also arm and disarm the interrupt
        assert after["doorbells"] - before["doorbells"] >= 2 * ECHOES
        assert after["bus_ns"] == 0 and int(drv.q[Q["bus_cycles"]]) == 0


def test_the_cards_bus_sets_what_the_host_pays_per_access(start_engine):
    engine = start_engine("bus.preset=pci66")
    with Driver(engine.config()) as drv:
        q = drv.q
        assert q[Q["pio_write_cycles"]] > 0 and q[Q["pio_read_cycles"]] > 0
        assert drv.interrupt_reads == 1             # pin interrupts: a status read each
        drv.check_engine()                          # the heartbeat and the state
        echo(drv, ECHOES)
        writes, reads = int(q[Q["pio_writes"]]), int(q[Q["pio_reads"]])
        assert writes >= 2 * ECHOES and reads >= 2
        # every access spent at least its cost (a spin ends once its cycles are past)
        assert q[Q["bus_cycles"]] >= writes * q[Q["pio_write_cycles"]] \
            + reads * q[Q["pio_read_cycles"]]
        assert drv.bus_counts()["bus_ns"] > 0
