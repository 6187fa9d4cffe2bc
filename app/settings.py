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
    read_only: bool = False
    allow_hosts: tuple[str, ...] = ()

    HELP = {
        "lake": "lake root: --lake, else $RUNLAKE_LAKE, else ./runlake-data",
        "host": "dashboard bind address: --host, else $RUNLAKE_HOST, else 127.0.0.1 (localhost only)",
        "port": "dashboard port: --port, else $RUNLAKE_PORT, else 8050",
        "debug": "Dash debug mode (dev tools, reloader off): --debug",
        "refresh_seconds": "live-refresh interval while runs are RUNNING: --refresh-seconds, else $RUNLAKE_REFRESH_SECONDS, else 5",
        "read_only": "serve the dashboard read-only (every change control hidden and refused on the server): "
        "--read-only, else $RUNLAKE_READ_ONLY=1",
        "allow_hosts": "extra Host header names a loopback-bound dashboard answers (a reverse proxy's name): "
        "--allow-host NAME (repeatable), else $RUNLAKE_ALLOW_HOSTS (comma-separated)",
    }

    @classmethod
    def from_args(cls, args: argparse.Namespace | None = None, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        values = vars(args) if args is not None else {}

        def pick(name: str, env_name: str, default: object) -> str:
            # The flag, else the environment, else the default; as text, which the field parses.
            value = values.get(name)
            return str(value if value is not None else env.get(env_name, default))

        return cls(
            lake=pick("lake", "RUNLAKE_LAKE", DEFAULT_LAKE),
            host=pick("host", "RUNLAKE_HOST", "127.0.0.1"),
            port=int(pick("port", "RUNLAKE_PORT", 8050)),
            debug=bool(values.get("debug") or False),
            refresh_seconds=float(pick("refresh_seconds", "RUNLAKE_REFRESH_SECONDS", 5.0)),
            read_only=bool(values.get("read_only") or _truthy(env.get("RUNLAKE_READ_ONLY"))),
            allow_hosts=tuple(
                h.strip().lower()
                for h in (values.get("allow_host") or str(env.get("RUNLAKE_ALLOW_HOSTS") or "").split(","))
                if h and h.strip()
            ),
        )

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def _truthy(value: str | None) -> bool:
    return str(value or "").strip().lower() in ("1", "true", "yes", "on")


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
    parser.add_argument(
        "--read-only", dest="read_only", action="store_true", default=None, help=Settings.HELP["read_only"]
    )
    parser.add_argument(
        "--allow-host",
        dest="allow_host",
        action="append",
        default=None,
        metavar="NAME",
        help=Settings.HELP["allow_hosts"],
    )
