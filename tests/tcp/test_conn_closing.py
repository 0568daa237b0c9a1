"""Closing states: FIN-WAIT-1/2, CLOSING, TIME-WAIT, CLOSE-WAIT, LAST-ACK, simultaneous
close, FIN retransmission, RST in every state, data after close()."""
import errno

import pytest

from engine.tcp.states import State

from . import harness
from .harness import (ACK, FIN, PSH, RST, close_wait, closing, config, established,
                      event_names, fin_wait_1, fin_wait_2, last_ack, mine, recv, recv_nothing,
                      recv_one, send, seg, theirs, time_wait)


def test_fin_wait_1_ack_of_fin_goes_to_fin_wait_2():
    conn = fin_wait_2()                         # built with close(): orphan timer runs
    assert conn.state is State.FIN_WAIT_2 and conn.next_deadline() == pytest.approx(10.0)


def test_fin_wait_1_fin_and_ack_together_goes_to_time_wait():
    conn = fin_wait_1()
    send(conn, seg(seq=theirs(), ack=mine(conn, 1), flags=FIN | ACK))
    assert conn.state is State.TIME_WAIT
    assert recv_one(conn).ack == theirs(1)


def test_simultaneous_close_through_closing():
    conn = closing()
    send(conn, seg(seq=theirs(1), ack=mine(conn, 1)))
    assert conn.state is State.TIME_WAIT
    assert event_names(conn) == ["PeerClosed"]


def test_fin_waits_for_queued_data():
    conn = established()
    conn.send(b"x" * 3000)
    conn.close(0.0)
    out = recv(conn)
    assert [len(s.payload) for s in out] == [1460, 1460, 80]
    assert [s.flags for s in out] == [ACK, ACK, ACK | PSH | FIN]
    send(conn, seg(seq=theirs(), ack=mine(conn, 3001)))
    assert conn.state is State.FIN_WAIT_2


def test_data_still_received_in_fin_wait_states():
    conn = fin_wait_1()
    conn.user_closed = False                     # as after shutdown(): still reading
    send(conn, seg(seq=theirs(), ack=mine(conn), payload=b"more"))
    send(conn, seg(seq=theirs(4), ack=mine(conn, 1), payload=b"data"))
    assert conn.state is State.FIN_WAIT_2
    assert conn.recv_buffer.read() == b"moredata"


def test_shutdown_then_read_to_the_end():
    conn = established()
    conn.shutdown(0.0)
    assert recv_one(conn).flags == FIN | ACK
    send(conn, seg(seq=theirs(), ack=mine(conn, 1), payload=b"tail", flags=ACK | FIN))
    assert conn.recv_buffer.read() == b"tail"
    assert conn.state is State.TIME_WAIT


def test_data_after_close_is_answered_with_rst():
    conn = fin_wait_2()                          # close(): the application reads no more
    send(conn, seg(seq=theirs(), ack=mine(conn, 1), payload=b"unwanted"))
    rst = recv_one(conn)
    assert rst.flags & RST and conn.state is State.CLOSED
    assert conn.counters["rx_data_after_close"] == 1


def test_fin_is_retransmitted_on_timeout():
    conn = fin_wait_1()
    t = conn.next_deadline()
    assert t == pytest.approx(0.2)               # rto_min: the handshake measured ~0 RTT
    conn.on_timer(t)
    fin = recv_one(conn, t)
    assert fin.flags == FIN | ACK and fin.seq == mine(conn)


def test_time_wait_expires():
    conn = time_wait(config(time_wait_s=30.0))
    assert conn.next_deadline() == pytest.approx(30.0)
    conn.on_timer(29.0)
    assert conn.state is State.TIME_WAIT
    conn.on_timer(30.0)
    assert conn.state is State.CLOSED and event_names(conn)[-1] == "Closed"


def test_time_wait_acks_a_retransmitted_fin_and_restarts():
    conn = time_wait(config(time_wait_s=30.0))
    send(conn, seg(seq=theirs(), ack=mine(conn, 1), flags=FIN | ACK), t=10.0)
    assert recv_one(conn, 10.0).ack == theirs(1)
    assert conn.next_deadline() == pytest.approx(40.0)


def test_time_wait_zero_closes_at_once():
    conn = fin_wait_2(config(time_wait_s=0.0))
    send(conn, seg(seq=theirs(), ack=mine(conn, 1), flags=FIN | ACK))
    assert conn.state is State.CLOSED
    assert recv_one(conn).ack == theirs(1)       # the last ACK still goes out


def test_close_wait_can_still_send():
    conn = close_wait(config(nagle=False))
    conn.send(b"reply")
    assert recv_one(conn).payload == b"reply"


def test_last_ack_closes_on_ack():
    conn = last_ack()
    send(conn, seg(seq=theirs(1), ack=mine(conn, 1)))
    assert conn.state is State.CLOSED
    assert event_names(conn) == ["PeerClosed", "Closed"]


def test_last_ack_retransmits_fin():
    conn = last_ack()
    t = conn.next_deadline()
    conn.on_timer(t)
    assert recv_one(conn, t).flags == FIN | ACK


# RST in each state: (builder, rst sequence offset, expected state, events, errno)
RST_CASES = [
    ("syn_received", State.CLOSED, ["Closed"], None),
    ("established", State.CLOSED, ["Reset", "Closed"], errno.ECONNRESET),
    ("fin_wait_1", State.CLOSED, ["Reset", "Closed"], errno.ECONNRESET),
    ("fin_wait_2", State.CLOSED, ["Reset", "Closed"], errno.ECONNRESET),
    ("close_wait", State.CLOSED, ["PeerClosed", "Reset", "Closed"], errno.ECONNRESET),
    ("closing", State.CLOSED, ["PeerClosed", "Closed"], None),
    ("last_ack", State.CLOSED, ["PeerClosed", "Closed"], None),
    ("time_wait", State.CLOSED, ["PeerClosed", "Closed"], None),
]


@pytest.mark.parametrize("builder,state,names,err", RST_CASES)
def test_rst_in_each_state(builder, state, names, err):
    conn = getattr(harness, builder)()
    send(conn, seg(seq=conn.rcv_nxt, ack=0, flags=RST))
    assert conn.state is state
    assert event_names(conn) == names
    assert conn.error == err
    recv_nothing(conn)


@pytest.mark.parametrize("builder", ["syn_received", "established", "fin_wait_1", "fin_wait_2",
                                     "close_wait", "closing", "last_ack", "time_wait"])
def test_rst_near_but_not_at_rcv_nxt_gets_challenge_ack(builder):
    conn = getattr(harness, builder)()
    before = conn.state
    send(conn, seg(seq=(conn.rcv_nxt + 1) & 0xFFFFFFFF, ack=0, flags=RST))
    assert conn.state is before
    ack = recv_one(conn)
    assert ack.flags == ACK and ack.ack == conn.rcv_nxt


@pytest.mark.parametrize("builder", ["established", "fin_wait_1", "fin_wait_2", "close_wait",
                                     "closing", "last_ack", "time_wait"])
def test_syn_in_each_synchronized_state_gets_challenge_ack(builder):
    conn = getattr(harness, builder)()
    before = conn.state
    send(conn, seg(seq=conn.rcv_nxt, ack=0, flags=harness.SYN))
    assert conn.state is before
    assert recv_one(conn).flags == ACK


def test_fin_wait_2_after_close_times_out():
    conn = fin_wait_2(config(time_wait_s=30.0))
    assert conn.next_deadline() == pytest.approx(30.0)
    conn.on_timer(30.0)
    assert conn.state is State.CLOSED and conn.counters["fin_wait_2_timeout"] == 1


def test_fin_wait_2_after_shutdown_waits_for_the_peer():
    conn = established()
    conn.shutdown(0.0)
    recv(conn)
    send(conn, seg(seq=theirs(), ack=mine(conn, 1)))
    assert conn.state is State.FIN_WAIT_2 and conn.next_deadline() is None


def test_time_wait_reuse_by_a_newer_syn():
    conn = time_wait()
    assert conn.syn_reopens_time_wait(seg(seq=theirs(1000), ack=0, flags=harness.SYN))
    assert not conn.syn_reopens_time_wait(seg(seq=theirs(-5), ack=0, flags=harness.SYN))
    assert not conn.syn_reopens_time_wait(seg(seq=theirs(1000), ack=0, flags=ACK))
    assert not established().syn_reopens_time_wait(seg(seq=theirs(1000), ack=0,
                                                       flags=harness.SYN))


def test_time_wait_reuse_decided_by_timestamps_when_in_use():
    conn = harness.established(config(timestamps=True), syn_fields=dict(timestamp=(500, 0)))
    conn.close(0.0)
    recv(conn)
    send(conn, seg(seq=theirs(), ack=mine(conn, 1), flags=FIN | ACK, timestamp=(600, 0)))
    assert conn.state is State.TIME_WAIT
    old = seg(seq=theirs(5000), ack=0, flags=harness.SYN, timestamp=(550, 0))
    assert not conn.syn_reopens_time_wait(old)
    assert conn.syn_reopens_time_wait(seg(seq=theirs(-5000), ack=0, flags=harness.SYN,
                                          timestamp=(700, 0)))
