"""SYN-SENT: active open, RFC 9293 3.10.7.3, simultaneous open, SYN timeouts."""
import errno

import pytest

from .harness import (ACK, FIN, LOCAL_ISS, MSS, REMOTE_ISS, RST, SYN, State, closed, config,
                      event_names, mine, recv, recv_nothing, recv_one, send, seg, syn_sent,
                      theirs)


def test_syn_carries_the_configured_options():
    conn, syn = syn_sent(config(window_scale=True, sack=True, timestamps=True,
                                recv_buffer_bytes=1 << 20))
    assert syn.seq == LOCAL_ISS and syn.ack == 0 and syn.mss == MSS
    assert syn.window_scale == 5                   # 1 MiB >> 5 fits 16 bits
    assert syn.sack_permitted and syn.timestamp[1] == 0
    assert syn.window == 0xFFFF                    # never scaled in a SYN


def test_syn_without_options_when_switched_off():
    _, syn = syn_sent(config())
    assert syn.window_scale is None and not syn.sack_permitted and syn.timestamp is None


def test_synack_establishes_and_acks():
    conn, _ = syn_sent()
    send(conn, seg(seq=REMOTE_ISS, ack=LOCAL_ISS + 1, flags=SYN | ACK, mss=1000))
    assert conn.state is State.ESTABLISHED
    ack = recv_one(conn)
    assert (ack.flags, ack.seq, ack.ack) == (ACK, LOCAL_ISS + 1, REMOTE_ISS + 1)
    assert conn.effective_mss == 1000
    assert event_names(conn) == ["Established"]


@pytest.mark.parametrize("peer_mss,expected", [(None, 536), (536, 536), (9000, MSS), (10, 64)])
def test_mss_negotiation(peer_mss, expected):
    conn, _ = syn_sent()
    send(conn, seg(seq=REMOTE_ISS, ack=LOCAL_ISS + 1, flags=SYN | ACK, mss=peer_mss))
    assert conn.effective_mss == expected


def test_rst_ack_means_refused():
    conn, _ = syn_sent()
    send(conn, seg(seq=0, ack=LOCAL_ISS + 1, flags=RST | ACK, window=0))
    assert conn.state is State.CLOSED
    assert conn.error == errno.ECONNREFUSED
    assert event_names(conn) == ["Refused", "Closed"]
    recv_nothing(conn)


def test_rst_without_ack_is_ignored():
    conn, _ = syn_sent()
    send(conn, seg(seq=0, ack=0, flags=RST, window=0))
    assert conn.state is State.SYN_SENT and conn.counters["rx_drop_synsent_rst_no_ack"] == 1


@pytest.mark.parametrize("bad_ack", [LOCAL_ISS, LOCAL_ISS + 2, LOCAL_ISS - 100])
def test_unacceptable_ack_gets_rst(bad_ack):
    conn, _ = syn_sent()
    send(conn, seg(seq=REMOTE_ISS, ack=bad_ack, flags=SYN | ACK))
    rst = recv_one(conn)
    assert rst.flags == RST and rst.seq == bad_ack
    assert conn.state is State.SYN_SENT


def test_rst_with_unacceptable_ack_is_dropped_silently():
    conn, _ = syn_sent()
    send(conn, seg(seq=0, ack=LOCAL_ISS + 7, flags=RST | ACK))
    recv_nothing(conn)
    assert conn.state is State.SYN_SENT


def test_segment_without_syn_is_dropped():
    conn, _ = syn_sent()
    send(conn, seg(seq=REMOTE_ISS, ack=LOCAL_ISS + 1, flags=ACK, payload=b"x"))
    recv_nothing(conn)
    assert conn.state is State.SYN_SENT and conn.counters["rx_drop_synsent_no_syn"] == 1


def test_simultaneous_open():
    conn, _ = syn_sent()
    send(conn, seg(seq=REMOTE_ISS, ack=0, flags=SYN, mss=MSS))
    assert conn.state is State.SYN_RECEIVED
    synack = recv_one(conn)
    assert synack.flags == SYN | ACK and synack.seq == LOCAL_ISS and synack.ack == REMOTE_ISS + 1
    send(conn, seg(seq=REMOTE_ISS + 1, ack=LOCAL_ISS + 1, flags=ACK))
    assert conn.state is State.ESTABLISHED
    assert event_names(conn) == ["Established"]
    assert conn.counters["simultaneous_open"] == 1


def test_simultaneous_open_reset_is_refused():
    conn, _ = syn_sent()
    send(conn, seg(seq=REMOTE_ISS, ack=0, flags=SYN, mss=MSS))
    recv(conn)
    send(conn, seg(seq=theirs(), ack=0, flags=RST))
    assert conn.state is State.CLOSED and conn.error == errno.ECONNREFUSED


def test_syn_retransmitted_with_backoff_then_timeout():
    conn, _ = syn_sent(config(syn_retries=3, rto_initial_ms=1000.0))
    t, times = 0.0, []
    for _ in range(3):
        t = conn.next_deadline()
        conn.on_timer(t)
        syn = recv_one(conn, t)
        assert syn.flags == SYN and syn.seq == LOCAL_ISS
        times.append(t)
    assert times == [1.0, 3.0, 7.0]                       # 1 s, doubled each time
    conn.on_timer(conn.next_deadline())
    assert conn.state is State.CLOSED and conn.error == errno.ETIMEDOUT
    assert event_names(conn) == ["TimedOut", "Closed"]


def test_close_in_syn_sent_closes():
    conn, _ = syn_sent()
    conn.close(0.0)
    assert conn.state is State.CLOSED and event_names(conn) == ["Closed"]
    recv_nothing(conn)


def test_data_queued_before_establishment_goes_after_the_ack():
    conn, _ = syn_sent(config(nagle=False))
    assert conn.send(b"early") == 5
    recv_nothing(conn)
    send(conn, seg(seq=REMOTE_ISS, ack=LOCAL_ISS + 1, flags=SYN | ACK, mss=MSS))
    out = recv_one(conn)
    assert out.payload == b"early" and out.seq == mine(closed())


def test_open_twice_is_an_error():
    conn, _ = syn_sent()
    with pytest.raises(ValueError, match="open_active"):
        conn.open_active(0.0)


def test_fin_in_synack_is_not_taken():
    conn, _ = syn_sent()
    send(conn, seg(seq=REMOTE_ISS, ack=LOCAL_ISS + 1, flags=SYN | ACK | FIN))
    assert conn.state is State.ESTABLISHED
    assert recv_one(conn).ack == REMOTE_ISS + 1
