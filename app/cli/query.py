"""Commands that read the lake: ``runlake sql`` (one query or a shell), ``search``, ``experiments``."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from runlake.app.cli.common import open_lake, print_frame
from runlake.app.settings import Settings, add_lake_argument

if TYPE_CHECKING:
    from runlake.lake import Lake

FORMATS = ("table", "csv", "json")
VIEWS = {"active": "ACTIVE_ONLY", "deleted": "DELETED_ONLY", "all": "ALL"}


def cmd_sql(args: argparse.Namespace) -> int:
    if args.print_views:
        from runlake.lake import views

        print(views.standalone_script(Settings.from_args(args).lake))
        return 0
    lake = open_lake(args)
    if args.query:
        print_frame(lake.sql(args.query), args.format)
        return 0
    return _sql_shell(lake, args.format)


def _sql_shell(lake: Lake, fmt: str) -> int:
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
            print_frame(lake.sql(text.rstrip(";")), fmt)
        except Exception as exc:  # an interactive shell reports and goes on
            print(f"error: {exc}", file=sys.stderr)


def cmd_search(args: argparse.Namespace) -> int:
    lake = open_lake(args)
    frame = lake.search_runs(
        experiment_names=args.experiment or None,
        filter_string=args.filter,
        run_view_type=VIEWS[args.view],
        order_by=args.order_by or None,
        max_results=args.max_results,
    )
    if args.format == "table":
        keep = [c for c in ("run_id", "run_name", "status", "start_time") if c in frame.columns]
        keep += [c for c in frame.columns if c.startswith("metrics.")]
        frame = frame[keep]
    print_frame(frame, args.format)
    return 0


def cmd_experiments(args: argparse.Namespace) -> int:
    print_frame(open_lake(args).list_experiments(), args.format)
    return 0


def register(subparsers: Any) -> None:
    """Add ``sql``, ``search`` and ``experiments`` to ``runlake``'s subparsers."""
    p = subparsers.add_parser(
        "sql",
        help="query the lake's views with DuckDB (one-shot or interactive)",
        description="Query the lake's views with DuckDB. This is full DuckDB, for your own shell: a query can "
        "read and write any file you can (read_csv, COPY TO, ATTACH, INSTALL). Code that passes other "
        'people\'s SQL through should use Lake(path, sql_access="views") instead.',
    )
    add_lake_argument(p)
    p.add_argument("query", nargs="?", help="a SQL query; omit for an interactive shell")
    p.add_argument("--format", choices=FORMATS, default="table")
    p.add_argument("--print-views", action="store_true", help="print CREATE VIEW statements for plain DuckDB")
    p.set_defaults(func=cmd_sql)

    p = subparsers.add_parser("search", help="search runs with MLflow's filter syntax (plus OR, NOT, parentheses)")
    add_lake_argument(p)
    p.add_argument("filter", nargs="?", default="", help="e.g. \"metrics.rmse < 0.3 AND params.lr = '0.01'\"")
    p.add_argument("--experiment", action="append", metavar="NAME", help="experiment name (repeatable; default all)")
    p.add_argument("--order-by", action="append", metavar="KEY", help="e.g. 'metrics.loss DESC' (repeatable)")
    p.add_argument("--max-results", type=int, default=None, metavar="N")
    p.add_argument("--view", choices=tuple(VIEWS), default="active")
    p.add_argument("--format", choices=FORMATS, default="table")
    p.set_defaults(func=cmd_search)

    p = subparsers.add_parser("experiments", help="list experiments with run counts")
    add_lake_argument(p)
    p.add_argument("--format", choices=FORMATS, default="table")
    p.set_defaults(func=cmd_experiments)
