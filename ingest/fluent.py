"""The MLflow-shaped fluent API: one active run per thread, started with ``start_run``."""

from __future__ import annotations

import atexit
import json
import os
import sys
import threading
import types
from collections.abc import Mapping
from typing import Any

from runlake.core import layout, rows, vocab
from runlake.core.errors import ExperimentNotFound, InvalidArgument
from runlake.ingest.client import LakeClient
from runlake.ingest.run import Run
from runlake.ingest.store import get_store

DEFAULT_LAKE = vocab.DEFAULT_LAKE

MLFLOW_RUN_ID_ENV = vocab.MLFLOW_RUN_ID_ENV
MLFLOW_EXPERIMENT_NAME_ENV = vocab.MLFLOW_EXPERIMENT_NAME_ENV
MLFLOW_EXPERIMENT_ID_ENV = vocab.MLFLOW_EXPERIMENT_ID_ENV

_lake: str | None = None
_experiment_name: str | None = None
_experiment_id: str | None = None
_local = threading.local()
_unended: dict[str, Run] = {}  # every run started here and not yet ended, for the exit handler
_unended_lock = threading.Lock()
_uncaught: type[BaseException] | None = None


def _stack() -> list[Run]:
    stack = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    return stack


def set_lake(path: str | os.PathLike[str]) -> None:
    """Use this lake for the runs started from now on (else ``$RUNLAKE_LAKE``, else ./runlake-data)."""
    global _lake
    _lake = os.fspath(path)


def get_lake() -> str:
    """The lake location new runs go to."""
    return _lake or os.environ.get(vocab.LAKE_ENV) or DEFAULT_LAKE


def _client() -> LakeClient:
    return LakeClient(get_lake())


def set_experiment(experiment_name: str | None = None, experiment_id: str | None = None) -> str:
    """Make an experiment the one new runs go to; returns its id.

    Args:
        experiment_name: the experiment's name; it is created on first use.
        experiment_id: an existing experiment's id instead of a name (as in MLflow).

    Raises:
        InvalidArgument: neither or both are given, or the experiment is deleted.
        ExperimentNotFound: no experiment has ``experiment_id``.
    """
    global _experiment_name, _experiment_id
    if (experiment_name is None) == (experiment_id is None):
        raise InvalidArgument("set_experiment needs exactly one of experiment_name and experiment_id")
    client = _client()
    if experiment_id is not None:
        found = _existing_experiment(client, str(experiment_id))
        _experiment_name, _experiment_id = None, found
        return found
    created = client.create_experiment(str(experiment_name))
    _experiment_name, _experiment_id = str(experiment_name), None
    return created


def _existing_experiment(client: LakeClient, experiment_id: str, what: str = "Experiment") -> str:
    """The id of an active experiment (as MLflow, runs cannot go to a deleted one)."""
    experiment = client.get_experiment(experiment_id)  # ExperimentNotFound when unknown
    if experiment.lifecycle_stage == layout.LIFECYCLE_DELETED:
        raise InvalidArgument(f"{what} '{experiment_id}' is deleted; restore it or use another experiment")
    return experiment.experiment_id


def _experiment_from_env(client: LakeClient) -> str | None:
    """The experiment the environment names: runlake's variable, then MLflow's two, as MLflow reads them."""
    name = os.environ.get(vocab.EXPERIMENT_NAME_ENV) or os.environ.get(MLFLOW_EXPERIMENT_NAME_ENV)
    wanted_id = os.environ.get(MLFLOW_EXPERIMENT_ID_ENV)
    if name:
        experiment_id = client.create_experiment(name)
        if wanted_id and wanted_id != experiment_id:
            raise InvalidArgument(
                f"The provided {MLFLOW_EXPERIMENT_ID_ENV} environment variable value `{wanted_id}` does not "
                f"match the experiment id `{experiment_id}` for experiment name `{name}`"
            )
        return experiment_id
    if wanted_id:
        try:
            return _existing_experiment(client, wanted_id, f"The {MLFLOW_EXPERIMENT_ID_ENV} experiment")
        except ExperimentNotFound as exc:
            raise InvalidArgument(
                f"The provided {MLFLOW_EXPERIMENT_ID_ENV} environment variable value `{wanted_id}` does not "
                "exist in this lake. Provide a valid experiment_id."
            ) from exc
    return None


def _resolve_experiment(client: LakeClient, experiment: str | None, experiment_id: str | None) -> str:
    """The experiment of a new run, first found of: ``experiment_id``, ``experiment``,
    ``set_experiment``, the environment, "Default"."""
    if experiment_id is not None:
        if experiment is not None:
            raise InvalidArgument("start_run got both experiment and experiment_id: give one")
        return _existing_experiment(client, str(experiment_id))
    if experiment is not None:
        if str(experiment) in client.store.experiments():
            return str(experiment)
        return client.create_experiment(str(experiment))
    if _experiment_id is not None:
        return _existing_experiment(client, _experiment_id)
    if _experiment_name is not None:
        return client.create_experiment(_experiment_name)
    return _experiment_from_env(client) or client.create_experiment(layout.DEFAULT_EXPERIMENT_NAME)


def active_run() -> Run | None:
    """The innermost active run of this thread, or None."""
    stack = _stack()
    return stack[-1] if stack else None


def start_run(
    run_name: str | None = None,
    experiment: str | None = None,
    tags: Mapping[str, Any] | None = None,
    description: str | None = None,
    nested: bool = False,
    parent_run_id: str | None = None,
    *,
    run_id: str | None = None,
    experiment_id: str | None = None,
) -> Run:
    """Start a run, or resume one, and make it the active run of this thread.

    A new run records the source, git version, user, a snapshot of the launching script and
    the environment needed to reproduce it.

    Which run, as in MLflow: ``run_id`` (else ``$MLFLOW_RUN_ID``, which is then removed from
    the environment so nested runs do not resume it too) resumes that run: its status goes
    back to RUNNING, what is logged next is added to it, ``run_name`` renames it and ``tags``
    are set on it. Otherwise a new run starts in the first experiment found of:
    ``experiment_id``, ``experiment``, ``set_experiment``, ``$RUNLAKE_EXPERIMENT_NAME``,
    ``$MLFLOW_EXPERIMENT_NAME``, ``$MLFLOW_EXPERIMENT_ID``, "Default".

    Args:
        run_name: display name (a readable one is generated when None).
        experiment: experiment name or id (created when it is a new name).
        tags: initial tags.
        description: markdown notes (the ``mlflow.note.content`` tag).
        nested: start a child of the active run.
        parent_run_id: an explicit parent run.
        run_id: resume this existing run instead of starting a new one.
        experiment_id: the id of an existing experiment for the new run.

    Returns:
        The run; use it as a context manager.

    Raises:
        InvalidArgument: a run is already active and neither ``nested`` nor ``parent_run_id``
            is given; the run to resume is deleted, already active here, or in another
            experiment than the one asked for; both experiment arguments are given.
        RunNotFound: ``run_id`` names no run.
        ExperimentNotFound: ``experiment_id`` names no experiment.
    """
    from runlake.ingest.context import capture_run_context, environment_json, requirements_txt, tags_for

    if parent_run_id is not None:
        rows.check_run_id(parent_run_id, "parent run id")
    current = active_run()
    if current is not None and not nested and parent_run_id is None:
        raise InvalidArgument(
            f"Run with UUID {current.run_id} is already active. To start a nested run, call "
            "start_run with nested=True; to start another top-level run, end the active one first"
        )
    client = _client()
    if run_id is None and os.environ.get(MLFLOW_RUN_ID_ENV):
        run_id = os.environ.pop(MLFLOW_RUN_ID_ENV)
    if run_id is not None:
        return _resume(client, str(run_id), run_name, experiment, experiment_id, tags, description)
    if nested and parent_run_id is None and current is not None:
        parent_run_id = current.run_id
    _install_process_hooks()  # after the store's own (atexit runs last-in, first-out)
    experiment_id = _resolve_experiment(client, experiment, experiment_id)
    ctx = capture_run_context()
    all_tags = {**tags_for(ctx), **(tags or {})}
    if description is not None:
        all_tags[vocab.NOTE_TAG] = description
    run_name = rows.run_name_from(run_name, all_tags)
    if run_name is None:
        from runlake.ingest.names import generate_run_name

        run_name = generate_run_name()
    new_id = client.create_run(
        experiment_id,
        run_name=run_name,
        tags=all_tags,
        parent_run_id=parent_run_id,
        source={
            "source_type": ctx.source_type,
            "source_name": ctx.source_name,
            "source_version": ctx.source_version,
            "entry_point": ctx.entry_point,
        },
        user_id=ctx.user,
    )
    run = Run(client, new_id, experiment_id, run_name)
    _record_environment(run, ctx, environment_json, requirements_txt)
    return _activate(run)


def _resume(
    client: LakeClient,
    run_id: str,
    run_name: str | None,
    experiment: str | None,
    experiment_id: str | None,
    tags: Mapping[str, Any] | None,
    description: str | None,
) -> Run:
    info = client.run_info(rows.check_run_id(run_id))  # RunNotFound when there is no such run
    if info.get("lifecycle_stage") == layout.LIFECYCLE_DELETED:
        raise InvalidArgument(f"Cannot start run with ID {run_id} because it is in the deleted state.")
    # run_id wins: the run stays in its experiment, and an experiment asked for alongside it -
    # by argument or by set_experiment - must be that one (MLflow raises for set_experiment's).
    own = info["experiment_id"]
    asked = [
        (experiment_id, "experiment_id"),
        (experiment, "experiment"),
        (_experiment_id, "set_experiment"),
        (_experiment_name, "set_experiment"),
    ]
    for wanted, source in asked:
        if wanted is not None and not _is_experiment(client, str(wanted), own):
            raise InvalidArgument(
                f"Cannot start run with ID {run_id} because it belongs to experiment {own}, "
                f"not to '{wanted}' ({source})"
            )
    with _unended_lock:
        if run_id in _unended:
            raise InvalidArgument(f"Run {run_id} is already active in this process; end it before resuming it")
    all_tags = dict(tags or {})
    if description is not None:
        all_tags[vocab.NOTE_TAG] = description
    new_name = rows.run_name_from(run_name, all_tags)  # checked before anything is written
    rows.tag_rows(run_id, all_tags)
    _install_process_hooks()
    client.update_run(run_id, status="RUNNING", run_name=new_name)
    if all_tags:
        client.set_tags(run_id, all_tags)
    stored = client.run_tags(run_id)
    run = Run(client, run_id, own, new_name or info.get("run_name"))
    run.resume_model_history(stored.get(vocab.MODEL_HISTORY_TAG))
    return _activate(run)


def _is_experiment(client: LakeClient, wanted: str, experiment_id: str) -> bool:
    """Whether ``wanted`` (an experiment id or name) is the experiment ``experiment_id``."""
    if wanted == experiment_id:
        return True
    named = client.get_experiment_by_name(wanted)
    return named is not None and named.experiment_id == experiment_id


def _activate(run: Run) -> Run:
    run._on_end.append(_forget)
    with _unended_lock:
        _unended[run.run_id] = run
    _stack().append(run)
    return run


def _record_environment(run: Run, ctx: Any, environment_json: Any, requirements_txt: Any) -> None:
    import json

    run.log_text(json.dumps(environment_json(ctx), indent=2, sort_keys=True), vocab.ENVIRONMENT_FILE)
    run.log_text(requirements_txt(ctx), vocab.REQUIREMENTS_FILE)
    if ctx.script_bytes is not None and ctx.script_name:
        run.log_bytes(ctx.script_bytes, f"{vocab.SOURCE_DIR}{ctx.script_name}")
    if ctx.git_diff:
        run.log_text(ctx.git_diff, vocab.GIT_DIFF_FILE)


def _forget(run: Run) -> None:
    with _unended_lock:
        _unended.pop(run.run_id, None)
    stack = _stack()
    if run in stack:
        stack.remove(run)


def end_run(status: str = "FINISHED") -> None:
    """End the active run of this thread (no-op when there is none)."""
    run = active_run()
    if run is not None:
        run.end(status)


def _active_or_fail() -> Run:
    run = active_run()
    if run is None:
        # As MLflow, logging without a run starts one.
        run = start_run()
    return run


def log_param(key: str, value: Any) -> Any:
    return _active_or_fail().log_param(key, value)


def log_params(params: Mapping[str, Any]) -> None:
    _active_or_fail().log_params(params)


def log_metric(key: str, value: Any, step: int | None = None, timestamp: int | None = None) -> None:
    _active_or_fail().log_metric(key, value, step=step, timestamp=timestamp)


def log_metrics(metrics: Mapping[str, Any], step: int | None = None, timestamp: int | None = None) -> None:
    _active_or_fail().log_metrics(metrics, step=step, timestamp=timestamp)


def set_tag(key: str, value: Any) -> None:
    _active_or_fail().set_tag(key, value)


def set_tags(tags: Mapping[str, Any]) -> None:
    _active_or_fail().set_tags(tags)


def delete_tag(key: str) -> None:
    _active_or_fail().delete_tag(key)


def log_artifact(local_path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
    _active_or_fail().log_artifact(local_path, artifact_path)


def log_artifacts(local_dir: str | os.PathLike[str], artifact_path: str | None = None) -> None:
    _active_or_fail().log_artifacts(local_dir, artifact_path)


def log_text(text: str, artifact_file: str) -> None:
    _active_or_fail().log_text(text, artifact_file)


def log_dict(dictionary: Mapping[str, Any], artifact_file: str) -> None:
    _active_or_fail().log_dict(dictionary, artifact_file)


def log_figure(figure: Any, artifact_file: str) -> None:
    _active_or_fail().log_figure(figure, artifact_file)


def log_model(model: Any, name: str = "model", *, artifact_path: str | None = None) -> str:
    """Log a model in MLflow's format (see ``Run.log_model``); returns ``runs:/<run_id>/<name>``."""
    return _active_or_fail().log_model(model, name, artifact_path=artifact_path)


def flush() -> None:
    """Write everything buffered in this process now."""
    get_store(get_lake()).flush()


def load_model(model_uri: str, lake: str | os.PathLike[str] | None = None) -> Any:
    """Load a model logged with ``log_model``, or one MLflow saved (see ``models.load_model``).

    Args:
        model_uri: ``runs:/<run_id>/<name>`` or a local model directory.
        lake: the lake holding the run (default: the current lake).
    """
    from runlake.ingest.models import load_model as load_dir

    if not model_uri.startswith("runs:/"):
        return load_dir(model_uri)
    rest = model_uri[len("runs:/") :]
    run_id, _, name = rest.partition("/")
    client = LakeClient(lake or get_lake())
    run_dir = client.artifact_dir(run_id)
    from runlake.core.artifacts import clean_artifact_path

    name = clean_artifact_path(name or "model")
    path = f"{run_dir}/{name}"
    if "://" in client.root:
        raise InvalidArgument("load_model reads models from local lakes only")
    if not os.path.exists(f"{path}/MLmodel"):
        # An MLflow 3 logged model lives in its experiment's models/<model_id>/artifacts folder;
        # the run's model history entry of that name gives its id (see the MLflow plugin).
        for entry in _model_history(client.run_tags(run_id)):
            model_id = entry.get("model_id")
            if entry.get("artifact_path") == name and isinstance(model_id, str) and layout.is_valid_id(model_id):
                return load_dir(f"{os.path.dirname(run_dir)}/models/{model_id}/artifacts")
    return load_dir(path)


def _model_history(tags: dict[str, str]) -> list[dict[str, Any]]:
    try:
        history = json.loads(tags.get(vocab.MODEL_HISTORY_TAG, "[]"))
    except ValueError:
        return []
    return [entry for entry in history if isinstance(entry, dict)] if isinstance(history, list) else []


# -- process exit: end what the program left running ------------------------------------
def _excepthook(exc_type: type[BaseException], exc: BaseException, tb: types.TracebackType | None) -> None:
    global _uncaught
    _uncaught = exc_type
    _previous_excepthook(exc_type, exc, tb)


def _end_unended_at_exit() -> None:
    status = "FINISHED"
    if _uncaught is not None:
        status = "KILLED" if issubclass(_uncaught, KeyboardInterrupt) else "FAILED"
    with _unended_lock:
        runs = list(_unended.values())
    for run in reversed(runs):  # children before parents
        try:
            run.end(status)
        except Exception as exc:
            print(f"runlake: could not end run {run.run_id}: {exc}", file=sys.stderr)


def _after_fork_in_child() -> None:
    # Runs of the parent belong to the parent: a forked child must not end them at its exit.
    global _unended_lock
    _unended_lock = threading.Lock()
    _unended.clear()
    _local.__dict__.clear()


class _ForkHook:
    """multiprocessing children leave through ``os._exit``, which skips ``atexit``.

    Their own exit path runs multiprocessing finalizers instead, but it clears the finalizer
    registry when the child starts: so the finalizers are installed from multiprocessing's
    after-fork hooks, which run after that clearing.
    """

    registered = False

    @classmethod
    def before_fork(cls) -> None:
        if not cls.registered and "multiprocessing" in sys.modules:
            from multiprocessing import util

            util.register_after_fork(_FORK_HOOK, _ForkHook.install)
            cls.registered = True

    @staticmethod
    def install(_hook: object) -> None:
        from multiprocessing import util

        from runlake.ingest import store

        util.Finalize(None, _end_unended_at_exit, exitpriority=20)  # end runs first,
        util.Finalize(None, store.close_all, exitpriority=10)  # then flush every store,
        util.Finalize(None, store.exit_if_data_lost, exitpriority=5)  # then say what was lost


_FORK_HOOK = _ForkHook()


_previous_excepthook = sys.excepthook
_hooks_installed = False
_hooks_lock = threading.Lock()


def _install_process_hooks() -> None:
    """Hook the process's exit, uncaught exceptions and forks, once, when the first run starts.

    Importing ``runlake.ingest`` changes nothing about the process; a program that never
    starts a run keeps its own ``sys.excepthook`` and exit path.
    """
    global _hooks_installed, _previous_excepthook
    with _hooks_lock:
        if _hooks_installed:
            return
        _hooks_installed = True
        _previous_excepthook = sys.excepthook
        sys.excepthook = _excepthook
        atexit.register(_end_unended_at_exit)  # registered after the store's, so it runs before it
        os.register_at_fork(before=_ForkHook.before_fork, after_in_child=_after_fork_in_child)
