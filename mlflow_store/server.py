"""``runlake server``: MLflow's own tracking server over the runlake store, behind a guard.

The REST API, the artifact proxy and the web UI are MLflow's (``mlflow.server.app``), configured
as ``mlflow server --backend-store-uri runlake:///lake --serve-artifacts --artifacts-destination
<lake>/artifacts`` would be. Around it, a small WSGI layer does what MLflow's server does not:

- request bodies are limited (API calls and artifact uploads each with their own limit);
- a body that is not a JSON object gets a 400 with ``error_code`` MALFORMED_REQUEST (MLflow's own
  server answers it with a 500 page), and MLflow's error codes that it maps to 500 although they
  are the caller's or a missing feature (MALFORMED_REQUEST, FEATURE_DISABLED) keep their code
  with a 4xx/501 status, so MLflow's client does not retry them as transient failures;
- the JSON object a body was parsed into is left in the request for the fast views
  (``fastpath``, ``read_views``), which then parse nothing again;
- with a credentials file, every request but ``/health`` and ``/version`` must carry one of its
  credentials (MLflow's client sends ``MLFLOW_TRACKING_TOKEN`` as a bearer token, and
  ``MLFLOW_TRACKING_USERNAME``/``PASSWORD`` as basic auth).

The server is one process (so one writer per lake and one buffer); ``--workers`` is the number
of request threads in it.
"""

from __future__ import annotations

import base64
import hmac
import io
import json
import os
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from runlake.mlflow_store import fastpath
from runlake.mlflow_store.uri import tracking_uri

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]

DEFAULT_MAX_REQUEST_BYTES = 32 * 1024 * 1024  # an API call (a log-batch is at most ~1,000 metrics)
DEFAULT_MAX_ARTIFACT_BYTES = 4 * 1024**3  # one proxied artifact upload
_OPEN_PATHS = ("/health", "/version")
_ARTIFACT_PREFIXES = ("/api/2.0/mlflow-artifacts/", "/ajax-api/2.0/mlflow-artifacts/")
_API_PREFIXES = ("/api/", "/ajax-api/")
# MLflow maps these codes to HTTP 500; they are the caller's mistake or a missing feature.
_STATUS_FOR_CODE = {"MALFORMED_REQUEST": "400 Bad Request", "FEATURE_DISABLED": "501 Not Implemented"}


@dataclass(frozen=True)
class Credentials:
    """Who may use the server: bearer tokens and basic-auth user/password pairs."""

    tokens: tuple[str, ...] = ()
    users: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_file(cls, path: str) -> Credentials:
        """Read a credentials file: one credential per line, ``token <TOKEN>`` or ``<user>:<password>``.

        Blank lines and lines starting with ``#`` are skipped.

        Raises:
            ValueError: a line in neither form, or a file with no credential.
        """
        tokens: list[str] = []
        users: dict[str, str] = {}
        with open(path, encoding="utf-8") as handle:
            for number, raw in enumerate(handle, 1):
                line = raw.strip()
                if not line or line.startswith("#"):
                    continue
                if line.startswith("token "):
                    tokens.append(line[len("token ") :].strip())
                elif ":" in line and line.index(":") > 0:
                    user, _, password = line.partition(":")
                    users[user] = password
                else:
                    raise ValueError(f"{path}:{number}: expected 'token <TOKEN>' or '<user>:<password>'")
        if not tokens and not users:
            raise ValueError(f"{path}: no credentials in the file")
        return cls(tuple(tokens), users)

    def allows(self, header: str | None) -> bool:
        """Whether an ``Authorization`` header carries one of the credentials."""
        if not header:
            return False
        scheme, _, value = header.partition(" ")
        value = value.strip()
        if scheme.lower() == "bearer":
            return any(hmac.compare_digest(value.encode(), t.encode()) for t in self.tokens)
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
            except (ValueError, UnicodeDecodeError):
                return False
            expected = self.users.get(user)
            return expected is not None and hmac.compare_digest(password.encode(), expected.encode())
        return False


def _json_response(start_response: StartResponse, status: str, code: str, message: str, **headers: str) -> list[bytes]:
    body = json.dumps({"error_code": code, "message": message}).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *headers.items()])
    return [body]


class Guard:
    """The WSGI layer around MLflow's app (see the module docstring)."""

    def __init__(
        self,
        app: WSGIApp,
        credentials: Credentials | None = None,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        max_artifact_bytes: int = DEFAULT_MAX_ARTIFACT_BYTES,
    ) -> None:
        self.app = app
        self.credentials = credentials
        self.max_request_bytes = max_request_bytes
        self.max_artifact_bytes = max_artifact_bytes

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if self.credentials is not None and path not in _OPEN_PATHS:
            if not self.credentials.allows(environ.get("HTTP_AUTHORIZATION")):
                return _json_response(
                    start_response,
                    "401 Unauthorized",
                    "UNAUTHENTICATED",
                    "This runlake server needs credentials: set MLFLOW_TRACKING_TOKEN, or "
                    "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD",
                    **{"WWW-Authenticate": 'Basic realm="runlake"'},
                )
        is_artifact = path.startswith(_ARTIFACT_PREFIXES)
        limit = self.max_artifact_bytes if is_artifact else self.max_request_bytes
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return _json_response(start_response, "400 Bad Request", "MALFORMED_REQUEST", "Invalid Content-Length")
        if length > limit:
            return _json_response(
                start_response,
                "413 Request Entity Too Large",
                "REQUEST_LIMIT_EXCEEDED",
                f"The request body has {length} bytes; this server accepts at most {limit}",
            )
        method = environ.get("REQUEST_METHOD", "GET")
        if method in ("POST", "PATCH", "PUT", "DELETE") and path.startswith(_API_PREFIXES) and not is_artifact:
            body = environ["wsgi.input"].read(length) if length else b""
            if body or method in ("POST", "PATCH"):
                problem, value = _json_problem(body)
                if problem is not None:
                    return _json_response(start_response, "400 Bad Request", "MALFORMED_REQUEST", problem)
                environ[fastpath.PARSED_BODY] = value  # the fast views read it, not a second parse
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
        return self._remap(environ, start_response)

    def _remap(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        """Pass the request to MLflow. A 500 carrying a caller's error code keeps the code with a
        4xx status; an API path's HTML error page (Flask's 404/405) becomes MLflow's JSON shape."""
        api = environ.get("PATH_INFO", "").startswith(_API_PREFIXES)
        captured: dict[str, Any] = {}

        def rewritten(status: str, headers: list[tuple[str, str]]) -> bool:
            if status.startswith("500"):
                return True
            content_type = dict((k.lower(), v) for k, v in headers).get("content-type", "")
            return api and status.startswith("4") and "json" not in content_type

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured.update(status=status, headers=headers)
            if not rewritten(status, headers):
                return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)
            return lambda data: None

        try:
            result = self.app(environ, capture)
        except Exception as exc:  # MLflow lets some errors escape as a bare 500 page
            return _json_response(start_response, "500 Internal Server Error", "INTERNAL_ERROR", str(exc))
        status = captured.get("status", "")
        if not status or not rewritten(status, captured.get("headers", [])):
            return result
        body = b"".join(result)
        close = getattr(result, "close", None)
        if close is not None:
            close()
        if not status.startswith("500"):
            code = "ENDPOINT_NOT_FOUND" if status.startswith("404") else "BAD_REQUEST"
            return _json_response(
                start_response,
                status,
                code,
                f"{status[4:]}: {environ.get('REQUEST_METHOD')} {environ.get('PATH_INFO')}",
            )
        try:
            payload = json.loads(body)
            code, message = str(payload.get("error_code", "INTERNAL_ERROR")), str(payload.get("message", ""))
        except (ValueError, AttributeError):
            code, message = "INTERNAL_ERROR", body.decode("utf-8", "replace")[:2000]
        return _json_response(start_response, _STATUS_FOR_CODE.get(code, "500 Internal Server Error"), code, message)


def _json_problem(body: bytes) -> tuple[str | None, Any]:
    """Why a request body is not a JSON object (None when it is one), and the object."""
    try:
        value = json.loads(body.decode("utf-8")) if body else None
    except (UnicodeDecodeError, ValueError) as exc:
        return f"Malformed JSON in the request body: {exc}", None
    if not isinstance(value, dict):
        return "The request body must be a JSON object", None
    return None, value


def artifacts_destination(lake: str) -> str:
    """Where MLflow's artifact proxy writes: the lake's own artifact tree."""
    from runlake.core import layout

    fs, root = layout.resolve_lake(lake)
    path = layout.LakePaths(root).artifact_root()
    return f"{lake.split('://', 1)[0]}://{path}" if "://" in lake else path


def build_app(
    lake: str,
    credentials: Credentials | None = None,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    max_artifact_bytes: int = DEFAULT_MAX_ARTIFACT_BYTES,
) -> Guard:
    """MLflow's server app over the lake, inside the guard.

    MLflow's server reads its configuration from environment variables at import and on its first
    request, as ``mlflow server`` sets them; this process sets them the same way.
    """
    from mlflow.server.constants import (
        ARTIFACT_ROOT_ENV_VAR,
        ARTIFACTS_DESTINATION_ENV_VAR,
        BACKEND_STORE_URI_ENV_VAR,
        SERVE_ARTIFACTS_ENV_VAR,
    )

    lake = lake if "://" in lake else os.path.abspath(lake)
    os.environ[BACKEND_STORE_URI_ENV_VAR] = tracking_uri(lake)
    os.environ[ARTIFACT_ROOT_ENV_VAR] = "mlflow-artifacts:/"
    os.environ[SERVE_ARTIFACTS_ENV_VAR] = "true"
    os.environ[ARTIFACTS_DESTINATION_ENV_VAR] = artifacts_destination(lake)
    from mlflow.server import app as mlflow_app

    from runlake.lake import state_cache
    from runlake.mlflow_store import read_views, tracking_store

    fastpath.install(mlflow_app)
    read_views.install(mlflow_app)
    # The store now (its writer, the lake's default experiment): errors show at start. Its reader
    # is opened and warmed by the background upkeep (``_upkeep``) or the first request.
    store = tracking_store(tracking_uri(lake), "mlflow-artifacts:/")
    # A long-lived reader, as `runlake ui` is: its state survives restarts in a state cache (a
    # reopen reads what changed; a million-run state stays within DuckDB's memory limit).
    store.reader_cache = state_cache.from_env(default=True)
    return Guard(mlflow_app.wsgi_app, credentials, max_request_bytes, max_artifact_bytes)


def _upkeep(lake: str) -> None:
    """What a long-lived reader does in the background (as ``runlake ui`` does): open and warm
    the reader now, not in the first request; merge full size tiers; publish the state for fresh
    readers when due (``runlake.lake.maintenance.upkeep``)."""
    from runlake.lake.maintenance import upkeep
    from runlake.mlflow_store import tracking_store

    store = tracking_store(tracking_uri(lake), "mlflow-artifacts:/")
    try:
        store.lake.warm()
    except Exception as exc:  # a head start only: requests open and read what they need anyway
        print(f"runlake server: warming the lake's state failed: {exc}", file=sys.stderr, flush=True)
    upkeep.start(lake, reader=lambda: store.lake)


def serve(
    lake: str,
    host: str = "127.0.0.1",
    port: int = 5000,
    workers: int = 8,
    credentials_file: str | None = None,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    max_artifact_bytes: int = DEFAULT_MAX_ARTIFACT_BYTES,
) -> None:
    """Run the server until interrupted (waitress, ``workers`` request threads, one process)."""
    import waitress

    credentials = Credentials.from_file(credentials_file) if credentials_file else None
    app = build_app(lake, credentials, max_request_bytes, max_artifact_bytes)
    threading.Thread(target=_upkeep, args=(lake,), name="runlake-server-upkeep", daemon=True).start()
    server = waitress.create_server(
        app,
        host=host,
        port=port,
        threads=max(1, workers),
        max_request_body_size=max(max_request_bytes, max_artifact_bytes),
        ident="runlake",
    )
    url = f"http://{host}:{server.effective_port}"
    access = (
        f"credentials required (from {credentials_file})"
        if credentials
        else "WARNING: no credentials file - anyone who can reach this port can read and write the lake"
    )
    print(
        f"runlake server: MLflow tracking server over lake {lake} at {url} "
        f"(MLFLOW_TRACKING_URI={url}; {max(1, workers)} threads, one writer process); {access}",
        file=sys.stderr,
        flush=True,
    )
    try:
        server.run()
    finally:
        from runlake.ingest.store import close_all

        close_all()
