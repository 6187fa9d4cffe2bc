"""Fixtures for the MLflow-client tests: MLflow pointed at a fresh lake through the plugin."""

from __future__ import annotations

from pathlib import Path

import pytest

mlflow = pytest.importorskip("mlflow")


def reset_mlflow() -> None:
    """Leave no active run, experiment or autolog behind (MLflow keeps them process-global).

    ``mlflow.autolog(disable=True)`` does not turn off a flavor's own ``mlflow.sklearn.autolog()``:
    left on, it made every later ``fit`` in the test process (the demo's model) log a run into
    MLflow's default store, ``mlflow.db`` in the working directory. So each flavor still enabled
    is turned off through its own module.
    """
    import importlib

    import mlflow.tracking.fluent as fluent
    from mlflow.utils.autologging_utils import AUTOLOGGING_INTEGRATIONS, autologging_is_disabled

    while mlflow.active_run() is not None:
        mlflow.end_run()
    fluent._active_experiment_id = None
    mlflow.autolog(disable=True)
    for flavor in list(AUTOLOGGING_INTEGRATIONS):
        if flavor != "mlflow" and not autologging_is_disabled(flavor):
            importlib.import_module(f"mlflow.{flavor}").autolog(disable=True)


@pytest.fixture
def lake_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``(lake path, tracking URI)``: MLflow logs into a fresh lake, as a user's one variable does."""
    root = str(tmp_path / "lake")
    uri = f"runlake://{root}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    mlflow.set_tracking_uri(uri)
    yield root, uri
    reset_mlflow()
    mlflow.set_tracking_uri(None)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``(lake path, server)``: a real ``runlake server`` process over a fresh lake, per module."""
    from tests.mlflow_compat.server_process import running_server

    lake = str(tmp_path_factory.mktemp("server") / "lake")
    with running_server(lake) as srv:
        yield lake, srv
