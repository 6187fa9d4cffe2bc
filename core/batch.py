"""In-memory buffer of rows waiting to be flushed, and the flush itself (pyarrow and stdlib only).

``log_metric`` appends five values to Python lists under a lock and returns: it never touches
the disk. A flush swaps the lists out and writes, per experiment partition, at most one part
file per table plus one file of metric summaries (and a second runs file for changes that must
land after the data, such as a run's end).

Readers in the same process see its writes at once: a process's buffers register here, and a
reader of the same lake flushes them before it lists files (``before_read``).
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

from runlake.core import layout, writer
from runlake.core import points as points_mod

# Write order inside one flush. Metric points go before their summaries, so a crash between
# the two leaves history without a summary (compaction rebuilds summaries from history),
# never a summary pointing at points that do not exist. Run rows marked ``after_data`` (a run's
# end) go last, so a run never reads FINISHED while its final points are still unwritten.
_AFTER_DATA = "runs+after_data"
_FLUSH_ORDER = (layout.RUNS, layout.PARAMS, layout.TAGS, layout.METRICS, _AFTER_DATA)


@dataclass(frozen=True)
class Written:
    """One part file a flush wrote."""

    table: str
    experiment_id: str
    path: str
    rows: int
    bytes: int


_readers_lock = threading.Lock()
_pending: dict[str, list[Callable[[], object]]] = {}


def register_pending(root: str, flush: Callable[[], object]) -> None:
    """Have ``before_read(root)`` call ``flush``: this process's rows for the lake become visible."""
    with _readers_lock:
        _pending.setdefault(root, []).append(flush)


def before_read(root: str) -> None:
    """Flush this process's buffered rows for a lake, so a reader here sees its own writes.

    A flush that fails leaves its rows buffered for the writer to retry and report; the reader
    then reads what is on disk.
    """
    with _readers_lock:
        flushes = list(_pending.get(root, ()))
    for flush in flushes:
        try:
            flush()
        except Exception:  # the writer owns its failures: it retries and reports them
            pass


@dataclass
class _MetricColumns:
    run_id: list[str] = field(default_factory=list)
    key: list[str] = field(default_factory=list)
    step: list[int] = field(default_factory=list)
    timestamp: list[int] = field(default_factory=list)
    value: list[float] = field(default_factory=list)
    chunks: list[pa.Table] = field(default_factory=list)  # columnar batches from log_batch
    chunk_rows: int = 0
    # The (run, key) series of the chunks, when each chunk said it holds one (None: unknown).
    series: set[bytes] | None = field(default_factory=set)

    def one_series(self) -> bool:
        """Whether every buffered point is of one run and one key (known from the chunks)."""
        return not self.value and self.series is not None and len(self.series) == 1

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
        self._writing = False  # a flush has taken rows and not finished writing them

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
        series = (points.schema.metadata or {}).get(points_mod.SERIES_METADATA)
        if points.schema.metadata:
            points = points.replace_schema_metadata(None)  # not written into the file
        with self.lock:
            cols = self._metrics[experiment_id]
            cols.chunks.append(points)
            cols.chunk_rows += points.num_rows
            if series is None:
                cols.series = None
            elif cols.series is not None:
                cols.series.add(series)
            return len(cols)

    def add_rows(self, table: str, experiment_id: str, rows: list[dict[str, Any]], *, after_data: bool = False) -> None:
        """Buffer rows of a table; ``after_data`` run rows are written after the flush's data."""
        key = _AFTER_DATA if after_data and table == layout.RUNS else table
        with self.lock:
            self._rows[(key, experiment_id)].extend(rows)

    def pending_rows(self) -> int:
        """Rows other than metric points waiting (runs, params, tags, experiments)."""
        with self.lock:
            return sum(len(items) for items in self._rows.values())

    def pending(self) -> bool:
        """Whether anything waits to be written, or is being written by a flush right now.

        A reader that flushes only when this says so must also wait for rows another thread's
        flush has taken but not yet written: they are in neither the buffer nor the lake
        (a server thread answered "run not found" for a run it had just created).
        """
        with self.lock:
            return self._writing or bool(self._rows) or any(len(m) for m in self._metrics.values())

    def _take(self) -> tuple[dict[str, _MetricColumns], dict[tuple[str, str], list[dict[str, Any]]]]:
        with self.lock:
            metrics, rows = self._metrics, self._rows
            self._metrics = defaultdict(_MetricColumns)
            self._rows = defaultdict(list)
            self._writing = bool(rows) or any(len(m) for m in metrics.values())
        return metrics, rows

    def _put_back(self, metrics: dict[str, _MetricColumns], rows: dict[tuple[str, str], list[dict[str, Any]]]) -> None:
        # A failed flush (disk full, permissions) keeps its rows for the next try, ahead of newer rows.
        with self.lock:
            for experiment_id, cols in metrics.items():
                if len(cols):
                    target = self._metrics[experiment_id]
                    target.chunks.insert(0, cols.to_table())
                    target.chunk_rows += len(cols)
                    if cols.value or cols.series is None or target.series is None:
                        target.series = None  # points of unknown series came back
                    else:
                        target.series |= cols.series
            for key, items in rows.items():
                self._rows[key][:0] = items

    def flush(self, fs: pafs.FileSystem, root: str) -> list[Written]:
        """Write everything buffered; returns the files written.

        Flushes are serialised so a background flush and an explicit one never interleave
        their files for one experiment.
        """
        with self._flush_lock:
            metrics, rows = self._take()
            if not metrics and not rows:
                return []
            try:
                return _write_all(fs, root, metrics, rows)
            except BaseException:
                self._put_back(metrics, rows)
                raise
            finally:
                with self.lock:
                    self._writing = False


def _write_all(
    fs: pafs.FileSystem,
    root: str,
    metrics: dict[str, _MetricColumns],
    rows: dict[tuple[str, str], list[dict[str, Any]]],
) -> list[Written]:
    written: list[Written] = []

    def write(table: str, data: pa.Table, experiment_id: str, *, sort: bool = True, one: bool = False) -> None:
        path = writer.write_part(fs, root, table, data, experiment_id or None, sort=sort, one_series=one)
        if path is not None:
            written.append(Written(table, experiment_id, path, data.num_rows, fs.get_file_info(path).size or 0))

    experiments = sorted({e for (_, e) in rows} | set(metrics))
    exp_rows = rows.get((layout.EXPERIMENTS, ""))
    if exp_rows:
        write(layout.EXPERIMENTS, writer.to_table(layout.EXPERIMENTS, exp_rows), "")
    rows.pop((layout.EXPERIMENTS, ""), None)  # written: a later failure must not write it twice
    for experiment_id in experiments:
        if not experiment_id:
            continue
        for table in _FLUSH_ORDER:
            if table == layout.METRICS:
                cols = metrics.get(experiment_id)
                if cols is None or not len(cols):
                    continue
                # One sort serves both: the file's order and the summary's "last point per key".
                points = cols.to_table()
                one = cols.one_series()
                # One series: run_id and key are the same on every row, so only the numbers
                # need comparing (the string columns are most of a 10 M-point check).
                order = [name for name, _order in points_mod.POINT_ORDER][2 if one else 0 :]
                if not points_mod.is_sorted(points, order):
                    points = points.sort_by(points_mod.POINT_ORDER)
                write(layout.METRICS, points, experiment_id, sort=False, one=one)
                summary = points_mod.summarize(points, presorted=True, one_series=one)
                write(layout.METRIC_SUMMARIES, summary, experiment_id)
                continue
            items = rows.get((table, experiment_id))
            if items:
                target = layout.RUNS if table == _AFTER_DATA else table
                write(target, writer.to_table(target, items), experiment_id)
        # Drop what was written so a failure in a later experiment does not write it twice.
        metrics.pop(experiment_id, None)
        for table in _FLUSH_ORDER:
            rows.pop((table, experiment_id), None)
    return written
