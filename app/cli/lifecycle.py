"""Commands that change or move runs: bulk delete/restore, retention, compaction, export/import.

Made to be scheduled: the exit status says whether the work was done - 0 success, 1 failure
(including a partial one, like an artifact directory retention could not remove, or another
maintenance job holding the lake), 2 bad input (unknown experiment, bad time or duration, a
corrupt export).
"""

from __future__ import annotations

import argparse
import re
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from runlake.app.cli.common import emit, lake_root, open_lake
from runlake.app.settings import add_lake_argument

if TYPE_CHECKING:
    from runlake.lake import Lake

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_time(text: str) -> int:
    """Epoch milliseconds from epoch ms digits or an ISO date/datetime (naive means UTC).

    Raises:
        argparse.ArgumentTypeError: neither form.
    """
    value = text.strip()
    if re.fullmatch(r"\d+", value):
        return int(value)
    try:
        moment = datetime.fromisoformat(value.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid time {text!r}: use epoch milliseconds (1767225600000) or an ISO date or "
            "datetime (2026-01-01, 2026-01-01T12:00, 2026-01-01T12:00+02:00; UTC unless given)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def parse_duration(text: str) -> float:
    """Seconds from a duration like 30d, 12h, 90m, 45s or 2w.

    Raises:
        argparse.ArgumentTypeError: not a number followed by one of s, m, h, d, w.
    """
    match = _DURATION.fullmatch(text.strip().lower())
    if not match:
        raise argparse.ArgumentTypeError(
            f"invalid duration {text!r}: use a number and a unit, e.g. 30d, 12h, 90m, 45s, 2w"
        )
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def _positive_runs(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid --max-runs {text!r}: a whole number from 1 to 10000") from None


def _experiment_id(lake: Lake, name: str) -> str:
    from runlake.core.errors import ExperimentNotFound

    found = lake.get_experiment_by_name(name)
    if found is None:
        raise ExperimentNotFound(name)
    return str(found["experiment_id"])


# -- handlers ------------------------------------------------------------------------------
def _bulk(args: argparse.Namespace, change: str, millis: int, relation: str) -> int:
    lake = open_lake(args)
    experiment_id = _experiment_id(lake, args.experiment)
    what = f"runs of '{args.experiment}' {relation} {millis} (epoch ms)"
    if args.dry_run:
        plan = lake.plan_delete_runs if change == "delete" else lake.plan_restore_runs
        ids = plan(experiment_id, millis, args.max_runs)
        print(f"would {change} {len(ids)} {what}")
        for run_id in ids:
            print(f"  {run_id}")
        return 0
    apply = lake.delete_runs if change == "delete" else lake.restore_runs
    count = apply(experiment_id, millis, args.max_runs)
    print(f"{change}d {count} {what}")
    return 0


def cmd_delete_runs(args: argparse.Namespace) -> int:
    return _bulk(args, "delete", args.before, "created at or before")


def cmd_restore_runs(args: argparse.Namespace) -> int:
    return _bulk(args, "restore", args.since, "deleted at or after")


def cmd_retention(args: argparse.Namespace) -> int:
    from runlake.lake.maintenance import purge

    report = purge(lake_root(args), args.older_than, dry_run=args.dry_run, wait_s=args.wait, progress=True)
    emit(args, report)
    if not report.ok:
        print(
            "error: some runs could not be purged (see FAILED above); they were kept for the next run", file=sys.stderr
        )
    return 0 if report.ok else 1


def cmd_compact(args: argparse.Namespace) -> int:
    from runlake.lake.maintenance import compact

    emit(args, compact(lake_root(args), grace_s=args.grace, wait_s=args.wait, progress=True))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from runlake.lake.transfer import export_runs

    print(export_runs(open_lake(args), args.experiment, args.out, args.filter or "", progress=True).to_text())
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from runlake.core.errors import LakeFormatError
    from runlake.lake.transfer import import_runs

    try:
        report = import_runs(open_lake(args, must_exist=False), args.source, args.experiment, progress=True)
    except LakeFormatError as exc:  # a corrupt or foreign export is bad input, not a failed job
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(report.to_text())
    return 0


def cmd_import_mlflow(args: argparse.Namespace) -> int:
    from runlake.lake.mlflow_import import import_from_mlflow

    reports = import_from_mlflow(
        open_lake(args, must_exist=False), args.tracking_uri, args.experiment or None, progress=True
    )
    for report in reports:
        print(report.to_text())
    if not reports:
        print("no experiments to import")
    return 0


def register(subparsers: Any) -> None:
    """Add the lifecycle, maintenance and transfer commands to ``runlake``'s subparsers."""
    p = subparsers.add_parser("delete-runs", help="soft-delete an experiment's runs created at or before a time")
    add_lake_argument(p)
    p.add_argument("--experiment", required=True, metavar="NAME", help="experiment name")
    p.add_argument(
        "--before",
        required=True,
        type=parse_time,
        metavar="TIME",
        help="epoch ms or ISO date/datetime (UTC unless given)",
    )
    p.add_argument(
        "--max-runs",
        type=_positive_runs,
        default=None,
        metavar="N",
        help="at most N runs, oldest first (default and limit 10000)",
    )
    p.add_argument("--dry-run", action="store_true", help="list the runs, change nothing")
    p.set_defaults(func=cmd_delete_runs)

    p = subparsers.add_parser("restore-runs", help="restore an experiment's runs deleted at or after a time")
    add_lake_argument(p)
    p.add_argument("--experiment", required=True, metavar="NAME", help="experiment name")
    p.add_argument(
        "--since",
        required=True,
        type=parse_time,
        metavar="TIME",
        help="epoch ms or ISO date/datetime (UTC unless given)",
    )
    p.add_argument(
        "--max-runs",
        type=_positive_runs,
        default=None,
        metavar="N",
        help="at most N runs, oldest first (default and limit 10000)",
    )
    p.add_argument("--dry-run", action="store_true", help="list the runs, change nothing")
    p.set_defaults(func=cmd_restore_runs)

    p = subparsers.add_parser("retention", help="purge runs deleted longer ago than a window (rows and artifacts)")
    add_lake_argument(p)
    p.add_argument(
        "--older-than",
        type=parse_duration,
        default=parse_duration("30d"),
        metavar="DURATION",
        help="e.g. 30d, 12h, 90m (default 30d)",
    )
    p.add_argument("--dry-run", action="store_true", help="report what would be purged, change nothing")
    p.add_argument(
        "--wait",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="wait this long for another maintenance job (default 60)",
    )
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=cmd_retention)

    p = subparsers.add_parser("compact", help="merge small part files into large sorted ones")
    add_lake_argument(p)
    p.add_argument(
        "--grace",
        type=parse_duration,
        default=parse_duration("10m"),
        metavar="DURATION",
        help="leave files younger than this (default 10m)",
    )
    p.add_argument(
        "--wait",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="wait this long for another maintenance job (default 60)",
    )
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=cmd_compact)

    p = subparsers.add_parser(
        "export", help="write an experiment's runs to a directory or .zip (mlflow-export-import layout)"
    )
    add_lake_argument(p)
    p.add_argument("--experiment", required=True, metavar="NAME", help="experiment name")
    p.add_argument("--filter", default="", metavar="FILTER", help="MLflow search syntax selecting the runs")
    p.add_argument("out", metavar="OUT", help="a new directory, or a path ending in .zip")
    p.set_defaults(func=cmd_export)

    p = subparsers.add_parser(
        "import", help="load an export (directory or .zip) into the lake; runs already present are skipped"
    )
    add_lake_argument(p)
    p.add_argument("source", metavar="IN", help="an export directory or .zip")
    p.add_argument(
        "--experiment",
        default=None,
        metavar="NAME",
        help="import into this experiment (default: the exported one's name)",
    )
    p.set_defaults(func=cmd_import)

    p = subparsers.add_parser("import-mlflow", help="migrate experiments and runs from MLflow (needs runlake[mlflow])")
    add_lake_argument(p)
    p.add_argument(
        "--tracking-uri",
        required=True,
        metavar="URI",
        help="http://host:5000, sqlite:///mlflow.db, file:///path/mlruns, ...",
    )
    p.add_argument(
        "--experiment", action="append", metavar="NAME", help="experiment name (repeatable; default all active)"
    )
    p.set_defaults(func=cmd_import_mlflow)
