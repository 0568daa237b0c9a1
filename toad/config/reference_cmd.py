"""``toad config-reference``: print every config key (Markdown table, for the README)."""
from __future__ import annotations

import argparse
from typing import Sequence

from . import Config, reference


def main(argv: Sequence[str]) -> int:
    argparse.ArgumentParser(
        prog="toad config-reference",
        description="Print every config key with its type, default and meaning, as the "
                    "Markdown table of the README's config reference.").parse_args(argv)
    print("| key | type | default | meaning |")
    print("| --- | --- | --- | --- |")
    for key, tp, default, text in reference(Config):
        if key == "source":
            continue
        shown = "null" if default is None else (list(default) if isinstance(default, tuple) else default)
        print(f"| `{key}` | {tp} | `{shown}` | {text} |")
    return 0
