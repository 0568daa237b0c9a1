"""Arbitrary segments never crash a connection and never break its invariants."""
from hypothesis import given, settings, strategies as st

from engine.tcp.seq import seq_le
from engine.tcp.states import State

from . import harness
from .harness import config, mine, recv, send, seg, theirs

FLAGS = st.integers(0, 0x3F)
OFFSET = st.one_of(st.integers(-70_000, 70_000), st.integers(0, 0xFFFF_FFFF))
SEGMENT = st.tuples(FLAGS, OFFSET, OFFSET, st.integers(0, 0xFFFF), st.integers(0, 3000),
                    st.sampled_from([None, (0, 0), (1 << 31, 5), (123, 0)]),
                    st.sampled_from([(), ((0, 100),), ((5, 3), (0xFFFF_FFF0, 4))]))
BUILDERS = ["syn_received", "established", "fin_wait_1", "fin_wait_2", "close_wait",
            "closing", "last_ack", "time_wait"]


def check_invariants(conn):
    if conn.state is State.CLOSED:
        return
    assert seq_le(conn.snd_una, conn.snd_nxt) and seq_le(conn.snd_nxt, conn.snd_max)
    assert len(conn.send_buffer) <= conn.config.send_buffer_bytes
    for s in conn.poll_transmit(10.0):
        assert len(s.payload) <= conn.effective_mss
        assert 0 <= s.window <= 0xFFFF


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(BUILDERS), st.lists(SEGMENT, min_size=1, max_size=12),
       st.booleans())
def test_random_segments(builder, segments, options):
    cfg = config(timestamps=options, sack=options, window_scale=options, nagle=False)
    fields = dict(timestamp=(7, 0), sack_permitted=True, window_scale=2) if options else {}
    if builder == "syn_received":
        conn = harness.syn_received(cfg, syn_fields=fields)
    else:
        conn = getattr(harness, builder)(cfg) if not options else None
        if conn is None:
            conn = harness.established(cfg, syn_fields=fields)
    conn.send(b"q" * 500) if conn.state in (State.ESTABLISHED, State.CLOSE_WAIT) else None
    recv(conn, 0.0)
    t = 0.0
    for flags, seq_off, ack_off, window, n, ts, sack in segments:
        t += 0.01
        send(conn, seg(seq=theirs(seq_off), ack=mine(conn, ack_off), flags=flags, window=window,
                       payload=bytes(n), timestamp=ts, sack_blocks=sack), t)
        check_invariants(conn)
        deadline = conn.next_deadline()
        if deadline is not None:
            conn.on_timer(deadline)
            t = max(t, deadline)
            check_invariants(conn)
    while conn.next_event() is not None:
        pass
