"""``runlake server`` as a real process: MLflow clients log and read over HTTP into the lake."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request

import mlflow
import pytest

from runlake.lake import Lake
from tests.mlflow_compat.server_process import running_server


def _request(url: str, method: str = "GET", body: bytes | None = None, headers: dict | None = None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def _eventually(check, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture
def remote(server, monkeypatch):
    lake, srv = server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", srv.url)
    mlflow.set_tracking_uri(srv.url)
    yield lake, srv.url
    while mlflow.active_run():
        mlflow.end_run()
    import mlflow.tracking.fluent as fluent

    fluent._active_experiment_id = None
    mlflow.set_tracking_uri(None)


def test_startup_line_warns_without_credentials(server):
    _, srv = server
    assert "anyone who can reach this port can read and write" in srv.startup
    assert srv.url.startswith("http://127.0.0.1:")


def test_a_remote_client_logs_and_reads(remote):
    lake_dir, _ = remote
    mlflow.set_experiment("remote")
    with mlflow.start_run(run_name="over-http") as run:
        mlflow.log_params({"lr": 0.1, "layers": 4})
        for step in range(20):
            mlflow.log_metric("loss", 1 / (step + 1), step=step)
        mlflow.set_tag("where", "server")
        mlflow.log_text("proxied", "notes/readme.txt")
    run_id = run.info.run_id
    client = mlflow.MlflowClient()
    assert [m.step for m in client.get_metric_history(run_id, "loss")] == list(range(20))
    fetched = client.get_run(run_id)
    assert fetched.info.run_name == "over-http" and fetched.data.params == {"lr": "0.1", "layers": "4"}
    assert fetched.info.artifact_uri.startswith("mlflow-artifacts:/")
    assert mlflow.artifacts.load_text(f"runs:/{run_id}/notes/readme.txt") == "proxied"
    found = mlflow.search_runs(experiment_names=["remote"], filter_string="tags.mlflow.runName = 'over-http'")
    assert found["run_id"].tolist() == [run_id]

    # The same run in the lake (once the server's writer flushed), its artifact in the lake's tree.
    def in_lake():
        record = Lake(lake_dir).get_run(run_id)
        assert record.info["status"] == "FINISHED" and len(Lake(lake_dir).metric_history(run_id, "loss")) == 20
        return record

    record = _eventually(in_lake)
    run_dir = Lake(lake_dir).paths.run_artifact_dir(record.info["experiment_id"], run_id)
    assert open(f"{run_dir}/notes/readme.txt").read() == "proxied"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "MALFORMED_REQUEST"),
        (b"[1, 2]", 400, "MALFORMED_REQUEST"),
        (b"\xff\xfe", 400, "MALFORMED_REQUEST"),
        (b"", 400, "MALFORMED_REQUEST"),
        (b'{"experiment_id": 12, "start_time": "soon"}', 400, "INVALID_PARAMETER_VALUE"),
        (b'{"experiment_id": "424242"}', 404, "RESOURCE_DOES_NOT_EXIST"),
    ],
)
def test_bad_requests_get_4xx_with_an_error_code(server, body, status, code):
    _, srv = server
    got, payload = _request(f"{srv.url}/api/2.0/mlflow/runs/create", "POST", body, {"Content-Type": "application/json"})
    assert (got, json.loads(payload)["error_code"]) == (status, code)
    assert _request(f"{srv.url}/health") == (200, b"OK")  # and the server stays up


def test_bad_queries_and_limits(server):
    _, srv = server
    got, payload = _request(f"{srv.url}/api/2.0/mlflow/runs/get?run_id=nope")
    assert (got, json.loads(payload)["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")
    search = json.dumps({"experiment_ids": ["0"], "filter": "metrics.x == 1"}).encode()
    got, payload = _request(
        f"{srv.url}/api/2.0/mlflow/runs/search", "POST", search, {"Content-Type": "application/json"}
    )
    assert (got, json.loads(payload)["error_code"]) == (400, "INVALID_PARAMETER_VALUE")
    big = b'{"x": "' + b"a" * (33 * 1024 * 1024) + b'"}'
    got, payload = _request(f"{srv.url}/api/2.0/mlflow/runs/create", "POST", big, {"Content-Type": "application/json"})
    assert (got, json.loads(payload)["error_code"]) == (413, "REQUEST_LIMIT_EXCEEDED")
    got, payload = _request(f"{srv.url}/api/2.0/mlflow/no-such-endpoint")
    assert (got, json.loads(payload)["error_code"]) == (404, "ENDPOINT_NOT_FOUND")
    got, payload = _request(f"{srv.url}/api/2.0/mlflow/runs/create")  # GET where MLflow takes POST
    assert (got, json.loads(payload)["error_code"]) == (405, "BAD_REQUEST")
    got, payload = _request(f"{srv.url}/ajax-api/2.0/mlflow/registered-models/search")
    assert 400 <= got < 500 and json.loads(payload)["error_code"] == "INVALID_PARAMETER_VALUE"
    assert _request(f"{srv.url}/health") == (200, b"OK")


CLIENT = textwrap.dedent(
    """
    import sys
    import mlflow
    from mlflow.entities import Metric

    worker = int(sys.argv[1])
    mlflow.set_experiment("fleet")
    client = mlflow.MlflowClient()
    with mlflow.start_run(run_name=f"client-{worker}") as run:
        for step in range(50):
            mlflow.log_metric("loss", worker + step / 100, step=step)
        client.log_batch(run.info.run_id, metrics=[Metric("acc", float(s), 1000 + s, s) for s in range(200)])
    print(run.info.run_id)
    """
)


@pytest.mark.slow
def test_sixteen_clients_at_once_every_point_exactly_once(server, tmp_path):
    lake_dir, srv = server
    script = tmp_path / "client.py"
    script.write_text(CLIENT)
    env = {**os.environ, "MLFLOW_TRACKING_URI": srv.url}
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(i)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for i in range(16)
    ]
    run_ids = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        run_ids.append(out.strip().splitlines()[-1])
    assert len(set(run_ids)) == 16

    def check():
        lake = Lake(lake_dir)
        assert sorted(lake.search_run_ids(experiment_names=["fleet"])) == sorted(run_ids)
        points = lake.metric_histories(run_ids)
        assert len(points) == 16 * (50 + 200)
        counts = points.groupby(["run_id", "key"]).size().to_dict()
        assert counts == {(r, k): n for r in run_ids for k, n in (("acc", 200), ("loss", 50))}
        assert set(
            lake.runs_frame(experiment_ids=[lake.get_experiment_by_name("fleet")["experiment_id"]])["status"]
        ) == {"FINISHED"}

    _eventually(check)


def test_credentials_file(tmp_path, monkeypatch):
    creds = tmp_path / "credentials"
    creds.write_text("# who may log\ntoken s3cret-token\nana:pa55word\n")
    with running_server(str(tmp_path / "lake"), "--credentials-file", str(creds)) as srv:
        assert "credentials required" in srv.startup and "anyone" not in srv.startup
        got, payload = _request(f"{srv.url}/api/2.0/mlflow/experiments/search?max_results=5")
        assert (got, json.loads(payload)["error_code"]) == (401, "UNAUTHENTICATED")
        assert _request(f"{srv.url}/health") == (200, b"OK")
        mlflow.set_tracking_uri(srv.url)
        try:
            monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "wrong")
            with pytest.raises(mlflow.exceptions.MlflowException):
                mlflow.MlflowClient().search_experiments()
            monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "s3cret-token")
            assert "Default" in [e.name for e in mlflow.MlflowClient().search_experiments()]
            monkeypatch.delenv("MLFLOW_TRACKING_TOKEN")
            monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "ana")
            monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "pa55word")
            experiment_id = mlflow.MlflowClient().create_experiment("authed")
            assert mlflow.MlflowClient().get_experiment(experiment_id).name == "authed"
        finally:
            mlflow.set_tracking_uri(None)


def test_the_server_keeps_a_state_cache_and_publishes_it(tmp_path, monkeypatch):
    # A long-lived reader, as `runlake ui` is: its state is a cache file it holds, published into
    # the lake when due ($RUNLAKE_PUBLISH_MIN_RUNS lowered from 20,000), so a notebook's
    # Lake(path) starts from a copy of it.
    from runlake.ingest import LakeClient
    from runlake.lake import state_cache

    root, cache = str(tmp_path / "lake"), tmp_path / "server-cache"
    client = LakeClient(root)
    experiment = client.create_experiment("published")
    for i in range(3):
        client.set_terminated(client.create_run(experiment, run_name=f"run-{i}"), "FINISHED")
    client.flush()
    env = {state_cache.CACHE_DIR_ENV: str(cache), "RUNLAKE_PUBLISH_MIN_RUNS": "1"}
    with running_server(root, env=env):
        published = _eventually(lambda: _one(list((tmp_path / "lake" / "_state").glob("state-*.duckdb"))), 60)
        assert list(cache.glob("state-*.duckdb"))  # the server's own state cache
        monkeypatch.setenv(state_cache.CACHE_DIR_ENV, str(tmp_path / "notebook-cache"))
        notebook = Lake(root)
        assert notebook.connection.private and len(notebook.search_runs(experiment_ids=[experiment])) == 3
        assert published.exists()
        held = Lake(root, cache=cache)  # the server holds it
        assert not held.connection.cached and held.connection.private


def _one(found):
    assert len(found) == 1, found
    return found[0]
