"""The Stack below TCP connections: Ethernet filtering, ARP (reply, cache, queue,
retry, timeout), IPv4 checks (fragments, options, bad headers), ICMP echo, RST for
closed ports, and counters for every drop. Driven with scripted frames and an
injected time; no connection is involved."""
from __future__ import annotations

import pytest

from engine.tcp.stack import Stack
from engine.tcp.wire import arp, ethernet, icmp, ipv4
from engine.tcp.wire.tcp import ACK, FIN, PSH, RST, SYN, TcpRepr
from toad.config import TcpConfig

from .test_stack_support import (PEER_IP, PEER_MAC, STACK_IP, STACK_MAC, arp_frame, echo_request,
                            features, ip_frame, learn_peer, parse_out, sent, tcp_frame)


@pytest.fixture
def stack() -> Stack:
    return Stack(TcpConfig(checksum="software"), "10.0.0.1/24", STACK_MAC, features())


def feed(stack: Stack, data, now: float = 0.0, csum_ok: bool = False):
    stack.receive_frame(memoryview(data), now, csum_ok)
    return sent(stack, now)


def test_arp_request_answered_and_sender_learned(stack):
    out = feed(stack, arp_frame(arp.OP_REQUEST))
    (eth, reply, _), = [parse_out(f) for f in out]
    assert eth.dst == PEER_MAC and eth.src == STACK_MAC
    assert reply == arp.ArpRepr(arp.OP_REPLY, STACK_MAC, STACK_IP, PEER_MAC, PEER_IP)
    assert stack.arp.lookup(PEER_IP, 0.0) == PEER_MAC
    assert stack.counters["arp.tx_reply"] == 1


def test_arp_for_another_host_ignored(stack):
    assert feed(stack, arp_frame(arp.OP_REQUEST, target_ip=ipv4.aton("10.0.0.9"))) == []
    assert stack.arp.lookup(PEER_IP, 0.0) is None
    assert stack.counters["arp.not_for_us"] == 1


def test_rst_waits_for_arp_then_goes_out(stack):
    syn = TcpRepr(40000, 81, 1000, 0, SYN, 1000)
    out = feed(stack, tcp_frame(syn), now=1.0)
    (eth, request, _), = [parse_out(f) for f in out]
    assert eth.dst == ethernet.BROADCAST and request.op == arp.OP_REQUEST
    assert request.target_ip == PEER_IP
    out = feed(stack, arp_frame(arp.OP_REPLY, dst_mac=STACK_MAC), now=1.1)
    (eth, packet, rst), = [parse_out(f) for f in out]
    assert eth.dst == PEER_MAC and packet.dst == PEER_IP
    assert (rst.flags, rst.seq, rst.ack) == (RST | ACK, 0, 1001)
    assert stack.counters["arp.released"] == 1


def test_arp_retries_then_drops_queued_frames(stack):
    feed(stack, tcp_frame(TcpRepr(40000, 81, 1, 0, SYN, 1000)), now=0.0)
    requests = 1
    now = 0.0
    while stack.next_deadline() is not None and now < 30:
        now = stack.next_deadline()
        stack.on_timer(now)
        requests += sum(1 for f in sent(stack, now) if parse_out(f)[1].op == 1)
    assert requests == stack.arp.retries + 1
    assert stack.counters["arp.unresolved_drops"] == 1
    assert stack.next_deadline() is None


def test_arp_queue_is_bounded(stack):
    for i in range(stack.arp.queue_limit + 5):
        feed(stack, tcp_frame(TcpRepr(40000 + i, 81, 1, 0, SYN, 1000)))
    assert stack.counters["arp.queue_overflow"] == 5


def test_arp_entry_goes_stale_is_refreshed_then_expires(stack):
    learn_peer(stack, now=0.0)
    timeout = stack.arp.timeout
    stack.on_timer(timeout)
    out = sent(stack, timeout)
    assert [parse_out(f)[1].op for f in out] == [arp.OP_REQUEST]   # refresh, entry still used
    assert stack.arp.lookup(PEER_IP, timeout) == PEER_MAC
    late = timeout + stack.arp.retry * stack.arp.retries
    stack.on_timer(late)
    assert stack.arp.lookup(PEER_IP, late) is None


def test_rst_for_closed_port_rfc9293(stack):
    learn_peer(stack)
    # no ACK: <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>, SYN and FIN count
    out = feed(stack, tcp_frame(TcpRepr(40000, 81, 0xFFFFFFFF, 0, SYN | FIN, 1000, payload=b"ab")))
    _, packet, rst = parse_out(out[0])
    assert (rst.src_port, rst.dst_port) == (81, 40000) and packet.src == STACK_IP
    assert (rst.flags, rst.seq, rst.ack) == (RST | ACK, 0, 3)       # wraps mod 2**32
    # ACK: <SEQ=SEG.ACK><CTL=RST>
    out = feed(stack, tcp_frame(TcpRepr(40000, 81, 5, 777, ACK | PSH, 1000, payload=b"x")))
    _, _, rst = parse_out(out[0])
    assert (rst.flags, rst.seq) == (RST, 777)
    # a RST is never answered
    assert feed(stack, tcp_frame(TcpRepr(40000, 81, 5, 777, RST, 0))) == []
    assert stack.counters["tcp.rst_closed_port"] == 2
    assert stack.counters["tcp.rst_for_nothing_dropped"] == 1


def test_bad_tcp_checksum_dropped_unless_nic_vouches(stack):
    learn_peer(stack)
    bad = tcp_frame(TcpRepr(40000, 81, 5, 0, SYN, 1000), good_checksum=False)
    assert feed(stack, bad) == []
    assert stack.counters["tcp.bad_checksum"] == 1
    assert len(feed(stack, bad, csum_ok=True)) == 1                 # trusted: RST


def test_checksum_off_skips_verification():
    stack = Stack(TcpConfig(checksum="off"), "10.0.0.1/24", STACK_MAC, features())
    learn_peer(stack)
    bad = tcp_frame(TcpRepr(40000, 81, 5, 0, SYN, 1000), good_checksum=False)
    out = feed(stack, bad)
    assert len(out) == 1 and stack.counters["tcp.bad_checksum"] == 0
    assert bytes(out[0].data[50:52]) == b"\0\0"                     # and none is sent


def test_icmp_echo_answered(stack):
    out = feed(stack, echo_request(0x4242, 7, b"abcdefgh" * 7))
    (eth, packet, reply), = [parse_out(f) for f in out]
    assert eth.dst == PEER_MAC and (packet.src, packet.dst) == (STACK_IP, PEER_IP)
    assert (reply.type, reply.ident, reply.seq_no) == (icmp.ECHO_REPLY, 0x4242, 7)
    assert bytes(reply.payload) == b"abcdefgh" * 7
    assert stack.counters["icmp.echo_replied"] == 1


def test_icmp_other_types_counted(stack):
    body = bytearray(8)
    body[0] = icmp.DEST_UNREACHABLE
    message = icmp.IcmpRepr(icmp.DEST_UNREACHABLE, 1)
    icmp.emit(message, memoryview(body))
    assert feed(stack, ip_frame(ipv4.PROTO_ICMP, bytes(body))) == []
    assert stack.counters["icmp.rx_other"] == 1


@pytest.mark.parametrize("frag", [0x2000, 0x0010, 0x2010])
def test_fragments_dropped_and_counted(stack, frag):
    learn_peer(stack)
    assert feed(stack, ip_frame(ipv4.PROTO_TCP, bytes(40), frag=frag)) == []
    assert stack.counters["ip.fragment_dropped"] == 1


def test_ip_options_ignored(stack):
    learn_peer(stack)
    frame = echo_request(1, 1, b"opt")
    # rebuild with IHL 6 (one NOP-padded option word)
    header = bytearray(frame[14:34])
    header[0] = 0x46
    total = int.from_bytes(header[2:4], "big") + 4
    header[2:4] = total.to_bytes(2, "big")
    header[10:12] = b"\0\0"
    header += b"\x01\x01\x01\x00"
    from engine.tcp.checksum import checksum
    header[10:12] = checksum(header).to_bytes(2, "big")
    out = feed(stack, frame[:14] + header + frame[34:])
    assert len(out) == 1 and stack.counters["icmp.echo_replied"] == 1


def test_drops_are_counted(stack):
    feed(stack, ip_frame(ipv4.PROTO_TCP, bytes(20), dst_mac=bytes.fromhex("020000000099")))
    feed(stack, ip_frame(ipv4.PROTO_TCP, bytes(20), dst=ipv4.aton("10.0.0.7")))
    feed(stack, ip_frame(17, bytes(8)))
    feed(stack, b"\x01" * 10)
    feed(stack, ethernet.header(STACK_MAC, PEER_MAC, 0x86DD) + bytes(40))
    bad_ip = ip_frame(ipv4.PROTO_TCP, bytes(20))
    bad_ip[24] ^= 1
    feed(stack, bad_ip)
    feed(stack, ip_frame(ipv4.PROTO_TCP, bytes(10)))
    counters = stack.counters
    assert counters["eth.not_for_us"] == 1 and counters["ip.not_for_us"] == 1
    assert counters["ip.unknown_protocol"] == 1 and counters["eth.truncated"] == 1
    assert counters["eth.unknown_type"] == 1 and counters["ip.bad_checksum"] == 1
    assert counters["tcp.truncated"] == 1


def test_random_garbage_never_raises(stack):
    import random
    rng = random.Random(5)
    learn_peer(stack)
    good = tcp_frame(TcpRepr(40000, 81, 5, 0, SYN, 1000, mss=1460, timestamp=(1, 2)))
    for _ in range(3000):
        data = bytearray(good)
        for _ in range(rng.randrange(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        data = data[:rng.randrange(10, len(data) + 1)]
        stack.receive_frame(memoryview(data), 0.0, rng.random() < 0.5)
        sent(stack, 0.0)
    assert sum(stack.counters.values()) > 3000


def test_bad_address_rejected():
    with pytest.raises(ValueError, match="10.0.0.1/24"):
        Stack(TcpConfig(), "10.0.0.300", STACK_MAC, features())


def open_passive(stack) -> int:
    """A connection accepted from the scripted peer (port 40000 -> 81); our next seq."""
    learn_peer(stack)
    listener = stack.listen(81)
    out = feed(stack, tcp_frame(TcpRepr(40000, 81, 1000, 0, SYN, 65535)))
    ours = parse_out(out[0])[2].seq + 1
    feed(stack, tcp_frame(TcpRepr(40000, 81, 1001, ours, ACK, 65535)))
    stack.events()
    assert listener.accept() is not None
    stack.close_listener(listener)
    return ours


@pytest.mark.parametrize("batched", [True, False])
def test_segment_after_peer_reset_gets_rst(stack, batched):
    # RFC 9293 3.10.7.1: once a RST at RCV.NXT closed the connection, it is no TCB;
    # a later segment on the 4-tuple is answered like one to a closed port, also
    # when it arrives in the same burst as the RST.
    ours = open_passive(stack)
    stack.receive_frame(memoryview(tcp_frame(TcpRepr(40000, 81, 1001, ours, RST | ACK, 0))), 1.0)
    if not batched:
        assert sent(stack, 1.0) == []
    out = feed(stack, tcp_frame(TcpRepr(40000, 81, 1001, ours, ACK | PSH, 65535, payload=b"x")),
               now=1.0)
    (_, _, rst), = [parse_out(f) for f in out]
    assert (rst.flags, rst.seq) == (RST, ours)
    assert stack.counters["tcp.rst_closed_port"] == 1
    assert len(stack.table) == 0
