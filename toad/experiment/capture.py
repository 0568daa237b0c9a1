"""Where a run's pcap capture goes (``--pcap FILE``, the same as ``nic.pcap``).

One run: FILE as given. Several runs (chunk sizes, modes, repeats, sweep values, the
two runs of a TAP point): FILE with the run's point before the extension
(``cap-offload-128KB.pcap``), so that no run overwrites another's. Which NIC writes:

- offload: the engine's NIC, one file. On the loopback wire both ends of a
  connection sit behind that NIC (same address, told apart by their ports); each
  frame is recorded once, as it crossed the wire (engine/nic/pcap.py).
- inhost: each host process's NIC on the shared-memory wire, two files of the same
  frames seen from each end: FILE is side a's (the receiving worker, ``nic.address``),
  FILE-b side b's (the sending worker, ``nic.peer_address``).
- kernel: Linux's TCP on 127.0.0.1, which toad does not capture (``tcpdump -i lo``
  does); the run says so in a warning.
"""
from __future__ import annotations

import dataclasses
import os
import re
from typing import Optional

from toad.config import Config


def point_path(base: str, *parts: str) -> str:
    """``base`` with ``-part-part`` before its extension (characters a file name
    should not hold become '-')."""
    root, ext = os.path.splitext(base)
    tag = "-".join(re.sub(r"[^A-Za-z0-9.=_]+", "-", p).strip("-") for p in parts if p)
    return f"{root}-{tag}{ext or '.pcap'}"


def for_run(config: Config, path: Optional[str]) -> Config:
    """``config`` capturing to ``path`` (None: no capture)."""
    return dataclasses.replace(config, nic=dataclasses.replace(config.nic, pcap=path))


def files(config: Config) -> list[str]:
    """The files a run of ``config`` writes (host/inhost.py names side b's)."""
    path = config.nic.pcap
    if not path or config.mode == "kernel":
        return []
    if config.mode == "inhost" and config.nic.kind == "loopback":
        root, ext = os.path.splitext(path)
        return [path, f"{root}-b{ext or '.pcap'}"]
    return [path]


KERNEL_NOT_CAPTURED = ("nic.pcap: kernel mode is Linux's TCP on 127.0.0.1, which toad "
                       "does not capture (use tcpdump -i lo)")
