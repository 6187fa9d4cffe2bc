"""``Run``: one training run, with every logging method, usable without the fluent globals."""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Mapping
from typing import Any

from runlake.core import layout, rows, validation, vocab
from runlake.core.errors import InvalidArgument
from runlake.ingest.client import LakeClient

_INT64_MIN, _INT64_MAX = validation.INT64_MIN, validation.INT64_MAX

MODEL_HISTORY_TAG = vocab.MODEL_HISTORY_TAG

_valid_keys = validation._valid_keys
_now_ms = layout.now_ms


class Run:
    """A run being logged. Use it as a context manager, or call ``end()``.

    Every method of the fluent API exists here too, so code can hold several runs at once
    (threads, notebooks) without the module-level active run. Leaving the ``with`` block by an
    exception ends the run FAILED; by ``KeyboardInterrupt``, KILLED.
    """

    def __init__(self, client: LakeClient, run_id: str, experiment_id: str, run_name: str | None = None) -> None:
        self._client = client
        self._store = client.store
        self.run_id = run_id
        self.experiment_id = experiment_id
        self.run_name = run_name
        self._ended = False
        self._end_lock = threading.Lock()
        self._on_end: list[Any] = []
        self._models: list[dict[str, Any]] = []

    def __repr__(self) -> str:
        return f"<Run {self.run_id} name={self.run_name!r} experiment={self.experiment_id}>"

    @property
    def info(self) -> Run:
        """MLflow code reads ``run.info.run_id``; the run itself answers that."""
        return self

    @property
    def ended(self) -> bool:
        return self._ended

    # -- metrics: the hot path; no I/O, no lock beyond the buffer's ----------------------
    def log_metric(self, key: str, value: Any, step: int | None = None, timestamp: int | None = None) -> None:
        """Log one metric point. Never waits on I/O: the point is buffered and flushed later.

        Raises:
            ValueError: an invalid key, a non-numeric value or a non-integer step.
        """
        if key not in _valid_keys:
            validation.validate_key("metric", key)
        if type(value) is not float:
            value = validation.metric_value(key, value)
        # A plain int inside int64 skips the full check; anything else (another type, an int
        # beyond 64 bits) is checked there, so it fails here and never poisons the buffer.
        if step is None:
            step = 0
        elif type(step) is not int or not _INT64_MIN <= step <= _INT64_MAX:
            step = validation.metric_step(key, step)
        if timestamp is None:
            timestamp = _now_ms()
        elif type(timestamp) is not int or not _INT64_MIN <= timestamp <= _INT64_MAX:
            timestamp = validation.timestamp_ms("timestamp", timestamp)
        self._store.add_metric(self.experiment_id, self.run_id, key, value, step, timestamp)

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None, timestamp: int | None = None) -> None:
        """Log several metrics at one step."""
        if timestamp is None:
            timestamp = _now_ms()
        for key, value in metrics.items():
            self.log_metric(key, value, step=step, timestamp=timestamp)

    # -- params and tags -----------------------------------------------------------------
    def log_param(self, key: str, value: Any) -> Any:
        """Log a param (kept as a string). Logging it again with another value is an error."""
        self.log_params({key: value})
        return value

    def log_params(self, params: Mapping[str, Any]) -> None:
        param_rows = self._client.param_rows(self.run_id, params)
        if param_rows:
            self._store.add_rows(layout.PARAMS, self.experiment_id, param_rows)

    def set_tag(self, key: str, value: Any) -> None:
        self.set_tags({key: value})

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set tags; setting ``mlflow.runName`` renames the run, as in MLflow."""
        tag_rows = rows.tag_rows(self.run_id, tags)
        rename = rows.rename_for_tags(self.run_id, tags)
        if rename is not None:
            self._store.add_rows(layout.RUNS, self.experiment_id, [rename])
            self.run_name = rename["run_name"]
        self._store.add_rows(layout.TAGS, self.experiment_id, tag_rows)

    def delete_tag(self, key: str) -> None:
        self._store.add_rows(layout.TAGS, self.experiment_id, [rows.tag_delete_row(self.run_id, key)])

    # -- artifacts -----------------------------------------------------------------------
    @property
    def artifact_dir(self) -> str:
        return self._store.paths.run_artifact_dir(self.experiment_id, self.run_id)

    def log_artifact(self, local_path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
        """Copy a local file into this run's artifacts (under ``artifact_path`` when given)."""
        from runlake.core import artifacts

        artifacts.copy_file(self._store.fs, self.artifact_dir, local_path, artifact_path)

    def log_artifacts(self, local_dir: str | os.PathLike[str], artifact_path: str | None = None) -> None:
        """Copy a local directory's files into this run's artifacts."""
        from runlake.core import artifacts

        artifacts.copy_tree(self._store.fs, self.artifact_dir, local_dir, artifact_path)

    def log_bytes(self, data: bytes, artifact_file: str) -> None:
        from runlake.core import artifacts

        artifacts.write_bytes(self._store.fs, self.artifact_dir, artifact_file, data)

    def log_text(self, text: str, artifact_file: str) -> None:
        """Write text as an artifact file (e.g. ``"notes/summary.md"``)."""
        self.log_bytes(text.encode("utf-8"), artifact_file)

    def log_dict(self, dictionary: Mapping[str, Any], artifact_file: str) -> None:
        """Write a dict as a JSON artifact."""
        self.log_text(json.dumps(dictionary, indent=2, default=str), artifact_file)

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        """Save a matplotlib or plotly figure as an artifact (format from the file suffix)."""
        from runlake.ingest.models import figure_to_bytes

        self.log_bytes(figure_to_bytes(figure, artifact_file), artifact_file)

    def log_model(self, model: Any, name: str = "model", *, artifact_path: str | None = None) -> str:
        """Save a model (scikit-learn or any picklable object) in MLflow's format under ``<name>/``.

        ``mlflow.pyfunc.load_model`` and ``mlflow.sklearn.load_model`` load it (see
        ``runlake.ingest.models.save_model``), as does ``runlake.ingest.load_model``.

        Args:
            model: the model.
            name: the model's directory in the run's artifacts.
            artifact_path: MLflow 2's name for ``name``; give one or the other.

        Returns:
            The model URI, ``runs:/<run_id>/<name>``, which ``load_model`` accepts.
        """
        from runlake.core import artifacts
        from runlake.ingest.models import history_entry, save_model

        if artifact_path is not None:
            if name not in ("model", artifact_path):
                raise InvalidArgument(f"log_model got name={name!r} and artifact_path={artifact_path!r}: give one")
            name = artifact_path
        rel = artifacts.clean_artifact_path(name)
        if not rel:
            raise InvalidArgument("A model needs a name, e.g. 'model'")
        with tempfile.TemporaryDirectory(prefix="runlake-model-") as tmp:
            local = os.path.join(tmp, "model")
            meta = save_model(model, local, artifact_path=rel, run_id=self.run_id)
            artifacts.copy_tree(self._store.fs, self.artifact_dir, local, rel)
        self._models.append(history_entry(meta))
        # The tag holds as many of the newest entries as its value limit allows.
        history = self._models
        while len(text := json.dumps(history)) > validation.MAX_TAG_VALUE_LENGTH and len(history) > 1:
            history = history[1:]
        self.set_tag(MODEL_HISTORY_TAG, text)
        return f"runs:/{self.run_id}/{rel}"

    def resume_model_history(self, tag_value: str | None) -> None:
        """Continue a resumed run's model history from its stored tag, so models logged now
        are added to those it logged before."""
        try:
            history = json.loads(tag_value) if tag_value else []
        except ValueError:
            history = []
        self._models = [entry for entry in history if isinstance(entry, dict)] if isinstance(history, list) else []

    # -- ending --------------------------------------------------------------------------
    def end(self, status: str = "FINISHED") -> None:
        """End the run: flush everything it buffered, then record status and end time.

        Ending a run twice does nothing the second time.
        """
        with self._end_lock:
            if self._ended:
                return
            self._client.set_terminated(self.run_id, status=status)
            # The end of a run is a durability point: its rows are on disk when end() returns,
            # and its own small files are merged (the end-of-run merge).
            self._store.flush(merge=False)
            self._store.merge(release_all=True)
            self._ended = True
        for callback in self._on_end:
            callback(self)

    def end_run(self, status: str = "FINISHED") -> None:
        """The fluent name for ``end()``, so the run object has every fluent method."""
        self.end(status)

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if exc_type is None:
            status = "FINISHED"
        elif issubclass(exc_type, KeyboardInterrupt):
            status = "KILLED"
        else:
            status = "FAILED"
        self.end(status)
