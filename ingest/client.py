"""``LakeClient``: the low-level, MlflowClient-shaped writer for importers, tests and tools."""

from __future__ import annotations

import getpass
import json
import os
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from runlake.lake import layout, writer
from runlake.lake.errors import ExperimentNotFound, InvalidArgument, RunNotFound
from runlake.ingest import artifacts
from runlake.lake import validation
from runlake.ingest.store import Store, experiment_id_for, get_store

NOTE_TAG = "mlflow.note.content"
PARENT_TAG = "mlflow.parentRunId"


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


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return os.environ.get("USER", "unknown")


class LakeClient:
    """Write access to one lake, shaped like ``mlflow.tracking.MlflowClient``.

    Metric points and params given to ``log_batch`` are buffered and written by a background
    thread (or ``flush()``); run creation and changes to a run (status, name, tags, deletion)
    are written before the call returns.

    Args:
        lake: the lake root (a local path or a URI pyarrow understands).
    """

    def __init__(self, lake: str | os.PathLike[str]) -> None:
        self._store: Store = get_store(lake)
        self._params_seen: dict[str, dict[str, str]] = {}

    @property
    def root(self) -> str:
        return self._store.root

    # -- experiments ---------------------------------------------------------------------
    def create_experiment(
        self, name: str, artifact_location: str | None = None, experiment_id: str | None = None
    ) -> str:
        """Create an experiment (or return the id of the active one with this name).

        Raises:
            ValueError: an empty name or an invalid explicit id.
        """
        if not isinstance(name, str) or not name.strip():
            raise InvalidArgument("An experiment name must be a non-empty string")
        try:
            validation.check_name("experiment name", name, 500)
        except ValueError as exc:
            raise InvalidArgument(str(exc)) from None
        existing = self._store.experiment_by_name(name)
        if existing is not None:
            if existing.get("lifecycle_stage") == layout.LIFECYCLE_DELETED:
                raise InvalidArgument(f"Experiment '{name}' exists but is deleted; restore it or use another name")
            return str(existing["experiment_id"])
        exp_id = experiment_id or experiment_id_for(name)
        if not layout.is_valid_id(exp_id):
            raise InvalidArgument(f"Invalid experiment id '{exp_id}': use letters, digits, '-' and '_'")
        now = layout.now_ms()
        row = {
            "experiment_id": exp_id,
            "version": layout.next_version(),
            "name": name,
            "artifact_location": artifact_location or layout.artifact_uri_for(self.root, exp_id, "").rstrip("/"),
            "lifecycle_stage": layout.LIFECYCLE_ACTIVE,
            "creation_time": now,
            "last_update_time": now,
        }
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
            parent_run_id: the parent of a nested run.
            run_id: keep this id (importers preserve ids); must be new and match [A-Za-z0-9_-].
            source: optional ``source_type``, ``source_name``, ``source_version``, ``entry_point``.
            status: the initial status (RUNNING, or SCHEDULED for queued runs).

        Raises:
            ExperimentNotFound: the experiment does not exist.
            ValueError: an invalid or already used run id, status or tag.
        """
        experiment_id = str(experiment_id)
        if experiment_id not in self._store.experiments():
            if experiment_id == layout.DEFAULT_EXPERIMENT_ID:
                self.create_experiment(layout.DEFAULT_EXPERIMENT_NAME, experiment_id=experiment_id)
            else:
                raise ExperimentNotFound(experiment_id)
        if run_id is None:
            run_id = uuid.uuid4().hex
        else:
            if not layout.is_valid_id(run_id):
                raise InvalidArgument(f"Invalid run id '{run_id}': use 1-256 letters, digits, '-' and '_'")
            if self._store.experiment_of_run(run_id) is not None:
                raise InvalidArgument(f"Run '{run_id}' already exists")
        if status not in layout.RUN_STATUSES:
            raise InvalidArgument(f"Invalid status '{status}': one of {', '.join(layout.RUN_STATUSES)}")
        if run_name is None:
            from runlake.ingest.names import generate_run_name

            run_name = generate_run_name()
        self._check_run_name(run_name)
        source = dict(source or {})
        row = {
            "run_id": run_id,
            "version": layout.next_version(),
            "run_name": run_name,
            "status": status,
            "start_time": validation.timestamp_ms("start_time", start_time) if start_time is not None else layout.now_ms(),
            "user_id": user_id or _user(),
            "source_type": source.get("source_type"),
            "source_name": source.get("source_name"),
            "source_version": source.get("source_version"),
            "entry_point": source.get("entry_point"),
            "parent_run_id": parent_run_id,
            "artifact_uri": layout.artifact_uri_for(self.root, experiment_id, run_id),
            "lifecycle_stage": layout.LIFECYCLE_ACTIVE,
        }
        all_tags = dict(tags or {})
        if parent_run_id:
            all_tags.setdefault(PARENT_TAG, parent_run_id)
        tag_rows = self._tag_rows(run_id, all_tags)
        self._store.remember_run(run_id, experiment_id)
        self._params_seen[run_id] = {}  # a new run has no params yet: nothing to read back
        self._store.add_rows(layout.RUNS, experiment_id, [row])
        if tag_rows:
            self._store.add_rows(layout.TAGS, experiment_id, tag_rows)
        self._store.flush()
        return run_id

    def _experiment_of(self, run_id: str) -> str:
        experiment_id = self._store.experiment_of_run(run_id)
        if experiment_id is None:
            raise RunNotFound(run_id)
        return experiment_id

    def _run_update(self, run_id: str, **fields: Any) -> None:
        experiment_id = self._experiment_of(run_id)
        self._store.add_rows(layout.RUNS, experiment_id, [{"run_id": run_id, "version": layout.next_version(), **fields}])
        self._store.flush()

    @staticmethod
    def _check_run_name(run_name: str) -> None:
        try:
            validation.check_name("run name", run_name, validation.MAX_RUN_NAME_LENGTH)
        except ValueError as exc:
            raise InvalidArgument(str(exc)) from None

    def update_run(self, run_id: str, status: str | None = None, end_time: int | None = None, run_name: str | None = None) -> None:
        """Change a run's status, end time or name."""
        fields: dict[str, Any] = {}
        if status is not None:
            if status not in layout.RUN_STATUSES:
                raise InvalidArgument(f"Invalid status '{status}': one of {', '.join(layout.RUN_STATUSES)}")
            fields["status"] = status
        if end_time is not None:
            fields["end_time"] = validation.timestamp_ms("end_time", end_time)
        if run_name is not None:
            self._check_run_name(run_name)
            fields["run_name"] = run_name
        if fields:
            self._run_update(run_id, **fields)

    def set_terminated(self, run_id: str, status: str = "FINISHED", end_time: int | None = None) -> None:
        """End a run: flush its buffered data, then record the status and end time."""
        if status not in layout.TERMINAL_STATUSES:
            raise InvalidArgument(f"Invalid end status '{status}': one of {', '.join(layout.TERMINAL_STATUSES)}")
        self._store.flush()
        self.update_run(run_id, status=status, end_time=end_time if end_time is not None else layout.now_ms())

    def rename_run(self, run_id: str, new_name: str) -> None:
        """Give a run a new display name."""
        self.update_run(run_id, run_name=new_name)

    def delete_run(self, run_id: str) -> None:
        """Soft-delete a run: it leaves active searches and is kept until retention purges it."""
        self._run_update(run_id, lifecycle_stage=layout.LIFECYCLE_DELETED, deleted_time=layout.now_ms())

    def restore_run(self, run_id: str) -> None:
        """Bring a soft-deleted run back."""
        self._run_update(run_id, lifecycle_stage=layout.LIFECYCLE_ACTIVE)

    # -- tags, params, metrics -----------------------------------------------------------
    def _tag_rows(self, run_id: str, tags: Mapping[str, Any], *, delete: bool = False) -> list[dict[str, Any]]:
        rows = []
        for key, value in tags.items():
            validation.validate_key("tag", key)
            rows.append(
                {
                    "run_id": run_id,
                    "key": key,
                    "value": None if delete else validation.tag_value(key, value),
                    "version": layout.next_version(),
                }
            )
        return rows

    def set_tag(self, run_id: str, key: str, value: Any) -> None:
        """Set a tag (a new version replaces the old value)."""
        self._store.add_rows(layout.TAGS, self._experiment_of(run_id), self._tag_rows(run_id, {key: value}))
        self._store.flush()

    def delete_tag(self, run_id: str, key: str) -> None:
        """Delete a tag (a tombstone row)."""
        self._store.add_rows(layout.TAGS, self._experiment_of(run_id), self._tag_rows(run_id, {key: None}, delete=True))
        self._store.flush()

    def set_description(self, run_id: str, description: str) -> None:
        """Set the run's notes (markdown), stored as MLflow's ``mlflow.note.content`` tag."""
        self.set_tag(run_id, NOTE_TAG, description)

    def param_rows(self, run_id: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Validated param rows; logging a key again with another value is an error.

        Every param is checked before any is recorded, so a failed call changes nothing and
        can be retried. A run this client did not create has its stored params read once
        first, so another process's values count too.
        """
        checked = {validation.validate_key("param", k): validation.param_value(k, v) for k, v in params.items()}
        seen = self._params_seen.get(run_id)
        if seen is None:
            seen = self._params_seen[run_id] = self._stored_params(run_id)
        rows = []
        for key, text in checked.items():
            old = seen.get(key)
            if old is not None and old != text:
                raise InvalidArgument(
                    f"Changing param values is not allowed. Param with key='{key}' was already logged "
                    f"with value='{old}' for run ID='{run_id}'. Attempted logging new value '{text}'."
                )
        for key, text in checked.items():
            if seen.get(key) is None:
                seen[key] = text
                rows.append({"run_id": run_id, "key": key, "value": text, "version": layout.next_version()})
        return rows

    def _stored_params(self, run_id: str) -> dict[str, str]:
        experiment_id = self._store.experiment_of_run(run_id)
        if experiment_id is None:
            return {}
        table = self._store.read_rows(layout.PARAMS, experiment_id)
        if table is None:
            return {}
        stored: dict[str, str] = {}
        rows = table.filter(pc_equal(table.column("run_id"), run_id)).sort_by("version").to_pylist()
        for row in rows:
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
            rows = self.param_rows(run_id, params)
            if rows:
                self._store.add_rows(layout.PARAMS, experiment_id, rows)
        if tags:
            self._store.add_rows(layout.TAGS, experiment_id, self._tag_rows(run_id, tags))
        points = metric_points_table(run_id, metrics)
        if points is not None:
            self._store.add_metric_table(experiment_id, points)

    def log_metric(self, run_id: str, key: str, value: Any, timestamp: int | None = None, step: int | None = None) -> None:
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

    def log_artifacts(self, run_id: str, local_dir: str | os.PathLike[str], artifact_path: str | None = None) -> list[str]:
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


# Steps and timestamps are read as doubles first: Arrow's conversion to int64 would silently
# truncate 1.5 to 1, while as doubles a non-integer is visible (and sent to the slow path).
_POINT = pa.struct([("key", pa.string()), ("value", pa.float64()), ("timestamp", pa.float64()), ("step", pa.float64())])
_EXACT = 2.0**53  # doubles hold every integer up to here exactly


def metric_points_table(run_id: str, metrics: Iterable[tuple[str, Any, Any, Any]] | pa.Table) -> pa.Table | None:
    """Validated metric points as a table in the metrics schema, or None when there are none.

    Works column-wise, which is what makes bulk logging fast: Arrow converts a million
    ``(key, value, timestamp, step)`` tuples in one pass in C, keys are checked once each, and
    only input that fails the fast conversion is walked in Python to say what is wrong.
    """
    if isinstance(metrics, pa.Table):
        if metrics.num_rows == 0:
            return None
        try:
            columns = [metrics.column(f.name).cast(f.type) for f in _POINT]
        except KeyError:
            raise InvalidArgument("A metrics table needs the columns key, value, timestamp and step") from None
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            raise InvalidArgument("Metric keys must be strings, values numbers, timestamps and steps integers") from None
    else:
        items = metrics if isinstance(metrics, list) else list(metrics)
        if not items:
            return None
        try:
            columns = _integral(pa.array(items, type=_POINT).flatten())
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
            columns = None
        if columns is None:
            columns = _points_one_by_one(items)
    keys, values, timestamps, steps = columns
    for key in keys.unique().to_pylist():
        validation.validate_key("metric", key)
    if values.null_count:
        raise InvalidArgument("Metric values must not be None")
    return pa.Table.from_arrays(
        [pa.repeat(pa.scalar(run_id, pa.string()), len(keys)), keys, steps.fill_null(0), timestamps.fill_null(layout.now_ms()), values],
        schema=layout.SCHEMAS[layout.METRICS],
    )


def _integral(columns: list[pa.Array]) -> list[pa.Array] | None:
    """The columns with steps and timestamps as int64, or None if any is not a whole number."""
    import pyarrow.compute as pc

    keys, values, timestamps, steps = columns
    out = []
    for column in (timestamps, steps):
        present = column.drop_null()
        if len(present) and not (
            pc.all(pc.equal(pc.floor(present), present)).as_py() and pc.max(pc.abs(present)).as_py() < _EXACT
        ):
            return None
        out.append(column.cast(pa.int64()))
    return [keys, values, out[0], out[1]]


def _points_one_by_one(items: list[Any]) -> list[pa.Array]:
    """The slow path: each point checked in Python, with the error naming the bad one."""
    keys, values, timestamps, steps = [], [], [], []
    for index, item in enumerate(items):
        try:
            key, value, timestamp, step = item
        except (TypeError, ValueError):
            raise InvalidArgument(f"metrics[{index}] is {item!r}: expected a (key, value, timestamp, step) tuple") from None
        keys.append(validation.validate_key("metric", key))
        values.append(validation.metric_value(key, value))
        timestamps.append(None if timestamp is None else validation.timestamp_ms("timestamp", timestamp))
        steps.append(validation.metric_step(key, step))
    return [pa.array(keys, pa.string()), pa.array(values, pa.float64()), pa.array(timestamps, pa.int64()), pa.array(steps, pa.int64())]


def pc_equal(array: Any, value: Any) -> Any:
    import pyarrow.compute as pc

    return pc.equal(array, value)
