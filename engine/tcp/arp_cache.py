"""The ARP cache (RFC 826 with RFC 1122 2.3.2.1 timing): neighbour MACs with a
timeout, and frames waiting for a resolution.

An entry older than ``timeout`` is still used (Linux's STALE) but asks the stack to
re-ask once per ``retry``; with no answer for ``retries`` more intervals it is dropped.
An unknown address queues frames (at most ``queue_limit``; the stack's frame-pool
slots) and is asked for ``retries`` times, ``retry`` apart; then its frames are given
back to the caller to drop (release) and count.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Entry:
    mac: bytes
    expires: float
    next_ask: float = 0.0


@dataclass(slots=True)
class Pending:
    next_ask: float
    asked: int = 1
    frames: list = field(default_factory=list)


class ArpCache:
    def __init__(self, timeout: float = 60.0, retry: float = 1.0, retries: int = 3,
                 queue_limit: int = 64):
        self.timeout = timeout
        self.retry = retry
        self.retries = retries
        self.queue_limit = queue_limit
        self.entries: dict[int, Entry] = {}
        self.pending: dict[int, Pending] = {}

    def lookup(self, ip: int, now: float) -> bytes | None:
        entry = self.entries.get(ip)
        if entry is None:
            return None
        if now >= entry.expires + self.retry * self.retries:
            del self.entries[ip]                   # stale and never re-confirmed
            return None
        return entry.mac

    def learn(self, ip: int, mac: bytes, now: float) -> list:
        """Record ip -> mac; return the frames that were waiting for it."""
        self.entries[ip] = Entry(bytes(mac), now + self.timeout)
        waiting = self.pending.pop(ip, None)
        return waiting.frames if waiting else []

    def known(self, ip: int) -> bool:
        return ip in self.entries

    def enqueue(self, ip: int, frame, now: float) -> tuple[bool, bool]:
        """Queue a frame for an unresolved ip. Returns (queued, ask_now)."""
        waiting = self.pending.get(ip)
        if waiting is None:
            self.pending[ip] = Pending(now + self.retry, frames=[frame])
            return True, True
        if len(waiting.frames) >= self.queue_limit:
            return False, False
        waiting.frames.append(frame)
        return True, False

    def due(self, now: float) -> tuple[list[int], list]:
        """Addresses to ask (again) now, and the queued frames given up."""
        ask, dropped = [], []
        for ip, waiting in list(self.pending.items()):
            if waiting.next_ask > now:
                continue
            if waiting.asked > self.retries:
                dropped += waiting.frames
                del self.pending[ip]
                continue
            waiting.asked += 1
            waiting.next_ask = now + self.retry
            ask.append(ip)
        for ip, entry in list(self.entries.items()):
            if now >= entry.expires + self.retry * self.retries:
                del self.entries[ip]                       # never re-confirmed
            elif now >= entry.expires and entry.next_ask <= now:
                entry.next_ask = now + self.retry          # refresh a stale entry
                ask.append(ip)
        return ask, dropped

    def next_deadline(self) -> float | None:
        best = None                          # (runs on every busy engine pass)
        for waiting in self.pending.values():
            if best is None or waiting.next_ask < best:
                best = waiting.next_ask
        for entry in self.entries.values():
            t = entry.expires if entry.expires > entry.next_ask else entry.next_ask
            if best is None or t < best:
                best = t
        return best
