"""The Stack: one IPv4 host on one NIC, sans-IO (docs/stack-api.md).

Frames and the time come in (``receive_frame``, ``on_timer``); frames for the NIC
(``poll_transmit``), events for the socket layer (``events``) and the next deadline
(``next_deadline``) go out. The Stack does Ethernet, ARP (cache, timeout, frames
queued while resolving), IPv4 (options ignored, fragments dropped), ICMP echo, and
for TCP: demultiplexing by a dict on the 4-tuple, listeners with a backlog, RSTs for
segments to closed ports (RFC 9293 3.10.7.1) and connection setup/teardown. Everything
inside a connection is the Connection's (engine/tcp/connection.py).

Traffic to 127.0.0.0/8 loops inside the stack, and so does traffic to our own address
unless the NIC hears itself (the loopback wire), in which case it crosses the wire like
any other frame (bandwidth, faults, pcap). Looped frames are handed back to the receive
path within ``poll_transmit``, a bounded number of rounds per call.

Every drop and decision increments ``stack.counters[name]``; malformed headers count
under the parser's counter name (e.g. ``tcp.bad_checksum``) and are dropped.
"""
from __future__ import annotations

import errno
import ipaddress
import random
import struct
from collections import Counter

from engine.frames import DEPTH, FramePool, frame_bytes
from engine.nic.base import NicFeatures
from toad.config import TcpConfig

from . import neighbours, syncookies, tracking
from .timers import next_deadline as connection_deadline
from .tcp_output import idle as output_idle
from .arp_cache import ArpCache
from .checksum import region_frame, region_sum
from .connection import Connection
from .demux import ConnectionTable
from .events import Closed, Established
from .framing import ethernet_prefix, FrameBuilder
from .listener import Listener
from .seq import seq_add
from .states import State
from .wire import MalformedPacket, ethernet, ipv4, tcp
from .wire.tcp import ACK, RST, SYN, TcpRepr

LOOPBACK_IP = ipv4.aton("127.0.0.1")
LOOP_MSS = 65535 - 40            # MSS on the in-stack loop (no NIC, no MTU below 64 KB)
MAX_LOOP_ROUNDS = 16             # looped-frame rounds per poll_transmit call
TX_RESERVE_PART = 8              # poll no more connections once fewer than 1/8 of the
                                 # frame pool's slots are free (poll_transmit)
TIME_WAIT = State.TIME_WAIT
CLOSED = State.CLOSED
# Ethernet header and the IPv4 header without options, for the receive fast path:
# dst mac, src mac, ethertype, version/IHL+TOS, total length, ident, flags/fragment,
# TTL+protocol, header checksum, source, destination
_ETH_IP = struct.Struct("!6s6sHHHHHHHII")
_FAST_LEN = ethernet.HEADER_LEN + ipv4.HEADER_LEN
_FRAGMENT_BITS = ipv4.FLAG_MF | ipv4.OFFSET_MASK
_PORTS = struct.Struct("!HH")
# all three headers of a segment whose TCP options are NOP NOP TS alone (the common
# case): the above, then the TCP header and the option (prefix, TSval, TSecr)
_ETH_IP_TCP_TS = struct.Struct("!6s6sHHHHHHHII" "HHIIBBHHH" "4sII")
_TS_FRAME_LEN = _ETH_IP_TCP_TS.size              # 66: where such a segment's payload starts
_TS_IP_LEN = _TS_FRAME_LEN - ethernet.HEADER_LEN


class Stack:
    def __init__(self, config: TcpConfig, address: str, mac: bytes, nic: NicFeatures,
                 seed: int = 1, arp_timeout: float = 60.0, pool: FramePool | None = None):
        try:
            interface = ipaddress.IPv4Interface(address)
        except ValueError:
            raise ValueError(f"stack address {address!r} is not like 10.0.0.1/24") from None
        if len(mac) != 6:
            raise ValueError(f"stack mac must be 6 bytes, got {len(mac)}")
        self.config = config
        self.ip = int(interface.ip)
        self.network = int(interface.network.network_address)
        self.prefix_len = interface.network.prefixlen
        self.broadcast = int(interface.network.broadcast_address)
        self.mac = bytes(mac)
        self.nic = nic
        self.rng = random.Random(seed)
        self.secret = self.rng.getrandbits(64)
        self.counters: Counter = Counter()
        self.arp = ArpCache(timeout=arp_timeout)
        # connections whose timers may have moved since they were last armed (see
        # _arm_changed): joined the active set, polled for output, timers run
        self._timer_check: dict = {}
        self.table = ConnectionTable(self.rng, self._timer_check.setdefault)
        self.listeners: dict[int, Listener] = {}
        if pool is None:         # room for the frames of a window in flight each way
            window = max(config.recv_buffer_bytes, config.send_buffer_bytes)
            pool = FramePool.for_frames(frame_bytes(nic), window)
        self.pool = pool                 # frames to and from the NIC (engine/frames.py)
        self.builder = FrameBuilder(config.checksum, nic, pool, self.counters)
        self.mss = nic.mtu - 40
        self.tso_max = nic.tso_max if nic.tso else 0
        self._own_prefix = ethernet_prefix(self.mac, self.mac)
        self._prefixes: dict[bytes, bytes] = {}
        self._keys: dict = {}            # connection -> its 4-tuple key
        self._owner: dict = {}           # child connection -> listener, until accepted
        self._parked: dict = {}          # child connection -> its events, until accepted
        self._events: list = []
        self._touched: dict = {}         # connections given segments since the last drain
        # Output tracking (opt-in, see mark()): connections whose output may have
        # changed since the last poll_transmit; without tracking every call walks all
        self.output_tracking = False
        self._due: dict = {}             # connection -> None, in marking order
        self._deferred: list = []        # polled next: left when the frame pool ran low
        self._due_all = False
        self._tx: list[int] = []         # frames ready for the NIC: slots of self.pool
        self._loop: list[int] = []       # frames looped inside: slots of builder.loop_pool
        self._retired: Counter = Counter()
        self._now = 0.0
        # the compiled fast path (engine/fast), or None: Python does everything
        self.fast = None
        if config.fast_path == "compiled":
            from engine.fast.path import FastPath
            self.fast = FastPath(self, config.fast_path_flows)

    # ---- the socket layer's calls ------------------------------------------------

    def connect(self, remote_ip: int, remote_port: int, now: float, local_port: int = 0,
                send_buffer=None, recv_buffer=None, config: TcpConfig | None = None):
        """Open a connection (SYN-SENT); its events come through ``events()``.
        ``config`` overrides the stack's TcpConfig for this connection only (e.g. its
        checksum mode, for the checksum-elimination experiments)."""
        self._now = now
        local_ip = LOOPBACK_IP if ipv4.is_loopback(remote_ip) else self.ip
        if local_ip == self.ip and remote_ip != self.ip and (
                not ipv4.in_network(remote_ip, self.network, self.prefix_len)
                or remote_ip in (self.network, self.broadcast)):
            raise OSError(errno.ENETUNREACH, f"no route to {ipv4.ntoa(remote_ip)}: not in "
                          f"{ipv4.ntoa(self.network)}/{self.prefix_len}")
        if not 1 <= remote_port <= 65535 or not 0 <= local_port <= 65535:
            raise OSError(errno.EINVAL, f"port out of range: {local_port} -> {remote_port}")
        port = local_port or self.table.ephemeral_port(local_ip, remote_ip, remote_port,
                                                       self.listeners)
        key = (local_ip, port, remote_ip, remote_port)
        if self.table.get(key) is not None:
            raise OSError(errno.EADDRINUSE, f"connection {self._key_text(key)} exists")
        conn = Connection(
            config or self.config, (local_ip, port), (remote_ip, remote_port),
            iss=self._iss(key, now), now=now, send_buffer=send_buffer, recv_buffer=recv_buffer,
            mss=self._mss_for(remote_ip), tso_max=self._tso_for(remote_ip))
        self._add(key, conn)
        conn.open_active(now)
        self.counters["tcp.active_opens"] += 1
        self._collect(conn)
        self._due[conn] = None                         # its SYN is due
        return conn

    def listen(self, port: int, backlog: int | None = None, buffers=None,
               config: TcpConfig | None = None) -> Listener:
        """Listen on ``port`` at every local address. ``buffers``: optional
        callable(remote) -> (send_buffer, recv_buffer) for accepted connections;
        ``config``: their TcpConfig, if not the stack's."""
        if not 1 <= port <= 65535:
            raise OSError(errno.EINVAL, f"listen port {port} must be 1..65535")
        if port in self.listeners:
            raise OSError(errno.EADDRINUSE, f"port {port} is already listening")
        backlog = self.config.listen_backlog if backlog is None else backlog
        if backlog < 1:
            raise OSError(errno.EINVAL, f"listen backlog {backlog} must be >= 1")
        listener = Listener(port, backlog, self._on_accept, buffers, config)
        self.listeners[port] = listener
        return listener

    def close_listener(self, listener: Listener) -> None:
        """Stop listening; children not yet accepted are reset."""
        if self.listeners.get(listener.port) is listener:
            del self.listeners[listener.port]
        listener.closed = True
        for conn in list(listener.half_open) + list(listener.ready):
            conn.abort(self._now)
            self._collect(conn)

    # Output tracking (opt-in): engine/tcp/tracking.py
    mark = tracking.mark
    output_due = tracking.output_due
    _to_poll = tracking.to_poll

    def events(self) -> list:
        """(Connection | Listener, TcpEvent) pairs since the last call."""
        if self._touched:
            self._drain_touched()
        out = self._events
        if not out:
            return []                  # (called on every engine pass: no swap, no drain)
        self._events = []
        return out

    def connections(self) -> list:
        return self.table.connections()

    def connection_counters(self) -> Counter:
        """Per-connection counters summed over live and freed connections."""
        total = Counter(self._retired)
        for conn in self.table.connections():
            total.update(conn.counters)
        return total

    # ---- time and output ---------------------------------------------------------

    def on_timer(self, now: float) -> None:
        self._now = now
        if self.fast is not None:
            self.fast.expire(now)                     # due fast connections: Python's
        self._arm_changed()
        table = self.table
        active, check = table.active, self._timer_check
        for conn in table.due_timers(now):
            if conn not in active:
                continue                              # parked, fast or freed since
            deadline = connection_deadline(conn)
            if deadline is not None and deadline <= now:
                conn.on_timer(now)
                self._due[conn] = None
                self._collect(conn)
            check[conn] = None                        # armed again, at its new deadline
        self._arm_changed()
        for conn in table.due(now):                   # TIME-WAIT connections
            conn.on_timer(now)
            self._wake_waiting(conn, now)
        ask, dropped = self.arp.due(now)
        if dropped:
            self.counters["arp.unresolved_drops"] += len(dropped)
            self.pool.release_many(dropped)
        for address in ask:
            self._arp_request(address)

    def next_deadline(self) -> float | None:
        if self._tx or self._loop:
            return self._now
        best = self.arp.next_deadline()
        self._arm_changed()
        t = self.table.next_timer(connection_deadline)
        if t is not None and (best is None or t < best):
            best = t
        if self.table.heap:
            t = self.table.next_waiting_deadline()
            if t is not None and (best is None or t < best):
                best = t
        if self.fast is not None:
            t = self.fast.next_deadline()
            if t is not None and (best is None or t < best):
                best = t
        return best

    def _arm_changed(self) -> None:
        """Arm the timers of the connections that may have moved them: those given
        segments (``_touched``), polled for output, whose timers ran, or that joined
        the active set. Every change of a deadline happens in one of these (input,
        output, a timer; a user call's effect on timers happens in output), so the
        heap never misses a deadline that moved earlier."""
        check, touched = self._timer_check, self._touched
        if not (check or touched):
            return
        table = self.table
        active, arm = table.active, table.arm
        for pending in (touched, check):
            for conn in pending:
                if conn in active:
                    arm(conn, connection_deadline(conn))
        check.clear()

    def poll_transmit(self, now: float) -> list[int]:
        """Frames for the NIC: slots of ``self.pool``, now the caller's (a NIC's
        ``send_burst`` takes them). Looped frames are received here, round after round."""
        self._now = now
        if self._touched:
            self._drain_touched()
        out: list[int] = []
        keys = self._keys
        fast = self.fast
        check = self._timer_check
        if fast is not None and fast.due:
            fast.transmit(now, out)                 # what fast connections owe
        pool_state, reserve = self.pool.state, self.pool.slots // TX_RESERVE_PART
        for _ in range(MAX_LOOP_ROUNDS):
            if pool_state[DEPTH] < reserve:
                break                                   # (see below)
            if self._deferred:
                polled, self._deferred = self._deferred, []
            else:
                polled = self._to_poll()                # a copy: polling may free some
            for index, conn in enumerate(polled):
                if pool_state[DEPTH] < reserve:
                    # the frames in flight hold the pool (thousands of connections'
                    # ACKs due at once): the rest are polled first at the next call,
                    # once frames are taken in, rather than have their frames dropped
                    # for want of a slot and resent after an RTO
                    self._deferred = polled[index:]
                    self.counters["tx.pool_low_deferred"] += 1
                    break
                if conn not in keys:                    # freed earlier in this round
                    continue
                check[conn] = None                      # output may set its timers
                segments = conn.poll_transmit(now)
                if segments:
                    self._emit_connection(conn, segments, now)
                # _collect inline for the usual no-event, not-TIME-WAIT case
                if (conn.events or conn.rx_pending or conn.acked_dirty
                        or conn.state is TIME_WAIT):
                    self._collect(conn)
                if fast is not None and conn in keys:
                    fast.offer(conn)
            if self._tx:
                out += self._tx
                self._tx = []
            if not self._loop:
                return out
            looped, self._loop = self._loop, []
            loop_pool = self.builder.loop_pool
            for slot in looped:
                self.receive_frame(loop_pool.view(slot), now, True, True)
            loop_pool.release_many(looped)
        out += self._tx
        self._tx = []
        return out

    # ---- input -------------------------------------------------------------------

    def receive_frames(self, pool: FramePool, slots, count: int, now: float) -> None:
        """A burst from the NIC: the frames in ``slots[:count]`` of ``pool`` (an int32
        array; ``length`` and ``csum_ok`` set). The fast path's kernel takes what it
        can straight out of the pool; the rest go through ``receive_frame`` in order,
        each as a view of its slot. Then every slot of the burst is released (the
        stack keeps no view of a frame: docs/stack-api.md)."""
        if self.fast is not None:
            left = self.fast.receive(pool, slots, count, now)
        else:
            left = slots[:count].tolist()
        data, lengths, csum_oks = pool.bytes, pool.lengths, pool.csum_oks
        slot_bytes, receive = pool.slot_bytes, self.receive_frame
        for slot in left:
            base = slot * slot_bytes
            receive(data[base:base + lengths[slot]], now, csum_oks[slot])
        pool.release_many(slots, count)

    def receive_frame(self, frame: memoryview, now: float, csum_ok: bool = False,
                      looped: bool = False) -> None:
        """One Ethernet frame from the NIC; malformed frames are counted and dropped.
        ``looped`` is the stack's own (frames looped inside it, within poll_transmit).

        Fast path (header prediction's cousin one layer down): a plain IPv4 TCP
        packet to our address, no IP options, no fragment, a TCP header with the
        timestamp option alone (nearly every segment) for a known connection: one
        unpack of all three headers, the same checks as the wire parsers, the
        TcpRepr built directly. Anything else takes ``_receive_plain``."""
        if len(frame) >= _TS_FRAME_LEN:
            (dst_mac, _, ethertype, version_tos, total, ident, fragment, ttl_protocol,
             header_checksum, src, dst, sport, dport, seq, ack, offset, flags, window, _,
             urgent, options, tsval, tsecr) = _ETH_IP_TCP_TS.unpack_from(frame)
            conn = self.table.by_key.get((dst, dport, src, sport))
            if (conn is not None and ethertype == ethernet.ETHERTYPE_IPV4
                    and version_tos >> 8 == 0x45 and ttl_protocol & 0xFF == ipv4.PROTO_TCP
                    and dst == self.ip and dst_mac == self.mac
                    and not fragment & _FRAGMENT_BITS and offset >> 4 == 8
                    and options == tcp.TS_ONLY_PREFIX
                    and _TS_IP_LEN <= total <= len(frame) - ethernet.HEADER_LEN):
                self._now = now
                counters = self.counters
                addresses = (src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF)
                words = (version_tos + total + ident + fragment + ttl_protocol
                         + header_checksum + addresses)
                words = (words & 0xFFFF) + (words >> 16)
                if (words & 0xFFFF) + (words >> 16) != 0xFFFF:
                    counters["ip.bad_checksum"] += 1
                    return
                counters["ip.rx"] += 1
                end = ethernet.HEADER_LEN + total
                if not (csum_ok or looped) and conn.config.checksum != "off":
                    pseudo = addresses + ipv4.PROTO_TCP + total - ipv4.HEADER_LEN
                    try:    # the kernel's entry point (unpack_from took it: contiguous)
                        good = region_frame(frame, _FAST_LEN, end, pseudo) == 0xFFFF
                    except TypeError:           # not a plain byte buffer
                        good = region_sum(frame, _FAST_LEN, end, pseudo) == 0xFFFF
                    if not good:
                        counters["tcp.bad_checksum"] += 1
                        return
                if type(frame) is not memoryview:
                    frame = memoryview(frame)
                counters["tcp.rx"] += 1
                conn.on_segment(TcpRepr(sport, dport, seq, ack, flags, window, None, None,
                                        False, (), (tsval, tsecr), urgent,
                                        frame[_TS_FRAME_LEN:end]), now)
                if conn in self.table.waiting:           # TIME-WAIT: not polled
                    self._wake_waiting(conn, now)
                else:
                    if conn.state is CLOSED:             # see _to_connection
                        self._free(conn)
                    self._touched[conn] = None           # see _to_connection
                    if not output_idle(conn):            # (see mark())
                        self._due[conn] = None
                return
        self._receive_plain(frame, now, csum_ok, looped)

    def _receive_plain(self, frame: memoryview, now: float, csum_ok: bool,
                       looped: bool) -> None:
        """``receive_frame`` of every frame its fast path does not take."""
        self._now = now
        counters = self.counters
        try:
            if len(frame) >= _FAST_LEN:
                (dst_mac, _, ethertype, version_tos, total, ident, fragment, ttl_protocol,
                 header_checksum, src, dst) = _ETH_IP.unpack_from(frame)
                # Plain IPv4 TCP to our address, no options, no fragment: the same
                # checks as the wire parsers, without building their Reprs.
                if (ethertype == ethernet.ETHERTYPE_IPV4 and version_tos >> 8 == 0x45
                        and ttl_protocol & 0xFF == ipv4.PROTO_TCP and dst == self.ip
                        and dst_mac == self.mac and not fragment & _FRAGMENT_BITS
                        and ipv4.HEADER_LEN <= total <= len(frame) - ethernet.HEADER_LEN):
                    words = (version_tos + total + ident + fragment + ttl_protocol
                             + header_checksum + (src >> 16) + (src & 0xFFFF)
                             + (dst >> 16) + (dst & 0xFFFF))
                    words = (words & 0xFFFF) + (words >> 16)
                    if (words & 0xFFFF) + (words >> 16) != 0xFFFF:
                        raise MalformedPacket("ip.bad_checksum")
                    counters["ip.rx"] += 1
                    end = ethernet.HEADER_LEN + total
                    if total < ipv4.HEADER_LEN + tcp.HEADER_LEN:
                        raise MalformedPacket("tcp.truncated", f"{end - _FAST_LEN} bytes")
                    self._receive_tcp_at(frame, _FAST_LEN, end, src, dst, now,
                                         csum_ok or looped)
                    return
            self._receive_other(frame, now, csum_ok, looped)
        except MalformedPacket as bad:
            counters[bad.counter] += 1

    def _receive_other(self, frame, now: float, csum_ok: bool, looped: bool) -> None:
        """Every frame the fast path above does not take: Ethernet, then ARP or IPv4."""
        eth = ethernet.parse(frame)
        if eth.dst != self.mac and eth.dst != ethernet.BROADCAST:
            self.counters["eth.not_for_us"] += 1
        elif eth.ethertype == ethernet.ETHERTYPE_IPV4:
            self._receive_ipv4(eth, now, csum_ok, looped)
        elif eth.ethertype == ethernet.ETHERTYPE_ARP:
            self._receive_arp(eth.payload, now)
        else:
            self.counters["eth.unknown_type"] += 1

    def _receive_ipv4(self, eth, now: float, csum_ok: bool, looped: bool) -> None:
        packet = ipv4.parse(eth.payload)
        counters = self.counters
        counters["ip.rx"] += 1
        dst = packet.dst
        if dst != self.ip and not (looped and ipv4.is_loopback(dst)):
            counters["ip.broadcast_ignored" if dst in (self.broadcast, 0xFFFFFFFF)
                     else "ip.not_for_us"] += 1
            return
        if packet.is_fragment:
            counters["ip.fragment_dropped"] += 1
            return
        if packet.protocol == ipv4.PROTO_TCP:
            self._receive_tcp(packet.src, dst, packet.payload, now, csum_ok or looped)
        elif packet.protocol == ipv4.PROTO_ICMP:
            self._receive_icmp(packet, eth.src, looped)
        else:
            counters["ip.unknown_protocol"] += 1

    def _receive_tcp(self, src: int, dst: int, payload, now: float, csum_ok: bool) -> None:
        self._receive_tcp_at(payload, 0, len(payload), src, dst, now, csum_ok)

    def _receive_tcp_at(self, frame, start: int, end: int, src: int, dst: int, now: float,
                        csum_ok: bool) -> None:
        """The TCP segment at ``frame[start:end]``: parsed in place (no slice of the
        headers), its checksum verified in one call over the frame."""
        if end - start < tcp.HEADER_LEN:
            raise MalformedPacket("tcp.truncated", f"{end - start} bytes")
        # Demultiplex on the ports first: the checksum mode is per connection.
        ports = _PORTS.unpack_from(frame, start)
        key = (dst, ports[1], src, ports[0])
        conn = self.table.by_key.get(key)
        pseudo = None
        if not csum_ok and (conn.config.checksum if conn is not None else
                            self._checksum_mode(None, ports[1])) != "off":
            # the pseudo-header sum, unfolded (the checksum kernel folds it)
            pseudo = ((src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF)
                      + ipv4.PROTO_TCP + end - start)
        seg = tcp.parse_at(frame, start, end, pseudo)
        self.counters["tcp.rx"] += 1
        if conn is not None:
            self._to_connection(conn, seg, now)
            return
        listener = self.listeners.get(seg.dst_port)
        if listener is not None:
            self._to_listener(listener, key, seg, now)
        else:
            self._reset_closed(key, seg, now, "tcp.rst_closed_port")

    def _to_connection(self, conn, seg: TcpRepr, now: float) -> None:
        conn.on_segment(seg, now)
        if conn in self.table.waiting:           # TIME-WAIT: not polled, answer now
            self._wake_waiting(conn, now)
        else:
            if conn.state is CLOSED:
                # RFC 9293 3.10.7.1: a CLOSED connection is no TCB, so the next
                # segment of this burst already gets the RST a closed port gives.
                self._free(conn)
            # Events are drained once per batch (next poll_transmit or events()),
            # so a burst of segments makes one DataReceived, not one per segment.
            self._touched[conn] = None
            if not output_idle(conn):    # nothing to send (e.g. its ACK is delayed)
                self._due[conn] = None

    def _checksum_mode(self, conn, local_port: int) -> str:
        if conn is not None:
            return conn.config.checksum
        listener = self.listeners.get(local_port)
        return (listener.config or self.config).checksum if listener else self.config.checksum

    def _to_listener(self, listener: Listener, key, seg: TcpRepr, now: float) -> None:
        """RFC 9293 3.10.7.2: LISTEN ignores RST, answers ACK with RST, takes SYN."""
        counters = self.counters
        if seg.flags & RST:
            counters["tcp.listen_rst_ignored"] += 1
        elif seg.flags & ACK:
            if listener.accept_queue_full() and listener.cookies_at is not None:
                counters["tcp.listen_overflow"] += 1     # (a cookie ACK waits, as Linux's)
                return
            conn = syncookies.connection_from_ack(self, listener, key, seg, now)
            if conn is None:
                self._reset_closed(key, seg, now, "tcp.listen_ack_reset")
                return
            self._adopt_child(listener, key, conn)
            self._to_connection(conn, seg, now)        # the cookie's ACK, and its data
        elif not seg.flags & SYN:
            counters["tcp.listen_no_syn_dropped"] += 1
        elif listener.full():
            if listener.accept_queue_full() or not (listener.config or self.config).syn_cookies:
                counters["tcp.listen_overflow"] += 1
            else:
                syncookies.send_cookie(self, listener, key, seg, now)
        else:
            local_ip, local_port, remote_ip, remote_port = key
            send_buffer = recv_buffer = None
            if listener.buffers is not None:
                send_buffer, recv_buffer = listener.buffers((remote_ip, remote_port))
            conn = Connection.from_syn(
                listener.config or self.config, (local_ip, local_port),
                (remote_ip, remote_port), seg, iss=self._iss(key, now), now=now,
                send_buffer=send_buffer,
                recv_buffer=recv_buffer, mss=self._mss_for(remote_ip),
                tso_max=self._tso_for(remote_ip))
            self._adopt_child(listener, key, conn)
            counters["tcp.passive_opens"] += 1
            self._collect(conn)
            self._due[conn] = None                     # its SYN-ACK is due

    def _adopt_child(self, listener: Listener, key, conn) -> None:
        """A new child of ``listener``: in the table, counted until accepted."""
        self._add(key, conn)
        listener.half_open.add(conn)
        self._owner[conn] = listener
        self._parked[conn] = []

    def _reset_closed(self, key, seg: TcpRepr, now: float, counter: str) -> None:
        """RFC 9293 3.10.7.1: answer a segment for no connection with a RST."""
        if seg.flags & RST:
            self.counters["tcp.rst_for_nothing_dropped"] += 1
            return
        local_ip, local_port, remote_ip, remote_port = key
        if seg.flags & ACK:
            reply = TcpRepr(local_port, remote_port, seg.ack, 0, RST, 0)
        else:
            reply = TcpRepr(local_port, remote_port, 0, seq_add(seg.seq, seg.seg_len),
                            RST | ACK, 0)
        self.counters[counter] += 1
        self._emit(local_ip, remote_ip, [reply], now, 0)

    # ARP and ICMP echo: engine/tcp/neighbours.py
    _receive_icmp = neighbours.receive_icmp
    _receive_arp = neighbours.receive_arp
    _arp_request = neighbours.arp_request
    _arp_send = neighbours.arp_send

    # ---- output helpers ----------------------------------------------------------

    def _route(self, dst: int, now: float) -> tuple[bytes | None, bool]:
        """(Ethernet header prefix or None while unresolved, looped inside the stack)."""
        if dst == self.ip:
            return self._own_prefix, not self.nic.hears_itself
        if ipv4.is_loopback(dst):
            return self._own_prefix, True
        mac = self.arp.lookup(dst, now)
        if mac is None:
            return None, False
        prefix = self._prefixes.get(mac)
        if prefix is None:
            prefix = self._prefixes[mac] = ethernet_prefix(mac, self.mac)
        return prefix, False

    def _emit(self, src: int, dst: int, segments, now: float, gso_size: int,
              mode: str | None = None) -> None:
        """Frames for segments of one flow: to the NIC, the loop, or the ARP queue."""
        prefix, looped = self._route(dst, now)
        build = self.builder.tcp_frame
        if prefix is not None and not looped:
            self.builder.tcp_frames(prefix, src, dst, segments, gso_size, False, mode, self._tx)
        elif looped:
            self.builder.tcp_frames(prefix, src, dst, segments, 0, True, mode, self._loop)
        else:
            for seg in segments:
                slot = build(self._own_prefix, src, dst, seg, gso_size, False, mode)
                if slot < 0:
                    continue                         # no frame slot (counted)
                queued, ask = self.arp.enqueue(dst, slot, now)
                if not queued:
                    self.counters["arp.queue_overflow"] += 1
                    self.pool.release(slot)
                if ask:
                    self._arp_request(dst)
        self.counters["tcp.tx"] += len(segments)

    def _emit_connection(self, conn, segments: list, now: float) -> None:
        local_ip, _, remote_ip, _ = self._keys[conn]
        # _tso_for and conn.gso_size, inline: TSO (at the MSS) except inside the stack
        if remote_ip == self.ip and self.nic.hears_itself:
            # our own address over a NIC that hears itself (the engine's loopback
            # wire): _emit and _route's answer for it, inline; no TSO to ourselves
            self.builder.tcp_frames(self._own_prefix, local_ip, remote_ip, segments, 0,
                                    False, conn.config.checksum, self._tx)
            self.counters["tcp.tx"] += len(segments)
            return
        gso_size = (conn.eff_mss if self.tso_max and remote_ip != self.ip
                    and remote_ip >> 24 != 127 else 0)
        self._emit(local_ip, remote_ip, segments, now, gso_size, conn.config.checksum)

    # ---- connection lifecycle ----------------------------------------------------

    def _add(self, key, conn) -> None:
        self.table.add(key, conn)
        self._keys[conn] = key

    def _collect(self, conn) -> None:
        """Drain a connection's events: route them, park them or free the TCB."""
        pending = conn.events                          # conn.next_event(), inline
        while True:
            if not pending:
                if not (conn.rx_pending or conn.acked_dirty):
                    break
                conn.flush_counts()
            event = pending.popleft()
            owner = self._owner.get(conn)
            if owner is not None:                      # a child not accepted yet
                if isinstance(event, Closed):
                    owner.forget(conn)
                    del self._owner[conn], self._parked[conn]
                    self._free(conn)
                    self.counters["tcp.children_lost_before_accept"] += 1
                else:
                    self._parked[conn].append(event)
                    if isinstance(event, Established) and owner.established(conn):
                        self._events.append((owner, event))
            else:
                if isinstance(event, Closed):
                    self._free(conn)
                self._events.append((conn, event))
        if (conn.state is State.TIME_WAIT and conn in self._keys
                and not self.table.is_waiting(conn)):
            # Entering TIME-WAIT: send what is due (the ACK of the peer's FIN) now,
            # since a parked connection is no longer polled.
            segments = conn.poll_transmit(self._now)
            if segments:
                self._emit_connection(conn, segments, self._now)
            self.table.park(conn, conn.next_deadline())

    def _drain_touched(self) -> None:
        if self._touched:
            touched, self._touched = self._touched, {}
            self._timer_check.update(touched)          # input may have set timers
            fast = self.fast
            for conn in touched:
                self._collect(conn)
                if fast is not None and conn in self._keys and conn not in self._due:
                    fast.offer(conn)

    def _wake_waiting(self, conn, now: float) -> None:
        """A TIME-WAIT connection got a segment or its timer: send what it has (an
        ACK), then park it again with its (maybe restarted) deadline."""
        segments = conn.poll_transmit(now)
        if segments:
            self._emit_connection(conn, segments, now)
        self._collect(conn)
        if conn in self._keys:
            if conn.state is State.TIME_WAIT:
                self.table.park(conn, conn.next_deadline())
            else:
                self.table.unpark(conn, self._keys[conn])
                self._due[conn] = None                 # polled again from now on

    def _on_accept(self, conn) -> None:
        self._owner.pop(conn, None)
        self._events.extend((conn, event) for event in self._parked.pop(conn, []))
        self.counters["tcp.accepted"] += 1

    def _free(self, conn) -> None:
        """Drop a closed TCB; its last segments (an RST after abort) still go out."""
        if conn in self._keys:
            segments = conn.poll_transmit(self._now)
            if segments:
                self._emit_connection(conn, segments, self._now)
        key = self._keys.pop(conn, None)
        if self.fast is not None:
            self.fast.forget(conn)
        if key is not None and self.table.remove(key, conn):
            self._retired.update(conn.counters)
            self.counters["tcp.freed"] += 1

    def _iss(self, key, now: float) -> int:
        """RFC 6528: a 4-microsecond clock plus a keyed hash of the 4-tuple."""
        return (int(now * 250_000) + hash((self.secret,) + key)) & 0xFFFFFFFF

    def _mss_for(self, remote_ip: int) -> int:
        looped = ipv4.is_loopback(remote_ip) or (remote_ip == self.ip
                                                 and not self.nic.hears_itself)
        return LOOP_MSS if looped else self.mss

    def _tso_for(self, remote_ip: int) -> int:
        return 0 if remote_ip == self.ip or ipv4.is_loopback(remote_ip) else self.tso_max

    @staticmethod
    def _key_text(key) -> str:
        local_ip, local_port, remote_ip, remote_port = key
        return f"{ipv4.ntoa(local_ip)}:{local_port} -> {ipv4.ntoa(remote_ip)}:{remote_port}"
