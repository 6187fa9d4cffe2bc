"""Writes immutable Parquet part files with an atomic rename (pyarrow and stdlib only).

This is the lake's whole write protocol: a writer builds ``.<name>.tmp`` next to its final
place and renames it to ``<name>.parquet``. Readers list only ``*.parquet``, so they see a file
whole or not at all, and a writer killed mid-write leaves only a temporary file that compaction
removes later.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.fs as pafs

from runlake.core import layout

# Float columns compress far better split into byte streams (sign/exponent bytes repeat), and
# step/timestamp columns are near-arithmetic sequences that delta encoding packs to a few bits.
_FLOAT_COLUMNS = ("value", "latest_value", "min_value", "max_value")
_DELTA_COLUMNS = ("step", "timestamp")
ROW_GROUP_SIZE = 128 * 1024
# Writers merge their files every few flushes, so a listing can go stale within milliseconds on
# a busy lake; a reader tries again on a fresh listing, with a short pause that grows.
RELIST_TRIES = 12
T = TypeVar("T")


def with_relisting(read: Callable[[], T], vanished: Callable[[BaseException], bool] | None = None) -> T:
    """Run ``read`` (which lists files, then reads them) again if a listed file vanished.

    Compaction and retention write their output before removing their inputs (the lake's
    rule 3), so a fresh listing always holds every row; a reader that skipped the vanished file
    instead could miss rows whose replacement was written after its listing. One retry is not
    always enough while compaction or writers' merges run in a tight loop, hence several,
    each after a short random pause.

    Args:
        read: lists and reads; called up to ``RELIST_TRIES`` times.
        vanished: says whether an exception means "a listed file is gone" (default: a
            ``FileNotFoundError``); anything else is raised at once.
    """
    is_gone = vanished or (lambda exc: isinstance(exc, FileNotFoundError))
    for attempt in range(RELIST_TRIES):
        try:
            return read()
        except Exception as exc:
            if not is_gone(exc) or attempt == RELIST_TRIES - 1:
                raise
            relist_pause(attempt)
    raise AssertionError("unreachable")


def relist_pause(attempt: int) -> None:
    """A short random pause before listing again, growing with the attempt (up to ~0.25 s)."""
    time.sleep(random.uniform(0, 0.002 * 2 ** min(attempt, 7)))


def _write_options(schema: pa.Schema) -> dict[str, Any]:
    types = {f.name: f.type for f in schema}
    floats = [c for c in _FLOAT_COLUMNS if types.get(c) == pa.float64()]
    deltas = [c for c in _DELTA_COLUMNS if types.get(c) == pa.int64()]
    options: dict[str, Any] = {
        "compression": "zstd",
        "compression_level": 3,
        "write_statistics": True,
        "row_group_size": ROW_GROUP_SIZE,
    }
    if floats or deltas:
        # column_encoding requires dictionary encoding to be off for those columns.
        options["use_dictionary"] = [c for c in schema.names if c not in floats and c not in deltas]
        options["column_encoding"] = {
            **{c: "BYTE_STREAM_SPLIT" for c in floats},
            **{c: "DELTA_BINARY_PACKED" for c in deltas},
        }
    return options


def to_table(table: str, rows: pa.Table | Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]]) -> pa.Table:
    """Rows (a table, a list of dicts or a dict of columns) cast to the table's schema."""
    schema = layout.SCHEMAS[table]
    if isinstance(rows, pa.Table):
        missing = [f for f in schema if f.name not in rows.column_names]
        for field in missing:
            rows = rows.append_column(field, pa.nulls(rows.num_rows, field.type))
        return rows.select(schema.names).cast(schema)
    if isinstance(rows, Mapping):
        n = len(next(iter(rows.values()))) if rows else 0
        arrays = [pa.array(rows.get(f.name, [None] * n), type=f.type) for f in schema]
        return pa.Table.from_arrays(arrays, schema=schema)
    return pa.Table.from_pylist(list(rows), schema=schema)


def write_part(
    fs: pafs.FileSystem,
    root: str,
    table: str,
    data: pa.Table,
    experiment_id: str | None = None,
    *,
    sort: bool = True,
    file_id: str | None = None,
    one_series: bool = False,
) -> str | None:
    """Write one immutable part file and return its path (None when ``data`` is empty).

    Args:
        fs: the lake's filesystem.
        root: the lake root in ``fs`` syntax.
        table: one of ``layout.ALL_TABLES``.
        data: rows in the table's schema (see ``to_table``).
        experiment_id: the partition, required for partitioned tables.
        sort: sort rows by the table's sort keys first.
        file_id: a name to use instead of a fresh one (maintenance keeps ids time-sortable).
        one_series: (metrics) every row has the same run_id and key, as the caller knows: its
            row groups need no search for where series change.

    Raises:
        ValueError: a partitioned table without a valid experiment id.
    """
    if data.num_rows == 0:
        return None
    if table != layout.EXPERIMENTS and not layout.is_valid_id(experiment_id or ""):
        raise ValueError(f"invalid experiment id for {table}: {experiment_id!r}")
    if sort:
        data = data.sort_by(layout.SORT_KEYS[table])
    directory = layout.LakePaths(root).partition_dir(table, experiment_id or "")
    fs.create_dir(directory, recursive=True)
    name = f"part-{file_id or layout.new_file_id()}"
    tmp = f"{directory}/{layout.TMP_PREFIX}{name}{layout.TMP_SUFFIX}"
    final = f"{directory}/{name}{layout.DATA_SUFFIX}"
    import pyarrow.parquet as pq  # imported on first write, not when training code imports ingest

    try:
        with fs.open_output_stream(tmp) as sink:
            if table == layout.METRICS:
                options = _write_options(data.schema)
                options.pop("row_group_size")
                with pq.ParquetWriter(sink, data.schema, **options) as parquet:
                    for offset, length in series_groups(data, one_series):
                        parquet.write_table(data.slice(offset, length), row_group_size=length)
            else:
                pq.write_table(data, sink, **_write_options(data.schema))
        fs.move(tmp, final)
    except BaseException:
        try:
            fs.delete_file(tmp)
        except OSError:
            pass  # a leftover temporary is harmless: readers skip it and compaction removes it
        raise
    return final


def series_groups(data: pa.Table, one_series: bool = False, size: int | None = None) -> list[tuple[int, int]]:
    """The (offset, length) row groups of a metrics file: cut where a series (run_id, key)
    changes, so a long series' row groups hold it alone.

    A row group's min/max statistics then name one run and key, and readers prune by them: the
    range of a run's series comes from statistics alone, and its points are read without its
    neighbours' (``runlake.lake.series``). Plain ``ROW_GROUP_SIZE`` slices shared a group
    wherever two series met, which in a merged file of runs of 100 k points was every group.

    A long series (a quarter of a group or more) gets groups of its own, full ones then the
    rest. Shorter series share groups, each whole in one: a series that would overflow the
    current group closes it and starts the next. So a file has at most about 3 groups per
    ``size`` rows plus 2 per long series, where plain slicing has 1 per ``size`` rows. A file
    of at most ``size`` rows (most flushes) is one group, with no search.

    Args:
        data: the file's rows.
        one_series: every row is of one series (no search for changes).
        size: the largest group (default ``ROW_GROUP_SIZE``).
    """
    import pyarrow.compute as pc

    size = size or ROW_GROUP_SIZE
    n = data.num_rows
    if one_series or n <= size:
        ends = [n]
    else:
        changes: set[int] = {n}
        for column in ("run_id", "key"):
            offset, last = 0, None
            for chunk in data.column(column).chunks:
                if not len(chunk):
                    continue
                # A chunk's end is a change only where the next chunk starts with another value.
                if last is not None and chunk[0] != last:
                    changes.add(offset)
                changes.update(offset + int(e) for e in pc.run_end_encode(chunk).run_ends.to_pylist()[:-1])
                offset, last = offset + len(chunk), chunk[len(chunk) - 1]
        ends = sorted(changes)
    groups: list[tuple[int, int]] = []
    start = series_start = 0
    for end in ends:
        long = end - series_start >= size // 4
        if long or end - start > size:
            if series_start > start:  # close the group before this series
                groups.append((start, series_start - start))
                start = series_start
            while end - start > size:
                groups.append((start, size))
                start += size
            if long and end > start:  # a long series' rest stays alone too
                groups.append((start, end - start))
                start = end
        series_start = end
    if n > start:
        groups.append((start, n - start))
    return groups


def write_partitioned(fs: pafs.FileSystem, root: str, table: str, data: pa.Table, *, sort: bool = True) -> list[str]:
    """Write a table that has an ``experiment_id`` column as one part file per experiment.

    The ``experiment_id`` column is dropped from the files: the partition directory holds it.
    """
    import pyarrow.compute as pc

    written: list[str] = []
    if data.num_rows == 0:
        return written
    ids = data.column(layout.PARTITION_COLUMN)
    for experiment_id in pc.unique(ids).to_pylist():
        part = data.filter(pc.equal(ids, experiment_id)).drop_columns([layout.PARTITION_COLUMN])
        path = write_part(fs, root, table, to_table(table, part), experiment_id, sort=sort)
        if path:
            written.append(path)
    return written


def list_parts(fs: pafs.FileSystem, root: str, table: str) -> list[pafs.FileInfo]:
    """Every finished part file of a table (temporary files excluded), sorted by path."""
    return list_dir_parts(fs, layout.LakePaths(root).table_dir(table))


def list_dir_parts(fs: pafs.FileSystem, directory: str) -> list[pafs.FileInfo]:
    """Every finished part file below a directory (temporary files excluded), sorted by path."""
    selector = pafs.FileSelector(directory, recursive=True, allow_not_found=True)
    infos = [
        info
        for info in fs.get_file_info(selector)
        if info.type == pafs.FileType.File
        and info.base_name.endswith(layout.DATA_SUFFIX)
        and not info.base_name.startswith(layout.TMP_PREFIX)
    ]
    return sorted(infos, key=lambda info: info.path)


def partition_of(path: str) -> str | None:
    """The experiment id encoded in a part file's directory, or None for unpartitioned tables."""
    prefix = layout.PARTITION_COLUMN + "="
    for piece in reversed(path.split("/")[:-1]):
        if piece.startswith(prefix):
            return piece[len(prefix) :]
    return None


def column_union(tables: Iterable[pa.Table]) -> pa.Table | None:
    """Concatenate tables of one schema, or None when there are none."""
    items = [t for t in tables if t.num_rows]
    return pa.concat_tables(items) if items else None
