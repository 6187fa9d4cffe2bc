"""Pivots a known, ordered set of runs into the wide frame ``mlflow.search_runs`` returns."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from runlake.lake.query import Lake

_KEYS = " AND key IN (SELECT unnest(?::VARCHAR[]))"
# Up to this many ids are looked up through the run_id index (an IN list of placeholders);
# more are joined against the list, which scans but stays linear.
_INDEX_LOOKUP_LIMIT = 1000


def ids_condition(run_ids: list[str], column: str = "run_id") -> tuple[str, list[Any]]:
    """A condition selecting ``run_ids``, with its bound values (only ``?`` marks in the SQL)."""
    if len(run_ids) <= _INDEX_LOOKUP_LIMIT:
        return f"{column} IN ({', '.join('?' * len(run_ids)) or 'NULL'})", list(run_ids)
    return f"{column} IN (SELECT unnest(?::VARCHAR[]))", [list(run_ids)]


def _wanted(columns: Sequence[str] | None, prefix: str) -> list[str] | None:
    if columns is None:
        return None
    return [c[len(prefix) + 1:] for c in columns if c.startswith(prefix + ".")]


def build_frame(lake: "Lake", run_ids: list[str], columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The wide frame of ``run_ids`` in that order.

    Missing metrics are NaN and missing params and tags None, as in ``mlflow.search_runs``.

    Args:
        lake: the lake to read (already refreshed by the caller).
        run_ids: runs in output order.
        columns: only these ``metrics.*``/``params.*``/``tags.*`` columns (all when None).
    """
    from runlake.lake.query import FRAME_COLUMNS

    ids_sql, ids_params = ids_condition(run_ids)
    base = lake._query(f"SELECT {', '.join(FRAME_COLUMNS)} FROM runs WHERE {ids_sql}", ids_params)
    base = base.set_index("run_id").reindex(pd.Index(run_ids, name="run_id")).reset_index()
    for column in ("start_time", "end_time", "deleted_time"):
        base[column] = pd.to_datetime(base[column], unit="ms", utc=True)
    wide: dict[str, list[Any]] = {}
    for prefix, table, missing in (("metrics", "latest_metrics", float("nan")), ("params", "params", None), ("tags", "tags", None)):
        keys = _wanted(columns, prefix)
        if keys == []:
            continue
        sql = f"SELECT run_id, key, value FROM {table} WHERE {ids_sql}" + (_KEYS if keys is not None else "")
        params: list[Any] = ids_params + ([keys] if keys is not None else [])
        # A plain dict pivot: far cheaper than pandas' pivot for the page-sized sets the
        # dashboard asks for, and linear for the 10,000-run frames of the API.
        by_key: dict[str, dict[str, Any]] = {}
        for run_id, key, value in lake._rows(sql, params):
            by_key.setdefault(key, {})[run_id] = value
        # Columns asked for by name are present even when no run on this page has them.
        for key in sorted(set(by_key) | set(keys or [])):
            values = by_key.get(key, {})
            wide[f"{prefix}.{key}"] = [values.get(r, missing) for r in run_ids]
    if not wide:
        return base
    return pd.concat([base, pd.DataFrame(wide, index=base.index)], axis=1)
