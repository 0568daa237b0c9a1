"""RFC 7323 window scaling, timestamps and PAWS; RFC 2018 SACK on both sides."""
import pytest

from .harness import (ACK, FIN, State, config, established, mine, recv, recv_one, send,
                      seg, theirs)

ALL = dict(window_scale=True, timestamps=True, sack=True)


def test_window_scaling_both_ways():
    conn = established(config(window_scale=True, recv_buffer_bytes=1 << 20),
                       syn_fields=dict(window_scale=3))
    assert conn.rcv_scale == 5 and conn.snd_scale == 3
    send(conn, seg(seq=theirs(), ack=mine(conn), window=1000, payload=b"z"))
    assert conn.snd_wnd == 8000
    assert recv_one(conn).window == ((1 << 20) - 1) >> 5


def test_no_scaling_unless_both_offer():
    conn = established(config(window_scale=True, recv_buffer_bytes=1 << 20))
    assert conn.rcv_scale == 0 and conn.snd_scale == 0
    send(conn, seg(seq=theirs(), ack=mine(conn), payload=b"z"))
    assert recv_one(conn).window == 0xFFFF


def ts_conn(**kw):
    return established(config(timestamps=True, **kw), syn_fields=dict(timestamp=(5000, 0)))


def test_timestamps_are_echoed():
    conn = ts_conn()
    assert conn.effective_mss == 1448
    send(conn, seg(seq=theirs(), ack=mine(conn), payload=b"a", timestamp=(5010, 0)), t=0.5)
    ack = recv_one(conn, 0.5)
    assert ack.timestamp[1] == 5010


def test_paws_drops_old_timestamps():
    conn = ts_conn()
    send(conn, seg(seq=theirs(), ack=mine(conn), payload=b"a", timestamp=(6000, 0)))
    recv(conn)
    send(conn, seg(seq=theirs(1), ack=mine(conn), payload=b"b", timestamp=(5999, 0)))
    assert conn.counters["rx_drop_paws"] == 1
    assert recv_one(conn).ack == theirs(1)
    assert conn.recv_buffer.read() == b"a"


def test_paws_across_the_timestamp_wrap():
    conn = established(config(timestamps=True), syn_fields=dict(timestamp=(0xFFFF_FFF0, 0)))
    send(conn, seg(seq=theirs(), ack=mine(conn), payload=b"a", timestamp=(0x10, 0)))
    assert conn.recv_buffer.read() == b"a" and conn.counters["rx_drop_paws"] == 0


def test_paws_does_not_apply_to_rst():
    conn = ts_conn()
    send(conn, seg(seq=theirs(), ack=0, flags=0x04, timestamp=(1, 0)))
    assert conn.state is State.CLOSED


def test_rtt_from_timestamp_echo():
    conn = ts_conn(nagle=False)
    conn.send(b"x")
    out = recv_one(conn, 10.0)
    send(conn, seg(seq=theirs(), ack=mine(conn, 1), timestamp=(5001, out.timestamp[0])), t=10.3)
    assert conn.rtt.srtt == pytest.approx(0.3, abs=0.002)


def sack_conn(**kw):
    return established(config(sack=True, **kw), syn_fields=dict(sack_permitted=True))


def test_receiver_reports_sack_blocks_most_recent_first():
    conn = sack_conn()
    send(conn, seg(seq=theirs(100), ack=mine(conn), payload=bytes(100)))
    assert recv_one(conn).sack_blocks == ((theirs(100), theirs(200)),)
    send(conn, seg(seq=theirs(300), ack=mine(conn), payload=bytes(100)))
    assert recv_one(conn).sack_blocks == ((theirs(300), theirs(400)), (theirs(100), theirs(200)))
    send(conn, seg(seq=theirs(200), ack=mine(conn), payload=bytes(100)))
    assert recv_one(conn).sack_blocks == ((theirs(100), theirs(400)),)
    send(conn, seg(seq=theirs(), ack=mine(conn), payload=bytes(100)))
    ack = recv_one(conn)
    assert ack.ack == theirs(400) and ack.sack_blocks == ()


def test_at_most_three_blocks_with_timestamps():
    conn = established(config(sack=True, timestamps=True),
                       syn_fields=dict(sack_permitted=True, timestamp=(1, 0)))
    for i in range(5):
        send(conn, seg(seq=theirs(100 + 200 * i), ack=mine(conn), payload=bytes(100),
                       timestamp=(2, 0)))
        last = recv_one(conn)
    assert len(last.sack_blocks) == 3
    assert last.sack_blocks[0] == (theirs(900), theirs(1000))


def test_sender_retransmits_only_the_sack_holes():
    conn = sack_conn(send_buffer_bytes=1 << 20)
    conn.cc.cwnd = 1 << 20
    conn.send(bytes(range(256)) * 40)                            # 10240 bytes, 8 segments
    out = recv(conn)
    assert len(out) == 7                                          # the window: 7 x 1460
    # Segments 1 and 3 are lost; the peer SACKs 2, 4, 5, 6 (three duplicate ACKs+).
    blocks = []
    for i in (2, 4, 5, 6):
        blocks = [(mine(conn, 1460 * 2), mine(conn, 1460 * 3))]
        if i >= 4:
            blocks = [(mine(conn, 1460 * 4), mine(conn, 1460 * (i + 1)))] + blocks
        send(conn, seg(seq=theirs(), ack=mine(conn, 1460), sack_blocks=tuple(blocks)))
    first = recv(conn)
    seqs = [s.seq for s in first]
    assert mine(conn, 1460) in seqs and mine(conn, 3 * 1460) in seqs
    assert mine(conn, 2 * 1460) not in seqs and mine(conn, 4 * 1460) not in seqs
    assert conn.counters["fast_retransmit"] == 1


def test_sack_blocks_outside_the_window_are_ignored():
    conn = sack_conn(nagle=False)
    conn.send(bytes(100))
    recv(conn)
    send(conn, seg(seq=theirs(), ack=mine(conn), sack_blocks=((mine(conn, 200), mine(conn, 300)),)))
    assert not conn.scoreboard.blocks


def test_fin_carries_sack_when_queue_holds_data():
    conn = sack_conn()
    send(conn, seg(seq=theirs(10), ack=mine(conn), payload=b"later"))
    recv(conn)
    conn.shutdown(0.0)
    fin = recv_one(conn)
    assert fin.flags == FIN | ACK and fin.sack_blocks == ((theirs(10), theirs(15)),)


def test_paws_keeps_a_reordered_duplicate_ack():
    conn = ts_conn(nagle=False)
    conn.send(bytes(3000))
    recv(conn)
    send(conn, seg(seq=theirs(), ack=mine(conn), timestamp=(6000, 0)))
    send(conn, seg(seq=theirs(), ack=mine(conn), timestamp=(5990, 0)))     # overtaken
    assert conn.counters["rx_paws_reordered_ack_kept"] == 1
    assert conn.dupacks == 2 and conn.counters["rx_drop_paws"] == 0
