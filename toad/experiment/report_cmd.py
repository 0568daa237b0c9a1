"""``toad report RESULTS.json... [--markdown] [--plot FILE]``: tables (and a plot)
from saved results, without running anything.

The files are what ``toad run|compare|sweep --json`` wrote; their runs are put
together (repeated points are summarised as when they ran) and rendered as the
command that made them did: a sweep's table when the runs carry a sweep value,
else the TOAD-style tables. ``--markdown`` renders Markdown tables and bullet notes
(for a results page), headed by where each file came from.
"""
from __future__ import annotations

import argparse
import json
from typing import Sequence

from toad.config import ConfigError

from . import report
from .commands import emit
from .repeats import summarize


def parse(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="toad report",
        description="Render the tables (and with --plot a PNG) of saved results "
                    "(toad run/compare/sweep --json), without rerunning.")
    p.add_argument("results", nargs="+", metavar="RESULTS.json",
                   help="results files written with --json; their runs are put together")
    p.add_argument("--markdown", action="store_true",
                   help="Markdown tables and notes (for a results page)")
    p.add_argument("--plot", metavar="FILE", help="write the PNG plot of these runs")
    return p.parse_args(argv)


def load_results(path: str) -> dict:
    """One results document, checked enough to render: a clear error otherwise."""
    try:
        with open(path) as f:
            doc = json.load(f)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigError(f"{path}: not JSON ({exc}); give a file written by toad "
                          f"run/compare/sweep --json") from None
    runs, details = (doc.get("runs"), doc.get("details")) if isinstance(doc, dict) else (None, None)
    if not isinstance(runs, list) or not isinstance(details, list) or len(runs) != len(details):
        raise ConfigError(f"{path}: not toad results (it needs \"runs\" and \"details\" of "
                          f"the same length); give a file written by toad run/compare/sweep --json")
    return doc


def sweep_param(paths: list[str], details: list[dict]):
    """The swept key when the runs come from ``toad sweep`` (None otherwise)."""
    params = {(d.get("sweep") or {}).get("param") for d in details}
    if params == {None}:
        return None
    if len(params) > 1:
        raise ConfigError(f"{', '.join(paths)}: the runs vary different things "
                          f"({', '.join(sorted(map(str, params)))}); report them separately")
    return params.pop()


def origin(path: str, doc: dict, markdown: bool) -> str:
    machine = doc.get("machine") or {}
    text = (f"{path}: {len(doc['runs'])} run(s), toad {doc.get('toad_version', '?')}, "
            f"config {doc.get('config') or '(built-in defaults)'}, {machine.get('cpus', '?')} "
            f"CPUs (engine {machine.get('engine_cpus')}, hosts {machine.get('host_cpus')})")
    return f"- {text}" if markdown else f"results: {text}"


def main(argv: Sequence[str]) -> int:
    args = parse(argv)
    docs = [(path, load_results(path)) for path in args.results]
    runs = [run for _path, doc in docs for run in doc["runs"]]
    details = [detail for _path, doc in docs for detail in doc["details"]]
    if not runs:
        raise ConfigError(f"{', '.join(args.results)}: no runs to report")
    name = sweep_param(args.results, details)
    heading = "\n".join(origin(path, doc, args.markdown) for path, doc in docs)
    body = (report.sweep_table(name, runs, details, args.markdown) if name
            else report.render(runs, details, args.markdown))
    emit(heading + "\n\n" + body)
    if args.plot:
        if name:
            from .sweep_plot import sweep_plot
            sweep_plot(name, *summarize(runs, details), args.plot)
        else:
            from .plots import compare_plot
            compare_plot(summarize(runs, details)[0], args.plot)
        print(f"plot: {args.plot}")
    return 0
