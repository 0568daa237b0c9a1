"""docs/host-engine-interface.md agrees with toad/layout.py: every record field, its
offset and type, every opcode and event, and the QP slot's registers."""
from __future__ import annotations

import pathlib
import re

import pytest

from toad import layout

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "host-engine-interface.md"


def table_after(heading: str) -> list[list[str]]:
    """The body rows of the first markdown table after the line starting ``heading``."""
    lines = DOC.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading))
    rows, seen = [], False
    for line in lines[start + 1:]:
        if line.startswith("|"):
            seen = True
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            if not set(cells[0]) <= set("- "):
                rows.append(cells)
        elif seen:
            break
    return rows[1:]          # without the header row


def doc_type(dtype: layout.np.dtype) -> str:
    if dtype.kind == "V":
        return f"pad {dtype.itemsize}"
    return f"{dtype.kind}{dtype.itemsize * 8}"


@pytest.mark.parametrize("heading, dtype", [
    ("## Regions of a host segment", layout.QP_HEADER),
    ("### REQUEST", layout.REQUEST),
    ("### EVENT", layout.EVENT),
    ("### RXBUF", layout.RXBUF),
    ("### COUNTER_ROW", layout.COUNTER_ROW),
])
def test_record_tables_match_the_dtypes(heading, dtype):
    documented = [(row[0], int(row[1]), row[2]) for row in table_after(heading)]
    actual = [(name, dtype.fields[name][1], doc_type(dtype.fields[name][0]))
              for name in dtype.names]
    assert documented == actual


def test_record_sizes_in_the_headings_match():
    text = DOC.read_text()
    for name in ("REQUEST", "EVENT", "RXBUF", "COUNTER_ROW"):
        match = re.search(rf"^### {name} \(.*?(\d+) bytes\)", text, re.M)
        assert match and int(match.group(1)) == getattr(layout, name).itemsize, name


def test_opcode_and_event_tables_list_every_code():
    opcodes = {row[0]: int(row[1]) for row in table_after("### Opcodes")}
    assert opcodes == {f"OP_{name}": code for code, name in layout.OPCODE_NAMES.items()}
    events = {row[0]: int(row[1]) for row in table_after("### Events")}
    assert events == {f"EV_{name}": code for code, name in layout.EVENT_NAMES.items()}


def test_slot_register_table_matches_qp_slot():
    documented = {}
    for row in table_after("## The QP slot's registers"):
        names = [n.strip() for n in row[0].split(",")]
        offsets = [int(o) for o in row[1].split(",")]
        documented.update(zip(names, offsets))
    assert documented == {name: layout.QP_SLOT.fields[name][1] for name in layout.QP_SLOT.names}
