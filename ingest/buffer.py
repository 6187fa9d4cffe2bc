"""In-memory buffer of rows waiting to be flushed, and the flush itself (pyarrow and stdlib only).

``log_metric`` appends five values to Python lists under a lock and returns: it never touches
the disk. A flush swaps the lists out and writes, per experiment partition, at most one part
file per table plus one file of metric summaries.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

from runlake.lake import layout, writer

# Write order inside one flush. Metric points go before their summaries, so a crash between
# the two leaves history without a summary (compaction rebuilds summaries from history),
# never a summary pointing at points that do not exist.
_FLUSH_ORDER = (layout.RUNS, layout.PARAMS, layout.TAGS, layout.METRICS)


@dataclass
class _MetricColumns:
    run_id: list[str] = field(default_factory=list)
    key: list[str] = field(default_factory=list)
    step: list[int] = field(default_factory=list)
    timestamp: list[int] = field(default_factory=list)
    value: list[float] = field(default_factory=list)
    chunks: list[pa.Table] = field(default_factory=list)  # columnar batches from log_batch
    chunk_rows: int = 0

    def __len__(self) -> int:
        return len(self.value) + self.chunk_rows

    def to_table(self) -> pa.Table:
        schema = layout.SCHEMAS[layout.METRICS]
        tables = list(self.chunks)
        if self.value:
            tables.append(
                pa.Table.from_arrays(
                    [
                        pa.array(self.run_id, pa.string()),
                        pa.array(self.key, pa.string()),
                        pa.array(self.step, pa.int64()),
                        pa.array(self.timestamp, pa.int64()),
                        pa.array(self.value, pa.float64()),
                    ],
                    schema=schema,
                )
            )
        return pa.concat_tables(tables) if len(tables) > 1 else tables[0]


class Buffer:
    """Rows of every table, grouped by experiment partition, waiting for the next flush."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._metrics: dict[str, _MetricColumns] = defaultdict(_MetricColumns)
        self._rows: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)

    def pending_points(self) -> int:
        with self.lock:
            return sum(len(m) for m in self._metrics.values())

    def add_metric(self, experiment_id: str, run_id: str, key: str, value: float, step: int, timestamp: int) -> int:
        """Buffer one point; returns the number of points now buffered for that experiment."""
        with self.lock:
            cols = self._metrics[experiment_id]
            cols.run_id.append(run_id)
            cols.key.append(key)
            cols.step.append(step)
            cols.timestamp.append(timestamp)
            cols.value.append(value)
            return len(cols)

    def add_metric_table(self, experiment_id: str, points: pa.Table) -> int:
        with self.lock:
            cols = self._metrics[experiment_id]
            cols.chunks.append(points)
            cols.chunk_rows += points.num_rows
            return len(cols)

    def add_rows(self, table: str, experiment_id: str, rows: list[dict[str, Any]]) -> None:
        with self.lock:
            self._rows[(table, experiment_id)].extend(rows)

    def _take(self) -> tuple[dict[str, _MetricColumns], dict[tuple[str, str], list[dict[str, Any]]]]:
        with self.lock:
            metrics, rows = self._metrics, self._rows
            self._metrics = defaultdict(_MetricColumns)
            self._rows = defaultdict(list)
        return metrics, rows

    def _put_back(self, metrics: dict[str, _MetricColumns], rows: dict[tuple[str, str], list[dict[str, Any]]]) -> None:
        # A failed flush (disk full, permissions) keeps its rows for the next try, ahead of newer rows.
        with self.lock:
            for experiment_id, cols in metrics.items():
                if len(cols):
                    self._metrics[experiment_id].chunks.insert(0, cols.to_table())
                    self._metrics[experiment_id].chunk_rows += len(cols)
            for key, items in rows.items():
                self._rows[key][:0] = items

    def flush(self, fs: pafs.FileSystem, root: str) -> int:
        """Write everything buffered; returns the number of files written.

        Flushes are serialised so a background flush and an explicit one never interleave
        their files for one experiment.
        """
        with self._flush_lock:
            metrics, rows = self._take()
            if not metrics and not rows:
                return 0
            try:
                return _write_all(fs, root, metrics, rows)
            except BaseException:
                self._put_back(metrics, rows)
                raise


def _write_all(
    fs: pafs.FileSystem,
    root: str,
    metrics: dict[str, _MetricColumns],
    rows: dict[tuple[str, str], list[dict[str, Any]]],
) -> int:
    written = 0
    experiments = sorted({e for (_, e) in rows} | set(metrics))
    exp_rows = rows.pop((layout.EXPERIMENTS, ""), None)
    if exp_rows:
        written += writer.write_part(fs, root, layout.EXPERIMENTS, writer.to_table(layout.EXPERIMENTS, exp_rows)) is not None
    for experiment_id in experiments:
        if not experiment_id:
            continue
        for table in _FLUSH_ORDER:
            if table == layout.METRICS:
                cols = metrics.get(experiment_id)
                if cols is None or not len(cols):
                    continue
                # One sort serves both: the file's order and the summary's "last point per key".
                points = cols.to_table().sort_by(_POINT_ORDER)
                written += writer.write_part(fs, root, layout.METRICS, points, experiment_id, sort=False) is not None
                written += (
                    writer.write_part(fs, root, layout.METRIC_SUMMARIES, summarize(points, presorted=True), experiment_id)
                    is not None
                )
                continue
            items = rows.get((table, experiment_id))
            if items:
                written += writer.write_part(fs, root, table, writer.to_table(table, items), experiment_id) is not None
        # Drop what was written so a failure in a later experiment does not write it twice.
        metrics.pop(experiment_id, None)
        for table in _FLUSH_ORDER:
            rows.pop((table, experiment_id), None)
    return written


_POINT_ORDER = [("run_id", "ascending"), ("key", "ascending"), ("step", "ascending"), ("timestamp", "ascending"), ("value", "ascending")]


def summarize(points: pa.Table, *, presorted: bool = False) -> pa.Table:
    """Per (run_id, key): the latest point by (step, timestamp, value) and the NaN-ignoring min/max.

    The output folds with any other summary of the same key by the same rules, which is what
    lets every flush write its own summary file. ``presorted`` says the points are already in
    (run_id, key, step, timestamp, value) order.
    """
    import pyarrow.compute as pc  # imported on first use: it is a third of pyarrow's import time

    ordered = points if presorted else points.sort_by(_POINT_ORDER)
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
