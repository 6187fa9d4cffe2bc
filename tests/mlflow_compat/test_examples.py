"""MLflow's own example flows, run unchanged against the lake (issue 11's proof with real clients).

Each flow below is our own short script written after one of MLflow's examples, with data that
ships in scikit-learn instead of a download:

- ``wine``: examples/sklearn_elasticnet_wine (ElasticNet on sklearn's wine data; registry refused)
- ``logistic``: examples/sklearn_logistic_regression (no ``start_run``; signature, input example)
- ``remote_store``: examples/remote_store/remote_server.py (metrics, ``MlflowClient``, artifacts)
- ``autolog``: examples/sklearn_autolog (linear_regression.py and grid_search_cv.py)
- ``boosting``: examples/lightgbm/lightgbm_native, with sklearn's HistGradientBoosting in place
  of LightGBM (not a dependency): per-iteration training loss, autologged params and model
- ``mlflow3``: examples/demos/mlflow-3/ml.py (logged model with params, metrics linked to the
  model and datasets, ``models:/<model_id>`` loaded in an evaluation run; registry refused)
- ``parent_child``: the hyperparameter-tuning tutorial's parent-child-runs notebook
- ``fluent``: the usage examples in the docstrings of MLflow's fluent API

Every flow runs as a real ``python script.py`` process whose only runlake setting is
``MLFLOW_TRACKING_URI``: once with the plugin URI (``runlake:///...``) and once against a real
``runlake server`` process. What it logged is then read back through ``runlake.lake.Lake`` and
through MLflow, as MLflow would show it.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import mlflow
import pytest

from runlake.lake import Lake
from tests.mlflow_compat.conftest import reset_mlflow
from tests.mlflow_compat.server_process import running_server

FLOWS: dict[str, str] = {}

FLOWS["wine"] = """
    import json, sys
    from urllib.parse import urlparse

    import numpy as np
    import mlflow
    import mlflow.sklearn
    from mlflow.exceptions import MlflowException
    from sklearn.datasets import load_wine
    from sklearn.linear_model import ElasticNet
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
    from sklearn.model_selection import train_test_split

    np.random.seed(40)
    frame = load_wine(as_frame=True).frame.rename(columns={"target": "quality"})
    train, test = train_test_split(frame)
    alpha, l1_ratio = 0.5, 0.25
    with mlflow.start_run() as run:
        model = ElasticNet(alpha=alpha, l1_ratio=l1_ratio, random_state=42)
        model.fit(train.drop(columns="quality"), train[["quality"]])
        predicted = model.predict(test.drop(columns="quality"))
        mlflow.log_param("alpha", alpha)
        mlflow.log_param("l1_ratio", l1_ratio)
        mlflow.log_metric("rmse", float(np.sqrt(mean_squared_error(test["quality"], predicted))))
        mlflow.log_metric("r2", r2_score(test["quality"], predicted))
        mlflow.log_metric("mae", mean_absolute_error(test["quality"], predicted))
        mlflow.sklearn.log_model(model, name="model")
    # The example registers the model whenever the store is not a file store.
    registry = None
    if urlparse(mlflow.get_tracking_uri()).scheme != "file":
        try:
            mlflow.register_model(f"runs:/{run.info.run_id}/model", "ElasticnetWineModel")
        except MlflowException as exc:
            registry = exc.message
    first = test.drop(columns="quality").iloc[:3]
    print("RESULT " + json.dumps({
        "run_id": run.info.run_id, "registry": registry,
        "rows": first.to_dict(orient="list"), "predicted": model.predict(first).tolist(),
    }))
"""

FLOWS["logistic"] = """
    import json
    import numpy as np
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    X = np.array([-3, -2, -1, 0, 1, 2, 3, 1]).reshape(-1, 1)
    y = np.array([0, 0, 0, 1, 1, 1, 1, 0])
    classifier = LogisticRegression().fit(X, y)
    mlflow.log_metric("score", classifier.score(X, y))  # starts a run, as in the example
    signature = infer_signature(X, classifier.predict(X))
    mlflow.sklearn.log_model(classifier, name="model", signature=signature, input_example=X)
    print("RESULT " + json.dumps({
        "run_id": mlflow.active_run().info.run_id, "score": classifier.score(X, y),
        "predicted": classifier.predict(X).tolist(),
    }))
"""

FLOWS["remote_store"] = """
    import json, os, random, shutil, tempfile
    from mlflow import (MlflowClient, active_run, get_artifact_uri, log_artifact, log_artifacts,
                        log_metric, log_param)

    log_param("param1", 5)
    for value in (5, 6, 7):
        log_metric("foo", value)
    log_metric("random_int", random.randint(0, 100))
    run_id = active_run().info.run_id
    fetched = MlflowClient().get_run(run_id)
    folder = tempfile.mkdtemp()
    try:
        path = os.path.join(folder, "some_output_file.txt")
        with open(path, "w") as handle:
            handle.write(f"written during run {run_id} within artifact URI {get_artifact_uri()}\\n")
        log_artifacts(folder, "some_subdir")
        log_artifact(path, "another_dir")
    finally:
        shutil.rmtree(folder)
    print("RESULT " + json.dumps({"run_id": run_id, "params_seen": fetched.data.params}))
"""

FLOWS["autolog"] = """
    import json
    import numpy as np
    import mlflow
    from mlflow import MlflowClient
    from sklearn import datasets, svm
    from sklearn.linear_model import LinearRegression
    from sklearn.model_selection import GridSearchCV

    mlflow.sklearn.autolog()
    # linear_regression.py: autolog starts (and ends) a run of its own around fit().
    X = np.array([[1, 1], [1, 2], [2, 2], [2, 3]])
    LinearRegression().fit(X, np.dot(X, np.array([1, 2])) + 3)
    linear = mlflow.last_active_run().info.run_id

    # grid_search_cv.py: the search in a run of ours, one child run per candidate.
    iris = datasets.load_iris()
    search = GridSearchCV(svm.SVC(), {"kernel": ("linear", "rbf"), "C": [1, 10]})
    with mlflow.start_run() as run:
        search.fit(iris.data, iris.target)
    children = mlflow.search_runs(filter_string=f"tags.mlflow.parentRunId = '{run.info.run_id}'")

    def artifacts(run_id, path=None):
        for item in MlflowClient().list_artifacts(run_id, path):
            yield from artifacts(run_id, item.path) if item.is_dir else [item.path]

    print("RESULT " + json.dumps({
        "linear": linear, "parent": run.info.run_id,
        "children": sorted(children["run_id"]), "artifacts": sorted(artifacts(linear)),
        "best": {k: str(v) for k, v in search.best_params_.items()},
    }))
"""

FLOWS["boosting"] = """
    import json
    import mlflow
    import mlflow.sklearn
    from sklearn import datasets
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import accuracy_score, log_loss
    from sklearn.model_selection import train_test_split

    iris = datasets.load_iris()
    X_train, X_test, y_train, y_test = train_test_split(iris.data, iris.target, test_size=0.2, random_state=42)
    mlflow.sklearn.autolog()
    with mlflow.start_run() as run:
        booster = HistGradientBoostingClassifier(learning_rate=0.1, max_iter=10, early_stopping=False, random_state=42)
        booster.fit(X_train, y_train)
        # What LightGBM's autolog logs per boosting round: the training set's multi_logloss.
        for step, proba in enumerate(booster.staged_predict_proba(X_train)):
            mlflow.log_metric("train-multi_logloss", log_loss(y_train, proba), step=step)
        proba = booster.predict_proba(X_test)
        mlflow.log_metrics({"log_loss": log_loss(y_test, proba), "accuracy": accuracy_score(y_test, proba.argmax(axis=1))})
    print("RESULT " + json.dumps({"run_id": run.info.run_id, "test_rows": X_test[:4].tolist(),
                                  "predicted": booster.predict(X_test[:4]).tolist()}))
"""

FLOWS["mlflow3"] = """
    import json
    import pandas as pd
    import mlflow
    import mlflow.sklearn
    from mlflow.exceptions import MlflowException
    from sklearn.datasets import load_iris
    from sklearn.linear_model import ElasticNet
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
    from sklearn.model_selection import train_test_split

    def scores(actual, predicted):
        return {"rmse": mean_squared_error(actual, predicted), "r2": r2_score(actual, predicted),
                "mae": mean_absolute_error(actual, predicted)}

    iris = load_iris()
    frame = pd.DataFrame(iris.data, columns=iris.feature_names)
    frame["quality"] = (iris.target == 2).astype(int)
    train_df, test_df = train_test_split(frame, test_size=0.2, random_state=42)
    mlflow.set_experiment("mlflow3-demo")
    with mlflow.start_run() as training:
        train = mlflow.data.from_pandas(train_df, name="train")
        x, y = train.df.drop(columns="quality"), train.df[["quality"]]
        net = ElasticNet(alpha=0.5, l1_ratio=0.5, random_state=42).fit(x, y)
        logged = mlflow.sklearn.log_model(sk_model=net, name="elasticnet",
                                          params={"alpha": 0.5, "l1_ratio": 0.5}, input_example=x)
        mlflow.log_metrics(scores(y, net.predict(x)), model_id=logged.model_id, dataset=train)
    with mlflow.start_run() as evaluation:
        test = mlflow.data.from_pandas(test_df, name="test")
        x, y = test.df.drop(columns="quality"), test.df[["quality"]]
        loaded = mlflow.sklearn.load_model(f"models:/{logged.model_id}")
        mlflow.log_metrics(scores(y, loaded.predict(x)), dataset=test, model_id=logged.model_id)
    seen = mlflow.get_logged_model(logged.model_id)
    try:
        mlflow.register_model(logged.model_uri, name="my_ml_model")
        registry = None
    except MlflowException as exc:
        registry = exc.message
    print("RESULT " + json.dumps({
        "training": training.info.run_id, "evaluation": evaluation.info.run_id,
        "model_id": logged.model_id, "linked": sorted(f"{m.dataset_name}:{m.key}" for m in seen.metrics or []),
        "registry": registry, "rows": x.iloc[:3].to_dict(orient="list"),
        "predicted": loaded.predict(x.iloc[:3]).tolist(),
    }))
"""

FLOWS["parent_child"] = """
    import json, random
    from functools import partial
    from itertools import starmap
    import mlflow

    def log_run(run_name, test_no, param1_choices, param2_choices, tag_ident):
        with mlflow.start_run(run_name=run_name, nested=True):
            mlflow.log_param("param1", random.choice(param1_choices))
            mlflow.log_param("param2", random.choice(param2_choices))
            mlflow.log_metric("metric1", random.uniform(0, 1))
            mlflow.log_metric("metric2", abs(random.gauss(5, 2.5)))
            mlflow.set_tag("test_identifier", tag_ident)

    def execute_tuning(test_no, param1_choices=("a", "b", "c"), param2_choices=("d", "e", "f"), test_identifier=""):
        ident = test_identifier or "default"
        with mlflow.start_run(run_name=f"parent_run_test_{ident}_{test_no}") as parent:
            mlflow.set_tag("test_identifier", ident)
            child = partial(log_run, test_no=test_no, param1_choices=param1_choices,
                            param2_choices=param2_choices, tag_ident=ident)
            list(starmap(child, ((f"run_{i}_test_{test_no}",) for i in range(5))))
        return parent.info.run_id

    mlflow.set_experiment("Nested Child Association")
    parents = [execute_tuning(1), execute_tuning(2, test_identifier="second"),
               execute_tuning(3, ["x", "y", "z"], ["u", "v", "w"], test_identifier="third")]
    third = mlflow.search_runs(filter_string="tags.test_identifier = 'third'", order_by=["start_time DESC"])
    print("RESULT " + json.dumps({"parents": parents, "third": sorted(third["run_id"]),
                                  "third_parents": sorted(set(third["tags.mlflow.parentRunId"].dropna()))}))
"""

FLOWS["fluent"] = """
    import json
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import pandas as pd
    import mlflow
    from mlflow import MlflowClient

    experiment_id = mlflow.create_experiment("Social NLP Experiments", tags={"version": "v1", "priority": "P1"})
    mlflow.set_experiment("Social NLP Experiments")
    mlflow.set_experiment_tags({"nlp.framework": "Spark NLP"})
    with mlflow.start_run(run_name="PARENT_RUN", tags={"version": "v1"}, description="parent") as parent:
        mlflow.log_param("parent", "yes")
        with mlflow.start_run(run_name="CHILD_RUN", nested=True) as child:
            mlflow.log_param("child", "yes")
    with mlflow.start_run(run_name="docstrings") as run:
        mlflow.log_metric("mse", 2500.00)
        mlflow.log_metrics({"mse": 2000.00, "rmse": 50.00})
        mlflow.log_params({"learning_rate": 0.01, "n_estimators": 10})
        mlflow.set_tags({"release.candidate": "RC1", "release.version": "2.2.0"})
        mlflow.set_tag("scratch", "x")
        mlflow.delete_tag("scratch")
        mlflow.log_dict({"k": "v"}, "data.json")
        mlflow.log_text("text1", "file1.txt")
        fig, ax = plt.subplots()
        ax.plot([0, 1], [2, 3])
        mlflow.log_figure(fig, "figure.png")
        mlflow.log_image(np.zeros((8, 8, 3), dtype=np.uint8), "image.png")
        mlflow.log_table(data={"inputs": ["What is MLflow?"], "outputs": ["A platform"]}, artifact_file="qa.json")
        mlflow.log_input(mlflow.data.from_pandas(pd.DataFrame({"a": [1, 2]}), name="tiny"), context="training")
        for epoch in range(3):
            mlflow.log_metric("acc", 0.5 + epoch / 10, step=epoch)
    with mlflow.start_run(run_id=run.info.run_id):  # resume
        mlflow.log_param("resumed", "yes")
    found = mlflow.search_experiments(filter_string="tags.`nlp.framework` = 'Spark NLP'")
    children = mlflow.search_runs(filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    table = mlflow.load_table("qa.json", run_ids=[run.info.run_id])
    print("RESULT " + json.dumps({
        "experiment_id": experiment_id, "parent": parent.info.run_id, "child": child.info.run_id,
        "run_id": run.info.run_id, "experiments_found": [e.name for e in found],
        "children": list(children["run_id"]), "table_rows": len(table),
        "last_active": mlflow.last_active_run().info.run_id,
        "history": [m.value for m in MlflowClient().get_metric_history(run.info.run_id, "acc")],
    }))
"""


pytestmark = pytest.mark.slow  # 16 script processes (two targets), about a minute in all


def _launch(name: str, uri: str, folder: Path) -> subprocess.Popen:
    """Start ``python <name>.py`` with only MLFLOW_TRACKING_URI set (no other MLflow variable)."""
    script = folder / f"{name}.py"
    script.write_text(textwrap.dedent(FLOWS[name]))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_TRACKING_URI"] = uri
    return subprocess.Popen(
        [sys.executable, str(script)], cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _result(name: str, proc: subprocess.Popen) -> dict:
    """A finished flow's RESULT line, or the reason it has none (asserted by its test)."""
    try:
        stdout, stderr = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        return {"failed": f"{name} exited {proc.returncode}:\n{stderr[-3000:]}\n{stdout[-1000:]}"}
    return json.loads(lines[-1][len("RESULT ") :])


@pytest.fixture(scope="module", params=["plugin", "server"])
def logged(request, tmp_path_factory):
    """``(lake, tracking URI, through server?, {flow: its RESULT})``: every flow run once per
    target, several processes at a time (each is mostly interpreter and library start-up)."""
    folder = tmp_path_factory.mktemp(f"flows-{request.param}")
    lake = str(folder / "lake")
    with contextlib.ExitStack() as stack:
        if request.param == "plugin":
            uri = f"runlake://{lake}"
        else:
            uri = stack.enter_context(running_server(lake)).url
        results: dict[str, dict] = {}
        names = list(FLOWS)
        running: list[tuple[str, subprocess.Popen]] = []
        while names or running:
            while names and len(running) < 4:
                name = names.pop(0)
                place = folder / name
                place.mkdir()
                running.append((name, _launch(name, uri, place)))
            name, proc = running.pop(0)
            results[name] = _result(name, proc)
        yield lake, uri, request.param == "server", results


@pytest.fixture
def target(logged, monkeypatch):
    """The test process's MLflow pointed at the flows' target, to read back what they logged."""
    lake, uri, remote, _ = logged
    for name in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    yield lake, uri, remote
    reset_mlflow()
    mlflow.set_tracking_uri(None)


def flow(logged, name: str) -> dict:
    out = logged[3][name]
    assert "failed" not in out, out.get("failed")
    return out


def in_lake(lake: str, check, through_server: bool):
    """``check(Lake)``, retried while the server's writer has not flushed yet (at most 30 s)."""
    deadline = time.monotonic() + (30 if through_server else 0)
    while True:
        try:
            return check(Lake(lake))
        except (AssertionError, LookupError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def assert_source(record, script: str) -> None:
    """What MLflow shows for every run: its name tag and where it came from."""
    assert record.tags["mlflow.runName"] == record.info["run_name"] and record.info["run_name"]
    assert record.tags["mlflow.source.name"].endswith(script)
    assert record.tags["mlflow.source.type"] == "LOCAL"
    assert record.tags["mlflow.user"]


def assert_model_predicts(uri: str, rows, expected) -> None:
    import numpy as np
    import pandas as pd

    loaded = mlflow.pyfunc.load_model(uri)
    data = pd.DataFrame(rows) if isinstance(rows, dict) else np.asarray(rows)
    assert [round(float(v), 9) for v in loaded.predict(data)] == [round(float(v), 9) for v in expected]


def test_wine_elasticnet(target, logged):
    lake, uri, remote = target
    out = flow(logged, "wine")
    run_id = out["run_id"]

    def check(lk):
        record = lk.get_run(run_id)
        assert record.info["status"] == "FINISHED"
        return record

    record = in_lake(lake, check, remote)
    assert record.params == {"alpha": "0.5", "l1_ratio": "0.25"}
    assert set(record.metrics) == {"rmse", "r2", "mae"}
    assert len(Lake(lake).metric_history(run_id, "rmse")) == 1
    assert_source(record, "wine.py")
    assert_model_predicts(f"runs:/{run_id}/model", out["rows"], out["predicted"])
    # The model registry is not the lake's: MLflow's own "unavailable" error, the run unharmed.
    assert "Model registry" in out["registry"] or "Model Registry" in out["registry"]
    assert "not supported" in out["registry"] or "unavailable" in out["registry"]


def test_logistic_regression_without_start_run(target, logged):
    lake, uri, remote = target
    out = flow(logged, "logistic")
    run_id = out["run_id"]

    def check(lk):
        record = lk.get_run(run_id)
        assert record.info["status"] == "FINISHED"  # the implicit run ends when the script exits
        return record

    record = in_lake(lake, check, remote)
    assert record.metrics == {"score": pytest.approx(out["score"])}
    assert_source(record, "logistic.py")
    import numpy as np

    X = np.array([-3, -2, -1, 0, 1, 2, 3, 1]).reshape(-1, 1)
    assert_model_predicts(f"runs:/{run_id}/model", X, out["predicted"])
    info = mlflow.models.get_model_info(f"runs:/{run_id}/model")
    assert info.signature is not None and info.saved_input_example_info is not None


def test_remote_store_metrics_and_artifacts(target, logged):
    lake, uri, remote = target
    out = flow(logged, "remote_store")
    run_id = out["run_id"]
    assert out["params_seen"] == {"param1": "5"}  # the script's MlflowClient read its own write

    def check(lk):
        assert lk.get_run(run_id).info["status"] == "FINISHED"
        return lk

    lk = in_lake(lake, check, remote)
    assert lk.metric_history(run_id, "foo")["value"].tolist() == [5.0, 6.0, 7.0]
    assert 0 <= lk.get_run(run_id).metrics["random_int"] <= 100
    assert_source(lk.get_run(run_id), "remote_store.py")
    run_dir = lk.paths.run_artifact_dir(lk.get_run(run_id).info["experiment_id"], run_id)
    for path in ("some_subdir/some_output_file.txt", "another_dir/some_output_file.txt"):
        with open(f"{run_dir}/{path}", encoding="utf-8") as handle:
            assert handle.read().startswith(f"written during run {run_id}")
    listed = {a.path for a in mlflow.MlflowClient().list_artifacts(run_id)}
    assert listed == {"some_subdir", "another_dir"}


def test_sklearn_autolog(target, logged):
    lake, uri, remote = target
    out = flow(logged, "autolog")
    linear, parent = out["linear"], out["parent"]

    def check(lk):
        statuses = {r: lk.get_run(r).info["status"] for r in [linear, parent, *out["children"]]}
        if set(statuses.values()) != {"FINISHED"}:  # say what MLflow itself answers for them
            seen = {r: mlflow.get_run(r).info.status for r in statuses}
            raise AssertionError(f"lake: {statuses}; MLflow: {seen}; linear {linear}, parent {parent}")
        return lk

    lk = in_lake(lake, check, remote)
    record = lk.get_run(linear)
    assert {"copy_X", "fit_intercept", "positive"} <= set(record.params)
    assert record.metrics["training_r2_score"] == pytest.approx(1.0)
    assert record.tags["estimator_class"] == "sklearn.linear_model._base.LinearRegression"
    assert record.tags["mlflow.autologging"] == "sklearn"
    assert_source(record, "autolog.py")
    # MLflow 3 keeps the model as a logged model (its own artifact folder), not in the run's
    # artifacts; ``runs:/<run>/model`` still finds it through the run's model outputs.
    assert "estimator.html" in out["artifacts"]
    assert len(mlflow.get_run(linear).outputs.model_outputs) == 1
    X = [[1, 1], [2, 3]]
    assert_model_predicts(f"runs:/{linear}/model", X, [6.0, 11.0])
    # Autolog's training dataset is a run input, as MLflow shows it.
    inputs = mlflow.get_run(linear).inputs.dataset_inputs
    assert inputs and {t.value for d in inputs for t in d.tags} >= {"train"}

    # Grid search: the parent carries the best candidate, one child per candidate under it.
    parent_record = lk.get_run(parent)
    assert {parent_record.params["best_C"], parent_record.params["best_kernel"]} == set(out["best"].values())
    assert "best_cv_score" in parent_record.metrics
    assert len(out["children"]) == 4 and sorted(lk.children_of([parent])) == out["children"]
    for child in out["children"]:
        child_record = lk.get_run(child)
        assert child_record.tags["mlflow.parentRunId"] == parent
        assert {"C", "kernel"} <= set(child_record.params) and "mean_test_score" in child_record.metrics


def test_boosting_in_place_of_lightgbm_native(target, logged):
    lake, uri, remote = target
    out = flow(logged, "boosting")
    run_id = out["run_id"]

    def check(lk):
        assert lk.get_run(run_id).info["status"] == "FINISHED"
        return lk

    lk = in_lake(lake, check, remote)
    record = lk.get_run(run_id)
    assert record.params["learning_rate"] == "0.1" and record.params["max_iter"] == "10"
    history = lk.metric_history(run_id, "train-multi_logloss")
    assert history["step"].tolist() == list(range(10))
    assert history["value"].iloc[-1] < history["value"].iloc[0]
    assert {"log_loss", "accuracy", "training_log_loss"} <= set(record.metrics)
    assert_source(record, "boosting.py")
    assert_model_predicts(f"runs:/{run_id}/model", out["test_rows"], out["predicted"])


def test_mlflow3_logged_model_demo(target, logged):
    lake, uri, remote = target
    out = flow(logged, "mlflow3")
    training, evaluation, model_id = out["training"], out["evaluation"], out["model_id"]
    # Metrics logged with model_id belong to the logged model too, per dataset.
    assert out["linked"] == sorted(f"{d}:{k}" for d in ("train", "test") for k in ("rmse", "r2", "mae"))

    def check(lk):
        assert {lk.get_run(r).info["status"] for r in (training, evaluation)} == {"FINISHED"}
        return lk

    lk = in_lake(lake, check, remote)
    for run_id in (training, evaluation):
        assert set(lk.get_run(run_id).metrics) == {"rmse", "r2", "mae"}
        assert_source(lk.get_run(run_id), "mlflow3.py")
    experiment_id = lk.get_run(training).info["experiment_id"]
    assert lk.get_experiment(experiment_id)["name"] == "mlflow3-demo"

    model = mlflow.get_logged_model(model_id)
    assert (model.name, model.source_run_id, model.params) == (
        "elasticnet",
        training,
        {"alpha": "0.5", "l1_ratio": "0.5"},
    )
    found = mlflow.search_logged_models(
        experiment_ids=[experiment_id], filter_string="metrics.rmse >= 0", output_format="list"
    )
    assert [m.model_id for m in found] == [model_id]
    assert [o.model_id for o in mlflow.get_run(training).outputs.model_outputs] == [model_id]
    assert {d.dataset.name for d in mlflow.get_run(evaluation).inputs.dataset_inputs} == {"test"}
    assert_model_predicts(f"models:/{model_id}", out["rows"], out["predicted"])
    assert "Model registry" in out["registry"] or "Model Registry" in out["registry"]


def test_parent_child_runs_notebook(target, logged):
    lake, uri, remote = target
    out = flow(logged, "parent_child")
    parents = out["parents"]

    def check(lk):
        assert len(lk.children_of(parents)) == 15
        return lk

    lk = in_lake(lake, check, remote)
    for number, parent in enumerate(parents, start=1):
        children = lk.children_of([parent])
        names = sorted(lk.get_run(c).tags["mlflow.runName"] for c in children)
        assert names == [f"run_{i}_test_{number}" for i in range(5)]
        assert {lk.get_run(c).tags["mlflow.parentRunId"] for c in children} == {parent}
        assert_source(lk.get_run(parent), "parent_child.py")
    experiment = lk.get_experiment_by_name("Nested Child Association")
    assert experiment is not None
    third = lk.search_runs(experiment_ids=[experiment["experiment_id"]], filter_string="tags.test_identifier = 'third'")
    assert sorted(third["run_id"]) == out["third"] and len(out["third"]) == 6
    assert out["third_parents"] == [parents[2]]
    assert lk.get_run(parents[2]).params == {}
    for child in lk.children_of([parents[2]]):
        record = lk.get_run(child)
        assert record.params["param1"] in "xyz" and record.params["param2"] in "uvw"
        assert set(record.metrics) == {"metric1", "metric2"}


def test_fluent_api_docstrings(target, logged):
    lake, uri, remote = target
    out = flow(logged, "fluent")
    run_id = out["run_id"]
    assert out["experiments_found"] == ["Social NLP Experiments"]
    assert out["children"] == [out["child"]] and out["last_active"] == run_id
    assert out["history"] == [0.5, 0.6, 0.7] and out["table_rows"] == 1

    def check(lk):
        record = lk.get_run(run_id)
        assert record.params.get("resumed") == "yes" and record.info["status"] == "FINISHED"
        return lk

    lk = in_lake(lake, check, remote)
    record = lk.get_run(run_id)
    assert record.info["experiment_id"] == out["experiment_id"] and record.info["run_name"] == "docstrings"
    assert record.params == {"learning_rate": "0.01", "n_estimators": "10", "resumed": "yes"}
    points = lk.metric_history(run_id, "mse")
    assert sorted(points["value"].tolist()) == [2000.0, 2500.0]
    # Both points are at step 0. The latest is the greatest (step, timestamp, value), as in
    # MLflow's SQL store: 2,000 when the second call came a millisecond later, 2,500 when both
    # calls fell in one millisecond.
    latest = max(zip(points["step"], points["timestamp"], points["value"]))[2]
    assert record.metrics == {"mse": latest, "rmse": 50.0, "acc": 0.7}
    assert record.tags["release.candidate"] == "RC1" and "scratch" not in record.tags
    assert_source(record, "fluent.py")
    parent = lk.get_run(out["parent"])
    assert parent.tags["mlflow.note.content"] == "parent" and parent.tags["version"] == "v1"
    assert lk.get_run(out["child"]).tags["mlflow.parentRunId"] == out["parent"]
    experiment = mlflow.get_experiment(out["experiment_id"])
    assert experiment.tags["nlp.framework"] == "Spark NLP" and experiment.tags["priority"] == "P1"
    run_dir = lk.paths.run_artifact_dir(out["experiment_id"], run_id)
    for path in ("data.json", "file1.txt", "figure.png", "image.png", "qa.json"):
        assert os.path.getsize(f"{run_dir}/{path}") > 0
    inputs = mlflow.get_run(run_id).inputs.dataset_inputs
    assert [(d.dataset.name, [t.value for t in d.tags]) for d in inputs] == [("tiny", ["training"])]
