"""The benchmark suites by name, and the command line running them (``python -m benchmarks``).

``runlake bench`` hands its arguments to ``main`` here too. A new suite is one entry in ``SUITES``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from benchmarks import charts, compaction, ingest, live, search, server, ui

Suite = Callable[[argparse.Namespace], str]

# Name -> the function printing its table, given the parsed flags; `all` runs them in this order.
SUITES: dict[str, Suite] = {
    "ingest": lambda args: ingest.bench_ingest(repeat=min(args.repeat, 7)),
    "search": lambda args: search.bench_search(
        runs=args.runs or 100_000, lake=args.lake, repeat=args.repeat, mlflow=not args.no_mlflow
    ),
    "ui": lambda args: ui.bench_ui(runs=args.runs or 100_000, lake=args.lake, repeat=min(args.repeat, 10)),
    "compaction": lambda args: compaction.bench_compaction(repeat=min(args.repeat, 10)),
    # A live lake: team-day writers, then the peer-shaped import (--runs caps it at 10,000).
    "live": lambda args: live.bench_live(
        seconds=args.seconds,
        runs=min(args.runs or 100_000, 10_000),
        repeat=min(args.repeat, 5),
        scale_runs=[int(n) for n in args.scale_runs.split(",") if int(n) > 0],
        scale_dir=args.scale_dir,
    ),
    # Long histories: 1 M, 3 x 10 M and 100 x 100 k points; log_batch, metric_series, charts.
    "charts": lambda args: charts.bench_charts(repeat=min(args.repeat, 5)),
    # The MLflow client against runlake server / mlflow server (SQLite) and runlake: / sqlite: in
    # process. Quick by default (1,000 runs to search); --runs 10000 is the figure.
    "server": lambda args: server.bench_server(runs=args.runs or 1_000),
}


def build_parser(prog: str = "python -m benchmarks") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="run benchmarks and print their tables")
    parser.add_argument("suite", nargs="?", default="ingest", choices=(*SUITES, "all"))
    parser.add_argument(
        "--runs", type=int, default=None, help="runs in the benchmark lake (search, ui: 100,000; server: 1,000)"
    )
    parser.add_argument("--lake", default=None, help="reuse this demo lake (search, ui); built when missing")
    parser.add_argument("--repeat", type=int, default=20, help="repetitions per query")
    parser.add_argument("--no-mlflow", action="store_true", help="search: leave out MLflow's side (it takes minutes)")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the live suite's writers write")
    parser.add_argument(
        "--scale-runs",
        default="100000,1000000",
        help="live: demo lake sizes for table (c), comma-separated; 0 skips it (1,000,000 takes ~30 min to build)",
    )
    parser.add_argument("--scale-dir", default=None, help="live: keep table (c)'s demo lakes here for the next run")
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "python -m benchmarks") -> int:
    """Run a suite (or ``all``) and print its table(s); returns the exit code."""
    args = build_parser(prog).parse_args(argv)
    for name in list(SUITES) if args.suite == "all" else [args.suite]:
        print(SUITES[name](args))
        print()
    return 0
