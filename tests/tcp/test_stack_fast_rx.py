"""The Stack's receive fast path (one unpack of Ethernet+IPv4+TCP for segments whose
only option is the timestamp): the same checks and counters as the general path."""
from __future__ import annotations

import pytest

from engine.tcp.stack import Stack
from engine.tcp.states import State
from engine.tcp.wire import tcp
from engine.tcp.wire.tcp import ACK, PSH, SYN, TcpRepr
from toad.config import TcpConfig

from .test_stack_support import features, learn_peer, parse_out, sent, tcp_frame

PEER_ISS = 5000


def established(checksum: str = "software"):
    """A stack with a connection accepted from the scripted peer (timestamps on)."""
    stack = Stack(TcpConfig(checksum=checksum, delayed_ack_ms=0.0), "10.0.0.1/24",
                  bytes.fromhex("02000000000a"), features())
    learn_peer(stack)
    listener = stack.listen(81)
    stack.receive_frame(memoryview(tcp_frame(TcpRepr(
        40000, 81, PEER_ISS, 0, SYN, 65535, mss=1460, timestamp=(7, 0)))), 0.0)
    frame = sent(stack, 0.0)[0]
    synack = (parse_out(frame)[2] if checksum != "off"       # "off" sends no checksum
              else tcp.parse(memoryview(frame.data)[34:]))
    assert synack.flags == SYN | ACK and synack.timestamp is not None
    our = (synack.seq + 1) & 0xFFFFFFFF
    stack.receive_frame(memoryview(tcp_frame(TcpRepr(
        40000, 81, PEER_ISS + 1, our, ACK, 65535, timestamp=(8, synack.timestamp[0])))), 0.0)
    sent(stack, 0.0)
    conn = listener.accept()
    assert conn is not None and conn.state is State.ESTABLISHED
    return stack, conn, our


def data_frame(our: int, payload: bytes, good_checksum: bool = True) -> bytearray:
    return tcp_frame(TcpRepr(40000, 81, PEER_ISS + 1, our, ACK | PSH, 65535,
                             timestamp=(9, 1), payload=payload), good_checksum=good_checksum)


def test_timestamped_data_is_delivered_and_acked():
    stack, conn, our = established()
    stack.receive_frame(memoryview(data_frame(our, b"hello")), 0.0)
    out = sent(stack, 0.0)
    assert conn.recv_buffer.read() == b"hello"
    _, _, ack = parse_out(out[0])
    assert ack.ack == PEER_ISS + 1 + 5 and ack.flags == ACK
    assert stack.counters["tcp.rx"] == 3 and conn.counters["rx_hp_data"] == 1


@pytest.mark.parametrize("trusted", [False, True])
def test_bad_tcp_checksum_dropped_unless_the_nic_vouches(trusted):
    stack, conn, our = established()
    stack.receive_frame(memoryview(data_frame(our, b"hello", good_checksum=False)), 0.0,
                        trusted)
    assert stack.counters["tcp.bad_checksum"] == (0 if trusted else 1)
    assert len(conn.recv_buffer) == (5 if trusted else 0)


def test_checksum_off_connection_skips_verification():
    stack, conn, our = established("off")
    stack.receive_frame(memoryview(data_frame(our, b"hello", good_checksum=False)), 0.0)
    assert stack.counters["tcp.bad_checksum"] == 0 and len(conn.recv_buffer) == 5


def test_bad_ip_checksum_counted_and_dropped():
    stack, conn, our = established()
    frame = data_frame(our, b"hello")
    frame[24] ^= 0x40                                     # IPv4 header checksum
    stack.receive_frame(memoryview(frame), 0.0, True)
    assert stack.counters["ip.bad_checksum"] == 1 and len(conn.recv_buffer) == 0


def test_other_options_and_truncated_frames_take_the_general_path():
    stack, conn, our = established()
    sack = tcp_frame(TcpRepr(40000, 81, PEER_ISS + 1, our, ACK, 65535, timestamp=(9, 1),
                             sack_blocks=((our, our),)))
    stack.receive_frame(memoryview(sack), 0.0)
    truncated = data_frame(our, b"hello")[:60]           # IP total length says 57 bytes more
    stack.receive_frame(memoryview(truncated), 0.0)
    assert stack.counters["tcp.rx"] == 3 and len(conn.recv_buffer) == 0
    assert stack.counters["ip.truncated"] == 1
