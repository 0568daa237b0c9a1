"""The out-of-order queue and the SACK scoreboard on their own, including the wrap,
and a receiver fed one byte per segment in random order."""
import random

from hypothesis import given, settings, strategies as st

from engine.tcp.reassembly import Reassembly
from engine.tcp.sack import ReceiverBlocks, Scoreboard

from .harness import config, established, mine, recv, send, seg, theirs

TOP = 0xFFFF_FFFF


def test_reassembly_merges_and_pops_across_the_wrap():
    q = Reassembly()
    base = TOP - 4                                    # rcv_nxt just below the wrap
    q.insert((base + 5) & TOP, b"fghij", base)
    q.insert((base + 12) & TOP, b"mn", base)
    assert q.ranges() == [((base + 5) & TOP, (base + 10) & TOP), ((base + 12) & TOP, (base + 14) & TOP)]
    assert q.insert((base + 3) & TOP, b"defg", base) == 2       # 'fg' already held
    assert q.pop_ready(base) is None                            # 'abc' still missing
    assert bytes(q.pop_ready((base + 3) & TOP)) == b"defghij"
    q.insert((base + 10) & TOP, b"kl", (base + 10) & TOP)
    assert bytes(q.pop_ready((base + 10) & TOP)) == b"klmn"
    assert not q


@settings(max_examples=60, deadline=None)
@given(st.integers(0, TOP), st.lists(st.tuples(st.integers(0, 199), st.integers(1, 40)),
                                     min_size=1, max_size=40))
def test_reassembly_keeps_the_stream_whatever_the_pieces(start, pieces):
    data = bytes(random.Random(len(pieces)).randbytes(240))
    q = Reassembly()
    rcv_nxt = (start + 1) & TOP                        # byte 0 is never sent: always a hole
    for off, n in pieces:
        off += 1
        q.insert((start + off) & TOP, data[off:off + n], rcv_nxt)
    for left, right in q.ranges():
        lo = (left - start) & TOP
        hi = (right - start) & TOP
        block = bytes(next(b[1] for b in q.blocks if b[0] == left))
        assert block == data[lo:hi]
    spans = sorted(((l - start) & TOP, (r - start) & TOP) for l, r in q.ranges())
    assert all(a[1] < b[0] for a, b in zip(spans, spans[1:]))    # disjoint, not adjacent


def test_scoreboard_holes_and_pruning():
    board = Scoreboard()
    una, top = TOP - 1000, (TOP + 5000) & TOP
    board.update([((una + 1000) & TOP, (una + 2000) & TOP)], una, top)
    board.update([((una + 3000) & TOP, (una + 4000) & TOP), ((una + 1500) & TOP, (una + 2500) & TOP)],
                 una, top)
    assert board.sacked_bytes == 2500
    assert board.next_hole(una, una) == (una, (una + 1000) & TOP)
    assert board.next_hole((una + 1000) & TOP, una) == ((una + 2500) & TOP, (una + 3000) & TOP)
    assert board.hole_bytes_from(una, una) == 1500
    assert board.next_hole((una + 4000) & TOP, una) is None
    board.prune((una + 1800) & TOP)               # inside [1000, 2500): the peer
    assert board.sacked_bytes == 1000             # dropped its rest (else it would ack it)
    assert board.blocks == [[(una + 3000) & TOP, (una + 4000) & TOP]]
    board.prune((una + 3000) & TOP)               # at a block's left edge: kept whole
    assert board.sacked_bytes == 1000
    assert not board.update([((una - 10) & TOP, una)], una, top)  # below SND.UNA: ignored


def test_receiver_blocks_most_recent_first_and_limited():
    blocks = ReceiverBlocks()
    ranges = [(10, 20), (30, 40), (50, 60), (70, 80)]
    for seq in (30, 70, 10):
        blocks.note_arrival(seq)
    assert blocks.blocks(ranges, 3) == ((10, 20), (70, 80), (30, 40))
    assert blocks.blocks([], 3) == ()


def test_stream_fed_one_byte_per_segment_in_random_order():
    conn = established(config(recv_buffer_bytes=4096))
    data = random.Random(3).randbytes(300)
    order = list(range(300))
    random.Random(4).shuffle(order)
    for i in order:
        send(conn, seg(seq=theirs(i), ack=mine(conn), payload=data[i:i + 1]))
        recv(conn)
    assert conn.recv_buffer.read() == data
    assert conn.rcv_nxt == theirs(300) and not conn.reasm
