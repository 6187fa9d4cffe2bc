"""Unmodified MLflow code logs into the lake through the ``runlake:`` tracking-store plugin.

Everything here goes through the real ``mlflow`` package (fluent API, ``MlflowClient``, autolog,
``mlflow.sklearn.log_model``, datasets) and is read back through ``runlake.lake.Lake``.
"""

from __future__ import annotations

import json
import os

import mlflow
import pytest
from mlflow.entities import Metric, Param, RunTag, ViewType
from mlflow.exceptions import MlflowException

from runlake.lake import Lake
from runlake.mlflow_store.uri import lake_location


def test_the_entry_point_serves_the_runlake_scheme(lake_uri):
    root, uri = lake_uri
    from mlflow.tracking._tracking_service.utils import _get_store

    store = _get_store(uri)
    assert type(store).__name__ == "RunlakeStore"
    assert store.root == root


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("runlake:///abs/path/lake", "/abs/path/lake"),
        ("runlake:/abs/path/lake", "/abs/path/lake"),
        ("runlake://localhost/abs/lake", "/abs/lake"),
        ("runlake:s3://bucket/prefix", "s3://bucket/prefix"),
        ("runlake:gs://bucket/a/b/", "gs://bucket/a/b"),
    ],
)
def test_uri_forms(text, expected):
    assert lake_location(text) == expected


@pytest.mark.parametrize("text", ["runlake://somehost/lake", "runlake:", "runlake:///", "file:///x"])
def test_bad_uris_are_mlflow_errors(text):
    with pytest.raises(MlflowException) as info:
        lake_location(text)
    assert info.value.error_code == "INVALID_PARAMETER_VALUE"


def test_fluent_api_reads_back_through_the_lake(lake_uri):
    root, _ = lake_uri
    mlflow.set_experiment("fluent")
    with mlflow.start_run(run_name="baseline") as run:
        mlflow.log_param("lr", 0.01)
        mlflow.log_params({"depth": 3, "optimizer": "adam"})
        for step in range(5):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        mlflow.log_metrics({"acc": 0.9, "f1": 0.8}, step=4)
        mlflow.set_tag("team", "vision")
        mlflow.log_text("hello", "notes/hello.txt")
        mlflow.log_dict({"a": 1}, "config.json")
        with mlflow.start_run(run_name="child", nested=True) as child:
            mlflow.log_metric("loss", 0.5)
    run_id = run.info.run_id

    lake = Lake(root)
    record = lake.get_run(run_id)
    assert record.info["run_name"] == "baseline"
    assert record.info["status"] == "FINISHED"
    assert record.params == {"lr": "0.01", "depth": "3", "optimizer": "adam"}
    assert record.metrics == {"loss": 0.2, "acc": 0.9, "f1": 0.8}
    assert record.tags["team"] == "vision"
    assert record.tags["mlflow.runName"] == "baseline"
    assert lake.metric_history(run_id, "loss")["value"].tolist() == [1.0, 0.5, 1 / 3, 0.25, 0.2]
    assert lake.get_run(child.info.run_id).info["parent_run_id"] == run_id
    assert lake.children_of([run_id]) == [child.info.run_id]
    # Artifacts land in the lake's artifact tree, where the dashboard reads them.
    run_dir = lake.paths.run_artifact_dir(record.info["experiment_id"], run_id)
    assert open(f"{run_dir}/notes/hello.txt").read() == "hello"
    assert mlflow.get_run(run_id).info.artifact_uri == "file://" + run_dir
    assert sorted(a.path for a in mlflow.MlflowClient().list_artifacts(run_id)) == ["config.json", "notes"]
    # MLflow's run name: RunInfo and the tag, and search by the tag finds it (issue 11).
    assert mlflow.get_run(run_id).info.run_name == "baseline"
    found = mlflow.search_runs(search_all_experiments=True, filter_string="tags.mlflow.runName = 'baseline'")
    assert found["run_id"].tolist() == [run_id]


def test_a_process_sees_its_own_writes_at_once(lake_uri):
    client = mlflow.MlflowClient()
    experiment_id = client.create_experiment("ryw")
    run = client.create_run(experiment_id)
    client.log_metric(run.info.run_id, "loss", 0.25, step=7, timestamp=1234)
    history = client.get_metric_history(run.info.run_id, "loss")
    assert [(m.value, m.step, m.timestamp) for m in history] == [(0.25, 7, 1234)]
    client.log_param(run.info.run_id, "p", "x")
    client.set_tag(run.info.run_id, "k", "v")
    data = client.get_run(run.info.run_id).data
    assert data.params == {"p": "x"} and data.tags["k"] == "v" and data.metrics == {"loss": 0.25}


def test_client_experiments_lifecycle(lake_uri):
    client = mlflow.MlflowClient()
    default = client.get_experiment("0")
    assert default.name == "Default"
    experiment_id = client.create_experiment("e1", tags={"owner": "ana"})
    with pytest.raises(MlflowException) as info:
        client.create_experiment("e1")
    assert info.value.error_code == "RESOURCE_ALREADY_EXISTS"
    assert client.get_experiment_by_name("e1").tags == {"owner": "ana"}
    client.set_experiment_tag(experiment_id, "stage", "dev")
    client.delete_experiment_tag(experiment_id, "owner")
    assert client.get_experiment(experiment_id).tags == {"stage": "dev"}
    client.rename_experiment(experiment_id, "e1-renamed")
    assert client.get_experiment(experiment_id).name == "e1-renamed"
    assert client.get_experiment_by_name("e1") is None
    # The old name is free again, and gets its own id.
    other = client.create_experiment("e1")
    assert other != experiment_id
    client.delete_experiment(experiment_id)
    assert client.get_experiment(experiment_id).lifecycle_stage == "deleted"
    active = [e.name for e in client.search_experiments()]
    assert "e1-renamed" not in active and {"Default", "e1"} <= set(active)
    assert "e1-renamed" in [e.name for e in client.search_experiments(view_type=ViewType.DELETED_ONLY)]
    assert [e.name for e in client.search_experiments(filter_string="name LIKE 'e1%'")] == ["e1"]
    with pytest.raises(MlflowException) as info:
        client.create_run(experiment_id)
    assert info.value.error_code == "INVALID_STATE"
    client.restore_experiment(experiment_id)
    assert client.get_experiment(experiment_id).lifecycle_stage == "active"
    with pytest.raises(MlflowException) as info:
        client.get_experiment("424242")
    assert info.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    with pytest.raises(MlflowException) as info:
        client.delete_experiment("0")
    assert info.value.error_code == "INVALID_PARAMETER_VALUE"


def test_client_runs_lifecycle(lake_uri):
    root, _ = lake_uri
    client = mlflow.MlflowClient()
    experiment_id = client.create_experiment("runs")
    run = client.create_run(experiment_id, run_name="first", tags={"a": "1"})
    run_id = run.info.run_id
    assert run.info.run_name == "first" and run.data.tags["mlflow.runName"] == "first"
    client.log_batch(
        run_id,
        metrics=[Metric("m", float(i), 1000 + i, i) for i in range(10)],
        params=[Param("p", "1"), Param("q", "2")],
        tags=[RunTag("t", "x")],
    )
    with pytest.raises(MlflowException) as info:
        client.log_param(run_id, "p", "changed")
    assert info.value.error_code == "INVALID_PARAMETER_VALUE"
    # Renames keep RunInfo.run_name and the mlflow.runName tag in step, either way round.
    client.update_run(run_id, name="second")
    assert client.get_run(run_id).info.run_name == "second"
    assert client.get_run(run_id).data.tags["mlflow.runName"] == "second"
    client.set_tag(run_id, "mlflow.runName", "third")
    assert client.get_run(run_id).info.run_name == "third"
    assert Lake(root).get_run(run_id).info["run_name"] == "third"
    client.delete_tag(run_id, "t")
    assert "t" not in client.get_run(run_id).data.tags
    with pytest.raises(MlflowException) as info:
        client.delete_tag(run_id, "never-set")
    assert info.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    client.set_terminated(run_id, "FAILED", end_time=5000)
    info_after = client.get_run(run_id).info
    assert (info_after.status, info_after.end_time) == ("FAILED", 5000)
    client.delete_run(run_id)
    assert client.get_run(run_id).info.lifecycle_stage == "deleted"
    with pytest.raises(MlflowException):
        client.log_metric(run_id, "m", 1.0)
    assert client.search_runs([experiment_id]) == []
    assert [r.info.run_id for r in client.search_runs([experiment_id], run_view_type=ViewType.ALL)] == [run_id]
    client.restore_run(run_id)
    assert [r.info.run_id for r in client.search_runs([experiment_id])] == [run_id]
    # Paged metric history, as MLflow's server asks for it.
    store = client._tracking_client.store
    first = store.get_metric_history(run_id, "m", max_results=4)
    rest = store.get_metric_history(run_id, "m", max_results=100, page_token=first.token)
    assert [m.step for m in first] == [0, 1, 2, 3] and [m.step for m in rest] == list(range(4, 10))
    assert rest.token is None
    with pytest.raises(MlflowException) as info:
        client.get_run("0123456789abcdef")
    assert info.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_search_pages_and_orders_like_mlflow(lake_uri):
    client = mlflow.MlflowClient()
    experiment_id = client.create_experiment("search")
    ids = []
    for i in range(7):
        run = client.create_run(experiment_id, start_time=1000 + i)
        client.log_metric(run.info.run_id, "score", float(i % 3))
        client.log_param(run.info.run_id, "i", str(i))
        ids.append(run.info.run_id)
    every = client.search_runs([experiment_id], order_by=["metrics.score DESC", "params.i"])
    assert [r.data.params["i"] for r in every] == ["2", "5", "1", "4", "0", "3", "6"]
    seen, token = [], None
    while True:
        page = client.search_runs([experiment_id], max_results=3, page_token=token)
        seen += [r.info.run_id for r in page]
        token = page.token
        if not token:
            break
    assert seen == ids[::-1]  # newest first, each once
    # runlake's search beyond MLflow's: OR, NOT and parentheses.
    hits = client.search_runs([experiment_id], "metrics.score = 2 OR NOT params.i != '0'")
    assert sorted(r.data.params["i"] for r in hits) == ["0", "2", "5"]
    with pytest.raises(MlflowException) as info:
        client.search_runs([experiment_id], "metrics.score == 2")
    assert info.value.error_code == "INVALID_PARAMETER_VALUE"
    assert "Use a single '='" in info.value.message
    frame = mlflow.search_runs([experiment_id], filter_string="metrics.score >= 1")
    assert len(frame) == 4 and "params.i" in frame.columns
    # An experiment the lake does not hold is left out, as MLflow's SQL store leaves it out; an
    # id that is no integer is refused, as there.
    assert client.search_runs(["424242"]) == []
    with pytest.raises(MlflowException, match="must be a valid integer") as info:
        client.search_runs(["no-such-experiment"])
    assert info.value.error_code == "INVALID_PARAMETER_VALUE"


def test_sklearn_autolog_log_model_and_datasets(lake_uri):
    pytest.importorskip("sklearn")
    import mlflow.sklearn
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    root, _ = lake_uri
    mlflow.set_experiment("iris")
    mlflow.sklearn.autolog(log_models=False)
    X, y = load_iris(return_X_y=True, as_frame=True)
    with mlflow.start_run() as run:
        dataset = mlflow.data.from_pandas(X.assign(target=y), name="iris-train")
        mlflow.log_input(dataset, context="training")
        model = LogisticRegression(max_iter=300).fit(X, y)
        info = mlflow.sklearn.log_model(model, name="model", input_example=X.iloc[:2])
    run_id = run.info.run_id

    record = Lake(root).get_run(run_id)
    assert record.params["max_iter"] == "300"  # autolog's params
    assert record.metrics["training_accuracy_score"] > 0.9  # autolog's metrics
    fetched = mlflow.get_run(run_id)
    names = {(d.dataset.name, t.value) for d in fetched.inputs.dataset_inputs for t in d.tags}
    assert ("iris-train", "training") in names
    assert [o.model_id for o in fetched.outputs.model_outputs] == [info.model_id]
    # MLflow's own loaders find the model in the lake's artifact tree.
    loaded = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    assert list(loaded.predict(X.iloc[:3])) == list(model.predict(X.iloc[:3]))
    assert list(mlflow.sklearn.load_model(info.model_uri).predict(X.iloc[:2])) == list(model.predict(X.iloc[:2]))
    logged = mlflow.get_logged_model(info.model_id)
    assert logged.source_run_id == run_id and logged.status.to_int() == logged.status.READY.to_int()
    assert logged.artifact_location.startswith("file://" + root + "/artifacts/")
    assert os.path.isfile(logged.artifact_location[len("file://") :] + "/MLmodel")
    models = mlflow.search_logged_models(experiment_ids=[fetched.info.experiment_id], output_format="list")
    assert [m.model_id for m in models] == [info.model_id]


def test_the_test_reset_turns_a_flavors_own_autolog_off(tmp_path, monkeypatch):
    """A flavor's autolog left on by one test made later fits log into ``./mlflow.db``."""
    pytest.importorskip("sklearn")
    import mlflow.sklearn
    from sklearn.linear_model import LogisticRegression

    from tests.mlflow_compat.conftest import reset_mlflow

    monkeypatch.chdir(tmp_path)
    mlflow.set_tracking_uri(f"runlake://{tmp_path / 'lake'}")
    mlflow.sklearn.autolog(log_models=False)
    reset_mlflow()
    try:
        LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
        assert not os.path.exists(tmp_path / "lake") or Lake(str(tmp_path / "lake")).search_runs().empty
    finally:
        mlflow.set_tracking_uri(None)
    assert not os.path.exists(tmp_path / "mlflow.db")


def test_what_a_lake_does_not_hold_is_mlflows_not_supported_error(lake_uri):
    _, uri = lake_uri
    from mlflow.tracking._tracking_service.utils import _get_store

    store = _get_store(uri)
    with pytest.raises(MlflowException) as info:
        store.get_trace_info("tr-1")
    assert info.value.error_code == "FEATURE_DISABLED"
    with pytest.raises(MlflowException) as info:
        store.link_traces_to_run(["tr-1"], "r")
    assert info.value.error_code == "FEATURE_DISABLED"
    assert store.search_traces(experiment_ids=["0"]) == ([], None)
    with pytest.raises(MlflowException):  # the model registry: MLflow's own "unsupported scheme" error
        mlflow.MlflowClient().create_registered_model("m")


def test_set_experiment_racing_another_process_makes_the_experiment_active(lake_uri):
    """Two processes setting a new experiment at once both log into it, not into Default.

    The race is replayed in one process: the name is missing when this process checks, another
    process creates it, then this process creates it (MLflow's set_experiment does exactly this).
    """
    from runlake.ingest import LakeClient

    root, _ = lake_uri
    store = mlflow.tracking.MlflowClient()._tracking_client.store
    assert store.get_experiment_by_name("raced") is None
    assert store.get_experiment_by_name("raced") is None  # a second racer (server threads share a store)
    other = LakeClient(root).create_experiment("raced")  # the other process wins the race
    assert store.create_experiment("raced") == other
    assert store.create_experiment("raced") == other
    # Each missed lookup answers one create: a further create of the name is a duplicate.
    with pytest.raises(MlflowException) as info:
        store.create_experiment("raced")
    assert info.value.error_code == "RESOURCE_ALREADY_EXISTS"
    # A create of a name nobody checked first finds it taken, as in MLflow's stores.
    LakeClient(root).create_experiment("taken")
    with pytest.raises(MlflowException) as info:
        store.create_experiment("taken")
    assert info.value.error_code == "RESOURCE_ALREADY_EXISTS"
    # Look up, create, create again: the second create is a duplicate, not a twin.
    assert store.get_experiment_by_name("mine") is None
    store.create_experiment("mine")
    with pytest.raises(MlflowException) as info:
        store.create_experiment("mine")
    assert info.value.error_code == "RESOURCE_ALREADY_EXISTS"
    # A deleted experiment of the name is no twin either.
    assert store.get_experiment_by_name("gone") is None
    gone = LakeClient(root).create_experiment("gone")
    store.delete_experiment(gone)
    with pytest.raises(MlflowException) as info:
        store.create_experiment("gone")
    assert info.value.error_code == "RESOURCE_ALREADY_EXISTS"


def test_metrics_logged_with_a_model_id_belong_to_that_logged_model(lake_uri):
    """MLflow 3: ``log_metrics(..., model_id=, dataset=)`` links the metrics to the logged model
    (``LoggedModel.metrics``, latest per key and dataset), which ``search_logged_models`` filters on."""
    import pandas as pd

    mlflow.set_experiment("linked")
    frame = pd.DataFrame({"x": [1.0, 2.0], "y": [0, 1]})
    with mlflow.start_run() as run:
        model = mlflow.initialize_logged_model(name="net")
        train = mlflow.data.from_pandas(frame, name="train")
        mlflow.log_metrics({"rmse": 0.9}, step=0, model_id=model.model_id, dataset=train)
        mlflow.log_metrics({"rmse": 0.5}, step=1, model_id=model.model_id, dataset=train)
        mlflow.log_metric("rmse", 0.7, model_id=model.model_id)  # no dataset: its own group
        mlflow.log_metric("unlinked", 1.0)
    linked = mlflow.get_logged_model(model.model_id).metrics
    got = sorted((m.key, m.value, m.dataset_name, m.run_id) for m in linked)
    assert got == [("rmse", 0.5, "train", run.info.run_id), ("rmse", 0.7, None, run.info.run_id)]
    assert all(
        m.model_id == model.model_id and m.dataset_digest == (train.digest if m.dataset_name else None) for m in linked
    )
    # The run keeps every point too, as in MLflow.
    history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "rmse")
    assert sorted((m.step, m.value) for m in history) == [(0, 0.7), (0, 0.9), (1, 0.5)]
    experiment = [run.info.experiment_id]
    found = mlflow.search_logged_models(
        experiment_ids=experiment, filter_string="metrics.rmse < 0.6", output_format="list"
    )
    assert [m.model_id for m in found] == [model.model_id]
    assert (
        mlflow.search_logged_models(experiment_ids=experiment, filter_string="metrics.rmse < 0.4", output_format="list")
        == []
    )
    by_dataset = mlflow.search_logged_models(
        experiment_ids=experiment,
        datasets=[{"dataset_name": "test"}],
        filter_string="metrics.rmse < 1",
        output_format="list",
    )
    assert by_dataset == []
    # A model's later changes keep its metrics (they are not folded into the model document).
    mlflow.set_logged_model_tags(model.model_id, {"stage": "eval"})
    assert len(mlflow.get_logged_model(model.model_id).metrics) == 2
    with mlflow.start_run(), pytest.raises(MlflowException) as info:
        mlflow.log_metric("rmse", 0.1, model_id="m-0123456789abcdef0123456789abcdef")
    assert info.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_an_mlflow3_model_enters_the_runs_model_history_so_the_lake_finds_it(lake_uri):
    """MLflow 3 records a logged model only as a run output; the lake's readers (dashboard Model
    section, ``has_model`` search, ``runlake.ingest.load_model``) find models by the history tag."""
    import numpy as np
    from sklearn.linear_model import LinearRegression

    import runlake.ingest as rl

    root, _ = lake_uri
    X = np.array([[1.0], [2.0], [3.0]])
    with mlflow.start_run() as run:
        model = LinearRegression().fit(X, [2.0, 4.0, 6.0])
        info = mlflow.sklearn.log_model(model, name="reg")
        mlflow.log_outputs([mlflow.entities.LoggedModelOutput(info.model_id, step=0)])  # again: entered once
    history = json.loads(Lake(root).get_run(run.info.run_id).tags["mlflow.log-model.history"])
    assert [(h["artifact_path"], h["model_id"], h["run_id"]) for h in history] == [
        ("reg", info.model_id, run.info.run_id)
    ]
    assert Lake(root).search_run_ids(has_model=True) == [run.info.run_id]
    loaded = rl.load_model(f"runs:/{run.info.run_id}/reg", lake=root)
    assert loaded.predict(np.array([[5.0]])).tolist() == pytest.approx([10.0])


def test_a_read_waits_for_rows_another_threads_flush_is_writing(lake_uri, monkeypatch):
    """The server's threads share one store: while the background flusher writes rows it took
    from the buffer, another thread's read must wait for them, not answer "run not found" (an
    autolog child run then stayed RUNNING: its end was refused as a missing run)."""
    import threading

    from runlake.core import batch

    store = mlflow.tracking.MlflowClient()._tracking_client.store
    experiment_id = store.create_experiment("in-flight")
    store.lake.list_experiments()  # the reader is open before the race, as in a running server
    taken, release = threading.Event(), threading.Event()
    real_write = batch._write_all

    def slow_write(*args, **kwargs):
        taken.set()
        release.wait(10)
        return real_write(*args, **kwargs)

    monkeypatch.setattr(batch, "_write_all", slow_write)
    run = store.create_run(experiment_id, "u", 0, [], "in-flight-run")
    flusher = threading.Thread(target=store.client.store.flush, kwargs={"merge": False})
    flusher.start()
    assert taken.wait(10)  # the flusher holds the run's rows, written to neither buffer nor lake
    threading.Timer(0.5, release.set).start()
    try:
        assert store.get_run(run.info.run_id).info.run_name == "in-flight-run"
    finally:
        release.set()
        flusher.join(10)
