"""The search index (one wide row per run) kept in step with the lake, change by change.

Whatever happens between two refreshes (runs created, renamed, deleted or purged, params,
metrics and tags logged, tags deleted, new keys, compaction), the index a live ``Lake`` keeps
up incrementally holds exactly what one built from scratch holds, and searches and frames read
from it answer as the folded tables do.
"""

from __future__ import annotations

import gc
import math
from typing import Any

import pandas as pd
import pytest

from runlake.ingest import LakeClient
from runlake.lake import Lake, search_index
from runlake.lake.connection import Connection
from runlake.lake.maintenance import compact, purge


def _index_rows(lake: Lake) -> list[dict[str, Any]]:
    """The index's rows, columns by name, NaN and NULL both None (order-free)."""
    frame = lake.sql(f"SELECT * FROM {search_index.WIDE_TABLE}")
    rows = []
    for record in frame.to_dict("records"):
        rows.append(
            {
                k: (None if v is None or v is pd.NaT or (isinstance(v, float) and math.isnan(v)) else v)
                for k, v in sorted(record.items())
            }
        )
    return sorted(rows, key=lambda row: row["run_id"])


def _nonempty_columns(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows without the columns every row leaves empty (a key whose last run went keeps its
    column in a live index; a fresh build has none for it)."""
    used = {k for row in rows for k, v in row.items() if v is not None}
    return [{k: v for k, v in row.items() if k in used} for row in rows]


def _searches(lake: Lake) -> list[Any]:
    queries = [
        ("metrics.loss < 0.5", ["metrics.loss DESC"]),
        ("params.lr = '0.1' OR params.new_param = 'x'", ["params.lr"]),
        ("tags.team = 'a' OR tags.team IS NULL", ["tags.team DESC", "metrics.acc"]),
        ("MAX(metrics.acc) > 0.2", ["MIN(metrics.loss)"]),
        ("metrics.new_metric >= 0", None),
    ]
    found = []
    for filter_string, order_by in queries:
        for view in ("ACTIVE_ONLY", "DELETED_ONLY", "ALL"):
            found.append(lake.search_run_ids(filter_string=filter_string, order_by=order_by, run_view_type=view))
    page = lake.search_page(order_by=["metrics.loss"], page_size=7)
    cells = [[None if pd.isna(v) else v for v in row] for row in page.frame.values.tolist()]
    found.append([page.total, page.run_ids, list(page.frame.columns), cells])
    return found


def _log(client: LakeClient, experiment: str, i: int) -> str:
    run_id = client.create_run(experiment, run_name=f"run-{i}", tags={"team": "a" if i % 2 else "b"})
    client.log_batch(
        run_id,
        metrics=[("loss", 1.0 / (i + 1), 0, 0), ("acc", i / 10, 0, 0), ("loss", 2.0, 0, 1)],
        params={"lr": str(i / 10)},
    )
    return run_id


@pytest.mark.parametrize(
    ("probe_limit", "python_limit"),
    [(search_index.PROBE_LIMIT, search_index.PYTHON_LIMIT), (0, search_index.PYTHON_LIMIT), (0, 0)],
    ids=["few runs", "some runs", "many runs"],
)
def test_the_live_index_equals_a_fresh_build_after_every_kind_of_change(
    lake_dir: str, monkeypatch: pytest.MonkeyPatch, probe_limit: int, python_limit: int
) -> None:
    # A refresh that touched few runs probes their values by run id, some joins them, and both
    # pivot in Python; many pivot in SQL.
    monkeypatch.setattr(search_index, "PROBE_LIMIT", probe_limit)
    monkeypatch.setattr(search_index, "PYTHON_LIMIT", python_limit)
    client = LakeClient(lake_dir)
    experiment = client.create_experiment("index")
    run_ids = [_log(client, experiment, i) for i in range(6)]
    client.flush()
    lake = Lake(lake_dir)
    assert lake.connection.search_index() is not None
    steps = [
        lambda: client.log_batch(run_ids[0], metrics=[("loss", 0.01, 0, 5), ("new_metric", math.nan, 0, 0)]),
        lambda: client.log_batch(run_ids[1], params={"new_param": "x"}),
        lambda: client.set_tag(run_ids[2], "team", "c"),
        lambda: client.delete_tag(run_ids[3], "team"),
        lambda: client.rename_run(run_ids[4], "renamed"),
        lambda: client.set_terminated(run_ids[5], "FAILED"),
        lambda: _log(client, experiment, 6),
        lambda: lake.delete_run(run_ids[1]),
        lambda: lake.restore_run(run_ids[1]),
        lambda: lake.delete_run(run_ids[2]),
        lambda: compact(lake_dir, grace_s=0),
        lambda: purge(lake_dir, older_than_s=0),
    ]
    for step in steps:
        step()
        client.flush()
        lake.refresh()
        fresh = Lake(lake_dir, cache=False)
        assert _nonempty_columns(_index_rows(lake)) == _nonempty_columns(_index_rows(fresh))
        # The stage's boolean, which searches test instead of the text, says what the text says.
        stages = {(row["lifecycle_stage"], row[search_index.ACTIVE_COLUMN]) for row in _index_rows(lake)}
        assert stages <= {("active", True), ("deleted", False)}
        indexed = _searches(lake)
        assert indexed == _searches(fresh)
        # And the joins over the folded tables agree with both.
        with pytest.MonkeyPatch.context() as patched:
            patched.setattr(Connection, "search_index", lambda self: None)
            assert _searches(fresh) == _searches(lake) == indexed
    assert run_ids[2] not in set(_index_rows(lake)[i]["run_id"] for i in range(len(_index_rows(lake))))


def test_a_merge_that_changes_no_run_rewrites_no_index_rows(lake_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Compaction brings back every row in new files, so every run is folded again; only a run
    # that came out different has its index row rewritten.
    client = LakeClient(lake_dir)
    experiment = client.create_experiment("merged")
    run_ids = [_log(client, experiment, i) for i in range(8)]
    for run_id in run_ids:
        client.set_tag(run_id, "round", "1")
        client.flush()  # a file per change, for compaction to merge
    lake = Lake(lake_dir)
    before = _searches(lake)
    rewritten: list[list[str]] = []
    update = search_index.update

    def spy(con: Any, index: Any, ids: list[str] | None = None) -> Any:
        if ids is None:
            ids = [r for (r,) in con.execute(f"SELECT run_id FROM {search_index.TOUCHED}").fetchall()]
        rewritten.append(sorted(ids))
        return update(con, index, ids)

    monkeypatch.setattr(search_index, "update", spy)
    compact(lake_dir, grace_s=0)
    assert lake.refresh()  # the files changed
    assert rewritten in ([], [[]]) and _searches(lake) == before
    client.set_tag(run_ids[3], "round", "2")
    compact(lake_dir, grace_s=0)  # a change and a merge in one refresh
    lake.refresh()
    assert rewritten[-1] == [run_ids[3]]
    assert _nonempty_columns(_index_rows(lake)) == _nonempty_columns(_index_rows(Lake(lake_dir, cache=False)))


def test_keys_beyond_the_cap_are_searched_and_shown_through_the_folded_tables(lake_dir: str, monkeypatch) -> None:
    monkeypatch.setattr(search_index, "MAX_KEYS", 2)
    client = LakeClient(lake_dir)
    experiment = client.create_experiment("cap")
    first = client.create_run(experiment, run_name="first")
    client.log_batch(first, params={"a": "1", "b": "2"}, metrics=[("m1", 1.0, 0, 0)])
    client.flush()
    lake = Lake(lake_dir)
    index = lake.connection.search_index()
    assert index is not None and "param" in index.complete
    # A third param key arrives while the lake is open: the index has no room for it.
    second = client.create_run(experiment, run_name="second")
    client.log_batch(second, params={"a": "1", "c": "3"}, metrics=[("m2", 2.0, 0, 0), ("m3", 3.0, 0, 0)])
    client.flush()
    lake.refresh()
    index = lake.connection.search_index()
    assert index is not None
    assert "param" not in index.complete and "metric" not in index.complete
    assert index.column("param", "c") is None
    for opened in (lake, Lake(lake_dir, cache=False)):
        assert opened.search_run_ids(filter_string="params.c = '3'") == [second]
        assert opened.search_run_ids(filter_string="metrics.m3 > 2.5") == [second]
        assert opened.search_run_ids(order_by=["params.c DESC"]) == [second, first]
        frame = opened.search_runs(order_by=["attributes.run_name"])
        assert [None if pd.isna(v) else v for v in frame["params.c"]] == [None, "3"]
        assert [None if pd.isna(v) else v for v in frame["metrics.m3"]] == [None, 3.0]


def _cached_lake(lake_dir: str, tmp_path, runs: int) -> tuple[LakeClient, list[str], str]:
    """A lake of ``runs`` logged runs, and a state-cache folder for it."""
    client = LakeClient(lake_dir)
    experiment = client.create_experiment("cached")
    run_ids = [_log(client, experiment, i) for i in range(runs)]
    client.flush()
    return client, run_ids, str(tmp_path / "cache")


def test_a_reopened_state_cache_keeps_its_index(lake_dir: str, tmp_path, monkeypatch) -> None:
    client, run_ids, cache = _cached_lake(lake_dir, tmp_path, 4)
    first = Lake(lake_dir, cache=cache)
    expected = _searches(first)
    del first
    gc.collect()  # releases the cache file, as a process ending would
    builds = []
    real_build = search_index.build
    monkeypatch.setattr(search_index, "build", lambda con, *a: builds.append(1) or real_build(con, *a))
    again = Lake(lake_dir, cache=cache)
    assert again.connection.cached and builds == []
    assert _searches(again) == expected
    client.log_batch(run_ids[0], metrics=[("loss", 0.001, 0, 9)], params={"new_param": "x"})
    client.flush()
    again.refresh()
    assert builds == []
    assert _searches(again) == _searches(Lake(lake_dir, cache=False))


def test_an_in_memory_refresh_that_failed_before_its_index_rows_catches_up_at_the_next(
    lake_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # In memory a flush's folds keep their marks in the process, not in the marks table: they
    # must outlive a refresh that failed after its folds committed.
    client = LakeClient(lake_dir)
    experiment = client.create_experiment("failed")
    run_ids = [_log(client, experiment, i) for i in range(3)]
    lake = Lake(lake_dir, cache=False)
    before = _searches(lake)
    client.log_batch(run_ids[0], metrics=[("loss", -5.0, 0, 9)], params={"late": "yes"})
    client.rename_run(run_ids[1], "renamed")
    client.flush()

    def failing(*_args: Any) -> None:
        raise RuntimeError("stopped after the folds")

    with monkeypatch.context() as patched:
        patched.setattr(search_index, "update", failing)
        with pytest.raises(RuntimeError):
            lake.refresh()
    lake.refresh()
    assert _searches(lake) != before
    assert lake.search_run_ids(filter_string="params.late = 'yes'") == [run_ids[0]]
    assert lake.search_run_ids(order_by=["metrics.loss"])[0] == run_ids[0]
    assert _searches(lake) == _searches(Lake(lake_dir, cache=False))
    assert _nonempty_columns(_index_rows(lake)) == _nonempty_columns(_index_rows(Lake(lake_dir, cache=False)))


def test_a_process_stopped_between_a_fold_and_its_index_rows_leaves_them_to_the_next_open(
    lake_dir: str, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, run_ids, cache = _cached_lake(lake_dir, tmp_path, 3)
    lake = Lake(lake_dir, cache=cache)
    client.log_batch(run_ids[0], metrics=[("loss", -5.0, 0, 9)], params={"late": "yes"})
    client.rename_run(run_ids[1], "renamed")
    client.flush()

    def stopped(*_args: Any, **_kwargs: Any) -> None:
        raise KeyboardInterrupt  # the process stops after the folds committed

    with monkeypatch.context() as patched:
        patched.setattr(search_index, "catch_up", stopped)
        with pytest.raises(KeyboardInterrupt):
            lake.refresh()
    del lake
    gc.collect()
    reopened = Lake(lake_dir, cache=cache)
    assert reopened.connection.cached
    assert reopened.search_run_ids(filter_string="params.late = 'yes'") == [run_ids[0]]
    assert reopened.search_run_ids(order_by=["metrics.loss"])[0] == run_ids[0]
    assert _nonempty_columns(_index_rows(reopened)) == _nonempty_columns(_index_rows(Lake(lake_dir, cache=False)))


@pytest.mark.parametrize("cached", [False, True], ids=["in memory", "state cache reopened"])
def test_runs_new_to_a_table_fold_from_their_rows_and_others_from_all_of_theirs(tmp_path: Any, cached: bool) -> None:
    """A refresh folds a run that had no rows of a table from its new rows alone, and a run that
    had some - even rows that arrived before its creation row - from all of them: after each
    change the live state answers as one folded from scratch."""
    from runlake.core import layout, rows, vocab

    root = str(tmp_path / "lake")
    client = LakeClient(root)
    experiment = client.create_experiment("seen")
    first = _log(client, experiment, 0)
    client.flush()
    cache = tmp_path / "cache" if cached else False
    state: dict[str, Lake] = {"lake": Lake(root, cache=cache)}
    early = "early-rows-run"
    made: list[str] = []
    # A tag set before it was deleted, but written after the deletion (a slow process): the
    # deletion, newer, wins. Until then the run's only tag row is a tombstone, which folds to
    # no row.
    set_before = rows.tag_row(early, "stage", "old")

    def early_rows() -> None:
        # Params and an end of a run whose creation row another process has not flushed yet:
        # the runs fold has no row for it until then, and its end time must outlive that.
        client._store.add_rows(layout.PARAMS, experiment, client.param_rows(early, {"lr": "0.5", "seed": "1"}))
        client._store.add_rows(layout.RUNS, experiment, [rows.run_update_row(early, status="FAILED", end_time=1234)])
        client._store.add_rows(layout.TAGS, experiment, [rows.tag_delete_row(early, "stage")])

    def create_early() -> None:
        # Its creation row and name tag, flushed late (as ``create_run`` writes them).
        uri = layout.artifact_uri_for(root, experiment, early)
        created = rows.new_run_row(early, artifact_uri=uri, run_name="early", start_time=None, user_id="someone")
        client._store.add_rows(layout.RUNS, experiment, [created])
        client._store.add_rows(
            layout.TAGS, experiment, [*rows.tag_rows(early, {vocab.RUN_NAME_TAG: "early"}), set_before]
        )

    steps = [
        lambda: made.append(_log(client, experiment, 1)),  # new to every table
        lambda: client.set_tag(made[0], "team", "q"),  # tags it had since this Lake opened
        lambda: client.set_terminated(made[0], "FINISHED"),
        # Many runs in one refresh, then one read with a merge (files gone): folded from all
        # their raw rows then, and still known to have rows when a small change comes later.
        lambda: made.extend(_log(client, experiment, 100 + i) for i in range(search_index.PROBE_LIMIT + 20)),
        lambda: client.set_tag(made[-1], "team", "late"),
        lambda: client.set_terminated(made[-1], "FINISHED"),
        lambda: (made.append(_log(client, experiment, 400)), client.flush(), compact(root, grace_s=0)),
        lambda: client.set_tag(made[-1], "team", "merged"),
        lambda: client.set_terminated(made[-1], "FINISHED"),
        lambda: client.log_batch(first, params={"extra": "x"}),  # params it had, and one more
        lambda: client.delete_tag(first, "team"),  # a tombstone for a tag it had
        lambda: client.set_tags(first, {"team": "z", "other": "y"}),
        lambda: client.set_terminated(first, "KILLED"),
        early_rows,
        create_early,
        lambda: client.log_batch(early, params={"batch": "32"}),
    ]
    for step in steps:
        step()
        client.flush()
        if cached:  # each step read by a reopened cached state
            del state["lake"]
            lake = None
            gc.collect()  # the cache's file is free again
            state["lake"] = Lake(root, cache=cache)
        lake = state["lake"]
        assert lake.connection.cached == cached
        lake.refresh()
        fresh = Lake(root, cache=False)
        for view in ("runs", "params", "tags"):
            assert lake.sql(f"SELECT * FROM {view} ORDER BY ALL").equals(
                fresh.sql(f"SELECT * FROM {view} ORDER BY ALL")
            )
        assert _nonempty_columns(_index_rows(lake)) == _nonempty_columns(_index_rows(fresh))
        assert _searches(lake) == _searches(fresh)
    params = lake.sql(f"SELECT key, value FROM params WHERE run_id = '{early}' ORDER BY key")
    assert params.values.tolist() == [["batch", "32"], ["lr", "0.5"], ["seed", "1"]]
    assert lake.sql(f"SELECT end_time FROM runs WHERE run_id = '{early}'").values.tolist() == [[1234]]
    assert lake.sql(f"SELECT key FROM tags WHERE run_id = '{early}'").values.tolist() == [[vocab.RUN_NAME_TAG]]
