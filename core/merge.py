"""Merging part files with no operator: a writer's own recent files, then size tiers (pyarrow only).

Every flush writes a small file per table and partition. Left alone, a long run flushing every
few seconds leaves thousands, and every reader pays for each. Two merges keep the count bounded:

1. **A writer merges its own files.** Once it holds ``OWN_FILE_LIMIT`` files of one table in
   one partition, it writes their rows as one file marked merged (``-m``) and removes them. The
   merged file is released: from then on it belongs to the partition, not to the writer.
2. **Size tiers.** Released and compacted files are merged in tiers, as an LSM tree does: a
   file's tier is its size class (each ``TIER_FANOUT`` times the one below), and ``TIER_FANOUT``
   files of one tier merge into one file of the next. A partition then holds at most
   ``TIER_FANOUT - 1`` files per tier - a few dozen for any size - and every row is rewritten
   O(log n) times, never once per flush: merging small files never rewrites the big ones.

Tier merges rewrite other processes' files, so they run under the maintenance lease
(``core.lease``) and never race compaction or retention. A writer's own merge takes no lease:
it touches only its own files, at most ``OWN_MAX_AGE_S`` old (younger than compaction's grace),
of runs it is writing now. Both follow the lake's rule 3: the merged file is written before its inputs are
removed, so a reader (or a SIGKILL) between the two sees duplicates, which the folds absorb.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

from runlake.core import damage, layout, points, writer
from runlake.core.lease import LeaseLost, check_held, delete_quietly

OWN_FILE_LIMIT = 4
TIER_FANOUT = 4
# Files below this size are all in the first tier.
FIRST_TIER_BYTES = 256 * 1024
# A flush file this large is released at once: merging it with the writer's next few files
# would rewrite millions of points to save one file (bulk logging pays no merge).
RELEASE_BYTES = 4 * FIRST_TIER_BYTES
# One merge takes at most this many files, so a backlog is worked off in bounded steps.
MAX_MERGE_FILES = 16
# Raw flush files this old belong to a writer that stopped without merging them (it died):
# the tiers take them in. A live writer merges its own within a few flushes.
ABANDONED_AFTER_S = 600.0
# A writer merges only own files younger than this, so it never rewrites a file that cron
# compaction (default grace: 10 minutes) or the tiers may be taking at the same moment.
OWN_MAX_AGE_S = ABANDONED_AFTER_S / 2


class DamagedInputs(Exception):
    """Some inputs of a merge cannot be read (``runlake.core.damage``); nothing was written."""

    def __init__(self, files: list[damage.DamagedFile]) -> None:
        super().__init__("; ".join(f.describe() for f in files))
        self.files = files


@dataclass(frozen=True)
class PartInfo:
    """A part file as the merges see it."""

    path: str
    size: int
    mtime: float

    @property
    def released(self) -> bool:
        """Merged, compacted or big already, so no writer owns it any more."""
        name = self.path.rsplit("/", 1)[-1]
        return (
            self.size >= RELEASE_BYTES
            or name.endswith(layout.MERGED_SUFFIX + layout.DATA_SUFFIX)
            or name.endswith(layout.COMPACTED_SUFFIX + layout.DATA_SUFFIX)
        )


def tier_of(size: int) -> int:
    """The size class of a file: 0 below ``FIRST_TIER_BYTES``, then one per factor of ``TIER_FANOUT``."""
    if size < FIRST_TIER_BYTES:
        return 0
    return 1 + int(math.log(size / FIRST_TIER_BYTES, TIER_FANOUT))


# The tables whose merged files name their inputs (``layout.MERGED_FROM_KEY``): those readers
# keep in their state row by row. Summaries fold to fewer rows (a reader keeping the inputs'
# rows would keep a long run's every flush), and metric points are not kept in a state.
RELABELED_TABLES = (layout.EXPERIMENTS, layout.RUNS, layout.PARAMS, layout.TAGS)
# The tables whose merged files name their inputs: the relabeled ones, and metric summaries,
# whose merged rows fold their inputs' (latest, min and max fold associatively), so a reader
# holding the inputs' rows may drop them without folding their runs again.
NAMING_TABLES = (*RELABELED_TABLES, layout.METRIC_SUMMARIES)


# Metric merges of more points than this keep their inputs' order instead of being grouped
# by series. Grouping takes a copy of every column and an index of 16 bytes a point on top of
# the inputs: a writer of `runlake demo --runs 1000000`, whose top tier merges a partition of
# about 150 M points, was killed for memory at 23 GB. Below it (about 1 GB of points) a merge
# is what live runs' recent files go through; a partition grown past it is old data, which
# `runlake compact` sorts once, for good.
GROUP_SERIES_LIMIT = 16_000_000


def combine(table: str, data: pa.Table) -> pa.Table:
    """Rows of several files of one table as the rows of one file.

    Metric summaries fold to one row per (run, key); metric points are grouped by series
    (up to ``GROUP_SERIES_LIMIT`` points); every other table keeps every row (latest wins by
    version when read), sorted by the table's sort keys so run filters prune row groups.
    """
    if table == layout.METRIC_SUMMARIES:
        return points.fold_summaries(data)
    if table == layout.METRICS:
        # Each series made contiguous (``points.group_series``), then the file is cut into row
        # groups where a series changes (``writer.series_groups``): a long series gets groups
        # of its own, short ones share, and a run's history reads only its own groups. A full
        # sort of millions of points (strings first) would cost twice as much; cron compaction
        # does it once, for good.
        return points.group_series(data) if data.num_rows <= GROUP_SERIES_LIMIT else data
    return data.sort_by(layout.SORT_KEYS[table])


def _is_raw(path: str) -> bool:
    """A flush file as its writer wrote it (not merged, not compacted): sorted, one flush."""
    name = path.rsplit("/", 1)[-1]
    return not name.endswith((layout.MERGED_SUFFIX + layout.DATA_SUFFIX, layout.COMPACTED_SUFFIX + layout.DATA_SUFFIX))


def _raw_summaries(inputs: list[tuple[str, pa.Table]]) -> pa.Table | None:
    """The metric summaries of the raw flush files among ``inputs``, folded, or None.

    A writer killed between a flush's metrics file and its summary file leaves points that
    ``latest_metrics`` does not know of. Such a file is raw and, its writer gone, reaches the
    tiers as an abandoned file: the tier merge that takes it writes its summary again (a
    summary written twice folds to the same row). Only raw files: they are sorted, so this is
    a linear pass, and merged or compacted files were made from files whose summaries exist.
    """
    order = [name for name, _order in points.POINT_ORDER]
    found = []
    for path, data in inputs:
        if not _is_raw(path) or not data.num_rows:
            continue
        if not points.is_sorted(data, order):
            data = data.sort_by(points.POINT_ORDER)
        found.append(points.summarize(data, presorted=True))
    return points.fold_summaries(pa.concat_tables(found)) if found else None


def merge_files(
    fs: pafs.FileSystem,
    root: str,
    table: str,
    experiment_id: str | None,
    paths: list[str],
    *,
    resummarize: bool = False,
) -> tuple[str | None, int]:
    """Write the rows of ``paths`` as one merged file, then remove them.

    ``resummarize`` (metrics only): also write the summaries of the raw flush files among the
    inputs (``_raw_summaries``), before any input is removed.

    Returns:
        The merged file's path (None when the inputs held no rows) and its size in bytes.

    Raises:
        FileNotFoundError: an input vanished (another job merged it); nothing was written.
        DamagedInputs: inputs that cannot be read; nothing was written.
    """
    import pyarrow.parquet as pq

    schema = layout.SCHEMAS[table]
    sizes = []
    for info in fs.get_file_info(paths):
        if info.type != pafs.FileType.File:
            raise FileNotFoundError(info.path)
        sizes.append(info.size or 0)
    parts = []
    bad = []
    for path in paths:
        try:
            parts.append(writer.to_table(table, pq.read_table(path, filesystem=fs, schema=schema)))
        except Exception as exc:
            if isinstance(exc, FileNotFoundError) or not damage.is_read_failure(exc):
                raise
            bad.append(damage.damaged_file(path, table, exc))
    if bad:
        raise DamagedInputs(bad)
    data = combine(table, pa.concat_tables(parts))
    if table in NAMING_TABLES:
        # Its rows are exactly its inputs' (or fold them), so a reader holding the inputs need
        # not read it (or fold their runs again).
        inputs: list[list[Any]] = []
        for path, size in zip(paths, sizes, strict=True):
            entry: list[Any] = [path.rsplit("/", 1)[-1], size]
            inner = [[name, inner_size] for name, inner_size, _ in named_inputs(fs, path) or ()]
            if inner:
                # A merged input's own inputs, one level down: a reader that never saw the
                # input (written and merged again within one flush: a writer's own merge, then
                # a tier merge taking it) may hold those.
                entry.append(inner)
            inputs.append(entry)
        data = data.replace_schema_metadata({layout.MERGED_FROM_KEY: json.dumps(inputs).encode()})
    output = writer.write_part(
        fs, root, table, data, experiment_id, sort=False, file_id=layout.new_file_id() + layout.MERGED_SUFFIX
    )
    if resummarize and table == layout.METRICS:
        summaries = _raw_summaries(list(zip(paths, parts, strict=True)))
        if summaries is not None:
            writer.write_part(fs, root, layout.METRIC_SUMMARIES, summaries, experiment_id)
    check_held()  # under a lease (tier merges), stop here if another job took the lake
    for path in paths:
        delete_quietly(fs, path)
    return output, (fs.get_file_info(output).size or 0) if output else 0


def named_inputs(fs: pafs.FileSystem, path: str) -> list[tuple[str, int, list[tuple[str, int]] | None]] | None:
    """The inputs a merged file's metadata names (``layout.MERGED_FROM_KEY``): each one's name
    within the partition directory, its size, and the (name, size) of its own inputs where it
    was a merge that named them; None for a file that is no merge, names none, or names them
    in a shape this runlake does not know (its reader then reads the file)."""
    import pyarrow.parquet as pq

    if not path.endswith(layout.MERGED_SUFFIX + layout.DATA_SUFFIX):
        return None
    named = (pq.read_metadata(path, filesystem=fs).metadata or {}).get(layout.MERGED_FROM_KEY)
    if named is None:
        return None
    try:
        found: list[tuple[str, int, list[tuple[str, int]] | None]] = []
        for entry in json.loads(named):
            if len(entry) not in (2, 3):
                return None
            inner = [(str(name), int(size)) for name, size in entry[2]] if len(entry) == 3 else None
            found.append((str(entry[0]), int(entry[1]), inner))
        return found or None
    except (ValueError, TypeError):
        return None


def plan_tiers(files: list[PartInfo], now: float) -> list[list[PartInfo]]:
    """Groups of files to merge: ``TIER_FANOUT`` or more of one tier, oldest first.

    Only released files and abandoned raw ones take part: a live writer's own files are its own.
    """
    tiers: dict[int, list[PartInfo]] = {}
    for part in sorted(files, key=lambda p: p.path):
        if part.released or now - part.mtime >= ABANDONED_AFTER_S:
            tiers.setdefault(tier_of(part.size), []).append(part)
    groups = []
    for tier in sorted(tiers):
        members = tiers[tier]
        while len(members) >= TIER_FANOUT:
            groups.append(members[:MAX_MERGE_FILES])
            members = members[MAX_MERGE_FILES:]
    return groups


def list_partition(fs: pafs.FileSystem, root: str, table: str, experiment_id: str | None) -> list[PartInfo]:
    """The finished part files of one table partition."""
    directory = layout.LakePaths(root).partition_dir(table, experiment_id or "")
    return [
        PartInfo(info.path, info.size or 0, info.mtime.timestamp() if info.mtime is not None else 0.0)
        for info in writer.list_dir_parts(fs, directory)
    ]


def merge_tiers(
    fs: pafs.FileSystem,
    root: str,
    partitions: Iterable[tuple[str, str | None]],
    *,
    budget_s: float = 2.0,
    done: set[tuple[str, str | None]] | None = None,
) -> int:
    """Merge full tiers of the given (table, experiment id) partitions; returns files merged.

    The caller holds the maintenance lease. Work stops once ``budget_s`` has passed (the rest
    waits for the next call), so the lease is never held for long. ``done``, when given,
    receives each partition left with no full tier, so a caller knows which still need a call.
    """
    deadline = time.monotonic() + budget_s
    merged = 0
    for table, experiment_id in sorted(set(partitions), key=lambda p: (p[0], p[1] or "")):
        # A merged file may complete the next tier: plan again until nothing is full.
        left_damaged = False
        while time.monotonic() < deadline and not left_damaged:
            groups = plan_tiers(list_partition(fs, root, table, experiment_id), time.time())
            if not groups:
                if done is not None:
                    done.add((table, experiment_id))
                break
            for group in groups:
                if time.monotonic() >= deadline:
                    break
                try:
                    merge_files(fs, root, table, experiment_id, [p.path for p in group], resummarize=True)
                except FileNotFoundError:
                    continue  # a concurrent cron compaction took these; plan again
                except LeaseLost:
                    return merged  # another job took the lake: the merges are its to do now
                except DamagedInputs as exc:
                    if table == layout.METRIC_SUMMARIES:
                        # Left in place (readers skip it, the dashboard's banner and doctor name
                        # it): a summaries file holds the latest/min/max of runs whose points
                        # stay, and only ``runlake compact`` or ``doctor --repair`` summarise a
                        # partition's points again when they quarantine it - a tier merge in a
                        # training process does not read a whole partition's points.
                        left_damaged = True
                        break
                    # The caller holds the lease, as compaction does: damaged files go to
                    # quarantine (moved, never deleted) and the readable ones merge next round.
                    try:
                        check_held()  # a move removes a file from the lake, as a merge does
                    except LeaseLost:
                        return merged
                    for found in exc.files:
                        if found.damaged:
                            damage.quarantine(fs, root, found.path, found.reason)
                    if not any(found.damaged for found in exc.files):
                        return merged  # unreadable for access reasons: leave the partition be
                    continue
                merged += len(group)
    return merged


def partitions(fs: pafs.FileSystem, root: str) -> list[tuple[str, str | None]]:
    """Every (table, experiment id) partition of the lake, the experiments table included."""
    found: list[tuple[str, str | None]] = [(layout.EXPERIMENTS, None)]
    paths = layout.LakePaths(root)
    for table in layout.PARTITIONED_TABLES:
        selector = pafs.FileSelector(paths.table_dir(table), allow_not_found=True)
        for info in fs.get_file_info(selector):
            experiment_id = writer.partition_of(info.path + "/x")
            if info.type == pafs.FileType.Directory and experiment_id is not None:
                found.append((table, experiment_id))
    return found
