"""Getting started: ``runlake demo`` writes a demo lake, ``runlake ui`` serves the dashboard."""

from __future__ import annotations

import argparse
from typing import Any

from runlake.app.settings import Settings, add_lake_argument, add_ui_arguments


def cmd_demo(args: argparse.Namespace) -> int:
    from runlake.demo import build_demo

    settings = Settings.from_args(args)
    summary = build_demo(settings.lake, runs=args.runs, seed=args.seed)
    print(summary.to_text())
    print(f"\nOpen it:  runlake ui --lake {settings.lake}")
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    from runlake.app.web.server import serve

    serve(Settings.from_args(args))
    return 0


def register(subparsers: Any) -> None:
    """Add ``demo`` and ``ui`` to ``runlake``'s subparsers."""
    p = subparsers.add_parser("demo", help="write a deterministic demo lake")
    add_lake_argument(p)
    p.add_argument("--runs", type=int, default=200, help="number of runs (default 200; 100000 for benchmarks)")
    p.add_argument("--seed", type=int, default=7, help="random seed (same seed, same lake)")
    p.set_defaults(func=cmd_demo)

    p = subparsers.add_parser("ui", help="start the dashboard (binds to 127.0.0.1 unless --host is given)")
    add_ui_arguments(p)
    p.set_defaults(func=cmd_ui)
