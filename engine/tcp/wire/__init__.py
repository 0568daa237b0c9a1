"""Wire formats, one module per header (smoltcp style): field offsets,
``parse(view) -> Repr`` (length checked first, then values; afterwards nothing can
fail), ``emit(repr, view)`` and ``buffer_len(repr)``. Parsing never copies payload:
a parsed Repr's ``payload`` is a memoryview into the frame.
"""
from __future__ import annotations


class MalformedPacket(ValueError):
    """A header failed validation; the Stack counts it under ``counter`` and drops it."""

    def __init__(self, counter: str, detail: str = ""):
        super().__init__(f"{counter}: {detail}" if detail else counter)
        self.counter = counter
