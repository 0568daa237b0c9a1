"""Fast retransmit and loss recovery (RFC 5681 reno, RFC 6582 newreno), congestion
window growth, and the choice of algorithm by name."""
import pytest

from engine.tcp import cc

from .harness import config, established, mine, recv, recv_nothing, send, seg, theirs


def loaded(name="newreno", segments=10):
    conn = established(config(cc=name, send_buffer_bytes=1 << 20))
    conn.cc.cwnd = 100 * 1460
    conn.send(bytes(1460 * segments))
    out = recv(conn)
    assert len(out) == segments
    return conn


def dupacks(conn, n, acked=0):
    for _ in range(n):
        send(conn, seg(seq=theirs(), ack=mine(conn, acked)))


def test_third_duplicate_ack_triggers_fast_retransmit():
    conn = loaded()
    dupacks(conn, 2)
    recv_nothing(conn)
    dupacks(conn, 1)
    out = recv(conn)
    assert [s.seq for s in out] == [mine(conn)]
    assert conn.in_recovery and conn.cc.ssthresh == 5 * 1460
    assert conn.cc.cwnd == 8 * 1460                 # ssthresh + 3 MSS
    assert conn.counters["fast_retransmit"] == 1
    assert conn.counters["sack_recovery"] == (1 if conn.sack_enabled else 0)


def test_newreno_partial_ack_retransmits_next_hole_and_stays():
    conn = loaded("newreno")
    dupacks(conn, 3)
    recv(conn)
    send(conn, seg(seq=theirs(), ack=mine(conn, 2 * 1460)))    # partial: up to the 2nd loss
    out = recv(conn)
    assert out[0].seq == mine(conn, 2 * 1460)
    assert conn.in_recovery and conn.counters["rx_partial_ack"] == 1
    send(conn, seg(seq=theirs(), ack=mine(conn, 10 * 1460)))   # full ACK ends recovery
    assert not conn.in_recovery and conn.counters["recovery_done"] == 1
    assert conn.cc.cwnd <= conn.cc.ssthresh


def test_reno_leaves_recovery_at_the_first_new_ack():
    conn = loaded("reno")
    dupacks(conn, 3)
    recv(conn)
    send(conn, seg(seq=theirs(), ack=mine(conn, 2 * 1460)))
    assert not conn.in_recovery and conn.cc.cwnd == conn.cc.ssthresh


def test_dupacks_inflate_the_window_in_recovery():
    conn = loaded()
    dupacks(conn, 3)
    recv(conn)
    before = conn.cc.cwnd
    dupacks(conn, 2)
    assert conn.cc.cwnd == before + 2 * 1460


def test_no_second_fast_retransmit_below_recover():
    conn = loaded()
    dupacks(conn, 3)
    recv(conn)
    send(conn, seg(seq=theirs(), ack=mine(conn, 10 * 1460)))
    conn.send(bytes(1460 * 4))
    recv(conn)
    assert conn.counters["fast_retransmit"] == 1


def test_slow_start_then_congestion_avoidance():
    algo = cc.create("newreno", 1000)
    assert algo.cwnd == 4000                          # RFC 5681 initial window for MSS 1000
    algo.ssthresh = 6000
    algo.on_ack(1000)
    algo.on_ack(1000)
    assert algo.cwnd == 6000
    for _ in range(6):
        algo.on_ack(1000)
    assert algo.cwnd == 7000                          # one MSS per window's worth of ACKs


def test_timeout_collapses_cwnd():
    algo = cc.create("reno", 1000)
    algo.cwnd = 50_000
    algo.on_timeout(40_000)
    assert algo.cwnd == 1000 and algo.ssthresh == 20_000


def test_unknown_algorithm_is_named():
    with pytest.raises(ValueError, match="cubic.*newreno, reno"):
        cc.create("cubic", 1460)


def test_limited_transmit_sends_new_data_on_the_first_dupacks():
    conn = established(config(send_buffer_bytes=1 << 20))
    conn.cc.cwnd = 4 * 1460
    conn.send(bytes(1460 * 10))
    assert len(recv(conn)) == 4
    dupacks(conn, 1)
    assert [s.seq for s in recv(conn)] == [mine(conn, 4 * 1460)]
    dupacks(conn, 1)
    assert [s.seq for s in recv(conn)] == [mine(conn, 5 * 1460)]


def test_slow_start_stops_at_ssthresh_on_a_huge_ack():
    algo = cc.create("newreno", 1000)
    algo.ssthresh = 10_000
    algo.on_ack(500_000)
    assert algo.cwnd == 10_000


def sack_loaded(segments=10):
    conn = established(config(sack=True, send_buffer_bytes=1 << 20),
                       syn_fields=dict(sack_permitted=True))
    conn.cc.cwnd = 100 * 1460
    conn.send(bytes(1460 * segments))
    assert len(recv(conn)) == segments
    return conn


def test_sack_enters_recovery_once_three_segments_are_sacked():
    conn = sack_loaded()
    block = ((mine(conn, 1460), mine(conn, 4 * 1460)),)        # segments 2-4 SACKed
    send(conn, seg(seq=theirs(), ack=mine(conn), sack_blocks=block))
    assert conn.in_recovery and conn.dupacks == 1              # RFC 6675 IsLost
    assert conn.counters["sack_recovery"] == conn.counters["fast_retransmit"] == 1
    assert recv(conn)[0].seq == mine(conn)


def test_rto_resends_only_what_was_not_sacked():
    conn = sack_loaded()
    block = ((mine(conn, 2 * 1460), mine(conn, 8 * 1460)),)
    send(conn, seg(seq=theirs(), ack=mine(conn, 1460), sack_blocks=block))
    conn.rexmit_una_pending = False
    recv(conn)
    conn.on_timer(conn.next_deadline())
    conn.cc.cwnd = 100 * 1460                                  # look past slow start
    seqs = [s.seq for s in recv(conn, 5.0)]
    assert seqs == [mine(conn, 1460), mine(conn, 8 * 1460), mine(conn, 9 * 1460)]


def test_rto_resends_snd_una_when_the_ack_lands_inside_a_sacked_block():
    """A cumulative ACK inside a SACKed block means the peer dropped the rest of it
    (else it would acknowledge it): the block is forgotten, and the RTO resends from
    SND.UNA (RFC 6298 5.4). Kept as [SND.UNA, SND.MAX), it made the post-RTO pass skip
    every byte and leave no timer: the engine's shared receive pool ran short, and a
    connection waited forever (1 run in ~10 of the 256 MB both-ways test)."""
    conn = sack_loaded(4)
    conn.rtt.base_rto = 1.0
    block = ((mine(conn, 1460), mine(conn, 4 * 1460)),)       # segments 2-4 SACKed
    send(conn, seg(seq=theirs(), ack=mine(conn), sack_blocks=block), t=0.1)
    recv(conn, 0.1)                                            # segment 1 resent
    send(conn, seg(seq=theirs(), ack=mine(conn, 2 * 1460)), t=0.2)   # inside the block
    assert not conn.scoreboard.blocks
    recv(conn, 0.2)
    t = conn.next_deadline()
    conn.on_timer(t)
    out = recv(conn, t)
    assert out and out[0].seq == mine(conn, 2 * 1460)
    assert conn.next_deadline() is not None


def test_outstanding_data_always_keeps_the_retransmission_timer():
    """Whatever a stale scoreboard says, output never leaves data outstanding with no
    timer running (RFC 6298 5.1; BSD's tcp_output keeps the same invariant)."""
    conn = sack_loaded(4)
    conn.rtt.base_rto = 1.0
    t = conn.next_deadline()
    conn.on_timer(t)                                           # RTO: back to SND.UNA
    conn.scoreboard.blocks = [[mine(conn), mine(conn, 4 * 1460)]]   # a lying scoreboard
    conn.scoreboard.sacked_bytes = 4 * 1460
    recv(conn, t)
    assert conn.next_deadline() is not None
