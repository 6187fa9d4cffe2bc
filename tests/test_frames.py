"""The search frame is the same whichever way it is pivoted (in Python for pages, in DuckDB
for big frames, or read from the search index's wide rows) and whichever way its runs are
looked up (index probes or a bound list)."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import pytest

from runlake.ingest import LakeClient
from runlake.lake import Lake, frames
from runlake.lake.connection import Connection
from runlake.lake.search import results

# (read the search index, PYTHON_PIVOT_LIMIT, INDEX_PROBE_LIMIT, INDEX_LOOKUP_LIMIT)
WAYS = ((True, 0, 0, 10**6), (True, 0, 0, 0), (False, 10**6, 10**6, 10**6), (False, 10**6, 0, 10**6), (False, 0, 0, 0))


def _way(monkeypatch: pytest.MonkeyPatch, way: tuple[bool, int, int, int]) -> None:
    use_index, pivot_limit, probe_limit, lookup_limit = way
    monkeypatch.undo()
    if not use_index:
        monkeypatch.setattr(Connection, "search_index", lambda self: None)
    monkeypatch.setattr(frames, "PYTHON_PIVOT_LIMIT", pivot_limit)
    monkeypatch.setattr(frames, "INDEX_PROBE_LIMIT", probe_limit)
    monkeypatch.setattr(frames, "INDEX_LOOKUP_LIMIT", lookup_limit)


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    root = str(tmp_path_factory.mktemp("frames") / "lake")
    client = LakeClient(root)
    experiment = client.create_experiment("frames")
    for i in range(40):
        run_id = client.create_run(experiment, run_name=f"run-{i}", tags={"t": f"v{i % 3}"} if i % 4 else {})
        params = {"lr": str(i), "run_id": "a key named like a column", "odd key: a/b": "q"} if i % 5 else {}
        metrics = [("loss", 1.0 / (i + 1), 0, 0), ("acc.top-1", float(i), 0, 0)] if i % 3 else []
        if i == 7:
            metrics.append(("nan", math.nan, 0, 0))
        client.log_batch(run_id, metrics=metrics, params=params)
    client.flush()
    return Lake(root)


def _cells(frame: pd.DataFrame) -> list[dict[str, Any]]:
    def plain(value: Any) -> Any:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        return value

    return [{k: plain(v) for k, v in row.items()} for row in frame.to_dict("records")]


@pytest.mark.parametrize(
    "columns", [None, ["metrics.loss", "params.lr", "tags.nobody", "params.run_id"], ["metrics.acc.top-1"], []]
)
def test_every_pivot_and_lookup_gives_the_same_frame(lake: Lake, monkeypatch: pytest.MonkeyPatch, columns: Any) -> None:
    run_ids = list(reversed(lake.search_run_ids())) + ["not-a-run"]
    results = []
    for way in WAYS:
        _way(monkeypatch, way)
        with lake.connection.fresh():
            results.append(frames.build_frame(lake.connection, run_ids, columns))
    first = results[0]
    assert list(first["run_id"]) == run_ids
    assert first.iloc[-1]["run_name"] is None or pd.isna(first.iloc[-1]["run_name"])
    if columns is None:
        assert {"params.run_id", "params.odd key: a/b", "metrics.acc.top-1", "metrics.nan", "tags.t"} <= set(
            first.columns
        )
    elif columns:
        assert [c for c in first.columns if "." in c] == sorted(
            columns, key=lambda c: (c.split(".")[0] != "metrics", c.split(".")[0] != "params", c)
        )
    for other in results[1:]:
        assert list(other.columns) == list(first.columns)
        assert [str(t) for t in other.dtypes] == [str(t) for t in first.dtypes]
        assert _cells(other) == _cells(first)
    assert str(first["start_time"].dtype) == "datetime64[us, UTC]"
    if columns is None or "metrics.loss" in (columns or []):
        assert first["metrics.loss"].dtype == "float64"


def test_keys_differing_only_in_case_keep_their_own_columns(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    root = str(tmp_path / "lake")
    client = LakeClient(root)
    experiment = client.create_experiment("case")
    run_ids = []
    for i in range(3):
        run_id = client.create_run(experiment, run_name=f"run-{i}", tags={"Mode": "A", "mode": "a"})
        client.log_batch(
            run_id, metrics=[("Loss", 1.0 + i, 0, 0), ("loss", 2.0 + i, 0, 0)], params={"LR": "X", "lr": "x"}
        )
        run_ids.append(run_id)
    client.flush()
    lake = Lake(root)
    for way in WAYS:
        _way(monkeypatch, way)
        for columns in (None, ["metrics.loss", "metrics.Loss", "params.lr"]):
            with lake.connection.fresh():
                frame = frames.build_frame(lake.connection, run_ids, columns)
            assert list(frame["metrics.Loss"]) == [1.0, 2.0, 3.0]
            assert list(frame["metrics.loss"]) == [2.0, 3.0, 4.0]
            assert list(frame["params.lr"]) == ["x"] * 3
            assert not [c for c in frame.columns if c.endswith("_1")]


def test_a_page_has_the_columns_of_its_own_runs_only(lake: Lake, monkeypatch: pytest.MonkeyPatch) -> None:
    frame_of = lake.search_runs(filter_string="attributes.run_name IN ('run-0', 'run-20')")
    run_ids = list(frame_of["run_id"])
    assert len(run_ids) == 2
    for way in WAYS:
        _way(monkeypatch, way)
        with lake.connection.fresh():
            frame = frames.build_frame(lake.connection, run_ids)
        # run-0 has nothing, run-20 two metrics (20 % 3), no params (20 % 5) and no tags (20 % 4).
        keys = [c for c in frame.columns if "." in c]
        assert [c for c in keys if not c.startswith("tags.mlflow.")] == ["metrics.acc.top-1", "metrics.loss"], way


@pytest.mark.parametrize(
    "filter_string, order_by",
    [
        ("", None),
        ("metrics.loss < 0.2", ["metrics.loss"]),
        ("tags.t = 'v1' OR params.lr = '3'", ["params.lr DESC"]),
        ("attributes.run_name LIKE 'run-1%'", ["attributes.run_name"]),
        ("metrics.nan > 0", None),
    ],
)
@pytest.mark.parametrize("columns", [None, ["metrics.loss", "tags.nobody", "params.lr"], []])
def test_a_search_reads_from_the_index_the_frame_the_tables_give(
    lake: Lake, monkeypatch: pytest.MonkeyPatch, filter_string: str, order_by: Any, columns: Any
) -> None:
    """Over the search index a search reads its runs' wide rows, in the search's own query
    (fused) or by id after it; either must give the frame, ids and total that the search over
    the tables and the pivot of the runs' rows give (the index patched away)."""
    search = results.Search(filter_string=filter_string, order_by=order_by)
    windows = ((7, 0, True), (7, 14, True), (5, 100, True), (1000, 0, False), (3, 2, False))
    monkeypatch.setattr(Connection, "search_index", lambda self: None)
    wanted = []
    for limit, offset, count in windows:
        with lake.connection.fresh():
            want_ids, want_total = results.search_ids(lake.connection, search, limit, offset, count=count)
            wanted.append((frames.build_frame(lake.connection, want_ids, columns), want_ids, want_total))
    monkeypatch.undo()
    assert lake.connection.search_index() is not None
    for fused in (True, False):
        for (limit, offset, count), (want, want_ids, want_total) in zip(windows, wanted):
            found = results.search_rows(
                lake.connection, search, limit, offset, count=count, columns=columns, fused=fused
            )
            assert found is not None
            with lake.connection.fresh():
                frame, run_ids, total = results.search_frame(
                    lake.connection, search, limit, offset, count=count, columns=columns
                )
            assert (found[2], found[3]) == (run_ids, total) == (want_ids, want_total)
            assert list(frame["run_id"]) == run_ids
            assert list(frame.columns) == list(want.columns)
            assert [str(t) for t in frame.dtypes] == [str(t) for t in want.dtypes]
            assert _cells(frame) == _cells(want)
            rows, selection = found[0], found[1]
            assert _cells(frames.frame_from_index_rows(rows, selection, run_ids)) == _cells(want)
            # A text attribute no run here has is None in every cell, as in mlflow.search_runs.
            for column in ("parent_run_id", "source_version"):
                if run_ids and frame[column].isna().all():
                    assert frame[column].dtype == object and list(frame[column]) == [None] * len(run_ids)


def test_a_search_reads_again_when_another_thread_replaced_the_index(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The columns a search reads come from the index it compiled against: when a refresh of
    another thread replaces the index during the read (a new key, a rebuild), it reads again,
    and falls back to the tables when the index keeps changing."""
    import dataclasses

    snapshot = lake.connection._snapshot
    real_read = results._index_read
    calls = []

    def read_then_replace(*args: Any) -> Any:
        calls.append(1)
        found = real_read(*args)
        if len(calls) <= replaced_times:
            snapshot.index = dataclasses.replace(snapshot.index)  # another thread's refresh
        return found

    monkeypatch.setattr(results, "_index_read", read_then_replace)
    search = results.Search(filter_string="params.lr = '3'")
    replaced_times = 1
    found = results.search_rows(lake.connection, search, 10, 0, count=True)
    assert found is not None and len(calls) == 2
    assert found[2] == lake.search_run_ids(filter_string="params.lr = '3'")
    calls.clear()
    replaced_times = results.INDEX_READ_TRIES
    assert results.search_rows(lake.connection, search, 10, 0, count=True) is None
    assert len(calls) == results.INDEX_READ_TRIES
    calls.clear()
    page = lake.search_page(filter_string="params.lr = '3'")
    assert list(page.frame["run_id"]) == found[2] and page.frame["params.lr"].tolist() == ["3"]
