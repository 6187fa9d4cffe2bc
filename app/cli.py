"""The ``runlake`` command line: one subcommand per job, errors as messages with exit codes.

Exit codes: 0 success, 1 the work failed (e.g. I/O), 2 bad input (usage, invalid filter,
unknown experiment or run).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from runlake.app.settings import Settings, add_lake_argument, add_ui_arguments

Handler = Callable[[argparse.Namespace], int]


def _lake(args: argparse.Namespace) -> Any:
    import os

    from runlake.lake import Lake
    from runlake.core.errors import InvalidArgument

    root = Settings.from_args(args).lake
    # Reading a path that holds no lake would print "no rows" forever; say what is wrong.
    if "://" not in root and not os.path.isdir(root):
        raise InvalidArgument(f"No lake at '{root}': pass --lake PATH or set RUNLAKE_LAKE")
    return Lake(root)


# -- demo ----------------------------------------------------------------------------------
def cmd_demo(args: argparse.Namespace) -> int:
    from runlake.demo import build_demo

    settings = Settings.from_args(args)
    summary = build_demo(settings.lake, runs=args.runs, seed=args.seed)
    print(summary.to_text())
    print(f"\nOpen it:  runlake ui --lake {settings.lake}")
    return 0


# -- ui ------------------------------------------------------------------------------------
def cmd_ui(args: argparse.Namespace) -> int:
    from runlake.app.server import serve

    serve(Settings.from_args(args))
    return 0


# -- sql -----------------------------------------------------------------------------------
def cmd_sql(args: argparse.Namespace) -> int:
    if args.print_views:
        from runlake.lake import views

        print(views.standalone_script(Settings.from_args(args).lake))
        return 0
    lake = _lake(args)
    if args.query:
        _print_frame(lake.sql(args.query), args.format)
        return 0
    return _sql_shell(lake, args.format)


def _sql_shell(lake: Any, fmt: str) -> int:
    from runlake.lake import views

    print("runlake sql: DuckDB over the lake's views (" + ", ".join(views.VIEW_DOCS) + ").")
    print("End a statement with ';'. Ctrl-D quits.")
    buffer: list[str] = []
    while True:
        try:
            line = input("... " if buffer else "sql> ")
        except EOFError:
            print()
            return 0
        buffer.append(line)
        text = "\n".join(buffer).strip()
        if not text.endswith(";"):
            continue
        buffer.clear()
        try:
            _print_frame(lake.sql(text.rstrip(";")), fmt)
        except Exception as exc:  # an interactive shell reports and goes on
            print(f"error: {exc}", file=sys.stderr)


def _print_frame(frame: Any, fmt: str) -> None:
    import pandas as pd

    if fmt == "csv":
        frame.to_csv(sys.stdout, index=False)
    elif fmt == "json":
        print(frame.to_json(orient="records", date_format="iso", default_handler=str))
    else:
        with pd.option_context("display.max_rows", 200, "display.max_columns", 30, "display.width", 200):
            print(frame.to_string(index=False) if len(frame) else "(no rows)")


# -- search --------------------------------------------------------------------------------
def cmd_search(args: argparse.Namespace) -> int:
    lake = _lake(args)
    view = {"active": "ACTIVE_ONLY", "deleted": "DELETED_ONLY", "all": "ALL"}[args.view]
    frame = lake.search_runs(
        experiment_names=args.experiment or None,
        filter_string=args.filter,
        run_view_type=view,
        order_by=args.order_by or None,
        max_results=args.max_results,
    )
    if args.format == "table":
        keep = [c for c in ("run_id", "run_name", "status", "start_time") if c in frame.columns]
        keep += [c for c in frame.columns if c.startswith("metrics.")]
        frame = frame[keep]
    _print_frame(frame, args.format)
    return 0


def cmd_experiments(args: argparse.Namespace) -> int:
    _print_frame(_lake(args).list_experiments(), args.format)
    return 0


# -- bench ---------------------------------------------------------------------------------
def cmd_bench(args: argparse.Namespace) -> int:
    from runlake.app.bench import run_benchmarks

    return run_benchmarks(args.suite, runs=args.runs, lake=args.lake, repeat=args.repeat)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="runlake", description="Track, search and manage ML training runs over a Parquet lake.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("demo", help="write a deterministic demo lake")
    add_lake_argument(p)
    p.add_argument("--runs", type=int, default=200, help="number of runs (default 200; 100000 for benchmarks)")
    p.add_argument("--seed", type=int, default=7, help="random seed (same seed, same lake)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("ui", help="start the dashboard (binds to 127.0.0.1 unless --host is given)")
    add_ui_arguments(p)
    p.set_defaults(func=cmd_ui)

    p = sub.add_parser("sql", help="query the lake's views with DuckDB (one-shot or interactive)")
    add_lake_argument(p)
    p.add_argument("query", nargs="?", help="a SQL query; omit for an interactive shell")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.add_argument("--print-views", action="store_true", help="print CREATE VIEW statements for plain DuckDB")
    p.set_defaults(func=cmd_sql)

    p = sub.add_parser("search", help="search runs with MLflow's filter syntax (plus OR, NOT, parentheses)")
    add_lake_argument(p)
    p.add_argument("filter", nargs="?", default="", help="e.g. \"metrics.rmse < 0.3 AND params.lr = '0.01'\"")
    p.add_argument("--experiment", action="append", metavar="NAME", help="experiment name (repeatable; default all)")
    p.add_argument("--order-by", action="append", metavar="KEY", help="e.g. 'metrics.loss DESC' (repeatable)")
    p.add_argument("--max-results", type=int, default=None, metavar="N")
    p.add_argument("--view", choices=("active", "deleted", "all"), default="active")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("experiments", help="list experiments with run counts")
    add_lake_argument(p)
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.set_defaults(func=cmd_experiments)

    p = sub.add_parser("bench", help="run benchmarks and print their tables")
    p.add_argument("suite", nargs="?", default="ingest", choices=("ingest", "search", "ui", "compaction", "all"))
    p.add_argument("--runs", type=int, default=100_000, help="runs in the benchmark lake (search)")
    p.add_argument("--lake", default=None, help="reuse this demo lake (search, ui); built when missing")
    p.add_argument("--repeat", type=int, default=20, help="repetitions per query")
    p.set_defaults(func=cmd_bench)

    from runlake.app import cli_lifecycle

    cli_lifecycle.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from runlake.core.errors import InvalidArgument, NotFound, RunlakeError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (InvalidArgument, NotFound) as exc:
        _report(exc, args)
        return 2
    except RunlakeError as exc:
        _report(exc, args)
        return 1
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _report(exc: Any, args: argparse.Namespace) -> None:
    if getattr(args, "format", None) == "json":
        print(json.dumps(exc.to_dict(), default=str), file=sys.stderr)
    else:
        print(f"error: {exc}", file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

