"""Pivots a known, ordered set of runs into the wide frame ``mlflow.search_runs`` returns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from runlake.core import layout
from runlake.lake import catalog
from runlake.lake.connection import Connection
from runlake.lake.search_index import ENTITY_OF_PREFIX, WIDE_TABLE, SearchIndex
from runlake.lake.sql import INDEX_LOOKUP_LIMIT, Fragment, all_of, id_list, indexed_ids, join, q

# The leading columns of a search frame, in mlflow.search_runs order plus runlake's additions.
FRAME_COLUMNS = (
    "run_id",
    "experiment_id",
    "status",
    "artifact_uri",
    "start_time",
    "end_time",
    "run_name",
    "user_id",
    "lifecycle_stage",
    "parent_run_id",
    "source_type",
    "source_name",
    "source_version",
    "deleted_time",
)
_TIME_COLUMNS = ("start_time", "end_time", "deleted_time")
# Entity prefix -> the current-state table with its (run_id, key, value) rows, and the cell of
# a run that lacks the key (as mlflow.search_runs: NaN for metrics, None otherwise).
_ENTITIES: tuple[tuple[str, str, Any], ...] = (
    ("metrics", "latest_metrics", float("nan")),
    ("params", "params", None),
    ("tags", "tags", None),
)
assert set(FRAME_COLUMNS) <= set(layout.RUN_COLUMNS)


def _wanted(columns: Sequence[str] | None, prefix: str) -> list[str] | None:
    if columns is None:
        return None
    return [c[len(prefix) + 1 :] for c in columns if c.startswith(prefix + ".")]


# Up to this many runs, all their metric, param and tag values come back in one query and
# pivot in Python (a query's fixed cost dominates a page); more pivot in DuckDB, straight to
# Arrow (a Python pivot of a 10,000-run frame costs more than the search itself).
PYTHON_PIVOT_LIMIT = 2500
# Up to this many runs are probed through the run_id index, more joined against a bound list.
INDEX_PROBE_LIMIT = 100


@dataclass(frozen=True)
class IndexSelection:
    """What a frame reads from the search index's wide rows: its columns and the keys they hold."""

    wanted: dict[str, list[str] | None]
    # (prefix, key, the key's index column or None when no run holds it)
    picked: list[tuple[str, str, str | None]]

    @property
    def columns(self) -> list[str]:
        """The wide table's columns to select, the frame's leading ones first."""
        return list(FRAME_COLUMNS) + [column for _p, _k, column in self.picked if column is not None]


def index_selection(
    index: SearchIndex | None, columns: Sequence[str] | None, prefixes: Sequence[str] | None = None
) -> IndexSelection | None:
    """How to read a frame with these ``columns`` from the search index, or None when the index
    does not hold all of them (absent, or an entity not yet complete).

    ``prefixes`` instead (with ``columns`` None): every key of those entities ("params",
    "tags") and none of the others.
    """
    if prefixes is None:
        wanted = {prefix: _wanted(columns, prefix) for prefix, _, _ in _ENTITIES}
    else:
        wanted = {prefix: None if prefix in prefixes else [] for prefix, _, _ in _ENTITIES}
    if index is None or not all(
        keys == [] or ENTITY_OF_PREFIX[prefix] in index.complete for prefix, keys in wanted.items()
    ):
        return None
    picked: list[tuple[str, str, str | None]] = []
    for prefix, _table, _missing in _ENTITIES:
        keys = wanted[prefix]
        if keys == []:
            continue
        held = index.columns[ENTITY_OF_PREFIX[prefix]]
        for key in sorted(held if keys is None else set(keys)):
            picked.append((prefix, key, held.get(key)))
    return IndexSelection(wanted, picked)


def build_frame(db: Connection, run_ids: list[str], columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The wide frame of ``run_ids`` in that order.

    Missing metrics are NaN and missing params and tags None, as in ``mlflow.search_runs``.

    Args:
        db: the lake's connection (refreshed by the caller).
        run_ids: runs in output order.
        columns: only these ``metrics.*``/``params.*``/``tags.*`` columns (all when None).
    """
    selection = index_selection(db.search_index(), columns)
    if selection is not None:
        return frame_from_index_rows(index_rows(db, selection, run_ids), selection, run_ids)
    wanted = {prefix: _wanted(columns, prefix) for prefix, _, _ in _ENTITIES}
    if len(run_ids) <= PYTHON_PIVOT_LIMIT:
        ids = indexed_ids("run_id", run_ids) if len(run_ids) <= INDEX_PROBE_LIMIT else id_list("run_id", run_ids)
        base = db.arrow(join([f"SELECT {', '.join(FRAME_COLUMNS)} FROM runs WHERE", ids]))
        wide = _pivot_in_python(db, ids, run_ids, wanted)
    else:
        registered = {"_frame_ids": pa.table({"run_id": pa.array(run_ids, pa.string())})}
        base = db.arrow(
            q(f"SELECT {', '.join(FRAME_COLUMNS)} FROM runs WHERE run_id IN (SELECT run_id FROM _frame_ids)"),
            registered,
        )
        wide = _pivot_in_duckdb(db, registered, run_ids, wanted)
    return _assembled(_aligned(base, run_ids), wide, run_ids)


def frame_from_index_rows(rows: pa.Table, selection: IndexSelection, run_ids: list[str]) -> pd.DataFrame:
    """The frame of wide index rows already in ``run_ids`` order (one row per run, a run the
    lake lacks a row of nulls), with ``selection``'s columns: no pivot, the index is the pivot.

    A search asking for more runs than a page selects these rows in its own query, so its
    runs and their frame come from one statement (``search.results.search_rows``).
    """
    wide: list[tuple[str, pa.Array]] = []
    for prefix, key, column in selection.picked:
        values = rows.column(column).combine_chunks() if column is not None else None
        if values is None:
            # Asked for by name and held by no run: present, and missing in every cell.
            wide.append((f"{prefix}.{key}", pa.nulls(len(run_ids), _value_type(prefix))))
        elif selection.wanted[prefix] is not None or values.null_count < len(values):
            # Without a list, the keys some run on the page has, as the pivots give them.
            wide.append((f"{prefix}.{key}", values.cast(_value_type(prefix))))
    return _assembled(rows.select(list(FRAME_COLUMNS)), wide, run_ids)


def _assembled(base: pa.Table, wide: list[tuple[str, pa.Array]], run_ids: list[str]) -> pd.DataFrame:
    """The frame of the runs' attribute rows (in ``run_ids`` order) and their key columns."""
    base = base.set_column(0, "run_id", pa.array(run_ids, pa.string()))
    for index, column in enumerate(FRAME_COLUMNS):
        values = base.column(index)
        if column in _TIME_COLUMNS:
            as_time = pc.cast(pc.cast(values, pa.timestamp("ms", tz="UTC")), pa.timestamp("us", tz="UTC"))
            base = base.set_column(index, column, as_time)
        elif values.null_count == base.num_rows:
            # A text attribute no run on the page has (source_version, parent_run_id...) is
            # None in every cell, as mlflow.search_runs gives it, rather than a column of NaN:
            # Arrow's null type becomes an object column of None.
            base = base.set_column(index, column, pa.nulls(base.num_rows))
    for name, values in wide:
        base = base.append_column(name, values)
    return base.to_pandas()


def index_rows(db: Connection, selection: IndexSelection, run_ids: list[str]) -> pa.Table:
    """The wide index rows of ``run_ids`` in that order (a run the index lacks, a row of
    nulls): one lookup instead of one per table."""
    select = f"SELECT {', '.join(selection.columns)} FROM {WIDE_TABLE} WHERE"
    if len(run_ids) <= INDEX_LOOKUP_LIMIT:
        rows = db.arrow(join([select, indexed_ids("run_id", run_ids)]))
    else:
        registered = {"_frame_ids": pa.table({"run_id": pa.array(run_ids, pa.string())})}
        rows = db.arrow(q(f"{select} run_id IN (SELECT run_id FROM _frame_ids)"), registered)
    return _aligned(rows, run_ids)


def _aligned(table: pa.Table, run_ids: list[str]) -> pa.Table:
    """``table``'s rows in ``run_ids`` order; a run it lacks is a row of nulls."""
    position = {run_id: i for i, run_id in enumerate(table.column("run_id").to_pylist())}
    return table.take(pa.array([position.get(run_id) for run_id in run_ids], pa.int64()))


def _value_type(prefix: str) -> pa.DataType:
    return pa.float64() if prefix == "metrics" else pa.string()


def _pivot_in_python(
    db: Connection, ids: Fragment, run_ids: list[str], wanted: dict[str, list[str] | None]
) -> list[tuple[str, pa.Array]]:
    parts: list[Fragment] = []
    for number, (prefix, table, _missing) in enumerate(_ENTITIES):
        keys = wanted[prefix]
        if keys == []:
            continue
        number_value = "value" if prefix == "metrics" else "NULL::DOUBLE"
        text_value = "NULL::VARCHAR" if prefix == "metrics" else "value"
        conditions = [ids] + ([id_list("key", keys)] if keys is not None else [])
        select = (
            f"SELECT {number} AS entity, run_id, key, {number_value} AS number, {text_value} AS text FROM {table} WHERE"
        )
        parts.append(join([select, all_of(conditions)]))
    if not parts:
        return []
    by_key: dict[tuple[int, str], dict[str, Any]] = {}
    query = join([join([q("("), part, q(")")], " ") for part in parts], " UNION ALL ")
    for entity, run_id, key, number, text in db.rows(query):
        by_key.setdefault((entity, key), {})[run_id] = number if entity == 0 else text
    wide: list[tuple[str, pa.Array]] = []
    for number, (prefix, _table, missing) in enumerate(_ENTITIES):
        keys = wanted[prefix]
        if keys == []:
            continue
        # Columns asked for by name are present even when no run on this page has them.
        for key in sorted({k for e, k in by_key if e == number} | set(keys or [])):
            values = by_key.get((number, key), {})
            cells = [values.get(run_id, missing) for run_id in run_ids]
            wide.append((f"{prefix}.{key}", pa.array(cells, _value_type(prefix), from_pandas=True)))
    return wide


def _pivot_in_duckdb(
    db: Connection, registered: dict[str, pa.Table], run_ids: list[str], wanted: dict[str, list[str] | None]
) -> list[tuple[str, pa.Array]]:
    wide: list[tuple[str, pa.Array]] = []
    for prefix, table, _missing in _ENTITIES:
        keys = wanted[prefix]
        if keys == []:
            continue
        tables = dict(registered)
        key_condition = ""
        if keys is not None:
            tables["_frame_keys"] = pa.table({"key": pa.array(keys, pa.string())})
            key_condition = " AND key IN (SELECT key FROM _frame_keys)"
        where = f"WHERE run_id IN (SELECT run_id FROM _frame_ids){key_condition}"
        # The pivoted columns are named by each key's position, never by the key: DuckDB's
        # column names are case-insensitive, so keys differing only in case ("Loss", "loss")
        # would come back renamed ("loss_1"). Keys are data here, never SQL text.
        found = sorted(db.arrow(q(f"SELECT DISTINCT key FROM {table} {where}"), tables).column("key").to_pylist())
        tables["_frame_key_numbers"] = pa.table(
            {"key": pa.array(found, pa.string()), "number": pa.array(range(len(found)), pa.int64())}
        )
        source = (
            f"SELECT run_id, 'k' || n.number AS key, value FROM {table} JOIN _frame_key_numbers n USING (key) {where}"
        )
        pivoted = (
            _aligned(db.arrow(q(f"PIVOT ({source}) ON key USING first(value) GROUP BY run_id"), tables), run_ids)
            if found
            else pa.table({"run_id": pa.array([], pa.string())})
        )
        column_of = {key: f"k{number}" for number, key in enumerate(found)}
        for key in sorted(set(found) | set(keys or [])):
            if key in column_of:
                values = pivoted.column(column_of[key]).cast(_value_type(prefix))
                wide.append((f"{prefix}.{key}", values.combine_chunks()))
            else:
                wide.append((f"{prefix}.{key}", pa.nulls(len(run_ids), _value_type(prefix))))
    return wide


def runs_frame(db: Connection, experiment_ids: list[str] | None, run_view_type: str) -> pd.DataFrame:
    """All runs of some experiments (all when None), newest first, as a search frame."""
    condition = all_of([catalog.stage_condition("r.lifecycle_stage", run_view_type), catalog.scope(experiment_ids)])
    rows = db.rows(join(["SELECT r.run_id FROM runs r WHERE", condition, q("ORDER BY r.start_time DESC, r.run_id")]))
    return build_frame(db, [r[0] for r in rows])
