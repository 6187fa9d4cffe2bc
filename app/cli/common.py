"""What every command shares: opening the lake (or saying why not), printing frames and reports."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING, Any

from runlake.app.settings import Settings

if TYPE_CHECKING:
    import pandas as pd

    from runlake.lake import Lake


def lake_root(args: argparse.Namespace, *, must_exist: bool = True) -> str:
    """The lake root the command works on (``--lake``, ``$RUNLAKE_LAKE``, the default).

    Raises:
        InvalidArgument: ``must_exist`` and no directory is there. Reading or maintaining a path
            that holds no lake would report "no rows" or "nothing to do" forever (a mistyped
            path in a cron job); say what is wrong instead.
    """
    root = Settings.from_args(args).lake
    if must_exist and "://" not in root and not os.path.isdir(root):
        from runlake.core.errors import InvalidArgument

        raise InvalidArgument(f"No lake at '{root}': pass --lake PATH or set RUNLAKE_LAKE")
    return root


def open_lake(args: argparse.Namespace, *, must_exist: bool = True) -> Lake:
    """The ``Lake`` at ``lake_root(args, must_exist=...)``, with a state cache when
    ``$RUNLAKE_STATE_CACHE`` asks for one (one-off commands keep none by default: they read in
    memory, or a private copy of the lake's published state when it has one). The commands that
    change runs (delete-runs, restore-runs) choose them from that state as the dashboard does
    from its cache: refreshed from the files first, and undone as easily; only the purge of
    `runlake retention` decides from the files themselves."""
    from runlake.lake import Lake, state_cache

    return Lake(lake_root(args, must_exist=must_exist), cache=state_cache.from_env(default=None))


def print_frame(frame: pd.DataFrame, fmt: str) -> None:
    """A result on stdout as an aligned table, CSV or JSON records."""
    import pandas as pd

    if fmt == "csv":
        frame.to_csv(sys.stdout, index=False)
    elif fmt == "json":
        print(frame.to_json(orient="records", date_format="iso", default_handler=str))
    else:
        with pd.option_context("display.max_rows", 200, "display.max_columns", 30, "display.width", 200):
            print(frame.to_string(index=False) if len(frame) else "(no rows)")


def emit(args: argparse.Namespace, report: Any) -> None:
    """A maintenance report (``to_text()`` / ``to_dict()``) in the command's ``--format``."""
    if getattr(args, "format", "text") == "json":
        print(json.dumps(report.to_dict(), default=str))
    else:
        print(report.to_text())
