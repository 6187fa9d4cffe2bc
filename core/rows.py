"""The rows every change writes, built in one place (pyarrow-free; stdlib only).

Both write paths - the training side's ``LakeClient`` and the lake's own changes made from
the dashboard, the CLI and imports - build their rows here, so they validate alike, raise the
same errors and can never disagree on what a rename, a tag or a deletion looks like on disk.
Each builder returns plain dicts in the table's schema (missing fields are null: a run row
carries only the fields it changes, and latest-wins folds them field by field).
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Mapping
from typing import Any

from runlake.core import layout, validation, vocab
from runlake.core.errors import InvalidArgument

Row = dict[str, Any]

MAX_EXPERIMENT_NAME_LENGTH = 500


def current_user() -> str:
    """The OS user a run is recorded under when the caller names none."""
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return os.environ.get("USER", "unknown")


# -- experiments ---------------------------------------------------------------------------
def experiment_name(name: Any) -> str:
    """A valid experiment name (non-empty, one line, at most 500 characters)."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidArgument("An experiment name must be a non-empty string")
    return validation.check_name("experiment name", name, MAX_EXPERIMENT_NAME_LENGTH)


def experiment_row(experiment_id: str, name: str, artifact_location: str) -> Row:
    """The row that creates an experiment."""
    if not layout.is_valid_id(experiment_id):
        raise InvalidArgument(f"Invalid experiment id '{experiment_id}': use letters, digits, '-' and '_'")
    now = layout.now_ms()
    return {
        "experiment_id": experiment_id,
        "version": layout.next_version(),
        "name": experiment_name(name),
        "artifact_location": artifact_location,
        "lifecycle_stage": layout.LIFECYCLE_ACTIVE,
        "creation_time": now,
        "last_update_time": now,
    }


# -- runs ----------------------------------------------------------------------------------
def check_run_id(value: Any, what: str = "run id") -> str:
    """A run id that may travel in paths, SQL parameters and component ids."""
    if not isinstance(value, str) or not layout.is_valid_id(value):
        raise InvalidArgument(f"Invalid {what} {value!r}: use 1-256 letters, digits, '-' and '_'")
    return value


def check_run_name(name: Any) -> str:
    """A valid run name (one line, at most 250 characters)."""
    return validation.check_name("run name", name, validation.MAX_RUN_NAME_LENGTH)


def check_status(value: Any, *, terminal: bool = False) -> str:
    """A run status; ``terminal`` allows only the statuses a run can end with."""
    allowed = layout.TERMINAL_STATUSES if terminal else layout.RUN_STATUSES
    if value not in allowed:
        what = "end status" if terminal else "status"
        raise InvalidArgument(f"Invalid {what} '{value}': one of {', '.join(allowed)}")
    return str(value)


def new_run_row(
    run_id: str,
    *,
    artifact_uri: str,
    run_name: str,
    start_time: Any,
    user_id: str,
    status: str = "RUNNING",
    parent_run_id: str | None = None,
    source: Mapping[str, str | None] | None = None,
) -> Row:
    """The row that creates a run (the one with a start time: a run exists once it does)."""
    source = dict(source or {})
    return {
        "run_id": check_run_id(run_id),
        "version": layout.next_version(),
        "run_name": check_run_name(run_name),
        "status": check_status(status),
        "start_time": layout.now_ms() if start_time is None else validation.timestamp_ms("start_time", start_time),
        "user_id": user_id,
        "source_type": source.get("source_type"),
        "source_name": source.get("source_name"),
        "source_version": source.get("source_version"),
        "entry_point": source.get("entry_point"),
        "parent_run_id": None if parent_run_id is None else check_run_id(parent_run_id, "parent run id"),
        "artifact_uri": artifact_uri,
        "lifecycle_stage": layout.LIFECYCLE_ACTIVE,
    }


def run_update_row(
    run_id: str, *, status: str | None = None, end_time: Any = None, run_name: str | None = None
) -> Row | None:
    """A row changing a run's status, end time or name (None when nothing changes)."""
    fields: Row = {}
    if status is not None:
        fields["status"] = check_status(status)
    if end_time is not None:
        fields["end_time"] = validation.timestamp_ms("end_time", end_time)
    if run_name is not None:
        fields["run_name"] = check_run_name(run_name)
    if not fields:
        return None
    return {"run_id": run_id, "version": layout.next_version(), **fields}


def rename_row(run_id: str, new_name: Any) -> Row:
    """A row giving a run a new display name (non-empty once stripped)."""
    if not isinstance(new_name, str) or not new_name.strip():
        raise InvalidArgument("A run name must be a non-empty string")
    return {"run_id": run_id, "version": layout.next_version(), "run_name": check_run_name(new_name.strip())}


def run_name_tag_row(run_id: str, name: str) -> Row:
    """The ``mlflow.runName`` tag row that carries a run's name, as MLflow keeps it.

    Every write that names a run - creation, rename, import - writes this row beside the run
    row, so searches on ``tags.mlflow.runName`` and MLflow's own tools see the current name.
    """
    return tag_row(run_id, vocab.RUN_NAME_TAG, name)


def run_name_from(run_name: str | None, tags: Mapping[str, Any] | None) -> str | None:
    """A new run's name from the ``run_name`` argument and an ``mlflow.runName`` tag (MLflow's rule).

    Raises:
        InvalidArgument: both are given, with different values.
    """
    tagged = (tags or {}).get(vocab.RUN_NAME_TAG)
    if tagged is None:
        return run_name
    if run_name is not None and str(tagged) != run_name:
        raise InvalidArgument(
            f"Both 'run_name' argument and '{vocab.RUN_NAME_TAG}' tag are specified, but with different "
            f"values (run_name='{run_name}', {vocab.RUN_NAME_TAG}='{tagged}')."
        )
    return str(tagged)


def rename_for_tags(run_id: str, tags: Mapping[str, Any]) -> Row | None:
    """The rename row that setting the ``mlflow.runName`` tag implies (None without that tag).

    As in MLflow, setting the tag renames the run, so the name and the tag never disagree.
    """
    if vocab.RUN_NAME_TAG not in tags:
        return None
    return rename_row(run_id, tags[vocab.RUN_NAME_TAG])


def lifecycle_row(run_id: str, *, deleted: bool, now: int | None = None) -> Row:
    """A row soft-deleting (with the deletion time) or restoring a run."""
    if deleted:
        return {
            "run_id": run_id,
            "version": layout.next_version(),
            "lifecycle_stage": layout.LIFECYCLE_DELETED,
            "deleted_time": layout.now_ms() if now is None else now,
        }
    return {"run_id": run_id, "version": layout.next_version(), "lifecycle_stage": layout.LIFECYCLE_ACTIVE}


# -- tags and params -----------------------------------------------------------------------
def tag_row(run_id: str, key: Any, value: Any) -> Row:
    """A row setting a tag (a new version replaces the old value)."""
    key = validation.validate_key("tag", key)
    return {"run_id": run_id, "key": key, "value": validation.tag_value(key, value), "version": layout.next_version()}


def tag_delete_row(run_id: str, key: Any) -> Row:
    """A tombstone: the tag is gone from this version on."""
    return {
        "run_id": run_id,
        "key": validation.validate_key("tag", key),
        "value": None,
        "version": layout.next_version(),
    }


def tag_rows(run_id: str, tags: Mapping[str, Any]) -> list[Row]:
    """Rows setting several tags; every tag is checked before any row is returned."""
    return [tag_row(run_id, key, value) for key, value in tags.items()]


def note_row(run_id: str, text: Any) -> Row:
    """A row setting a run's markdown notes (MLflow's note tag)."""
    return tag_row(run_id, vocab.NOTE_TAG, text)


def checked_params(params: Mapping[str, Any]) -> dict[str, str]:
    """Params as the strings stored, every key and value checked first."""
    return {validation.validate_key("param", k): validation.param_value(k, v) for k, v in params.items()}


def param_row(run_id: str, key: str, text: str) -> Row:
    """A row recording one param (keys and values already checked by ``checked_params``)."""
    return {"run_id": run_id, "key": key, "value": text, "version": layout.next_version()}


def param_conflict(run_id: str, key: str, old: str, new: str) -> InvalidArgument:
    """The error for logging a param again with another value (MLflow's wording)."""
    return InvalidArgument(
        f"Changing param values is not allowed. Param with key='{key}' was already logged "
        f"with value='{old}' for run ID='{run_id}'. Attempted logging new value '{new}'."
    )
