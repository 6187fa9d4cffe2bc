"""One frozen ``Settings``, built once from flags and the environment and passed explicitly."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, fields

from runlake.core import vocab

DEFAULT_LAKE = vocab.DEFAULT_LAKE


@dataclass(frozen=True)
class Settings:
    """Everything the CLI and the dashboard are configured by.

    Each field's ``help`` metadata is the text the README documents (a test checks it does).
    """

    lake: str = DEFAULT_LAKE
    host: str = "127.0.0.1"
    port: int = 8050
    debug: bool = False
    refresh_seconds: float = 5.0

    HELP = {
        "lake": "lake root: --lake, else $RUNLAKE_LAKE, else ./runlake-data",
        "host": "dashboard bind address: --host, else $RUNLAKE_HOST, else 127.0.0.1 (localhost only)",
        "port": "dashboard port: --port, else $RUNLAKE_PORT, else 8050",
        "debug": "Dash debug mode (dev tools, reloader off): --debug",
        "refresh_seconds": "live-refresh interval while runs are RUNNING: --refresh-seconds, else $RUNLAKE_REFRESH_SECONDS, else 5",
    }

    @classmethod
    def from_args(cls, args: argparse.Namespace | None = None, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        values = vars(args) if args is not None else {}

        def pick(name: str, env_name: str, default: object) -> object:
            value = values.get(name)
            if value is not None:
                return value
            return env.get(env_name, default)

        return cls(
            lake=str(pick("lake", "RUNLAKE_LAKE", DEFAULT_LAKE)),
            host=str(pick("host", "RUNLAKE_HOST", "127.0.0.1")),
            port=int(pick("port", "RUNLAKE_PORT", 8050)),  # type: ignore[arg-type]
            debug=bool(values.get("debug") or False),
            refresh_seconds=float(pick("refresh_seconds", "RUNLAKE_REFRESH_SECONDS", 5.0)),  # type: ignore[arg-type]
        )

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def add_lake_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lake", default=None, metavar="PATH", help=Settings.HELP["lake"])


def add_ui_arguments(parser: argparse.ArgumentParser) -> None:
    """The dashboard's flags (shared by ``runlake ui`` and ``python -m runlake.app.web.server``)."""
    add_lake_argument(parser)
    parser.add_argument("--host", default=None, help=Settings.HELP["host"])
    parser.add_argument("--port", type=int, default=None, help=Settings.HELP["port"])
    parser.add_argument("--debug", action="store_true", default=None, help=Settings.HELP["debug"])
    parser.add_argument(
        "--refresh-seconds", dest="refresh_seconds", type=float, default=None, help=Settings.HELP["refresh_seconds"]
    )
