"""runlake as an MLflow tracking store: ``mlflow.set_tracking_uri("runlake:///path/to/lake")``.

Registered under MLflow's ``mlflow.tracking_store`` entry point for the ``runlake`` scheme, so
unmodified MLflow code (fluent API, ``MlflowClient``, autolog, model flavors, datasets) logs into
the lake in process. ``runlake server`` serves the same store through MLflow's own server.

This module imports neither MLflow nor the store at import time: MLflow loads its entry points
while it is itself being imported, and would otherwise find this module half initialised.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runlake.mlflow_store.store import RunlakeStore

__all__ = ["RunlakeStore", "tracking_store"]

_stores: dict[tuple[str, str | None, int], RunlakeStore] = {}
_lock = threading.Lock()


def tracking_store(store_uri: str, artifact_uri: str | None = None) -> RunlakeStore:
    """The entry point MLflow calls for a ``runlake:`` URI: one store per lake and process.

    A process keeps one store per lake (and artifact root), so every ``MlflowClient`` shares
    one buffer, one background flusher and one DuckDB reader; a forked child gets its own.
    """
    from runlake.mlflow_store.errors import register_no_model_registry
    from runlake.mlflow_store.store import RunlakeStore
    from runlake.mlflow_store.uri import lake_location

    register_no_model_registry()
    key = (lake_location(store_uri), artifact_uri, os.getpid())
    with _lock:
        store = _stores.get(key)
        if store is None:
            store = _stores[key] = RunlakeStore(store_uri, artifact_uri)
        return store


def __getattr__(name: str) -> Any:
    if name == "RunlakeStore":
        from runlake.mlflow_store.store import RunlakeStore

        return RunlakeStore
    raise AttributeError(name)
