"""A fake in-memory link between two connections, for pairing tests.

Each direction holds segments with a delivery time. Faults are seeded: loss,
duplication and reordering (a segment held back by a random extra delay). Payloads
are copied when a segment is put on the link, as a NIC would copy a frame: the
sender's buffer may be reused before the segment is delivered.
"""
from __future__ import annotations

import dataclasses
import heapq
import hashlib
import random

from engine.tcp.connection import Connection


class Link:
    def __init__(self, seed: int, loss=0.0, duplicate=0.0, reorder=0.0, delay=0.001):
        self.rng = random.Random(seed)
        self.loss, self.duplicate, self.reorder, self.delay = loss, duplicate, reorder, delay
        self.queue: list = []
        self.count = 0
        self.stats = {"sent": 0, "lost": 0, "duplicated": 0, "reordered": 0}

    def put(self, segments, now: float) -> None:
        for s in segments:
            self.stats["sent"] += 1
            if self.rng.random() < self.loss:
                self.stats["lost"] += 1
                continue
            copies = 2 if self.rng.random() < self.duplicate else 1
            if copies == 2:
                self.stats["duplicated"] += 1
            for _ in range(copies):
                when = now + self.delay
                if self.rng.random() < self.reorder:
                    self.stats["reordered"] += 1
                    when += self.delay * (1 + 3 * self.rng.random())
                copy = dataclasses.replace(s, payload=bytes(s.payload))
                self.count += 1
                heapq.heappush(self.queue, (when, self.count, copy))

    def due(self, now: float) -> list:
        out = []
        while self.queue and self.queue[0][0] <= now:
            out.append(heapq.heappop(self.queue)[2])
        return out

    def next_time(self) -> float | None:
        return self.queue[0][0] if self.queue else None


def transfer(a: Connection, b: Connection, ab: Link, ba: Link, data_a: bytes, data_b: bytes,
             now: float = 0.0, max_rounds: int = 200_000, close: bool = True):
    """Run both ends until each received the other's bytes (and both closed if
    ``close``). Returns (bytes b got, bytes a got, now, rounds)."""
    got_a, got_b = bytearray(), bytearray()
    sent_a = sent_b = 0
    shut_a = shut_b = False
    for rounds in range(max_rounds):
        if sent_a < len(data_a):
            sent_a += a.send(data_a[sent_a:sent_a + 65536])
        if sent_b < len(data_b):
            sent_b += b.send(data_b[sent_b:sent_b + 65536])
        if close and sent_a == len(data_a) and not shut_a and a.syn_acked:
            a.shutdown(now)
            shut_a = True
        if close and sent_b == len(data_b) and not shut_b and b.syn_acked:
            b.shutdown(now)
            shut_b = True
        out_a, out_b = a.poll_transmit(now), b.poll_transmit(now)
        ab.put(out_a, now)
        ba.put(out_b, now)
        busy = bool(out_a or out_b)
        for s in ab.due(now):
            b.on_segment(s, now)
            busy = True
        for s in ba.due(now):
            a.on_segment(s, now)
            busy = True
        for conn, got in ((a, got_a), (b, got_b)):
            if len(conn.recv_buffer):
                got += conn.recv_buffer.read()
                conn.notify_read(now)
        done = len(got_b) == len(data_a) and len(got_a) == len(data_b)
        if done and (not close or (a.state.name == "CLOSED" and b.state.name == "CLOSED")):
            return bytes(got_b), bytes(got_a), now, rounds
        if busy:
            continue                  # poll again at the same time before advancing it
        times = [t for t in (a.next_deadline(), b.next_deadline(), ab.next_time(),
                             ba.next_time()) if t is not None]
        if not times:
            break
        now = max(now, min(times))
        a.on_timer(now)
        b.on_timer(now)
    return bytes(got_b), bytes(got_a), now, -1


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
