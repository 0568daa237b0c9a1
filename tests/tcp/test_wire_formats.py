"""Golden-bytes round trips for every header (bytes written by hand from the RFC
layouts), plus the length-then-value validation of each parser."""
from __future__ import annotations

from dataclasses import replace

import pytest

from engine.tcp.checksum import checksum, pseudo_sum
from engine.tcp.wire import MalformedPacket, arp, ethernet, icmp, ipv4, tcp
from engine.tcp.wire.tcp import ACK, PSH, SYN, TcpRepr

MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")


# ---- Ethernet ---------------------------------------------------------------------

def test_ethernet_golden_round_trip():
    golden = bytes.fromhex("020000000002" "020000000001" "0806") + b"payload"
    parsed = ethernet.parse(memoryview(golden))
    assert (parsed.dst, parsed.src, parsed.ethertype) == (MAC_B, MAC_A, ethernet.ETHERTYPE_ARP)
    assert bytes(parsed.payload) == b"payload"
    out = bytearray(14)
    ethernet.emit(parsed, memoryview(out))
    assert bytes(out) == golden[:14]
    assert ethernet.buffer_len(parsed) == len(golden)


def test_ethernet_truncated():
    with pytest.raises(MalformedPacket) as err:
        ethernet.parse(memoryview(bytes(13)))
    assert err.value.counter == "eth.truncated"


# ---- ARP --------------------------------------------------------------------------

ARP_REQUEST = bytes.fromhex(
    "0001" "0800" "06" "04" "0001"       # Ethernet, IPv4, hlen 6, plen 4, request
    "020000000001" "0a000001"           # sender 02:..:01 10.0.0.1
    "000000000000" "0a000002")          # target unknown, 10.0.0.2


def test_arp_golden_round_trip():
    parsed = arp.parse(memoryview(ARP_REQUEST))
    assert parsed == arp.ArpRepr(arp.OP_REQUEST, MAC_A, ipv4.aton("10.0.0.1"),
                                 bytes(6), ipv4.aton("10.0.0.2"))
    out = bytearray(arp.buffer_len(parsed))
    arp.emit(parsed, memoryview(out))
    assert bytes(out) == ARP_REQUEST


@pytest.mark.parametrize("patch,counter", [
    ((0, b"\x00\x06"), "arp.unsupported"),      # htype 6
    ((2, b"\x86\xdd"), "arp.unsupported"),      # ptype IPv6
    ((6, b"\x00\x09"), "arp.bad_op"),
])
def test_arp_bad_values(patch, counter):
    data = bytearray(ARP_REQUEST)
    data[patch[0]:patch[0] + 2] = patch[1]
    with pytest.raises(MalformedPacket) as err:
        arp.parse(memoryview(data))
    assert err.value.counter == counter


def test_arp_truncated():
    with pytest.raises(MalformedPacket, match="arp.truncated"):
        arp.parse(memoryview(ARP_REQUEST[:27]))


# ---- IPv4 -------------------------------------------------------------------------

# A classic UDP/IPv4 header: total length 0x73, DF, TTL 64, 192.168.0.1 -> 192.168.0.199,
# header checksum b861 (worked by hand from RFC 791's layout).
IP_GOLDEN = bytes.fromhex("45000073000040004011b861c0a80001c0a800c7")


def test_ipv4_golden_parse_and_emit():
    packet = IP_GOLDEN + bytes(0x73 - 20)
    parsed = ipv4.parse(memoryview(packet))
    assert (parsed.src, parsed.dst) == (ipv4.aton("192.168.0.1"), ipv4.aton("192.168.0.199"))
    assert (parsed.protocol, parsed.ttl, parsed.payload_len) == (17, 64, 0x73 - 20)
    assert parsed.dont_fragment and not parsed.is_fragment and parsed.header_len == 20
    out = bytearray(20)
    ipv4.emit(parsed, memoryview(out))
    assert bytes(out) == IP_GOLDEN


def test_ipv4_options_skipped():
    # IHL 6: one option word (NOP NOP NOP EOL); checksum recomputed for the new header
    header = bytearray(bytes.fromhex("4600001c000040004006" "0000" "0a0000010a000002" "01010100"))
    value = checksum(header)
    header[10:12] = value.to_bytes(2, "big")
    parsed = ipv4.parse(memoryview(bytes(header) + b"abcd"))
    assert parsed.header_len == 24 and bytes(parsed.payload) == b"abcd"


def test_ipv4_fragment_flagged():
    header = bytearray(IP_GOLDEN)
    header[6:8] = b"\x20\x00"                    # MF
    header[10:12] = b"\0\0"
    header[10:12] = checksum(header).to_bytes(2, "big")
    assert ipv4.parse(memoryview(bytes(header) + bytes(0x73 - 20))).is_fragment


@pytest.mark.parametrize("data,counter", [
    (IP_GOLDEN[:19], "ip.truncated"),
    (IP_GOLDEN, "ip.truncated"),                          # total length 0x73 > 20 bytes
    (b"\x65" + IP_GOLDEN[1:] + bytes(100), "ip.bad_version"),
    (b"\x44" + IP_GOLDEN[1:] + bytes(100), "ip.bad_header_len"),
    (IP_GOLDEN[:10] + b"\xb8\x62" + IP_GOLDEN[12:] + bytes(100), "ip.bad_checksum"),
])
def test_ipv4_malformed(data, counter):
    with pytest.raises(MalformedPacket) as err:
        ipv4.parse(memoryview(data))
    assert err.value.counter == counter


def test_aton_ntoa():
    assert ipv4.aton("10.77.0.2") == 0x0A4D0002
    assert ipv4.ntoa(0x0A4D0002) == "10.77.0.2"
    with pytest.raises(ValueError):
        ipv4.aton("10.0.0.256")
    assert ipv4.is_loopback(ipv4.aton("127.3.2.1")) and not ipv4.is_loopback(0x0A000001)


# ---- ICMP -------------------------------------------------------------------------

# echo request, id 0x1234, seq 1, payload "hi": checksum worked by hand:
# 0800 + 0000 + 1234 + 0001 + 6869 = 0x829e -> ~ = 0x7d61
ICMP_GOLDEN = bytes.fromhex("08007d6112340001") + b"hi"


def test_icmp_golden_round_trip():
    parsed = icmp.parse(memoryview(ICMP_GOLDEN))
    assert (parsed.type, parsed.code, parsed.ident, parsed.seq_no) == (8, 0, 0x1234, 1)
    assert bytes(parsed.payload) == b"hi"
    out = bytearray(icmp.buffer_len(parsed))
    icmp.emit(parsed, memoryview(out))
    assert bytes(out) == ICMP_GOLDEN


def test_icmp_bad_checksum_and_truncated():
    with pytest.raises(MalformedPacket, match="icmp.bad_checksum"):
        icmp.parse(memoryview(ICMP_GOLDEN[:-1] + b"j"))
    with pytest.raises(MalformedPacket, match="icmp.truncated"):
        icmp.parse(memoryview(ICMP_GOLDEN[:7]))


# ---- TCP --------------------------------------------------------------------------

SRC_IP, DST_IP = ipv4.aton("10.0.0.1"), ipv4.aton("10.0.0.2")
# A SYN as Linux sends it: 49152 -> 80, seq 1, data offset 10 words, window 65535,
# options MSS 1460 | SACK-permitted, TS(1, 0) | NOP, WS 7. Checksum field 0 here.
SYN_NO_CSUM = bytes.fromhex(
    "c000" "0050" "00000001" "00000000" "a0" "02" "ffff" "0000" "0000"
    "020405b4" "0402080a0000000100000000" "01030307")
SYN_REPR = TcpRepr(49152, 80, 1, 0, SYN, 65535, mss=1460, window_scale=7,
                   sack_permitted=True, timestamp=(1, 0))


def with_checksum(segment: bytes) -> bytes:
    value = checksum(segment, pseudo_sum(SRC_IP, DST_IP, 6, len(segment)))
    return segment[:16] + value.to_bytes(2, "big") + segment[18:]


def test_tcp_syn_golden_emit():
    out = bytearray(tcp.buffer_len(SYN_REPR))
    size = tcp.emit(SYN_REPR, memoryview(out))
    assert size == 40 and bytes(out) == SYN_NO_CSUM


def test_tcp_syn_golden_parse_with_checksum():
    golden = with_checksum(SYN_NO_CSUM)
    seg = tcp.parse(memoryview(golden), pseudo_sum(SRC_IP, DST_IP, 6, len(golden)))
    assert seg == replace(SYN_REPR, payload=seg.payload)
    assert bytes(seg.payload) == b"" and seg.seg_len == 1


def test_tcp_data_segment_round_trip_with_sack_and_timestamps():
    seg = TcpRepr(80, 49152, 0xFFFFFFF0, 2, ACK | PSH, 512, timestamp=(7, 9),
                  sack_blocks=((100, 200), (300, 400), (0xFFFFFF00, 5)), payload=b"data")
    hl = tcp.header_len(seg)
    assert hl == 20 + 12 + 4 + 24
    frame = bytearray(hl + 4)
    tcp.emit(seg, memoryview(frame))
    frame[hl:] = seg.payload
    frame = with_checksum(bytes(frame))
    back = tcp.parse(memoryview(frame), pseudo_sum(SRC_IP, DST_IP, 6, len(frame)))
    assert bytes(back.payload) == b"data"
    assert back == replace(seg, payload=back.payload)


def test_tcp_sack_blocks_truncated_to_fit_header():
    seg = TcpRepr(1, 2, 3, 4, ACK, 5, timestamp=(1, 2),
                  sack_blocks=tuple((i, i + 1) for i in range(0, 10, 2)))
    assert tcp.header_len(seg) <= 60
    frame = bytearray(tcp.header_len(seg))
    tcp.emit(seg, memoryview(frame))
    assert len(tcp.parse(memoryview(frame)).sack_blocks) == 3


def test_tcp_unknown_options_skipped_and_eol_ends():
    # kind 30 len 4 (unknown) | NOP | MSS 536 | EOL + padding ... then junk after EOL
    options = bytes.fromhex("1e04abcd" "01" "020402180000" "00" "ff")
    header = bytearray(SYN_NO_CSUM[:20]) + options
    header[12] = (len(header) // 4) << 4
    seg = tcp.parse(memoryview(bytes(header)))
    assert seg.mss == 536 and seg.timestamp is None and seg.window_scale is None


def test_tcp_window_scale_clamped():
    options = bytes.fromhex("01030309")    # NOP WS(9) would be legal; 15 is clamped to 14
    header = bytearray(SYN_NO_CSUM[:20]) + options[:3] + b"\x0f"
    header[12] = 6 << 4
    assert tcp.parse(memoryview(bytes(header))).window_scale == 14


@pytest.mark.parametrize("data,counter", [
    (SYN_NO_CSUM[:19], "tcp.truncated"),
    (SYN_NO_CSUM[:12] + b"\x40" + SYN_NO_CSUM[13:], "tcp.bad_data_offset"),
    (SYN_NO_CSUM[:36], "tcp.bad_data_offset"),            # offset 40 > 36 bytes
    (SYN_NO_CSUM[:20] + bytes.fromhex("02ff0000") + SYN_NO_CSUM[24:], "tcp.bad_option"),
    (SYN_NO_CSUM[:20] + bytes.fromhex("02010000") + SYN_NO_CSUM[24:], "tcp.bad_option"),
])
def test_tcp_malformed(data, counter):
    with pytest.raises(MalformedPacket) as err:
        tcp.parse(memoryview(data))
    assert err.value.counter == counter


def test_tcp_bad_checksum_detected():
    golden = bytearray(with_checksum(SYN_NO_CSUM))
    golden[4] ^= 0x40
    with pytest.raises(MalformedPacket, match="tcp.bad_checksum"):
        tcp.parse(memoryview(bytes(golden)), pseudo_sum(SRC_IP, DST_IP, 6, len(golden)))
    tcp.parse(memoryview(bytes(golden)))        # trusted (csum_ok / checksum off): parses


@pytest.mark.parametrize("timestamp", [(7, 9), None])
def test_tcp_parse_at_reads_the_segment_inside_a_frame(timestamp):
    seg = TcpRepr(80, 49152, 0xFFFFFFF0, 2, ACK | PSH, 512, timestamp=timestamp,
                  payload=b"in place")
    hl = tcp.header_len(seg)
    segment = bytearray(hl + len(seg.payload))
    tcp.emit(seg, memoryview(segment))
    segment[hl:] = seg.payload
    segment = with_checksum(bytes(segment))
    frame = bytearray(b"\xee" * 34 + segment + b"\0" * 6)   # headers before, padding after
    pseudo = pseudo_sum(SRC_IP, DST_IP, 6, len(segment))
    back = tcp.parse_at(memoryview(frame), 34, 34 + len(segment), pseudo)
    assert back == replace(seg, payload=back.payload)
    assert bytes(back.payload) == b"in place"
    frame[34 + hl] ^= 0x01                                     # one payload bit flipped
    with pytest.raises(MalformedPacket, match="tcp.bad_checksum"):
        tcp.parse_at(memoryview(frame), 34, 34 + len(segment), pseudo)


def test_tcp_payload_is_a_view_not_a_copy():
    frame = bytearray(20 + 5)
    tcp.emit(TcpRepr(1, 2, 3, 4, ACK, 5), memoryview(frame))
    frame[20:] = b"hello"
    seg = tcp.parse(memoryview(frame))
    frame[20] = ord("j")
    assert bytes(seg.payload) == b"jello"


# ---- property: any representable segment survives emit -> parse ------------------

from hypothesis import given, settings, strategies as st  # noqa: E402

u32 = st.integers(0, 2**32 - 1)


@settings(max_examples=300, deadline=None)
@given(src=st.integers(0, 65535), dst=st.integers(0, 65535), seq=u32, ack=u32,
       flags=st.integers(0, 255), window=st.integers(0, 65535),
       mss=st.none() | st.integers(0, 65535), scale=st.none() | st.integers(0, 14),
       sack_permitted=st.booleans(), timestamp=st.none() | st.tuples(u32, u32),
       blocks=st.lists(st.tuples(u32, u32), max_size=4), payload=st.binary(max_size=64))
def test_tcp_emit_parse_round_trip(src, dst, seq, ack, flags, window, mss, scale,
                                   sack_permitted, timestamp, blocks, payload):
    seg = TcpRepr(src, dst, seq, ack, flags, window, mss=mss, window_scale=scale,
                  sack_permitted=sack_permitted, sack_blocks=tuple(blocks),
                  timestamp=timestamp, payload=payload)
    size = tcp.header_len(seg)
    assert size % 4 == 0 and 20 <= size <= 60
    data = bytearray(size + len(payload))
    assert tcp.emit(seg, memoryview(data)) == size
    data[size:] = payload
    data = with_checksum(bytes(data))
    back = tcp.parse(memoryview(data), pseudo_sum(SRC_IP, DST_IP, 6, len(data)))
    assert bytes(back.payload) == payload
    kept = len(back.sack_blocks)
    assert back.sack_blocks == tuple(blocks[:kept])
    if kept < len(blocks):                       # dropped only when one more cannot fit
        assert size + (8 if kept else 12) > 60
    assert replace(back, payload=b"", sack_blocks=()) == replace(seg, payload=b"", sack_blocks=())
