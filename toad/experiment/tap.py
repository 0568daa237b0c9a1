"""Runs against Linux over a TAP device (nic.kind: tap).

Not built yet: the launcher does not start the Linux-side peer in the namespace.
"""
from __future__ import annotations

from toad.errors import ToadError


def run_tap(config, mode, unit, tick):
    raise ToadError("nic.kind: tap runs are not built yet in toad run/compare "
                    "(use toad nc against a peer in the namespace meanwhile)")
