"""Migration from a real MLflow store the test creates (skipped when mlflow is not installed)."""

from __future__ import annotations

import os

import pytest

mlflow = pytest.importorskip("mlflow")

from runlake.lake import Lake  # noqa: E402
from runlake.lake.mlflow_import import import_from_mlflow  # noqa: E402
from tests.lifecycle.conftest import listing  # noqa: E402


@pytest.fixture
def mlflow_store(tmp_path):
    """An MLflow SQLite store with nested, deleted and artifact-carrying runs."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("migrate-me", artifact_location=(tmp_path / "mlartifacts").as_uri())
    client.create_experiment("left-behind")
    parent = client.create_run(exp, run_name="parent", start_time=1_000)
    client.log_param(parent.info.run_id, "search", "grid")
    client.set_terminated(parent.info.run_id, end_time=5_000)
    child = client.create_run(
        exp, run_name="child", start_time=2_000, tags={"mlflow.parentRunId": parent.info.run_id, "team": "vision"}
    )
    run_id = child.info.run_id
    from mlflow.entities import Metric

    client.log_batch(run_id, metrics=[Metric("loss", 1.0 / (s + 1), 3_000 + s, s) for s in range(250)], params=[])
    client.log_metric(run_id, "acc", 0.5, timestamp=9_000, step=7)
    client.log_param(run_id, "lr", "0.01")
    (tmp_path / "notes.txt").write_text("hello from mlflow")
    client.log_artifact(run_id, str(tmp_path / "notes.txt"), artifact_path="docs")
    client.set_terminated(run_id, "FAILED", end_time=4_000)
    gone = client.create_run(exp, run_name="gone")
    client.delete_run(gone.info.run_id)
    return uri, parent.info.run_id, run_id, gone.info.run_id


def test_import_from_a_real_mlflow_store(mlflow_store, lake_dir):
    uri, parent, child, gone = mlflow_store
    lake = Lake(lake_dir)
    (report,) = import_from_mlflow(lake, uri, ["migrate-me"])
    assert sorted(report.runs) == sorted([parent, child, gone]) and report.metric_points == 251
    assert report.artifact_files == 1
    run = lake.get_run(child)
    assert run.info["run_name"] == "child" and run.info["status"] == "FAILED"
    assert (run.info["start_time"], run.info["end_time"]) == (2_000, 4_000)
    assert run.info["parent_run_id"] == parent
    assert run.params == {"lr": "0.01"} and run.tags["team"] == "vision"
    assert run.metrics == {"acc": 0.5, "loss": 1.0 / 250}
    history = lake.metric_history(child, "loss")
    assert history["step"].tolist() == list(range(250)) and history["timestamp"].iloc[0] == 3_000
    art = run.info["artifact_uri"].removeprefix("file://")
    with open(os.path.join(art, "docs", "notes.txt")) as handle:
        assert handle.read() == "hello from mlflow"
    assert lake.get_run(gone).info["lifecycle_stage"] == "deleted"
    assert lake.get_experiment_by_name("left-behind") is None
    # Again: nothing new, nothing doubled.
    before = listing(lake_dir)
    (again,) = import_from_mlflow(lake, uri, ["migrate-me"])
    assert again.runs == [] and len(again.skipped) == 3
    assert listing(lake_dir) == before


def test_all_experiments_and_unknown_names(mlflow_store, lake_dir):
    from runlake.core.errors import ExperimentNotFound

    uri, *_ = mlflow_store
    lake = Lake(lake_dir)
    with pytest.raises(ExperimentNotFound):
        import_from_mlflow(lake, uri, ["nope"])
    names = sorted(r.experiment for r in import_from_mlflow(lake, uri))
    assert names == ["Default", "left-behind", "migrate-me"]
