"""Metric points as the lake stores them: validated tables from tuples or Arrow, and the rule
that summarises them (latest, min, max), which every writer and compaction applies the same way
(pyarrow and stdlib only)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pyarrow as pa

from runlake.core import layout, validation
from runlake.core.errors import InvalidArgument

# Steps and timestamps are read as doubles first: Arrow's conversion to int64 would silently
# truncate 1.5 to 1, while as doubles a non-integer is visible (and sent to the slow path).
_POINT = pa.struct([("key", pa.string()), ("value", pa.float64()), ("timestamp", pa.float64()), ("step", pa.float64())])
_EXACT = 2.0**53  # doubles hold every integer up to here exactly
# Up to this many tuples whose steps and timestamps are all Python ints (or None) convert
# straight to int64, exact, without the whole-number check: that check's dozen Arrow compute
# calls were most of a 10-point batch's cost (an MLflow client's log_batch through the plugin).
# Bigger batches keep the check: looking at every tuple in Python would slow a bulk import.
_SMALL_BATCH = 1024
_POINT_INT = pa.struct([("key", pa.string()), ("value", pa.float64()), ("timestamp", pa.int64()), ("step", pa.int64())])


def metric_points_table(run_id: str, metrics: Iterable[tuple[str, Any, Any, Any]] | pa.Table) -> pa.Table | None:
    """Validated metric points as a table in the metrics schema, or None when there are none.

    Works column-wise, which is what makes bulk logging fast: Arrow converts a million
    ``(key, value, timestamp, step)`` tuples in one pass in C, keys are checked once each, and
    only input that fails the fast conversion is walked in Python to say what is wrong.
    """
    if isinstance(metrics, pa.Table):
        if metrics.num_rows == 0:
            return None
        try:
            columns = [_table_column(metrics.column(f.name), f.type) for f in _POINT]
        except KeyError:
            raise InvalidArgument("A metrics table needs the columns key, value, timestamp and step") from None
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            raise InvalidArgument(
                "Metric keys must be strings, values numbers, timestamps and steps integers"
            ) from None
        if all(pa.types.is_integer(c.type) for c in columns[2:]):
            # Integer steps and timestamps need no check that they are whole: the fast path
            # of a 10 M-point import, which then copies no column it does not have to.
            whole = [columns[0], columns[1], columns[2].cast(pa.int64()), columns[3].cast(pa.int64())]
            return _points(run_id, whole)
    else:
        items = metrics if isinstance(metrics, list) else list(metrics)
        if not items:
            return None
        fast: list[pa.Array] | None
        try:
            fast = _small_and_whole(items)
            if fast is None:
                fast = _integral(pa.array(items, type=_POINT).flatten())
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
            fast = None
        columns = fast if fast is not None else _points_one_by_one(items)
    return _points(run_id, columns)


def _table_column(column: Any, target: pa.DataType) -> Any:
    """An input table's column as ``target``, integers kept as integers (checked later if not)."""
    if target == pa.float64() and pa.types.is_integer(column.type):
        return column
    return column.cast(target)


# Schema metadata of a points table that holds one run's points of one key (one series): the
# flush then checks order and summarises without comparing the string columns row by row.
SERIES_METADATA = b"runlake.series"


def _points(run_id: str, columns: list[Any]) -> pa.Table:
    keys, values, timestamps, steps = columns
    unique = keys.unique().to_pylist()
    for key in unique:
        validation.validate_key("metric", key)
    if values.null_count:
        raise InvalidArgument("Metric values must not be None")
    table = pa.Table.from_arrays(
        [
            pa.repeat(pa.scalar(run_id, pa.string()), len(keys)),
            keys,
            steps.fill_null(0) if steps.null_count else steps,
            timestamps.fill_null(layout.now_ms()) if timestamps.null_count else timestamps,
            values,
        ],
        schema=layout.SCHEMAS[layout.METRICS],
    )
    if len(unique) == 1:
        table = table.replace_schema_metadata({SERIES_METADATA: f"{run_id}\x00{unique[0]}".encode()})
    return table


def _small_and_whole(items: list[Any]) -> list[pa.Array] | None:
    """A small batch's columns when every step and timestamp is a Python int or None (Arrow
    converts those to int64 exactly, and refuses one out of range); else None. Floats, bools
    and other types go the checked way, which says what is wrong with them."""
    if len(items) > _SMALL_BATCH:
        return None
    try:
        if not all(_int_or_none(item[2]) and _int_or_none(item[3]) for item in items):
            return None
    except (TypeError, IndexError, KeyError):
        return None  # not (key, value, timestamp, step) tuples: the checked way names the bad one
    columns: list[pa.Array] = pa.array(items, type=_POINT_INT).flatten()
    return columns


def _int_or_none(value: Any) -> bool:
    return value is None or type(value) is int


def _integral(columns: list[pa.Array]) -> list[pa.Array] | None:
    """The columns with steps and timestamps as int64, or None if any is not a whole number."""
    import pyarrow.compute as pc

    keys, values, timestamps, steps = columns
    out = []
    for column in (timestamps, steps):
        present = column.drop_null()
        if len(present) and not (
            pc.all(pc.equal(pc.floor(present), present)).as_py() and pc.max(pc.abs(present)).as_py() < _EXACT
        ):
            return None
        out.append(column.cast(pa.int64()))
    return [keys, values, out[0], out[1]]


def _points_one_by_one(items: list[Any]) -> list[pa.Array]:
    """The slow path: each point checked in Python, with the error naming the bad one."""
    keys, values, timestamps, steps = [], [], [], []
    for index, item in enumerate(items):
        try:
            key, value, timestamp, step = item
        except (TypeError, ValueError):
            raise InvalidArgument(
                f"metrics[{index}] is {item!r}: expected a (key, value, timestamp, step) tuple"
            ) from None
        keys.append(validation.validate_key("metric", key))
        values.append(validation.metric_value(key, value))
        timestamps.append(None if timestamp is None else validation.timestamp_ms("timestamp", timestamp))
        steps.append(validation.metric_step(key, step))
    return [
        pa.array(keys, pa.string()),
        pa.array(values, pa.float64()),
        pa.array(timestamps, pa.int64()),
        pa.array(steps, pa.int64()),
    ]


POINT_ORDER = [
    ("run_id", "ascending"),
    ("key", "ascending"),
    ("step", "ascending"),
    ("timestamp", "ascending"),
    ("value", "ascending"),
]


def group_series(points: pa.Table) -> pa.Table:
    """The points with each series (run_id, key) contiguous, series in (run_id, key) order,
    and each series' points in the order they came.

    A tier merge concatenates flush files of several writers: left in that order, every row
    group of the merged file spans every run and key, and a run's history prunes nothing. A
    stable sort on one integer per row (the ranks of its run and key) costs less than half of
    a sort of (run_id, key, step, timestamp, value); the inputs' own order (each is sorted,
    and a run's flushes come in time order) keeps most series in step order, and readers
    sort a series that is not (``is_sorted``).

    Never puts a string column in one array (the ranks come from a dictionary encoding of its
    chunks, the rows are taken by ``take_rows``): a merge of tens of millions of points has
    more than 2 GB of run ids, which Arrow cannot hold in one string array.
    """
    import pyarrow.compute as pc

    if points.num_rows < 2:
        return points
    code: Any = None
    for name in ("run_id", "key"):
        # Of a chunked column, every chunk comes with the same dictionary (one memo table).
        encoded = pc.dictionary_encode(points.column(name))
        dictionary = encoded.chunk(0).dictionary
        indices = pa.chunked_array([chunk.indices for chunk in encoded.chunks], encoded.type.index_type)
        rank = pc.rank(dictionary, sort_keys="ascending", tiebreaker="dense")
        ranks = pc.cast(pc.take(rank, indices), pa.int64())
        code = ranks if code is None else pc.add(pc.multiply(code, len(dictionary) + 1), ranks)
    code = code.combine_chunks()  # 8 bytes a row: no limit to reach
    if pc.all(pc.less_equal(code.slice(0, len(code) - 1), code.slice(1))).as_py():
        return points
    return take_rows(points, pc.sort_indices(code))  # Arrow's sort_indices is stable


# Arrow keeps a string array's text behind 32-bit offsets, so ``take`` (which first puts a
# column's chunks in one array) fails on more than 2 GB of it. A string column with more text
# than this is taken as large strings and cut back into string chunks of about this much.
TEXT_LIMIT = 1 << 30


def take_rows(table: pa.Table, indices: pa.Array) -> pa.Table:
    """``table.take(indices)`` for a table of any size (see ``TEXT_LIMIT``)."""
    import pyarrow.compute as pc

    columns = []
    for column in table.columns:
        if not pa.types.is_string(column.type) or column.nbytes <= TEXT_LIMIT:
            columns.append(column.take(indices))
            continue
        text = column.cast(pa.large_string()).combine_chunks()
        # The output rows by the block of TEXT_LIMIT bytes their text ends in: each block is
        # taken on its own, so its offsets start at 0 and it fits a string array.
        ends = pc.cumulative_sum(pc.take(pc.fill_null(pc.binary_length(text), 0), indices))
        chunks, start = [], 0
        for end in pc.run_end_encode(pc.divide(ends, TEXT_LIMIT)).run_ends.to_pylist() if len(ends) else []:
            chunks.append(text.take(indices.slice(start, end - start)).cast(pa.string()))
            start = end
        columns.append(pa.chunked_array(chunks, pa.string()))
    return pa.Table.from_arrays(columns, schema=table.schema)


def is_sorted(points: pa.Table, columns: list[str]) -> bool:
    """Whether the rows already follow ``columns`` ascending, NaN after every number (as
    ``sort_by`` orders them): a few vectorised comparisons of neighbours instead of a sort of
    millions of rows when the data came in order (one run's steps, one file's points)."""
    import pyarrow.compute as pc

    n = points.num_rows
    if n < 2:
        return True
    ordered = None  # row i <= row i + 1 on the columns from this one to the last
    for name in reversed(columns):
        column = points.column(name)
        before, after = column.slice(0, n - 1), column.slice(1)
        less, equal = pc.less(before, after), pc.equal(before, after)
        if pa.types.is_floating(column.type):
            nan_before, nan_after = pc.is_nan(before), pc.is_nan(after)
            less = pc.or_(less, pc.and_(nan_after, pc.invert(nan_before)))
            equal = pc.or_(equal, pc.and_(nan_before, nan_after))
        less, equal = pc.fill_null(less, False), pc.fill_null(equal, False)
        ordered = pc.or_(less, equal) if ordered is None else pc.or_(less, pc.and_(equal, ordered))
    return bool(pc.all(ordered).as_py())


def summarize(points: pa.Table, *, presorted: bool = False, one_series: bool = False) -> pa.Table:
    """Per (run_id, key): the latest point by (step, timestamp, value) and the NaN-ignoring min/max.

    The output folds with any other summary of the same key by the same rules, which is what
    lets every flush write its own summary file. ``presorted`` says the points are already in
    (run_id, key, step, timestamp, value) order; ``one_series`` that they are all of one run
    and key.
    """
    import pyarrow.compute as pc  # imported on first use: it is a third of pyarrow's import time

    if presorted and one_series and points.num_rows:
        # One (run, key): the last row is the latest point, and min/max skip NaN unless every
        # value is NaN, which is what Arrow's min_max does - no grouping of millions of rows.
        extremes = pc.min_max(points.column("value"))
        last = points.slice(points.num_rows - 1, 1)
        return pa.Table.from_arrays(
            [
                last.column("run_id"),
                last.column("key"),
                last.column("step"),
                last.column("timestamp"),
                last.column("value"),
                pa.array([extremes["min"].as_py()], pa.float64()),
                pa.array([extremes["max"].as_py()], pa.float64()),
                pa.array([points.num_rows], pa.int64()),
            ],
            schema=layout.SCHEMAS[layout.METRIC_SUMMARIES],
        )
    ordered = points if presorted else points.sort_by(POINT_ORDER)
    # sort_by puts NaN after every number (at_end), matching DuckDB's "NaN is greatest".
    run_ids = ordered.column("run_id")
    keys = ordered.column("key")
    n = ordered.num_rows
    if n > 1:
        same_next = pc.and_(
            pc.equal(run_ids.slice(0, n - 1), run_ids.slice(1)), pc.equal(keys.slice(0, n - 1), keys.slice(1))
        )
        is_last = pa.concat_arrays([pc.invert(same_next).combine_chunks(), pa.array([True])])
    else:
        is_last = pa.array([True] * n)
    latest = ordered.filter(is_last)
    values = ordered.column("value")
    finite_or_inf = pc.if_else(pc.is_nan(values), pa.scalar(None, pa.float64()), values)
    grouped = (
        pa.table({"run_id": run_ids, "key": keys, "v": finite_or_inf, "all": values})
        .group_by(["run_id", "key"], use_threads=False)
        .aggregate([("v", "min"), ("v", "max"), ("all", "count")])
        .sort_by([("run_id", "ascending"), ("key", "ascending")])
    )
    min_v = pc.fill_null(grouped.column("v_min"), float("nan"))
    max_v = pc.fill_null(grouped.column("v_max"), float("nan"))
    return pa.Table.from_arrays(
        [
            latest.column("run_id"),
            latest.column("key"),
            latest.column("step"),
            latest.column("timestamp"),
            latest.column("value"),
            min_v,
            max_v,
            grouped.column("all_count"),
        ],
        schema=layout.SCHEMAS[layout.METRIC_SUMMARIES],
    )


_SUMMARY_ORDER = [
    ("run_id", "ascending"),
    ("key", "ascending"),
    ("latest_step", "ascending"),
    ("latest_timestamp", "ascending"),
    ("latest_value", "ascending"),
]


def fold_summaries(summaries: pa.Table) -> pa.Table:
    """Summary rows of one table folded to one row per (run_id, key), by ``summarize``'s rule.

    The latest point is the greatest (step, timestamp, value); min/max ignore NaN unless all
    are NaN; counts add up (the rows summarise disjoint sets of points: one writer's flushes).
    """
    import pyarrow.compute as pc

    ordered = summaries.sort_by(_SUMMARY_ORDER)
    n = ordered.num_rows
    if n == 0:
        return ordered
    run_ids, keys = ordered.column("run_id"), ordered.column("key")
    if n > 1:
        same_next = pc.and_(
            pc.equal(run_ids.slice(0, n - 1), run_ids.slice(1)), pc.equal(keys.slice(0, n - 1), keys.slice(1))
        )
        is_last = pa.concat_arrays([pc.invert(same_next).combine_chunks(), pa.array([True])])
    else:
        is_last = pa.array([True])
    latest = ordered.filter(is_last)

    def nan_to_null(column: pa.ChunkedArray) -> pa.ChunkedArray:
        return pc.if_else(pc.is_nan(column), pa.scalar(None, pa.float64()), column)

    grouped = (
        pa.table(
            {
                "run_id": run_ids,
                "key": keys,
                "lo": nan_to_null(ordered.column("min_value")),
                "hi": nan_to_null(ordered.column("max_value")),
                "n": ordered.column("value_count"),
            }
        )
        .group_by(["run_id", "key"], use_threads=False)
        .aggregate([("lo", "min"), ("hi", "max"), ("n", "sum")])
        .sort_by([("run_id", "ascending"), ("key", "ascending")])
    )
    return pa.Table.from_arrays(
        [
            latest.column("run_id"),
            latest.column("key"),
            latest.column("latest_step"),
            latest.column("latest_timestamp"),
            latest.column("latest_value"),
            pc.fill_null(grouped.column("lo_min"), float("nan")),
            pc.fill_null(grouped.column("hi_max"), float("nan")),
            grouped.column("n_sum"),
        ],
        schema=layout.SCHEMAS[layout.METRIC_SUMMARIES],
    )
