"""The ``runlake:`` tracking URI: which lake a URI names (stdlib only)."""

from __future__ import annotations

import os

from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

SCHEME = "runlake"

_FORMS = "runlake:///abs/path, runlake:/abs/path or runlake:s3://bucket/prefix"


def lake_location(store_uri: str) -> str:
    """The lake a ``runlake:`` URI names: an absolute local path or an object-store URI.

    Accepted forms: ``runlake:///abs/path`` and ``runlake:/abs/path`` (a local lake),
    ``runlake:s3://bucket/prefix`` (any URI pyarrow's filesystems understand after the scheme),
    and, as MLflow's ``file:`` URIs allow, ``runlake:relative/path`` (made absolute here, so a
    server and its clients agree on the lake only when started in the same directory).

    Raises:
        MlflowException: INVALID_PARAMETER_VALUE for another scheme, a host part or no path.
    """
    text = str(store_uri)
    prefix = f"{SCHEME}:"
    if not text.startswith(prefix):
        raise MlflowException(f"Not a runlake tracking URI: '{text}' (use {_FORMS})", INVALID_PARAMETER_VALUE)
    rest = text[len(prefix) :]
    if "://" in rest and not rest.startswith("//"):
        return rest.rstrip("/")  # runlake:s3://bucket/prefix: the object-store URI itself
    if rest.startswith("//"):
        host, _, path = rest[2:].partition("/")
        if host not in ("", "localhost"):
            raise MlflowException(
                f"A runlake URI names a lake path, not a host: '{text}' (use {_FORMS})", INVALID_PARAMETER_VALUE
            )
        rest = "/" + path
    if not rest.strip("/"):
        raise MlflowException(f"A runlake URI needs the lake's path: '{text}' (use {_FORMS})", INVALID_PARAMETER_VALUE)
    return os.path.abspath(rest)


def tracking_uri(lake: str) -> str:
    """The ``runlake:`` URI of a lake location (the inverse of ``lake_location``)."""
    if "://" in lake:
        return f"{SCHEME}:{lake}"
    return f"{SCHEME}://{os.path.abspath(lake)}"
