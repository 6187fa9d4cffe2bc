"""Retention: purges old deleted runs everywhere, reports it, dry-runs, and keeps what it must."""

from __future__ import annotations

import os

import pyarrow.fs as pafs
import pytest

from runlake.core import layout
from runlake.core.errors import InvalidArgument, RunNotFound
from runlake.ingest.client import LakeClient
from runlake.lake import Lake
from runlake.lake.maintenance import compact, purge, retention
from tests.lifecycle.conftest import listing, log_runs, take_over_lease

DAY_MS = 86_400_000


def _rows_of(lake_dir: str, run_id: str) -> dict[str, int]:
    lake = Lake(lake_dir)
    return {
        table: int(lake.sql(f"SELECT count(*) AS n FROM raw_{table} WHERE run_id = ?", [run_id])["n"][0])
        for table in (layout.RUNS, layout.PARAMS, layout.TAGS, layout.METRICS, layout.METRIC_SUMMARIES)
    }


@pytest.fixture
def aged(lake_dir):
    """Four runs with artifacts: two deleted (one long ago), one active, one restored."""
    _exp, ids = log_runs(lake_dir, runs=4)
    client = LakeClient(lake_dir)
    for run_id in ids:
        client.log_text(run_id, "weights", "model/weights.txt")
    lake = Lake(lake_dir)
    lake.delete_run(ids[0])
    lake.delete_run(ids[1])
    lake.delete_run(ids[3])
    lake.restore_run(ids[3])
    return lake_dir, ids


def test_purges_runs_deleted_longer_ago_than_the_window_from_every_table(aged):
    lake_dir, ids = aged
    now = layout.now_ms() + 31 * DAY_MS
    assert all(_rows_of(lake_dir, ids[0]).values())
    report = purge(lake_dir, now_ms=now)
    assert report.runs == sorted([ids[0], ids[1]])
    assert report.ok and not report.dry_run
    assert report.rows_removed[layout.METRICS] == 2 * 2 * 20
    assert (
        report.rows_removed[layout.PARAMS] == 4 and report.rows_removed[layout.TAGS] == 8
    )  # mlflow.runName, team, temp and its tombstone
    assert report.bytes_freed > 0
    for run_id in ids[:2]:
        assert _rows_of(lake_dir, run_id) == dict.fromkeys(_rows_of(lake_dir, run_id), 0)
        assert not os.path.exists(
            os.path.join(lake_dir, "artifacts", Lake(lake_dir).get_run(ids[2]).info["experiment_id"], run_id)
        )
    lake = Lake(lake_dir)
    assert sorted(lake.search_run_ids(run_view_type="ALL")) == sorted(ids[2:])
    assert len(lake.metric_history(ids[2], "loss")) == 20 and len(lake.metric_history(ids[3], "acc")) == 20
    assert os.path.exists(lake.get_run(ids[3]).info["artifact_uri"].removeprefix("file://") + "/model/weights.txt")
    text = report.to_text()
    assert "purged 2 runs" in text and "metrics: 80 rows" in text
    assert report.to_dict()["runs_purged"] == 2 and report.to_dict()["ok"] is True
    # Twice: nothing left to purge.
    second = purge(lake_dir, now_ms=now)
    assert second.runs == [] and sum(second.rows_removed.values()) == 0 and second.bytes_freed == 0


def test_a_lake_opened_before_the_purge_no_longer_finds_the_purged_runs_history(aged):
    # metric_history reads the files listed at the call and refreshes only to find a run: a
    # state from before the purge still names the run, and must not answer with an empty history.
    lake_dir, ids = aged
    lake = Lake(lake_dir)
    assert len(lake.metric_history(ids[0], "loss")) == 20
    purge(lake_dir, now_ms=layout.now_ms() + 31 * DAY_MS)
    with pytest.raises(RunNotFound):
        lake.metric_history(ids[0], "loss")
    assert len(lake.metric_history(ids[2], "loss")) == 20


def test_runs_deleted_within_the_window_are_kept(aged):
    lake_dir, _ids = aged
    before = listing(lake_dir)
    report = purge(lake_dir)  # deleted seconds ago, window 30 days
    assert report.runs == [] and listing(lake_dir) == before
    assert purge(lake_dir, older_than_s=0, now_ms=layout.now_ms() + 1).runs != []


def test_dry_run_reports_the_same_and_changes_nothing(aged):
    lake_dir, ids = aged
    now = layout.now_ms() + 31 * DAY_MS
    before = listing(lake_dir)
    dry = purge(lake_dir, now_ms=now, dry_run=True)
    assert listing(lake_dir) == before
    assert dry.dry_run and dry.runs == sorted(ids[:2])
    assert "would purge 2 runs" in dry.to_text()
    real = purge(lake_dir, now_ms=now)
    assert dry.runs == real.runs and dry.rows_removed == real.rows_removed
    assert dry.bytes_freed > 0


def test_a_run_restored_while_retention_runs_is_not_purged(aged):
    lake_dir, ids = aged

    calls = []

    def restore_during(run_ids):
        calls.append(run_ids)
        if len(calls) == 1:  # the new files are written, the old ones not yet removed
            assert ids[0] in run_ids
            Lake(lake_dir).restore_run(ids[0])

    report = purge(lake_dir, now_ms=layout.now_ms() + 31 * DAY_MS, on_rewritten=restore_during)
    assert report.runs == [ids[1]] and report.kept_restored == [ids[0]]
    assert calls[1] == [ids[1]]  # the pass was redone without the restored run
    lake = Lake(lake_dir)
    run = lake.get_run(ids[0])
    assert run.info["lifecycle_stage"] == "active" and run.params == {"lr": "0.1", "seed": "0"}
    assert len(lake.metric_history(ids[0], "loss")) == 20
    assert os.path.exists(run.info["artifact_uri"].removeprefix("file://") + "/model/weights.txt")


def test_an_artifact_failure_is_reported_and_does_not_stop_the_rest(aged, monkeypatch):
    lake_dir, ids = aged
    original = retention.delete_artifact_dir

    def flaky(fs: pafs.FileSystem, path: str) -> None:
        if path.endswith(ids[0]):
            raise PermissionError(f"[Errno 13] Permission denied: '{path}'")
        original(fs, path)

    monkeypatch.setattr(retention, "delete_artifact_dir", flaky)
    now = layout.now_ms() + 31 * DAY_MS
    report = purge(lake_dir, now_ms=now)
    assert not report.ok
    assert report.runs == [ids[1]]
    assert list(report.artifact_failures) == [ids[0]] and "Permission denied" in report.artifact_failures[ids[0]]
    assert "FAILED" in report.to_text()
    # The failed run is kept whole (still deleted) so the next pass retries it.
    assert Lake(lake_dir).get_run(ids[0]).info["lifecycle_stage"] == "deleted"
    assert all(_rows_of(lake_dir, ids[0]).values())
    monkeypatch.setattr(retention, "delete_artifact_dir", original)
    assert purge(lake_dir, now_ms=now).runs == [ids[0]]


def test_purge_after_compaction_and_compaction_after_purge(aged):
    lake_dir, ids = aged
    compact(lake_dir, grace_s=0)
    report = purge(lake_dir, now_ms=layout.now_ms() + 31 * DAY_MS)
    assert report.runs == sorted(ids[:2])
    compact(lake_dir, grace_s=0)
    lake = Lake(lake_dir)
    assert sorted(lake.search_run_ids(run_view_type="ALL")) == sorted(ids[2:])
    assert lake.sql("SELECT count(*) AS n FROM raw_metrics")["n"][0] == 2 * 2 * 20


def test_negative_window_is_rejected(lake_dir):
    with pytest.raises(InvalidArgument, match="must not be negative"):
        purge(lake_dir, older_than_s=-1)


def test_a_purged_runs_mlflow_documents_go_with_it(aged):
    """The MLflow plugin's documents of a run's inputs and outputs (``_mlflow/run_io/<run>``)
    are purged with the run; other runs' documents stay."""
    lake_dir, ids = aged
    paths = layout.LakePaths(layout.resolve_lake(lake_dir)[1])
    for run_id in (ids[0], ids[2]):
        os.makedirs(paths.run_documents_dir(run_id))
        with open(os.path.join(paths.run_documents_dir(run_id), "0-doc.json"), "w") as handle:
            handle.write('{"version": 1, "inputs": []}')
    report = purge(lake_dir, now_ms=layout.now_ms() + 31 * DAY_MS)
    assert ids[0] in report.runs and report.ok
    assert not os.path.exists(paths.run_documents_dir(ids[0]))
    assert os.path.exists(paths.run_documents_dir(ids[2]))  # an active run's documents stay


def test_a_purge_whose_lease_was_taken_over_stops_before_removing_anything(aged):
    from runlake.core.lease import LeaseLost

    lake_dir, ids = aged
    before = _rows_of(lake_dir, ids[1])

    def stood_still(run_ids):
        take_over_lease(lake_dir)  # everything rewritten, nothing removed yet

    with pytest.raises(LeaseLost):
        purge(lake_dir, now_ms=layout.now_ms() + 31 * DAY_MS, on_rewritten=stood_still)
    lake = Lake(lake_dir)
    for run_id in ids[:2]:
        run = lake.get_run(run_id)  # still there, deleted, with its artifacts
        assert run.info["lifecycle_stage"] == "deleted"
        assert os.path.exists(run.info["artifact_uri"].removeprefix("file://") + "/model/weights.txt")
    assert len(lake.metric_history(ids[1], "loss")) == 20
    assert _rows_of(lake_dir, ids[1]) == before  # every row of the run still read
