"""Header prediction takes the request/response cases (data carrying the ACK of new
data, windows that move) and leaves every TCB field as the full path leaves it."""
import pytest

from engine.tcp.connection import Connection

from .harness import (ACK, PSH, State, config, established, events, mine, recv, send, seg,
                      theirs)

SKIP = {"counters", "config", "header_prediction", "events", "send_buffer", "recv_buffer",
        "reasm", "rx_blocks", "scoreboard", "rtt", "cc", "ctl_out"}


def tcb(conn) -> dict:
    """Every plain TCB field, plus the parts of the owned objects that matter."""
    out = {name: getattr(conn, name) for name in Connection.__slots__ if name not in SKIP}
    out.update(rtt=(conn.rtt.srtt, conn.rtt.rttvar, conn.rtt.base_rto, conn.rtt.backoff),
               cc=(conn.cc.cwnd, conn.cc.ssthresh, conn.cc.ca_bytes),
               sent=len(conn.send_buffer), unread=len(conn.recv_buffer),
               events=events(conn))
    return out


def ping_pong(prediction: bool, delayed_ack_ms: float, timestamps: bool) -> list:
    """Requests out, replies (carrying the ACK) in, the peer's window moving by a few
    bytes each time as a receiver's SWS avoidance makes it; a snapshot per step."""
    conn = established(config(header_prediction=prediction, nagle=False, timestamps=timestamps,
                              delayed_ack_ms=delayed_ack_ms),
                       syn_fields={"timestamp": (100, 0)} if timestamps else None)
    snapshots, t, sent = [], 0.0, 0
    for i in range(12):
        t += 0.003
        conn.send(b"q" * 64)
        out = recv(conn, t)
        assert [len(s.payload) for s in out] == [64]
        sent += 64
        ts = {"timestamp": (101 + i, out[0].timestamp[0])} if timestamps else {}
        reply = seg(seq=theirs(64 * i), ack=mine(conn, sent), flags=ACK | PSH,
                    payload=b"r" * 64, window=64000 - 64 * (i // 2), **ts)
        send(conn, reply, t + 0.001)
        conn.recv_buffer.read()
        snapshots.append((tcb(conn), [(s.seq, s.ack, s.flags, s.window)
                                      for s in recv(conn, t + 0.001)]))
    return snapshots, conn.counters


@pytest.mark.parametrize("delayed_ack_ms,timestamps", [(0.0, False), (40.0, True)])
def test_replies_carrying_acks_take_the_fast_path_with_the_full_paths_result(
        delayed_ack_ms, timestamps):
    fast, fast_counters = ping_pong(True, delayed_ack_ms, timestamps)
    slow, slow_counters = ping_pong(False, delayed_ack_ms, timestamps)
    assert fast == slow
    assert fast_counters["rx_hp_data_ack"] == 12 and fast_counters["rx_slow_path"] == 1
    assert slow_counters["rx_hp_data_ack"] == 0
    assert fast_counters["rx_window_update"] == slow_counters["rx_window_update"] == 5


@pytest.mark.parametrize("prediction", [True, False])
def test_pure_ack_moving_the_window_is_predicted_and_updates_it(prediction):
    conn = established(config(header_prediction=prediction, nagle=False))
    conn.send(b"x" * 100)
    recv(conn)
    send(conn, seg(seq=theirs(), ack=mine(conn, 100), window=50000))
    assert conn.snd_wnd == 50000 and conn.snd_wl2 == mine(conn, 100)
    assert conn.bytes_acked == 100
    assert conn.counters["rx_hp_ack"] == (1 if prediction else 0)


def test_a_window_closing_to_zero_still_takes_the_full_path():
    conn = established(config(nagle=False))
    conn.send(b"x" * 100)
    recv(conn)
    send(conn, seg(seq=theirs(), ack=mine(conn, 100), window=0))
    assert conn.snd_wnd == 0 and conn.counters["rx_hp_ack"] == 0
    assert conn.counters["rx_slow_path"] == 2           # the SYN-ACK and this ACK
    assert conn.state is State.ESTABLISHED


def test_data_acking_more_than_was_sent_is_left_to_the_full_path():
    conn = established(config(nagle=False))
    conn.send(b"x" * 10)
    recv(conn)
    send(conn, seg(seq=theirs(), ack=mine(conn, 20), flags=ACK | PSH, payload=b"y"))
    assert conn.counters["rx_hp_data_ack"] == 0 and conn.counters["rx_drop_ack_too_new"] == 1
    assert len(conn.recv_buffer) == 0 and conn.bytes_acked == 0
