"""``runlake demo``: a deterministic lake, written entirely through the public client."""

from __future__ import annotations

import ast
import inspect

import pytest

import runlake.demo as demo
from runlake.demo import BASE_TIME_MS, build_demo
from runlake.lake import Lake

RUNS = 40  # 24 rich runs and 16 bulk ones: both paths
SEED = 3


@pytest.fixture(scope="module")
def demo_lake(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, demo.DemoSummary]:
    root = str(tmp_path_factory.mktemp("demo") / "lake")
    return root, build_demo(root, runs=RUNS, seed=SEED)


def _imports(module: object) -> dict[str, set[str]]:
    """Module name -> names imported from it (empty for ``import x``)."""
    found: dict[str, set[str]] = {}
    for node in ast.walk(ast.parse(inspect.getsource(module))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.setdefault(alias.name, set())
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.setdefault(node.module, set()).update(alias.name for alias in node.names)
    return found


def test_demo_writes_only_through_the_client():
    imports = _imports(demo)
    runlake = {name: names for name, names in imports.items() if name.startswith("runlake")}
    assert set(runlake) <= {"runlake.core", "runlake.ingest"}
    assert runlake.get("runlake.core", set()) <= {"layout", "vocab"}  # constants, not the writer
    assert "LakeClient" in runlake["runlake.ingest"]


def test_summary_counts_what_the_lake_holds(demo_lake):
    root, summary = demo_lake
    lake = Lake(root)
    assert summary.runs == lake.sql("SELECT count(*) AS n FROM runs")["n"][0] > RUNS  # plus sweep parents
    assert summary.metric_points == lake.sql("SELECT count(*) AS n FROM metrics")["n"][0]
    assert sorted(summary.experiments) == sorted(lake.sql("SELECT name FROM experiments")["name"])
    assert lake.sql("SELECT count(*) AS n FROM runs WHERE parent_run_id IS NOT NULL")["n"][0] > 0
    assert lake.sql("SELECT count(*) AS n FROM runs WHERE lifecycle_stage = 'deleted'")["n"][0] == 1


def test_every_metric_summary_agrees_with_the_points(demo_lake):
    root, _summary = demo_lake
    lake = Lake(root)
    summaries = lake.sql("SELECT run_id, key, value, step, timestamp, min_value, max_value FROM latest_metrics")
    pairs = lake.sql("SELECT DISTINCT run_id, key FROM metrics")
    assert (
        len(summaries)
        == len(pairs)
        == 5 * len(lake.sql("SELECT run_id FROM params GROUP BY run_id HAVING count(*) = 10"))
    )
    for row in summaries.itertuples():
        history = lake.metric_history(row.run_id, row.key)
        last = history.iloc[-1]  # step order, then timestamp, then value
        assert (row.step, row.timestamp, row.value) == (last["step"], last["timestamp"], last["value"])
        assert (row.min_value, row.max_value) == (history["value"].min(), history["value"].max())
        assert list(history["step"]) == list(range(len(history)))


def test_runs_end_as_their_status_says_at_demo_times(demo_lake):
    root, _summary = demo_lake
    runs = Lake(root).sql("SELECT status, start_time, end_time FROM runs")
    running = runs[runs["status"] == "RUNNING"]
    ended = runs[runs["status"] != "RUNNING"]
    assert len(running) == 1 and running["end_time"].isna().all()  # the live run
    assert set(ended["status"]) <= {"FINISHED", "FAILED", "KILLED"}
    assert (ended["end_time"] > ended["start_time"]).all()
    # Times come from the seed, not the wall clock: the demo's day and the sweep's day before it.
    assert runs["start_time"].min() >= BASE_TIME_MS - 86_400_000
    assert ended["end_time"].max() < BASE_TIME_MS + 86_400_000


def test_same_seed_same_lake_other_seed_other_lake(demo_lake, tmp_path):
    root, summary = demo_lake
    again, other = str(tmp_path / "again"), str(tmp_path / "other")
    assert build_demo(again, runs=RUNS, seed=SEED).runs == summary.runs
    build_demo(other, runs=RUNS, seed=SEED + 1)
    queries = {
        "runs": "SELECT * EXCLUDE (artifact_uri, deleted_time) FROM runs ORDER BY run_id",
        "params": "SELECT run_id, key, value FROM params ORDER BY ALL",
        # The model history tag records when the model was saved.
        "tags": "SELECT run_id, key, value FROM tags WHERE key <> 'mlflow.log-model.history' ORDER BY ALL",
        "metrics": "SELECT run_id, key, step, timestamp, value FROM metrics ORDER BY ALL",
        "latest_metrics": "SELECT run_id, key, step, timestamp, value, min_value, max_value FROM latest_metrics ORDER BY ALL",
    }
    for name, query in queries.items():
        assert Lake(root).sql(query).equals(Lake(again).sql(query)), name
    metrics = queries["metrics"]
    assert not Lake(root).sql(metrics).equals(Lake(other).sql(metrics))


def test_a_finished_demo_is_reused_and_another_refused(demo_lake):
    root, summary = demo_lake
    reused = build_demo(root, runs=RUNS, seed=SEED)
    assert reused.reused and (reused.runs, reused.metric_points) == (summary.runs, summary.metric_points)
    assert "already built" in reused.to_text()
    with pytest.raises(ValueError, match="holds a demo lake of 40 runs"):
        build_demo(root, runs=RUNS + 1, seed=SEED)
