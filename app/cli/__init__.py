"""The ``runlake`` command line: one subcommand per job, errors as messages with exit codes.

Exit codes: 0 success, 1 the work failed (e.g. I/O), 2 bad input (usage, invalid filter,
unknown experiment or run). The commands live in small modules (``start``, ``query``,
``bench``, ``lifecycle``), each adding its subparsers with ``register``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

from runlake.app.cli import bench, health, lifecycle, query, server, start
from runlake.core.damage import DamagedFileWarning
from runlake.core.errors import InvalidArgument, NotFound, RunlakeError

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="runlake", description="Track, search and manage ML training runs over a Parquet lake."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for commands in (start, query, bench, lifecycle, health, server):
        commands.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with _damage_on_stderr():
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


@contextlib.contextmanager
def _damage_on_stderr() -> Iterator[None]:
    """A damaged part file the command skipped: one line on stderr naming it, exit status unchanged.

    The command's result (stdout) stays clean for pipes; every other warning shows as usual.
    """
    said: set[str] = set()
    with warnings.catch_warnings():
        warnings.simplefilter("always", DamagedFileWarning)
        show = warnings.showwarning

        def show_damage(message: Any, category: type[Warning], *rest: Any, **kwargs: Any) -> None:
            if not issubclass(category, DamagedFileWarning):
                show(message, category, *rest, **kwargs)
            elif str(message) not in said:
                said.add(str(message))
                print(f"runlake: warning: {message}", file=sys.stderr, flush=True)

        warnings.showwarning = show_damage
        yield


def _report(exc: RunlakeError, args: argparse.Namespace) -> None:
    if getattr(args, "format", None) == "json":
        print(json.dumps(exc.to_dict(), default=str), file=sys.stderr)
    else:
        print(f"error: {exc}", file=sys.stderr)
