"""``runlake server``: MLflow's tracking server (REST API, artifact proxy, web UI) over a lake.

Remote MLflow code switches with one variable, ``MLFLOW_TRACKING_URI=http://host:5000``. The
server itself lives in ``runlake.mlflow_store.server``; this module only parses its flags.
"""

from __future__ import annotations

import argparse
from typing import Any

from runlake.app.settings import Settings, add_lake_argument

HELP = "serve the lake as an MLflow tracking server (binds to 127.0.0.1 unless --host is given)"


def cmd_server(args: argparse.Namespace) -> int:
    try:
        from runlake.mlflow_store.server import serve
    except ImportError as exc:  # MLflow is the `mlflow` extra
        print(f"runlake server needs MLflow: pip install 'runlake[mlflow]' ({exc})")
        return 2
    serve(
        Settings.from_args(args).lake,
        host=args.host,
        port=args.port,
        workers=args.workers,
        credentials_file=args.credentials_file,
        max_request_bytes=args.max_request_mb * 1024 * 1024,
        max_artifact_bytes=args.max_artifact_mb * 1024 * 1024,
    )
    return 0


def register(subparsers: Any) -> None:
    """Add ``server`` to ``runlake``'s subparsers."""
    p = subparsers.add_parser("server", help=HELP, description=HELP)
    add_lake_argument(p)
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=5000, help="port (default 5000; 0 picks a free one)")
    p.add_argument("--workers", type=int, default=8, help="request threads in the one server process (default 8)")
    p.add_argument(
        "--credentials-file",
        default=None,
        help="require credentials: one per line, 'token <TOKEN>' (MLFLOW_TRACKING_TOKEN) or "
        "'<user>:<password>' (MLFLOW_TRACKING_USERNAME/PASSWORD)",
    )
    p.add_argument("--max-request-mb", type=int, default=32, help="largest API request body in MiB (default 32)")
    p.add_argument(
        "--max-artifact-mb", type=int, default=4096, help="largest proxied artifact upload in MiB (default 4096)"
    )
    p.set_defaults(func=cmd_server)
