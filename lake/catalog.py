"""Experiments, and which runs a call is about: experiment lookups, scopes, run-view stages."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from runlake.core import layout
from runlake.core.errors import ExperimentNotFound, InvalidArgument, RunNotFound
from runlake.lake.connection import Connection
from runlake.lake.sql import Fragment, id_list, join, q

VIEW_TYPES = ("ACTIVE_ONLY", "DELETED_ONLY", "ALL")

# The SQL here comes from this fixed table only; the caller's choice selects an entry.
_STAGES = {
    "ACTIVE_ONLY": f"= '{layout.LIFECYCLE_ACTIVE}'",
    "DELETED_ONLY": f"= '{layout.LIFECYCLE_DELETED}'",
}


def stage_condition(column: str, view_type: str, active_column: str | None = None) -> Fragment:
    """The condition a run view type (ACTIVE_ONLY, DELETED_ONLY, ALL) puts on a stage column.

    ``active_column``, when the table has one, is a boolean column equal to ``column =
    'active'`` (the search index's): a view type then tests it first, which costs far less than
    comparing strings, and the stage's text only for the runs that are not active.

    Raises:
        InvalidArgument: an unknown view type.
    """
    key = str(view_type).upper()
    if key not in VIEW_TYPES:
        raise InvalidArgument(f"run_view_type must be one of {', '.join(VIEW_TYPES)}, got {view_type!r}")
    if key not in _STAGES:
        return q("TRUE")
    if active_column is None:
        return q(f"{column} {_STAGES[key]}")
    if key == "ACTIVE_ONLY":
        return q(active_column)
    return q(f"NOT {active_column} AND {column} {_STAGES[key]}")


def scope(experiment_ids: list[str] | None, column: str = "r.experiment_id") -> Fragment:
    """The condition limiting runs to some experiments (every run when None)."""
    return q("TRUE") if experiment_ids is None else id_list(column, experiment_ids)


def list_experiments(db: Connection, view_type: str = "ACTIVE_ONLY") -> pd.DataFrame:
    """Experiments with their active run count and last run time, newest activity first."""
    stage = stage_condition("e.lifecycle_stage", view_type)
    return db.frame(
        Fragment(
            "SELECT e.*, count(r.run_id) AS run_count, max(r.start_time) AS last_run_time "
            "FROM experiments e LEFT JOIN runs r ON r.experiment_id = e.experiment_id AND r.lifecycle_stage = 'active' "
            f"WHERE {stage.sql} GROUP BY ALL "
            "ORDER BY coalesce(last_run_time, any_value(e.creation_time)) DESC NULLS LAST, e.experiment_id",
            stage.params,
        )
    )


def get_experiment(db: Connection, experiment_id: str) -> dict[str, Any]:
    """One experiment by id (raises ``ExperimentNotFound``)."""
    rows = db.frame(q("SELECT * FROM experiments WHERE experiment_id = ?", str(experiment_id)))
    if rows.empty:
        raise ExperimentNotFound(str(experiment_id))
    return record(rows.iloc[0])


def get_experiment_by_name(db: Connection, name: str) -> dict[str, Any] | None:
    """The experiment with this name (an active one before a deleted one), or None."""
    rows = db.frame(
        q("SELECT * FROM experiments WHERE name = ? ORDER BY lifecycle_stage = 'active' DESC, experiment_id", name)
    )
    return None if rows.empty else record(rows.iloc[0])


def find_experiment(db: Connection, ref: str) -> dict[str, Any]:
    """An experiment by name, else by id (raises ``ExperimentNotFound``)."""
    found = get_experiment_by_name(db, ref)
    return found if found is not None else get_experiment(db, ref)


def resolve_experiments(
    db: Connection, experiment_ids: Sequence[str] | None = None, experiment_names: Sequence[str] | None = None
) -> list[str] | None:
    """Experiment ids for the given ids and names; None means every experiment."""
    if experiment_ids is None and experiment_names is None:
        return None
    if isinstance(experiment_ids, str) or isinstance(experiment_names, str):
        raise InvalidArgument("experiment_ids and experiment_names take lists, e.g. ['1']")
    known = dict(db.rows(q("SELECT experiment_id, name FROM experiments")))
    ids: list[str] = []
    for experiment_id in experiment_ids or []:
        if str(experiment_id) not in known:
            raise ExperimentNotFound(str(experiment_id))
        ids.append(str(experiment_id))
    by_name = {name: eid for eid, name in sorted(known.items(), reverse=True)}
    for name in experiment_names or []:
        if name not in by_name:
            raise ExperimentNotFound(name)
        ids.append(by_name[name])
    return list(dict.fromkeys(ids))


def experiments_of_runs(db: Connection, run_ids: Sequence[str]) -> dict[str, str]:
    """Run id -> experiment id for each given run (raises ``RunNotFound`` for an unknown one)."""
    found = dict(db.rows(join(["SELECT run_id, experiment_id FROM runs WHERE", id_list("run_id", list(run_ids))])))
    for run_id in run_ids:
        if run_id not in found:
            raise RunNotFound(run_id)
    return found


def record(row: pd.Series) -> dict[str, Any]:
    """A result row as a plain dict: NA as None, numpy scalars as Python values."""
    return {key: (None if _is_missing(value) else _plain(value)) for key, value in row.items()}


def _is_missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
