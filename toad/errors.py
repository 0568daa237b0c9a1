"""The error boundary every toad command shares.

Deep code raises :class:`ToadError` (or a subclass) with one line that names the
field, value or fix. :func:`run_main` is the one place that turns it into
``toad: error: ...`` on stderr and a non-zero exit; every entry point uses it.
"""
from __future__ import annotations

import os
import sys
from typing import Callable, Sequence


class ToadError(Exception):
    """An error a user can act on; its message is shown as is."""

    exit_code = 2


def run_main(main: Callable[[Sequence[str]], int], argv: Sequence[str] | None = None) -> int:
    """Call ``main(argv)`` and turn a ToadError or Ctrl-C into a clean exit code."""
    if argv is None:
        argv = sys.argv[1:]
    try:
        return int(main(list(argv)) or 0)
    except ToadError as exc:
        print(f"toad: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("toad: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:      # the reader left (toad config-reference | head)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())   # Python's exit-time flush goes nowhere
        return 0
