"""Compaction: merges the small part files ingest leaves (one per flush) into large sorted files.

Safe while training jobs write and readers query, because of the lake's two rules: files are
immutable, and every table's current state is a fold that absorbs duplicate rows. For each
partition, compaction reads small files older than a grace period, writes their rows as one
file sorted by the table's sort keys (so run and key filters skip row groups), and only then
removes the inputs. A reader that lists between the write and the removal sees every row twice,
which the folds absorb (metric points are DISTINCT, summaries fold by max/min, runs, params,
tags and experiments by latest/first version); a reader whose listed file vanished retries on a
fresh listing. Files written after compaction listed the directory are never touched.

Metric summaries are rebuilt from the points each merge covers and folded to one row per
(run_id, key), which also heals a writer that died between its metrics file and its summary.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from runlake.core import damage, layout, writer
from runlake.core.lease import check_held, delete_quietly, maintenance_lease
from runlake.lake import state_cache, views
from runlake.lake.maintenance.common import (
    PartFile,
    Progress,
    compacted_file_id,
    human_bytes,
    list_files,
    list_tmp_files,
)

DEFAULT_GRACE_S = 600.0
DEFAULT_TMP_MAX_AGE_S = 3600.0
# Bounds the rows held in memory per merge: 64 MiB of small Parquet files is a few million
# metric points, a few hundred MB as Arrow columns.
DEFAULT_TARGET_BYTES = 64 * 1024 * 1024

# The summary of a set of points, by the rule the latest_metrics view folds with.
_SUMMARIZE_POINTS_SQL = (
    f"SELECT run_id, key, {views.summary_aggregates('step', 'timestamp', 'value', 'value', 'value')}, "
    "count(*) AS value_count FROM _points GROUP BY run_id, key"
)
# Summaries of overlapping point sets fold by the same rule. value_count folds by max: a
# rebuilt summary overlaps the flush summaries it replaces, so a sum would count points twice.
_FOLD_SUMMARIES_SQL = (
    "SELECT run_id, key, l.s AS latest_step, l.t AS latest_timestamp, l.v AS latest_value, "
    "min_value, max_value, value_count FROM ("
    f"SELECT run_id, key, {views.FOLD_SUMMARIES}, "
    "max(value_count) AS value_count FROM _summaries GROUP BY run_id, key) "
    "ORDER BY run_id, key"
)


@dataclass
class TableCounts:
    """Files and bytes of one table."""

    files: int = 0
    bytes: int = 0


@dataclass
class CompactionReport:
    """What one compaction did, table by table."""

    before: dict[str, TableCounts] = field(default_factory=dict)
    after: dict[str, TableCounts] = field(default_factory=dict)
    files_merged: int = 0
    files_written: int = 0
    duplicate_points_removed: int = 0
    tmp_files_removed: int = 0
    tmp_bytes_removed: int = 0
    seconds: float = 0.0
    # Damaged part files moved to <root>/_quarantine/ (path, new path, reason) and files that
    # could not be read for other reasons (permissions), left in place and not merged.
    quarantined: list[dict[str, str]] = field(default_factory=list)
    unreadable: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_text(self) -> str:
        header = f"{'table':<18} {'files before':>12} {'files after':>12} {'bytes before':>13} {'bytes after':>13}"
        lines = [header, "-" * len(header)]
        for table in layout.ALL_TABLES:
            b, a = self.before.get(table, TableCounts()), self.after.get(table, TableCounts())
            lines.append(
                f"{table:<18} {b.files:>12,} {a.files:>12,} {human_bytes(b.bytes):>13} {human_bytes(a.bytes):>13}"
            )
        lines.append(
            f"merged {self.files_merged:,} files into {self.files_written:,}; "
            f"removed {self.duplicate_points_removed:,} duplicate metric points and "
            f"{self.tmp_files_removed:,} abandoned temporary files ({human_bytes(self.tmp_bytes_removed)}) "
            f"in {self.seconds:.1f} s"
        )
        lines += quarantine_lines(self.quarantined, self.unreadable)
        return "\n".join(lines)


def quarantine_lines(quarantined: list[dict[str, str]], unreadable: list[dict[str, str]]) -> list[str]:
    """Report lines for damaged files moved to quarantine and unreadable files left alone."""
    lines = []
    if quarantined:
        lines.append(
            f"quarantined {len(quarantined):,} damaged file(s) (moved, not deleted; their readable rows stay):"
        )
        lines += [f"  {q['path']} -> {q['quarantined_to']}: {q['reason']}" for q in quarantined]
    if unreadable:
        lines.append(f"skipped {len(unreadable):,} unreadable file(s), left in place:")
        lines += [f"  {u['path']}: {u['reason']}" for u in unreadable]
    return lines


def set_aside(
    fs: pafs.FileSystem,
    root: str,
    files: list[damage.DamagedFile],
    quarantined: list[dict[str, str]],
    unreadable: list[dict[str, str]],
) -> None:
    """Quarantine the damaged files among ``files`` and note the unreadable ones (a report's lists)."""
    for found in files:
        if not found.damaged:
            unreadable.append({"path": found.path, "reason": found.reason})
            continue
        target = damage.quarantine(fs, root, found.path, found.reason)
        if target is not None:
            damage.warn(found)
            quarantined.append({"path": found.path, "quarantined_to": target, "reason": found.reason})


def read_readable(
    fs: pafs.FileSystem, table: str, files: list[PartFile]
) -> tuple[pa.Table, list[PartFile], list[damage.DamagedFile]]:
    """The rows of every readable file of ``files``, which files those are, and the ones that failed.

    Raises:
        FileNotFoundError: a file vanished (a writer merged it meanwhile).
    """

    def read(group: list[PartFile]) -> pa.Table:
        # Read with the table's schema, so files written before a column existed still merge.
        return ds.dataset(
            [f.path for f in group], schema=layout.SCHEMAS[table], filesystem=fs, format="parquet"
        ).to_table()

    try:
        return read(files), files, []
    except Exception as exc:
        if isinstance(exc, FileNotFoundError) or not damage.is_read_failure(exc):
            raise
    # One file spoils the whole read: find it by reading each alone, keep every other one.
    parts, good, bad = [], [], []
    for part in files:
        try:
            parts.append(read([part]))
            good.append(part)
        except Exception as exc:
            if isinstance(exc, FileNotFoundError) or not damage.is_read_failure(exc):
                raise
            bad.append(damage.damaged_file(part.path, table, exc))
    empty = layout.SCHEMAS[table].empty_table()
    return (pa.concat_tables(parts) if parts else empty), good, bad


def resolve(location: Any) -> tuple[pafs.FileSystem, str]:
    """The filesystem and root of an existing lake given as a path, a URI or an object with fs and root.

    Raises:
        InvalidArgument: nothing exists there (a typo must not create an empty lake).
    """
    if hasattr(location, "fs") and hasattr(location, "root"):
        fs, root = location.fs, location.root
    else:
        fs, root = layout.resolve_lake(os.fspath(location))
    if fs.get_file_info(root).type == pafs.FileType.NotFound:
        from runlake.core.errors import InvalidArgument

        raise InvalidArgument(f"No lake at '{root}'")
    return fs, root


def _counts(fs: pafs.FileSystem, root: str) -> dict[str, TableCounts]:
    result = {}
    for table in layout.ALL_TABLES:
        infos = writer.list_parts(fs, root, table)
        result[table] = TableCounts(len(infos), sum(i.size or 0 for i in infos))
    return result


def compact(
    location: Any,
    *,
    grace_s: float = DEFAULT_GRACE_S,
    tmp_max_age_s: float = DEFAULT_TMP_MAX_AGE_S,
    target_bytes: int = DEFAULT_TARGET_BYTES,
    wait_s: float = 60.0,
    progress: bool = False,
    on_written: Callable[[str], None] | None = None,
) -> CompactionReport:
    """Compact a lake's part files; safe while writers and readers work.

    Args:
        location: the lake (a path, a URI, or a ``Lake``).
        grace_s: leave files younger than this alone (they may be read right now, and more
            small files for the same runs are likely to follow).
        tmp_max_age_s: remove temporary files of crashed writers older than this.
        target_bytes: the size merged files aim for; files at least half as large are left
            alone once they went through compaction.
        wait_s: how long to wait for another maintenance job to finish.
        progress: draw a progress bar on stderr (only when it is a terminal).
        on_written: called with each merged file's path after it is written and before its
            inputs are removed (tests use it to kill compaction at the worst moment).

    Returns:
        A report of files and bytes per table before and after.

    Raises:
        MaintenanceBusy: another compaction or retention job held the lake for ``wait_s``.
    """
    fs, root = resolve(location)
    started = time.perf_counter()
    report = CompactionReport()
    with maintenance_lease(fs, root, "compact", wait_s=wait_s):
        report.before = _counts(fs, root)
        _remove_tmp_files(fs, root, tmp_max_age_s, report)
        _set_aside_damaged(fs, root, report)
        lost_summaries = summaries_partitions(root, [q["path"] for q in report.quarantined])
        cutoff = time.time() - grace_s
        job = _Job(fs, root, cutoff, target_bytes, report, on_written)
        metric_files = list_files(fs, root, layout.METRICS)
        summary_files = list_files(fs, root, layout.METRIC_SUMMARIES)
        row_tables = {t: list_files(fs, root, t) for t in (layout.EXPERIMENTS, layout.RUNS, layout.PARAMS, layout.TAGS)}
        partitions = sorted({p for p in [*metric_files, *summary_files] if p is not None})
        total = len(partitions) + sum(len(groups) for groups in row_tables.values())
        with Progress("compacting partitions", total, quiet=not progress) as bar:
            for experiment_id in partitions:
                job.metrics(
                    experiment_id,
                    metric_files.get(experiment_id, []),
                    summary_files.get(experiment_id, []),
                    resummarize=experiment_id in lost_summaries,
                )
                bar.advance()
            for table, groups in row_tables.items():
                for group_id, files in sorted(groups.items(), key=lambda kv: kv[0] or ""):
                    job.rows(table, group_id, files)
                    bar.advance()
        report.after = _counts(fs, root)
    report.seconds = time.perf_counter() - started
    return report


def summaries_partitions(root: str, paths: list[str]) -> set[str]:
    """The experiments whose metric summaries lost a file among ``paths`` (moved to quarantine)."""
    prefix = layout.LakePaths(root).table_dir(layout.METRIC_SUMMARIES).rstrip("/") + "/"
    return {e for p in paths if p.startswith(prefix) and (e := writer.partition_of(p)) is not None}


def resummarize_quarantined(
    fs: pafs.FileSystem, root: str, quarantined: list[dict[str, Any]]
) -> tuple[list[str], CompactionReport]:
    """After ``quarantined`` files were moved aside (under the maintenance lease): summarise again
    the points of each experiment that lost a summaries file among them, since its runs'
    latest/min/max were in it while their points stay. Returns those experiments and the
    report of that pass (files it found damaged and quarantined in turn)."""
    lost = summaries_partitions(root, [q["path"] for q in quarantined])
    again = CompactionReport()
    resummarize(fs, root, lost, again)
    return sorted(lost), again


def resummarize(fs: pafs.FileSystem, root: str, experiment_ids: set[str], report: CompactionReport) -> None:
    """Summarise again the metric points of these partitions (a summaries file of each was
    quarantined). The caller holds the maintenance lease. The new summaries fold with the
    ones left (latest by step and time, min, max), so nothing is counted twice."""
    if not experiment_ids:
        return
    # A cutoff of 0 merges nothing and removes no summaries file: only new summaries are written.
    job = _Job(fs, root, 0.0, DEFAULT_TARGET_BYTES, report, None)
    metric_files = list_files(fs, root, layout.METRICS)
    summary_files = list_files(fs, root, layout.METRIC_SUMMARIES)
    for experiment_id in sorted(experiment_ids):
        job.metrics(
            experiment_id,
            metric_files.get(experiment_id, []),
            summary_files.get(experiment_id, []),
            resummarize=True,
        )


def _remove_tmp_files(fs: pafs.FileSystem, root: str, max_age_s: float, report: CompactionReport) -> None:
    cutoff = time.time() - max_age_s
    for info in list_tmp_files(fs, root):
        # A writer renames its temporary file within seconds; one this old belongs to a
        # process that died mid-write and will never be renamed.
        if info.mtime is not None and info.mtime.timestamp() <= cutoff and delete_quietly(fs, info.path):
            report.tmp_files_removed += 1
            report.tmp_bytes_removed += info.size or 0


def _set_aside_damaged(fs: pafs.FileSystem, root: str, report: CompactionReport) -> None:
    """Quarantine every part file whose footer does not read, merged this pass or not.

    A footer read per file is cheap next to the merges (and file counts stay bounded); a
    corrupt page behind a good footer is found when its file is merged.
    """
    found = []
    for table in layout.ALL_TABLES:
        for info in writer.list_parts(fs, root, table):
            bad = damage.check_file(fs, info.path, table, full=False)
            if bad is not None:
                found.append(bad)
    set_aside(fs, root, found, report.quarantined, report.unreadable)


def plan_groups(files: list[PartFile], cutoff: float, target_bytes: int, *, raw_alone: bool) -> list[list[PartFile]]:
    """Which files to merge together: old enough, small (or never compacted), about target size.

    Args:
        files: one partition's files, in name (time) order.
        cutoff: only files last modified at or before this epoch second.
        target_bytes: the total input size a group aims for.
        raw_alone: a single never-compacted file is worth rewriting on its own (metric points
            get deduplicated, sorted and summarised once).
    """
    candidates = [
        f for f in files if f.mtime <= cutoff and (f.size < target_bytes // 2 or (raw_alone and not f.compacted))
    ]
    groups: list[list[PartFile]] = []
    current: list[PartFile] = []
    size = 0
    for part in candidates:
        if current and size + part.size > target_bytes:
            groups.append(current)
            current, size = [], 0
        current.append(part)
        size += part.size
    if current:
        groups.append(current)
    return [g for g in groups if len(g) > 1 or (raw_alone and not g[0].compacted)]


class _Job:
    """One compaction pass: the shared state of every partition's merge."""

    def __init__(
        self,
        fs: pafs.FileSystem,
        root: str,
        cutoff: float,
        target_bytes: int,
        report: CompactionReport,
        on_written: Callable[[str], None] | None,
    ) -> None:
        self.fs = fs
        self.root = root
        self.cutoff = cutoff
        self.target_bytes = target_bytes
        self.report = report
        self.on_written = on_written
        self.con = state_cache.new_connection()

    def _read(self, table: str, files: list[PartFile]) -> tuple[pa.Table, list[PartFile]]:
        """The rows of the readable files and which files those are (only they may be removed).

        Damaged files go to quarantine; files unreadable for other reasons stay where they are.
        """
        rows, readable, bad = read_readable(self.fs, table, files)
        set_aside(self.fs, self.root, bad, self.report.quarantined, self.report.unreadable)
        return rows, readable

    def _sql(self, sql: str, **tables: pa.Table) -> pa.Table:
        for name, table in tables.items():
            self.con.register(name, table)
        try:
            return self.con.sql(sql).to_arrow_table()
        finally:
            for name in tables:
                self.con.unregister(name)

    def _write(self, table: str, data: pa.Table, experiment_id: str | None) -> str | None:
        path = writer.write_part(
            self.fs,
            self.root,
            table,
            writer.to_table(table, data),
            experiment_id,
            sort=False,
            file_id=compacted_file_id(),
        )
        if path is not None:
            self.report.files_written += 1
            if self.on_written is not None:
                self.on_written(path)
        return path

    def _remove(self, files: list[PartFile]) -> None:
        if files:
            check_held()
        for part in files:
            delete_quietly(self.fs, part.path)
        self.report.files_merged += len(files)

    def rows(self, table: str, experiment_id: str | None, files: list[PartFile]) -> None:
        """Merge small files of a versioned table, keeping every distinct row.

        Keeping superseded versions (and tag tombstones) keeps the latest-wins result
        identical by construction; only exact duplicate rows, which every fold ignores, go.
        """
        for group in plan_groups(files, self.cutoff, self.target_bytes, raw_alone=False):
            order = ", ".join(
                f"{column} {'ASC' if d == 'ascending' else 'DESC'}" for column, d in layout.SORT_KEYS[table]
            )
            try:
                rows, readable = self._read(table, group)
            except FileNotFoundError:
                continue  # a writer merged some of these meanwhile; nothing written yet: skip them
            merged = self._sql(f"SELECT DISTINCT * FROM _rows ORDER BY {order}", _rows=rows)
            self._write(table, merged, experiment_id)
            self._remove(readable)

    def _summarise(self, points: pa.Table) -> pa.Table:
        """One summary row per (run_id, key) of distinct ``points``."""
        return self._sql(
            "SELECT run_id, key, l.s AS latest_step, l.t AS latest_timestamp, l.v AS latest_value, "
            f"min_value, max_value, value_count FROM ({_SUMMARIZE_POINTS_SQL})",
            _points=points,
        )

    def metrics(
        self,
        experiment_id: str,
        metric_files: list[PartFile],
        summary_files: list[PartFile],
        *,
        resummarize: bool = False,
    ) -> None:
        """Merge one partition's metric points and fold its summaries to one row per (run, key).

        ``resummarize``: a summaries file of this partition was quarantined, so the points of
        the files not merged now are summarised too (their runs' latest, min and max would be
        missing from searches and the runs table, with the points still there).
        """
        merged_inputs: list[PartFile] = []
        rebuilt: list[pa.Table] = []
        for group in plan_groups(metric_files, self.cutoff, self.target_bytes, raw_alone=True):
            try:
                points, group = self._read(layout.METRICS, group)
            except FileNotFoundError:
                continue  # a writer merged some of these meanwhile; nothing written yet: skip them
            # Set semantics, exactly as the metrics view (DISTINCT in DuckDB, where NaN equals NaN).
            merged = self._sql(
                "SELECT DISTINCT * FROM _points ORDER BY run_id, key, step, timestamp, value", _points=points
            )
            self.report.duplicate_points_removed += points.num_rows - merged.num_rows
            rebuilt.append(self._summarise(merged))
            self._write(layout.METRICS, merged, experiment_id)
            merged_inputs += group
        merged_paths = {f.path for f in merged_inputs}
        rest = [f for f in metric_files if f.path not in merged_paths] if resummarize else []
        if rest:
            try:
                points, _readable = self._read(layout.METRICS, rest)
                rebuilt.append(self._summarise(self._sql("SELECT DISTINCT * FROM _points", _points=points)))
            except FileNotFoundError:
                pass  # merged by a writer meanwhile: that merge wrote their summaries
        old_summaries = [f for f in summary_files if f.mtime <= self.cutoff]
        if rebuilt or len(old_summaries) > 1:
            parts = []
            if old_summaries:
                try:
                    summaries, old_summaries = self._read(layout.METRIC_SUMMARIES, old_summaries)
                    parts.append(summaries)
                except FileNotFoundError:
                    old_summaries = []  # merged meanwhile: the rebuilt summaries fold with them later
            rows = pa.concat_tables([*parts, *[writer.to_table(layout.METRIC_SUMMARIES, r) for r in rebuilt]])
            # Written before any metrics input is removed: a crash in between leaves the raw
            # files, which the next pass merges and summarises again.
            self._write(layout.METRIC_SUMMARIES, self._sql(_FOLD_SUMMARIES_SQL, _summaries=rows), experiment_id)
            self._remove(old_summaries)
        self._remove(merged_inputs)
