"""Export runs to a directory or .zip and import them into another lake ("copy runs between workspaces").

The layout is mlflow-export-import's experiment export, so runs move between runlake and MLflow
installations::

    experiment.json                 manifest: system, info (run counts), mlflow (experiment, runs)
    <run_id>/run.json               system + mlflow: info, params, metrics (full histories), tags
    <run_id>/artifacts/...          the run's artifact files

runlake adds a ``runlake`` section (format version, per-run attributes MLflow keeps in tags) that
other tools ignore. An import validates the whole export before it writes anything, keeps run
ids and parent links, and skips runs that already exist, so importing twice duplicates nothing.
"""

from __future__ import annotations

import getpass
import json
import os
import platform
import time
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow.fs as pafs

from runlake.core import artifacts, layout, rows, vocab
from runlake.core.batch import Buffer
from runlake.core.errors import InvalidArgument
from runlake.core.points import metric_points_table
from runlake.lake import catalog, changes
from runlake.lake.export_format import (
    ARTIFACTS_DIR,
    EXPORT_FORMAT_VERSION,
    MANIFEST,
    PENDING_TAG,
    RUN_FILE,
    SOURCE_FIELDS,
    RunData,
    open_source,
    parse_run,
)
from runlake.lake.maintenance.common import Progress
from runlake.lake.sql import id_list, join, q

if TYPE_CHECKING:
    from runlake.lake.facade import Lake


@dataclass
class TransferReport:
    """What an export or an import did."""

    path: str
    experiment: str
    runs: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    metric_points: int = 0
    artifact_files: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_text(self) -> str:
        text = (
            f"{len(self.runs):,} runs ({self.metric_points:,} metric points, {self.artifact_files:,} artifact files) "
            f"- experiment '{self.experiment}', {self.path} ({self.seconds:.1f} s)"
        )
        if self.skipped:
            text += f"\n{len(self.skipped):,} runs already present, skipped"
        return text


def _system() -> dict[str, Any]:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        user = os.environ.get("USER", "unknown")
    return {
        "package": "runlake",
        "runlake_format_version": EXPORT_FORMAT_VERSION,
        "export_time": int(time.time()),
        "user": user,
        "platform": {"python_version": platform.python_version(), "system": platform.system()},
    }


def _find_experiment(lake: Lake, experiment: str) -> dict[str, Any]:
    with lake.connection.fresh():
        return catalog.find_experiment(lake.connection, experiment)


class _Sink:
    """Where an export goes: a new directory, or a .zip written aside and renamed when complete."""

    def __init__(self, out: str) -> None:
        self.out = out
        self.zip = out.lower().endswith(".zip")
        if self.zip:
            self._tmp = f"{out}.partial"
            self._zf: zipfile.ZipFile | None = zipfile.ZipFile(self._tmp, "w", zipfile.ZIP_DEFLATED)
        else:
            if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
                raise InvalidArgument(f"Export directory '{out}' exists and is not empty; choose a new one")
            os.makedirs(out, exist_ok=True)
            self._zf = None

    def write(self, name: str, data: bytes) -> None:
        if self._zf is not None:
            self._zf.writestr(name, data)
            return
        path = os.path.join(self.out, *name.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as out:
            out.write(data)

    def close(self, ok: bool) -> None:
        if self._zf is None:
            return
        self._zf.close()
        if ok:
            os.replace(self._tmp, self.out)
        else:
            os.unlink(self._tmp)


def _json(data: Any) -> bytes:
    # NaN and infinities stay as JSON's common extension (NaN, Infinity), as MLflow's own
    # exports write them: metric values may legitimately be NaN.
    return json.dumps(data, indent=2, allow_nan=True).encode("utf-8")


def _parents_first(infos: dict[str, dict[str, Any]]) -> list[str]:
    order: list[str] = []
    seen: set[str] = set()

    def visit(run_id: str, trail: set[str]) -> None:
        if run_id in seen or run_id in trail:
            return
        parent = infos[run_id].get("parent_run_id")
        if parent in infos:
            visit(parent, trail | {run_id})
        seen.add(run_id)
        order.append(run_id)

    for run_id in sorted(infos, key=lambda r: (infos[r].get("start_time") or 0, r)):
        visit(run_id, set())
    return order


def export_runs(
    lake: Lake, experiment: str, out: str | os.PathLike[str], filter_string: str = "", *, progress: bool = False
) -> TransferReport:
    """Write an experiment's active runs (optionally filtered) to a directory or a .zip.

    Args:
        lake: the lake to read.
        experiment: the experiment's name (or id).
        out: a new directory, or a path ending in ``.zip``.
        filter_string: MLflow search syntax selecting the runs (all when empty).
        progress: draw a progress bar on stderr (only when it is a terminal).

    Raises:
        ExperimentNotFound: no such experiment.
        InvalidArgument: an invalid filter, or ``out`` is a directory that is not empty.
    """
    started = time.perf_counter()
    exp = _find_experiment(lake, experiment)
    run_ids = lake.search_run_ids(experiment_ids=[exp["experiment_id"]], filter_string=filter_string)
    records = {run_id: lake.get_run(run_id) for run_id in run_ids}
    order = _parents_first({r: rec.info for r, rec in records.items()})
    report = TransferReport(path=os.fspath(out), experiment=exp["name"])
    sink = _Sink(os.fspath(out))
    ok = False
    try:
        with Progress("exporting runs", len(order), quiet=not progress) as bar:
            for run_id in order:
                points, files = _export_run(lake, sink, records[run_id])
                report.metric_points += points
                report.artifact_files += files
                report.runs.append(run_id)
                bar.advance()
        experiment_dict = {
            k: exp.get(k)
            for k in (
                "experiment_id",
                "name",
                "artifact_location",
                "lifecycle_stage",
                "creation_time",
                "last_update_time",
            )
        }
        manifest = {
            "system": _system(),
            "info": {
                "num_total_runs": len(order),
                "num_ok_runs": len(order),
                "num_failed_runs": 0,
                "failed_runs": [],
                "ok_runs": order,
            },
            "mlflow": {"experiment": {**experiment_dict, "tags": {}}, "runs": order},
            "runlake": {"format_version": EXPORT_FORMAT_VERSION, "filter": filter_string},
        }
        sink.write(MANIFEST, _json(manifest))  # last: an export without its manifest is unfinished
        ok = True
    finally:
        sink.close(ok)
    report.seconds = time.perf_counter() - started
    return report


def _export_run(lake: Lake, sink: _Sink, record: Any) -> tuple[int, int]:
    info = record.info
    run_id = info["run_id"]
    history = lake.metric_histories([run_id], experiment_ids=[info["experiment_id"]])
    metrics: dict[str, list[dict[str, Any]]] = {}
    for key, value, timestamp, step in zip(history["key"], history["value"], history["timestamp"], history["step"]):
        metrics.setdefault(key, []).append({"value": float(value), "timestamp": int(timestamp), "step": int(step)})
    mlflow_info = {
        "run_uuid": run_id,
        "run_id": run_id,
        "experiment_id": info["experiment_id"],
        "user_id": info.get("user_id"),
        "status": info.get("status"),
        "start_time": info.get("start_time"),
        "end_time": info.get("end_time"),
        "lifecycle_stage": info.get("lifecycle_stage"),
        "artifact_uri": info.get("artifact_uri"),
        "run_name": info.get("run_name"),
    }
    extra = {"parent_run_id": info.get("parent_run_id"), **{k: info.get(k) for k in SOURCE_FIELDS}}
    tags = dict(record.tags)
    if info.get("run_name"):
        # mlflow-export-import names imported runs from this tag; runs logged before runlake
        # wrote it have only the attribute.
        tags[vocab.RUN_NAME_TAG] = info["run_name"]
    document = {
        "system": _system(),
        "mlflow": {"info": mlflow_info, "params": record.params, "metrics": metrics, "tags": tags, "inputs": []},
        "runlake": extra,
    }
    sink.write(f"{run_id}/{RUN_FILE}", _json(document))
    run_dir = lake.paths.run_artifact_dir(info["experiment_id"], run_id)
    files = 0
    selector = pafs.FileSelector(run_dir, recursive=True, allow_not_found=True)
    for entry in sorted(lake.fs.get_file_info(selector), key=lambda i: i.path):
        if entry.type != pafs.FileType.File or entry.base_name.endswith(layout.TMP_SUFFIX):
            continue
        with lake.fs.open_input_stream(entry.path) as stream:
            sink.write(f"{run_id}/{ARTIFACTS_DIR}/{entry.path[len(run_dir) + 1 :]}", stream.read())
        files += 1
    return len(history), files


# -- import ----------------------------------------------------------------------------------
def import_runs(
    lake: Lake, path: str | os.PathLike[str], experiment: str | None = None, *, progress: bool = False
) -> TransferReport:
    """Load an export (directory or .zip) into this lake.

    Args:
        lake: the lake to write.
        path: an export made by ``export_runs`` or by mlflow-export-import's experiment export.
        experiment: the experiment to import into (created if missing); the exported
            experiment's name when None.
        progress: draw a progress bar on stderr (only when it is a terminal).

    Returns:
        The runs imported and the runs skipped because they already existed.

    Raises:
        LakeFormatError: a corrupt or truncated export, a missing field, or an export from a
            newer format version. Nothing is written then.
        InvalidArgument: the target experiment exists but is deleted, or a run is invalid.
    """
    started = time.perf_counter()
    with open_source(os.fspath(path)) as source:
        name, run_ids = source.manifest()
        target = experiment or name
        # Validate everything first: a bad run anywhere means nothing is written.
        for run_id in run_ids:
            parse_run(source, run_id)
        existing = existing_runs(lake, run_ids)
        report = TransferReport(path=os.fspath(path), experiment=target)
        experiment_id = changes.create_experiment(lake.connection, target)
        parents = {r: parse_run(source, r, with_metrics=False).parent_run_id for r in run_ids}
        order = _parents_first({r: {"parent_run_id": p} for r, p in parents.items()})
        with Progress("importing runs", len(order), quiet=not progress) as bar:
            for run_id in order:
                if existing.get(run_id) == "complete":
                    report.skipped.append(run_id)
                else:
                    run = parse_run(source, run_id)
                    write_run(lake, experiment_id, run, source.reader(run_id), resume=run_id in existing)
                    report.runs.append(run_id)
                    report.metric_points += run.metrics.num_rows
                    report.artifact_files += len(run.artifacts)
                bar.advance()
    report.seconds = time.perf_counter() - started
    return report


def existing_runs(lake: Lake, run_ids: list[str]) -> dict[str, str]:
    """Runs already in the lake: "pending" when an earlier import was cut off, else "complete"."""
    rows = lake.connection.rows(
        join(
            [
                q(
                    "SELECT r.run_id, t.value IS NOT NULL FROM runs r LEFT JOIN tags t ON t.run_id = r.run_id AND t.key = ? WHERE",
                    PENDING_TAG,
                ),
                id_list("r.run_id", list(run_ids)),
            ]
        )
    )
    return {run_id: "pending" if pending else "complete" for run_id, pending in rows}


def write_run(
    lake: Lake, experiment_id: str, run: RunData, read_artifact: Callable[[str], bytes], *, resume: bool = False
) -> None:
    """Write one run, keeping its id, attributes and full histories.

    Rows come from ``core.rows``, as a training job's would. The run carries ``PENDING_TAG``
    until its last row is written - the tag is written before the run itself - so a cut-off
    import is finished by the next one instead of being skipped as already present.
    """
    db = lake.connection
    run_id = run.run_id
    tags = {k: v for k, v in run.tags.items() if k != PENDING_TAG}
    params = rows.checked_params(run.params)
    points = metric_points_table(run_id, run.metrics)
    batch = Buffer()
    batch.add_rows(layout.TAGS, experiment_id, [rows.tag_row(run_id, PENDING_TAG, "1")])
    batch.flush(db.fs, db.root)
    stored: dict[str, str] = {}
    if resume:
        stored = dict(db.rows(q("SELECT key, value FROM params WHERE run_id = ?", run_id)))
    else:
        artifact_uri = layout.artifact_uri_for(db.root, experiment_id, run_id)
        run_row = rows.new_run_row(
            run_id,
            artifact_uri=artifact_uri,
            run_name=run.run_name or run_id,
            start_time=run.start_time,
            user_id=run.user_id or rows.current_user(),
            parent_run_id=run.parent_run_id,
            source=run.source,
        )
        batch.add_rows(layout.RUNS, experiment_id, [run_row])
        tags[vocab.RUN_NAME_TAG] = run_row["run_name"]  # the name the run got is the tag's value
        if run.parent_run_id:
            tags.setdefault(vocab.PARENT_TAG, run.parent_run_id)
    batch.add_rows(layout.TAGS, experiment_id, rows.tag_rows(run_id, tags))
    for key, text in params.items():
        if key in stored and stored[key] != text:
            raise rows.param_conflict(run_id, key, stored[key], text)
    batch.add_rows(
        layout.PARAMS, experiment_id, [rows.param_row(run_id, k, v) for k, v in params.items() if k not in stored]
    )
    if points is not None:
        batch.add_metric_table(experiment_id, points)
    run_dir = lake.paths.run_artifact_dir(experiment_id, run_id)
    for rel in run.artifacts:
        artifacts.write_bytes(db.fs, run_dir, rel, read_artifact(rel))
    batch.flush(db.fs, db.root)
    update = None
    if run.status != "RUNNING" or run.end_time is not None:
        update = rows.run_update_row(run_id, status=run.status, end_time=run.end_time)
    if update is not None:
        batch.add_rows(layout.RUNS, experiment_id, [update])
    if run.lifecycle_stage == layout.LIFECYCLE_DELETED:
        batch.add_rows(layout.RUNS, experiment_id, [rows.lifecycle_row(run_id, deleted=True)])
    batch.flush(db.fs, db.root)
    # Last, in a file of its own: the run is complete once its pending tag is gone.
    batch.add_rows(layout.TAGS, experiment_id, [rows.tag_delete_row(run_id, PENDING_TAG)])
    batch.flush(db.fs, db.root)


__all__ = ["EXPORT_FORMAT_VERSION", "RunData", "TransferReport", "export_runs", "import_runs", "write_run"]
