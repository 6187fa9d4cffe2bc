"""``RunlakeStore``: MLflow's tracking-store interface over a runlake lake.

Writes go through runlake's buffered ``LakeClient`` (one process-wide store per lake, flushed by
a background thread, reset in forked children); reads go through ``Lake`` (DuckDB over the
lake's current state) and runlake's search, which flushes this process's buffer first, so a
program sees its own writes at once. MLflow's client, fluent API, autolog, model flavors and
REST server stay MLflow's; only the storage is the lake's.
"""

from __future__ import annotations

import dataclasses
import datetime
import gc
import json
import math
import os
import threading
import time
import uuid
import weakref
from collections.abc import Collection, Sequence
from typing import Any, cast

import pyarrow as pa
import pyarrow.compute as pc
from mlflow.entities import (
    Dataset,
    DatasetInput,
    Experiment,
    ExperimentTag,
    InputTag,
    LifecycleStage,
    LoggedModel,
    LoggedModelInput,
    LoggedModelOutput,
    LoggedModelStatus,
    Metric,
    Param,
    Run,
    RunData,
    RunInfo,
    RunInputs,
    RunOutputs,
    RunStatus,
    RunTag,
    ViewType,
)
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import (
    INVALID_PARAMETER_VALUE,
    INVALID_STATE,
    RESOURCE_ALREADY_EXISTS,
    RESOURCE_DOES_NOT_EXIST,
)
from mlflow.store.entities.paged_list import PagedList
from mlflow.store.tracking import (
    SEARCH_LOGGED_MODEL_MAX_RESULTS_DEFAULT,
    SEARCH_MAX_RESULTS_DEFAULT,
    SEARCH_MAX_RESULTS_THRESHOLD,
)
from mlflow.store.tracking.abstract_store import AbstractStore
from mlflow.utils.name_utils import _generate_random_name
from mlflow.utils.search_utils import (
    SearchExperimentsUtils,
    SearchLoggedModelsPaginationToken,
    SearchLoggedModelsUtils,
    SearchUtils,
)
from mlflow.utils.validation import (
    _parse_experiment_id,
    _validate_batch_log_data,
    _validate_batch_log_limits,
    _validate_dataset_inputs,
    _validate_experiment_name,
    _validate_experiment_tag,
    _validate_logged_model_name,
    _validate_metric,
    _validate_param,
    _validate_tag,
)

from runlake.core import layout, rows, vocab, writer
from runlake.core.errors import InvalidArgument
from runlake.ingest import LakeClient
from runlake.lake import Lake, frames
from runlake.lake.history import metric_history_table
from runlake.lake.search.results import (
    FUSED_SEARCH_LIMIT,
    MAX_INT64,
    Search,
    decode_token,
    encode_token,
    search_ids,
    search_rows,
)
from runlake.lake.sql import Fragment, id_list, indexed_ids, join, q
from runlake.mlflow_store import uri
from runlake.mlflow_store.documents import (
    EXPERIMENT_TAGS,
    LOGGED_MODELS,
    MODEL_METRICS,
    RUN_IO,
    Documents,
    fold_tags,
)
from runlake.mlflow_store.errors import mlflow_errors, not_supported, unsupported_as_mlflow
from runlake.mlflow_store.records import RUN_INFO_COLUMNS, RunRecord

# A create_experiment this soon after the same store found the name missing, racing another
# process that created it meanwhile, answers that experiment's id (see ``create_experiment``).
TWIN_CREATE_WINDOW_S = 60.0
_RUN_INFO_COLUMNS = ", ".join(RUN_INFO_COLUMNS)
# Up to this many runs are read through the run_id index (an IN list of placeholders); more
# are joined against one bound list. Measured on 1,000 to 100,000-run lakes: a 1,000-id IN list
# costs 16-95 ms a query in binding and probing, the bound list 4-28 ms; at 100 ids the two are
# within a few ms of each other either way (the index ahead on large lakes).
INDEXED_READ_LIMIT = 100
# Runs whose stage a store keeps (``_known_stage``); all dropped when full.
STAGES_KEPT = 100_000
# How long a kept stage is trusted before the lake is asked again, by a store that has a reader
# open (``runlake server``, a process that searched): a run deleted in another process (the
# dashboard, another client) then refuses this store's writes within this time. A store that
# only writes (a training process) opens no reader for it, and neither does one whose reader was
# closed (at interpreter exit, before MLflow's own exit hook ends the active run).
STAGE_TRUSTED_S = 5.0


def _run_id_condition(run_ids: list[str]) -> Fragment:
    """``run_id`` among ``run_ids``: index probes up to ``INDEXED_READ_LIMIT`` ids, else a bound list."""
    return indexed_ids("run_id", run_ids) if len(run_ids) <= INDEXED_READ_LIMIT else id_list("run_id", run_ids)


# The run columns MLflow keeps as tags too; on create they fill runlake's run columns.
_SOURCE_BY_TAG = {tag: column for column, tag in vocab.SOURCE_TAGS.items()}


def _join_uri(base: str, *parts: str) -> str:
    # "mlflow-artifacts:/" + "0/abc" must stay "mlflow-artifacts:/0/abc" (one slash after the scheme).
    return "/".join([base.rstrip("/") if not base.endswith(":/") else base[:-1], *parts])


def _view_type(run_view_type: Any) -> str:
    if isinstance(run_view_type, int):
        return str(ViewType.to_string(run_view_type)).upper()
    return str(run_view_type or "ACTIVE_ONLY").upper()


def _check_unknown_experiment_id(experiment_id: Any, known: Collection[str]) -> None:
    """An experiment id the lake does not hold: MLflow's error when it is no integer, else
    nothing (the caller answers "does not exist" or leaves it out). MLflow's ids are all
    integers; in a lake that also holds experiments runlake created with ids of their own
    ("team-a"), any text may be an id, and a mistyped one is not found rather than refused."""
    if all(_is_integer(k) for k in known):
        _parse_experiment_id(experiment_id)


def _is_integer(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def _status(run_status: Any) -> str | None:
    if run_status is None:
        return None
    return str(RunStatus.to_string(run_status)) if isinstance(run_status, int) else str(run_status)


def _check_max_results(max_results: Any, *, allow_none: bool = False) -> None:
    """MLflow's SQL store's check of a search's ``max_results``, with its messages; with
    ``allow_none``, None (every match, as MLflow's ``search_runs`` takes it) passes."""
    if max_results is None and allow_none:
        return
    if not isinstance(max_results, int) or isinstance(max_results, bool) or max_results < 1:
        raise MlflowException(
            f"Invalid value {max_results} for parameter 'max_results' supplied. It must be a positive integer",
            INVALID_PARAMETER_VALUE,
        )
    if max_results > SEARCH_MAX_RESULTS_THRESHOLD:
        raise MlflowException(
            f"Invalid value {max_results} for parameter 'max_results' supplied. It must be at most "
            f"{SEARCH_MAX_RESULTS_THRESHOLD}",
            INVALID_PARAMETER_VALUE,
        )


def names_datasets(filter_string: str | None) -> bool:
    """Whether a filter in MLflow's syntax names ``dataset.*`` (False for runlake-only syntax)."""
    if not filter_string or "dataset" not in filter_string.lower():
        return False
    try:
        clauses = SearchUtils.parse_search_filter(filter_string)
    except Exception:  # MLflow's parser also raises ValueError (`IN (iris)`): runlake's grammar words the error
        return False
    return any(clause.get("type") == "dataset" for clause in clauses)


def _sort_logged_models(models: list[LoggedModel], order_by: list[dict[str, Any]] | None) -> list[LoggedModel]:
    """MLflow's in-memory order of logged models, also for an order by a metric on a dataset
    given by its digest alone, which MLflow's SQL store takes and MLflow's in-memory sort refuses."""
    if not any(o.get("dataset_digest") and not o.get("dataset_name") for o in order_by or []):
        return list(SearchLoggedModelsUtils.sort(models, order_by))
    utils = SearchLoggedModelsUtils
    parsed = []
    for clause in order_by or []:
        digest_only = bool(clause.get("dataset_digest") and not clause.get("dataset_name"))
        # The parser insists on a name beside a digest: parse with a stand-in, then drop it.
        one = utils.parse_order_by_for_logged_models({**clause, "dataset_name": "-"} if digest_only else clause)
        parsed.append(dataclasses.replace(one, dataset_name=None) if digest_only else one)
    if not any(o.field_name == "creation_timestamp" for o in parsed):  # MLflow's tie-breakers
        parsed.append(utils.OrderBy("creation_timestamp", False))
    if not any(o.field_name == "model_id" for o in parsed):
        parsed.append(utils.OrderBy("model_id"))
    return sorted(models, key=lambda m: tuple(utils._apply_reversor_for_logged_model(m, o) for o in parsed))


def parse_logged_model_filter(filter_string: str | None) -> None:
    """Raise MLflow's SQL store's error for a logged-model filter it would refuse."""
    try:
        from mlflow.utils.search_logged_model_utils import parse_filter_string
    except ImportError:  # an MLflow without it: the in-memory filter's own errors stand
        return
    parse_filter_string(filter_string)


_open_stores: weakref.WeakSet[RunlakeStore] = weakref.WeakSet()


def _before_fork() -> None:
    # DuckDB is not fork-safe: a child forked while the parent holds a database can hang on its
    # first query. The readers are closed before a fork (and reopened on the next read), so a
    # training script's forked workers (DataLoader, multiprocessing pools) can log and read.
    for store in list(_open_stores):
        store.close_reader()
    gc.collect()


os.register_at_fork(before=_before_fork)


@unsupported_as_mlflow
class RunlakeStore(AbstractStore):
    """MLflow's ``AbstractStore`` over one lake.

    Args:
        store_uri: ``runlake:///abs/path``, ``runlake:/abs/path`` or ``runlake:s3://bucket/prefix``.
        artifact_uri: the artifact root MLflow shows for runs (``mlflow-artifacts:/`` when MLflow's
            server proxies artifacts into the lake); by default the lake's own artifact tree.
    """

    def __init__(self, store_uri: str, artifact_uri: str | None = None) -> None:
        super().__init__()
        self.store_uri = store_uri
        self.location = uri.lake_location(store_uri)
        self.client = LakeClient(self.location)
        self.root = self.client.root
        self.fs = self.client.store.fs
        self.paths = layout.LakePaths(self.root)
        self.docs = Documents(self.fs, self.root)
        scheme = self.location.split("://", 1)[0] if "://" in self.location else "file"
        self.lake_artifacts = f"{scheme}://{self.paths.artifact_root()}"
        self.artifact_root = artifact_uri or self.lake_artifacts
        self._lake: Lake | None = None
        self._lake_pid = 0
        # The reader's ``Lake(cache=...)``: none by default (a training process reads a private
        # copy of the lake's published state, or in memory); ``runlake server``, a long-lived
        # reader, keeps a state cache as ``runlake ui`` does.
        self.reader_cache: bool | str | None = None
        self._lock = threading.Lock()
        # Runs known active or deleted in this process, so logging checks no lake state each call
        # (at most STAGES_KEPT: a server up for months meets every run of the lake).
        self._stages: dict[str, tuple[str, float]] = {}
        # Held while a run's model-history tag is read, extended and written back, so request
        # threads logging models at once do not each write back a list without the other's.
        # (Two processes doing so for one run can still race.)
        self._model_history_lock = threading.Lock()
        # Names this store last found missing, with when (see ``create_experiment``).
        # Per name, when each lookup that found it missing happened (see ``create_experiment``).
        self._missing_names: dict[str, list[float]] = {}
        self._missing_lock = threading.Lock()
        self.DEFAULT_EXPERIMENT_ID = layout.DEFAULT_EXPERIMENT_ID  # as MLflow's stores name it
        _open_stores.add(self)
        if layout.DEFAULT_EXPERIMENT_ID not in self.client.store.experiments():
            self.client.create_experiment(layout.DEFAULT_EXPERIMENT_NAME, experiment_id=layout.DEFAULT_EXPERIMENT_ID)

    def close_reader(self) -> None:
        """Drop the DuckDB reader (reopened on the next read)."""
        with self._lock:
            self._lake = None

    def _reading(self) -> bool:
        """Whether this process has an open reader of the lake (no new one is opened to ask)."""
        lake = self._lake
        return lake is not None and self._lake_pid == os.getpid() and not lake.connection.closed

    @property
    def lake(self) -> Lake:
        """This process's reader (a forked child opens its own DuckDB connection)."""
        with self._lock:
            if self._lake is None or self._lake_pid != os.getpid():
                self._lake = Lake(self.location, cache=self.reader_cache)
                self._lake_pid = os.getpid()
            return self._lake

    # -- experiments ---------------------------------------------------------------------
    def _experiment_location(self, experiment_id: str, stored: str | None) -> str:
        defaults = {
            _join_uri(self.lake_artifacts, experiment_id),
            layout.artifact_uri_for(self.root, experiment_id, "").rstrip("/"),
        }
        if not stored or stored in defaults:
            return _join_uri(self.artifact_root, experiment_id)
        return stored

    def _experiment(self, row: dict[str, Any], tags: dict[str, str] | None = None) -> Experiment:
        experiment_id = str(row["experiment_id"])
        if tags is None:
            tags = fold_tags(self.docs.read(EXPERIMENT_TAGS, experiment_id))
        return Experiment(
            experiment_id=experiment_id,
            name=row.get("name", ""),
            artifact_location=self._experiment_location(experiment_id, row.get("artifact_location")),
            lifecycle_stage=row.get("lifecycle_stage") or LifecycleStage.ACTIVE,
            tags=[ExperimentTag(k, v) for k, v in tags.items()],
            creation_time=row.get("creation_time"),
            last_update_time=row.get("last_update_time"),
        )

    def _experiment_row(self, experiment_id: Any) -> dict[str, Any]:
        # No id is the Default experiment, as in MLflow's SQL store.
        experiment_id = experiment_id or layout.DEFAULT_EXPERIMENT_ID
        known = self.client.store.experiments()
        row = known.get(str(experiment_id))
        if row is None:
            _check_unknown_experiment_id(experiment_id, known)
            raise MlflowException(f"No Experiment with id={experiment_id} exists", RESOURCE_DOES_NOT_EXIST)
        return row

    def _write_experiment_change(self, experiment_id: str, **fields: Any) -> None:
        row = {"experiment_id": experiment_id, "version": layout.next_version(), **fields}
        row["last_update_time"] = layout.now_ms()
        writer.write_part(self.fs, self.root, layout.EXPERIMENTS, writer.to_table(layout.EXPERIMENTS, [row]))

    @mlflow_errors
    def search_experiments(
        self,
        view_type: int = ViewType.ACTIVE_ONLY,
        max_results: int = SEARCH_MAX_RESULTS_DEFAULT,
        filter_string: str | None = None,
        order_by: Sequence[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList[Experiment]:
        _check_max_results(max_results)
        stages = LifecycleStage.view_type_to_stages(view_type)
        tagged = self.docs.keys(EXPERIMENT_TAGS)
        experiments = [
            self._experiment(row, None if row["experiment_id"] in tagged else {})
            for row in self.client.store.experiments().values()
            if (row.get("lifecycle_stage") or LifecycleStage.ACTIVE) in stages
        ]
        filtered = SearchExperimentsUtils.filter(experiments, filter_string)
        ordered = SearchExperimentsUtils.sort(filtered, list(order_by or []) or ["last_update_time DESC"])
        page, token = SearchExperimentsUtils.paginate(ordered, page_token, max_results)
        return PagedList(page, token)

    @mlflow_errors
    def create_experiment(
        self, name: str, artifact_location: str | None = None, tags: Sequence[ExperimentTag] | None = None
    ) -> str:
        _validate_experiment_name(name)  # MLflow's checks and messages (None, '', too long, not a string)
        if not name.strip():
            raise MlflowException(f"Invalid experiment name: '{name}'", INVALID_PARAMETER_VALUE)
        for tag in tags or []:
            _validate_experiment_tag(tag.key, tag.value)
        existing = self.client.store.experiments()
        twin = next((row for row in existing.values() if row.get("name") == name), None)
        if twin is not None:
            # Check-then-create (``mlflow.set_experiment`` does it) races when several processes
            # start at once: each finds no experiment, one creates it first, and MLflow's
            # set_experiment, on RESOURCE_ALREADY_EXISTS, returns without making it active, so
            # that process logs into the Default experiment. When this store found the name
            # missing moments ago, the experiment is a twin created meanwhile: answer its id, as
            # two processes creating the same name write the same derived id anyway. (In
            # `runlake server` one store serves every client, so the record is per name, not
            # per caller: each lookup that missed pays for one create.) A create that no recent
            # missed lookup stands for - a second create of the same name - raises, as in MLflow,
            # and so does one whose twin is deleted.
            active = (twin.get("lifecycle_stage") or LifecycleStage.ACTIVE) == LifecycleStage.ACTIVE
            if active and self._take_missed_lookup(name):
                experiment_id = str(twin["experiment_id"])
                for tag in tags or []:
                    self.docs.add(EXPERIMENT_TAGS, experiment_id, {"key": tag.key, "value": tag.value})
                return experiment_id
            raise MlflowException(f"Experiment(name={name}) already exists.", RESOURCE_ALREADY_EXISTS)
        self._take_missed_lookup(name)
        experiment_id = layout.experiment_id_for(name)
        if experiment_id in existing:  # the name was renamed away; its derived id stays taken
            experiment_id = str(uuid.uuid4().int % 10**17 + 2 * 10**17)
        self.client.create_experiment(name, artifact_location=artifact_location or None, experiment_id=experiment_id)
        for tag in tags or []:
            self.docs.add(EXPERIMENT_TAGS, experiment_id, {"key": tag.key, "value": tag.value})
        return experiment_id

    def _take_missed_lookup(self, name: str) -> bool:
        """Use up the oldest recent lookup that found ``name`` missing; False when there is none."""
        with self._missing_lock:
            cutoff = time.monotonic() - TWIN_CREATE_WINDOW_S
            recent = [t for t in self._missing_names.get(name, []) if t >= cutoff]
            if not recent:
                self._missing_names.pop(name, None)
                return False
            self._missing_names[name] = recent[1:]
            return True

    @mlflow_errors
    def get_experiment(self, experiment_id: str) -> Experiment:
        return self._experiment(self._experiment_row(experiment_id))

    @mlflow_errors
    def get_experiment_by_name(self, experiment_name: str) -> Experiment | None:
        row = self.client.store.experiment_by_name(experiment_name)
        if row is None:
            with self._missing_lock:
                if len(self._missing_names) > 1000:
                    self._missing_names.clear()
                self._missing_names.setdefault(experiment_name, []).append(time.monotonic())
            return None
        return self._experiment(row)

    @mlflow_errors
    def delete_experiment(self, experiment_id: str) -> None:
        experiment_id = str(experiment_id)
        if experiment_id == layout.DEFAULT_EXPERIMENT_ID:
            raise MlflowException("Cannot delete the default experiment '0'.", INVALID_PARAMETER_VALUE)
        self._experiment_row(experiment_id)
        self._write_experiment_change(experiment_id, lifecycle_stage=LifecycleStage.DELETED)
        self._set_runs_stage(experiment_id, deleted=True)

    @mlflow_errors
    def restore_experiment(self, experiment_id: str) -> None:
        row = self._experiment_row(experiment_id)
        if row.get("lifecycle_stage") != LifecycleStage.DELETED:
            raise MlflowException(
                f"Cannot restore an active experiment. experiment_id={experiment_id}", INVALID_PARAMETER_VALUE
            )
        self._write_experiment_change(str(experiment_id), lifecycle_stage=LifecycleStage.ACTIVE)
        self._set_runs_stage(str(experiment_id), deleted=False)

    def _set_runs_stage(self, experiment_id: str, *, deleted: bool) -> None:
        """Delete or restore every run of an experiment with it, as MLflow's SQL store does: the
        runs of a deleted experiment are deleted runs (refused further logging, found by
        DELETED_ONLY searches, purged by retention), and restoring the experiment restores them all."""
        stage = LifecycleStage.DELETED if deleted else LifecycleStage.ACTIVE
        db = self.lake.connection
        with db.fresh():
            found = db.rows(q("SELECT run_id, lifecycle_stage FROM runs WHERE experiment_id = ?", experiment_id))
        now = layout.now_ms()
        changed = [run_id for run_id, current in found if current != stage]
        if changed:
            self.client.store.add_rows(
                layout.RUNS, experiment_id, [rows.lifecycle_row(run_id, deleted=deleted, now=now) for run_id in changed]
            )
        for run_id, _ in found:
            self._stages.pop(run_id, None)  # looked up again when next logged to (a big experiment
            # would otherwise fill the known stages at once)

    @mlflow_errors
    def rename_experiment(self, experiment_id: str, new_name: str) -> None:
        row = self._experiment_row(experiment_id)
        if row.get("lifecycle_stage") != LifecycleStage.ACTIVE:
            raise MlflowException("Cannot rename a non-active experiment.", INVALID_PARAMETER_VALUE)
        _validate_experiment_name(new_name)
        if not new_name.strip():
            raise MlflowException(f"Invalid experiment name: '{new_name}'", INVALID_PARAMETER_VALUE)
        if any(r.get("name") == new_name for r in self.client.store.experiments().values()):
            raise MlflowException(f"Experiment(name={new_name}) already exists.", RESOURCE_ALREADY_EXISTS)
        self._write_experiment_change(str(experiment_id), name=new_name)

    @mlflow_errors
    def set_experiment_tag(self, experiment_id: str, tag: ExperimentTag) -> None:
        _validate_experiment_tag(tag.key, tag.value)
        row = self._experiment_row(experiment_id)
        if row.get("lifecycle_stage") != LifecycleStage.ACTIVE:
            raise MlflowException(
                f"The experiment {experiment_id} must be in the 'active' state.", INVALID_PARAMETER_VALUE
            )
        self.docs.add(EXPERIMENT_TAGS, str(experiment_id), {"key": tag.key, "value": str(tag.value)})

    @mlflow_errors
    def delete_experiment_tag(self, experiment_id: str, key: str) -> None:
        self._experiment_row(experiment_id)
        if key not in fold_tags(self.docs.read(EXPERIMENT_TAGS, str(experiment_id))):
            raise MlflowException(f"No tag with name: {key} in experiment {experiment_id}", RESOURCE_DOES_NOT_EXIST)
        self.docs.add(EXPERIMENT_TAGS, str(experiment_id), {"key": key, "value": None})

    # -- runs ----------------------------------------------------------------------------
    def _run_artifact_uri(self, experiment_id: str, run_id: str) -> str:
        return _join_uri(self.artifact_root, experiment_id, run_id)

    @mlflow_errors
    def create_run(
        self,
        experiment_id: str,
        user_id: str | None,
        start_time: int | None,
        tags: Sequence[RunTag] | None,
        run_name: str | None,
    ) -> Run:
        experiment = self._experiment_row(experiment_id)
        if experiment.get("lifecycle_stage") != LifecycleStage.ACTIVE:
            raise MlflowException(
                f"Could not create run under non-active experiment with ID {experiment_id}.", INVALID_STATE
            )
        tag_map = {t.key: t.value for t in tags or []}
        name_tag = tag_map.get(vocab.RUN_NAME_TAG)
        if run_name and name_tag and run_name != name_tag:
            raise MlflowException(
                "Both 'run_name' argument and 'mlflow.runName' tag are specified, but with different "
                f"values (run_name='{run_name}', mlflow.runName='{name_tag}').",
                INVALID_PARAMETER_VALUE,
            )
        run_name = run_name or name_tag or _generate_random_name()
        tag_map[vocab.RUN_NAME_TAG] = run_name
        user_id = user_id or tag_map.get(vocab.USER_TAG) or ""
        source = {column: tag_map[tag] for tag, column in _SOURCE_BY_TAG.items() if tag in tag_map}
        start = layout.now_ms() if start_time is None else int(start_time)
        run_id = self.client.create_run(
            str(experiment_id),
            run_name=run_name,
            start_time=start,
            user_id=user_id,
            tags=tag_map,
            parent_run_id=tag_map.get(vocab.PARENT_TAG) or None,
            source=source,
        )
        self._known_stage(run_id, LifecycleStage.ACTIVE)
        info = RunInfo(
            run_id=run_id,
            experiment_id=str(experiment_id),
            user_id=user_id,
            status=RunStatus.to_string(RunStatus.RUNNING),
            start_time=start,
            end_time=None,
            lifecycle_stage=LifecycleStage.ACTIVE,
            artifact_uri=self._run_artifact_uri(str(experiment_id), run_id),
            run_name=run_name,
        )
        data = RunData(tags=[RunTag(k, str(v)) for k, v in tag_map.items()])
        return Run(info, data, RunInputs(dataset_inputs=[], model_inputs=[]), RunOutputs(model_outputs=[]))

    def _runs(self, run_ids: list[str]) -> list[Run]:
        """Full ``Run`` entities of the given runs, in order (unknown ids are left out)."""
        return [record.to_run() for record in self.run_records(run_ids)]

    def run_records(self, run_ids: list[str]) -> list[RunRecord]:
        """The stored rows of the given runs, in order (unknown ids are left out): what ``Run``
        entities are made of, and what the server's search view turns into JSON without them."""
        if not run_ids:
            return []
        db = self.lake.connection
        with db.fresh():
            ids = _run_id_condition(run_ids)
            infos = db.rows(join([f"SELECT {_RUN_INFO_COLUMNS} FROM runs WHERE", ids]))
            params: dict[str, list[tuple[str, str]]] = {}
            tags: dict[str, list[tuple[str, str]]] = {}
            # Params and tags in one query (each query costs a few ms of planning on its own).
            pairs = join(
                [
                    "SELECT true, run_id, key, value FROM params WHERE",
                    ids,
                    "UNION ALL SELECT false, run_id, key, value FROM tags WHERE",
                    ids,
                ]
            )
            for is_param, run_id, key, value in db.rows(pairs):
                (params if is_param else tags).setdefault(run_id, []).append((key, value))
            metrics = self._latest_metrics(ids)
        return self._assembled(run_ids, infos, params, tags, metrics)

    def _latest_metrics(self, ids: Fragment) -> dict[str, list[tuple[str, float, int, int]]]:
        """Run id -> its metrics' latest points (key, value, timestamp, step)."""
        metrics: dict[str, list[tuple[str, float, int, int]]] = {}
        query = join(["SELECT run_id, key, value, timestamp, step FROM latest_metrics WHERE", ids])
        for run_id, key, value, timestamp, step in self.lake.connection.rows(query):
            metrics.setdefault(run_id, []).append((key, value, timestamp, step))
        return metrics

    def _records_of_wide_rows(self, wide: pa.Table, selection: frames.IndexSelection) -> list[RunRecord]:
        """The records of a search's page read from the search index's wide rows (attributes,
        and a column per param and tag key: a value, or null where the run lacks the key)
        plus the runs' latest metrics."""
        # A run gone since the search (another thread's refresh) is a row of nulls: left out.
        wide = wide.filter(pc.is_valid(wide.column("run_id")))
        run_ids = wide.column("run_id").to_pylist()
        if not run_ids:
            return []
        infos = list(zip(*(wide.column(c).to_pylist() for c in RUN_INFO_COLUMNS)))
        held: dict[str, dict[str, list[tuple[str, str]]]] = {"params": {}, "tags": {}}
        for prefix, key, column in selection.picked:
            if column is None:
                continue
            for run_id, value in zip(run_ids, wide.column(column).to_pylist()):
                if value is not None:
                    held[prefix].setdefault(run_id, []).append((key, value))
        metrics = self._latest_metrics(_run_id_condition(run_ids))
        return self._assembled(run_ids, infos, held["params"], held["tags"], metrics)

    def _assembled(
        self,
        run_ids: list[str],
        infos: list[tuple[Any, ...]],
        params: dict[str, list[tuple[str, str]]],
        tags: dict[str, list[tuple[str, str]]],
        metrics: dict[str, list[tuple[str, float, int, int]]],
    ) -> list[RunRecord]:
        with_io = self.docs.keys(RUN_IO) & set(run_ids)
        by_id: dict[str, RunRecord] = {}
        for info in infos:
            run_id, experiment_id = info[0], info[1]
            by_id[run_id] = RunRecord(
                info=info,
                artifact_uri=self._run_artifact_uri(experiment_id, run_id),
                params=params.get(run_id, []),
                tags=tags.get(run_id, []),
                metrics=metrics.get(run_id, []),
                io=self._run_io(run_id) if run_id in with_io else None,
            )
        return [by_id[r] for r in run_ids if r in by_id]

    def _run_io(self, run_id: str) -> tuple[RunInputs, RunOutputs]:
        datasets: dict[tuple[str, str], DatasetInput] = {}
        models: dict[str, LoggedModelInput] = {}
        outputs: dict[str, LoggedModelOutput] = {}
        for doc in self.docs.read(RUN_IO, run_id):
            for item in doc.get("datasets", []):
                ds = item["dataset"]
                key = (ds["name"], ds["digest"])
                if key not in datasets:
                    datasets[key] = DatasetInput(
                        Dataset(
                            name=ds["name"],
                            digest=ds["digest"],
                            source_type=ds["source_type"],
                            source=ds["source"],
                            schema=ds.get("schema"),
                            profile=ds.get("profile"),
                        ),
                        [InputTag(t["key"], t["value"]) for t in item.get("tags", [])],
                    )
            for model_id in doc.get("model_inputs", []):
                models.setdefault(model_id, LoggedModelInput(model_id))
            for item in doc.get("outputs", []):
                outputs.setdefault(item["model_id"], LoggedModelOutput(item["model_id"], item["step"]))
        return (
            RunInputs(dataset_inputs=list(datasets.values()), model_inputs=list(models.values())),
            RunOutputs(model_outputs=list(outputs.values())),
        )

    @mlflow_errors
    def get_run(self, run_id: str) -> Run:
        valid = isinstance(run_id, str) and layout.is_valid_id(run_id)
        runs = self._runs([run_id]) if valid else []
        if not runs and valid:
            # Once more after a refresh of its own before "not found": a refresh that met
            # writers merging faster than it listed keeps the state one refresh behind
            # (``snapshot.read_changes``), and a run is never un-created. CI saw MLflow's
            # set_terminated of a nested run just created through the server answered
            # RESOURCE_DOES_NOT_EXIST once in thousands of runs. A miss costs one refresh more
            # (``_runs`` refreshes: no caller reads inside a ``fresh`` state of its own).
            runs = self._runs([run_id])
        if not runs:
            raise MlflowException(f"Run with id={run_id} not found", RESOURCE_DOES_NOT_EXIST)
        self._known_stage(run_id, runs[0].info.lifecycle_stage)
        return runs[0]

    def _known_stage(self, run_id: str, stage: str) -> None:
        if len(self._stages) >= STAGES_KEPT and run_id not in self._stages:
            self._stages.clear()  # each is looked up once more when next logged to
        self._stages[run_id] = (stage, time.monotonic())

    def _check_active(self, run_id: str) -> None:
        """MLflow refuses changes to a deleted run; a run's stage is looked up once, and again
        after ``STAGE_TRUSTED_S`` while this store has a reader open."""
        known = self._stages.get(run_id)
        if known is not None and (time.monotonic() - known[1] < STAGE_TRUSTED_S or not self._reading()):
            stage = known[0]
        else:
            stage = self.get_run(run_id).info.lifecycle_stage
        if stage != LifecycleStage.ACTIVE:
            raise MlflowException(
                f"The run {run_id} must be in the 'active' state. Current state is {stage}.", INVALID_PARAMETER_VALUE
            )

    @mlflow_errors
    def update_run_info(self, run_id: str, run_status: Any, end_time: int | None, run_name: str | None) -> RunInfo:
        self._check_active(run_id)
        status = _status(run_status)
        if status in layout.TERMINAL_STATUSES and end_time is not None:
            self.client.set_terminated(run_id, status, end_time)
        else:
            self.client.update_run(run_id, status=status, end_time=end_time)
        if run_name:
            self.client.rename_run(run_id, run_name)
            self.client.set_tag(run_id, vocab.RUN_NAME_TAG, run_name)
        return self.get_run(run_id).info

    @mlflow_errors
    def delete_run(self, run_id: str) -> None:
        self.client.delete_run(run_id)
        self._known_stage(run_id, LifecycleStage.DELETED)

    @mlflow_errors
    def restore_run(self, run_id: str) -> None:
        self.client.restore_run(run_id)
        self._known_stage(run_id, LifecycleStage.ACTIVE)

    # -- params, metrics, tags -----------------------------------------------------------
    @mlflow_errors
    def log_batch(
        self,
        run_id: str,
        metrics: Sequence[Metric] | None,
        params: Sequence[Param] | None,
        tags: Sequence[RunTag] | None,
    ) -> None:
        self._log_batch(run_id, metrics, None, params, tags)

    @mlflow_errors
    def log_plain_batch(
        self, run_id: str, points: list[tuple[str, float, int, int]], params: list[Param], tags: list[RunTag]
    ) -> None:
        """``log_batch`` of what the server's log-batch fast path read: ``(key, value, timestamp,
        step)`` points, none naming a model. Metric entities are made only to word an error."""
        self._log_batch(run_id, None, points, params, tags)

    def _log_batch(
        self,
        run_id: str,
        metrics: Sequence[Metric] | None,
        points: list[tuple[str, Any, Any, Any]] | None,
        params: Sequence[Param] | None,
        tags: Sequence[RunTag] | None,
    ) -> None:
        """The batch's metrics as entities (``metrics``), or as tuples (``points``, then
        ``metrics`` is None); checked, in order, as MLflow's stores check a batch."""
        self._check_active(run_id)
        entities = list(metrics or []) if points is None else None
        params, tags = list(params or []), list(tags or [])
        _validate_batch_log_limits(entities if entities is not None else points, params, tags)
        # MLflow's checks of params and tags, with its messages; values over MLflow's limits are
        # truncated with a warning, as MLflow's stores do, unless MLFLOW_TRUNCATE_LONG_VALUES=false.
        # (Metrics are checked by runlake as they are buffered: cheaper for large batches; MLflow's
        # check runs only to word the error of a batch runlake refused.)
        _, params, tags = _validate_batch_log_data([], params, tags)
        param_map: dict[str, Any] = {}
        for param in params:
            if param.key in param_map and param_map[param.key] != param.value:
                raise MlflowException(
                    f"Duplicate parameter keys have been submitted with different values: {param.key}",
                    INVALID_PARAMETER_VALUE,
                )
            param_map[param.key] = param.value
        tag_map = {t.key: t.value for t in tags}
        by_model: dict[str, list[dict[str, Any]]] = {}
        if entities is not None:
            points = [(m.key, m.value, m.timestamp, m.step) for m in entities]
            for m in entities:
                if m.model_id:
                    by_model.setdefault(str(m.model_id), []).append({**m.to_dictionary(), "run_id": run_id})
        for model_id in by_model:
            self._load_model(model_id)  # a metric for a model that does not exist is refused, as in MLflow
        try:
            self.client.log_batch(run_id, metrics=points, params=param_map, tags=tag_map)
        except InvalidArgument:
            worded = entities if entities is not None else [Metric(*point) for point in points or []]
            _validate_batch_log_data(worded, [], [])  # MLflow's own words, where it refuses too
            raise
        # MLflow 3 links a metric logged with ``model_id`` to that logged model as well (its
        # ``LoggedModel.metrics``, what ``search_logged_models`` filters on): one document per
        # model and batch, beside the run's own history.
        for model_id, linked in by_model.items():
            self.docs.add(MODEL_METRICS, model_id, {"metrics": linked})
        if tag_map.get(vocab.RUN_NAME_TAG):
            self.client.rename_run(run_id, tag_map[vocab.RUN_NAME_TAG])

    def log_metric(self, run_id: str, metric: Metric) -> None:
        _validate_metric(metric.key, metric.value, metric.timestamp, metric.step)
        self.log_batch(run_id, [metric], [], [])

    def log_param(self, run_id: str, param: Param) -> None:
        self.log_batch(run_id, [], [_validate_param(param.key, param.value)], [])

    def set_tag(self, run_id: str, tag: RunTag) -> None:
        self.log_batch(run_id, [], [], [_validate_tag(tag.key, tag.value)])

    @mlflow_errors
    def delete_tag(self, run_id: str, key: str) -> None:
        self._check_active(run_id)
        if key not in self.get_run(run_id).data.tags:
            raise MlflowException(f"No tag with name: {key} in run with id {run_id}", RESOURCE_DOES_NOT_EXIST)
        self.client.delete_tag(run_id, key)

    @mlflow_errors
    def get_metric_history(
        self, run_id: str, metric_key: str, max_results: int | None = None, page_token: str | None = None
    ) -> PagedList[Metric]:
        (steps, timestamps, values), token = self.metric_history_columns(run_id, metric_key, max_results, page_token)
        points = [Metric(metric_key, v, t, s) for s, t, v in zip(steps, timestamps, values)]
        return PagedList(points, token)

    @mlflow_errors
    def metric_history_columns(
        self, run_id: str, metric_key: str, max_results: int | None = None, page_token: str | None = None
    ) -> tuple[tuple[list[int], list[int], list[float]], str | None]:
        """``get_metric_history`` as columns: one page of (steps, timestamps, values), and the
        next page's token."""
        points = metric_history_table(self.lake.connection, run_id, metric_key)
        # Arrow's lists are Python ints and floats already (no pandas frame on the way).
        columns = (
            points.column("step").to_pylist(),
            points.column("timestamp").to_pylist(),
            points.column("value").fill_null(math.nan).to_pylist(),
        )
        start = decode_token(page_token)  # a token not made here is refused, with or without max_results
        if max_results is None:
            steps, timestamps, values = columns
            return (steps[start:], timestamps[start:], values[start:]), None
        end = start + int(max_results)
        token = encode_token(end) if end < len(columns[0]) else None
        steps, timestamps, values = columns
        return (steps[start:end], timestamps[start:end], values[start:end]), token

    # -- search --------------------------------------------------------------------------
    @mlflow_errors
    def _search_runs(
        self,
        experiment_ids: Sequence[str],
        filter_string: str | None,
        run_view_type: Any,
        max_results: int | None,
        order_by: Sequence[str] | None,
        page_token: str | None,
    ) -> tuple[list[Run], str | None]:
        _check_max_results(max_results, allow_none=True)
        if names_datasets(filter_string):
            scope = self._search_scope(experiment_ids)
            if not scope:
                return [], None
            return self._search_runs_by_datasets(
                scope, filter_string or "", run_view_type, max_results, order_by, page_token
            )
        records, token = self.search_run_records(
            experiment_ids, filter_string, run_view_type, max_results, order_by, page_token
        )
        return [record.to_run() for record in records], token

    @mlflow_errors
    def search_run_records(
        self,
        experiment_ids: Sequence[str],
        filter_string: str | None,
        run_view_type: Any,
        max_results: int | None,
        order_by: Sequence[str] | None,
        page_token: str | None,
    ) -> tuple[list[RunRecord], str | None]:
        """``_search_runs`` up to the runs' stored rows: one page of records and the next token,
        for a filter that names no ``dataset.*`` (:func:`names_datasets`; those go through
        ``_search_runs``). ``max_results`` None is every match from the token on, and no token."""
        _check_max_results(max_results, allow_none=True)
        if names_datasets(filter_string):
            raise MlflowException(
                "search_run_records takes no dataset.* clauses; search_runs does", INVALID_PARAMETER_VALUE
            )
        scope = self._search_scope(experiment_ids)
        if not scope:
            return [], None
        search = Search(
            experiment_ids=scope,
            filter_string=filter_string or "",
            run_view_type=_view_type(run_view_type),
            order_by=list(order_by) if order_by else None,
        )
        start = decode_token(page_token or None)
        # One run fewer than the largest LIMIT DuckDB takes: the page asks for one more.
        page = max_results if max_results is not None else MAX_INT64 - 1
        db = self.lake.connection
        with db.fresh():
            # One more than the page tells whether another page follows; no count, no frame.
            # Over the search index the runs' attributes, params and tags are their wide rows
            # (one lookup where the runs, params and tags tables took two queries); the page
            # size, not the one extra run, decides a read in the search query itself.
            found = search_rows(
                db,
                search,
                page + 1,
                start,
                count=False,
                prefixes=("params", "tags"),
                fused=page > FUSED_SEARCH_LIMIT,
            )
            if found is None:
                run_ids, _ = search_ids(db, search, page + 1, start, count=False)
                records = self.run_records(run_ids[:page])
            else:
                wide, selection, run_ids, _ = found
                records = self._records_of_wide_rows(wide.slice(0, page), selection)
            token = encode_token(start + page) if len(run_ids) > page else None
            return records, token

    def _search_scope(self, experiment_ids: Sequence[str] | None) -> list[str]:
        """The experiments a search covers: MLflow searches those that exist and ignores the
        others, but refuses an id that is no integer (as MLflow's SQL store, whose ids all are;
        a runlake experiment created with another id of its own is known, so searched)."""
        known = self.client.store.experiments()
        scope = []
        for experiment_id in experiment_ids or []:
            if str(experiment_id) in known:
                scope.append(str(experiment_id))
            else:
                _check_unknown_experiment_id(experiment_id, known)
        return scope

    def _search_runs_by_datasets(
        self,
        scope: list[str],
        filter_string: str,
        run_view_type: Any,
        max_results: int | None,
        order_by: Sequence[str] | None,
        page_token: str | None,
    ) -> tuple[list[Run], str | None]:
        """``search_runs`` with MLflow's ``dataset.name/digest/context`` clauses (what the MLflow
        UI's dataset filter sends), which runlake's search grammar has no columns for: the
        datasets live in ``_mlflow/run_io`` documents. Only runs that logged inputs can match a
        dataset clause, so those runs are read whole and the filter, order and pages are MLflow's
        own in-memory ones (as MLflow's file store searches). Slower than a lake search for
        experiments where every run logged datasets; used only when a filter names datasets."""
        stages = LifecycleStage.view_type_to_stages(ViewType.from_string(_view_type(run_view_type).lower()))
        candidates = sorted(r for r in self.docs.keys(RUN_IO) if layout.is_valid_id(r))
        in_scope = set(scope)
        runs = [
            run
            for run in self._runs(candidates)
            if run.info.experiment_id in in_scope and run.info.lifecycle_stage in stages
        ]
        matching = SearchUtils.filter(runs, filter_string)
        ordered = SearchUtils.sort(matching, list(order_by or []))
        if max_results is None:  # every match from the token on
            return ordered[SearchUtils.parse_start_offset_from_page_token(page_token) :], None
        page, token = SearchUtils.paginate(ordered, page_token, max_results)
        return page, token

    # -- inputs, outputs and logged models -------------------------------------------------
    @mlflow_errors
    def log_inputs(
        self,
        run_id: str,
        datasets: Sequence[DatasetInput] | None = None,
        models: Sequence[LoggedModelInput] | None = None,
    ) -> None:
        self._check_active(run_id)
        if datasets:
            _validate_dataset_inputs(list(datasets))  # MLflow's checks: names, digests, tag keys, sizes
        if not datasets and not models:
            return
        self.docs.add(
            RUN_IO,
            run_id,
            {
                "datasets": [
                    {
                        "dataset": dict(d.dataset.to_dictionary()),
                        "tags": [{"key": t.key, "value": t.value} for t in d.tags or []],
                    }
                    for d in datasets or []
                ],
                "model_inputs": [m.model_id for m in models or []],
            },
        )

    @mlflow_errors
    def log_outputs(self, run_id: str, models: Sequence[LoggedModelOutput]) -> None:
        self._check_active(run_id)
        if not models:
            return
        self.docs.add(RUN_IO, run_id, {"outputs": [{"model_id": m.model_id, "step": m.step} for m in models]})
        # MLflow 3's log_model records a model as a run output only, no longer in the run's
        # ``mlflow.log-model.history`` tag (MLflow 2 did). The lake's readers find a run's models by
        # that tag (the dashboard's Model section, ``has_model`` search, runlake.ingest.load_model),
        # so an output is entered there too, MLflow 2's shape plus the ``model_id`` whose folder
        # (``<experiment artifacts>/models/<model_id>/artifacts``) holds it.
        with self._model_history_lock:
            history = json.loads(self.client.run_tags(run_id).get(vocab.MODEL_HISTORY_TAG, "[]"))
            known = {entry.get("model_id") for entry in history if isinstance(entry, dict)}
            added = False
            for output in models:
                if output.model_id in known:
                    continue
                model = self._load_model(output.model_id)
                created = datetime.datetime.fromtimestamp(model.creation_timestamp / 1000, datetime.UTC)
                history.append(
                    {
                        "run_id": run_id,
                        "artifact_path": model.name,
                        "utc_time_created": created.strftime("%Y-%m-%d %H:%M:%S.%f"),
                        "model_id": model.model_id,
                    }
                )
                known.add(output.model_id)
                added = True
            if added:
                self.client.set_tag(run_id, vocab.MODEL_HISTORY_TAG, json.dumps(history))

    @mlflow_errors
    def record_logged_model(self, run_id: str, mlflow_model: Any) -> None:
        from mlflow.models import Model

        if not isinstance(mlflow_model, Model):
            raise TypeError(f"Argument 'mlflow_model' should be mlflow.models.Model, got '{type(mlflow_model)}'")
        self._check_active(run_id)
        with self._model_history_lock:
            history = json.loads(self.client.run_tags(run_id).get(vocab.MODEL_HISTORY_TAG, "[]"))
            history.append(mlflow_model.get_tags_dict())
            self.client.set_tag(run_id, vocab.MODEL_HISTORY_TAG, json.dumps(history))

    def _save_model(self, model: LoggedModel, stage: str = LifecycleStage.ACTIVE) -> None:
        # The model's metrics are kept as their own documents (``_model_metrics``), not in its.
        body = {**model.to_dictionary(), "metrics": None}
        self.docs.add(LOGGED_MODELS, model.model_id, {"model": body, "lifecycle_stage": stage})

    def _model_metrics(self, model_id: str) -> list[Metric] | None:
        """The metrics linked to a logged model, as MLflow's stores answer them: the latest point
        (by step, timestamp, value) of each key per dataset."""
        latest: dict[tuple[Any, Any, Any], Metric] = {}
        for doc in self.docs.read(MODEL_METRICS, model_id):
            for raw in doc["metrics"]:
                metric = Metric(
                    raw["key"],
                    raw["value"],
                    raw["timestamp"],
                    raw["step"],
                    model_id=model_id,
                    dataset_name=raw.get("dataset_name"),
                    dataset_digest=raw.get("dataset_digest"),
                    run_id=raw.get("run_id"),
                )
                group = (metric.key, metric.dataset_name, metric.dataset_digest)
                known = latest.get(group)
                if known is None or (metric.step, metric.timestamp, metric.value) >= (
                    known.step,
                    known.timestamp,
                    known.value,
                ):
                    latest[group] = metric
        return list(latest.values()) or None

    def _model_from_doc(self, doc: dict[str, Any]) -> LoggedModel:
        model = cast(LoggedModel, LoggedModel.from_dictionary(doc["model"]))
        model.metrics = self._model_metrics(model.model_id)
        return model

    def _load_model(self, model_id: str, allow_deleted: bool = False) -> LoggedModel:
        docs = self.docs.read(LOGGED_MODELS, model_id) if layout.is_valid_id(str(model_id)) else []
        if not docs or (docs[-1].get("lifecycle_stage") == LifecycleStage.DELETED and not allow_deleted):
            raise MlflowException(f"Logged model with ID '{model_id}' not found.", RESOURCE_DOES_NOT_EXIST)
        return self._model_from_doc(docs[-1])

    @mlflow_errors
    def create_logged_model(
        self,
        experiment_id: str = layout.DEFAULT_EXPERIMENT_ID,
        name: str | None = None,
        source_run_id: str | None = None,
        tags: Sequence[Any] | None = None,
        params: Sequence[Any] | None = None,
        model_type: str | None = None,
    ) -> LoggedModel:
        _validate_logged_model_name(name)
        experiment = self.get_experiment(experiment_id)
        if experiment.lifecycle_stage != LifecycleStage.ACTIVE:
            raise MlflowException(
                f"The experiment {experiment_id} must be in the 'active' state. "
                f"Current state is {experiment.lifecycle_stage}.",
                INVALID_PARAMETER_VALUE,
            )
        model_id = f"m-{uuid.uuid4().hex}"
        now = layout.now_ms()
        model = LoggedModel(
            experiment_id=str(experiment_id),
            model_id=model_id,
            name=name or _generate_random_name(),
            artifact_location=_join_uri(experiment.artifact_location, "models", model_id, "artifacts"),
            creation_timestamp=now,
            last_updated_timestamp=now,
            model_type=model_type,
            source_run_id=source_run_id,
            status=LoggedModelStatus.PENDING,
            tags=list(tags or []),
            params=list(params or []),
        )
        self._save_model(model)
        return model

    @mlflow_errors
    def get_logged_model(self, model_id: str, allow_deleted: bool = False) -> LoggedModel:
        return self._load_model(model_id, allow_deleted)

    @mlflow_errors
    def finalize_logged_model(self, model_id: str, status: LoggedModelStatus) -> LoggedModel:
        model = self._load_model(model_id)
        model.status = status
        model.last_updated_timestamp = layout.now_ms()
        self._save_model(model)
        return model

    @mlflow_errors
    def set_logged_model_tags(self, model_id: str, tags: Sequence[Any]) -> None:
        model = self._load_model(model_id)
        model.tags.update({t.key: t.value for t in tags})
        model.last_updated_timestamp = layout.now_ms()
        self._save_model(model)

    @mlflow_errors
    def delete_logged_model_tag(self, model_id: str, key: str) -> None:
        model = self._load_model(model_id)
        if key not in model.tags:
            raise MlflowException(
                f"No tag with key {key!r} found for model with ID {model_id!r}.", RESOURCE_DOES_NOT_EXIST
            )
        del model.tags[key]
        self._save_model(model)

    @mlflow_errors
    def delete_logged_model(self, model_id: str) -> None:
        model = self._load_model(model_id)
        model.last_updated_timestamp = layout.now_ms()
        self._save_model(model, LifecycleStage.DELETED)

    @mlflow_errors
    def search_logged_models(
        self,
        experiment_ids: Sequence[str],
        filter_string: str | None = None,
        datasets: list[dict[str, Any]] | None = None,
        max_results: int | None = None,
        order_by: list[dict[str, Any]] | None = None,
        page_token: str | None = None,
    ) -> PagedList[LoggedModel]:
        if datasets and not all(d.get("dataset_name") for d in datasets):
            raise MlflowException("`dataset_name` in the `datasets` clause must be specified.", INVALID_PARAMETER_VALUE)
        # MLflow's SQL store's parse of the filter first: its errors (entity types, operators, OR),
        # which the in-memory filter below does not give.
        parse_logged_model_filter(filter_string)
        if page_token:
            token = SearchLoggedModelsPaginationToken.decode(page_token)
            token.validate(list(experiment_ids), filter_string, order_by)  # a token of another search is refused
            offset = token.offset
        else:
            offset = 0
        max_results = max_results or SEARCH_LOGGED_MODEL_MAX_RESULTS_DEFAULT
        scope = set(self._search_scope(experiment_ids))
        models = []
        for model_id in sorted(self.docs.keys(LOGGED_MODELS)):
            docs = self.docs.read(LOGGED_MODELS, model_id)
            if docs and docs[-1].get("lifecycle_stage") != LifecycleStage.DELETED:
                model = self._model_from_doc(docs[-1])
                if model.experiment_id in scope:
                    models.append(model)
        # A model with no metrics is answered with ``metrics=None``, as MLflow's SQL store does;
        # MLflow's in-memory filter and sort need a list.
        no_metrics = [m for m in models if m.metrics is None]
        for model in no_metrics:
            model.metrics = []
        try:
            filtered = SearchLoggedModelsUtils.filter_logged_models(models, filter_string, datasets)
            ordered = _sort_logged_models(filtered, order_by)
        finally:
            for model in no_metrics:
                model.metrics = None
        page = ordered[offset : offset + max_results]
        next_token = None
        if len(ordered) > offset + max_results:
            next_token = SearchLoggedModelsPaginationToken(
                offset=offset + max_results,
                experiment_ids=list(experiment_ids),
                filter_string=filter_string,
                order_by=order_by,
            ).encode()
        return PagedList(page, next_token)

    # -- what a lake does not hold ---------------------------------------------------------
    def link_traces_to_run(self, trace_ids: list[str], run_id: str) -> None:
        raise not_supported("Tracing (GenAI traces)")

    def search_traces(self, *args: Any, **kwargs: Any) -> tuple[list[Any], str | None]:
        # The MLflow UI asks every experiment page for traces: a lake has none to show.
        return [], None
