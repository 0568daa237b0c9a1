"""SYN cookies (engine/tcp/syncookies.py): the cookie's arithmetic, then a listener whose
backlog is full, scripted segment by segment and between two whole stacks."""
from __future__ import annotations

import os

import pytest

from engine.tcp import syncookies
from engine.tcp.events import Established
from engine.tcp.stack import Stack
from engine.tcp.states import State
from engine.tcp.wire import ipv4
from engine.tcp.wire.tcp import ACK, RST, SYN, TcpRepr
from tests.nicframes import sent
from toad.config import TcpConfig

from .test_stack_support import (
    PEER_IP,
    PEER_MAC,
    STACK_IP,
    STACK_MAC,
    Transfer,
    features,
    learn_peer,
    make_pair,
    parse_out,
    run,
    tcp_frame,
)

SECRET = bytes(range(8))
KEY = (STACK_IP, 80, PEER_IP, 40000)


# ---- the cookie --------------------------------------------------------------------

@pytest.mark.parametrize("index", range(len(syncookies.MSS_TABLE)))
def test_cookie_carries_its_mss_index_for_two_minutes(index):
    cookie = syncookies.make(SECRET, KEY, 0xFFFFFFF0, 255, index)     # (wraps both)
    assert syncookies.check(SECRET, KEY, 0xFFFFFFF0, cookie, 255) == index
    assert syncookies.check(SECRET, KEY, 0xFFFFFFF0, cookie, 0) == index      # a minute on
    assert syncookies.check(SECRET, KEY, 0xFFFFFFF0, cookie, 1) == -1         # too old
    assert syncookies.check(SECRET, (*KEY[:3], 40001), 0xFFFFFFF0, cookie, 255) == -1
    assert syncookies.check(bytes(8), KEY, 0xFFFFFFF0, cookie, 255) == -1     # other secret


def test_random_cookies_are_refused():
    accepted = sum(syncookies.check(SECRET, KEY, 1000, int.from_bytes(os.urandom(4), "big"),
                                    7) >= 0 for _ in range(20000))
    assert accepted <= 20           # 8 indexes of 2^24, two minutes: ~1 in a million


def test_mss_rounds_down_to_the_table():
    assert [syncookies.MSS_TABLE[syncookies.mss_index(m)] for m in (0, 536, 1459, 1460, 8960,
                                                                   65495)] == \
        [536, 536, 1440, 1460, 8960, 65495]


@pytest.mark.parametrize("clock", [0, 5, 63, 64, 0xFFFFFFFF, 0xFFFFFFC1])
@pytest.mark.parametrize("options", [0, 7, syncookies.NO_WSCALE | syncookies.TS_SACK])
def test_cookie_tsval_carries_options_and_never_runs_ahead(clock, options):
    tsval = syncookies.cookie_tsval(clock, options)
    assert tsval & syncookies.TS_MASK == options
    assert 0 <= (clock - tsval) & 0xFFFFFFFF < 64


# ---- a listener with a full backlog, scripted -----------------------------------------

def flooded(config: TcpConfig) -> tuple[Stack, object]:
    """A stack whose listener on port 80 holds one half-open child (backlog 1)."""
    stack = Stack(config, "10.0.0.1/24", STACK_MAC, features())
    learn_peer(stack)
    listener = stack.listen(80, backlog=1)
    stack.receive_frame(memoryview(tcp_frame(TcpRepr(39999, 80, 5, 0, SYN, 65535))), 0.0)
    sent(stack, 0.0)
    assert len(listener.half_open) == 1
    return stack, listener


def syn(**options) -> TcpRepr:
    return TcpRepr(40000, 80, 7000, 0, SYN, 64240, mss=1460, **options)


def answer(stack: Stack, seg: TcpRepr, now: float):
    stack.receive_frame(memoryview(tcp_frame(seg)), now)
    return [parse_out(f)[2] for f in sent(stack, now)]


def test_full_backlog_answers_with_a_cookie_and_keeps_nothing():
    stack, listener = flooded(TcpConfig(checksum="software"))
    synack, = answer(stack, syn(window_scale=7, sack_permitted=True, timestamp=(900, 0)), 1.0)
    assert synack.flags == SYN | ACK and synack.ack == 7001 and synack.mss == 1460
    assert synack.window_scale is not None and synack.sack_permitted
    tsval, tsecr = synack.timestamp
    assert tsecr == 900 and tsval & syncookies.TS_MASK == 7 | syncookies.TS_SACK
    assert len(stack.table) == 1 and len(listener.half_open) == 1     # no TCB for it
    assert stack.counters["tcp.syncookies_sent"] == 1
    # the ACK makes the connection, with what the cookie and the timestamp carried
    out = answer(stack, TcpRepr(40000, 80, 7001, synack.seq + 1, ACK, 100, timestamp=(901, tsval),
                                payload=b"hello"), 1.2)
    events = stack.events()
    assert [type(ev) for _, ev in events] == [Established]
    child = listener.accept()
    assert child.state is State.ESTABLISHED and child.passive
    assert (child.iss, child.eff_mss, child.snd_scale) == (synack.seq, 1460 - 12, 7)
    assert child.rcv_scale == synack.window_scale and child.sack_enabled and child.ts_enabled
    assert child.snd_wnd == 100 << 7
    stack.events()
    assert child.recv_buffer.read() == b"hello"
    assert stack.counters["tcp.syncookies_recv"] == 1
    assert all(not seg.flags & RST for seg in out)


def test_without_timestamps_a_cookie_offers_no_window_scale_or_sack():
    stack, listener = flooded(TcpConfig(checksum="software"))
    synack, = answer(stack, syn(window_scale=7, sack_permitted=True), 1.0)
    assert synack.timestamp is None and synack.window_scale is None and not synack.sack_permitted
    answer(stack, TcpRepr(40000, 80, 7001, synack.seq + 1, ACK, 65535), 1.1)
    stack.events()
    child = listener.accept()
    assert child is not None and not (child.ws_enabled or child.sack_enabled or child.ts_enabled)
    assert child.eff_mss == 1460


def test_a_forged_or_stale_cookie_ack_gets_a_reset():
    stack, listener = flooded(TcpConfig(checksum="software"))
    synack, = answer(stack, syn(), 1.0)
    forged = (synack.seq + 1 + 0x100000) & 0xFFFFFFFF        # (not one we made)
    rst, = answer(stack, TcpRepr(40000, 80, 7001, forged, ACK, 65535), 1.1)
    assert rst.flags == RST and stack.counters["tcp.syncookies_failed"] == 1
    learn_peer(stack, 1.0 + 121)               # (the ARP entry expired meanwhile)
    rst, = answer(stack, TcpRepr(40000, 80, 7001, synack.seq + 1, ACK, 65535), 1.0 + 121)
    assert rst.flags == RST                    # cookies are no longer tried after 2 min
    assert listener.accept() is None and stack.counters["tcp.syncookies_recv"] == 0


def test_cookies_off_drop_the_syn():
    stack, listener = flooded(TcpConfig(checksum="software", syn_cookies=False))
    assert answer(stack, syn(), 1.0) == []
    assert stack.counters["tcp.listen_overflow"] == 1


def test_a_full_accept_queue_drops_syns_cookie_or_not():
    stack = Stack(TcpConfig(checksum="software"), "10.0.0.1/24", STACK_MAC, features())
    learn_peer(stack)
    listener = stack.listen(80, backlog=1)
    synack, = answer(stack, TcpRepr(39999, 80, 5, 0, SYN, 65535), 0.0)
    answer(stack, TcpRepr(39999, 80, 6, synack.seq + 1, ACK, 65535), 0.0)
    assert len(listener.ready) == 1
    assert answer(stack, syn(), 1.0) == []
    assert stack.counters["tcp.listen_overflow"] == 1 and "tcp.syncookies_sent" not in \
        stack.counters


# ---- two stacks ---------------------------------------------------------------------

@pytest.mark.parametrize("timestamps", [True, False])
def test_bulk_transfer_over_a_cookie_connection(timestamps):
    config = TcpConfig(time_wait_s=1.0, timestamps=timestamps, listen_backlog=1)
    a, b, wire, clock = make_pair(config, mtu=9000)
    transfer = Transfer(a, b, PEER_IP, os.urandom(300_000), clock, port=80)
    # a SYN from an address nobody answers ARP for: half-open for the whole run
    frame = tcp_frame(TcpRepr(1, 80, 5, 0, SYN, 65535), src=ipv4.aton("10.0.0.77"), dst=PEER_IP)
    frame[:6] = PEER_MAC
    b.stack.receive_frame(memoryview(frame), clock.now)
    assert len(transfer.listener.half_open) == 1
    run([a, b], clock, transfer.done, transfer.tick)
    assert transfer.ok()
    assert b.stack.counters["tcp.syncookies_recv"] == 1
    assert transfer.accepted.eff_mss == 8960 - (12 if timestamps else 0)
    assert transfer.accepted.ws_enabled == timestamps
