"""``runlake doctor``: finds damaged part files, stale temporaries and leases; ``--repair`` quarantines them.

Every finished part file is read (whole, or only its footer with ``full=False``); a file that
does not read is damaged (``runlake.core.damage``). Temporaries of writers that died mid-write
and lease files of jobs that died are stale. Repair moves all of them to ``<root>/_quarantine/``
under the maintenance lease - nothing is deleted - so the lake reads clean again and a person
can still look at what was moved.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow.fs as pafs

from runlake.core import damage, layout, rows, vocab, writer
from runlake.core.batch import Buffer
from runlake.core.lease import maintenance_lease, mark_if_silent, stale_leases
from runlake.lake.maintenance.common import human_bytes, list_tmp_files
from runlake.lake.maintenance.compaction import DEFAULT_TMP_MAX_AGE_S, resolve, resummarize_quarantined
from runlake.lake.sql import q


@dataclass
class DoctorReport:
    """What ``diagnose`` found and, with ``repair``, what it moved."""

    files_checked: int = 0
    damaged: list[dict[str, Any]] = field(default_factory=list)
    unreadable: list[dict[str, Any]] = field(default_factory=list)
    stale_temporaries: list[dict[str, Any]] = field(default_factory=list)
    stale_leases: list[dict[str, Any]] = field(default_factory=list)
    # Runs with a name but no ``mlflow.runName`` tag (logged before runlake wrote the tag): a
    # search on the tag, and MLflow's tools, do not find them by name until it is written.
    runs_without_name_tag: int = 0
    name_tags_written: int = 0
    repaired: bool = False
    quarantined: list[dict[str, str]] = field(default_factory=list)
    # Experiments whose metric points were summarised again (a summaries file was quarantined).
    summaries_rebuilt: list[str] = field(default_factory=list)
    in_quarantine: int = 0
    seconds: float = 0.0

    @property
    def problems(self) -> int:
        return (
            len(self.damaged)
            + len(self.unreadable)
            + len(self.stale_temporaries)
            + len(self.stale_leases)
            + (self.runs_without_name_tag - self.name_tags_written)
        )

    @property
    def ok(self) -> bool:
        """True when nothing is wrong now: no problem found, or every one repaired."""
        if self.repaired:
            return not self.unreadable  # every other problem was moved (or went away meanwhile)
        return self.problems == 0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok, "problems": self.problems}

    def to_text(self) -> str:
        lines = [f"checked {self.files_checked:,} part files in {self.seconds:.1f} s"]
        for item in self.damaged:
            lines.append(f"DAMAGED     {item['path']}: {item['reason']}")
        for item in self.unreadable:
            lines.append(f"UNREADABLE  {item['path']}: {item['reason']} (not moved: fix access, then run again)")
        for item in self.stale_temporaries:
            lines.append(f"STALE TEMP  {item['path']} ({human_bytes(item['size'])}, {item['age_s'] / 3600:.1f} h old)")
        for item in self.stale_leases:
            lines.append(f"STALE LEASE {item['path']}")
        if self.runs_without_name_tag:
            lines.append(
                f"NO NAME TAG {self.runs_without_name_tag:,} run(s) have a name but no mlflow.runName tag "
                "(logged before runlake wrote it): searches on the tag miss them"
            )
        if self.repaired:
            lines.append(f"quarantined {len(self.quarantined):,} file(s) (moved, not deleted):")
            lines += [f"  {q['path']} -> {q['quarantined_to']}" for q in self.quarantined]
            if self.summaries_rebuilt:
                lines.append(
                    f"summarised the metric points of {len(self.summaries_rebuilt):,} experiment(s) again "
                    "(their summaries file was quarantined)"
                )
            if self.name_tags_written:
                lines.append(f"wrote the mlflow.runName tag of {self.name_tags_written:,} run(s)")
        elif self.problems:
            lines.append(
                "run `runlake doctor --repair` to move them to the lake's _quarantine/ folder"
                + (" and write the missing name tags" if self.runs_without_name_tag else "")
            )
        if not self.problems:
            lines.append("no problems found")
        if self.in_quarantine:
            lines.append(f"{self.in_quarantine:,} file(s) in quarantine; delete them once you have looked at them")
        return "\n".join(lines)


def diagnose(
    location: Any,
    *,
    repair: bool = False,
    full: bool = True,
    tmp_max_age_s: float = DEFAULT_TMP_MAX_AGE_S,
    wait_s: float = 60.0,
) -> DoctorReport:
    """Check every part file of a lake; with ``repair``, quarantine what is damaged or stale.

    Args:
        location: the lake (a path, a URI, or a ``Lake``).
        repair: move damaged files, stale temporaries and stale leases to ``<root>/_quarantine/``.
        full: read each file whole (finds a corrupt page behind a good footer); False reads
            footers only (fast on a large lake).
        tmp_max_age_s: temporaries older than this belong to a writer that died.
        wait_s: with ``repair``, how long to wait for another maintenance job.

    Raises:
        MaintenanceBusy: with ``repair``, another maintenance job held the lake for ``wait_s``.
    """
    fs, root = resolve(location)
    started = time.perf_counter()
    report = DoctorReport()
    for table in layout.ALL_TABLES:
        for info in writer.list_parts(fs, root, table):
            report.files_checked += 1
            found = damage.check_file(fs, info.path, table, full=full)
            if found is not None:
                target = report.damaged if found.damaged else report.unreadable
                target.append(found.to_dict())
    cutoff = time.time() - tmp_max_age_s
    for info in list_tmp_files(fs, root):
        mtime = info.mtime.timestamp() if info.mtime is not None else 0.0
        if mtime <= cutoff:
            report.stale_temporaries.append(
                {"path": info.path, "size": info.size or 0, "age_s": round(time.time() - mtime)}
            )
    report.stale_leases = [{"path": info.path} for info in stale_leases(fs, root)]
    unnamed = _runs_without_name_tag(fs, root)
    report.runs_without_name_tag = len(unnamed)
    if repair and report.problems:
        _repair(fs, root, report, wait_s)
        if unnamed:
            # Checked again just before writing: a run renamed meanwhile has its tag already
            # (a rename writes it), and its old name must not come back in the tag.
            still = set(_runs_without_name_tag(fs, root))
            writing = [run for run in unnamed if run in still]
            _write_name_tags(fs, root, writing)
            report.runs_without_name_tag = report.name_tags_written = len(writing)
    report.in_quarantine = len(damage.list_quarantine(fs, root))
    report.seconds = time.perf_counter() - started
    return report


def _repair(fs: pafs.FileSystem, root: str, report: DoctorReport, wait_s: float) -> None:
    report.repaired = True

    def move(path: str, reason: str) -> None:
        target = damage.quarantine(fs, root, path, reason)
        if target is not None:
            report.quarantined.append({"path": path, "quarantined_to": target, "reason": reason})

    # Dead leases first: taking the lease would otherwise delete them (they are not data,
    # but repair promises to move, never delete).
    for item in report.stale_leases:
        # Checked again: its owner may have beaten since the report (then it is not stale). A
        # silent owner, if only frozen, finds the marker and stops.
        if mark_if_silent(fs, item["path"]) != "alive":
            move(item["path"], "stale maintenance lease: its job died")
    with maintenance_lease(fs, root, "doctor", wait_s=wait_s):
        for item in report.damaged:
            # Checked again under the lease: a file may have been merged away meanwhile.
            if fs.get_file_info(item["path"]).type != pafs.FileType.NotFound:
                move(item["path"], item["reason"])
        for item in report.stale_temporaries:
            move(item["path"], "temporary file of a writer that died mid-write")
        # A quarantined summaries file held the latest/min/max of runs whose points are still
        # in the lake: summarise those points again, or searches on their metrics miss them.
        report.summaries_rebuilt, again = resummarize_quarantined(fs, root, report.quarantined)
        report.quarantined += again.quarantined
        report.unreadable += [{"path": u["path"], "reason": u["reason"]} for u in again.unreadable]


def _runs_without_name_tag(fs: pafs.FileSystem, root: str) -> list[tuple[str, str, str]]:
    """``(run_id, experiment_id, run_name)`` of runs whose name no ``mlflow.runName`` tag carries."""
    from runlake.lake.connection import Connection

    found = Connection(fs, root, cache=False).rows(  # the files themselves, as a check should
        q(
            "SELECT r.run_id, r.experiment_id, r.run_name FROM runs r WHERE r.run_name IS NOT NULL AND NOT EXISTS"
            " (SELECT 1 FROM tags t WHERE t.run_id = r.run_id AND t.key = ?) ORDER BY r.run_id",
            vocab.RUN_NAME_TAG,
        )
    )
    return [(str(r), str(e), str(n)) for r, e, n in found]


def _write_name_tags(fs: pafs.FileSystem, root: str, runs: list[tuple[str, str, str]]) -> None:
    """Write each run's ``mlflow.runName`` tag with the name it has (appended rows, as a rename writes)."""
    batch = Buffer()
    for run_id, experiment_id, name in runs:
        batch.add_rows(layout.TAGS, experiment_id, [rows.run_name_tag_row(run_id, name)])
    batch.flush(fs, root)
