"""Two connections over the fake in-memory link: every byte arrives, in order.

Connection-level only (no Stack). The link loses, duplicates and reorders
segments with a seeded generator; the sweep checks integrity by sha256 both ways,
and that both ends finish CLOSED with the right events.
"""
from __future__ import annotations

import random

import pytest

from engine.tcp.connection import Connection
from engine.tcp.events import Closed, DataReceived, Established, PeerClosed, SendAcked

from .harness import LOCAL, PSH, REMOTE, config
from .link import Link, digest, transfer


def pair(cfg, now=0.0, mss=1460, tso_max=0):
    a = Connection(cfg, LOCAL, REMOTE, 0xFFFF_F000, now, mss=mss, tso_max=tso_max)
    a.open_active(now)
    syn = a.poll_transmit(now)[0]
    b = Connection.from_syn(cfg, REMOTE, LOCAL, syn, 0x7FFF_FF00, now, mss=mss, tso_max=tso_max)
    return a, b


def payload(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def drain(conn):
    found = []
    while (e := conn.next_event()) is not None:
        found.append(e)
    return found


def test_clean_link_both_directions_and_close():
    cfg = config(timestamps=True, sack=True, window_scale=True, delayed_ack_ms=40.0,
                 send_buffer_bytes=256 * 1024, recv_buffer_bytes=256 * 1024)
    a, b = pair(cfg)
    data_a, data_b = payload(300_000, 1), payload(200_000, 2)
    got_b, got_a, now, rounds = transfer(a, b, Link(1), Link(2), data_a, data_b)
    assert rounds >= 0, "transfer did not finish"
    assert digest(got_b) == digest(data_a) and digest(got_a) == digest(data_b)
    ev_a, ev_b = drain(a), drain(b)
    assert isinstance(ev_a[0], Established) and isinstance(ev_a[-1], Closed)
    assert any(isinstance(e, PeerClosed) for e in ev_a)
    assert sum(e.n for e in ev_b if isinstance(e, DataReceived)) == len(data_a)
    assert [e.total for e in ev_a if isinstance(e, SendAcked)][-1] == len(data_a)
    assert a.counters["rto"] == 0 and b.counters["rto"] == 0


@pytest.mark.parametrize("options", [
    dict(timestamps=True, sack=True, window_scale=True),
    dict(timestamps=False, sack=False, window_scale=False),
    dict(timestamps=True, sack=False, window_scale=True, cc="reno"),
])
@pytest.mark.parametrize("seed,loss,dup,reorder", [
    (11, 0.01, 0.0, 0.0), (12, 0.05, 0.02, 0.05), (13, 0.10, 0.05, 0.10), (14, 0.0, 0.1, 0.3),
])
def test_lossy_link_sweep(options, seed, loss, dup, reorder):
    cfg = config(delayed_ack_ms=40.0, rto_min_ms=50.0, rto_initial_ms=200.0,
                 send_buffer_bytes=128 * 1024, recv_buffer_bytes=128 * 1024, **options)
    a, b = pair(cfg)
    data_a, data_b = payload(200_000, seed), payload(50_000, seed + 100)
    ab = Link(seed, loss, dup, reorder)
    ba = Link(seed + 1, loss, dup, reorder)
    got_b, got_a, now, rounds = transfer(a, b, ab, ba, data_a, data_b)
    assert rounds >= 0, f"not finished: a={a} b={b} got {len(got_b)}/{len(got_a)}"
    assert digest(got_b) == digest(data_a)
    assert digest(got_a) == digest(data_b)
    if loss >= 0.05:
        assert a.counters["tx_retransmit"] + a.counters["tx_fast_retransmit"] > 0


def test_tso_segments_are_multiples_of_mss():
    cfg = config(timestamps=True, sack=True, window_scale=True,
                 send_buffer_bytes=1 << 20, recv_buffer_bytes=1 << 20)
    a, b = pair(cfg, mss=1460, tso_max=65536)
    data = payload(1_000_000, 5)
    sizes = []

    class Spy(Link):
        def put(self, segments, now):
            sizes.extend((len(s.payload), bool(s.flags & PSH)) for s in segments)
            super().put(segments, now)

    got_b, _, _, rounds = transfer(a, b, Spy(1), Link(2), data, b"")
    assert rounds >= 0 and got_b == data
    assert a.gso_size == 1448
    big = [n for n, push in sizes if n > a.gso_size and not push]
    assert big and all(n % a.gso_size == 0 for n in big)   # only the tail may be short
    assert max(n for n, _ in sizes) <= 65536


@pytest.mark.parametrize("prediction", [True, False])
def test_header_prediction_off_moves_the_same_bytes(prediction):
    cfg = config(header_prediction=prediction, timestamps=True, sack=True, window_scale=True,
                 send_buffer_bytes=128 * 1024, recv_buffer_bytes=128 * 1024)
    a, b = pair(cfg)
    data_a, data_b = payload(150_000, 21), payload(150_000, 22)
    got_b, got_a, _, rounds = transfer(a, b, Link(3, 0.02, 0.01, 0.02), Link(4, 0.02), data_a,
                                       data_b)
    assert rounds >= 0 and got_b == data_a and got_a == data_b
    hits = sum(c.counters["rx_hp_data"] + c.counters["rx_hp_ack"] for c in (a, b))
    assert (hits > 0) == prediction
