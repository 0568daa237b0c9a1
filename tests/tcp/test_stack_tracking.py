"""Output tracking (Stack.output_tracking, Stack.mark): with it on, poll_transmit polls
only the connections marked since its last call (segments in, timers fired, opens, and
the caller's marks for its user calls). The wire must carry exactly what the full walk
sends: two transfers at once over a lossy, reordering, duplicating wire give the same
frames, byte for byte, tracked or not. A user call nobody marked is not seen."""
from __future__ import annotations

import os

from engine.tcp.stack import Stack
from toad.config import TcpConfig, WireConfig

from .test_stack_support import PEER_IP, STACK_IP, Transfer, make_pair, run, sent

FAULTS = WireConfig(loss=0.03, duplicate=0.01, reorder=0.03, seed=11)
DATA = os.urandom(300_000)
POLL_COUNTS = ("tx_limited_by_cwnd", "tx_limited_by_peer_window", "tx_held_nagle_sws")


class MarkingTransfer(Transfer):
    """A Transfer that marks a connection after each user call it makes on it (send,
    shutdown, notify_read), and only then."""

    def tick(self) -> None:
        conn, accepted = self.conn, self.accepted
        before = (self.sent, self.received, conn.fin_queued)
        super().tick()
        if (self.sent, conn.fin_queued) != (before[0], before[2]):
            self.client.stack.mark(conn)
        if accepted is not None and self.received != before[1]:
            self.server.stack.mark(accepted)


def wire_log(tracking: bool):
    a, b, wire, clock = make_pair(TcpConfig(time_wait_s=1.0), wire_config=FAULTS)
    log = []
    for host in (a, b):
        host.stack.output_tracking = tracking
        send = host.nic.send_burst

        def recording(pool, slots, n, send=send):
            log.extend(bytes(pool.view(slot)) for slot in slots[:n])
            send(pool, slots, n)

        host.nic.send_burst = recording
    kind = MarkingTransfer if tracking else Transfer
    transfers = [kind(a, b, PEER_IP, DATA, clock, port=5001),
                 kind(a, b, PEER_IP, DATA[::-1], clock, port=5002, write_size=20_000)]

    def tick():
        for transfer in transfers:
            transfer.tick()

    run([a, b], clock, lambda: all(t.done() for t in transfers), tick)
    assert all(t.ok() for t in transfers)
    counters = a.stack.connection_counters() + b.stack.connection_counters()
    for name in POLL_COUNTS:        # counts of polls that found data waiting
        counters.pop(name, None)
    return log, counters, wire.counters


def test_tracked_output_puts_the_same_frames_on_a_lossy_wire():
    untracked, counters, wire = wire_log(False)
    tracked, tracked_counters, tracked_wire = wire_log(True)
    assert wire["lost"] > 0 and wire["reordered"] > 0       # the faults were exercised
    assert counters["fast_retransmit"] + counters["rto"] > 0
    assert len(tracked) == len(untracked)
    assert tracked == untracked
    assert tracked_counters == counters and tracked_wire == wire


def test_an_unmarked_user_call_waits_for_its_mark():
    a, b, wire, clock = make_pair(TcpConfig())
    a.stack.output_tracking = True
    listener = b.stack.listen(7)
    conn = a.stack.connect(PEER_IP, 7, clock.now)
    assert a.stack.output_due()                   # connect marks: the SYN is due
    run([a, b], clock, lambda: listener.ready and conn.state.name == "ESTABLISHED")
    assert not a.stack.output_due() and sent(a.stack, clock.now) == []
    conn.send(b"hello")                           # a user call the Stack is not told of
    assert not a.stack.output_due() and sent(a.stack, clock.now) == []
    a.stack.mark(conn)
    assert a.stack.output_due()
    frames = sent(a.stack, clock.now)
    assert len(frames) == 1 and bytes(frames[0].data).endswith(b"hello")
    assert not a.stack.output_due()
    a.stack.mark()                                # "not said which": every connection
    assert a.stack.output_due()
    a.stack.output_tracking = False               # untracked: always due (a full walk)
    assert Stack.output_due(a.stack) and STACK_IP != PEER_IP
