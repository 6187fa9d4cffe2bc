"""Metric histories: every point of some runs' metrics, read from Parquet with pushdown."""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from runlake.core import layout, writer
from runlake.core import points as core_points
from runlake.lake.connection import Connection, vanished, with_relisting
from runlake.lake.sql import check_id, check_ids, id_list, join

POINT_COLUMNS = ["run_id", "key", "step", "timestamp", "value"]
SERIES_COLUMNS = ["step", "timestamp", "value"]


def metric_history(db: Connection, run_id: str, key: str) -> pd.DataFrame:
    """Every point of one metric of one run (step, timestamp, value), in step order.

    Raises:
        RunNotFound: no run has this id.
    """
    # Arrow all the way: no per-point Python, and the numeric columns become the DataFrame's
    # without a consolidating copy.
    return metric_history_table(db, run_id, key).to_pandas(split_blocks=True, self_destruct=True)


def metric_history_table(db: Connection, run_id: str, key: str) -> pa.Table:
    """``metric_history`` as an Arrow table, for callers that want Python lists of it (the
    MLflow store's ``get_metric_history``): no DataFrame made and taken apart again.

    Raises:
        RunNotFound: no run has this id.
    """
    run_id = check_id(run_id)
    check_id(key, "key")
    # The points come straight from the metric files listed now, so they are current without
    # folding whatever else the lake gained since the last refresh (with writers flushing, that
    # fold was most of a live run's history call). The state only names the run's partition.
    experiment_id, refreshed = db.run_partition(run_id)
    # One series: only its numbers are read back and sorted (no string columns to decode).
    points = with_relisting(lambda: _scan_series(db, experiment_id, run_id, key))
    if not points.num_rows and not refreshed:
        # No points: perhaps the run is gone since the last refresh (purged; raises), or its id
        # was purged and used again in another experiment. Ask the state again.
        again, _refreshed = db.run_partition(run_id, refresh=True)
        if again != experiment_id:
            points = with_relisting(lambda: _scan_series(db, again, run_id, key))
    return distinct_sorted(points, SERIES_COLUMNS)


def _scan_series(db: Connection, experiment_id: str, run_id: str, key: str) -> pa.Table:
    condition = (
        (ds.field(layout.PARTITION_COLUMN) == experiment_id) & (ds.field("run_id") == run_id) & (ds.field("key") == key)
    )
    if isinstance(db.fs, pafs.LocalFileSystem):
        files = [f for f in db.metric_files() if writer.partition_of(f[0]) == experiment_id]
        # The points of files read before come from memory (``lake/file_series.py``): a
        # history read again scans only the files written since.
        kept, missing = db.file_series.get(files, run_id, key)
        if not missing:
            return _joined(kept)
        try:
            read = _read_files(db, missing, run_id, key)
        except duckdb.Error as exc:
            if vanished(exc):
                raise  # with_relisting lists again
            # Damaged bytes in one of the files: the scan below finds which, warns of it once
            # and leaves it out (later calls no longer list it).
        else:
            points, by_file = read
            db.file_series.put(run_id, key, by_file)
            return _joined([*kept, points])
    return db.scan_metrics(SERIES_COLUMNS, condition)


_SERIES_SCHEMA = pa.schema([layout.SCHEMAS[layout.METRICS].field(c) for c in SERIES_COLUMNS])


def _joined(tables: list[pa.Table]) -> pa.Table:
    return pa.concat_tables(tables) if tables else _SERIES_SCHEMA.empty_table()


def _read_files(
    db: Connection, files: list[tuple[str, int]], run_id: str, key: str
) -> tuple[pa.Table, dict[tuple[str, int], pa.Table]]:
    """The series' points in ``files``, read in one DuckDB query, and each file's share (none
    when the files could not be told apart).

    DuckDB's Parquet reader prunes row groups by the run and key statistics and decodes in
    parallel: several times faster than a pyarrow dataset scan of the same files. Each point
    comes with its file's place in the list (from the reader's ``filename`` column, turned
    into a number in the query, so no path reaches Arrow per row). The query is a statement,
    not a relation (``cursor.sql``): the relation binds the query in a pass of its own,
    reading the files' schemas once more.
    """
    paths = [path for path, _size in files]
    table: pa.Table = (
        db.file_cursor()
        .execute(
            "SELECT list_position($paths, filename)::INTEGER AS file, step::BIGINT AS step, "
            "timestamp::BIGINT AS timestamp, value::DOUBLE AS value "
            "FROM read_parquet($paths, filename = true) WHERE run_id = $run AND key = $key",
            {"paths": paths, "run": run_id, "key": key},
        )
        .to_arrow_table()
    )
    points = table.select(SERIES_COLUMNS)
    numbers = table.column("file")
    if numbers.null_count:
        return points, {}  # a path the reader reports otherwise: nothing kept, nothing wrong
    if len(files) == 1:
        return points, {files[0]: points}
    places = numbers.to_numpy() - 1
    if not (np.diff(places) >= 0).all():  # DuckDB keeps the files' order; checked all the same
        order = np.argsort(places, kind="stable")
        points, places = points.take(pa.array(order)), places[order]
    bounds = np.searchsorted(places, np.arange(len(files) + 1))
    # Each file's points are copied out of the result (a slice would keep the whole result's
    # buffers alive as long as any one file's entry is kept, whatever the bound counts); a
    # file without points of the series is kept as one shared empty table.
    empty = points.schema.empty_table()
    return points, {
        file: _copied(points.slice(start, stop - start)) if stop > start else empty
        for file, start, stop in zip(files, bounds[:-1], bounds[1:], strict=True)
    }


def _copied(points: pa.Table) -> pa.Table:
    """``points`` in buffers of their own."""
    return pa.table({name: pa.concat_arrays(points.column(name).chunks) for name in points.column_names})


def metric_histories(
    db: Connection,
    run_ids: Sequence[str],
    keys: Sequence[str] | None = None,
    experiment_ids: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Metric points of several runs (columns run_id, key, step, timestamp, value), each once.

    Reads only the partitions and row groups the runs and keys live in.
    """
    run_ids = check_ids(run_ids, "run_ids")
    if keys is not None:
        keys = check_ids(keys, "keys")
    if not run_ids:
        return pd.DataFrame(columns=POINT_COLUMNS)
    if experiment_ids is None:
        experiment_ids = [
            r[0]
            for r in db.rows(join(["SELECT DISTINCT experiment_id FROM runs WHERE", id_list("run_id", list(run_ids))]))
        ]
    condition = ds.field("run_id").isin(list(run_ids)) & ds.field(layout.PARTITION_COLUMN).isin(list(experiment_ids))
    if keys is not None:
        condition = condition & ds.field("key").isin(list(keys))
    return distinct_sorted(db.scan_metrics(POINT_COLUMNS, condition), POINT_COLUMNS).to_pandas()


def _sorted(points: pa.Table, columns: list[str]) -> tuple[pa.Table, bool]:
    """``points`` sorted by ``columns`` (which name every column: equal rows are the same row),
    and whether no two of them can be equal (no two share the first column's value).

    One series read from several files comes as stretches each in step order (DuckDB hands a
    scan's vectors over in no fixed order, and a writer's merges hold steps of different
    times): a stable argsort of the steps (numpy's timsort, which merges sorted stretches)
    puts them in order for a fifth of a three-column sort. Equal steps keep their scan order,
    so the whole order is checked after, and sorted fully when they were out of it.
    """
    first = points.column(columns[0])
    if pa.types.is_integer(first.type) and not first.null_count and points.num_rows > 1:
        steps = first.to_numpy()
        order = np.argsort(steps, kind="stable")
        if not np.array_equal(order, np.arange(len(order))):
            points = points.take(pa.array(order))
            steps = steps[order]
        if (np.diff(steps) > 0).all():
            # No two points share a step (one point per step, the usual series): in order, and
            # no two rows can be equal, whatever the other columns hold. Checking the other
            # columns' order and looking for duplicates cost 3.5 of 4.8 ms for 149,000 points.
            return points, True
    if core_points.is_sorted(points, columns):
        return points, False
    return points.sort_by([(c, "ascending") for c in columns]), False


def distinct_sorted(points: pa.Table, columns: list[str]) -> pa.Table:
    """Points sorted by ``columns`` (a suffix of run_id, key, step, timestamp, value), each once.

    Set semantics, as the metrics view: a point stored twice (a merge's output and its inputs,
    seen between the two steps) counts once. Done in Arrow: after the sort, duplicates are
    neighbours, so one vectorised comparison with the previous row finds them (NaN equals NaN
    here, as in DuckDB's DISTINCT).
    """
    ordered, distinct = _sorted(points, columns)
    n = ordered.num_rows
    if n < 2 or distinct:
        return ordered
    same = None
    for name in columns:
        column = ordered.column(name)
        before, after = column.slice(0, n - 1), column.slice(1)
        equal = pc.fill_null(pc.equal(before, after), False)
        if name == "value":
            equal = pc.or_(equal, pc.and_(pc.is_nan(before), pc.is_nan(after)))
        same = equal if same is None else pc.and_(same, equal)
    assert same is not None
    if not pc.any(same).as_py():
        return ordered
    keep = pa.chunked_array([pa.array([True]), *pc.invert(same).chunks])
    return ordered.filter(keep)
