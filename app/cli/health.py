"""``runlake doctor [--repair]``: damaged part files, stale temporaries and leases, and their quarantine;
``runlake publish-state``: the lake's folded state published for fresh readers.

Exit status: 0 nothing wrong (or, with ``--repair``, everything found was moved to the lake's
``_quarantine/`` folder), 1 problems remain (so a scheduled check reports them), 2 bad input.
"""

from __future__ import annotations

import argparse
from typing import Any

from runlake.app.cli.common import emit, lake_root
from runlake.app.settings import add_lake_argument
from runlake.core.errors import InvalidArgument


def cmd_doctor(args: argparse.Namespace) -> int:
    from runlake.lake.maintenance.doctor import diagnose

    report = diagnose(lake_root(args), repair=args.repair, full=not args.quick, wait_s=args.wait)
    emit(args, report)
    return 0 if report.ok else 1


def cmd_publish_state(args: argparse.Namespace) -> int:
    from runlake.lake import Lake, state_cache

    cache = state_cache.from_env(default=True)
    if cache is False:
        raise InvalidArgument(f"{state_cache.CACHE_ENV} is off: a state is published from a state cache")
    report = Lake(lake_root(args), cache=cache).publish_state()
    emit(args, report)
    return 0


def register(subparsers: Any) -> None:
    """Add ``doctor`` and ``publish-state`` to ``runlake``'s subparsers."""
    p = subparsers.add_parser(
        "publish-state",
        help="copy the lake's folded state into <lake>/_state/ so fresh readers open from it (runlake ui does this itself)",
    )
    add_lake_argument(p)
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=cmd_publish_state)

    p = subparsers.add_parser(
        "doctor",
        help="find damaged part files, stale temporaries and leases (--repair moves them to _quarantine/)",
    )
    add_lake_argument(p)
    p.add_argument(
        "--repair",
        action="store_true",
        help="move what is damaged or stale to <lake>/_quarantine/ (never deletes); readable rows stay",
    )
    p.add_argument("--quick", action="store_true", help="read only each file's footer (fast; misses a corrupt page)")
    p.add_argument(
        "--wait", type=float, default=60.0, metavar="SECONDS", help="with --repair: wait this long for another job"
    )
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=cmd_doctor)
