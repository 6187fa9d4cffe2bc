"""The search index: one wide row per run, so a search is one scan instead of joins.

A search over the folded tables joins ``runs`` with ``latest_metrics``, ``params`` and
``tags`` once per key it filters or orders by: hash joins on run ids over every run, most of
a first page's time at 100,000 runs and more at a million. The index, ``_runs_wide``, is a
copy of ``runs`` (and whether each run is active, ``ACTIVE_COLUMN``) with one column per metric
aggregate (latest, min, max), param and tag key, so ``metrics.loss < 0.5 ORDER BY
metrics.acc`` becomes a filter and a top-N over one table.

It is derived state, kept in step through the state's own transactions: each fold marks the
runs it touched in its transaction (``mark``), and the end of the refresh rewrites the marked
runs' index rows once (``catch_up``: work in proportion to what changed). A table folded from
scratch drops the index, which the end of the refresh builds again. So the index is absent,
or the folded tables pivoted except for marked runs, which the refresh (or, after a process
stopped in between, the next open's) rewrites before answering; the search compiler uses the
index when present and the joins otherwise.

Columns are named from a hash of the key (``m_<16 hex>``, ``p_...``, ``t_...``): never the key
itself, which is user text (and DuckDB names are case-insensitive, so "Loss" and "loss"
would collide). A name always means the same key, so a query compiled against one version
of the index can never read another key's column. At most ``MAX_KEYS`` keys of each entity
get columns (the most frequent when built); a filter or order on any other key compiles to
the join, which gives the same answer, and frames read the index only while every key of an
entity has a column.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa

from runlake.core import layout

WIDE_TABLE = "_runs_wide"
KEYS_TABLE = "_runs_wide_keys"
# The entities whose every key has a column (a frame can then be read from the index alone).
COMPLETE_TABLE = "_runs_wide_complete"
# Runs whose folded state changed since their index rows were written: each fold marks its
# runs in its own transaction, and the end of the refresh rewrites them all at once.
PENDING_TABLE = "_runs_wide_pending"
TABLES = (WIDE_TABLE, KEYS_TABLE, COMPLETE_TABLE, PENDING_TABLE)
# Keys of each entity with their own columns: a metric key costs three (latest, min, max).
MAX_KEYS = 128

# entity -> (the folded table its values come from, {aggregate suffix: value column}).
_SOURCES: dict[str, tuple[str, dict[str, str]]] = {
    "metric": ("latest_metrics", {"": "value", "_min": "min_value", "_max": "max_value"}),
    "param": ("params", {"": "value"}),
    "tag": ("tags", {"": "value"}),
}
ENTITIES = tuple(_SOURCES)
# A search field's prefix (``metrics.loss``) -> the entity the index names it by.
ENTITY_OF_PREFIX = {"metrics": "metric", "params": "param", "tags": "tag"}
# The type of an entity's index columns.
_KINDS = {"metric": "DOUBLE", "param": "VARCHAR", "tag": "VARCHAR"}
# The temp table of run ids a fold touched (``Snapshot._apply`` creates it).
TOUCHED = "_touched"
# The touched runs' folded rows before their fold (``keep_before``).
BEFORE = "_folded_before"
# A column of the index beside the runs' own: whether the run is active. Every search filters
# on the stage, and in memory DuckDB stores strings uncompressed: comparing 1,000,000
# ``lifecycle_stage`` strings took 7 ms of a count and 8 ms of a top-N, a boolean about none.
ACTIVE_COLUMN = "lifecycle_active"
_RUN_COLUMNS = f"r.*, r.lifecycle_stage = '{layout.LIFECYCLE_ACTIVE}' AS {ACTIVE_COLUMN}"


def column_name(entity: str, key: str, aggregate: str = "") -> str:
    """The index column of a key's values: a hash, never the key's text.

    ``aggregate`` is "" (a param's or tag's value, a metric's latest), "_min" or "_max".
    """
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()
    return f"{entity[0]}_{digest}{aggregate}"


@dataclass(frozen=True, eq=False)
class SearchIndex:
    """Which keys the index holds. Compared by identity: a new object whenever keys are added,
    so compiled searches can be cached per index."""

    keys: frozenset[tuple[str, str]]
    complete: frozenset[str] = frozenset()

    @functools.cached_property
    def columns(self) -> dict[str, dict[str, str]]:
        """entity -> {key: its column (a metric's latest value)}, for every key held."""
        held: dict[str, dict[str, str]] = {entity: {} for entity in _SOURCES}
        for entity, key in self.keys:
            held[entity][key] = column_name(entity, key)
        return held

    def column(self, entity: str, key: str, aggregate: str = "") -> str | None:
        """The column holding ``entity``'s ``key`` (with ``aggregate`` for metrics), or None
        when the index has no column for it."""
        return column_name(entity, key, aggregate) if (entity, key) in self.keys else None


def load(con: duckdb.DuckDBPyConnection) -> SearchIndex | None:
    """The index a state holds, or None when it has none (never built, or dropped)."""
    tables = {
        name
        for (name,) in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE NOT temporary AND table_name IN (?, ?, ?, ?)", list(TABLES)
        ).fetchall()
    }
    return _loaded_keys(con) if tables == set(TABLES) else None


def touched_ids(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The run ids in ``_touched``, or more than ``PROBE_LIMIT`` of them: enough for
    ``runs_condition`` to choose between probes and a join."""
    return [run_id for (run_id,) in con.execute(f"SELECT run_id FROM {TOUCHED} LIMIT ?", [PROBE_LIMIT + 1]).fetchall()]


def keep_before(con: duckdb.DuckDBPyConnection, view: str, only: tuple[str, list[str]]) -> None:
    """Keep the folded rows of the runs in ``_touched`` as they are before their fold (inside
    the fold's transaction), for ``mark`` to compare with; ``only`` is their ``runs_condition``."""
    condition, params = only
    con.execute(f"CREATE OR REPLACE TEMP TABLE {BEFORE} AS SELECT * FROM {view} WHERE {condition}", params)


def mark(con: duckdb.DuckDBPyConnection, view: str, only: tuple[str, list[str]]) -> None:
    """Note as behind the runs in ``_touched`` whose folded rows in ``view`` the fold changed
    (inside the fold's transaction, after ``keep_before``).

    A merge's file brings back rows the lake had already, so its runs are touched and folded
    again, but folded to what they were: only the runs that came out different are rewritten.
    (At 10 ms flushes a refresh saw every run of a merged partition: 4,900 touched, a handful
    changed, and their index rows cost 230 ms.)
    """
    condition, params = only
    after = f"(SELECT * FROM {view} WHERE {condition})"
    con.execute(
        f"INSERT INTO {PENDING_TABLE} SELECT DISTINCT run_id FROM "
        f"(({after} EXCEPT SELECT * FROM {BEFORE}) UNION ALL (SELECT * FROM {BEFORE} EXCEPT {after}))",
        params * 2,
    )
    con.execute(f"DROP TABLE {BEFORE}")


def mark_runs(con: duckdb.DuckDBPyConnection, ids: list[str]) -> None:
    """Note the runs ``ids`` as behind, changed or not (inside the fold's transaction)."""
    if ids:
        con.execute(f"INSERT INTO {PENDING_TABLE} SELECT unnest(?::VARCHAR[])", [ids])


def behind(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether some runs' index rows wait for ``catch_up`` (a process stopped in between)."""
    return bool(con.execute(f"SELECT EXISTS (SELECT 1 FROM {PENDING_TABLE})").fetchall()[0][0])


def catch_up(
    con: duckdb.DuckDBPyConnection, index: SearchIndex, marked: Collection[str] = (), *, pending: bool = True
) -> SearchIndex:
    """Rewrite the index rows of every marked run, once however many folds marked it (inside
    the caller's transaction): the runs in the marks table when ``pending``, and ``marked``,
    runs a fold noted without writing them there (an in-memory state)."""
    if pending:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {TOUCHED} AS SELECT DISTINCT run_id FROM "
            f"(SELECT run_id FROM {PENDING_TABLE} UNION ALL SELECT unnest(?::VARCHAR[]))",
            [sorted(marked)],
        )
        index = update(con, index)
        con.execute(f"DELETE FROM {PENDING_TABLE}")
        return index
    return update(con, index, sorted(marked))


def drop(con: duckdb.DuckDBPyConnection) -> None:
    """Remove the index (inside the caller's transaction): a table is being folded from scratch."""
    for table in TABLES:
        con.execute(f"DROP TABLE IF EXISTS {table}")


def build(con: duckdb.DuckDBPyConnection, max_keys: int = MAX_KEYS) -> SearchIndex:
    """Build the index from the folded tables (inside the caller's transaction).

    Each entity's ``max_keys`` most frequent keys get columns (ties by key, so every build of
    the same state picks the same keys).
    """
    drop(con)
    con.execute(f"CREATE TABLE {KEYS_TABLE} (entity VARCHAR, key VARCHAR, n INTEGER)")
    con.execute(f"CREATE TABLE {COMPLETE_TABLE} (entity VARCHAR)")
    con.execute(f"CREATE TABLE {PENDING_TABLE} (run_id VARCHAR)")
    for entity, (table, _aggregates) in _SOURCES.items():
        con.execute(
            f"INSERT INTO {KEYS_TABLE} SELECT ?, key, (row_number() OVER (ORDER BY count(*) DESC, key) - 1)::INTEGER "
            f"FROM {table} GROUP BY key ORDER BY count(*) DESC, key LIMIT ?",
            [entity, max_keys],
        )
        con.execute(
            f"INSERT INTO {COMPLETE_TABLE} SELECT ? WHERE (SELECT count(DISTINCT key) FROM {table}) <= ?",
            [entity, max_keys],
        )
    con.execute(f"CREATE TABLE {WIDE_TABLE} AS {_rows_sql(con, touched=False)}")
    # Frames probe it by run id (a page's 100 runs among a million).
    con.execute(f"CREATE INDEX {WIDE_TABLE}_run_id ON {WIDE_TABLE}(run_id)")
    return _loaded_keys(con)


def update(con: duckdb.DuckDBPyConnection, index: SearchIndex, ids: list[str] | None = None) -> SearchIndex:
    """Rewrite the index rows of the runs in ``_touched`` (inside the caller's transaction,
    after the fold), or of ``ids`` (distinct) given instead: new keys get columns while an
    entity has fewer than ``MAX_KEYS``."""
    if ids is None:
        ids = [run_id for (run_id,) in con.execute(f"SELECT run_id FROM {TOUCHED}").fetchall()]
    elif len(ids) > PROBE_LIMIT:
        # More than a probe's worth: the conditions below join on _touched, which must hold them.
        con.execute(f"CREATE OR REPLACE TEMP TABLE {TOUCHED} AS SELECT unnest(?::VARCHAR[]) AS run_id", [ids])
    if not ids:
        return index
    if len(ids) > PYTHON_LIMIT:
        return _update_joined(con, index)
    # Up to thousands of runs (a live refresh): their values come back in one query and are
    # pivoted here. The SQL pivot's fixed cost (a plan with an aggregate per column) was about
    # 10 ms however few the runs.
    only, only_params = runs_condition("x", ids)
    parts = []
    for number, (table, _aggregates) in enumerate(_SOURCES.values()):
        numbers = (
            "x.value, x.min_value, x.max_value, NULL" if table == "latest_metrics" else "NULL, NULL, NULL, x.value"
        )
        parts.append(f"SELECT {number}, x.run_id, x.key, {numbers} FROM {table} x WHERE {only}")
    values = con.execute(" UNION ALL ".join(parts), only_params * len(parts)).fetchall()
    held = {entity: {k for e, k in index.keys if e == entity} for entity in _SOURCES}
    found: dict[str, set[str]] = {entity: set() for entity in _SOURCES}
    for number, _run_id, key, *_cells in values:
        found[ENTITIES[number]].add(key)
    index = _add_keys(con, index, {entity: sorted(found[entity] - held[entity]) for entity in _SOURCES})
    only, only_params = runs_condition("r", ids)
    rows = con.sql(f"SELECT {_RUN_COLUMNS} FROM runs r WHERE {only}", params=only_params or None).to_arrow_table()
    position = {run_id: i for i, run_id in enumerate(rows.column("run_id").to_pylist())}
    names: dict[tuple[int, str], list[str] | None] = {}
    cells: dict[str, list[Any]] = {}
    types: dict[str, pa.DataType] = {}
    for number, run_id, key, value, low, high, text in values:
        entity = ENTITIES[number]
        if (number, key) not in names:
            names[(number, key)] = (
                [column_name(entity, key, suffix) for suffix in _SOURCES[entity][1]]
                if (entity, key) in index.keys
                else None
            )
        columns, row = names[(number, key)], position.get(run_id)
        if columns is None or row is None:
            continue
        for column, cell in zip(columns, (value, low, high) if entity == "metric" else (text,), strict=True):
            cells.setdefault(column, [None] * rows.num_rows)[row] = cell
            types[column] = pa.float64() if entity == "metric" else pa.string()
    for column, column_cells in cells.items():
        rows = rows.append_column(column, pa.array(column_cells, types[column]))
    only, only_params = runs_condition(WIDE_TABLE, ids)
    con.execute(f"DELETE FROM {WIDE_TABLE} WHERE {only}", only_params)
    con.register("_wide_rows", rows)
    try:
        con.execute(f"INSERT INTO {WIDE_TABLE} BY NAME SELECT * FROM _wide_rows")
    finally:
        con.unregister("_wide_rows")
    return index


def _update_joined(con: duckdb.DuckDBPyConnection, index: SearchIndex) -> SearchIndex:
    """``update`` for many runs: new keys found and rows pivoted in SQL, joined on ``_touched``."""
    new: dict[str, list[str]] = {}
    for entity, (table, _aggregates) in _SOURCES.items():
        new[entity] = [
            key
            for (key,) in con.execute(
                f"SELECT DISTINCT x.key FROM {table} x WHERE x.run_id IN (SELECT run_id FROM {TOUCHED}) "
                f"AND x.key NOT IN (SELECT key FROM {KEYS_TABLE} WHERE entity = ?) ORDER BY x.key",
                [entity],
            ).fetchall()
        ]
    index = _add_keys(con, index, new)
    con.execute(f"DELETE FROM {WIDE_TABLE} WHERE run_id IN (SELECT run_id FROM {TOUCHED})")
    con.execute(f"INSERT INTO {WIDE_TABLE} BY NAME {_rows_sql(con, touched=True)}")
    return index


def _add_keys(con: duckdb.DuckDBPyConnection, index: SearchIndex, new: dict[str, list[str]]) -> SearchIndex:
    """Give ``new`` keys (sorted, none held yet) columns while their entity has room; an entity
    with a key left without one is no longer complete."""
    added = False
    for entity, keys in new.items():
        held = sum(1 for e, _k in index.keys if e == entity)
        room = max(MAX_KEYS - held, 0)
        if len(keys) > room and entity in index.complete:
            con.execute(f"DELETE FROM {COMPLETE_TABLE} WHERE entity = ?", [entity])
            added = True
        for number, key in enumerate(keys[:room], start=held):
            con.execute(f"INSERT INTO {KEYS_TABLE} VALUES (?, ?, ?)", [entity, key, number])
            for suffix in _SOURCES[entity][1]:
                con.execute(f"ALTER TABLE {WIDE_TABLE} ADD COLUMN {column_name(entity, key, suffix)} {_KINDS[entity]}")
            added = True
    return _loaded_keys(con) if added else index


# Up to this many touched runs are looked up through the run_id indexes (a refresh after a few
# runs logged: probes instead of scans of every run's rows); more are joined on ``_touched``
# (measured at 100,000 runs: an IN list of 500 cost more than the join).
PROBE_LIMIT = 100
# Up to this many touched runs are pivoted in Python, more in SQL.
PYTHON_LIMIT = 5000


def runs_condition(alias: str, ids: list[str]) -> tuple[str, list[str]]:
    """The condition keeping ``alias``'s rows of the runs ``ids``, and its bound values: the
    ids themselves up to ``PROBE_LIMIT``, else a join on ``_touched`` (which holds them)."""
    if len(ids) <= PROBE_LIMIT:
        return f"{alias}.run_id IN ({', '.join('?' * len(ids))})", list(ids)
    return f"{alias}.run_id IN (SELECT run_id FROM {TOUCHED})", []


def _loaded_keys(con: duckdb.DuckDBPyConnection) -> SearchIndex:
    keys = frozenset(con.execute(f"SELECT entity, key FROM {KEYS_TABLE}").fetchall())
    complete = frozenset(entity for (entity,) in con.execute(f"SELECT entity FROM {COMPLETE_TABLE}").fetchall())
    return SearchIndex(keys, complete)


def _rows_sql(con: duckdb.DuckDBPyConnection, *, touched: bool) -> str:
    """SELECT of the index rows of every run (or of the runs in ``_touched``), with each key's
    values pivoted.

    The pivot is one grouped pass per entity with a filtered aggregate per column, matched on
    each key's number in ``KEYS_TABLE``; the only names in the SQL are hashes and fixed words.
    """

    def only(alias: str) -> str:
        return f" WHERE {alias}.run_id IN (SELECT run_id FROM {TOUCHED})" if touched else ""

    numbered: dict[str, list[tuple[str, int]]] = {entity: [] for entity in _SOURCES}
    for entity, key, number in con.execute(f"SELECT entity, key, n FROM {KEYS_TABLE} ORDER BY entity, n").fetchall():
        numbered[entity].append((key, number))
    selects = [_RUN_COLUMNS]
    joins = []
    for entity, (table, aggregates) in _SOURCES.items():
        if not numbered[entity]:
            continue
        alias = entity[0]
        cells = ", ".join(
            f"first(x.{value}) FILTER (WHERE k.n = {int(number)}) AS {column_name(entity, key, suffix)}"
            for key, number in numbered[entity]
            for suffix, value in aggregates.items()
        )
        # The entity's literal is a fixed word; the keys table is matched by join, not by text.
        pivot = (
            f"SELECT x.run_id, {cells} FROM {table} x JOIN {KEYS_TABLE} k ON k.entity = '{entity}' AND k.key = x.key"
            f"{only('x')} GROUP BY x.run_id"
        )
        joins.append(f" LEFT JOIN ({pivot}) {alias} ON {alias}.run_id = r.run_id")
        selects.append(f"{alias}.* EXCLUDE (run_id)")
    return f"SELECT {', '.join(selects)} FROM runs r{''.join(joins)}{only('r')}"
