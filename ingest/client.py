"""``LakeClient``: the low-level, MlflowClient-shaped writer for importers, tests and tools."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from runlake.core import artifacts, layout, rows, validation, vocab, writer
from runlake.core.errors import ExperimentNotFound, InvalidArgument, RunNotFound
from runlake.core.points import metric_points_table
from runlake.ingest.store import Store, fold_latest, get_store


@dataclass(frozen=True)
class Experiment:
    """An experiment as stored (times in epoch ms)."""

    experiment_id: str
    name: str
    artifact_location: str
    lifecycle_stage: str
    creation_time: int | None
    last_update_time: int | None


def _experiment(row: dict[str, Any]) -> Experiment:
    return Experiment(
        experiment_id=row["experiment_id"],
        name=row.get("name", ""),
        artifact_location=row.get("artifact_location", ""),
        lifecycle_stage=row.get("lifecycle_stage", layout.LIFECYCLE_ACTIVE),
        creation_time=row.get("creation_time"),
        last_update_time=row.get("last_update_time"),
    )


class LakeClient:
    """Write access to one lake, shaped like ``mlflow.tracking.MlflowClient``.

    Everything is buffered and written by a background thread every few seconds (or by
    ``flush()``): run creation, status, tags and points alike, so a client creating 10,000 runs
    writes a few files per flush, not one per call. Readers in other processes see a change
    within one flush interval; a ``Lake`` in this process sees it at once (it flushes first).
    The experiment table is the exception: ``create_experiment`` writes before it returns.

    Args:
        lake: the lake root (a local path or a URI pyarrow understands).
    """

    def __init__(self, lake: str | os.PathLike[str]) -> None:
        self._store: Store = get_store(lake)
        self._params_seen: dict[str, dict[str, str]] = {}

    @property
    def root(self) -> str:
        return self._store.root

    @property
    def store(self) -> Store:
        """The process-wide store (buffer, flusher, catalog reads) this client writes through."""
        return self._store

    # -- experiments ---------------------------------------------------------------------
    def create_experiment(
        self, name: str, artifact_location: str | None = None, experiment_id: str | None = None
    ) -> str:
        """Create an experiment (or return the id of the active one with this name).

        Raises:
            ValueError: an empty name or an invalid explicit id.
        """
        rows.experiment_name(name)
        existing = self._store.experiment_by_name(name)
        if existing is not None:
            if existing.get("lifecycle_stage") == layout.LIFECYCLE_DELETED:
                raise InvalidArgument(f"Experiment '{name}' exists but is deleted; restore it or use another name")
            return str(existing["experiment_id"])
        exp_id = experiment_id or layout.experiment_id_for(name)
        location = artifact_location or layout.artifact_uri_for(self.root, exp_id, "").rstrip("/")
        row = rows.experiment_row(exp_id, name, location)
        writer.write_part(self._store.fs, self.root, layout.EXPERIMENTS, writer.to_table(layout.EXPERIMENTS, [row]))
        return exp_id

    def get_experiment_by_name(self, name: str) -> Experiment | None:
        """The experiment with this name, or None."""
        row = self._store.experiment_by_name(name)
        return _experiment(row) if row else None

    def get_experiment(self, experiment_id: str) -> Experiment:
        """The experiment with this id.

        Raises:
            ExperimentNotFound: no such experiment.
        """
        row = self._store.experiments().get(str(experiment_id))
        if row is None:
            raise ExperimentNotFound(str(experiment_id))
        return _experiment(row)

    # -- runs ----------------------------------------------------------------------------
    def create_run(
        self,
        experiment_id: str,
        run_name: str | None = None,
        start_time: int | None = None,
        user_id: str | None = None,
        tags: Mapping[str, Any] | None = None,
        parent_run_id: str | None = None,
        run_id: str | None = None,
        *,
        source: Mapping[str, str | None] | None = None,
        status: str = "RUNNING",
    ) -> str:
        """Create a run and return its id.

        Args:
            experiment_id: an existing experiment.
            run_name: a display name (a readable one is generated when None).
            start_time: epoch ms (now when None).
            user_id: the user (the OS user when None).
            tags: initial tags.
            parent_run_id: the parent of a nested run (a run id: [A-Za-z0-9_-], 1-256 characters).
            run_id: keep this id (importers preserve ids); must be new and match [A-Za-z0-9_-].
            source: optional ``source_type``, ``source_name``, ``source_version``, ``entry_point``.
            status: the initial status (RUNNING, or SCHEDULED for queued runs).

        Raises:
            ExperimentNotFound: the experiment does not exist.
            ValueError: an invalid or already used run id, status or tag.
        """
        experiment_id = str(experiment_id)
        if parent_run_id is not None:
            # The parent id travels into SQL parameters, search literals and component ids,
            # exactly as a run id does: the same rule, checked here before anything is written.
            rows.check_run_id(parent_run_id, "parent run id")
        if experiment_id not in self._store.experiments():
            if experiment_id == layout.DEFAULT_EXPERIMENT_ID:
                self.create_experiment(layout.DEFAULT_EXPERIMENT_NAME, experiment_id=experiment_id)
            else:
                raise ExperimentNotFound(experiment_id)
        if run_id is None:
            run_id = uuid.uuid4().hex
        elif self._store.experiment_of_run(rows.check_run_id(run_id)) is not None:
            raise InvalidArgument(f"Run '{run_id}' already exists")
        run_name = rows.run_name_from(run_name, tags)
        if run_name is None:
            from runlake.ingest.names import generate_run_name

            run_name = generate_run_name()
        row = rows.new_run_row(
            run_id,
            artifact_uri=layout.artifact_uri_for(self.root, experiment_id, run_id),
            run_name=run_name,
            start_time=start_time,
            user_id=user_id or rows.current_user(),
            status=status,
            parent_run_id=parent_run_id,
            source=source,
        )
        all_tags = dict(tags or {})
        all_tags[vocab.RUN_NAME_TAG] = row["run_name"]
        if parent_run_id:
            all_tags.setdefault(vocab.PARENT_TAG, parent_run_id)
        tag_rows = rows.tag_rows(run_id, all_tags)
        self._store.remember_run(run_id, experiment_id)
        self._params_seen[run_id] = {}  # a new run has no params yet: nothing to read back
        self._store.add_rows(layout.RUNS, experiment_id, [row])
        if tag_rows:
            self._store.add_rows(layout.TAGS, experiment_id, tag_rows)
        return run_id

    def run_info(self, run_id: str) -> dict[str, Any]:
        """A run's current attributes (name, status, times, lifecycle stage, experiment id).

        Reads the lake (after flushing this process's buffer), so it sees runs other
        processes created and flushed.

        Raises:
            RunNotFound: no such run.
        """
        experiment_id = self._experiment_of(run_id)
        self._store.flush(merge=False)
        table = self._store.read_rows(layout.RUNS, experiment_id)
        found = [] if table is None else table.filter(pc_equal(table.column("run_id"), run_id)).to_pylist()
        info = fold_latest(found, "run_id").get(run_id)
        if info is None or info.get("start_time") is None:
            raise RunNotFound(run_id)
        info.pop(layout.PARTITION_COLUMN, None)
        return {**info, "experiment_id": experiment_id}

    def run_tags(self, run_id: str) -> dict[str, str]:
        """A run's current tags (deleted ones left out).

        Raises:
            RunNotFound: no such run.
        """
        experiment_id = self._experiment_of(run_id)
        self._store.flush(merge=False)
        table = self._store.read_rows(layout.TAGS, experiment_id)
        if table is None:
            return {}
        tags: dict[str, str] = {}
        for row in table.filter(pc_equal(table.column("run_id"), run_id)).sort_by("version").to_pylist():
            if row["value"] is None:
                tags.pop(row["key"], None)
            else:
                tags[row["key"]] = row["value"]
        return tags

    def _experiment_of(self, run_id: str) -> str:
        experiment_id = self._store.experiment_of_run(run_id)
        if experiment_id is None:
            raise RunNotFound(run_id)
        return experiment_id

    def _write_run_row(self, run_id: str, row: dict[str, Any], *, after_data: bool = False) -> None:
        self._store.add_rows(layout.RUNS, self._experiment_of(run_id), [row], after_data=after_data)

    def update_run(
        self, run_id: str, status: str | None = None, end_time: int | None = None, run_name: str | None = None
    ) -> None:
        """Change a run's status, end time or name (a new name updates ``mlflow.runName`` too)."""
        row = rows.run_update_row(run_id, status=status, end_time=end_time, run_name=run_name)
        if row is not None:
            self._write_run_row(run_id, row)
        if row is not None and run_name is not None:
            tag = rows.run_name_tag_row(run_id, row["run_name"])
            self._store.add_rows(layout.TAGS, self._experiment_of(run_id), [tag])

    def set_terminated(self, run_id: str, status: str = "FINISHED", end_time: int | None = None) -> None:
        """End a run: record the status and end time, written after the run's buffered data."""
        rows.check_status(status, terminal=True)
        row = rows.run_update_row(run_id, status=status, end_time=end_time if end_time is not None else layout.now_ms())
        assert row is not None
        self._write_run_row(run_id, row, after_data=True)

    def rename_run(self, run_id: str, new_name: str) -> None:
        """Give a run a new display name (non-empty, at most 250 characters); the
        ``mlflow.runName`` tag follows."""
        row = rows.rename_row(run_id, new_name)
        self._write_run_row(run_id, row)
        self._store.add_rows(layout.TAGS, self._experiment_of(run_id), [rows.run_name_tag_row(run_id, row["run_name"])])

    def delete_run(self, run_id: str, include_descendants: bool = False) -> list[str]:
        """Soft-delete a run: it leaves active searches and is kept until retention purges it.

        Args:
            run_id: the run.
            include_descendants: also delete its nested runs at any depth (as ``Lake.delete_run``
                does by default; off here, as in ``MlflowClient.delete_run``).

        Returns:
            The ids of the runs deleted.
        """
        return self._set_lifecycle(run_id, deleted=True, include_descendants=include_descendants)

    def restore_run(self, run_id: str, include_descendants: bool = False) -> list[str]:
        """Bring a soft-deleted run (and optionally its nested runs) back; returns their ids."""
        return self._set_lifecycle(run_id, deleted=False, include_descendants=include_descendants)

    def _set_lifecycle(self, run_id: str, *, deleted: bool, include_descendants: bool) -> list[str]:
        experiment_id = self._experiment_of(run_id)
        targets = [(run_id, experiment_id)]
        if include_descendants:
            targets += self._descendants(run_id)
        now = layout.now_ms()
        for target, target_experiment in targets:
            self._store.add_rows(layout.RUNS, target_experiment, [rows.lifecycle_row(target, deleted=deleted, now=now)])
        return [target for target, _ in targets]

    def _descendants(self, run_id: str) -> list[tuple[str, str]]:
        """(run id, experiment id) of every run below ``run_id`` in the nested-run tree."""
        self._store.flush(merge=False)  # runs this process created are still buffered
        table = self._store.read_rows(layout.RUNS)
        if table is None:
            return []
        children: dict[str, set[tuple[str, str]]] = {}
        for row in table.select(["run_id", "parent_run_id", layout.PARTITION_COLUMN]).to_pylist():
            if row["parent_run_id"]:
                children.setdefault(row["parent_run_id"], set()).add((row["run_id"], row[layout.PARTITION_COLUMN]))
        found: list[tuple[str, str]] = []
        seen = {run_id}
        frontier = [run_id]
        while frontier:
            for child in sorted(children.get(frontier.pop(), ())):
                if child[0] not in seen:
                    seen.add(child[0])
                    found.append(child)
                    frontier.append(child[0])
        return found

    # -- tags, params, metrics -----------------------------------------------------------
    def set_tag(self, run_id: str, key: str, value: Any) -> None:
        """Set a tag (a new version replaces the old value); ``mlflow.runName`` renames the run, as in MLflow."""
        self.set_tags(run_id, {key: value})

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        """Set several tags at once (every one checked before any is written)."""
        experiment_id = self._experiment_of(run_id)
        tag_rows = rows.tag_rows(run_id, tags)
        rename = rows.rename_for_tags(run_id, tags)
        if rename is not None:
            self._store.add_rows(layout.RUNS, experiment_id, [rename])
        self._store.add_rows(layout.TAGS, experiment_id, tag_rows)

    def delete_tag(self, run_id: str, key: str) -> None:
        """Delete a tag (a tombstone row)."""
        self._store.add_rows(layout.TAGS, self._experiment_of(run_id), [rows.tag_delete_row(run_id, key)])

    def set_description(self, run_id: str, description: str) -> None:
        """Set the run's notes (markdown), stored as MLflow's ``mlflow.note.content`` tag."""
        self._store.add_rows(layout.TAGS, self._experiment_of(run_id), [rows.note_row(run_id, description)])

    def param_rows(self, run_id: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Validated param rows; logging a key again with another value is an error.

        Every param is checked before any is recorded, so a failed call changes nothing and
        can be retried. A run this client did not create has its stored params read once
        first, so another process's values count too.
        """
        checked = rows.checked_params(params)
        seen = self._params_seen.get(run_id)
        if seen is None:
            seen = self._params_seen[run_id] = self._stored_params(run_id)
        for key, text in checked.items():
            old = seen.get(key)
            if old is not None and old != text:
                raise rows.param_conflict(run_id, key, old, text)
        out = []
        for key, text in checked.items():
            if seen.get(key) is None:
                seen[key] = text
                out.append(rows.param_row(run_id, key, text))
        return out

    def _stored_params(self, run_id: str) -> dict[str, str]:
        experiment_id = self._store.experiment_of_run(run_id)
        if experiment_id is None:
            return {}
        self._store.flush(merge=False)  # params this process logged may still be buffered
        table = self._store.read_rows(layout.PARAMS, experiment_id)
        if table is None:
            return {}
        stored: dict[str, str] = {}
        for row in table.filter(pc_equal(table.column("run_id"), run_id)).sort_by("version").to_pylist():
            stored.setdefault(row["key"], row["value"])  # the first version wins, as in the views
        return stored

    def log_batch(
        self,
        run_id: str,
        metrics: Iterable[tuple[str, Any, Any, Any]] | pa.Table = (),
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> None:
        """Log many metric points, params and tags at once (buffered).

        Args:
            run_id: the run.
            metrics: ``(key, value, timestamp, step)`` tuples, or a pyarrow table with columns
                key, value, timestamp, step (the fast path for importers).
            params: param key -> value.
            tags: tag key -> value.
        """
        experiment_id = self._experiment_of(run_id)
        if params:
            param_rows = self.param_rows(run_id, params)
            if param_rows:
                self._store.add_rows(layout.PARAMS, experiment_id, param_rows)
        if tags:
            self.set_tags(run_id, tags)
        points = metric_points_table(run_id, metrics)
        if points is not None:
            self._store.add_metric_table(experiment_id, points)

    def log_metric(
        self, run_id: str, key: str, value: Any, timestamp: int | None = None, step: int | None = None
    ) -> None:
        """Log one metric point (buffered)."""
        validation.validate_key("metric", key)
        self._store.add_metric(
            self._experiment_of(run_id),
            run_id,
            key,
            validation.metric_value(key, value),
            validation.metric_step(key, step),
            layout.now_ms() if timestamp is None else validation.timestamp_ms("timestamp", timestamp),
        )

    def log_param(self, run_id: str, key: str, value: Any) -> None:
        """Log one param (buffered)."""
        self.log_batch(run_id, params={key: value})

    # -- artifacts -----------------------------------------------------------------------
    def artifact_dir(self, run_id: str) -> str:
        """The run's artifact directory in the lake's filesystem."""
        return self._store.paths.run_artifact_dir(self._experiment_of(run_id), run_id)

    def log_artifact(self, run_id: str, local_path: str | os.PathLike[str], artifact_path: str | None = None) -> str:
        """Copy a local file into the run's artifacts."""
        return artifacts.copy_file(self._store.fs, self.artifact_dir(run_id), local_path, artifact_path)

    def log_artifacts(
        self, run_id: str, local_dir: str | os.PathLike[str], artifact_path: str | None = None
    ) -> list[str]:
        """Copy a local directory's files into the run's artifacts."""
        return artifacts.copy_tree(self._store.fs, self.artifact_dir(run_id), local_dir, artifact_path)

    def log_bytes(self, run_id: str, data: bytes, artifact_file: str) -> str:
        """Write bytes as an artifact file."""
        return artifacts.write_bytes(self._store.fs, self.artifact_dir(run_id), artifact_file, data)

    def log_text(self, run_id: str, text: str, artifact_file: str) -> str:
        """Write text (UTF-8) as an artifact file."""
        return self.log_bytes(run_id, text.encode("utf-8"), artifact_file)

    def log_dict(self, run_id: str, dictionary: Mapping[str, Any], artifact_file: str) -> str:
        """Write a dict as JSON (or YAML-looking JSON for .yaml/.yml names) artifact."""
        return self.log_text(run_id, json.dumps(dictionary, indent=2, sort_keys=False, default=str), artifact_file)

    def flush(self) -> None:
        """Write every buffered point, param and tag of this lake now."""
        self._store.flush()


def pc_equal(array: Any, value: Any) -> Any:
    import pyarrow.compute as pc

    return pc.equal(array, value)
