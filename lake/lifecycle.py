"""Bulk soft delete and restore of runs, with the Databricks API's semantics.

``delete_runs`` deletes the active runs of an experiment created at or before a time;
``restore_runs`` restores the deleted runs deleted at or after a time. Both take at most
``max_runs`` runs (default and ceiling 10,000, as Databricks), oldest first - by creation time,
ties broken by run id, so repeated calls walk through a large set in a stable order - and write
through ``mutations.set_lifecycle``: one appended row per run, nothing rewritten.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runlake.core import layout
from runlake.lake import mutations
from runlake.core.errors import InvalidArgument

if TYPE_CHECKING:
    from runlake.lake.query import Lake

MAX_RUNS_LIMIT = 10_000


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
    return value


# Which runs a bulk change considers: their current stage, and the condition on the time
# argument (fixed SQL; the time itself is a bound parameter).
_SELECTIONS = {
    "delete": (layout.LIFECYCLE_ACTIVE, "start_time <= ?", "max_timestamp_millis"),
    "restore": (layout.LIFECYCLE_DELETED, "deleted_time >= ?", "min_timestamp_millis"),
}


def _plan(lake: "Lake", change: str, experiment_id: str, millis: int, max_runs: int | None) -> list[str]:
    stage, condition, argument = _SELECTIONS[change]
    limit = _check_max_runs(max_runs)
    cutoff = _check_millis(argument, millis)
    experiment_id = str(lake.get_experiment(str(experiment_id))["experiment_id"])
    rows = lake._rows(
        f"SELECT run_id FROM runs WHERE experiment_id = ? AND lifecycle_stage = ? AND {condition} "
        "ORDER BY start_time, run_id LIMIT ?",
        [experiment_id, stage, cutoff, limit],
    )
    return [r[0] for r in rows]


def plan_delete(lake: "Lake", experiment_id: str, max_timestamp_millis: int, max_runs: int | None = None) -> list[str]:
    """The runs ``delete_runs`` would delete, in the order it deletes them (a dry run).

    Raises:
        ExperimentNotFound: no such experiment.
        InvalidArgument: a bad timestamp or ``max_runs``.
    """
    return _plan(lake, "delete", experiment_id, max_timestamp_millis, max_runs)


def plan_restore(lake: "Lake", experiment_id: str, min_timestamp_millis: int, max_runs: int | None = None) -> list[str]:
    """The runs ``restore_runs`` would restore, in the order it restores them (a dry run).

    Raises:
        ExperimentNotFound: no such experiment.
        InvalidArgument: a bad timestamp or ``max_runs``.
    """
    return _plan(lake, "restore", experiment_id, min_timestamp_millis, max_runs)


def delete_runs(lake: "Lake", experiment_id: str, max_timestamp_millis: int, max_runs: int | None = None) -> int:
    """Soft-delete the active runs of an experiment created at or before a time.

    Args:
        lake: the lake.
        experiment_id: the experiment.
        max_timestamp_millis: runs whose start time is at or before this epoch ms.
        max_runs: at most this many, oldest first (default and maximum 10,000).

    Returns:
        How many runs were deleted. Nested runs are not followed: each run is selected on its
        own creation time, as in Databricks.

    Raises:
        ExperimentNotFound: no such experiment.
        InvalidArgument: a timestamp that is not an integer, or a bad ``max_runs``.
    """
    run_ids = plan_delete(lake, experiment_id, max_timestamp_millis, max_runs)
    if not run_ids:
        return 0
    return len(mutations.set_lifecycle(lake, run_ids, deleted=True, include_descendants=False))


def restore_runs(lake: "Lake", experiment_id: str, min_timestamp_millis: int, max_runs: int | None = None) -> int:
    """Restore the deleted runs of an experiment deleted at or after a time.

    Args:
        lake: the lake.
        experiment_id: the experiment.
        min_timestamp_millis: runs whose deletion time is at or after this epoch ms.
        max_runs: at most this many, oldest first (default and maximum 10,000).

    Returns:
        How many runs were restored.

    Raises:
        ExperimentNotFound: no such experiment.
        InvalidArgument: a timestamp that is not an integer, or a bad ``max_runs``.
    """
    run_ids = plan_restore(lake, experiment_id, min_timestamp_millis, max_runs)
    if not run_ids:
        return 0
    return len(mutations.set_lifecycle(lake, run_ids, deleted=False, include_descendants=False))
