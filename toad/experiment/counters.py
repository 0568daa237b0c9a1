"""The counters that explain a run's figure: faults, retransmissions, stalls, drops.

Every run's JSON carries ``counters`` with the same keys in every mode (README,
"JSON"); a key the mode cannot know is null, never left out:

    {"source": "engine" | "stacks" | "linux",
     "faults": {"loss", "duplicate", "reorder", "corrupt"} | null,
     "retransmits": {"segments", "fast", "timeout"},
     "sack_recoveries", "out_of_order_segments", "duplicate_segments",
     "zero_window_stalls", "out_of_buffer_stalls", "bad_records", "bad_frames",
     "interrupts": {"send", "recv"}}

Counts are totals over the whole run (set-up and warm-up included), summed over
toad's stacks. Where they come from:

- offload: the engine writes its stop summary (engine/offload/poller.py ``summary()``:
  the fault counters of the loopback wire or of the fault injector around the NIC
  (engine/nic/faults.py, TAP), the stack's and its connections' counters, the
  offload layer's) to a file the launcher names (``toad engine --summary FILE``); bad
  records and interrupts per side are the QP rows of the engine's stats block, found
  by each worker's pid. On the loopback wire both ends of a connection live in the
  engine's one stack, so a stall or a retransmission of either end counts.
- inhost: each toad worker reports its own stack's counters; interrupts per side are
  the wake-ups the other worker's shared-memory wire wrote into this side's FIFO.
  Faults are those the injector around each worker's NIC did (engine/nic/faults.py:
  the frames each side sends on the shared-memory wire, both directions on TAP),
  summed over both sides; null when no fault is configured.
- kernel: Linux's own counters (/proc/net/snmp and /proc/net/netstat) before and
  after the run, for the whole network namespace: other TCP traffic on the machine
  at the same time counts too. Linux has no fault injection, rings or anonymous
  buffers; its interrupts are not per connection (those keys are null).
"""
from __future__ import annotations

from typing import Optional

FAULT_KEYS = {"loss": "lost", "duplicate": "duplicated", "reorder": "reordered",
              "corrupt": "corrupted"}
# malformed or damaged frames the stack drops (the parsers' counter names)
BAD_FRAME_SUFFIXES = ("bad_checksum", "truncated", "bad_header_len", "bad_version",
                      "bad_data_offset", "bad_option", "bad_op")


def empty(source: str) -> dict:
    """Every key, each null."""
    return {"source": source, "faults": None,
            "retransmits": {"segments": None, "fast": None, "timeout": None},
            "sack_recoveries": None, "out_of_order_segments": None,
            "duplicate_segments": None, "zero_window_stalls": None,
            "out_of_buffer_stalls": None, "bad_records": None, "bad_frames": None,
            "interrupts": {"send": None, "recv": None}}


def stack_part(stack: dict, connections: dict) -> dict:
    """The keys a toad stack knows: its counters and its connections' (summed)."""
    # segments resent: after a timeout or a window probe (tx_retransmit), and in
    # fast recovery (tx_fast_retransmit); "fast" counts recoveries entered
    resent = connections.get("tx_retransmit", 0) + connections.get("tx_fast_retransmit", 0)
    return {"retransmits": {"segments": resent,
                            "fast": connections.get("fast_retransmit", 0),
                            "timeout": connections.get("rto", 0)},
            "sack_recoveries": connections.get("sack_recovery", 0),
            "out_of_order_segments": connections.get("rx_out_of_order", 0),
            "duplicate_segments": connections.get("rx_duplicate_segment", 0),
            "zero_window_stalls": connections.get("tx_window_stall", 0),
            "bad_frames": sum(v for k, v in stack.items() if k.endswith(BAD_FRAME_SUFFIXES))}


def qp_rows(samples: Optional[list], pids: dict) -> dict:
    """{side: the last sampled QP stats row of that side's worker} (by host pid)."""
    out: dict = {}
    for _time, block in samples or ():
        for row in block.get("qps", ()):
            for side, pid in pids.items():
                if row.get("host_pid") == pid:
                    out[side] = row
    return out


def from_engine(summary: Optional[dict], rows: dict) -> dict:
    """Offload: the engine's stop summary and the QP rows of each side."""
    out = empty("engine")
    if summary is not None:
        out.update(stack_part(summary.get("stack", {}), summary.get("connections", {})))
        wire = summary.get("wire") or {}
        if wire:                                    # the loopback wire (TAP: none)
            out["faults"] = {key: wire.get(name, 0) for key, name in FAULT_KEYS.items()}
        offload = summary.get("offload", {})
        out["out_of_buffer_stalls"] = (offload.get("rx_window_closed", 0)
                                       + offload.get("rx_out_of_buffers", 0))
    if rows:
        out["bad_records"] = sum(row.get("bad_records", 0) for row in rows.values())
        out["interrupts"] = {side: (rows[side].get("interrupts") if side in rows else None)
                             for side in ("send", "recv")}
    return out


def from_stacks(send: Optional[dict], recv: Optional[dict]) -> dict:
    """Inhost: the counters each toad worker's stack reported (None: not toad's)."""
    out = empty("stacks")
    sides = [c for c in (send, recv) if c is not None]
    if not sides:
        return out
    stack: dict = {}
    connections: dict = {}
    faults: dict = {}
    for counters in sides:
        for key, value in counters.items():
            if key.startswith("conn."):
                connections[key[5:]] = connections.get(key[5:], 0) + value
            elif key.startswith("fault."):
                faults[key[6:]] = faults.get(key[6:], 0) + value
            elif not key.startswith("nic."):
                stack[key] = stack.get(key, 0) + value
    out.update(stack_part(stack, connections))
    if faults:             # the fault injector around each worker's NIC (both summed)
        out["faults"] = {key: faults.get(name, 0) for key, name in FAULT_KEYS.items()}
    # a worker sleeps on its FIFO; the other side's wire writes the wake-up there
    wakeups = {side: (c or {}).get("nic.wakeups_sent") for side, c in
               (("recv", send), ("send", recv))}
    out["interrupts"] = wakeups
    return out


LINUX_FIELDS = {   # (table, field) per counter key
    "segments": ("Tcp", "RetransSegs"), "fast": ("TcpExt", "TCPFastRetrans"),
    "timeout": ("TcpExt", "TCPTimeouts"), "sack_recoveries": ("TcpExt", "TCPSackRecovery"),
    "out_of_order_segments": ("TcpExt", "TCPOFOQueue"),
    "duplicate_segments": ("TcpExt", "TCPDSACKOldSent"),
    "zero_window_stalls": ("TcpExt", "TCPToZeroWindowAdv"),
    "bad_frames": ("Tcp", "InErrs"),
}


def read_linux(paths=("/proc/net/snmp", "/proc/net/netstat")) -> dict:
    """{(table, field): value} of Linux's protocol counters in this namespace."""
    out: dict = {}
    for path in paths:
        try:
            with open(path) as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        for names, values in zip(lines[::2], lines[1::2]):
            table, *fields = names.split()
            _table, *numbers = values.split()
            for field, number in zip(fields, numbers):
                try:
                    out[(table.rstrip(":"), field)] = int(number)
                except ValueError:
                    pass
    return out


def from_linux(before: Optional[dict], after: Optional[dict]) -> dict:
    """Kernel: how much Linux's counters grew over the run."""
    out = empty("linux")
    if not before or not after:
        return out

    def grew(key: str) -> Optional[int]:
        where = LINUX_FIELDS[key]
        if where not in before or where not in after:
            return None
        return after[where] - before[where]

    out["retransmits"] = {key: grew(key) for key in ("segments", "fast", "timeout")}
    for key in ("sack_recoveries", "out_of_order_segments", "duplicate_segments",
                "zero_window_stalls", "bad_frames"):
        out[key] = grew(key)
    return out


# (row label in the bulk table, column title in the per-run table, path in "counters")
ROWS = [
    ("faults: frames lost", "lost", ("faults", "loss")),
    ("  duplicated", "dup", ("faults", "duplicate")),
    ("  reordered", "reord", ("faults", "reorder")),
    ("  corrupted", "corrupt", ("faults", "corrupt")),
    ("retransmitted segments", "rexmit", ("retransmits", "segments")),
    ("  fast retransmits", "fast", ("retransmits", "fast")),
    ("  timeouts", "RTO", ("retransmits", "timeout")),
    ("SACK recoveries", "SACK rec", ("sack_recoveries",)),
    ("out-of-order segments", "ooo", ("out_of_order_segments",)),
    ("duplicate segments", "dup segs", ("duplicate_segments",)),
    ("zero-window stalls", "0-win", ("zero_window_stalls",)),
    ("out-of-buffer stalls", "no-buf", ("out_of_buffer_stalls",)),
    ("bad records", "bad rec", ("bad_records",)),
    ("bad frames", "bad frames", ("bad_frames",)),
]
INTERRUPTS = ("interrupts (whole run)", "irq", ("interrupts",))   # a value per side


def value(run: dict, path: tuple) -> Optional[int]:
    node = run.get("counters")
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return node


def cell(number) -> str:
    return "-" if number is None else str(int(round(number)))


def table_rows(columns: list[tuple[str, dict]]) -> list[list[str]]:
    """Rows for the bulk table, whose columns are (side, run): one per counter any
    column knows (a dash where its mode does not); interrupts are the column's side's."""
    rows = []
    for label, _title, path in ROWS + [INTERRUPTS]:
        per_side = path == INTERRUPTS[2]
        cells = [value(r, path + ((s,) if per_side else ())) for s, r in columns]
        if any(c is not None for c in cells):
            rows.append([label] + [cell(c) for c in cells])
    return rows


def run_table(labels: list[str], runs: list[dict]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of a table with one row per run and a column per counter any
    run knows (rr/crr and sweeps)."""
    wanted = [(title, path) for _label, title, path in ROWS]
    wanted += [(f"irq {side}", ("interrupts", side)) for side in ("send", "recv")]
    known = [(title, path) for title, path in wanted
             if any(value(r, path) is not None for r in runs)]
    header = ["run"] + [title for title, _path in known]
    rows = [[label] + [cell(value(r, path)) for _title, path in known]
            for label, r in zip(labels, runs)]
    return header, rows
