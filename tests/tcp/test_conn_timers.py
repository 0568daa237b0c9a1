"""Timers with an injected clock: RTO (RFC 6298, Karn, backoff, give-up), zero-window
persist, keepalive, and next_deadline()."""
import errno

import pytest

from .harness import (ACK, State, config, established, event_names, mine, recv, recv_nothing,
                      recv_one, send, seg, theirs)


def test_rto_retransmits_with_exponential_backoff():
    conn = established(config(nagle=False, rto_min_ms=200.0))
    conn.rtt.base_rto = 1.0
    conn.send(b"abc")
    recv_one(conn, 0.0)
    times = []
    for _ in range(4):
        t = conn.next_deadline()
        conn.on_timer(t)
        out = recv_one(conn, t)
        assert out.payload == b"abc" and out.seq == mine(conn)
        times.append(t)
    assert times == pytest.approx([1.0, 3.0, 7.0, 15.0])
    assert conn.cc.cwnd == conn.effective_mss and conn.counters["rto"] == 4


def test_rto_is_capped_by_rto_max():
    conn = established(config(nagle=False, rto_max_ms=2000.0))
    conn.rtt.base_rto = 1.5
    conn.send(b"a")
    recv(conn)
    conn.on_timer(conn.next_deadline())
    recv(conn, 1.5)
    assert conn.next_deadline() == pytest.approx(1.5 + 2.0)


def test_rto_gives_up_after_max_retries():
    conn = established(config(nagle=False, max_retries=2))
    conn.send(b"a")
    recv(conn)
    for _ in range(2):
        t = conn.next_deadline()
        conn.on_timer(t)
        recv_one(conn, t)
    conn.on_timer(conn.next_deadline())
    assert conn.state is State.CLOSED and conn.error == errno.ETIMEDOUT
    assert event_names(conn) == ["TimedOut", "Closed"]


def test_rtt_sample_sets_rto():
    conn = established(config(nagle=False, rto_min_ms=10.0))
    conn.send(b"a")
    recv(conn, 1.0)
    send(conn, seg(seq=theirs(), ack=mine(conn, 1)), t=1.1)
    # Handshake gave a 0 s sample; now 0.1 s: srtt 0.0125, rttvar ...
    assert conn.rtt.srtt == pytest.approx(0.0125)
    assert conn.rtt.rto() >= 0.01


def test_karn_no_sample_from_a_retransmitted_segment():
    conn = established(config(nagle=False, rto_min_ms=10.0))
    conn.rtt.base_rto = 1.0
    srtt = conn.rtt.srtt
    conn.send(b"a")
    recv(conn, 0.0)
    conn.on_timer(1.0)
    recv_one(conn, 1.0)
    send(conn, seg(seq=theirs(), ack=mine(conn, 1)), t=1.05)
    assert conn.rtt.srtt == srtt                   # ambiguous: not sampled
    assert conn.rtt.backoff == 1                   # and the backoff is kept (RFC 6298 5.7)


def test_zero_window_probe_then_window_opens():
    conn = established(config(nagle=False))
    send(conn, seg(seq=theirs(), ack=mine(conn), window=0))
    conn.send(b"hello")
    recv_nothing(conn, 0.0)
    t = conn.next_deadline()
    assert t is not None
    conn.on_timer(t)
    probe = recv_one(conn, t)
    assert probe.payload == b"h" and probe.seq == mine(conn)
    # The peer still has no room: it ACKs without taking the byte; probing continues.
    send(conn, seg(seq=theirs(), ack=mine(conn), window=0), t=t + 0.01)
    t2 = conn.next_deadline()
    conn.on_timer(t2)
    assert recv_one(conn, t2).payload == b"h"
    assert conn.state is State.ESTABLISHED
    send(conn, seg(seq=theirs(), ack=mine(conn, 1), window=1000), t=t2 + 0.01)
    assert recv_one(conn, t2 + 0.01).payload == b"ello"
    assert conn.counters["tx_window_probe"] == 2      # the first, and its resend by the RTO
    assert conn.counters["tx_window_stall"] == 1      # one stall: the persist timer started once


def test_zero_window_probing_does_not_time_out():
    conn = established(config(nagle=False, max_retries=2))
    send(conn, seg(seq=theirs(), ack=mine(conn), window=0))
    conn.send(b"x")
    recv_nothing(conn, 0.0)                        # output arms the persist timer
    t = 0.0
    for _ in range(6):
        t = conn.next_deadline()
        conn.on_timer(t)
        recv(conn, t)
        send(conn, seg(seq=theirs(), ack=mine(conn), window=0), t=t)
    assert conn.state is State.ESTABLISHED


def test_keepalive_probes_then_timeout():
    conn = established(config(keepalive_s=100.0, keepalive_interval_s=10.0, keepalive_probes=2))
    assert conn.next_deadline() == pytest.approx(100.0)
    conn.on_timer(100.0)
    probe = recv_one(conn, 100.0)
    assert probe.flags == ACK and probe.seq == mine(conn, -1) and probe.payload == b""
    conn.on_timer(110.0)
    recv_one(conn, 110.0)
    conn.on_timer(120.0)
    assert conn.state is State.CLOSED and conn.error == errno.ETIMEDOUT


def test_keepalive_answer_resets_the_probes():
    conn = established(config(keepalive_s=100.0, keepalive_interval_s=10.0, keepalive_probes=2))
    conn.on_timer(100.0)
    recv(conn, 100.0)
    send(conn, seg(seq=theirs(), ack=mine(conn)), t=101.0)
    assert conn.next_deadline() == pytest.approx(201.0)


def test_no_deadline_when_idle_without_keepalive():
    assert established().next_deadline() is None


def test_rto_is_3s_after_a_retransmitted_syn_without_sample():
    from .harness import LOCAL_ISS, REMOTE_ISS, SYN, syn_sent
    conn, _ = syn_sent(config(rto_initial_ms=1000.0))
    conn.on_timer(1.0)
    recv_one(conn, 1.0)
    send(conn, seg(seq=REMOTE_ISS, ack=LOCAL_ISS + 1, flags=SYN | ACK, mss=1460), t=1.5)
    assert conn.rtt.rto() == pytest.approx(3.0)


def test_window_reopening_resends_a_dropped_probe_at_once():
    conn = established(config(nagle=False))
    send(conn, seg(seq=theirs(), ack=mine(conn), window=0))
    conn.send(b"abcdef")
    recv_nothing(conn, 0.0)
    t = conn.next_deadline()
    conn.on_timer(t)
    assert recv_one(conn, t).payload == b"a"                 # the probe, dropped by the peer
    send(conn, seg(seq=theirs(), ack=mine(conn), window=1000), t=t + 0.01)
    out = recv_one(conn, t + 0.01)
    assert out.seq == mine(conn) and out.payload == b"abcdef"
    assert conn.counters["window_reopened_resend_probe"] == 1


def test_data_held_after_an_rto_keeps_a_timer_running():
    """After an RTO rewinds to SND.UNA, a window smaller than a segment (and than half
    the largest the peer offered) holds the data (sender SWS avoidance) with nothing in
    flight. A timer must still run, or the connection waits forever for a window update
    the peer has no reason to send (seen in the engine: a shared receive pool ran short,
    its window shrank, the RTO fired once, then nothing for good)."""
    conn = established(config())
    conn.rtt.base_rto = 1.0
    conn.send(b"x" * 4000)
    sent = recv(conn, 0.0)
    assert sent and sent[0].seq == mine(conn)
    send(conn, seg(seq=theirs(), ack=mine(conn), window=1000), t=0.1)   # shrinks, acks nothing
    t = conn.next_deadline()
    conn.on_timer(t)                                 # the RTO: back to SND.UNA, cwnd 1 MSS
    recv(conn, t)
    t2 = conn.next_deadline()
    assert t2 is not None, "no timer left running with 4000 bytes unacknowledged"
    conn.on_timer(t2)
    out = recv_one(conn, t2)                         # the SWS override: what the window takes
    assert out.seq == mine(conn) and out.payload == b"x" * 1000
    assert conn.next_deadline() is not None          # and that segment is timed again
