"""The fast path's connection table: one :data:`FLOW` row per connection, and a
compiled hash on the 4-tuple that finds it.

A row holds, as plain integers and floats, every field of a connection that the
compiled kernels read or write (engine/fast/path.py ``export``/``import_`` copy
them from and to the Connection attributes they mirror). ``owner`` says who may use them: the Python
stack (:data:`SLOW`) or the kernels (:data:`FAST`); docs/stack-api.md has the rule.

The demultiplexing hash is open addressing with linear probing over a power-of-two
array at most half full, keyed on (local IP, local port, remote IP, remote port); a
removed entry leaves a tombstone that later insertions reuse. Rows are handed out
lowest first, so scans over the table stop at ``top`` (one past the highest row in
use). Both are sized once, for ``capacity`` connections (10,000+ by default).
"""
from __future__ import annotations

import numpy as np
from numba import from_dtype, types

from toad.compiled import entry, helper, kernel, loaded

FREE, SLOW, FAST = 0, 1, 2        # owner of a row
EMPTY, TOMBSTONE = -1, -2         # hash slot values besides a row number
NONE = -1                         # rtt_seq / deadlines unset (deadlines: INF)
INF = float("inf")

_I8, _F8 = "<i8", "<f8"
FLOW = np.dtype([
    ("owner", _I8), ("reason", _I8),        # reason: why the kernels handed it back
    ("local_ip", _I8), ("local_port", _I8), ("remote_ip", _I8), ("remote_port", _I8),
    # send sequence space
    ("snd_una", _I8), ("snd_nxt", _I8), ("snd_max", _I8), ("snd_wnd", _I8),
    ("snd_wl1", _I8), ("snd_wl2", _I8), ("max_snd_wnd", _I8), ("snd_scale", _I8),
    # receive sequence space
    ("rcv_nxt", _I8), ("rcv_adv", _I8), ("rcv_scale", _I8), ("rcv_cap", _I8),
    ("last_ack_sent", _I8),
    # sizes and options
    ("eff_mss", _I8), ("ts_enabled", _I8), ("ts_recent", _I8), ("ts_recent_time", _F8),
    ("ts_offset", _I8), ("checksum_off", _I8),   # tcp.checksum "off": nothing to verify
    # RTT estimator (RFC 6298) and the segment timed without timestamps
    ("srtt", _F8), ("rttvar", _F8), ("base_rto", _F8), ("backoff", _I8),
    ("rto_min", _F8), ("rto_max", _F8), ("rtt_seq", _I8), ("rtt_time", _F8),
    # congestion control (reno / newreno outside recovery)
    ("cwnd", _I8), ("ssthresh", _I8), ("ca_bytes", _I8), ("cc_mss", _I8),
    # timers (absolute, INF = unset) and keepalive's last arrival
    ("t_rexmit", _F8), ("t_delack", _F8), ("t_persist", _F8), ("last_rx", _F8),
    # ACKs: owed now, bytes since the last one, the delayed-ACK time, a window update
    ("ack_now", _I8), ("delack_bytes", _I8), ("delayed_ack_s", _F8),
    ("window_update_only", _I8),
    # the send buffer: bytes held (unacked + unsent), and acked while fast; where the
    # kernel reads new data (an in-host byte ring: address, capacity, index of
    # SND.UNA's byte; capacity 0: Python sends), segment sizes, Nagle
    ("send_held", _I8), ("acked", _I8),
    ("tx_addr", _I8), ("tx_cap", _I8), ("tx_head", _I8),
    # or (tx_host 1) host memory: tx_addr/tx_cap the QP's segment, the bytes in up to
    # TX_RANGES (offset, length) ranges of the FastPath's tx_ranges[row]; DMA counts
    ("tx_host", _I8), ("tx_nranges", _I8), ("dma_reads", _I8), ("dma_read_bytes", _I8),
    ("maxseg", _I8), ("gso_size", _I8), ("nodelay", _I8),
    # the receive buffer (a byte ring): where, how big, its head and fill while fast;
    # bytes placed since the last DataReceived
    ("rx_addr", _I8), ("rx_cap", _I8), ("rx_head", _I8), ("rx_size", _I8),
    ("rx_pending", _I8),
    # frames out: Ethernet addresses (48-bit), the route's validity, checksum mode
    ("eth_dst", _I8), ("eth_src", _I8), ("route_until", _F8), ("csum_mode", _I8),
    # counters kept while fast (added to the connection's when it returns)
    ("rx_hp_ack", _I8), ("rx_hp_data", _I8), ("rx_hp_data_ack", _I8), ("rx_hp_window", _I8),
    ("rx_window_update", _I8), ("tx_pure_ack", _I8), ("tx_window_update_dropped", _I8),
    ("tx_window_update_requested", _I8), ("tx_data", _I8), ("tx_held_nagle_sws", _I8),
    ("tx_limited_by_peer_window", _I8), ("tx_limited_by_cwnd", _I8),
    ("tx_window_stall", _I8), ("rx_frames", _I8),
])
CONN_COUNTERS = ("rx_hp_ack", "rx_hp_data", "rx_hp_data_ack", "rx_hp_window", "rx_window_update",
                 "tx_pure_ack", "tx_window_update_dropped", "tx_window_update_requested",
                 "tx_data", "tx_held_nagle_sws", "tx_limited_by_peer_window",
                 "tx_limited_by_cwnd", "tx_window_stall")
CSUM_FULL, CSUM_PARTIAL, CSUM_NONE = 0, 1, 2
TX_RANGES = 8                     # host ranges a fast row's send buffer may hold
FLOW_TYPE = from_dtype(FLOW)
_FLOWS = FLOW_TYPE[::1]
_I64A = types.int64[::1]


def table_size(capacity: int) -> int:
    """Hash slots for ``capacity`` rows: a power of two, at least twice as many."""
    size = 16
    while size < 2 * capacity:
        size <<= 1
    return size


@helper
def hash_of(local_ip, local_port, remote_ip, remote_port):
    """A 64-bit mix of the 4-tuple (splitmix64's finaliser)."""
    x = (np.uint64(remote_ip) << np.uint64(32)) | np.uint64((remote_port << 16) | local_port)
    x ^= np.uint64(local_ip) * np.uint64(0x9E3779B97F4A7C15)
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


@helper
def find(flows, slots, local_ip, local_port, remote_ip, remote_port):
    """The row of the 4-tuple, or -1."""
    mask = np.uint64(slots.shape[0] - 1)
    at = hash_of(local_ip, local_port, remote_ip, remote_port) & mask
    for _ in range(slots.shape[0]):
        row = slots[at]
        if row == EMPTY:
            return -1
        if row >= 0:
            f = flows[row]
            if (f.remote_port == remote_port and f.local_port == local_port
                    and f.remote_ip == remote_ip and f.local_ip == local_ip):
                return row
        at = (at + np.uint64(1)) & mask
    return -1


@kernel(types.int64(_FLOWS, _I64A, types.int64, types.int64, types.int64, types.int64))
def lookup(flows, slots, local_ip, local_port, remote_ip, remote_port):
    return find(flows, slots, local_ip, local_port, remote_ip, remote_port)


@kernel(types.int64(_FLOWS, _I64A, types.int64))
def insert(flows, slots, row):
    """Enter ``row`` (its 4-tuple filled in) in the hash; -1 when the tuple is there."""
    f = flows[row]
    if find(flows, slots, f.local_ip, f.local_port, f.remote_ip, f.remote_port) >= 0:
        return -1
    mask = np.uint64(slots.shape[0] - 1)
    at = hash_of(f.local_ip, f.local_port, f.remote_ip, f.remote_port) & mask
    while slots[at] >= 0:
        at = (at + np.uint64(1)) & mask
    slots[at] = row
    return row


@kernel(types.int64(_FLOWS, _I64A, types.int64))
def erase(flows, slots, row):
    """Take ``row`` out of the hash (a tombstone in its slot); -1 if it was not in."""
    f = flows[row]
    mask = np.uint64(slots.shape[0] - 1)
    at = hash_of(f.local_ip, f.local_port, f.remote_ip, f.remote_port) & mask
    for _ in range(slots.shape[0]):
        value = slots[at]
        if value == EMPTY:
            return -1
        if value == row:
            slots[at] = TOMBSTONE
            return row
        at = (at + np.uint64(1)) & mask
    return -1


@helper
def deadline(f):
    """A fast row's earliest timer: retransmission, delayed ACK, persist (armed by
    the transmit kernel; Python runs it), the route's expiry."""
    return min(f.t_rexmit, f.t_delack, f.t_persist, f.route_until)


@kernel(types.float64(_FLOWS, types.int64))
def earliest(flows, top):
    """The earliest timer of the fast rows below ``top`` (INF: none)."""
    best = np.inf
    for row in range(top):
        f = flows[row]
        if f.owner == FAST:
            best = min(best, deadline(f))
    return best


@kernel(types.int64(_FLOWS, types.int64, types.float64, _I64A))
def due(flows, top, now, out):
    """Fast rows below ``top`` whose timer is due at ``now``, into ``out`` (as many
    as fit; the rest are found at the next call)."""
    count = 0
    for row in range(top):
        f = flows[row]
        if f.owner == FAST and deadline(f) <= now and count < out.shape[0]:
            out[count] = row
            count += 1
    return count


_lookup, _insert, _erase = entry(lookup), entry(insert), entry(erase)
earliest_entry, due_entry = entry(earliest), entry(due)


class FlowTable:
    """Rows and the hash, for at most ``capacity`` connections."""

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError(f"flow table capacity {capacity} must be >= 1")
        self.capacity = capacity
        self.rows = np.zeros(capacity, FLOW)
        self.slots = np.full(table_size(capacity), EMPTY, np.int64)
        self.free = list(range(capacity - 1, -1, -1))      # a stack: lowest row on top
        self.top = 0                                       # one past the highest in use
        self.used = 0
        self.tombstones = 0

    def add(self, local_ip: int, local_port: int, remote_ip: int, remote_port: int) -> int:
        """A row for the 4-tuple (owner SLOW), or -1 when the table is full."""
        if not self.free:
            return -1
        if self.tombstones > self.slots.shape[0] // 4:
            self.rehash()
        row = self.free.pop()
        f = self.rows[row]
        f["owner"] = SLOW
        f["local_ip"], f["local_port"] = local_ip, local_port
        f["remote_ip"], f["remote_port"] = remote_ip, remote_port
        if _insert(self.rows, self.slots, row) < 0:
            f["owner"] = FREE
            self.free.append(row)
            raise ValueError(f"flow {(local_ip, local_port, remote_ip, remote_port)} exists")
        self.used += 1
        if row >= self.top:
            self.top = row + 1
        return row

    def remove(self, row: int) -> None:
        if self.rows["owner"][row] == FREE:
            raise ValueError(f"flow row {row} is not in use")
        if _erase(self.rows, self.slots, row) >= 0:
            self.tombstones += 1
        self.rows[row] = np.zeros((), FLOW)
        self.free.append(row)
        self.used -= 1
        while self.top and self.rows["owner"][self.top - 1] == FREE:
            self.top -= 1

    def lookup(self, local_ip: int, local_port: int, remote_ip: int, remote_port: int) -> int:
        return _lookup(self.rows, self.slots, local_ip, local_port, remote_ip, remote_port)

    def rehash(self) -> None:
        """Rebuild the hash without tombstones (when a quarter of it is tombstones)."""
        self.slots.fill(EMPTY)
        self.tombstones = 0
        for row in np.flatnonzero(self.rows["owner"][:self.top] != FREE):
            _insert(self.rows, self.slots, int(row))


loaded(__name__)
