"""Migration from a running MLflow: experiments, runs, params, full metric histories, tags, artifacts.

Needs the optional ``mlflow`` package (``pip install 'runlake[mlflow]'``) and talks to MLflow
only through its public ``MlflowClient``, so any backend the client reaches works: a tracking
server (``http://...``), a database (``sqlite:///mlflow.db``, PostgreSQL, MySQL) or a file
store. Run ids, names, times, statuses, users, parent links and deletion state are kept; runs
already in the lake are skipped, so an interrupted migration is finished by running it again.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from runlake.core import layout, vocab
from runlake.core.errors import ExperimentNotFound, InvalidArgument
from runlake.lake import changes
from runlake.lake.export_format import RunData
from runlake.lake.maintenance.common import Progress
from runlake.lake.transfer import TransferReport, existing_runs, write_run

if TYPE_CHECKING:
    from runlake.lake.facade import Lake

_PAGE = 1000
_SOURCE_TAGS = vocab.SOURCE_TAGS


def _mlflow() -> Any:
    try:
        import mlflow  # noqa: F401
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise InvalidArgument("import-mlflow needs the mlflow package: pip install 'runlake[mlflow]'") from None
    return MlflowClient


def import_from_mlflow(
    lake: Lake,
    tracking_uri: str,
    experiment_names: Sequence[str] | None = None,
    *,
    progress: bool = False,
) -> list[TransferReport]:
    """Copy experiments and their runs from an MLflow tracking store into the lake.

    Args:
        lake: the lake to write.
        tracking_uri: any URI ``MlflowClient`` accepts (``http://host:5000``, ``sqlite:///f.db``,
            ``file:///path/mlruns``).
        experiment_names: only these experiments (every active experiment when None).
        progress: draw a progress bar on stderr (only when it is a terminal).

    Returns:
        One report per experiment: runs imported and runs skipped as already present.

    Raises:
        InvalidArgument: the mlflow package is not installed.
        ExperimentNotFound: a named experiment does not exist in MLflow.
    """
    client = _mlflow()(tracking_uri=tracking_uri)
    from mlflow.entities import ViewType

    if experiment_names:
        experiments = []
        for name in experiment_names:
            found = client.get_experiment_by_name(name)
            if found is None:
                raise ExperimentNotFound(name)
            experiments.append(found)
    else:
        experiments = _all_pages(
            lambda token: client.search_experiments(view_type=ViewType.ACTIVE_ONLY, max_results=_PAGE, page_token=token)
        )
    reports = []
    for experiment in experiments:
        started = time.perf_counter()
        report = TransferReport(path=tracking_uri, experiment=experiment.name)
        experiment_id = changes.create_experiment(lake.connection, experiment.name)
        source_id = experiment.experiment_id
        runs = _all_pages(
            lambda token, source_id=source_id: client.search_runs(
                [source_id], run_view_type=ViewType.ALL, max_results=_PAGE, page_token=token
            )
        )
        existing = existing_runs(lake, [r.info.run_id for r in runs])
        # Parents first, so a child's parent link points at a run that is already there.
        runs.sort(key=lambda r: (r.data.tags.get(vocab.PARENT_TAG) is not None, r.info.start_time or 0, r.info.run_id))
        with Progress(f"importing {experiment.name}", len(runs), quiet=not progress) as bar:
            for run in runs:
                run_id = run.info.run_id
                if existing.get(run_id) == "complete":
                    report.skipped.append(run_id)
                else:
                    data = _run_data(client, run)
                    with tempfile.TemporaryDirectory(prefix="runlake-mlflow-") as tmp:
                        data.artifacts, read = _download(client, run_id, tracking_uri, tmp)
                        write_run(lake, experiment_id, data, read, resume=run_id in existing)
                    report.runs.append(run_id)
                    report.metric_points += data.metrics.num_rows
                    report.artifact_files += len(data.artifacts)
                bar.advance()
        report.seconds = time.perf_counter() - started
        reports.append(report)
    return reports


def _all_pages(fetch: Any) -> list[Any]:
    items: list[Any] = []
    token = None
    while True:
        page = fetch(token)
        items += list(page)
        token = getattr(page, "token", None)
        if not token:
            return items


def _run_data(client: Any, run: Any) -> RunData:
    info, data = run.info, run.data
    if not layout.is_valid_id(info.run_id):
        raise InvalidArgument(f"MLflow run id {info.run_id!r} cannot be a runlake run id")
    columns: dict[str, list[Any]] = {"key": [], "value": [], "timestamp": [], "step": []}
    for key in sorted(data.metrics):
        # The run only carries the latest value; the history is a separate call per key.
        for point in client.get_metric_history(info.run_id, key):
            columns["key"].append(point.key)
            columns["value"].append(float(point.value))
            columns["timestamp"].append(int(point.timestamp))
            columns["step"].append(int(point.step or 0))
    metrics = pa.table(
        {
            "key": pa.array(columns["key"], pa.string()),
            "value": pa.array(columns["value"], pa.float64()),
            "timestamp": pa.array(columns["timestamp"], pa.int64()),
            "step": pa.array(columns["step"], pa.int64()),
        }
    )
    tags = dict(data.tags)
    return RunData(
        run_id=info.run_id,
        run_name=getattr(info, "run_name", None) or tags.get(vocab.RUN_NAME_TAG),
        status=info.status if info.status in layout.RUN_STATUSES else "FAILED",
        start_time=int(info.start_time or 0),
        end_time=int(info.end_time) if info.end_time else None,
        user_id=info.user_id or None,
        lifecycle_stage=layout.LIFECYCLE_DELETED if info.lifecycle_stage == "deleted" else layout.LIFECYCLE_ACTIVE,
        parent_run_id=tags.get(vocab.PARENT_TAG),
        source={field: tags.get(tag) for field, tag in _SOURCE_TAGS.items()},
        params=dict(data.params),
        tags=tags,
        metrics=metrics,
    )


def _download(client: Any, run_id: str, tracking_uri: str, tmp: str) -> tuple[list[str], Any]:
    """Download a run's artifacts into ``tmp``; returns their relative paths and a reader."""
    if not client.list_artifacts(run_id):
        return [], None
    import mlflow.artifacts

    local = mlflow.artifacts.download_artifacts(run_id=run_id, dst_path=tmp, tracking_uri=tracking_uri)
    paths = sorted(
        os.path.relpath(os.path.join(d, f), local).replace(os.sep, "/")
        for d, _dirs, files in os.walk(local)
        for f in files
    )

    def read(rel: str) -> bytes:
        with open(os.path.join(local, *rel.split("/")), "rb") as handle:  # a local temp copy, not the lake
            return handle.read()

    return paths, read
