"""Keeps a DuckDB connection's current-state tables in step with a lake's files.

Each table's file listing is fingerprinted; a query first refreshes whatever changed. New
files alone (the common case: training jobs flushing) are appended and only the affected runs
are folded again; a listing that lost files (compaction, retention) rebuilds that table. Rows
are read with pyarrow through the lake's filesystem, so no path is ever written into SQL.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import logging
import threading
from collections.abc import Callable, Collection, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from runlake.core import damage, layout, merge, writer
from runlake.core.damage import DamagedFile
from runlake.lake import search_index, views
from runlake.lake.search_index import SearchIndex

log = logging.getLogger(__name__)

# The folded tables are not sorted. A key-major order let a filter on one key skip the other
# keys' row groups, but searches filter the search index's columns now, and the sort was most
# of a first fold: a fresh Lake opened 15 % faster without it (10,000 runs 0.76 -> 0.64 s,
# 100,000 runs 5.5 -> 4.7 s, paired). What still filters a folded table by key (a key the
# index has no column for) scans it whole: at 100,000 runs 16 ms instead of 4 ms.
_MATERIALISED = tuple(raw for _sql, raw, _key in views.CURRENT_STATE.values())
# Tables whose touched runs are folded again from their raw rows (metric summaries fold with
# their folded rows instead). A refresh tells the runs new to such a table - a sweep's or an
# importer's runs - whose new rows are all the rows they have: those are folded from the new
# rows alone, with no scan of every raw row. A run has raw params rows exactly when it has
# folded ones (every (run, key) folds to a row), so the folded table and its run id index tell.
# Runs and tags fold some runs to no row (updates of a run not created yet; a tag deleted):
# for them ``_seen_runs_<table>`` holds every run id that has raw rows of the table (more,
# after rows went; never fewer). Built at the first refresh that can use it (a cached state
# keeps it), dropped with its raw table.
_NEW_RUNS_TABLES = (layout.RUNS, layout.PARAMS, layout.TAGS)
SEEN_TABLES = (layout.RUNS, layout.TAGS)


@dataclass(frozen=True)
class Listing:
    """One table's finished part files and their sizes."""

    files: tuple[tuple[str, int], ...]

    @property
    def paths(self) -> list[str]:
        return [path for path, _size in self.files]


def list_table(fs: pafs.FileSystem, root: str, table: str) -> Listing:
    return Listing(tuple((info.path, info.size or 0) for info in writer.list_parts(fs, root, table)))


# The column a raw row carries in DuckDB naming the part file it came from, so the rows of a
# file that merges replaced can be dropped without reading everything again. It holds the
# file's number in this state (``Snapshot._number``), not its path: a path in every raw row
# cost about 120 bytes a row, a third of the state at a million runs.
SOURCE_COLUMN = "_file_no"
SOURCE_TYPE = pa.int32()
# A merged file read with known inputs is settled against them (``Snapshot._settle_partial``)
# up to this many rows; a bigger one is taken as new rows, its inputs as gone.
SETTLE_ROWS_LIMIT = 20_000
# Search totals kept per state generation (a dashboard paging or sorting one filter, polling an
# unchanged lake) before the memo starts again.
COUNTS_KEPT = 256
# A metric row group's statistics of (run_id, key, step, timestamp): each {"min", "max", ...} or None.
GroupStatistics = tuple[Any, Any, Any, Any]


def group_statistics(fragment: ds.Fragment) -> list[GroupStatistics] | None:
    """The (run_id, key, step, timestamp) statistics of each row group of a Parquet fragment,
    or None when the fragment tells no row groups."""
    groups = getattr(fragment, "row_groups", None)
    if groups is None:
        return None
    found: list[GroupStatistics] = []
    for group in groups:
        stats = group.statistics or {}
        found.append((stats.get("run_id"), stats.get("key"), stats.get("step"), stats.get("timestamp")))
    return found


def read_file(fs: pafs.FileSystem, table: str, path: str, number: int) -> pa.Table:
    """Rows of one part file: the table's schema, ``experiment_id`` when partitioned, and the
    file's ``number`` as the source column."""
    import pyarrow.parquet as pq

    rows = writer.to_table(table, pq.read_table(path, filesystem=fs, schema=layout.SCHEMAS[table]))
    if table != layout.EXPERIMENTS:
        rows = rows.append_column(
            layout.PARTITION_COLUMN, pa.repeat(pa.scalar(writer.partition_of(path), pa.string()), rows.num_rows)
        )
    return rows.append_column(SOURCE_COLUMN, pa.repeat(pa.scalar(number, SOURCE_TYPE), rows.num_rows))


# A file in a listing: (path, size).
File = tuple[str, int]


def merged_inputs(fs: pafs.FileSystem, path: str) -> list[tuple[File, list[File] | None]] | None:
    """The files whose rows a merged file holds, as its metadata names them
    (``merge.named_inputs``), each with the files it was merged from where it is a merge
    itself (one level down; None otherwise); None for any other file, or one that names none."""
    named = merge.named_inputs(fs, path)
    if named is None:
        return None
    directory = path.rsplit("/", 1)[0]
    return [
        ((f"{directory}/{name}", size), None if inner is None else [(f"{directory}/{n}", s) for n, s in inner])
        for name, size, inner in named
    ]


def read_changes(
    fs: pafs.FileSystem,
    root: str,
    table: str,
    known: Listing | None,
    listing: Listing,
    number: Callable[[File], int],
    damaged: dict[str, DamagedFile] | None = None,
    unreadable: Collection[str] = (),
) -> tuple[pa.Table | None, set[File], Listing, dict[File, list[File]], dict[File, list[File]]]:
    """The rows of files in ``listing`` but not in ``known``, the known files now gone, the
    new merged files taken without reading, and the merged files read that hold known rows.

    A merged file that names its inputs (``merged_inputs``) when every input is known, none is
    listed any more and none is in ``unreadable`` (known files whose rows the state lacks) holds
    exactly rows the state has: it is not read, and its inputs are not gone but renamed - their
    rows become its rows (the fourth result, new file -> inputs). A tier merge of a partition
    every run of which the state had folded then costs a footer, not a read and a fold of
    every one of those runs.

    A merged file some of whose inputs are known (the rest new to this reader: a writer merges
    its own recent files right after a flush, the newest of which no reader has seen yet) is
    read, and named in the fifth result with its known inputs: the state may take those as
    renamed and add only the rest of the file's rows (``Snapshot._settle_partial``). Its known
    inputs are among the gone files until the state settles them.

    ``number`` gives each new (path, size) the number its rows carry in ``SOURCE_COLUMN``.

    A file that cannot be read (damaged bytes, no permission) is skipped: it is recorded in
    ``damaged`` and stays in the listing, so it is not read again until it changes or goes.

    A file can vanish between the listing and the read (a writer or compaction merged it; the
    merged file was written first). Then the table is listed again and only files not read yet
    are read: rows already read stay (a merged file repeats them, and the folds absorb
    duplicates), so a busy lake converges instead of starting over; rows of files that are not in
    the final listing are dropped.

    Returns:
        (rows of the new files or None, the known (path, size) files now gone, the listing read,
        the merged files taken from their inputs, the merged files read whose known inputs the
        state may settle).
    """
    known_files = set(known.files) if known is not None else set()
    # By (path, size), as the listings: a path listed again with another size between two
    # attempts holds other bytes (rewritten in place), so it is read again under a new number.
    parts: dict[File, pa.Table] = {}
    renamed: dict[File, list[File]] = {}
    partial: dict[File, list[File]] = {}
    claimed: set[File] = set()
    for attempt in range(writer.RELIST_TRIES):
        vanished = False
        listed_now = set(listing.files)
        for path, size in listing.files:
            if (path, size) in known_files or (path, size) in parts or (path, size) in renamed:
                continue
            try:
                # Only once no input is listed: a merge killed before it removed its inputs
                # leaves both, and the merged file may yet go alone (quarantined) - then the
                # inputs' rows must still be theirs.
                named = merged_inputs(fs, path) if known_files and table in merge.NAMING_TABLES else None
                inputs = [file for file, _inner in named or ()]
                held = [file for file in inputs if file in known_files and file[0] not in unreadable]
                whole = named is not None and all(file not in listed_now and file not in claimed for file in inputs)
                if whole and len(held) == len(inputs) and table in merge.RELABELED_TABLES:
                    number((path, size))
                    renamed[(path, size)] = inputs
                    claimed.update(inputs)
                    continue
                parts[(path, size)] = read_file(fs, table, path, number((path, size)))
                if whole:
                    # An input this reader never saw may be a merge of files it holds (and of
                    # others it never saw, whose rows are the rest): those it holds count.
                    for file, inner in named or ():
                        if file in known_files:
                            continue
                        held += [
                            f
                            for f in inner or ()
                            if f in known_files
                            and f[0] not in unreadable
                            and f not in listed_now
                            and f not in claimed
                            and f not in held
                        ]
                if whole and held:
                    partial[(path, size)] = held
                    claimed.update(held)
            except FileNotFoundError:
                vanished = True
            except Exception as exc:
                if not damage.is_read_failure(exc):
                    raise
                if damaged is not None:
                    damaged[path] = damage.damaged_file(path, table, exc)
        if not vanished:
            break
        if attempt == writer.RELIST_TRIES - 1:
            # Writers merging faster than this reader lists: take the files read so far as the
            # state (each vanished file's replacement is listed by the next refresh, which reads
            # it then) rather than fail the caller. The state may lag by one refresh.
            listing = Listing(
                tuple(
                    f
                    for f in listing.files
                    if f in parts or f in renamed or f in known_files or (damaged is not None and f[0] in damaged)
                )
            )
            break
        writer.relist_pause(attempt)
        listing = list_table(fs, root, table)
    # A known file is gone when its (path, size) is: a path listed again with another size
    # holds other rows (a lake recreated under the same names), so its old rows go too.
    listed = set(listing.files)
    # A merged file taken from its inputs but gone again before the final listing (merged once
    # more) is not: its inputs are gone, and its replacement was read.
    renamed = {file: inputs for file, inputs in renamed.items() if file in listed}
    partial = {file: inputs for file, inputs in partial.items() if file in listed}
    kept_inputs = {file for inputs in renamed.values() for file in inputs}
    gone = {file for file in known_files if file not in listed and file not in kept_inputs}
    # Rows read from a file that vanished before the final listing are dropped: the listing
    # holds them again in the merged file (rule 3), and keeping them would keep rows a later
    # rewrite removes (a purged run) under a file name no listing will ever show as gone.
    kept = [rows for file, rows in parts.items() if file in listed]
    rows = pa.concat_tables(kept) if kept else None
    return rows, gone, listing, renamed, partial


def _multiset_rest(merged: pa.Table, held: list[tuple[Any, ...]]) -> list[int] | None:
    """The indexes of ``merged``'s rows left once one row equal to each of ``held`` is taken
    out, or None when some row of ``held`` is not there to take."""
    owed = collections.Counter(held)
    rest = []
    for index, row in enumerate(zip(*(column.to_pylist() for column in merged.columns), strict=True)):
        if owed.get(row):
            owed[row] -= 1
        else:
            rest.append(index)
    return rest if not any(owed.values()) else None


class Snapshot:
    """The current-state tables of one lake inside one DuckDB connection."""

    def __init__(
        self, con: duckdb.DuckDBPyConnection, fs: pafs.FileSystem, root: str, *, persistent: bool = False
    ) -> None:
        self._con = con
        self._fs = fs
        self._root = root
        self._lock = threading.Lock()
        self._persistent = persistent
        # Each read file's number (its rows' SOURCE_COLUMN), by (path, size) as the listings are.
        self._numbers: dict[tuple[str, int], int] = {}
        self._listings: dict[str, Listing] = {}
        if persistent:
            self._listings, self._numbers = _stored_listings(con)
        self._next_number = max(self._numbers.values(), default=0) + 1
        # Tables whose raw rows are in but whose fold waits for the end of the refresh, and
        # whether a folded table exists yet (see ``_rebuild``).
        self._unfolded: list[tuple[str, str]] = []
        self._folded = False
        # The tables whose ``_seen_runs_<table>`` exists (see ``SEEN_TABLES``).
        self._seen: set[str] = set()
        if persistent:
            existing = {name for (name,) in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
            self._seen = {t for t in SEEN_TABLES if seen_table(t) in existing}
        self.generation = 0
        # Totals of searches counted in this generation of the state (``remembered_count``).
        self._counts: dict[Hashable, int] = {}
        self._counts_lock = threading.Lock()
        # The search index over the folded tables (``lake/search_index.py``), None until built.
        self.index: SearchIndex | None = search_index.load(con) if persistent else None
        # Whether some runs' index rows are behind their folds (caught up at the end of a refresh).
        self._index_behind = self.index is not None and search_index.behind(con)
        # Runs a fold marked as behind without writing the mark to the state: in memory, where
        # no other process reopens the state to catch up, a refresh after a flush keeps its
        # marks here (four INSERTs and a scan of the marks table cost about 4 ms of a 60 ms
        # refresh at 100,000 runs). Marks made in SQL (a persistent state, a merge's compared
        # runs) are in the marks table; ``catch_up`` takes both.
        self._marked: set[str] = set()
        self._marked_in_sql = self._index_behind
        self._metrics_cache: tuple[Listing, ds.Dataset] | None = None
        # A metric file's read footer, and the metric files found damaged, by (path, size) as the
        # listings are: a path listed again with another size holds other bytes (rewritten in
        # place, overwritten on an object store), so its footer is read again.
        self._fragments: dict[tuple[str, int], ds.ParquetFileFragment] = {}
        # Each listed metric file's (path, size), and its row groups' statistics once read.
        self._metric_files: dict[str, tuple[str, int]] = {}
        self._group_statistics: dict[tuple[str, int], list[GroupStatistics] | None] = {}
        self._damaged_metrics: set[tuple[str, int]] = set()
        # Files no reader could read, and which of them this lake warned of (once each).
        self._damaged: dict[str, DamagedFile] = {}
        self._warned: set[str] = set()
        self._damage_lock = threading.Lock()

    def damaged_files(self) -> list[DamagedFile]:
        """The part files skipped because they could not be read and are still in the lake."""
        with self._damage_lock:
            listed = {p for listing in self._listings.values() for p in listing.paths}
            if self._metrics_cache is not None:
                listed |= set(self._metrics_cache[0].paths)
            return [found for path, found in sorted(self._damaged.items()) if path in listed]

    def _record_damage(self, found: dict[str, DamagedFile], metric_files: Iterable[tuple[str, int]] = ()) -> None:
        with self._damage_lock:
            self._damaged_metrics.update(metric_files)
            for path, item in found.items():
                self._damaged[path] = item
                if path not in self._warned:
                    self._warned.add(path)
                    damage.warn(item, stacklevel=4)

    def fingerprint(self) -> tuple[int, ...]:
        """A value that changes whenever any table's listing changes (for caches)."""
        return tuple(hash(self._listings.get(t)) for t in layout.ALL_TABLES)

    def refresh(self, tables: tuple[str, ...] = _MATERIALISED) -> bool:
        """Bring the given tables up to date with the files; True when anything changed."""
        with self._lock:
            changed = False
            try:
                for table in tables:
                    listing = list_table(self._fs, self._root, table)
                    if listing != self._listings.get(table):
                        self._listings[table] = self._load(table, self._listings.get(table), listing)
                        changed = True
                self._fold_unfolded()
            except BaseException:
                # A table whose fold never ran is read again from scratch by the next refresh.
                for table, _view in self._unfolded:
                    self._listings.pop(table, None)
                self._unfolded.clear()
                raise
            if self.index is None and all(raw in self._listings for raw in _MATERIALISED):
                # Once per state: after the first fold, or after a table was folded from scratch.
                with _transaction(self._con):
                    built = search_index.build(self._con)
                self.index, self._index_behind = built, False
                self._marked, self._marked_in_sql = set(), False
                changed = True
            elif self.index is not None and self._index_behind:
                # Once per refresh, however many tables' folds touched a run.
                with _transaction(self._con):
                    caught = search_index.catch_up(self._con, self.index, self._marked, pending=self._marked_in_sql)
                self.index, self._index_behind = caught, False
                self._marked, self._marked_in_sql = set(), False
                # Index rows changed (a refresh that failed before catching up left them
                # behind): what was computed from the state is stale, such as kept counts.
                changed = True
            if changed:
                with self._counts_lock:
                    self.generation += 1
                    self._counts.clear()
            return changed

    def begin_pinned(self, cursor: duckdb.DuckDBPyConnection) -> None:
        """Begin a transaction on ``cursor`` (of this state's connection) that reads the state
        as it stands between two refreshes: its tables and listings of one moment, whatever
        refreshes commit while it lasts (``state_cache.publish``)."""
        with self._lock:
            cursor.execute("BEGIN")
            # DuckDB takes a transaction's snapshot when it first reads the database.
            cursor.execute(f"SELECT count(*) FROM {LISTINGS_TABLE}").fetchall()

    def remembered_count(self, key: Hashable) -> int | None:
        """A count ``remember_count`` kept for ``key`` in this generation of the state."""
        with self._counts_lock:
            return self._counts.get(key)

    def remember_count(self, key: Hashable, generation: int, count: int) -> None:
        """Keep ``count`` for ``key`` if the state is still at ``generation`` (read before the
        count was made): a refresh that changed anything meanwhile drops every kept count,
        and a count made across one is not kept."""
        with self._counts_lock:
            if self.generation != generation:
                return
            if len(self._counts) >= COUNTS_KEPT:
                self._counts.clear()
            self._counts[key] = count

    def _number(self, file: tuple[str, int]) -> int:
        """The number of a part file's rows in this state: one per (path, size), unique among the
        files the state holds (a number freed by a file that went may be given again after a
        reopen of a cached state; that file's rows went with it)."""
        number = self._numbers.get(file)
        if number is None:
            number = self._numbers[file] = self._next_number
            self._next_number += 1
        return number

    def _load(self, table: str, old: Listing | None, new: Listing) -> Listing:
        view, key = next((name, key) for name, (_sql, raw, key) in views.CURRENT_STATE.items() if raw == table)
        found: dict[str, DamagedFile] = {}
        with self._damage_lock:
            unreadable = set(self._damaged)
        rows, gone, listing, renamed, partial = read_changes(
            self._fs, self._root, table, old, new, self._number, found, unreadable
        )
        absorbed: list[File] = []
        if partial and rows is not None and old is not None and table == layout.METRIC_SUMMARIES:
            absorbed = self._absorbed_summaries(rows, partial)
            gone.difference_update(absorbed)
        elif partial and rows is not None and old is not None:
            rows, settled = self._settle_partial(table, rows, partial)
            for file, inputs in settled.items():
                renamed[file] = inputs
                gone.difference_update(inputs)
        with self._damage_lock:
            # A damaged file that left the listing (quarantined, replaced) is no longer news; a
            # path listed again with another size is "gone" and new at once, so its fresh
            # damage, if any, is recorded after.
            for path, _size in gone:
                self._damaged.pop(path, None)
        self._record_damage(found)
        if old is None:
            self._rebuild(table, view, rows, listing)
        else:
            renumbered = [
                (self._numbers[input_file], self._numbers[file])
                for file, inputs in renamed.items()
                for input_file in inputs
                if input_file in self._numbers
            ]
            gone_numbers = [self._numbers[f] for f in gone if f in self._numbers]
            absorbed_numbers = [self._numbers[f] for f in absorbed if f in self._numbers]
            self._apply(table, view, key, rows, gone_numbers, listing, renumbered, absorbed_numbers)
        # Numbers of files no longer listed (gone, or vanished while they were read) are dropped.
        listed = set(listing.files).union(*(set(other.files) for t, other in self._listings.items() if t != table))
        self._numbers = {f: n for f, n in self._numbers.items() if f in listed}
        return listing

    def _partial_merges(
        self, rows: pa.Table, partial: dict[File, list[File]]
    ) -> Iterator[tuple[File, list[File], list[int], pa.ChunkedArray, pa.Table]]:
        """Each merged file of ``partial`` a refresh may settle: (file, its known inputs, their
        numbers, the mask of its rows among ``rows``, its rows). Left out: one whose numbers
        are not all in this state, and one of more than ``SETTLE_ROWS_LIMIT`` rows."""
        numbers = rows.column(SOURCE_COLUMN)
        for file, inputs in partial.items():
            number = self._numbers.get(file)
            input_numbers = [self._numbers[f] for f in inputs if f in self._numbers]
            if number is None or len(input_numbers) != len(inputs):
                continue
            mask = pc.equal(numbers, pa.scalar(number, SOURCE_TYPE))
            merged = rows.filter(mask)
            if merged.num_rows <= SETTLE_ROWS_LIMIT:
                yield file, inputs, input_numbers, mask, merged

    def _absorbed_summaries(self, rows: pa.Table, partial: dict[File, list[File]]) -> list[File]:
        """The known inputs of merged summary files read (``read_changes``) whose rows their
        merged file folds: their rows may go with no run folded again.

        A merged summaries file is its inputs' rows folded (``merge.combine``), and the fold is
        associative, so once it is read its inputs' rows add nothing: the refresh drops them and
        folds the new rows as any flush's (with files gone, each run of theirs was folded again
        from every raw row and its index row compared: about 25 of a 100 ms refresh at 100,000
        runs). Checked with the fold itself: a merged file whose fold changes once its known
        inputs' rows are added (a file rewritten without them) is read as before, its inputs
        gone.
        """
        con = self._con
        absorbed: list[File] = []
        for file, inputs, input_numbers, _mask, merged in self._partial_merges(rows, partial):
            marks = ", ".join("?" * len(input_numbers))
            both = (
                f"(SELECT * FROM _merged_rows UNION ALL SELECT * FROM raw_{layout.METRIC_SUMMARIES} "
                f"WHERE {SOURCE_COLUMN} IN ({marks}))"
            )
            con.register("_merged_rows", merged)
            try:
                [(changed,)] = con.execute(
                    f"SELECT count(*) FROM ({views.fold_sql('latest_metrics', both)} "
                    f"EXCEPT {views.fold_sql('latest_metrics', '_merged_rows')})",
                    input_numbers,
                ).fetchall()
            except (duckdb.Error, pa.ArrowException) as exc:
                # A shortcut only: whatever stops it, the file is taken as before.
                log.info("runlake: merged file %s read with its inputs gone (%s)", file[0], exc)
                continue
            finally:
                con.unregister("_merged_rows")
            if not changed:
                absorbed.extend(inputs)
        return absorbed

    def _settle_partial(
        self, table: str, rows: pa.Table, partial: dict[File, list[File]]
    ) -> tuple[pa.Table, dict[File, list[File]]]:
        """Merged files read whose known inputs' rows the state holds (``read_changes``): each
        one whose rows include every row of those inputs keeps only the rest among the new
        rows, and is returned with them as renamed from them.

        A writer merges its own recent files right after a flush, so the merged file holds the
        flush a reader has not seen yet besides files it has. Taken as new rows and gone files,
        every such refresh dropped and folded again what it had, compared the runs' index rows
        and scanned every raw row for the gone files' (at 100,000 runs, about 30 ms a table).
        Settled, the refresh adds one flush as any other. The check that the merged file holds
        each known input row (as a multiset: a row twice in the inputs is twice in the merge)
        keeps the state exact when it does not, such as a merge rewritten by hand: then the
        inputs are gone and the file's rows new, as before. Merges of more than
        ``SETTLE_ROWS_LIMIT`` rows (tier merges of big files) are taken that way too: the
        comparison runs in Python, about a microsecond a row (20,000 rows: about 25 ms).
        """
        settled: dict[File, list[File]] = {}
        rest: list[pa.Table] = []
        taken = []
        for file, inputs, input_numbers, mask, merged in self._partial_merges(rows, partial):
            marks = ", ".join("?" * len(input_numbers))
            try:
                held = self._con.execute(
                    f"SELECT * EXCLUDE ({SOURCE_COLUMN}) FROM raw_{table} WHERE {SOURCE_COLUMN} IN ({marks})",
                    input_numbers,
                ).fetchall()
                remaining = _multiset_rest(merged.drop_columns([SOURCE_COLUMN]), held)
                if remaining is None:
                    continue  # some known row is not in the merged file: read it as new
                # Typed: pyarrow reads an empty list as nulls, which take() refuses (a merged
                # file may hold no row beyond the known ones: an empty file of another engine).
                rest.append(merged.take(pa.array(remaining, pa.int64())))
            except (duckdb.Error, pa.ArrowException) as exc:
                # A shortcut only: whatever stops it, the file is taken as before.
                log.info("runlake: merged file %s read with its inputs gone (%s)", file[0], exc)
                continue
            settled[file] = inputs
            taken.append(mask)
        if not settled:
            return rows, settled
        others = rows.filter(pc.invert(functools.reduce(pc.or_, taken)))
        return pa.concat_tables([others, *rest]), settled

    def _store_listing(self, table: str, listing: Listing) -> None:
        """In a persistent state, the files the tables now hold, inside the caller's transaction.

        Damaged files are left out, so the next process to open the state tries them again
        (and warns of them, or reads them once repaired).
        """
        if not self._persistent:
            return
        with self._damage_lock:
            listing = Listing(tuple(f for f in listing.files if f[0] not in self._damaged))
        self._con.execute(f"DELETE FROM {LISTINGS_TABLE} WHERE table_name = ?", [table])
        stored = pa.table(
            {
                "table_name": pa.repeat(pa.scalar(table, pa.string()), len(listing.files)),
                "path": pa.array(listing.paths, pa.string()),
                "size": pa.array([size for _path, size in listing.files], pa.int64()),
                "file_no": pa.array([self._numbers[f] for f in listing.files], SOURCE_TYPE),
            }
        )
        self._con.register("_listing_rows", stored)
        try:
            self._con.execute(f"INSERT INTO {LISTINGS_TABLE} SELECT * FROM _listing_rows")
        finally:
            self._con.unregister("_listing_rows")

    def _apply(
        self,
        table: str,
        view: str,
        key: str,
        rows: pa.Table | None,
        gone: list[int],
        listing: Listing,
        renumbered: Sequence[tuple[int, int]] = (),
        absorbed: Sequence[int] = (),
    ) -> None:
        """Give merged files' inputs' rows their merged file's number (``renumbered``: pairs of
        old, new), drop the rows of files that are gone (by number), add the new files' rows,
        fold the keys touched (renumbered rows touch nothing: they are the same rows). The rows
        of ``absorbed`` files (by number; summaries a new merged file folds) go and touch
        nothing.

        Work in proportion to what changed: the rest of the state stands.
        """
        con = self._con
        # Only the tables the statements below read are registered: registering one and
        # dropping it again costs DuckDB about 0.8 ms, and a refresh after a flush applies
        # four or five tables.
        registered = {"_new_rows": rows if rows is not None else _empty(table)}
        if gone:
            registered["_gone"] = pa.table({"file_no": pa.array(sorted(gone), SOURCE_TYPE)})
        if renumbered:
            registered["_renumbered"] = pa.table(
                {
                    "old": pa.array([old for old, _new in renumbered], SOURCE_TYPE),
                    "new": pa.array([new for _old, new in renumbered], SOURCE_TYPE),
                }
            )
        marked = False
        with self._seen_as_rolled_back(), _transaction(con, **registered):
            if renumbered:
                con.execute(
                    f"UPDATE raw_{table} SET {SOURCE_COLUMN} = m.new FROM _renumbered m "
                    f"WHERE raw_{table}.{SOURCE_COLUMN} = m.old"
                )
            # Files only added (writers flushing): nothing to drop, so the raw rows are not
            # scanned for the rows of gone files.
            of_gone = f"{SOURCE_COLUMN} IN (SELECT file_no FROM _gone)"
            # A few runs (a refresh after a flush) are looked up through the folded table's
            # run_id index; the raw rows, which have none, are scanned either way. With files
            # only added, the runs touched are the new rows' own, found here without SQL.
            new_runs = None
            if key == "run_id" and not gone:
                found = pc.unique(rows.column(key)) if rows is not None else pa.array([], pa.string())
                new_runs = found.to_pylist() if len(found) <= search_index.PROBE_LIMIT else None
            if new_runs is None:
                gone_keys = f" UNION SELECT DISTINCT {key} FROM raw_{table} WHERE {of_gone}" if gone else ""
                con.execute(f"CREATE OR REPLACE TEMP TABLE _touched AS SELECT DISTINCT {key} FROM _new_rows{gone_keys}")
            if gone:
                con.execute(f"DELETE FROM raw_{table} WHERE {of_gone}")
            if absorbed:
                marks = ", ".join("?" * len(absorbed))
                con.execute(f"DELETE FROM raw_{table} WHERE {SOURCE_COLUMN} IN ({marks})", list(absorbed))
            # Before the new rows go in: are the runs new to the table?
            only_new = self._only_new_runs(table, view, new_runs)
            con.execute(f"INSERT INTO raw_{table} SELECT * FROM _new_rows")
            indexed = self.index is not None and key == "run_id"
            ids = None
            if key == "run_id":
                ids = new_runs if new_runs is not None else search_index.touched_ids(con)

            def touching(alias: str) -> tuple[str, list[str]]:
                """The condition keeping ``alias``'s rows of the touched keys, and its values."""
                if ids is None:  # experiments: joined on _touched
                    return f"{alias}.{key} IN (SELECT {key} FROM _touched)", []
                return search_index.runs_condition(alias, ids)

            only = touching(view)
            # Which touched runs the fold changes is worth finding when files went (a merge
            # brings back rows the state had: thousands of runs touched, few changed). With
            # files only added and few runs, the new rows change their runs as a rule, and the
            # comparison (two scans and two set differences per table, 12 of a 74 ms refresh
            # at 100,000 runs) cost more than rewriting an unchanged run's index row.
            compare = indexed and new_runs is None
            if compare:
                search_index.keep_before(con, view, only)
            condition, params = only
            fold_params: list[str] = []
            if view == "latest_metrics" and not gone:
                # Files only added: summaries fold associatively (max of the latest point,
                # NaN-ignoring min and max), so a run's folded row stands for every summary row
                # read before, and the new rows fold with it - no scan of all the raw rows.
                con.execute(
                    f"CREATE OR REPLACE TEMP TABLE _summaries AS SELECT run_id, experiment_id, key, "
                    f"step AS latest_step, timestamp AS latest_timestamp, value AS latest_value, min_value, "
                    f"max_value FROM {view} WHERE {condition} UNION ALL BY NAME SELECT run_id, experiment_id, "
                    "key, latest_step, latest_timestamp, latest_value, min_value, max_value FROM _new_rows "
                    # Rows without a run (a foreign file) match no condition, so the DELETE
                    # would never take their folded row: left out, as the raw path leaves them.
                    "WHERE run_id IS NOT NULL",
                    params,
                )
                touched = "_summaries"
            elif only_new:
                # No raw rows of these runs before this refresh: the new rows are all of them.
                new_condition, fold_params = touching("_new_rows")
                touched = f"(SELECT * FROM _new_rows WHERE {new_condition})"
            else:
                raw_condition, fold_params = touching(f"raw_{table}")
                touched = f"(SELECT * FROM raw_{table} WHERE {raw_condition})"
            con.execute(f"DELETE FROM {view} WHERE {condition}", params)
            con.execute(f"INSERT INTO {view} {views.fold_sql(view, touched)}", fold_params)
            if indexed:
                # Marked in the same transaction as their fold; rewritten at the end of the refresh.
                if compare:
                    search_index.mark(con, view, only)
                    self._marked_in_sql = True
                elif self._persistent:
                    search_index.mark_runs(con, ids or [])
                    self._marked_in_sql = True
                else:
                    # Kept before the commit: a fold rolled back is applied again by the next
                    # refresh, and a run marked without a change only has its row rewritten.
                    # (Rows naming no run, a foreign file's, have no index row.)
                    self._marked.update(run_id for run_id in ids or [] if run_id is not None)
                marked = True
            self._store_listing(table, listing)
        if marked:
            self._index_behind = True

    def _only_new_runs(self, table: str, view: str, new_runs: list[str] | None) -> bool:
        """Whether none of the runs ``new_runs`` (the new rows' runs; None when files went or
        many runs came) has raw rows of ``table`` yet, inside the caller's transaction before
        the new rows go in and ``view`` is folded. Either way the seen run ids, where kept,
        come to cover the new rows' runs: the one place that keeps them in step."""
        con = self._con
        if new_runs is None:
            if table in self._seen:
                seen = seen_table(table)
                con.execute(
                    f"INSERT INTO {seen} SELECT DISTINCT run_id FROM _new_rows "
                    f"WHERE run_id IS NOT NULL AND run_id NOT IN (SELECT run_id FROM {seen})"
                )
            return False
        ids = [run_id for run_id in new_runs if run_id is not None]
        if not ids or table not in _NEW_RUNS_TABLES:
            return False
        if table not in SEEN_TABLES:
            condition, params = search_index.runs_condition(view, ids)
            return not con.execute(f"SELECT 1 FROM {view} WHERE {condition} LIMIT 1", params).fetchall()
        seen = seen_table(table)
        if table not in self._seen:
            # Once per state (a cached state keeps it).
            con.execute(
                f"CREATE OR REPLACE TABLE {seen} AS SELECT DISTINCT run_id FROM raw_{table} WHERE run_id IS NOT NULL"
            )
            con.execute(f"CREATE INDEX {seen}_run_id ON {seen}(run_id)")
            self._seen.add(table)
        condition, params = search_index.runs_condition(seen, ids)
        known = {run_id for (run_id,) in con.execute(f"SELECT run_id FROM {seen} WHERE {condition}", params).fetchall()}
        new = [run_id for run_id in ids if run_id not in known]
        if new:
            con.execute(f"INSERT INTO {seen} SELECT unnest(?::VARCHAR[])", [new])
        return not known

    @contextlib.contextmanager
    def _seen_as_rolled_back(self) -> Iterator[None]:
        """Around a transaction: if it fails, the seen-run tables are as before it (what it
        created or dropped was rolled back with it)."""
        before = set(self._seen)
        try:
            yield
        except BaseException:
            self._seen = before
            raise

    def _forget_seen(self, table: str) -> None:
        """Drop ``table``'s seen run ids (inside the transaction that replaces its raw rows)."""
        if table in SEEN_TABLES:
            self._con.execute(f"DROP TABLE IF EXISTS {seen_table(table)}")
            self._seen.discard(table)

    def _rebuild(self, table: str, view: str, rows: pa.Table | None, listing: Listing) -> None:
        con = self._con
        if not self._persistent and not self._folded:
            self._load_compressed(table, view, rows)
            return
        with self._seen_as_rolled_back(), _transaction(con, _all_rows=rows if rows is not None else _empty(table)):
            if view != "experiments":
                # Built again from every folded table at the end of the refresh.
                search_index.drop(con)
            self._forget_seen(table)
            con.execute(f"CREATE OR REPLACE TABLE raw_{table} AS SELECT * FROM _all_rows")
            con.execute(f"CREATE OR REPLACE TABLE {view} AS {views.split_fold_sql(view)}")
            if view != "experiments":
                # An ART index on run_id turns a page's lookups (run_id IN (...100 ids)) into
                # index probes instead of full scans of a million rows.
                con.execute(f"CREATE INDEX {view}_run_id ON {view}(run_id)")
            self._store_listing(table, listing)
        self._folded = True
        if view != "experiments":
            self.index = None

    def _load_compressed(self, table: str, view: str, rows: pa.Table | None) -> None:
        """A first fold in memory, part one: the raw rows go in and are compressed at once; the
        fold waits for ``_fold_unfolded`` at the end of the refresh.

        An in-memory DuckDB table is stored uncompressed until a checkpoint, and a checkpoint
        compresses every table written since the last one. The raw rows are read only when a
        refresh folds a run again, so they are compressed (about 5x smaller); the folded tables
        and the search index, which every page reads row by row, are not (a page over
        compressed ones took half as long again). So each raw table is checkpointed before any
        fold exists, and no checkpoint runs after: later rows stay uncompressed. A failed
        checkpoint costs memory, not rows.
        """
        con = self._con
        with self._seen_as_rolled_back(), _transaction(con, _all_rows=rows if rows is not None else _empty(table)):
            self._forget_seen(table)
            con.execute(f"CREATE OR REPLACE TABLE raw_{table} AS SELECT * FROM _all_rows")
        try:
            con.execute("CHECKPOINT")
        except duckdb.Error as exc:
            log.info("runlake: raw rows of %s not compressed (%s)", table, exc)
        self._unfolded.append((table, view))
        if view != "experiments":
            self.index = None

    def _fold_unfolded(self) -> None:
        """A first fold in memory, part two: the folded tables of the raw rows ``_load_compressed``
        put in, with their run id indexes."""
        con = self._con
        while self._unfolded:
            _table, view = self._unfolded[0]
            with _transaction(con):
                if view != "experiments":
                    search_index.drop(con)  # built again from every folded table after
                con.execute(f"CREATE OR REPLACE TABLE {view} AS {views.split_fold_sql(view)}")
            if view != "experiments":
                # Over committed rows: an index made in its table's own transaction is built
                # at the commit, and took half as long again (1 M params rows: 0.67 vs 0.45 s).
                con.execute(f"CREATE INDEX {view}_run_id ON {view}(run_id)")
            self._unfolded.pop(0)
            self._folded = True

    def metrics_dataset(self) -> ds.Dataset:
        """The metric points as a lazily scanned dataset (filters push down to row groups).

        Kept while the metric files stay the same: the files are immutable, so their footers
        (row-group statistics, which prune a run's history to its row groups) are read once.
        """
        listing = list_table(self._fs, self._root, layout.METRICS)
        cached = self._metrics_cache
        if cached is not None and cached[0] == listing:
            return cached[1]
        # Only files not seen before are opened: a live lake adds a file per flush, and
        # reading every footer again each time would cost in proportion to the lake, not the change.
        listed = set(listing.files)
        with self._damage_lock:
            for path, size in self._damaged_metrics - listed:
                # Quarantined, replaced or rewritten in place: read it again if it is listed.
                self._damaged_metrics.discard((path, size))
                self._damaged.pop(path, None)
        new = [f for f in listing.files if f not in self._fragments and f not in self._damaged_metrics]
        found: dict[str, DamagedFile] = {}
        bad: list[tuple[str, int]] = []
        if new:
            sizes = dict(new)
            paths = [path for path, _size in new]
            for fragment in partitioned_dataset(self._fs, self._root, layout.METRICS, paths).get_fragments():
                file = (fragment.path, sizes[fragment.path])
                try:
                    fragment.ensure_complete_metadata()
                except Exception as exc:
                    if not damage.is_read_failure(exc) or isinstance(exc, FileNotFoundError):
                        raise
                    found[fragment.path] = damage.damaged_file(fragment.path, layout.METRICS, exc)
                    bad.append(file)
                    continue
                self._fragments[file] = fragment
        self._record_damage(found, bad)
        self._fragments = {f: self._fragments[f] for f in listing.files if f in self._fragments}
        self._metric_files = {path: (path, size) for path, size in self._fragments}
        self._group_statistics = {f: v for f, v in self._group_statistics.items() if f in self._fragments}
        template = partitioned_dataset(self._fs, self._root, layout.METRICS, [])
        dataset = ds.FileSystemDataset(
            list(self._fragments.values()), template.schema, template.format, filesystem=self._fs
        )
        self._metrics_cache = (listing, dataset)
        return dataset

    def metric_files(self) -> list[tuple[str, int]]:
        """The metric files (path, size) listed now, less those found damaged: what DuckDB's
        own Parquet reader is given (it reads and keeps the footers itself). Unlike
        ``metrics_dataset``, no footer is read here: a live run's history over newly merged
        files read each footer twice, once with pyarrow for a dataset it did not use."""
        listing = list_table(self._fs, self._root, layout.METRICS)
        with self._damage_lock:
            damaged = set(self._damaged_metrics)
        return [file for file in listing.files if file not in damaged]

    def row_group_statistics(self, path: str) -> list[GroupStatistics] | None:
        """The (run_id, key, step, timestamp) statistics of each row group of a metric file of
        the last ``metrics_dataset``, or None when unknown. Read once per file version (path
        and size, as the footers are): a zoom or a live refresh of a long series would otherwise
        turn every row group's statistics into Python again (about 20 ms for 10 M points)."""
        file = self._metric_files.get(path)
        fragment = self._fragments.get(file) if file is not None else None
        if file is None or fragment is None:
            return None
        if file not in self._group_statistics:
            self._group_statistics[file] = group_statistics(fragment)
        return self._group_statistics[file]

    def scan_metrics(self, columns: list[str], condition: ds.Expression) -> pa.Table:
        """Metric points matching ``condition``; a file whose pages turn out damaged is skipped.

        A footer that reads does not prove the pages do: when the scan fails on bad bytes,
        each file is scanned alone to find the culprit, which is then left out for good.
        """
        dataset = self.metrics_dataset()
        try:
            return dataset.to_table(columns=columns, filter=condition)
        except Exception as exc:
            if not damage.is_read_failure(exc) or isinstance(exc, FileNotFoundError):
                raise
            if not self.probe_metrics(columns, condition):
                raise
            return self.metrics_dataset().to_table(columns=columns, filter=condition)

    def probe_metrics(self, columns: list[str] | None = None, condition: ds.Expression | None = None) -> bool:
        """Scan each metric file alone; leave out the ones whose pages do not decode.

        Only called after a scan failed (it reads every file the scan would have read).
        A file is left out only when a read of its own (``damage.check_file``, not the
        fragment the failed scan used) fails too: a passing error of a fragment must not hide
        a file's points for the rest of this lake's life. A file that reads gets a new fragment
        from the next ``metrics_dataset``.

        Returns:
            Whether another try of the scan may succeed: a damaged file was found and left
            out, or fragments were replaced.
        """
        dataset = self.metrics_dataset()
        found: dict[str, DamagedFile] = {}
        bad: list[tuple[str, int]] = []
        renewed: list[tuple[str, int]] = []
        for file, fragment in list(self._fragments.items()):
            try:
                fragment.to_table(schema=dataset.schema, columns=columns, filter=condition)
            except Exception as inner:
                if not damage.is_read_failure(inner) or isinstance(inner, FileNotFoundError):
                    continue
                confirmed = damage.check_file(self._fs, fragment.path, layout.METRICS)
                if confirmed is None:
                    renewed.append(file)
                else:
                    found[fragment.path] = confirmed
                    bad.append(file)
        if not found and not renewed:
            return False
        self._record_damage(found, bad)
        # Damaged files go for good; sound ones whose fragment failed are dropped too, so the
        # next ``metrics_dataset`` opens them as new files (or finds them gone) with fresh fragments.
        for file in bad + renewed:
            self._fragments.pop(file, None)
        self._metrics_cache = None
        return True


# A persistent state (see ``lake/state_cache.py``) records which files its tables hold and
# their numbers, so a later open applies only the files that changed since.
LISTINGS_TABLE = "_runlake_listings"
# Changes whenever the raw tables or the listings table change shape: part of the state
# cache's key, so a cache file of another layout is never reused.
STATE_LAYOUT = "5: raw rows carry a file number; the search index a lifecycle_active column; seen run ids"


def seen_table(table: str) -> str:
    return f"_seen_runs_{table}"


def _stored_listings(con: duckdb.DuckDBPyConnection) -> tuple[dict[str, Listing], dict[tuple[str, int], int]]:
    """The listings of a persistent state's usable tables, and the numbers of their files."""
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {LISTINGS_TABLE} (table_name VARCHAR, path VARCHAR, size BIGINT, file_no INTEGER)"
    )
    tables = {name for (name,) in con.execute("SELECT table_name FROM duckdb_tables() WHERE NOT temporary").fetchall()}
    listings: dict[str, list[tuple[str, int]]] = {}
    numbers: dict[tuple[str, int], int] = {}
    for table, path, size, number in con.execute(
        f"SELECT table_name, path, size, file_no FROM {LISTINGS_TABLE} ORDER BY table_name, path"
    ).fetchall():
        listings.setdefault(table, []).append((path, size))
        numbers[(path, size)] = number
    # A table's listing counts only when its raw rows and folded view are both there.
    usable = {}
    for view, (_sql, raw, _key) in views.CURRENT_STATE.items():
        if raw in listings and f"raw_{raw}" in tables and view in tables:
            usable[raw] = Listing(tuple(listings[raw]))
    kept = {f for listing in usable.values() for f in listing.files}
    return usable, {f: n for f, n in numbers.items() if f in kept}


@contextlib.contextmanager
def _transaction(con: duckdb.DuckDBPyConnection, **rows: pa.Table) -> Iterator[None]:
    """One transaction (committed at the end, rolled back on any error) that sees ``rows``
    as tables by their names; the names are dropped after."""
    for name, table in rows.items():
        con.register(name, table)
    try:
        con.execute("BEGIN")
        yield
        con.execute("COMMIT")
    except BaseException:
        _rollback(con)
        raise
    finally:
        for name in rows:
            con.unregister(name)


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    """Roll back the caller's transaction, if a failed COMMIT left one, keeping the caller's error."""
    try:
        con.execute("ROLLBACK")
    except duckdb.TransactionException:
        pass  # the failed statement (a COMMIT that could not write) already ended it


def _empty(table: str) -> pa.Table:
    schema = layout.SCHEMAS[table]
    if table != layout.EXPERIMENTS:
        schema = schema.append(pa.field(layout.PARTITION_COLUMN, pa.string()))
    return schema.append(pa.field(SOURCE_COLUMN, SOURCE_TYPE)).empty_table()


def partitioned_dataset(fs: pafs.FileSystem, root: str, table: str, paths: list[str]) -> ds.Dataset:
    schema = layout.SCHEMAS[table].append(pa.field(layout.PARTITION_COLUMN, pa.string()))
    partitioning = ds.partitioning(pa.schema([(layout.PARTITION_COLUMN, pa.string())]), flavor="hive")
    return ds.dataset(
        paths,
        schema=schema,
        filesystem=fs,
        format="parquet",
        partitioning=partitioning,
        partition_base_dir=layout.LakePaths(root).table_dir(table),
    )
