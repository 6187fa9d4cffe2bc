"""Changes to existing runs made from the read side (dashboard, CLI): tags, names, deletion.

Every change is an appended, versioned row written with the lake's atomic protocol; nothing is
rewritten in place. Run ids are checked against the current state first, so a typo is a
``RunNotFound`` rather than a silently orphaned row.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from runlake.core import vocab
from runlake.core import layout, validation, writer
from runlake.core.errors import InvalidArgument, RunNotFound

if TYPE_CHECKING:
    from runlake.lake.query import Lake

NOTE_TAG = vocab.NOTE_TAG


def _experiments_of(lake: "Lake", run_ids: Sequence[str]) -> dict[str, str]:
    rows = lake._rows(
        "SELECT run_id, experiment_id FROM runs WHERE run_id IN (SELECT unnest(?::VARCHAR[]))", [list(run_ids)]
    )
    found = dict(rows)
    for run_id in run_ids:
        if run_id not in found:
            raise RunNotFound(run_id)
    return found


def _write(lake: "Lake", table: str, rows: Iterable[dict[str, Any]], experiments: dict[str, str]) -> None:
    by_experiment: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_experiment[experiments[row["run_id"]]].append(row)
    for experiment_id, items in sorted(by_experiment.items()):
        writer.write_part(lake.fs, lake.root, table, writer.to_table(table, items), experiment_id)


def _checked(check: Any, *args: Any) -> Any:
    # The lake's changes obey the training side's rules; their errors are InvalidArgument.
    try:
        return check(*args)
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from None


def set_tag(lake: "Lake", run_id: str, key: str, value: Any) -> None:
    """Set (add or replace) a tag on a run."""
    key = _checked(validation.validate_key, "tag", key)
    row = {"run_id": run_id, "key": key, "value": _checked(validation.tag_value, key, value), "version": layout.next_version()}
    _write(lake, layout.TAGS, [row], _experiments_of(lake, [run_id]))


def delete_tag(lake: "Lake", run_id: str, key: str) -> None:
    """Delete a tag (a tombstone row)."""
    row = {"run_id": run_id, "key": _checked(validation.validate_key, "tag", key), "value": None, "version": layout.next_version()}
    _write(lake, layout.TAGS, [row], _experiments_of(lake, [run_id]))


def rename_run(lake: "Lake", run_id: str, new_name: str) -> None:
    """Give a run a new display name (non-empty, at most 250 characters)."""
    if not isinstance(new_name, str) or not new_name.strip():
        raise InvalidArgument("A run name must be a non-empty string")
    name = _checked(validation.check_name, "run name", new_name.strip(), validation.MAX_RUN_NAME_LENGTH)
    row = {"run_id": run_id, "version": layout.next_version(), "run_name": name}
    _write(lake, layout.RUNS, [row], _experiments_of(lake, [run_id]))


def set_description(lake: "Lake", run_id: str, text: str) -> None:
    """Set a run's markdown notes (MLflow's ``mlflow.note.content`` tag)."""
    set_tag(lake, run_id, NOTE_TAG, text)


def descendants(lake: "Lake", run_ids: Sequence[str]) -> list[str]:
    """Every run below the given runs in the nested-run tree (any depth), in no given order."""
    if not run_ids:
        return []
    rows = lake._rows(
        "WITH RECURSIVE tree(run_id) AS ("
        " SELECT run_id FROM runs WHERE parent_run_id IN (SELECT unnest(?::VARCHAR[]))"
        " UNION SELECT r.run_id FROM runs r JOIN tree t ON r.parent_run_id = t.run_id)"
        " SELECT run_id FROM tree",
        [list(run_ids)],
    )
    given = set(run_ids)
    return [r[0] for r in rows if r[0] not in given]


def set_lifecycle(lake: "Lake", run_ids: Sequence[str], deleted: bool, include_descendants: bool = True) -> list[str]:
    """Soft-delete or restore runs (and their descendants); returns every run id changed.

    A run already in the wanted state is left alone, so ``deleted_time`` keeps the moment it
    was first deleted.
    """
    run_ids = list(dict.fromkeys(run_ids))
    experiments = _experiments_of(lake, run_ids)
    targets = run_ids + (descendants(lake, run_ids) if include_descendants else [])
    experiments.update(_experiments_of(lake, targets))
    want = layout.LIFECYCLE_DELETED if deleted else layout.LIFECYCLE_ACTIVE
    current = dict(
        lake._rows("SELECT run_id, lifecycle_stage FROM runs WHERE run_id IN (SELECT unnest(?::VARCHAR[]))", [targets])
    )
    changing = [r for r in targets if current.get(r) != want]
    now = layout.now_ms()
    rows = [
        {"run_id": r, "version": layout.next_version(), "lifecycle_stage": want, **({"deleted_time": now} if deleted else {})}
        for r in changing
    ]
    _write(lake, layout.RUNS, rows, experiments)
    return changing


class MutationMixin:
    """The changes a ``Lake`` makes from the dashboard and tools (tags, names, deletion)."""

    def set_tag(self, run_id: str, key: str, value: str) -> None:
        """Add or replace a tag on a run.

        Raises:
            RunNotFound: no such run.
            InvalidArgument: an invalid key or a value over 8000 characters.
        """
        set_tag(self, run_id, key, value)

    def delete_tag(self, run_id: str, key: str) -> None:
        """Delete a tag from a run."""
        delete_tag(self, run_id, key)

    def rename_run(self, run_id: str, new_name: str) -> None:
        """Rename a run."""
        rename_run(self, run_id, new_name)

    def set_description(self, run_id: str, text: str) -> None:
        """Set a run's markdown notes."""
        set_description(self, run_id, text)

    def delete_run(self, run_id: str, include_descendants: bool = True) -> list[str]:
        """Soft-delete a run and, by default, its whole subtree of nested runs.

        Deleted runs leave ACTIVE_ONLY searches, appear under DELETED_ONLY and are kept until
        retention purges them. Returns the ids of the runs that changed.

        Raises:
            RunNotFound: no such run.
        """
        return set_lifecycle(self, [run_id], deleted=True, include_descendants=include_descendants)

    def restore_run(self, run_id: str, include_descendants: bool = True) -> list[str]:
        """Restore a soft-deleted run (and by default its descendants); returns the ids changed."""
        return set_lifecycle(self, [run_id], deleted=False, include_descendants=include_descendants)

    def delete_runs(self, experiment_id: str, max_timestamp_millis: int, max_runs: int | None = None) -> int:
        """Bulk soft-delete, as the Databricks API: active runs created at or before a time.

        Oldest first, at most ``max_runs`` (default and limit 10,000). Returns how many.
        """
        from runlake.lake import lifecycle

        return lifecycle.delete_runs(self, experiment_id, max_timestamp_millis, max_runs)

    def restore_runs(self, experiment_id: str, min_timestamp_millis: int, max_runs: int | None = None) -> int:
        """Bulk restore: runs deleted at or after a time, oldest first. Returns how many."""
        from runlake.lake import lifecycle

        return lifecycle.restore_runs(self, experiment_id, min_timestamp_millis, max_runs)

    def delete_run_ids(self, run_ids: Sequence[str], include_descendants: bool = True) -> list[str]:
        """Soft-delete several runs at once (the dashboard's selection)."""
        return set_lifecycle(self, list(run_ids), deleted=True, include_descendants=include_descendants)

    def restore_run_ids(self, run_ids: Sequence[str], include_descendants: bool = True) -> list[str]:
        """Restore several runs at once."""
        return set_lifecycle(self, list(run_ids), deleted=False, include_descendants=include_descendants)
