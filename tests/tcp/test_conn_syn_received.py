"""SYN-RECEIVED: passive open (Connection.from_syn)."""
import pytest

from .harness import (ACK, FIN, LOCAL_ISS, MSS, PSH, REMOTE_ISS, RST, SYN, State, config,
                      event_names, mine, recv_nothing, recv_one, send, seg, syn_received,
                      theirs)


def test_synack_mirrors_offered_options():
    cfg = config(window_scale=True, sack=True, timestamps=True, recv_buffer_bytes=1 << 20)
    conn = syn_received(cfg, syn_fields=dict(window_scale=7, sack_permitted=True,
                                             timestamp=(1000, 0)))
    conn.snd_nxt = conn.iss                        # ask for the SYN-ACK again to inspect it
    synack = recv_one(conn)
    assert synack.window_scale == 5 and synack.sack_permitted
    assert synack.timestamp[1] == 1000
    assert conn.effective_mss == MSS - 12          # timestamps take 12 bytes per segment


def test_synack_omits_options_the_peer_did_not_offer():
    conn = syn_received(config(window_scale=True, sack=True, timestamps=True))
    conn.snd_nxt = conn.iss
    synack = recv_one(conn)
    assert synack.window_scale is None and not synack.sack_permitted and synack.timestamp is None


def test_ack_establishes():
    conn = syn_received()
    send(conn, seg(seq=theirs(), ack=LOCAL_ISS + 1))
    assert conn.state is State.ESTABLISHED and event_names(conn) == ["Established"]
    recv_nothing(conn)


def test_ack_with_data_establishes_and_delivers():
    conn = syn_received()
    send(conn, seg(seq=theirs(), ack=LOCAL_ISS + 1, flags=ACK | PSH, payload=b"hello"))
    assert conn.state is State.ESTABLISHED
    assert conn.recv_buffer.read() == b"hello"
    assert recv_one(conn).ack == theirs(5)


@pytest.mark.parametrize("bad_ack", [LOCAL_ISS, LOCAL_ISS + 5])
def test_bad_ack_gets_rst(bad_ack):
    conn = syn_received()
    send(conn, seg(seq=theirs(), ack=bad_ack))
    rst = recv_one(conn)
    assert rst.flags == RST and rst.seq == bad_ack
    assert conn.state is State.SYN_RECEIVED


def test_rst_closes_a_passive_open_silently():
    conn = syn_received()
    send(conn, seg(seq=theirs(), flags=RST, ack=0))
    assert conn.state is State.CLOSED
    assert event_names(conn) == ["Closed"] and conn.error is None


def test_rst_out_of_window_is_ignored():
    conn = syn_received()
    send(conn, seg(seq=theirs(1_000_000), flags=RST, ack=0))
    assert conn.state is State.SYN_RECEIVED
    recv_nothing(conn)


def test_rst_in_window_but_not_exact_gets_challenge_ack():
    conn = syn_received()
    send(conn, seg(seq=theirs(10), flags=RST, ack=0))
    assert conn.state is State.SYN_RECEIVED
    ack = recv_one(conn)
    assert ack.flags == ACK and ack.ack == theirs()


def test_retransmitted_syn_gets_synack_again():
    conn = syn_received()
    send(conn, seg(seq=REMOTE_ISS, ack=0, flags=SYN, mss=MSS))
    synack = recv_one(conn)
    assert synack.flags == SYN | ACK and synack.seq == LOCAL_ISS


def test_synack_retransmitted_then_given_up_silently():
    conn = syn_received(config(syn_retries=2))
    for _ in range(2):
        t = conn.next_deadline()
        conn.on_timer(t)
        assert recv_one(conn, t).flags == SYN | ACK
    conn.on_timer(conn.next_deadline())
    assert conn.state is State.CLOSED and event_names(conn) == ["Closed"]


def test_close_before_ack_sends_fin_after_it():
    conn = syn_received()
    conn.close(0.0)
    assert conn.state is State.FIN_WAIT_1
    recv_nothing(conn)
    send(conn, seg(seq=theirs(), ack=LOCAL_ISS + 1))
    fin = recv_one(conn)
    assert fin.flags == FIN | ACK and fin.seq == mine(conn)
    send(conn, seg(seq=theirs(), ack=mine(conn, 1)))
    assert conn.state is State.FIN_WAIT_2


def test_syn_without_ack_flag_in_window_gets_challenge_ack():
    conn = syn_received()
    send(conn, seg(seq=theirs(5), ack=0, flags=SYN))
    assert recv_one(conn).flags == ACK
    assert conn.state is State.SYN_RECEIVED
