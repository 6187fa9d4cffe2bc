"""Bulk delete and restore with the Databricks API's semantics, and single-run lifecycle errors."""

from __future__ import annotations

import pytest

from runlake.core.errors import ExperimentNotFound, InvalidArgument, RunNotFound
from runlake.ingest.client import LakeClient
from runlake.lake import Lake

T0 = 1_700_000_000_000


@pytest.fixture
def timeline(lake_dir):
    """Five runs created one second apart, one of them nested under the first."""
    client = LakeClient(lake_dir)
    exp = client.create_experiment("bulk")
    other = client.create_experiment("other")
    ids = [client.create_run(exp, run_name=f"r{i}", start_time=T0 + i * 1000, run_id=f"run{i}") for i in range(4)]
    ids.append(client.create_run(exp, run_name="child", start_time=T0 + 4000, parent_run_id=ids[0], run_id="run4"))
    client.create_run(other, start_time=T0, run_id="elsewhere")
    return Lake(lake_dir), exp, ids


def _active(lake, exp):
    return sorted(lake.search_run_ids(experiment_ids=[exp]))


def test_delete_runs_deletes_active_runs_created_at_or_before_the_time(timeline):
    lake, exp, ids = timeline
    assert lake.delete_runs(exp, T0 + 2000) == 3  # inclusive bound
    assert _active(lake, exp) == ["run3", "run4"]
    deleted = lake.search_run_ids(experiment_ids=[exp], run_view_type="DELETED_ONLY")
    assert sorted(deleted) == ["run0", "run1", "run2"]
    assert lake.get_run("elsewhere").info["lifecycle_stage"] == "active"  # other experiments untouched
    # Databricks semantics: each run on its own creation time, nested children are not followed.
    assert lake.get_run("run4").info["lifecycle_stage"] == "active"
    assert lake.delete_runs(exp, T0 + 2000) == 0  # already deleted runs are not counted again


def test_max_runs_takes_the_oldest_first_with_run_id_as_tie_break(lake_dir):
    client = LakeClient(lake_dir)
    exp = client.create_experiment("ties")
    for run_id in ("b", "a", "c", "d"):
        client.create_run(exp, start_time=T0 if run_id != "d" else T0 - 5, run_id=run_id)
    lake = Lake(lake_dir)
    assert lake.plan_delete_runs(exp, T0, max_runs=3) == ["d", "a", "b"]
    assert lake.delete_runs(exp, T0, max_runs=3) == 3
    assert _active(lake, exp) == ["c"]


def test_restore_runs_restores_runs_deleted_at_or_after_the_time(timeline, monkeypatch):
    lake, exp, ids = timeline
    from runlake.core import layout

    monkeypatch.setattr(layout, "now_ms", lambda: T0 + 10_000)
    lake.delete_run("run0", include_descendants=False)
    monkeypatch.setattr(layout, "now_ms", lambda: T0 + 20_000)
    lake.delete_run("run1")
    lake.delete_run("run2")
    assert lake.plan_restore_runs(exp, T0 + 20_000) == ["run1", "run2"]
    assert lake.restore_runs(exp, T0 + 20_000, max_runs=1) == 1
    assert _active(lake, exp) == ["run1", "run3", "run4"]
    assert lake.restore_runs(exp, T0 + 10_000) == 2
    assert _active(lake, exp) == ids
    assert lake.restore_runs(exp, 0) == 0


@pytest.mark.parametrize("max_runs", [0, -1, 10_001, 2.5, "10", True])
def test_max_runs_must_be_a_positive_integer_up_to_10000(timeline, max_runs):
    lake, exp, _ = timeline
    with pytest.raises(InvalidArgument, match="max_runs must be a positive integer no larger than 10,000") as info:
        lake.delete_runs(exp, T0, max_runs=max_runs)
    assert info.value.to_dict()["argument"] == "max_runs"
    with pytest.raises(InvalidArgument):
        lake.restore_runs(exp, T0, max_runs=max_runs)
    assert len(_active(lake, exp)) == 5  # nothing changed


def test_max_runs_10000_is_allowed(timeline):
    lake, exp, _ = timeline
    assert lake.delete_runs(exp, T0 + 10_000, max_runs=10_000) == 5


@pytest.mark.parametrize("when", ["2024-01-01", 1.5, None])
def test_timestamps_must_be_integer_milliseconds(timeline, when):
    lake, exp, _ = timeline
    with pytest.raises(InvalidArgument, match="epoch milliseconds"):
        lake.delete_runs(exp, when)


def test_unknown_experiment_and_unknown_runs_are_clear_errors(timeline):
    lake, _exp, _ = timeline
    with pytest.raises(ExperimentNotFound) as info:
        lake.delete_runs("404", T0)
    assert info.value.to_dict() == {
        "error": "ExperimentNotFound",
        "message": "Experiment '404' not found",
        "experiment": "404",
    }
    with pytest.raises(ExperimentNotFound):
        lake.restore_runs("404", T0)
    with pytest.raises(RunNotFound, match="Run 'nope' not found"):
        lake.delete_run("nope")
    with pytest.raises(RunNotFound):
        lake.restore_run_ids(["run0", "nope"])
    assert len(_active(lake, _exp)) == 5  # a bad id in a batch changes nothing
