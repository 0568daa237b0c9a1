"""Whole stacks carrying connections: two stacks on a loopback wire, one stack
talking to itself (through a wire that hears itself, and through the in-stack loop),
listener backlog and accept, RST to a closed port seen as Refused, TIME-WAIT kept
until its timer, and every checksum mode. Injected clock; bounded runs."""
from __future__ import annotations

import errno
import os

import pytest

from engine.nic.loopback import LoopbackWire
from engine.tcp.events import Established, PeerClosed, Refused, Reset
from engine.tcp.stack import Stack
from engine.tcp.wire import ipv4
from toad.config import TcpConfig

from .test_stack_support import (PEER_IP, STACK_IP, STACK_MAC, Clock, Host, Transfer,
                                          features, make_pair, run)

FAST = TcpConfig(time_wait_s=1.0)
DATA = os.urandom(600_000)


def events_of(host: Host, owner, kind) -> list:
    return [ev for who, ev in host.events if who is owner and isinstance(ev, kind)]


@pytest.mark.parametrize("mode", ["software", "integrated", "offloaded", "off"])
@pytest.mark.parametrize("csum_offload", [True, False])
def test_bulk_transfer_every_checksum_mode(mode, csum_offload):
    a, b, wire, clock = make_pair(TcpConfig(checksum=mode, time_wait_s=1.0),
                                  csum_offload=csum_offload)
    transfer = Transfer(a, b, PEER_IP, DATA, clock)
    run([a, b], clock, transfer.done, transfer.tick)
    assert transfer.ok()
    assert a.stack.counters["tcp.active_opens"] == 1 and b.stack.counters["tcp.accepted"] == 1
    assert wire.counters["sent"] > len(DATA) // 65536 and wire.counters["oversize"] == 0
    assert b.stack.counters["tcp.bad_checksum"] == 0


@pytest.mark.parametrize("mtu", [1500, 9000, 65535])
def test_mss_follows_the_mtu(mtu):
    a, b, wire, clock = make_pair(FAST, mtu=mtu)
    transfer = Transfer(a, b, PEER_IP, DATA, clock)
    run([a, b], clock, transfer.done, transfer.tick)
    assert transfer.ok() and transfer.conn.effective_mss <= mtu - 40
    assert wire.counters["oversize"] == 0


def test_whole_close_and_time_wait_kept_until_its_timer():
    a, b, wire, clock = make_pair(FAST)
    transfer = Transfer(a, b, PEER_IP, b"x" * 5000, clock)
    run([a, b], clock, transfer.done, transfer.tick)
    transfer.accepted.close(clock.now)
    run([a, b], clock, lambda: transfer.conn.state.name == "TIME_WAIT")
    start = clock.now
    run([a, b], clock, lambda: len(b.stack.table) == 0)   # the last ACK left at once
    assert clock.now - start < 0.05
    assert len(a.stack.table) == 1                   # TIME-WAIT still holds its 4-tuple
    run([a, b], clock, lambda: len(a.stack.table) == 0)
    assert clock.now - start == pytest.approx(1.0, abs=0.05)
    assert a.stack.counters["tcp.freed"] == 1 and b.stack.counters["tcp.freed"] == 1


def test_many_time_wait_connections_are_parked_not_polled():
    a, b, wire, clock = make_pair(TcpConfig(time_wait_s=30.0))
    listener = b.stack.listen(7010)
    for i in range(40):
        conn = a.stack.connect(PEER_IP, 7010, clock.now)
        run([a, b], clock, lambda: events_of(a, conn, Established))
        child = listener.accept()
        conn.close(clock.now)
        run([a, b], clock, lambda: child.state.name == "CLOSE_WAIT")
        child.close(clock.now)
        run([a, b], clock, lambda: conn.state.name == "TIME_WAIT" and len(b.stack.table) == 0)
    assert len(a.stack.table) == 40 and a.stack.table.polled() == []
    start = clock.now
    run([a, b], clock, lambda: len(a.stack.table) == 0)
    assert 29.0 < clock.now - start < 31.0
    assert a.stack.counters["tcp.freed"] == 40


def test_connect_to_closed_port_is_refused():
    a, b, wire, clock = make_pair(FAST)
    conn = a.stack.connect(PEER_IP, 9, clock.now)
    run([a, b], clock, lambda: events_of(a, conn, Refused))
    assert conn.error == errno.ECONNREFUSED
    assert b.stack.counters["tcp.rst_closed_port"] == 1
    run([a, b], clock, lambda: len(a.stack.table) == 0)


def test_backlog_full_drops_syn_until_accept_makes_room():
    a, b, wire, clock = make_pair(TcpConfig(rto_initial_ms=200))
    listener = b.stack.listen(7000, backlog=1)
    first = a.stack.connect(PEER_IP, 7000, clock.now)
    run([a, b], clock, lambda: events_of(a, first, Established))
    second = a.stack.connect(PEER_IP, 7000, clock.now)
    run([a, b], clock, lambda: b.stack.counters["tcp.listen_overflow"] >= 1)
    assert second.state.name == "SYN_SENT"
    assert listener.accept() is not None and listener.accept() is None
    run([a, b], clock, lambda: events_of(a, second, Established))   # the retransmitted SYN
    assert listener.accept() is not None


def test_events_before_accept_are_reported_after_it():
    a, b, wire, clock = make_pair(FAST)
    listener = b.stack.listen(7001)
    conn = a.stack.connect(PEER_IP, 7001, clock.now)
    run([a, b], clock, lambda: events_of(a, conn, Established))
    conn.send(b"early bytes")
    conn.shutdown(clock.now)
    run([a, b], clock, lambda: conn.state.name == "FIN_WAIT_2")
    assert [type(ev) for who, ev in b.events if who is listener] == [Established]
    child = listener.accept()
    b.events += b.stack.events()
    kinds = [type(ev).__name__ for who, ev in b.events if who is child]
    assert kinds == ["Established", "DataReceived", "PeerClosed"]
    assert child.recv_buffer.read(100) == b"early bytes"


def test_close_listener_resets_unaccepted_children():
    a, b, wire, clock = make_pair(FAST)
    listener = b.stack.listen(7002)
    conn = a.stack.connect(PEER_IP, 7002, clock.now)
    run([a, b], clock, lambda: events_of(a, conn, Established))
    b.stack.close_listener(listener)
    run([a, b], clock, lambda: events_of(a, conn, Reset))
    assert conn.error == errno.ECONNRESET
    assert b.stack.counters["tcp.children_lost_before_accept"] == 1


def test_ephemeral_ports_distinct_and_errors_clear():
    a, b, wire, clock = make_pair(FAST)
    ports = {a.stack.connect(PEER_IP, 80, clock.now).local[1] for _ in range(50)}
    assert len(ports) == 50 and all(49152 <= p <= 65535 for p in ports)
    with pytest.raises(OSError) as err:
        a.stack.connect(ipv4.aton("192.168.1.1"), 80, clock.now)
    assert err.value.errno == errno.ENETUNREACH
    b.stack.listen(81)
    with pytest.raises(OSError) as err:
        b.stack.listen(81)
    assert err.value.errno == errno.EADDRINUSE
    conn = a.stack.connect(PEER_IP, 82, clock.now, local_port=40000)
    with pytest.raises(OSError) as err:
        a.stack.connect(PEER_IP, 82, clock.now, local_port=40000)
    assert err.value.errno == errno.EADDRINUSE and conn.local == (STACK_IP, 40000)


def lone_host(hears_itself: bool, clock: Clock) -> tuple[Host, LoopbackWire]:
    wire = LoopbackWire(clock=clock)
    nic = wire.attach(STACK_MAC)
    nic_features = nic.features if hears_itself else features(mtu=65535)
    return Host(Stack(FAST, "10.0.0.1/24", STACK_MAC, nic_features), nic), wire


@pytest.mark.parametrize("target", ["own-address", "127.0.0.1"])
@pytest.mark.parametrize("hears_itself", [True, False])
def test_one_stack_talks_to_itself(target, hears_itself):
    clock = Clock()
    host, wire = lone_host(hears_itself, clock)
    address = STACK_IP if target == "own-address" else ipv4.aton("127.0.0.1")
    transfer = Transfer(host, host, address, DATA, clock)
    run([host], clock, transfer.done, transfer.tick)
    assert transfer.ok()
    through_wire = target == "own-address" and hears_itself
    assert (wire.counters["sent"] > 0) == through_wire
    assert host.stack.counters["arp.tx_request"] == 0          # never ARPs for itself
    if not through_wire:
        assert transfer.conn.effective_mss > 60000              # the loop has no 1500 MTU


class Recorder:
    """Wraps a NIC and keeps every frame sent."""

    def __init__(self, inner):
        self.inner, self.features, self.sent = inner, inner.features, []

    def send_burst(self, pool, slots, n):
        self.sent += [bytes(pool.view(slot)) for slot in slots[:n]]
        self.inner.send_burst(pool, slots, n)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_checksum_off_for_one_connection_only():
    from dataclasses import replace
    a, b, wire, clock = make_pair(TcpConfig(checksum="software", time_wait_s=1.0),
                                  csum_offload=False)
    a.nic = Recorder(a.nic)
    off = replace(a.stack.config, checksum="off")
    listeners = {7020: b.stack.listen(7020, config=off), 7021: b.stack.listen(7021)}
    conns = {7020: a.stack.connect(PEER_IP, 7020, clock.now, config=off),
             7021: a.stack.connect(PEER_IP, 7021, clock.now)}
    run([a, b], clock, lambda: all(events_of(a, c, Established) for c in conns.values()))
    children = {port: listener.accept() for port, listener in listeners.items()}
    for conn in conns.values():
        conn.send(b"payload")
    run([a, b], clock, lambda: all(len(c.recv_buffer) == 7 for c in children.values()))
    assert children[7020].config.checksum == "off" and children[7021].config.checksum == "software"
    data_frames = {int.from_bytes(f[36:38], "big"): f for f in a.nic.sent if f.endswith(b"payload")}
    assert data_frames[7020][50:52] == b"\0\0"            # not computed
    assert data_frames[7021][50:52] != b"\0\0"            # computed in software
    assert b.stack.counters["tcp.bad_checksum"] == 0


def test_tso_nic_gets_superframes_and_the_peer_reads_them():
    from dataclasses import replace as dc_replace
    a, b, wire, clock = make_pair(FAST, mtu=1500)
    a.nic = Recorder(a.nic)
    tso_features = dc_replace(a.nic.features, tso=True, tso_max=65000)
    a.stack = Stack(FAST, "10.0.0.1/24", STACK_MAC, tso_features)
    transfer = Transfer(a, b, PEER_IP, DATA, clock)
    run([a, b], clock, transfer.done, transfer.tick)
    assert transfer.ok()
    big = [f for f in a.nic.sent if len(f) > 1514]
    assert big and max(len(f) for f in big) <= 14 + 65535
    assert transfer.conn.effective_mss <= 1460 and transfer.conn.gso_size <= 1460


def test_arp_entry_refreshed_under_traffic_without_a_stall():
    from toad.config import WireConfig
    a, b, wire, clock = make_pair(FAST, wire_config=WireConfig(bandwidth_gbps=0.05,
                                                               delay_us=500))
    a.stack = Stack(FAST, "10.0.0.1/24", STACK_MAC, a.nic.features, arp_timeout=0.02)
    transfer = Transfer(a, b, PEER_IP, DATA, clock)
    start = clock.now
    run([a, b], clock, transfer.done, transfer.tick)
    assert transfer.ok()
    assert a.stack.counters["arp.tx_request"] >= 3          # first ask, then refreshes
    assert a.stack.counters["arp.unresolved_drops"] == 0
    assert clock.now - start < 0.2                          # 600 KB at 50 Mb/s: ~0.1 s
