"""``runlake bench``: runs the benchmark programs of a source checkout (``benchmarks/``, not packaged).

The suites, their flags and their tables live in ``benchmarks/``; this command finds that folder
and hands it the rest of the command line, so a new suite needs no change here.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Any

HELP = "run benchmarks and print their tables"
NOT_FOUND = (
    "runlake bench: the benchmarks are not installed with the package; they run from a source "
    "checkout of runlake: python -m benchmarks [ingest|search|ui|compaction|all] ..."
)


def find_benchmarks() -> Path | None:
    """The ``benchmarks`` folder beside the package source (an editable install) or in the current
    directory, or None (a wheel install)."""
    import runlake.app

    source = Path(runlake.app.__file__).resolve().parents[1]
    for folder in (source / "benchmarks", Path.cwd() / "benchmarks"):
        if (folder / "__init__.py").is_file() and (folder / "suites.py").is_file():
            return folder
    return None


def cmd_bench(args: argparse.Namespace) -> int:
    folder = find_benchmarks()
    if folder is None:
        print(NOT_FOUND, file=sys.stderr)
        return 2
    if str(folder.parent) not in sys.path:
        sys.path.insert(0, str(folder.parent))
    suites = importlib.import_module("benchmarks.suites")
    return int(suites.main(args.argv, prog="runlake bench"))


def register(subparsers: Any) -> None:
    """Add ``bench`` to ``runlake``'s subparsers; everything after it goes to the benchmarks' parser."""
    # No option is ours (prefix_chars matches nothing), so `--lake`, `--help` and the rest reach
    # the benchmarks' own parser untouched: it defines the suites and flags in one place.
    p = subparsers.add_parser("bench", help=HELP, description=HELP, add_help=False, prefix_chars="\x00")
    p.add_argument("argv", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_bench)
