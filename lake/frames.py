"""Pivots a known, ordered set of runs into the wide frame ``mlflow.search_runs`` returns."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from runlake.lake.query import Lake

_ENTITY_TABLES = (("metrics", "latest_metrics"), ("params", "params"), ("tags", "tags"))


def _wanted(columns: Sequence[str] | None, prefix: str) -> list[str] | None:
    if columns is None:
        return None
    return [c[len(prefix) + 1:] for c in columns if c.startswith(prefix + ".")]


def build_frame(lake: "Lake", run_ids: list[str], columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The wide frame of ``run_ids`` in that order.

    Args:
        lake: the lake to read.
        run_ids: runs in output order.
        columns: only these ``metrics.*``/``params.*``/``tags.*`` columns (all when None).
    """
    from runlake.lake.query import FRAME_COLUMNS

    ids: list[Any] = [list(run_ids)]
    base = lake._query(
        f"SELECT {', '.join(FRAME_COLUMNS)} FROM runs WHERE list_contains(?::VARCHAR[], run_id)", ids
    ).set_index("run_id")
    base = base.reindex(pd.Index(run_ids, name="run_id"))
    for column in ("start_time", "end_time", "deleted_time"):
        base[column] = pd.to_datetime(base[column], unit="ms", utc=True)
    parts = [base]
    for prefix, table in _ENTITY_TABLES:
        keys = _wanted(columns, prefix)
        if keys == []:
            continue
        sql = f"SELECT run_id, key, value FROM {table} WHERE list_contains(?::VARCHAR[], run_id)"
        params: list[Any] = list(ids)
        if keys is not None:
            sql += " AND list_contains(?::VARCHAR[], key)"
            params.append(keys)
        long = lake._query(sql, params)
        if long.empty:
            continue
        wide = long.pivot(index="run_id", columns="key", values="value")
        wide = wide.reindex(index=base.index, columns=sorted(wide.columns))
        wide.columns = [f"{prefix}.{key}" for key in wide.columns]
        parts.append(wide)
    frame = pd.concat(parts, axis=1).reset_index()
    return frame
