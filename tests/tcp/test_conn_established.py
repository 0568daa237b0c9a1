"""ESTABLISHED: data both ways, acceptability, trimming, RST/SYN handling (RFC 5961),
sequence wrap, Nagle, windows, receive buffers that accept less, header prediction."""
import errno

import pytest

from engine.tcp.buffers import ByteRecvBuffer
from engine.tcp.events import DataReceived, SendAcked

from .harness import (ACK, FIN, PSH, RST, SYN, State, config, established, event_names,
                      events, mine, recv, recv_nothing, recv_one, send, seg, theirs)


def test_send_data_and_get_it_acked():
    conn = established(config(nagle=False))
    assert conn.send(b"hello world") == 11
    out = recv_one(conn)
    assert out.seq == mine(conn) and out.payload == b"hello world" and out.flags == ACK | PSH
    send(conn, seg(seq=theirs(), ack=mine(conn, 11)))
    assert events(conn) == [SendAcked(11)]
    assert len(conn.send_buffer) == 0 and conn.bytes_acked == 11
    assert conn.next_deadline() is None            # nothing in flight: no RTO


def test_receive_data_in_order():
    conn = established()
    send(conn, seg(seq=theirs(), ack=mine(conn), flags=ACK | PSH, payload=b"abc"))
    send(conn, seg(seq=theirs(3), ack=mine(conn), flags=ACK | PSH, payload=b"def"))
    assert conn.recv_buffer.read() == b"abcdef"
    assert events(conn) == [DataReceived(6)]
    assert recv_one(conn).ack == theirs(6)


def test_large_write_is_cut_into_mss_segments_within_the_window():
    conn = established(config(send_buffer_bytes=1 << 20))
    conn.cc.cwnd = 1 << 20
    conn.send(bytes(100_000))
    out = recv(conn)
    # 43 full segments fill the peer's 64000-byte window but for 1220 bytes, which
    # sender SWS avoidance holds back (less than an MSS and than half the max window).
    assert [len(s.payload) for s in out] == [1460] * 43
    assert all(s.seq == mine(conn, i * 1460) for i, s in enumerate(out))


def test_data_entirely_beyond_window_is_dropped_and_acked():
    conn = established(config(recv_buffer_bytes=4096))
    send(conn, seg(seq=theirs(5000), ack=mine(conn), payload=b"x" * 100))
    assert recv_one(conn).ack == theirs()
    assert len(conn.recv_buffer) == 0 and conn.counters["rx_drop_out_of_window"] == 1


def test_data_partly_beyond_window_is_trimmed():
    conn = established(config(recv_buffer_bytes=4096))
    send(conn, seg(seq=theirs(), ack=mine(conn), payload=b"y" * 5000, flags=ACK | FIN))
    assert len(conn.recv_buffer) == 4096
    ack = recv_one(conn)
    assert ack.ack == theirs(4096) and ack.window == 0
    assert conn.state is State.ESTABLISHED             # the trimmed FIN is not taken


def test_old_duplicate_is_acked_not_delivered():
    conn = established()
    send(conn, seg(seq=theirs(), ack=mine(conn), payload=b"abc"))
    recv(conn)
    send(conn, seg(seq=theirs(), ack=mine(conn), payload=b"abc"))
    assert recv_one(conn).ack == theirs(3)
    assert conn.recv_buffer.read() == b"abc"
    assert conn.counters["rx_drop_out_of_window"] == 1
    assert conn.counters["rx_duplicate_segment"] == 1


def test_overlapping_segment_delivers_only_new_bytes():
    conn = established()
    send(conn, seg(seq=theirs(), ack=mine(conn), payload=b"abcd"))
    send(conn, seg(seq=theirs(2), ack=mine(conn), payload=b"cdefg"))
    assert conn.recv_buffer.read() == b"abcdefg"


def test_out_of_order_then_fill_the_hole():
    conn = established()
    send(conn, seg(seq=theirs(3), ack=mine(conn), payload=b"def"))
    dup = recv_one(conn)
    assert dup.ack == theirs() and len(conn.recv_buffer) == 0
    send(conn, seg(seq=theirs(6), ack=mine(conn), payload=b"ghi", flags=ACK | FIN))
    assert recv_one(conn).ack == theirs()
    send(conn, seg(seq=theirs(), ack=mine(conn), payload=b"abc"))
    assert conn.recv_buffer.read() == b"abcdefghi"
    assert recv_one(conn).ack == theirs(10)          # 9 bytes and the queued FIN
    assert conn.state is State.CLOSE_WAIT
    assert event_names(conn) == ["DataReceived", "PeerClosed"]


def test_fin_with_data():
    conn = established()
    send(conn, seg(seq=theirs(), ack=mine(conn), payload=b"bye", flags=ACK | FIN | PSH))
    assert conn.recv_buffer.read() == b"bye"
    assert conn.state is State.CLOSE_WAIT
    assert recv_one(conn).ack == theirs(4)
    assert event_names(conn) == ["DataReceived", "PeerClosed"]


def test_rst_exact_resets():
    conn = established()
    send(conn, seg(seq=theirs(), ack=0, flags=RST))
    assert conn.state is State.CLOSED and conn.error == errno.ECONNRESET
    assert event_names(conn) == ["Reset", "Closed"]
    with pytest.raises(ConnectionResetError):
        conn.send(b"x")


def test_rst_in_window_not_exact_gets_challenge_ack():
    conn = established()
    send(conn, seg(seq=theirs(100), ack=0, flags=RST))
    assert conn.state is State.ESTABLISHED
    ack = recv_one(conn)
    assert ack.flags == ACK and ack.ack == theirs()
    assert conn.counters["tx_challenge_ack_rst"] == 1


def test_rst_out_of_window_is_ignored():
    conn = established()
    send(conn, seg(seq=theirs(-10), ack=0, flags=RST))
    send(conn, seg(seq=theirs(10_000_000), ack=0, flags=RST))
    assert conn.state is State.ESTABLISHED
    recv_nothing(conn)


def test_syn_in_synchronized_state_gets_challenge_ack():
    conn = established()
    send(conn, seg(seq=theirs(), ack=0, flags=SYN))
    assert conn.state is State.ESTABLISHED
    assert recv_one(conn).flags == ACK and conn.counters["tx_challenge_ack_syn"] == 1


def test_ack_of_unsent_data_is_dropped_and_answered():
    conn = established()
    send(conn, seg(seq=theirs(), ack=mine(conn, 100), payload=b"data"))
    assert len(conn.recv_buffer) == 0
    ack = recv_one(conn)
    assert ack.ack == theirs() and ack.seq == mine(conn)


def test_very_old_ack_is_dropped():
    conn = established()
    send(conn, seg(seq=theirs(), ack=mine(conn, -200_000), payload=b"data"))
    assert len(conn.recv_buffer) == 0 and conn.counters["rx_drop_ack_too_old"] == 1


def test_segment_without_ack_is_dropped():
    conn = established()
    send(conn, seg(seq=theirs(), flags=PSH, payload=b"data"))
    assert len(conn.recv_buffer) == 0 and conn.counters["rx_drop_no_ack"] == 1


@pytest.mark.parametrize("our_iss,their_iss", [(0xFFFF_FFF0, 0x10), (0x10, 0xFFFF_FFF8),
                                               (0xFFFF_FFFF, 0xFFFF_FFFF)])
def test_data_across_the_sequence_wrap(our_iss, their_iss, monkeypatch):
    from tests.tcp import harness
    monkeypatch.setattr(harness, "LOCAL_ISS", our_iss)
    monkeypatch.setattr(harness, "REMOTE_ISS", their_iss)
    conn = harness.established(config(nagle=False))
    for i in range(4):
        conn.send(bytes([i]) * 10)
        out = recv_one(conn)
        assert out.seq == (our_iss + 1 + 10 * i) & 0xFFFFFFFF
        send(conn, seg(seq=harness.theirs(10 * i), ack=harness.mine(conn, 10 * (i + 1)),
                       payload=bytes([100 + i]) * 10))
        assert recv_one(conn).ack == harness.theirs(10 * (i + 1))
    assert conn.bytes_acked == 40
    assert conn.recv_buffer.read() == b"".join(bytes([100 + i]) * 10 for i in range(4))
    send(conn, seg(seq=harness.theirs(40), ack=harness.mine(conn, 40), flags=ACK | FIN))
    assert conn.state is State.CLOSE_WAIT


def test_nagle_holds_small_segments_while_data_is_unacked():
    conn = established()
    conn.send(b"a")
    assert recv_one(conn).payload == b"a"
    conn.send(b"b")
    conn.send(b"c")
    recv_nothing(conn)
    assert conn.counters["tx_held_nagle_sws"] >= 1
    send(conn, seg(seq=theirs(), ack=mine(conn, 1)))
    assert recv_one(conn).payload == b"bc"


def test_nodelay_sends_at_once():
    conn = established()
    conn.set_nodelay(True)
    conn.send(b"a")
    assert recv_one(conn).payload == b"a"
    conn.send(b"b")
    assert recv_one(conn).payload == b"b"


def test_sender_respects_the_peers_window():
    conn = established()
    send(conn, seg(seq=theirs(), ack=mine(conn), window=3000))
    conn.send(bytes(10_000))
    assert [len(s.payload) for s in recv(conn)] == [1460, 1460]
    recv_nothing(conn)                            # 80 bytes left: sender SWS holds them


def test_advertised_window_is_the_free_receive_space():
    conn = established(config(recv_buffer_bytes=8192))
    send(conn, seg(seq=theirs(), ack=mine(conn), payload=bytes(3000)))
    assert recv_one(conn).window == 8192 - 3000
    send(conn, seg(seq=theirs(3000), ack=mine(conn), payload=bytes(5192)))
    assert recv_one(conn).window == 0
    conn.recv_buffer.read(100)
    conn.notify_read(0.0)                          # opened by less than an MSS: quiet
    recv_nothing(conn)
    conn.recv_buffer.read(4000)
    conn.notify_read(0.0)
    update = recv_one(conn)
    assert update.window == 4100 and update.ack == theirs(8192)


class ShrinkingBuffer(ByteRecvBuffer):
    """Room can be taken without data (the engine spending an anonymous buffer's tail)."""

    def __init__(self, capacity):
        super().__init__(capacity)
        self.taken = 0

    def free_space(self):
        return max(0, super().free_space() - self.taken)


def full_reader_then_taken_back(conn):
    send(conn, seg(seq=theirs(), ack=mine(conn), payload=bytes(8192)))
    assert recv_one(conn).window == 0
    conn.recv_buffer.read(4000)
    conn.notify_read(0.0)                         # a window update is due...
    conn.recv_buffer.taken = 4000                 # ...but the room is gone again


def test_a_window_update_that_updates_nothing_is_not_sent():
    conn = established(config(recv_buffer_bytes=8192), recv_buffer=ShrinkingBuffer(8192))
    full_reader_then_taken_back(conn)
    recv_nothing(conn)                            # it would repeat the last ACK
    assert conn.counters["tx_window_update_dropped"] == 1


def test_a_segment_that_wants_an_ack_still_gets_it_beside_a_dropped_update():
    conn = established(config(recv_buffer_bytes=8192), recv_buffer=ShrinkingBuffer(8192))
    full_reader_then_taken_back(conn)
    send(conn, seg(seq=theirs(), ack=mine(conn), payload=b"old"))   # a duplicate
    assert recv_one(conn).ack == theirs(8192)
    assert conn.counters["tx_window_update_dropped"] == 0


class StingyBuffer(ByteRecvBuffer):
    """Accepts at most ``limit`` bytes per write (an engine out of anonymous buffers)."""

    def __init__(self, capacity, limit):
        super().__init__(capacity)
        self.limit = limit

    def write(self, data, push=False):
        return super().write(memoryview(data)[:self.limit], push)


def test_receive_buffer_accepting_less_acks_only_what_it_took():
    conn = established(recv_buffer=StingyBuffer(65536, 1000))
    send(conn, seg(seq=theirs(), ack=mine(conn), payload=bytes(range(250)) * 6, flags=ACK | FIN))
    assert recv_one(conn).ack == theirs(1000)
    assert conn.state is State.ESTABLISHED               # the FIN was not reached
    assert conn.counters["rx_bytes_not_accepted"] == 500
    send(conn, seg(seq=theirs(1000), ack=mine(conn), payload=(bytes(range(250)) * 6)[1000:],
                   flags=ACK | FIN))
    assert recv_one(conn).ack == theirs(1501)
    assert conn.recv_buffer.read() == bytes(range(250)) * 6
    assert conn.state is State.CLOSE_WAIT


def test_send_after_shutdown_is_epipe():
    conn = established()
    conn.shutdown(0.0)
    with pytest.raises(BrokenPipeError):
        conn.send(b"late")


@pytest.mark.parametrize("prediction", [True, False])
def test_header_prediction_switch_changes_path_not_result(prediction):
    conn = established(config(header_prediction=prediction, nagle=False))
    for i in range(5):
        send(conn, seg(seq=theirs(100 * i), ack=mine(conn), payload=bytes([i]) * 100))
    conn.send(b"x" * 10)
    recv(conn)
    send(conn, seg(seq=theirs(500), ack=mine(conn, 10)))
    assert conn.recv_buffer.read() == b"".join(bytes([i]) * 100 for i in range(5))
    assert conn.bytes_acked == 10
    hits = conn.counters["rx_hp_data"] + conn.counters["rx_hp_ack"]
    assert hits == (6 if prediction else 0)


def test_delayed_ack_every_second_full_segment_or_timer():
    conn = established(config(delayed_ack_ms=40.0))
    send(conn, seg(seq=theirs(), ack=mine(conn), payload=bytes(1460)), t=1.0)
    recv_nothing(conn, 1.0)
    assert conn.next_deadline() == pytest.approx(1.04)
    send(conn, seg(seq=theirs(1460), ack=mine(conn), payload=bytes(1460)), t=1.01)
    assert recv_one(conn, 1.01).ack == theirs(2920)
    send(conn, seg(seq=theirs(2920), ack=mine(conn), payload=bytes(10)), t=2.0)
    recv_nothing(conn, 2.0)
    conn.on_timer(2.04)
    assert recv_one(conn, 2.04).ack == theirs(2930)
    assert conn.counters["delayed_ack_timeout"] == 1


def test_abort_sends_rst_and_closes():
    conn = established()
    conn.abort(0.0)
    rst = recv_one(conn)
    assert rst.flags & RST and rst.seq == mine(conn)
    assert conn.state is State.CLOSED and event_names(conn) == ["Closed"]


def test_challenge_acks_are_rate_limited():
    conn = established(config(challenge_ack_per_s=3))
    for i in range(5):
        send(conn, seg(seq=theirs(50 + i), ack=0, flags=RST), t=1.0)
        recv(conn, 1.0)
    assert conn.counters["tx_challenge_ack_rst"] == 3
    assert conn.counters["tx_challenge_ack_rate_limited"] == 2
    send(conn, seg(seq=theirs(50), ack=0, flags=RST), t=2.5)
    assert recv_one(conn, 2.5).flags == ACK            # a new second: allowed again


def test_one_duplicate_ack_per_out_of_order_segment():
    conn = established()
    for i in range(1, 4):
        send(conn, seg(seq=theirs(100 * i), ack=mine(conn), payload=bytes(100)))
    out = recv(conn)
    assert len(out) == 3 and all(s.ack == theirs() and s.payload == b"" for s in out)
    assert conn.counters["tx_dupack"] == 3


class GatherBuffer:
    """A SendBuffer whose peek returns one view per 100-byte page (like host memory)."""

    def __init__(self):
        self.data = b""                           # immutable: views handed out stay valid
        self.peeks = []

    def __len__(self):
        return len(self.data)

    def free_space(self):
        return 1 << 20

    def append(self, data):
        self.data += bytes(data)
        return len(data)

    def peek(self, offset, length):
        end = min(offset + length, len(self.data))
        self.peeks.append((offset, end - offset))
        view = memoryview(self.data)
        cuts = list(range(offset, end, 100)) + [end]
        return [view[a:b] for a, b in zip(cuts, cuts[1:]) if b > a]

    def consume(self, n):
        self.data = self.data[n:]


def test_gather_list_payloads_and_engine_appends():
    buf = GatherBuffer()
    conn = established(config(nagle=False), send_buffer=buf)
    buf.append(bytes(range(250)))                 # the engine's buffer grew by itself
    conn.notify_appended(0.0)
    out = recv_one(conn)
    assert out.payload == bytes(range(250)) and buf.peeks == [(0, 250)]
    buf.append(b"z" * 50)
    conn.notify_appended(0.0)
    one = conn.poll_transmit(0.0)[0]
    assert isinstance(one.payload, memoryview)     # a single view is passed as is
    send(conn, seg(seq=theirs(), ack=mine(conn, 300)))
    assert len(buf) == 0 and conn.bytes_acked == 300


def test_events_are_coalesced_per_drain():
    conn = established(config(nagle=False))
    for i in range(3):
        send(conn, seg(seq=theirs(10 * i), ack=mine(conn), payload=bytes(10)))
    conn.send(b"abc")
    recv(conn)
    send(conn, seg(seq=theirs(30), ack=mine(conn, 1)))
    send(conn, seg(seq=theirs(30), ack=mine(conn, 3)))
    assert events(conn) == [DataReceived(30), SendAcked(3)]
    assert conn.next_event() is None
