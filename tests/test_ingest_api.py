"""The fluent API and the Run object: log through runlake.ingest, read back through runlake.lake."""

from __future__ import annotations

import json
import math
import os
import threading

import pytest

from runlake.core.errors import InvalidArgument
from runlake.lake import Lake


def test_round_trip_params_metrics_tags(rl, lake_dir):
    exp_id = rl.set_experiment("round trip")
    with rl.start_run(run_name="r1", tags={"team": "vision"}, description="# notes") as run:
        assert run.experiment_id == exp_id and rl.active_run() is run
        rl.log_param("lr", 0.01)
        rl.log_params({"batch_size": 64, "optimizer": "adam"})
        for step in range(5):
            rl.log_metric("loss", 1.0 / (step + 1), step=step)
        rl.log_metrics({"acc": 0.9, "f1 score": 0.8}, step=4)
        rl.set_tag("stage", "tuning")
        rl.set_tags({"a b": "with space", "doomed": "x"})
        rl.delete_tag("doomed")
    assert rl.active_run() is None
    lake = Lake(lake_dir)
    rec = lake.get_run(run.run_id)
    assert rec.info["run_name"] == "r1"
    assert rec.info["status"] == "FINISHED"
    assert rec.info["experiment_id"] == exp_id
    assert rec.info["end_time"] >= rec.info["start_time"]
    assert rec.params == {"lr": "0.01", "batch_size": "64", "optimizer": "adam"}
    assert rec.metrics["loss"] == pytest.approx(0.2)
    assert rec.metric_stats["loss"]["min"] == pytest.approx(0.2)
    assert rec.metric_stats["loss"]["max"] == pytest.approx(1.0)
    assert rec.metrics["f1 score"] == pytest.approx(0.8)
    assert rec.tags["team"] == "vision" and rec.tags["a b"] == "with space" and rec.tags["stage"] == "tuning"
    assert "doomed" not in rec.tags
    assert rec.tags["mlflow.note.content"] == "# notes"
    history = lake.metric_history(run.run_id, "loss")
    assert list(history.columns) == ["step", "timestamp", "value"]
    assert history["step"].tolist() == [0, 1, 2, 3, 4]
    assert history["value"].tolist() == pytest.approx([1, 0.5, 1 / 3, 0.25, 0.2])


def test_runs_frame_is_shaped_like_mlflow_search_runs(rl, lake_dir):
    with rl.start_run(run_name="a") as a:
        rl.log_param("p", "1")
        rl.log_metric("m", 3.0)
    with rl.start_run(run_name="b") as b:
        rl.set_tag("t", "x")
    frame = Lake(lake_dir).runs_frame()
    assert list(frame.columns[:6]) == ["run_id", "experiment_id", "status", "artifact_uri", "start_time", "end_time"]
    assert {"metrics.m", "params.p", "tags.t", "run_name", "user_id", "lifecycle_stage"} <= set(frame.columns)
    assert frame["run_id"].tolist() == [b.run_id, a.run_id]  # newest first
    row = frame.set_index("run_id").loc[a.run_id]
    assert row["metrics.m"] == 3.0 and row["params.p"] == "1"
    assert str(frame["start_time"].dtype).startswith("datetime64")


def test_nan_and_inf_are_kept(rl, lake_dir):
    with rl.start_run() as run:
        rl.log_metric("x", float("nan"), step=0)
        rl.log_metric("x", float("inf"), step=1)
        rl.log_metric("y", float("-inf"))
        rl.log_metric("z", float("nan"))
    rec = Lake(lake_dir).get_run(run.run_id)
    assert rec.metrics["x"] == math.inf
    assert math.isnan(rec.metric_stats["x"]["min"]) is False and rec.metric_stats["x"]["min"] == math.inf
    assert rec.metrics["y"] == -math.inf
    assert math.isnan(rec.metrics["z"]) and math.isnan(rec.metric_stats["z"]["max"])


def test_latest_metric_is_highest_step_even_if_logged_earlier(rl, lake_dir):
    with rl.start_run() as run:
        rl.log_metric("loss", 0.1, step=10, timestamp=1000)
        rl.flush()
        rl.log_metric("loss", 0.9, step=2, timestamp=5000)
    assert Lake(lake_dir).get_run(run.run_id).metrics["loss"] == 0.1


def test_exception_in_with_block_ends_failed(rl, lake_dir):
    with pytest.raises(RuntimeError):
        with rl.start_run() as run:
            raise RuntimeError("boom")
    assert Lake(lake_dir).get_run(run.run_id).info["status"] == "FAILED"


def test_keyboard_interrupt_ends_killed(rl, lake_dir):
    with pytest.raises(KeyboardInterrupt):
        with rl.start_run() as run:
            raise KeyboardInterrupt
    assert Lake(lake_dir).get_run(run.run_id).info["status"] == "KILLED"


def test_nested_runs_record_their_parent(rl, lake_dir):
    with rl.start_run(run_name="parent") as parent:
        with rl.start_run(run_name="child", nested=True) as child:
            assert rl.active_run() is child
        assert rl.active_run() is parent
    rec = Lake(lake_dir).get_run(child.run_id)
    assert rec.info["parent_run_id"] == parent.run_id
    assert rec.tags["mlflow.parentRunId"] == parent.run_id


def test_second_top_level_run_without_nested_is_an_error(rl):
    with rl.start_run():
        with pytest.raises(ValueError, match="already active"):
            rl.start_run()


def test_explicit_parent_and_several_runs_held_at_once(rl, lake_dir):
    with rl.start_run(run_name="p") as parent:
        pass
    client = rl.LakeClient(lake_dir)
    r1 = rl.start_run(run_name="one", parent_run_id=parent.run_id)
    rl.end_run()
    threads = []
    runs = []

    def work(i: int) -> None:
        run = rl.Run(client, client.create_run(r1.experiment_id, run_name=f"t{i}"), r1.experiment_id)
        for step in range(200):
            run.log_metric("loss", float(step), step=step)
        run.end()
        runs.append(run)

    for i in range(4):
        threads.append(threading.Thread(target=work, args=(i,)))
        threads[-1].start()
    for t in threads:
        t.join()
    lake = Lake(lake_dir)
    assert lake.get_run(r1.run_id).info["parent_run_id"] == parent.run_id
    for run in runs:
        assert len(lake.metric_history(run.run_id, "loss")) == 200
        assert lake.get_run(run.run_id).info["status"] == "FINISHED"


def test_generated_run_name_and_default_experiment(rl, lake_dir):
    with rl.start_run() as run:
        pass
    rec = Lake(lake_dir).get_run(run.run_id)
    assert rec.info["experiment_id"] == "0"
    assert len(rec.info["run_name"].split("-")) == 3
    assert Lake(lake_dir).get_experiment_by_name("Default")["experiment_id"] == "0"


def test_experiment_argument_by_name_and_by_id(rl, lake_dir):
    exp_id = rl.LakeClient(lake_dir).create_experiment("named")
    with rl.start_run(experiment="named") as a:
        pass
    with rl.start_run(experiment=exp_id) as b:
        pass
    assert a.experiment_id == b.experiment_id == exp_id


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda rl: rl.log_metric("bad*key", 1.0), "Invalid metric key"),
        (lambda rl: rl.log_metric("", 1.0), "must not be empty"),
        (lambda rl: rl.log_metric("x" * 251, 1.0), "the limit is 250"),
        (lambda rl: rl.log_metric("../escape", 1.0), "plain relative path"),
        (lambda rl: rl.log_metric("ok", "1.0"), "metric values must be numbers"),
        (lambda rl: rl.log_metric("ok", None), "metric values must be numbers"),
        (lambda rl: rl.log_metric("ok", 1.0, step=1.5), "steps must be integers"),
        (lambda rl: rl.log_metric("ok", 1.0, step="3"), "steps must be integers"),
        (lambda rl: rl.log_param("p", "x" * 6001), "the limit is 6000"),
        (lambda rl: rl.set_tag("t\n", "v"), "Invalid tag key"),
        (lambda rl: rl.log_param(5, "v"), "keys must be strings"),
    ],
    ids=[
        "key chars",
        "empty key",
        "long key",
        "path key",
        "string value",
        "None value",
        "float step",
        "str step",
        "long param",
        "tag key newline",
        "non-string key",
    ],
)
def test_validation_errors(rl, call, message):
    with rl.start_run():
        with pytest.raises(ValueError, match=message):
            call(rl)


def test_param_may_be_logged_again_with_the_same_value_only(rl, lake_dir):
    with rl.start_run() as run:
        rl.log_param("lr", 0.1)
        rl.log_param("lr", "0.1")
        with pytest.raises(InvalidArgument, match="Changing param values is not allowed"):
            rl.log_param("lr", 0.2)
    assert Lake(lake_dir).get_run(run.run_id).params == {"lr": "0.1"}


def test_param_values_are_strings_up_to_6000_chars(rl, lake_dir):
    with rl.start_run() as run:
        rl.log_param("long", "y" * 6000)
        rl.log_param("num", 1e-4)
        rl.log_param("flag", True)
    params = Lake(lake_dir).get_run(run.run_id).params
    assert params == {"long": "y" * 6000, "num": "0.0001", "flag": "True"}


def test_numpy_scalars_and_ints_are_metric_values(rl, lake_dir):
    np = pytest.importorskip("numpy")
    with rl.start_run() as run:
        rl.log_metric("a", np.float32(0.5), step=np.int64(3))
        rl.log_metric("b", 7)
        rl.log_metric("c", True)
    metrics = Lake(lake_dir).get_run(run.run_id).metrics
    assert metrics == {"a": 0.5, "b": 7.0, "c": 1.0}


def test_artifacts_text_dict_files_and_dirs(rl, lake_dir, tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "a.txt").write_text("A")
    (tmp_path / "d" / "sub" / "b.txt").write_text("B")
    (tmp_path / "one.csv").write_text("x,y\n1,2\n")
    with rl.start_run() as run:
        rl.log_artifact(str(tmp_path / "one.csv"))
        rl.log_artifact(str(tmp_path / "one.csv"), artifact_path="tables")
        rl.log_artifacts(str(tmp_path / "d"), artifact_path="dir")
        rl.log_text("hello", "notes/hello.txt")
        rl.log_dict({"k": [1, 2]}, "config.json")
        with pytest.raises(ValueError, match="stay inside"):
            rl.log_text("x", "../outside.txt")
        with pytest.raises(FileNotFoundError):
            rl.log_artifact(str(tmp_path / "missing.bin"))
    root = os.path.join(lake_dir, "artifacts", run.experiment_id, run.run_id)
    assert open(os.path.join(root, "one.csv")).read() == "x,y\n1,2\n"
    assert os.path.exists(os.path.join(root, "tables", "one.csv"))
    assert open(os.path.join(root, "dir", "sub", "b.txt")).read() == "B"
    assert open(os.path.join(root, "notes", "hello.txt")).read() == "hello"
    assert json.load(open(os.path.join(root, "config.json"))) == {"k": [1, 2]}
    assert not os.path.exists(os.path.join(os.path.dirname(root), "outside.txt"))
    uri = Lake(lake_dir).get_run(run.run_id).info["artifact_uri"]
    assert uri == "file://" + root.replace(os.sep, "/")


def test_environment_and_source_are_recorded(rl, lake_dir):
    with rl.start_run() as run:
        pass
    rec = Lake(lake_dir).get_run(run.run_id)
    assert rec.info["user_id"]
    assert rec.info["source_type"] in ("LOCAL", "JOB", "NOTEBOOK")
    assert rec.info["source_name"]
    root = os.path.join(lake_dir, "artifacts", run.experiment_id, run.run_id, "runlake")
    env = json.load(open(os.path.join(root, "environment.json")))
    assert env["python"] and env["hostname"] and env["packages"]["pyarrow"]
    assert "pyarrow==" in open(os.path.join(root, "requirements.txt")).read()


def test_log_model_and_load_model_round_trip(rl, lake_dir):
    sklearn = pytest.importorskip("sklearn.linear_model")
    np = pytest.importorskip("numpy")
    x = np.arange(20, dtype=float).reshape(-1, 1)
    model = sklearn.LinearRegression().fit(x, 2 * x.ravel() + 1)
    with rl.start_run() as run:
        uri = rl.log_model(model, name="model")
        rl.log_model({"plain": [1, 2, 3]}, name="plain")
    assert uri == f"runs:/{run.run_id}/model"
    loaded = rl.load_model(uri)
    assert loaded.predict(np.array([[10.0]]))[0] == pytest.approx(21.0)
    assert rl.load_model(f"runs:/{run.run_id}/plain") == {"plain": [1, 2, 3]}
    tags = Lake(lake_dir).get_run(run.run_id).tags
    assert [m["artifact_path"] for m in json.loads(tags["mlflow.log-model.history"])] == ["model", "plain"]


def test_logging_without_a_run_starts_one(rl, lake_dir):
    rl.log_metric("auto", 1.0)
    run = rl.active_run()
    assert run is not None
    rl.end_run()
    assert Lake(lake_dir).get_run(run.run_id).metrics == {"auto": 1.0}


def test_end_run_twice_is_harmless(rl, lake_dir):
    run = rl.start_run()
    rl.end_run()
    rl.end_run()
    run.end("FAILED")
    assert Lake(lake_dir).get_run(run.run_id).info["status"] == "FINISHED"


def test_lake_from_environment_variable(tmp_path, monkeypatch):
    from runlake.ingest import fluent

    monkeypatch.setattr(fluent, "_lake", None)
    monkeypatch.setenv("RUNLAKE_LAKE", str(tmp_path / "envlake"))
    assert fluent.get_lake() == str(tmp_path / "envlake")
    monkeypatch.delenv("RUNLAKE_LAKE")
    assert fluent.get_lake() == "./runlake-data"


def test_client_and_lake_delete_subtrees_alike(lake_dir):
    from runlake.ingest import LakeClient
    from runlake.lake import Lake

    client = LakeClient(lake_dir)
    exp = client.create_experiment("tree")
    parent = client.create_run(exp, run_id="p")
    child = client.create_run(exp, run_id="c", parent_run_id=parent)
    client.create_run(exp, run_id="g", parent_run_id=child)
    client.create_run(exp, run_id="other")
    assert client.delete_run("other") == ["other"]
    assert sorted(client.delete_run("p", include_descendants=True)) == ["c", "g", "p"]
    lake = Lake(lake_dir)
    assert lake.search_run_ids(run_view_type="DELETED_ONLY", order_by=["attributes.run_id"]) == ["c", "g", "other", "p"]
    assert sorted(client.restore_run("c", include_descendants=True)) == ["c", "g"]
    assert sorted(lake.restore_run("p")) == ["p"]
    assert lake.search_run_ids(order_by=["attributes.run_id"]) == ["c", "g", "p"]


def test_both_write_paths_raise_the_same_error_for_a_bad_tag(lake_dir):
    from runlake.core.errors import InvalidArgument
    from runlake.ingest import LakeClient
    from runlake.lake import Lake

    client = LakeClient(lake_dir)
    run_id = client.create_run(client.create_experiment("e"))
    errors = []
    for write in (client.set_tag, Lake(lake_dir).set_tag):
        with pytest.raises(InvalidArgument) as info:
            write(run_id, "bad key!", "x")
        errors.append(info.value.to_dict())
    assert errors[0] == errors[1]
