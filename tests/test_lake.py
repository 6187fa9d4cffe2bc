"""The lake's tables and views: real Parquet written by the ingest side, read with real DuckDB."""

from __future__ import annotations

import glob
import math
import os
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runlake.core import layout, writer
from runlake.core.errors import ExperimentNotFound, RunNotFound
from runlake.ingest import LakeClient
from runlake.lake import Lake, history, views


@pytest.fixture
def client(lake_dir):
    return LakeClient(lake_dir)


def _run(client: LakeClient, name: str = "exp", **kwargs) -> tuple[str, str]:
    exp = client.create_experiment(name)
    return exp, client.create_run(exp, **kwargs)


def test_tables_are_hive_partitioned_with_real_types(client, lake_dir):
    exp, run = _run(client)
    client.log_batch(run, metrics=[("loss", 0.5, 1000, 1)], params={"lr": "0.1"}, tags={"t": "v"})
    client.set_terminated(run)
    client.flush()
    for table in layout.PARTITIONED_TABLES:
        files = glob.glob(os.path.join(lake_dir, table, f"experiment_id={exp}", "part-*.parquet"))
        assert files, table
        schema = pq.read_schema(files[0])
        assert schema.equals(layout.SCHEMAS[table]), table
    assert layout.SCHEMAS[layout.METRICS].field("step").type == pa.int64()
    assert layout.SCHEMAS[layout.RUNS].field("start_time").type == pa.int64()
    assert not glob.glob(os.path.join(lake_dir, "**", "*.tmp"), recursive=True)


def test_one_flush_writes_at_most_one_file_per_table_per_experiment(client, lake_dir):
    exp_a, run_a = _run(client, "a")
    exp_b = client.create_experiment("b")
    run_b = client.create_run(exp_b)
    client.flush()
    before = {t: len(writer.list_parts(client.store.fs, client.root, t)) for t in layout.ALL_TABLES}
    for run in (run_a, run_b):
        client.log_batch(run, metrics=[("m", float(i), 0, i) for i in range(100)], params={"p": "1"}, tags={"x": "y"})
        for i in range(100):
            client.log_metric(run, "single", i, step=i)
    client.flush()
    after = {t: len(writer.list_parts(client.store.fs, client.root, t)) for t in layout.ALL_TABLES}
    for table in (layout.PARAMS, layout.TAGS, layout.METRICS, layout.METRIC_SUMMARIES):
        assert after[table] - before[table] == 2, table  # one per experiment


def test_run_fields_fold_latest_non_null_per_field(client, lake_dir):
    exp, run = _run(client, run_name="first")
    client.rename_run(run, "second")
    client.update_run(run, status="FAILED", end_time=123)
    client.rename_run(run, "third")  # a later change of one field keeps the others
    info = Lake(lake_dir).get_run(run).info
    assert (info["run_name"], info["status"], info["end_time"]) == ("third", "FAILED", 123)


def test_concurrent_writers_changing_different_fields_both_win(client, lake_dir):
    exp, run = _run(client, run_name="orig")
    # Two writers: one renames, one ends the run; their rows land in separate files.
    other = LakeClient(lake_dir)
    client.rename_run(run, "renamed")
    other.set_terminated(run, "KILLED")
    info = Lake(lake_dir).get_run(run).info
    assert info["run_name"] == "renamed" and info["status"] == "KILLED"


def test_tag_tombstones_and_reset(client, lake_dir):
    exp, run = _run(client)
    client.set_tag(run, "k", "1")
    client.delete_tag(run, "k")
    assert "k" not in Lake(lake_dir).get_run(run).tags
    client.set_tag(run, "k", "2")
    assert Lake(lake_dir).get_run(run).tags["k"] == "2"


def test_params_first_version_wins_across_processes(client, lake_dir):
    exp, run = _run(client)
    client.log_batch(run, params={"lr": "0.1"})
    client.flush()
    # Another process that logged a different value before it could see this one (a race no
    # client-side check can close): its row lands later and loses.
    row = {"run_id": run, "key": "lr", "value": "0.2", "version": layout.next_version()}
    writer.write_part(client.store.fs, client.root, layout.PARAMS, writer.to_table(layout.PARAMS, [row]), exp)
    assert Lake(lake_dir).get_run(run).params == {"lr": "0.1"}


def test_metric_points_have_set_semantics(client, lake_dir):
    exp, run = _run(client)
    points = [("loss", 0.5, 1000, 1), ("loss", 0.4, 2000, 2)]
    client.log_batch(run, metrics=points)
    client.flush()
    client.log_batch(run, metrics=points)  # the same points again (a retried upload)
    client.flush()
    lake = Lake(lake_dir)
    assert lake.metric_history(run, "loss")["value"].tolist() == [0.5, 0.4]
    assert lake.sql("SELECT count(*) AS n FROM metrics WHERE run_id = ?", [run])["n"][0] == 2


def test_summaries_fold_across_flushes_ignoring_nan(client, lake_dir):
    exp, run = _run(client)
    client.log_batch(run, metrics=[("m", 3.0, 10, 0), ("m", float("nan"), 10, 1)])
    client.flush()
    client.log_batch(run, metrics=[("m", -1.0, 5, 2), ("m", float("inf"), 20, 0)])
    client.flush()
    client.log_batch(run, metrics=[("allnan", float("nan"), 1, 0)])
    client.flush()
    stats = Lake(lake_dir).get_run(run).metric_stats
    assert stats["m"]["latest"] == -1.0 and stats["m"]["step"] == 2
    assert stats["m"]["min"] == -1.0 and stats["m"]["max"] == math.inf
    assert math.isnan(stats["allnan"]["min"]) and math.isnan(stats["allnan"]["latest"])


def test_latest_ties_on_step_break_by_timestamp_then_value(client, lake_dir):
    exp, run = _run(client)
    client.log_batch(run, metrics=[("m", 1.0, 100, 5), ("m", 2.0, 50, 5), ("v", 1.0, 7, 1), ("v", 9.0, 7, 1)])
    client.flush()
    metrics = Lake(lake_dir).get_run(run).metrics
    assert metrics == {"m": 1.0, "v": 9.0}


def test_snapshot_picks_up_new_files_and_survives_files_replaced(client, lake_dir):
    exp, run = _run(client)
    lake = Lake(lake_dir)
    assert lake.get_run(run).metrics == {}
    client.log_batch(run, metrics=[("m", 1.0, 1, 1)], tags={"a": "1"})
    client.flush()
    assert lake.get_run(run).metrics == {"m": 1.0} and lake.get_run(run).tags["a"] == "1"  # incremental
    # What compaction does: write a merged file, then remove its inputs.
    fs = client.store.fs
    parts = writer.list_parts(fs, client.root, layout.TAGS)
    merged = pa.concat_tables([pq.read_table(p.path) for p in parts])
    writer.write_part(fs, client.root, layout.TAGS, merged, exp)
    assert lake.get_run(run).tags["a"] == "1"  # duplicates absorbed by the fold
    for p in parts:
        fs.delete_file(p.path)
    assert lake.get_run(run).tags["a"] == "1"  # full rebuild after files vanished
    assert len(lake.sql("SELECT * FROM tags WHERE run_id = ? AND key = 'a'", [run])) == 1


def test_experiment_ids_stay_strings(client, lake_dir):
    exp = client.create_experiment("numeric", experiment_id="000123")
    client.create_run(exp)
    frame = Lake(lake_dir).runs_frame()
    assert frame["experiment_id"].tolist() == ["000123"]


def test_not_found_errors(client, lake_dir):
    _run(client)
    lake = Lake(lake_dir)
    with pytest.raises(RunNotFound) as info:
        lake.get_run("nope")
    assert info.value.to_dict() == {"error": "RunNotFound", "message": "Run 'nope' not found", "run_id": "nope"}
    with pytest.raises(RunNotFound):
        lake.metric_history("nope", "m")
    with pytest.raises(ExperimentNotFound):
        lake.get_experiment("999")
    with pytest.raises(ExperimentNotFound):
        lake.runs_frame(experiment_ids=["999"])
    assert lake.get_experiment_by_name("missing") is None


def test_client_errors(client):
    with pytest.raises(ExperimentNotFound):
        client.create_run("424242")
    exp = client.create_experiment("e")
    run = client.create_run(exp, run_id="keep-this_ID-1")
    assert run == "keep-this_ID-1"
    with pytest.raises(ValueError, match="already exists"):
        client.create_run(exp, run_id="keep-this_ID-1")
    with pytest.raises(ValueError, match="Invalid run id"):
        client.create_run(exp, run_id="bad/id")
    with pytest.raises(RunNotFound):
        client.set_tag("missing-run", "k", "v")
    with pytest.raises(ValueError, match="Invalid status"):
        client.update_run(run, status="DONE")
    with pytest.raises(ValueError, match="non-empty"):
        client.create_experiment("  ")
    with pytest.raises(ValueError, match="metric values must be numbers"):
        client.log_batch(run, metrics=[("m", "x", 0, 0)])


def test_lake_client_api_end_to_end(client, lake_dir):
    exp = client.create_experiment("api")
    assert client.get_experiment_by_name("api").experiment_id == exp
    assert client.create_experiment("api") == exp  # idempotent by name
    parent = client.create_run(exp, run_name="parent", start_time=1_000, user_id="ann", tags={"a": 1})
    child = client.create_run(exp, parent_run_id=parent, run_name="child")
    client.log_batch(child, metrics=[("loss", 0.3, 2_000, 0)], params={"p": 1}, tags={"b": "2"})
    client.set_description(child, "notes")
    client.set_terminated(child, "FINISHED", end_time=5_000)
    client.delete_run(parent)
    lake = Lake(lake_dir)
    p = lake.get_run(parent)
    assert p.info["lifecycle_stage"] == "deleted" and p.info["deleted_time"] is not None
    assert (
        p.info["user_id"] == "ann"
        and p.info["start_time"] == 1_000
        and p.tags == {"a": "1", "mlflow.runName": "parent"}
    )
    client.restore_run(parent)
    lake = Lake(lake_dir)
    assert lake.get_run(parent).info["lifecycle_stage"] == "active"
    assert lake.get_run(parent).info["deleted_time"] is None
    c = lake.get_run(child)
    assert c.info["parent_run_id"] == parent and c.info["end_time"] == 5_000
    assert c.tags["mlflow.note.content"] == "notes" and c.params == {"p": "1"}


def test_standalone_sql_in_plain_duckdb_matches_the_lake(client, lake_dir):
    exp, run = _run(client)
    client.log_batch(run, metrics=[("m", 1.0, 1, 1), ("m", 2.0, 2, 2)], params={"p": "x"}, tags={"t": "y"})
    client.set_terminated(run)
    client.flush()
    con = duckdb.connect()
    for statement in views.standalone_script(client.root).split(";\n"):
        con.execute(statement)
    plain = con.execute("SELECT run_id, status FROM runs").fetchall()
    assert plain == [(run, "FINISHED")]
    assert con.execute("SELECT value FROM latest_metrics").fetchall() == [(2.0,)]
    assert con.execute("SELECT count(*) FROM metrics").fetchall() == [(2,)]
    lake_rows = Lake(lake_dir).sql("SELECT key, value FROM latest_metrics")
    assert lake_rows.to_records(index=False).tolist() == [("m", 2.0)]


def test_list_experiments_counts_active_runs(client, lake_dir):
    exp, run = _run(client, "counted")
    client.create_run(exp)
    gone = client.create_run(exp)
    client.delete_run(gone)
    frame = Lake(lake_dir).list_experiments()
    row = frame.set_index("name").loc["counted"]
    assert row["run_count"] == 2 and row["last_run_time"] > 0


def test_lake_mutations_check_runs_and_keys(client, lake_dir):
    exp, parent = _run(client)
    child = client.create_run(exp, parent_run_id=parent)
    grandchild = client.create_run(exp, parent_run_id=child)
    lake = Lake(lake_dir)
    assert sorted(lake.delete_run(parent)) == sorted([parent, child, grandchild])
    assert lake.get_run(grandchild).info["lifecycle_stage"] == "deleted"
    assert lake.restore_run(parent, include_descendants=False) == [parent]
    assert lake.get_run(child).info["lifecycle_stage"] == "deleted"
    with pytest.raises(RunNotFound):
        lake.set_tag("nope", "k", "v")
    with pytest.raises(ValueError, match="Invalid tag key"):
        lake.set_tag(parent, "bad\nkey", "v")
    with pytest.raises(ValueError, match="non-empty"):
        lake.rename_run(parent, "   ")


def test_log_batch_input_forms_and_errors(client, lake_dir):
    import pyarrow as pa

    exp, run = _run(client)
    client.log_batch(run, metrics=[("a", 1, None, None), ("a", True, 5, 1), ("b", 2.5, 7, 3)])
    client.log_batch(run, metrics=pa.table({"key": ["c"], "value": [0.5], "timestamp": [9], "step": [4]}))
    client.flush()
    lake = Lake(lake_dir)
    assert lake.metric_history(run, "a")["value"].tolist() == [1.0, 1.0]
    assert lake.get_run(run).metrics == {"a": 1.0, "b": 2.5, "c": 0.5}
    with pytest.raises(ValueError, match=r"metrics\[1\] is \('a', 1\)"):
        client.log_batch(run, metrics=[("a", 1.0, 0, 0), ("a", 1)])
    with pytest.raises(ValueError, match="Got invalid value 'x' for metric 'a'"):
        client.log_batch(run, metrics=[("a", 1.0, 0, 0), ("a", "x", 0, 1)])
    with pytest.raises(ValueError, match="steps must be integers"):
        client.log_batch(run, metrics=[("a", 1.0, 0, 1.5)])
    with pytest.raises(ValueError, match="needs the columns"):
        client.log_batch(run, metrics=pa.table({"key": ["c"], "value": [0.5]}))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b"]),
            st.sampled_from(["loss", "acc"]),
            st.integers(-3, 3),
            st.integers(0, 2),
            st.sampled_from([0.0, -0.0, 1.5, float("nan"), float("inf"), -float("inf")]),
        ),
        max_size=40,
    )
)
def test_histories_count_each_point_once_as_duckdb_distinct(points):
    # The Arrow path of metric histories against the metrics view's rule (DuckDB's DISTINCT).
    table = pa.Table.from_pylist(
        [dict(zip(["run_id", "key", "step", "timestamp", "value"], p)) for p in points + points[:5]],
        schema=pa.schema(
            [
                ("run_id", pa.string()),
                ("key", pa.string()),
                ("step", pa.int64()),
                ("timestamp", pa.int64()),
                ("value", pa.float64()),
            ]
        ),
    )
    ours = history.distinct_sorted(table, history.POINT_COLUMNS).to_pylist()
    con = duckdb.connect()
    con.register("t", table)
    rows = con.execute("SELECT DISTINCT * FROM t ORDER BY run_id, key, step, timestamp, value").fetchall()
    expected = [dict(zip(history.POINT_COLUMNS, r)) for r in rows]
    assert len(ours) == len(expected)
    key = lambda r: (
        r["run_id"],
        r["key"],
        r["step"],
        r["timestamp"],
        math.isnan(r["value"]),
        0.0 if math.isnan(r["value"]) else r["value"],
    )
    assert sorted(map(key, ours)) == sorted(map(key, expected))


@settings(max_examples=80, deadline=None)
@given(
    st.sampled_from(["params", "tags"]),
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b", None]),
            st.sampled_from(["lr", "seed", None]),
            st.sampled_from(["x", "y", "", None]),
            st.integers(0, 3),
        ),
        max_size=30,
    ),
)
def test_a_fold_that_passes_single_rows_through_gives_the_folds_rows(view, raw):
    # ``split_fold_sql`` folds only the (run_id, key) pairs with several rows: the same rows as
    # the plain fold, with version ties, tombstones and NULL keys among them.
    table = pa.Table.from_pylist(
        [
            {"run_id": r, "key": k, "value": v, "version": version, "experiment_id": f"e-{r}", "_file_no": 1}
            for r, k, v, version in raw
        ],
        schema=layout.SCHEMAS[view]
        .append(pa.field("experiment_id", pa.string()))
        .append(pa.field("_file_no", pa.int32())),
    )
    con = duckdb.connect()
    con.register(f"raw_{view}", table)
    plain = con.execute(f"SELECT * FROM ({views.fold_sql(view)}) ORDER BY ALL").fetchall()
    split = con.execute(f"SELECT * FROM ({views.split_fold_sql(view)}) ORDER BY ALL").fetchall()
    assert split == plain


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.lists(
            st.tuples(
                st.integers(-5, 40),
                st.integers(0, 2),
                st.sampled_from([0.0, -0.0, 1.5, -2.0, float("nan"), float("inf"), -float("inf")]),
            ),
            max_size=12,
        ),
        max_size=6,
    ),
    st.randoms(use_true_random=False),
)
def test_one_series_from_stretches_in_any_order_comes_back_sorted_and_distinct(stretches, rng):
    """A series read from several files comes as stretches each in step order, in any order
    and overlapping (the argsort of the steps, then a check): the same rows, in the same order,
    as DuckDB's DISTINCT ... ORDER BY."""
    parts = [sorted(s, key=lambda p: (p[0], p[1], math.isnan(p[2]), p[2])) for s in stretches]
    rng.shuffle(parts)
    schema = pa.schema([("step", pa.int64()), ("timestamp", pa.int64()), ("value", pa.float64())])
    tables = [
        pa.Table.from_pylist([dict(zip(history.SERIES_COLUMNS, p)) for p in part], schema=schema) for part in parts
    ]
    table = pa.concat_tables(tables) if tables else schema.empty_table()
    ours = history.distinct_sorted(table, history.SERIES_COLUMNS).to_pylist()
    con = duckdb.connect()
    con.register("t", table)
    rows = con.execute("SELECT DISTINCT * FROM t ORDER BY step, timestamp, value").fetchall()

    def key(step: int, timestamp: int, value: float) -> tuple[Any, ...]:
        return (step, timestamp, math.isnan(value), 0.0 if math.isnan(value) else value)

    assert [key(r["step"], r["timestamp"], r["value"]) for r in ours] == [key(*r) for r in rows]


def test_kept_parsed_statements_answer_like_text_and_stay_bounded(client, lake_dir, monkeypatch):
    """Queries run from parsed statements kept per thread: each text answers with its own
    values, a kept statement is reused, and no more than ``STATEMENTS_KEPT`` are kept."""
    import threading

    from runlake.lake import connection
    from runlake.lake.sql import q

    monkeypatch.setattr(connection, "STATEMENTS_KEPT", 3)
    run_id = client.create_run(client.create_experiment("kept"), run_name="kept")
    client.flush()
    db = Lake(lake_dir).connection
    for i in range(6):
        assert db.rows(q(f"SELECT {i} + ?, (SELECT run_name FROM runs WHERE run_id = ?)", 10, run_id)) == [
            (i + 10, "kept")
        ]
        assert db.arrow(q("SELECT ? AS v", i)).column("v").to_pylist() == [i]
    kept = db._local.statements
    assert len(kept) == 3 and "SELECT ? AS v" in kept
    # Not one statement: the text goes to DuckDB as it is, which says what is wrong.
    with pytest.raises(duckdb.ParserException):
        db.rows(q("SELEC 1"))
    assert db.rows(q("SELECT 1; SELECT 2")) == [(2,)]
    # Another thread keeps its own.
    seen: list[Any] = []
    worker = threading.Thread(target=lambda: seen.append((db.rows(q("SELECT ?", 7)), len(db._local.statements))))
    worker.start()
    worker.join()
    assert seen == [([(7,)], 1)]
