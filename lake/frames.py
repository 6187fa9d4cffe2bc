"""Pivots a known, ordered set of runs into the wide frame ``mlflow.search_runs`` returns."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from runlake.core import layout
from runlake.lake import catalog
from runlake.lake.connection import Connection
from runlake.lake.sql import Fragment, all_of, id_list, indexed_ids, join, q

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


def build_frame(db: Connection, run_ids: list[str], columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The wide frame of ``run_ids`` in that order.

    Missing metrics are NaN and missing params and tags None, as in ``mlflow.search_runs``.

    Args:
        db: the lake's connection (refreshed by the caller).
        run_ids: runs in output order.
        columns: only these ``metrics.*``/``params.*``/``tags.*`` columns (all when None).
    """
    ids = indexed_ids("run_id", run_ids)
    base = db.frame(join([f"SELECT {', '.join(FRAME_COLUMNS)} FROM runs WHERE", ids]))
    base = base.set_index("run_id").reindex(pd.Index(run_ids, name="run_id")).reset_index()
    for column in _TIME_COLUMNS:
        base[column] = pd.to_datetime(base[column], unit="ms", utc=True)
    wide: dict[str, list[Any]] = {}
    for prefix, table, missing in _ENTITIES:
        keys = _wanted(columns, prefix)
        if keys == []:
            continue
        conditions: list[Fragment] = [ids] + ([id_list("key", keys)] if keys is not None else [])
        query = join([f"SELECT run_id, key, value FROM {table} WHERE", all_of(conditions)])
        # A plain dict pivot: far cheaper than pandas' pivot for the page-sized sets the
        # dashboard asks for, and linear for the 10,000-run frames of the API.
        by_key: dict[str, dict[str, Any]] = {}
        for run_id, key, value in db.rows(query):
            by_key.setdefault(key, {})[run_id] = value
        # Columns asked for by name are present even when no run on this page has them.
        for key in sorted(set(by_key) | set(keys or [])):
            values = by_key.get(key, {})
            wide[f"{prefix}.{key}"] = [values.get(r, missing) for r in run_ids]
    if not wide:
        return base
    return pd.concat([base, pd.DataFrame(wide, index=base.index)], axis=1)


def runs_frame(db: Connection, experiment_ids: list[str] | None, run_view_type: str) -> pd.DataFrame:
    """All runs of some experiments (all when None), newest first, as a search frame."""
    condition = all_of([catalog.stage_condition("r.lifecycle_stage", run_view_type), catalog.scope(experiment_ids)])
    rows = db.rows(join(["SELECT r.run_id FROM runs r WHERE", condition, q("ORDER BY r.start_time DESC, r.run_id")]))
    return build_frame(db, [r[0] for r in rows])
