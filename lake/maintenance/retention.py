"""Retention: permanently purges runs that were soft-deleted longer ago than a window.

A purged run loses its rows in every table (runs, params, tags, metrics, metric_summaries) and
its artifact directory. Rows go by rewrite-then-remove: each part file holding a purged run's
rows is written again without them, and only then is the old file removed, so a concurrent
reader sees either version (or both, which the folds absorb) and never a gap.

Restores racing a purge: the state of every run is checked again after the rewrites and right
before anything is removed; a run restored (or deleted again, later) by then is kept. What
remains is the short window between that last check and the removals (typically well under a
second): a restore landing exactly there is lost - its restore row survives, but the run's
other rows and its artifacts are gone, so the run does not come back.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from runlake.core import damage, layout, writer
from runlake.core.lease import check_held, delete_quietly, maintenance_lease
from runlake.lake.connection import Connection
from runlake.lake.maintenance.common import (
    PartFile,
    Progress,
    compacted_file_id,
    human_bytes,
    list_files,
)
from runlake.lake.maintenance.compaction import quarantine_lines, resolve, resummarize_quarantined, set_aside
from runlake.lake.sql import q

DEFAULT_OLDER_THAN_S = 30 * 86_400
_RUN_TABLES = (layout.RUNS, layout.PARAMS, layout.TAGS, layout.METRICS, layout.METRIC_SUMMARIES)
_MAX_ATTEMPTS = 4


@dataclass
class RetentionReport:
    """What a retention pass purged (or, with ``dry_run``, would purge)."""

    cutoff_ms: int
    dry_run: bool
    runs: list[str] = field(default_factory=list)
    rows_removed: dict[str, int] = field(default_factory=dict)
    bytes_freed: int = 0
    artifact_failures: dict[str, str] = field(default_factory=dict)
    kept_restored: list[str] = field(default_factory=list)
    seconds: float = 0.0
    # Damaged files moved to <root>/_quarantine/ (a dry run only lists them, as unreadable)
    # and files unreadable for other reasons, left in place.
    quarantined: list[dict[str, str]] = field(default_factory=list)
    unreadable: list[dict[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """False when something could not be purged (a scheduler should hear about it)."""
        return not self.artifact_failures

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok, "runs_purged": len(self.runs)}

    def to_text(self) -> str:
        verb = "would purge" if self.dry_run else "purged"
        rows = sum(self.rows_removed.values())
        lines = [
            f"retention {verb} {len(self.runs):,} runs deleted before "
            f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(self.cutoff_ms / 1000))} UTC: "
            f"{rows:,} rows, {'about ' if self.dry_run else ''}{human_bytes(self.bytes_freed)} freed ({self.seconds:.1f} s)"
        ]
        lines += [f"  {table}: {n:,} rows" for table, n in self.rows_removed.items() if n]
        lines += [f"  kept {run_id}: restored while retention ran" for run_id in self.kept_restored]
        lines += [
            f"  FAILED {run_id}: artifacts not removed ({msg}); the run was kept"
            for run_id, msg in self.artifact_failures.items()
        ]
        lines += quarantine_lines(self.quarantined, self.unreadable)
        return "\n".join(lines)


def _eligible(fs: pafs.FileSystem, root: str, cutoff_ms: int) -> dict[str, str]:
    """Runs deleted at or before the cutoff, as the files say now: run id -> experiment id."""
    # A fresh connection in memory, so the state is read from the files now (a purge decides
    # from the files themselves, never from a published copy of the state).
    rows = Connection(fs, root, cache=False).rows(
        q(
            "SELECT run_id, experiment_id FROM runs WHERE lifecycle_stage = ? AND deleted_time <= ? ORDER BY run_id",
            layout.LIFECYCLE_DELETED,
            int(cutoff_ms),
        )
    )
    return {run_id: experiment_id for run_id, experiment_id in rows}


def purge(
    location: Any,
    older_than_s: float = DEFAULT_OLDER_THAN_S,
    *,
    dry_run: bool = False,
    now_ms: int | None = None,
    wait_s: float = 60.0,
    progress: bool = False,
    on_rewritten: Callable[[list[str]], None] | None = None,
) -> RetentionReport:
    """Purge runs deleted longer ago than ``older_than_s``.

    Args:
        location: the lake (a path, a URI, or a ``Lake``).
        older_than_s: the retention window in seconds (30 days by default).
        dry_run: report what would be purged and change nothing.
        now_ms: the current time (tests).
        wait_s: how long to wait for another maintenance job to finish.
        progress: draw a progress bar on stderr (only when it is a terminal).
        on_rewritten: called with the run ids about to be purged after the new files are
            written and before the final check (tests restore a run there).

    Returns:
        The runs purged, rows removed per table, bytes freed and per-run artifact failures.
    """
    from runlake.core.errors import InvalidArgument

    if older_than_s < 0:
        raise InvalidArgument(f"older_than must not be negative, got {older_than_s}")
    now = now_ms if now_ms is not None else layout.now_ms()
    # A window reaching back past the 64-bit millisecond range (``--older-than 1e23d``) is an
    # argument error like every other number beyond int64, not an overflow later on.
    if not math.isfinite(older_than_s) or now - older_than_s * 1000 < -(2**63):
        raise InvalidArgument(
            f"older_than reaches back beyond the 64-bit millisecond range, got {older_than_s:g} seconds"
        )
    fs, root = resolve(location)
    started = time.perf_counter()
    cutoff = now - int(older_than_s * 1000)
    report = RetentionReport(cutoff_ms=cutoff, dry_run=dry_run, rows_removed={t: 0 for t in _RUN_TABLES})
    if dry_run:
        _dry_run(fs, root, report)
    else:
        with maintenance_lease(fs, root, "retention", wait_s=wait_s):
            _purge(fs, root, report, progress, on_rewritten)
            # A quarantined summaries file held the summaries of runs that stay too: their
            # points are summarised again, so searches on their metrics still find them.
            _lost, again = resummarize_quarantined(fs, root, report.quarantined)
            report.quarantined += again.quarantined
            report.unreadable += again.unreadable
    report.seconds = time.perf_counter() - started
    return report


def _dry_run(fs: pafs.FileSystem, root: str, report: RetentionReport) -> None:
    targets = _eligible(fs, root, report.cutoff_ms)
    report.runs = sorted(targets)
    if not targets:
        return
    for attempt in range(_MAX_ATTEMPTS):
        try:
            counts = {t: 0 for t in _RUN_TABLES}
            freed = 0
            report.unreadable = []
            for table, _experiment_id, part in _files_of(fs, root, targets):
                try:
                    ids = _read(fs, table, [part], columns=["run_id"]).column("run_id")
                except Exception as exc:
                    if isinstance(exc, FileNotFoundError) or not damage.is_read_failure(exc):
                        raise
                    found = damage.damaged_file(part.path, table, exc)
                    report.unreadable.append({"path": found.path, "reason": found.describe()})
                    continue
                hit = pc.sum(pc.is_in(ids, value_set=pa.array(sorted(targets)))).as_py() or 0
                counts[table] += hit
                freed += int(part.size * hit / max(len(ids), 1))  # an estimate: the remainder is rewritten
            break
        except FileNotFoundError:
            if attempt == _MAX_ATTEMPTS - 1:
                raise  # a dry run holds no lease: a concurrent compaction moved files under it
    report.rows_removed = counts
    report.bytes_freed = freed + sum(_artifact_bytes(fs, root, e, r) for r, e in targets.items())


def _files_of(fs: pafs.FileSystem, root: str, targets: dict[str, str]) -> list[tuple[str, str, PartFile]]:
    experiments = set(targets.values())
    found = []
    for table in _RUN_TABLES:
        for experiment_id, files in list_files(fs, root, table).items():
            if experiment_id in experiments:
                found += [(table, experiment_id, f) for f in files]
    return found


def _read(fs: pafs.FileSystem, table: str, files: list[PartFile], columns: list[str] | None = None) -> pa.Table:
    dataset = ds.dataset([f.path for f in files], schema=layout.SCHEMAS[table], filesystem=fs, format="parquet")
    return dataset.to_table(columns=columns)


def _artifact_bytes(fs: pafs.FileSystem, root: str, experiment_id: str, run_id: str) -> int:
    selector = pafs.FileSelector(
        layout.LakePaths(root).run_artifact_dir(experiment_id, run_id), recursive=True, allow_not_found=True
    )
    return sum(i.size or 0 for i in fs.get_file_info(selector) if i.type == pafs.FileType.File)


def delete_artifact_dir(fs: pafs.FileSystem, path: str) -> None:
    """Remove a run's artifact directory (a seam: tests make it fail for one run)."""
    fs.delete_dir(path)


@dataclass
class _Rewrite:
    table: str
    source: PartFile
    output: str | None
    rows_in: int
    rows_out: int
    output_bytes: int


def _rewrite(fs: pafs.FileSystem, root: str, targets: dict[str, str], report: RetentionReport) -> list[_Rewrite]:
    """Write every file holding rows of ``targets`` again without them; returns what was written.

    A damaged file is moved to quarantine (this runs under the lease) and its rows, which no
    reader can see, are not purged: the report names it for a person to look at.
    """
    value_set = pa.array(sorted(targets))
    done: list[_Rewrite] = []
    for table, experiment_id, part in _files_of(fs, root, targets):
        try:
            ids = _read(fs, table, [part], columns=["run_id"]).column("run_id")
            if not pc.any(pc.is_in(ids, value_set=value_set)).as_py():
                continue
            rows = _read(fs, table, [part])
        except FileNotFoundError:
            continue  # a writer merged it meanwhile: the sweep after the purge reads the merged file
        except Exception as exc:
            if not damage.is_read_failure(exc):
                raise
            if not any(u["path"] == part.path for u in report.unreadable):
                set_aside(fs, root, [damage.damaged_file(part.path, table, exc)], report.quarantined, report.unreadable)
            continue
        keep = rows.filter(pc.invert(pc.is_in(rows.column("run_id"), value_set=value_set)))
        # The rewrite keeps the input's status: a raw metrics file stays raw, so compaction
        # still summarises its points once (its summary file may be missing after a crash).
        file_id = compacted_file_id() if part.compacted else layout.new_file_id()
        output = writer.write_part(fs, root, table, keep, experiment_id, sort=False, file_id=file_id)
        size = fs.get_file_info(output).size or 0 if output else 0
        done.append(_Rewrite(table, part, output, rows.num_rows, keep.num_rows, size))
    return done


def _discard(fs: pafs.FileSystem, rewrites: list[_Rewrite]) -> None:
    # The inputs are all still there, so removing the new files loses nothing.
    for item in rewrites:
        if item.output:
            delete_quietly(fs, item.output)


def _purge(
    fs: pafs.FileSystem,
    root: str,
    report: RetentionReport,
    progress: bool,
    on_rewritten: Callable[[list[str]], None] | None,
) -> None:
    targets = _eligible(fs, root, report.cutoff_ms)
    paths = layout.LakePaths(root)
    artifacts_done: dict[str, int] = {}
    rewrites: list[_Rewrite] = []
    for _attempt in range(_MAX_ATTEMPTS):
        if not targets:
            return
        rewrites = _rewrite(fs, root, targets, report)
        if on_rewritten is not None:
            on_rewritten(sorted(targets))
        # The last look at the state before anything is removed: keep runs restored meanwhile.
        still = _eligible(fs, root, report.cutoff_ms)
        changed = [r for r in targets if r not in still]
        if changed:
            report.kept_restored += sorted(changed)
            targets = {r: e for r, e in targets.items() if r in still}
            _discard(fs, rewrites)
            continue
        failed = {}
        check_held()
        with Progress("removing artifacts", len(targets), quiet=not progress) as bar:
            for run_id, experiment_id in sorted(targets.items()):
                bar.advance()
                if run_id in artifacts_done:
                    continue
                size = _artifact_bytes(fs, root, experiment_id, run_id)
                try:
                    delete_artifact_dir(fs, paths.run_artifact_dir(experiment_id, run_id))
                    artifacts_done[run_id] = size
                except FileNotFoundError:
                    artifacts_done[run_id] = 0
                except OSError as exc:
                    failed[run_id] = str(exc) or type(exc).__name__
                    continue
                # The MLflow plugin's documents of the run's inputs and outputs go with it.
                try:
                    fs.delete_dir(paths.run_documents_dir(run_id))
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    failed[run_id] = str(exc) or type(exc).__name__
        if failed:
            # Keep these runs whole (deleted, not purged) so the next pass retries them.
            report.artifact_failures.update(failed)
            targets = {r: e for r, e in targets.items() if r not in failed}
            _discard(fs, rewrites)
            continue
        break
    else:
        _discard(fs, rewrites)
        return
    check_held()
    for item in rewrites:
        if delete_quietly(fs, item.source.path):
            report.rows_removed[item.table] += item.rows_in - item.rows_out
            report.bytes_freed += item.source.size - item.output_bytes
    # Writers merge their own recent files without the lease: one may have merged a file that
    # held rows of these runs into a file this pass did not list. Sweep until none is left.
    for _sweep in range(_MAX_ATTEMPTS):
        leftovers = _rewrite(fs, root, targets, report)
        if not leftovers:
            break
        check_held()
        for item in leftovers:
            if delete_quietly(fs, item.source.path):
                report.rows_removed[item.table] += item.rows_in - item.rows_out
    report.runs = sorted(targets)
    report.bytes_freed += sum(artifacts_done.get(r, 0) for r in targets)
