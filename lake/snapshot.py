"""Keeps a DuckDB connection's current-state tables in step with a lake's files.

Each table's file listing is fingerprinted; a query first refreshes whatever changed. New
files alone (the common case: training jobs flushing) are appended and only the affected runs
are folded again; a listing that lost files (compaction, retention) rebuilds that table. Rows
are read with pyarrow through the lake's filesystem, so no path is ever written into SQL.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from runlake.core import layout, writer
from runlake.lake import views

# Key-major physical order: a filter on one key (metrics.loss, params.lr) then skips the row
# groups of every other key through DuckDB's min/max zone maps.
_PHYSICAL_ORDER = {"params": "key, run_id", "tags": "key, run_id", "latest_metrics": "key, run_id"}
_MATERIALISED = tuple(raw for _sql, raw, _key in views.CURRENT_STATE.values())


@dataclass(frozen=True)
class Listing:
    """One table's finished part files and their sizes."""

    files: tuple[tuple[str, int], ...]

    @property
    def paths(self) -> list[str]:
        return [path for path, _size in self.files]


def list_table(fs: pafs.FileSystem, root: str, table: str) -> Listing:
    return Listing(tuple((info.path, info.size or 0) for info in writer.list_parts(fs, root, table)))


def read_files(fs: pafs.FileSystem, root: str, table: str, paths: list[str]) -> pa.Table:
    """Rows of the given part files: the table's schema plus ``experiment_id`` when partitioned."""
    if table == layout.EXPERIMENTS:
        return ds.dataset(paths, schema=layout.SCHEMAS[table], filesystem=fs, format="parquet").to_table()
    return partitioned_dataset(fs, root, table, paths).to_table()


class Snapshot:
    """The current-state tables of one lake inside one DuckDB connection."""

    def __init__(self, con: duckdb.DuckDBPyConnection, fs: pafs.FileSystem, root: str) -> None:
        self._con = con
        self._fs = fs
        self._root = root
        self._lock = threading.Lock()
        self._listings: dict[str, Listing] = {}
        self.generation = 0
        self._metrics_cache: tuple[Listing, ds.Dataset] | None = None

    def fingerprint(self) -> tuple[int, ...]:
        """A value that changes whenever any table's listing changes (for caches)."""
        return tuple(hash(self._listings.get(t)) for t in layout.ALL_TABLES)

    def refresh(self, tables: tuple[str, ...] = _MATERIALISED) -> bool:
        """Bring the given tables up to date with the files; True when anything changed."""
        with self._lock:
            changed = False
            for table in tables:
                listing = list_table(self._fs, self._root, table)
                if listing != self._listings.get(table):
                    self._listings[table] = self._load(table, self._listings.get(table), listing)
                    changed = True
            if changed:
                self.generation += 1
            return changed

    def _load(self, table: str, old: Listing | None, new: Listing) -> Listing:
        view, key = next((name, key) for name, (_sql, raw, key) in views.CURRENT_STATE.items() if raw == table)
        if old is not None and set(old.files).issubset(new.files):
            known = set(old.files)
            added = [path for path, size in new.files if (path, size) not in known]
            try:
                rows = read_files(self._fs, self._root, table, added)
            except FileNotFoundError:
                pass  # maintenance moved rows since the listing: fold everything again below
            else:
                self._append(table, view, key, rows)
                return new
        return self._rebuild(table, view, new)

    def _append(self, table: str, view: str, key: str, rows: pa.Table) -> None:
        con = self._con
        con.register("_new_rows", rows)
        try:
            con.execute("BEGIN")
            con.execute(f"INSERT INTO raw_{table} SELECT * FROM _new_rows")
            # Fold again only the keys the new rows touch; the rest of the state stands.
            con.execute(f"CREATE OR REPLACE TEMP TABLE _touched AS SELECT DISTINCT {key} FROM _new_rows")
            con.execute(f"DELETE FROM {view} WHERE {key} IN (SELECT {key} FROM _touched)")
            touched = f"(SELECT * FROM raw_{table} WHERE {key} IN (SELECT {key} FROM _touched))"
            con.execute(f"INSERT INTO {view} {views.fold_sql(view, touched)}")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        finally:
            con.unregister("_new_rows")

    def _rebuild(self, table: str, view: str, listing: Listing) -> Listing:
        con = self._con
        given = iter([listing])
        used: list[Listing] = []

        def read() -> pa.Table:
            # The given listing first; after a vanished file, a fresh one (maintenance writes
            # its output before removing inputs, so it holds every row).
            current = next(given, None) or list_table(self._fs, self._root, table)
            used.append(current)
            return read_files(self._fs, self._root, table, current.paths)

        rows = writer.with_relisting(read)
        listing = used[-1]
        con.register("_all_rows", rows)
        try:
            con.execute("BEGIN")
            con.execute(f"CREATE OR REPLACE TABLE raw_{table} AS SELECT * FROM _all_rows")
            order = f" ORDER BY {_PHYSICAL_ORDER[view]}" if view in _PHYSICAL_ORDER else ""
            con.execute(f"CREATE OR REPLACE TABLE {view} AS SELECT * FROM ({views.fold_sql(view)}){order}")
            if view != "experiments":
                # An ART index on run_id turns a page's lookups (run_id IN (...100 ids)) into
                # index probes instead of full scans of a million rows.
                con.execute(f"CREATE INDEX {view}_run_id ON {view}(run_id)")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        finally:
            con.unregister("_all_rows")
        return listing

    def metrics_dataset(self) -> ds.Dataset:
        """The metric points as a lazily scanned dataset (filters push down to row groups).

        Kept while the metric files stay the same: the files are immutable, so their footers
        (row-group statistics, which prune a run's history to its row groups) are read once.
        """
        listing = list_table(self._fs, self._root, layout.METRICS)
        cached = self._metrics_cache
        if cached is not None and cached[0] == listing:
            return cached[1]
        dataset = partitioned_dataset(self._fs, self._root, layout.METRICS, listing.paths)
        for fragment in dataset.get_fragments():
            fragment.ensure_complete_metadata()
        self._metrics_cache = (listing, dataset)
        return dataset


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
