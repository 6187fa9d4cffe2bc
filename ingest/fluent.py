"""The MLflow-shaped fluent API: one active run per thread, started with ``start_run``."""

from __future__ import annotations

import atexit
import os
import sys
import threading
import types
from collections.abc import Mapping
from typing import Any

from runlake.core import layout, rows, vocab
from runlake.core.errors import InvalidArgument
from runlake.ingest.client import LakeClient
from runlake.ingest.run import Run
from runlake.ingest.store import get_store

DEFAULT_LAKE = vocab.DEFAULT_LAKE

_lake: str | None = None
_experiment_name: str | None = None
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


def set_experiment(name: str) -> str:
    """Make ``name`` the experiment of new runs, creating it on first use; returns its id."""
    global _experiment_name
    experiment_id = _client().create_experiment(name)
    _experiment_name = name
    return experiment_id


def _resolve_experiment(client: LakeClient, experiment: str | None) -> str:
    if experiment is None:
        name = _experiment_name or os.environ.get("RUNLAKE_EXPERIMENT_NAME") or layout.DEFAULT_EXPERIMENT_NAME
        return client.create_experiment(name)
    if str(experiment) in client.store.experiments():
        return str(experiment)
    return client.create_experiment(str(experiment))


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
) -> Run:
    """Start a run and make it the active run of this thread.

    Records the source, git version, user, a snapshot of the launching script and the
    environment needed to reproduce it.

    Args:
        run_name: display name (a readable one is generated when None).
        experiment: experiment name or id (else the one from ``set_experiment``, else "Default").
        tags: initial tags.
        description: markdown notes (the ``mlflow.note.content`` tag).
        nested: start a child of the active run.
        parent_run_id: an explicit parent run.

    Returns:
        The run; use it as a context manager.

    Raises:
        ValueError: a run is already active and neither ``nested`` nor ``parent_run_id`` is given.
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
    if nested and parent_run_id is None and current is not None:
        parent_run_id = current.run_id
    client = _client()
    _install_process_hooks()  # after the store's own (atexit runs last-in, first-out)
    experiment_id = _resolve_experiment(client, experiment)
    ctx = capture_run_context()
    all_tags = {**tags_for(ctx), **(tags or {})}
    if description is not None:
        all_tags[vocab.NOTE_TAG] = description
    run_id = client.create_run(
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
    run = Run(client, run_id, experiment_id, run_name)
    _record_environment(run, ctx, environment_json, requirements_txt)
    run._on_end.append(_forget)
    with _unended_lock:
        _unended[run_id] = run
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


def log_model(model: Any, name: str = "model") -> str:
    return _active_or_fail().log_model(model, name)


def flush() -> None:
    """Write everything buffered in this process now."""
    get_store(get_lake()).flush()


def load_model(model_uri: str, lake: str | os.PathLike[str] | None = None) -> Any:
    """Load a model logged with ``log_model``.

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

    path = f"{run_dir}/{clean_artifact_path(name or 'model')}"
    if "://" in client.root:
        raise InvalidArgument("load_model reads models from local lakes only")
    return load_dir(path)


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
