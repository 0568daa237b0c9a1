"""The memory contract between host and engine: OE memory and per-QP host memory.

Two kinds of shared memory exist (ARCHITECTURE.md, "The host/engine interface"):

* **OE memory** (``/toad-<name>-oe``), created by the engine. It holds a layout
  header, the config block (how configuration reaches the engine, as TOAD's
  "predetermined location"), the engine registers (state, heartbeat, sleeping flag),
  the statistics block, and one slot per queue pair (QP): what a host writes to claim
  it and have the engine map its segment (the enable handshake). Every host maps OE
  memory read-write, so it holds nothing that steers an enabled QP.
* **Host memory** (``/toad-<name>-qp<slot>-<pid>-<token>``), one segment per QP,
  created by the host driver: a QP header with the QP's doorbell page (its doorbells,
  interrupt registers, disable command and status: only its host and the engine map
  it), the request ring, the event ring, the receive-buffer ring, the counter table,
  the send-buffer area and the anonymous receive-buffer area. The engine maps it once
  when the QP is enabled, then unlinks its name (and its interrupt semaphore's): no
  other process can open them from then on. Payload, rings and counters are touched
  only through engine/dma.py and the compiled ring calls.

Every block is a numpy structured dtype with explicit offsets and a comment per
field. Both sides find regions through offsets published in a header (magic,
version, feature bits), never by recomputing them. The compiled ring calls take their
field offsets from these dtypes (toad/rings/records.py); Python code reads records
through :func:`record_view` of them.

Ordering rules (written once, beside the code that follows them, in
toad/rings/records.py and toad/rings/atomics.py):

1. A record (request, event, receive-buffer entry) is fully written before the
   index or phase bit that publishes it: the publishing store has release order,
   the other side's load of it acquire order.
2. "Store a flag, then load the other side's flag" (sleeping / wake-up, arming an
   interrupt / posting an event) needs a full fence between the store and the load.
"""
from __future__ import annotations

import secrets
import struct
from dataclasses import dataclass

import numpy as np

LAYOUT_VERSION = 5                   # 5: small receive buffers (QP_HEADER.small_buffers)
                                     # 4: each QP's doorbells, interrupt registers, disable
                                     # command and status in its own segment (QP_HEADER),
                                     # no longer in OE memory's QP_SLOT
                                     # 3: names with a generation (ENGINE_REGISTERS.generation),
                                     # the bus model (CONFIG_BLOCK, QP_STATS.bus_ns)
OE_MAGIC = 0x314D454F44414F54        # b"TOADOEM1" little-endian
QP_MAGIC = 0x3150514441414F54        # b"TOAADQP1" little-endian
FEATURES = 0                         # no optional features yet; bits reserved for later
CACHE_LINE = 64
SEGMENT_NAME_BYTES = 96


def _dtype(fields: list[tuple[str, str, int]], itemsize: int) -> np.dtype:
    """A little-endian structured dtype from (name, format, offset) triples."""
    names = [f[0] for f in fields]
    formats = [np.dtype(f[1]).newbyteorder("<") if f[1][0] not in "SV" else f[1]
               for f in fields]
    offsets = [f[2] for f in fields]
    return np.dtype({"names": names, "formats": formats, "offsets": offsets,
                     "itemsize": itemsize})


# --------------------------------------------------------------------------------
# OE memory
# --------------------------------------------------------------------------------

OE_HEADER = _dtype([
    ("magic", "u8", 0),              # OE_MAGIC; written last by the engine when ready
    ("version", "u4", 8),            # LAYOUT_VERSION
    ("features", "u4", 12),          # feature bits (FEATURES)
    ("header_bytes", "u4", 16),      # OE_HEADER.itemsize
    ("max_qps", "u4", 20),           # number of QP register slots
    ("config_offset", "u8", 24),     # -> CONFIG_BLOCK
    ("registers_offset", "u8", 32),  # -> ENGINE_REGISTERS
    ("stats_offset", "u8", 40),      # -> ENGINE_STATS
    ("qp_stats_offset", "u8", 48),   # -> QP_STATS[max_qps]
    ("slots_offset", "u8", 56),      # -> QP_SLOT[max_qps]
    ("slot_bytes", "u4", 64),        # QP_SLOT.itemsize
    ("total_bytes", "u8", 72),       # size of the whole segment
], 128)

# The config block: the engine copies its validated config here at start, so hosts
# (and tools) read the settings the engine actually runs with.
POLLING_BUSY, POLLING_ADAPTIVE = 0, 1
CONFIG_BLOCK = _dtype([
    ("polling", "u4", 0),               # POLLING_BUSY / POLLING_ADAPTIVE
    ("idle_us", "u4", 4),               # adaptive polling: idle time before sleeping
    ("cpu", "i4", 8),                   # CPU the engine was asked to run on
    ("heartbeat_timeout_ms", "u4", 12), # hosts declare the engine dead after this
    ("moderation_events", "u4", 16),    # default interrupt moderation: events
    ("moderation_us", "u4", 20),        # default interrupt moderation: microseconds
    ("max_qps", "u4", 24),              # QP slots
    ("dma_read_gbps", "f8", 32),        # bus model: DMA read bandwidth, 0 = no cap
    ("dma_latency_us", "f8", 40),       # bus model: wait of a DMA read for its data
    ("sleep_slice_ms", "u4", 48),       # longest single sleep (heartbeat still advances)
    ("interrupt_reads", "u4", 52),      # bus model: register reads per interrupt (host)
    ("pio_write_ns", "f8", 56),         # bus model: host CPU per register write
    ("pio_read_ns", "f8", 64),          # bus model: host CPU per register read
    ("dma_write_gbps", "f8", 72),       # bus model: DMA write bandwidth, 0 = no cap
    ("interrupt_us", "f8", 80),         # bus model: interrupt delivery latency
    ("bus_preset", "u4", 88),           # index of the preset in BUS_PRESETS
], 128)
# bus.preset values, in the order CONFIG_BLOCK.bus_preset numbers them
BUS_PRESETS = ("none", "pcie4", "pci66")

ENGINE_STARTING, ENGINE_RUNNING, ENGINE_STOPPING, ENGINE_STOPPED = 0, 1, 2, 3
ENGINE_REGISTERS = _dtype([
    ("state", "u4", 0),          # ENGINE_* state
    ("pid", "u4", 4),            # engine process id
    ("cpu", "i4", 8),            # CPU the engine actually got (-1 when not pinned to one)
    ("heartbeat", "u8", 16),     # advanced every loop iteration (and every sleep slice)
    ("generation", "u8", 24),    # random, nonzero: names this engine's wake semaphore
    ("sleeping", "u4", 64),      # 1 while the engine sleeps on the wake semaphore
], 128)                          # (sleeping sits on its own cache line)

ENGINE_STATS = _dtype([
    ("iterations", "u8", 0),     # loop iterations
    ("busy_ns", "u8", 8),        # time in iterations that did work (records, pollers)
    ("sleep_ns", "u8", 16),      # time asleep on the wake semaphore (adaptive polling)
    ("sleeps", "u8", 24),        # times the engine went to sleep
    ("wakeups_idle", "u8", 32),  # sleep slices that ended with nothing to do
    ("started_ns", "u8", 40),    # CLOCK_MONOTONIC ns when the loop started
    ("updated_ns", "u8", 48),    # CLOCK_MONOTONIC ns of the last stats flush
    ("qps_reclaimed", "u8", 56), # QPs detached because their host died
    ("commands_refused", "u8", 64),  # slot commands for a live host's QP (not its own)
], 128)

QP_STATS = _dtype([
    ("requests", "u8", 0),       # request records handled
    ("events", "u8", 8),         # event records posted
    ("interrupts", "u8", 16),    # interrupts raised
    ("bad_records", "u8", 24),   # requests answered with an ERROR event
    ("dma_bytes", "u8", 32),     # bytes moved by emulated DMA
    ("dma_transactions", "u8", 40),  # DMA transactions
    ("enables", "u8", 48),       # times the slot was enabled
    ("reports_dropped", "u8", 56),  # bad_records whose ERROR was dropped (events unread)
    ("bus_ns", "u8", 64),        # bus model: time this QP's DMA waited on the bus
], 128)

# Slot commands: CMD_ENABLE written by a host into its claimed QP_SLOT.command (then
# command_seq += 1); CMD_DISABLE into its own QP_HEADER.command (same protocol), as
# only its host and the engine can reach an enabled QP's page.
CMD_NONE, CMD_ENABLE, CMD_DISABLE = 0, 1, 2
# Slot states written by the engine into QP_SLOT.state (and QP_HEADER.state).
SLOT_FREE, SLOT_ACTIVE, SLOT_FAILED = 0, 1, 2

# A slot of OE memory holds only what a host needs before the engine has mapped its
# segment (the claim and the enable handshake): every host maps OE memory read-write,
# so nothing here may steer an enabled QP. Its doorbells and interrupt registers live
# in its own segment (QP_HEADER), and the engine ignores these registers while the QP
# is enabled and its host alive (ENGINE_STATS.commands_refused counts the attempts).
QP_SLOT = _dtype([
    # -- control, written by the host (slow path) --
    ("command", "u4", 0),            # CMD_ENABLE
    ("command_seq", "u4", 4),        # incremented with each command; the engine acks it
    ("host_pid", "u4", 8),           # owner; the engine reclaims the QP when it dies
    ("segment_bytes", "u8", 16),     # size of the host segment
    ("segment_name", f"S{SEGMENT_NAME_BYTES}", 32),  # POSIX shm name of the host segment
    # -- status, written by the engine --
    ("state", "u4", 192),             # SLOT_*
    ("ack_seq", "u4", 196),           # last command_seq the engine handled
    ("error", "u4", 200),             # errno of a failed enable (SLOT_FAILED) or a refused
                                      # command (EBUSY)
], 256)


@dataclass(frozen=True)
class OeLayout:
    """Offsets of the OE memory regions for ``max_qps`` slots."""
    max_qps: int
    config_offset: int
    registers_offset: int
    stats_offset: int
    qp_stats_offset: int
    slots_offset: int
    total_bytes: int

    def slot_offset(self, slot: int) -> int:
        return self.slots_offset + slot * QP_SLOT.itemsize

    def qp_stats_row(self, slot: int) -> int:
        return self.qp_stats_offset + slot * QP_STATS.itemsize


def _align(n: int, to: int = CACHE_LINE) -> int:
    return (n + to - 1) // to * to


def oe_layout(max_qps: int) -> OeLayout:
    """Where each OE-memory region lives (the engine publishes it in OE_HEADER)."""
    off = _align(OE_HEADER.itemsize)
    config = off
    off = _align(off + CONFIG_BLOCK.itemsize)
    registers = off
    off = _align(off + ENGINE_REGISTERS.itemsize)
    stats = off
    off = _align(off + ENGINE_STATS.itemsize)
    qp_stats = off
    off = _align(off + QP_STATS.itemsize * max_qps)
    slots = off
    off = _align(off + QP_SLOT.itemsize * max_qps, 4096)
    return OeLayout(max_qps, config, registers, stats, qp_stats, slots, off)


def oe_layout_from_header(header: np.void) -> OeLayout:
    """Read the layout the engine published (never recompute the other side's)."""
    return OeLayout(int(header["max_qps"]), int(header["config_offset"]),
                    int(header["registers_offset"]), int(header["stats_offset"]),
                    int(header["qp_stats_offset"]), int(header["slots_offset"]),
                    int(header["total_bytes"]))


# --------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------

# Request opcodes (host -> engine).
OP_NOP = 0          # does nothing; completion unless REQ_SILENT
OP_ECHO = 1         # completion echoing cookie, value and length (interface tests)
OP_SOCKET = 2       # allocate a connection id (completion value = conn id)
OP_BIND = 3         # conn, addr, port
OP_LISTEN = 4       # conn, value = backlog
OP_CONNECT = 5      # conn, addr, port
OP_ACCEPT = 6       # conn = listener; completion value = new conn id, addr/port = peer
OP_SEND = 7         # conn, offset + length of send-buffer bytes (no completion)
OP_SHUTDOWN = 8     # conn, value = how (SHUT_RD / SHUT_WR / SHUT_RDWR)
OP_CLOSE = 9        # conn
OP_SETOPT = 10      # conn, option = option id, value = option value
OP_SEND_SPACE = 11  # conn, value = bytes: event when this many more bytes are acked
OPCODE_NAMES = {OP_NOP: "NOP", OP_ECHO: "ECHO", OP_SOCKET: "SOCKET", OP_BIND: "BIND",
                OP_LISTEN: "LISTEN", OP_CONNECT: "CONNECT", OP_ACCEPT: "ACCEPT",
                OP_SEND: "SEND", OP_SHUTDOWN: "SHUTDOWN", OP_CLOSE: "CLOSE",
                OP_SETOPT: "SETOPT", OP_SEND_SPACE: "SEND_SPACE"}

# Request flags.
REQ_SILENT = 0x1    # no COMPLETION event on success (errors are always reported);
                    # refused on SOCKET and ACCEPT (engine/handlers.py NEEDS_ANSWER)

# Socket option ids for OP_SETOPT.
OPT_NODELAY = 1
OPT_RECV_PUSH = 2      # deliver a receive buffer when PSH is seen (value 0/1)
OPT_RECV_DELAY_US = 3  # deliver a partly filled receive buffer after this delay
OPT_CHECKSUM = 4       # TCP checksum mode of this socket's connection (CHECKSUM_MODES
                       # index); before CONNECT/LISTEN only, else EISCONN
CHECKSUM_MODES = ("software", "integrated", "offloaded", "off")   # TcpConfig.checksum

# Event types (engine -> host).
EV_COMPLETION = 1   # cookie, status (0 or errno), value (e.g. conn id)
EV_RECV_DATA = 2    # conn, buffer id, length, flags (EVF_PUSH)
EV_PEER_CLOSED = 3  # conn: FIN received
EV_RESET = 4        # conn, status (ECONNRESET, ETIMEDOUT, ...)
EV_ACCEPT_READY = 5 # conn = listener with a connection ready to accept
EV_SEND_SPACE = 6   # conn, value = cumulative bytes acked
EV_ERROR = 7        # bad request: cookie, status (errno), reason (ERR_*), value = opcode
EVENT_NAMES = {EV_COMPLETION: "COMPLETION", EV_RECV_DATA: "RECV_DATA",
               EV_PEER_CLOSED: "PEER_CLOSED", EV_RESET: "RESET",
               EV_ACCEPT_READY: "ACCEPT_READY", EV_SEND_SPACE: "SEND_SPACE",
               EV_ERROR: "ERROR"}

# Event flags.
EVF_PUSH = 0x1      # RECV_DATA: the peer set PSH on the last segment in this buffer

# Reason codes of EV_ERROR.
ERR_UNKNOWN_OPCODE = 1
ERR_OUT_OF_BOUNDS = 2     # offset/length outside the QP's segment region (IOMMU)
ERR_WRONG_CONNECTION = 3  # connection id not owned by this QP
ERR_UNSUPPORTED = 4       # opcode defined but not handled by this engine build
ERR_BAD_DOORBELL = 5      # producer index moved by more than the ring size
ERR_BAD_RXBUF = 6         # receive-buffer entry outside the receive area (EFAULT), or
                          # an id the engine already holds (EALREADY)
ERR_NO_RESOURCES = 7      # e.g. the connection table is full
ERR_BAD_ARGUMENT = 8
ERROR_NAMES = {ERR_UNKNOWN_OPCODE: "unknown opcode", ERR_OUT_OF_BOUNDS: "out of bounds",
               ERR_WRONG_CONNECTION: "connection not owned by this QP",
               ERR_UNSUPPORTED: "unsupported opcode", ERR_BAD_DOORBELL: "bad doorbell",
               ERR_BAD_RXBUF: "bad receive buffer", ERR_NO_RESOURCES: "no resources",
               ERR_BAD_ARGUMENT: "bad argument"}

REQUEST = _dtype([
    ("opcode", "u2", 0),     # OP_*
    ("flags", "u2", 2),      # REQ_* bits
    ("conn", "u4", 4),       # connection id (engine-assigned; see engine/qp.py)
    ("cookie", "u8", 8),     # host's tag, echoed in the COMPLETION / ERROR event
    ("addr", "u4", 16),      # IPv4 address, host byte order (BIND, CONNECT)
    ("port", "u2", 20),      # TCP port (BIND, CONNECT)
    ("option", "u2", 22),    # SETOPT option id (OPT_*)
    ("offset", "u8", 24),    # SEND: offset of the bytes in the host segment
    ("length", "u8", 32),    # SEND: number of bytes
    ("value", "u8", 40),     # generic argument (backlog, option value, threshold, ...)
    ("reserved", "V16", 48), # zero; room for later fields
], 64)

EVENT = _dtype([
    ("type", "u2", 0),       # EV_*
    ("flags", "u2", 2),      # EVF_* bits
    ("conn", "u4", 4),       # connection id the event is about (0 if none)
    ("cookie", "u8", 8),     # COMPLETION / ERROR: cookie of the request
    ("status", "i4", 16),    # 0 or an errno value
    ("reason", "u2", 20),    # ERROR: ERR_* reason code
    ("port", "u2", 22),      # ACCEPT completion: peer port
    ("buffer", "u4", 24),    # RECV_DATA: receive-buffer id
    ("addr", "u4", 28),      # ACCEPT completion: peer IPv4 address
    ("offset", "u8", 32),    # RECV_DATA: offset of the data inside the buffer
    ("length", "u8", 40),    # RECV_DATA: bytes in the buffer; ECHO: echoed length
    ("value", "u8", 48),     # generic result (conn id, bytes acked, echoed value, opcode)
    ("reserved", "V4", 56),  # zero
    ("phase", "u4", 60),     # phase bit, written LAST: 1 on the 1st pass, 0 on the 2nd...
], 64)

RXBUF = _dtype([
    ("offset", "u8", 0),     # offset of the buffer in the host segment (receive area)
    ("length", "u4", 8),     # usable bytes (<= recv_buffer_bytes)
    ("id", "u4", 12),        # host's buffer id, named again by RECV_DATA
], 16)

COUNTER_ROW = _dtype([
    ("bytes_acked", "u8", 0),     # written by the engine: bytes sent and acknowledged
    ("bytes_consumed", "u8", 8),  # written by the host: bytes the application has read
    ("reserved", "V16", 16),      # zero
], 32)

EVENT_PHASE_OFFSET = 60
# A connection id is ``slot << CONN_ROW_BITS | row``; row = its counter-table row.
CONN_ROW_BITS = 20
ENGINE_SLEEPING_FLAG = 0x1

QP_HEADER = _dtype([
    ("magic", "u8", 0),               # QP_MAGIC, written last by the host
    ("version", "u4", 8),             # LAYOUT_VERSION
    ("features", "u4", 12),           # feature bits
    ("header_bytes", "u4", 16),       # QP_HEADER.itemsize
    ("slot", "u4", 20),               # register slot of this QP
    ("owner_pid", "u4", 24),          # host process
    ("total_bytes", "u8", 32),        # segment size
    ("request_offset", "u8", 40),     # request ring (REQUEST records)
    ("request_entries", "u4", 48),
    ("event_entries", "u4", 52),
    ("event_offset", "u8", 56),       # event ring (EVENT records)
    ("rxbuf_offset", "u8", 64),       # receive-buffer ring (RXBUF entries)
    ("rxbuf_entries", "u4", 72),
    ("counter_rows", "u4", 76),
    ("counters_offset", "u8", 80),    # counter table (COUNTER_ROW rows)
    ("send_offset", "u8", 88),        # send-buffer area
    ("send_bytes", "u8", 96),
    ("recv_offset", "u8", 104),       # anonymous receive-buffer area
    ("recv_bytes", "u8", 112),
    ("recv_buffer_bytes", "u4", 120), # one anonymous buffer (the chunk)
    ("recv_buffers", "u4", 124),
    # -- written by the engine (DMA), each on its own cache line --
    ("request_consumer", "u4", 128),  # how far the engine has read the request ring
    ("rxbuf_consumer", "u4", 192),    # how far the engine has taken receive buffers
    ("engine_flags", "u4", 256),      # ENGINE_SLEEPING_FLAG mirror (host reads its memory)
    # -- the QP's doorbell page (as an SR-IOV function's own BAR page): registers the
    # host writes (PIO in the model) and the engine polls; here, in the QP's own
    # segment, only its host and the engine can reach them --
    ("request_producer", "u4", 320),  # request ring producer index (free-running)
    ("event_consumer", "u4", 324),    # event ring consumer index (free-running)
    ("rxbuf_producer", "u4", 328),    # receive-buffer ring producer index
    ("irq_enabled", "u4", 332),       # interrupt mask: 0 = never interrupt this QP
    ("irq_event_index", "u4", 336),   # interrupt once event index passes this (need_event)
    ("moderation_events", "u4", 340), # 0 = engine default; else max 1 interrupt per N events
    ("moderation_us", "u4", 344),     # 0 = engine default; else max 1 interrupt per T us
    # -- the QP's own commands, written by the host (slow path): CMD_DISABLE --
    ("command", "u4", 384),
    ("command_seq", "u4", 388),       # incremented with each command; acked in ack_seq
    # -- status, written by the engine --
    ("state", "u4", 448),             # SLOT_ACTIVE once enabled, SLOT_FREE once disabled
    ("ack_seq", "u4", 452),           # last command_seq the engine handled
    ("engine_state", "u4", 456),      # ENGINE_* (a copy of the register, each millisecond)
    ("heartbeat", "u4", 460),         # the heartbeat's low 32 bits (the same copy): a host
                                      # believes a stopped or stalled engine only if its
                                      # own page agrees (OE memory is every host's to write)
    # -- written by the host --
    ("small_buffer_bytes", "u4", 464),  # one small anonymous buffer (0: no small group)
    ("small_buffers", "u4", 468),     # small buffers, ids recv_buffers and up
], 512)

QP_HEADER_FIELDS = {name: QP_HEADER.fields[name][1] for name in QP_HEADER.names}
# The doorbell page's registers, as uint32 word indices into the QP's segment (both
# sides' compiled calls take them with the segment as ``regs``)
DOORBELL_FIELDS = ("request_producer", "event_consumer", "rxbuf_producer", "irq_enabled",
                   "irq_event_index", "moderation_events", "moderation_us")
DOORBELL_WORDS = {name: QP_HEADER_FIELDS[name] // 4 for name in DOORBELL_FIELDS}


@dataclass(frozen=True)
class QpLayout:
    """Offsets of the regions of one QP's host segment."""
    request_entries: int
    event_entries: int
    rxbuf_entries: int
    counter_rows: int
    recv_buffers: int
    recv_buffer_bytes: int
    request_offset: int
    event_offset: int
    rxbuf_offset: int
    counters_offset: int
    send_offset: int
    send_bytes: int
    recv_offset: int
    recv_bytes: int
    total_bytes: int
    small_buffers: int = 0
    small_buffer_bytes: int = 0

    @property
    def total_buffers(self) -> int:
        """Ids of the pool: the chunk-sized buffers, then the small ones."""
        return self.recv_buffers + self.small_buffers

    @property
    def largest_buffer(self) -> int:
        return max(self.recv_buffer_bytes, self.small_buffer_bytes)

    def buffer_at(self, index: int) -> tuple[int, int]:
        """(segment offset, size) of anonymous buffer ``index``: the chunk-sized ones
        first in the receive area, the small ones after them."""
        if index < self.recv_buffers:
            return self.recv_offset + index * self.recv_buffer_bytes, self.recv_buffer_bytes
        small = index - self.recv_buffers
        return (self.recv_offset + self.recv_buffers * self.recv_buffer_bytes
                + small * self.small_buffer_bytes, self.small_buffer_bytes)


def qp_layout(qp_config) -> QpLayout:
    """The layout of a host segment for a :class:`toad.config.QueuePairConfig`. The
    small group exists only when its buffers are smaller than the chunk."""
    small = qp_config.recv_small_buffers \
        if qp_config.recv_small_bytes < qp_config.recv_buffer_bytes else 0
    small_bytes = qp_config.recv_small_bytes if small else 0
    rxbuf_entries = 1 << max(3, (qp_config.recv_buffers + small - 1).bit_length())
    off = _align(QP_HEADER.itemsize, 4096)
    request = off
    off = _align(off + REQUEST.itemsize * qp_config.request_entries)
    event = off
    off = _align(off + EVENT.itemsize * qp_config.event_entries)
    rxbuf = off
    off = _align(off + RXBUF.itemsize * rxbuf_entries)
    counters = off
    off = _align(off + COUNTER_ROW.itemsize * qp_config.max_connections, 4096)
    send = off
    off = _align(off + qp_config.send_buffer_bytes, 4096)
    recv = off
    recv_bytes = qp_config.recv_buffers * qp_config.recv_buffer_bytes + small * small_bytes
    off = _align(off + recv_bytes, 4096)
    return QpLayout(qp_config.request_entries, qp_config.event_entries, rxbuf_entries,
                    qp_config.max_connections, qp_config.recv_buffers,
                    qp_config.recv_buffer_bytes, request, event, rxbuf, counters,
                    send, qp_config.send_buffer_bytes, recv, recv_bytes, off,
                    small, small_bytes)


def qp_layout_from_header(h: np.void) -> QpLayout:
    """Read a QP layout from a published QP_HEADER (the engine's side)."""
    return QpLayout(int(h["request_entries"]), int(h["event_entries"]),
                    int(h["rxbuf_entries"]), int(h["counter_rows"]),
                    int(h["recv_buffers"]), int(h["recv_buffer_bytes"]),
                    int(h["request_offset"]), int(h["event_offset"]),
                    int(h["rxbuf_offset"]), int(h["counters_offset"]),
                    int(h["send_offset"]), int(h["send_bytes"]),
                    int(h["recv_offset"]), int(h["recv_bytes"]), int(h["total_bytes"]),
                    int(h["small_buffers"]), int(h["small_buffer_bytes"]))


def check_qp_layout(lay: QpLayout, segment_bytes: int) -> str | None:
    """Why a published QP layout is unusable, or None. Used by the engine on enable."""
    def pow2(n: int) -> bool:
        return n >= 2 and n & (n - 1) == 0
    for name in ("request_entries", "event_entries", "rxbuf_entries"):
        if not pow2(getattr(lay, name)) or getattr(lay, name) > 1 << 20:
            return f"{name} {getattr(lay, name)} is not a power of two <= 2**20"
    regions = [("request ring", lay.request_offset, REQUEST.itemsize * lay.request_entries),
               ("event ring", lay.event_offset, EVENT.itemsize * lay.event_entries),
               ("rxbuf ring", lay.rxbuf_offset, RXBUF.itemsize * lay.rxbuf_entries),
               ("counters", lay.counters_offset, COUNTER_ROW.itemsize * lay.counter_rows),
               ("send area", lay.send_offset, lay.send_bytes),
               ("recv area", lay.recv_offset, lay.recv_bytes)]
    end = QP_HEADER.itemsize
    for name, off, size in sorted(regions, key=lambda r: r[1]):
        if off < end or off + size > segment_bytes:
            return f"{name} [{off}, {off + size}) overlaps or exceeds the {segment_bytes}-byte segment"
        end = off + size
    if lay.recv_buffers * lay.recv_buffer_bytes \
            + lay.small_buffers * lay.small_buffer_bytes != lay.recv_bytes:
        return ("recv area size != recv_buffers * recv_buffer_bytes + small_buffers * "
                "small_buffer_bytes")
    if lay.small_buffers and not 0 < lay.small_buffer_bytes < lay.recv_buffer_bytes:
        return "small_buffer_bytes must be above 0 and below recv_buffer_bytes"
    return None


# --------------------------------------------------------------------------------
# views of the records for Python code
# --------------------------------------------------------------------------------

def record_view(dtype: np.dtype, skip: tuple[str, ...] = ("reserved",),
                signed: bool = False) -> np.dtype:
    """``dtype`` without the ``skip`` fields, the others in offset order at their
    offsets (``tolist`` of a view gives one tuple per record). ``signed``: 64-bit
    fields read as int64, as the compiled calls take them (a host may write any u64;
    every bounds check refuses a negative value)."""
    names = [n for n in sorted(dtype.names, key=lambda n: dtype.fields[n][1]) if n not in skip]
    formats = [np.dtype("<i8") if signed and dtype.fields[n][0] == np.dtype("<u8")
               else dtype.fields[n][0] for n in names]
    return np.dtype({"names": names, "formats": formats,
                     "offsets": [dtype.fields[n][1] for n in names],
                     "itemsize": dtype.itemsize})


def record_struct(view: np.dtype) -> struct.Struct:
    """A ``struct.Struct`` that unpacks one record of a :func:`record_view` (its fields
    at their offsets, padding skipped): one call per record, cheaper than a numpy
    view's ``tolist`` for the few records a poll copies out."""
    codes = {"u1": "B", "u2": "H", "u4": "I", "u8": "Q", "i4": "i", "i8": "q", "f8": "d"}
    parts, position = ["<"], 0
    for name in view.names:
        ftype, offset = view.fields[name][:2]
        if offset > position:
            parts.append(f"{offset - position}x")
        parts.append(codes[ftype.str[1:]])
        position = offset + ftype.itemsize
    if position < view.itemsize:
        parts.append(f"{view.itemsize - position}x")
    return struct.Struct("".join(parts))


# REQUEST's fields with the 64-bit ones signed: opcode, flags, conn, cookie, addr, port,
# option, offset, length, value
REQUEST_SIGNED = record_view(REQUEST, signed=True)
# EVENT's body: type, flags, conn, cookie, status, reason, port, buffer, addr, offset,
# length, value (the phase word is the ring's, not the event's)
EVENT_FIELDS = record_view(EVENT, skip=("reserved", "phase"))


def segment_name(text: str) -> bytes:
    """Encode a POSIX shm name for QP_SLOT.segment_name (checked for length)."""
    raw = text.encode()
    if len(raw) >= SEGMENT_NAME_BYTES:
        raise ValueError(f"segment name {text!r} is longer than {SEGMENT_NAME_BYTES - 1} bytes")
    return raw


# Names of the shared objects (each contains "toad", so leak checks see them). Only
# the OE memory's name is predictable (hosts find the engine by it, and the engine
# creates it exclusively); every other name carries a random part, so no other
# process can create it first, and no engine or host lifetime can take another's.
def oe_name(name: str) -> str:
    return f"/toad-{name}-oe"


def wake_name(name: str, generation: int) -> str:
    """The engine's wake semaphore: ``generation`` is ENGINE_REGISTERS.generation."""
    return f"/toad-{name}-wake-{generation:016x}"


def qp_segment_name(name: str, slot: int, pid: int, token: str) -> str:
    """A host segment: ``token`` is new_token(), fresh for each segment."""
    return f"/toad-{name}-qp{slot}-{pid}-{token}"


def new_token() -> str:
    """The random part of a host's names (64 bits: never guessed, never repeated)."""
    return secrets.token_hex(8)


def irq_name(segment: str) -> str:
    """The QP's interrupt semaphore: its segment's name, plus "-irq"."""
    return segment + "-irq"
