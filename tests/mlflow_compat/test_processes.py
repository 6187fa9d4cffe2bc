"""Eight processes log through the plugin at once, in process (no server): every point lands once."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from runlake.lake import Lake

PROCESSES = 8
STEPS = 200

WORKER = textwrap.dedent(
    """
    import sys
    import mlflow
    from mlflow.entities import Metric

    worker = int(sys.argv[1])
    mlflow.set_experiment("parallel")
    with mlflow.start_run(run_name=f"worker-{worker}") as run:
        mlflow.log_param("worker", worker)
        for step in range(%(steps)d):
            mlflow.log_metric("loss", worker + step / 1000, step=step)
        client = mlflow.MlflowClient()
        client.log_batch(run.info.run_id, metrics=[Metric("acc", float(s), 1000 + s, s) for s in range(%(steps)d)])
        # Its own writes are visible to it at once, before any flush interval passed.
        assert len(client.get_metric_history(run.info.run_id, "loss")) == %(steps)d
    print(run.info.run_id)
    """
) % {"steps": STEPS}


@pytest.mark.slow
def test_eight_processes_log_every_point_exactly_once(lake_uri, tmp_path):
    root, uri = lake_uri
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "RUNLAKE_FLUSH_INTERVAL": "0.2"}
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(i)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for i in range(PROCESSES)
    ]
    run_ids = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        run_ids.append(out.strip().splitlines()[-1])

    lake = Lake(root)
    experiment = lake.get_experiment_by_name("parallel")
    assert experiment is not None  # eight processes creating one experiment agree on it
    assert sorted(lake.search_run_ids(experiment_names=["parallel"])) == sorted(run_ids)
    points = lake.metric_histories(run_ids)
    assert len(points) == PROCESSES * STEPS * 2
    counts = points.groupby(["run_id", "key"]).size()
    assert set(counts.tolist()) == {STEPS}
    for run_id in run_ids:
        record = lake.get_run(run_id)
        worker = int(record.params["worker"])
        assert record.info["status"] == "FINISHED" and record.info["run_name"] == f"worker-{worker}"
        loss = lake.metric_history(run_id, "loss")
        assert loss["step"].tolist() == list(range(STEPS))
        assert loss["value"].tolist() == [worker + s / 1000 for s in range(STEPS)]


def test_forked_children_log_through_the_parents_store(lake_uri):
    """The store a parent used keeps working in forked children (as runlake's writer does)."""
    import multiprocessing

    import mlflow

    root, _ = lake_uri
    mlflow.set_experiment("forked")
    with mlflow.start_run():
        mlflow.log_metric("parent", 1.0)  # the parent has a store, a buffer and a reader now

    def child(i: int) -> None:
        with mlflow.start_run(run_name=f"child-{i}"):
            for step in range(50):
                mlflow.log_metric("x", float(i), step=step)

    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=child, args=(i,)) for i in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    lake = Lake(root)
    frame = lake.search_runs(experiment_names=["forked"])
    children = frame[frame["run_name"].str.startswith("child-")]
    assert len(children) == 3
    points = lake.metric_histories(children["run_id"].tolist(), keys=["x"])
    assert len(points) == 150
