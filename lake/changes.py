"""Changes made from the read side (dashboard, CLI, imports): tags, names, notes, deletion.

Every change is an appended, versioned row built by ``runlake.core.rows`` - the builders the
training side's ``LakeClient`` uses too - and written with the lake's atomic protocol through
a ``core.batch.Buffer``; nothing is rewritten in place. Run ids are checked against the current
state first, so a typo is a ``RunNotFound`` rather than a silently orphaned row.

Bulk delete and restore follow the Databricks API: ``delete_runs`` deletes the active runs of
an experiment created at or before a time, ``restore_runs`` restores the runs deleted at or
after a time; at most ``max_runs`` (default and ceiling 10,000) each, oldest first - by creation
time, ties broken by run id, so repeated calls walk a large set in a stable order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from runlake.core import layout, rows
from runlake.core.batch import Buffer
from runlake.core.errors import InvalidArgument
from runlake.lake import catalog, nesting
from runlake.lake.connection import Connection
from runlake.lake.sql import id_list, join, q

MAX_RUNS_LIMIT = 10_000


def write(db: Connection, table: str, items: Iterable[rows.Row], experiments: dict[str, str]) -> None:
    """Write rows of one table, each to the partition of its run's experiment."""
    batch = Buffer()
    for row in items:
        batch.add_rows(table, experiments[row["run_id"]], [row])
    batch.flush(db.fs, db.root)


def create_experiment(db: Connection, name: str) -> str:
    """The id of the active experiment with this name, created when there is none.

    Raises:
        InvalidArgument: an invalid name, or an experiment of that name exists but is deleted.
    """
    rows.experiment_name(name)
    existing = catalog.get_experiment_by_name(db, name)
    if existing is not None:
        if existing.get("lifecycle_stage") == layout.LIFECYCLE_DELETED:
            raise InvalidArgument(f"Experiment '{name}' exists but is deleted; restore it or use another name")
        return str(existing["experiment_id"])
    experiment_id = layout.experiment_id_for(name)
    location = layout.artifact_uri_for(db.root, experiment_id, "").rstrip("/")
    batch = Buffer()
    batch.add_rows(layout.EXPERIMENTS, "", [rows.experiment_row(experiment_id, name, location)])
    batch.flush(db.fs, db.root)
    db.refresh()
    return experiment_id


def set_tag(db: Connection, run_id: str, key: str, value: Any) -> None:
    """Add or replace a tag on a run; setting ``mlflow.runName`` renames the run, as in MLflow."""
    row = rows.tag_row(run_id, key, value)
    rename = rows.rename_for_tags(run_id, {key: value})
    experiments = catalog.experiments_of_runs(db, [run_id])
    batch = Buffer()
    if rename is not None:
        batch.add_rows(layout.RUNS, experiments[run_id], [rename])
    batch.add_rows(layout.TAGS, experiments[run_id], [row])
    batch.flush(db.fs, db.root)


def delete_tag(db: Connection, run_id: str, key: str) -> None:
    """Delete a tag (a tombstone row)."""
    row = rows.tag_delete_row(run_id, key)
    write(db, layout.TAGS, [row], catalog.experiments_of_runs(db, [run_id]))


def rename_run(db: Connection, run_id: str, new_name: str) -> None:
    """Give a run a new display name (non-empty, at most 250 characters).

    The ``mlflow.runName`` tag is written in the same flush, so a search on the tag and
    MLflow's tools see the new name.
    """
    row = rows.rename_row(run_id, new_name)
    experiment_id = catalog.experiments_of_runs(db, [run_id])[run_id]
    batch = Buffer()
    batch.add_rows(layout.RUNS, experiment_id, [row])
    batch.add_rows(layout.TAGS, experiment_id, [rows.run_name_tag_row(run_id, row["run_name"])])
    batch.flush(db.fs, db.root)


def set_description(db: Connection, run_id: str, text: str) -> None:
    """Set a run's markdown notes (MLflow's note tag)."""
    row = rows.note_row(run_id, text)
    write(db, layout.TAGS, [row], catalog.experiments_of_runs(db, [run_id]))


def set_lifecycle(db: Connection, run_ids: Sequence[str], deleted: bool, include_descendants: bool = True) -> list[str]:
    """Soft-delete or restore runs (and their descendants); returns every run id changed.

    A run already in the wanted state is left alone, so ``deleted_time`` keeps the moment it
    was first deleted.
    """
    run_ids = list(dict.fromkeys(run_ids))
    experiments = catalog.experiments_of_runs(db, run_ids)
    targets = run_ids + (nesting.descendants(db, run_ids) if include_descendants else [])
    experiments.update(catalog.experiments_of_runs(db, targets))
    want = layout.LIFECYCLE_DELETED if deleted else layout.LIFECYCLE_ACTIVE
    current = dict(db.rows(join(["SELECT run_id, lifecycle_stage FROM runs WHERE", id_list("run_id", targets)])))
    changing = [r for r in targets if current.get(r) != want]
    now = layout.now_ms()
    write(db, layout.RUNS, [rows.lifecycle_row(r, deleted=deleted, now=now) for r in changing], experiments)
    return changing


# -- bulk lifecycle ------------------------------------------------------------------------
def _check_max_runs(max_runs: Any) -> int:
    if max_runs is None:
        return MAX_RUNS_LIMIT
    if isinstance(max_runs, bool) or not isinstance(max_runs, int) or not 0 < max_runs <= MAX_RUNS_LIMIT:
        raise InvalidArgument(
            f"max_runs must be a positive integer no larger than {MAX_RUNS_LIMIT:,}, got {max_runs!r}",
            argument="max_runs",
        )
    return max_runs


def _check_millis(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"{name} must be an integer number of epoch milliseconds, got {value!r}", argument=name)
    if not -(2**63) <= value <= 2**63 - 1:
        raise InvalidArgument(f"{name} is out of the 64-bit integer range, got {value}", argument=name)
    return value


# Which runs a bulk change considers: their current stage, and the condition on the time
# argument (fixed SQL; the time itself is a bound parameter).
_SELECTIONS = {
    "delete": (layout.LIFECYCLE_ACTIVE, "start_time <= ?", "max_timestamp_millis"),
    "restore": (layout.LIFECYCLE_DELETED, "deleted_time >= ?", "min_timestamp_millis"),
}


def plan_bulk(db: Connection, change: str, experiment_id: str, millis: int, max_runs: int | None) -> list[str]:
    """The runs a bulk ``change`` ("delete" or "restore") would change, in the order it would.

    Raises:
        ExperimentNotFound: no such experiment.
        InvalidArgument: a timestamp that is not an integer, or a bad ``max_runs``.
    """
    stage, condition, argument = _SELECTIONS[change]
    limit = _check_max_runs(max_runs)
    cutoff = _check_millis(argument, millis)
    experiment_id = str(catalog.get_experiment(db, str(experiment_id))["experiment_id"])
    found = db.rows(
        q(
            f"SELECT run_id FROM runs WHERE experiment_id = ? AND lifecycle_stage = ? AND {condition} "
            "ORDER BY start_time, run_id LIMIT ?",
            experiment_id,
            stage,
            cutoff,
            limit,
        )
    )
    return [r[0] for r in found]


def apply_bulk(db: Connection, change: str, experiment_id: str, millis: int, max_runs: int | None) -> int:
    """Delete or restore what ``plan_bulk`` selects; returns how many runs changed.

    Nested runs are not followed: each run is selected on its own time, as in Databricks.
    """
    run_ids = plan_bulk(db, change, experiment_id, millis, max_runs)
    if not run_ids:
        return 0
    return len(set_lifecycle(db, run_ids, deleted=change == "delete", include_descendants=False))
