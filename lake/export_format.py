"""The export format (mlflow-export-import's experiment layout): reading and validating it.

An export is untrusted input: a zip may be truncated or corrupt, a ``run.json`` may lack fields
or come from a newer runlake, and an artifact name may try to climb out of its run (``../``).
Everything here turns such input into a ``LakeFormatError`` (or ``InvalidArgument``) that says
which file and what is wrong, before the importer writes a single row.
"""

from __future__ import annotations

import json
import os
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from runlake.core import layout, vocab
from runlake.core.errors import InvalidArgument, LakeFormatError

EXPORT_FORMAT_VERSION = 1
MANIFEST = "experiment.json"
RUN_FILE = "run.json"
ARTIFACTS_DIR = "artifacts"
# Set while a run is being imported and removed at the end: a run that still carries it was
# cut off (the importer was killed), so the next import completes it instead of skipping it.
PENDING_TAG = "runlake.import.pending"
SOURCE_FIELDS = ("source_type", "source_name", "source_version", "entry_point")
# MLflow keeps these run attributes in tags; they fill the gaps of an export made by MLflow.
_SOURCE_TAGS = vocab.SOURCE_TAGS


@dataclass
class RunData:
    """One run as it moves between systems (the shape both importers write)."""

    run_id: str
    run_name: str | None
    status: str
    start_time: int
    end_time: int | None
    user_id: str | None
    lifecycle_stage: str
    parent_run_id: str | None
    source: dict[str, str | None]
    params: dict[str, str]
    tags: dict[str, str]
    metrics: pa.Table  # key, value, timestamp, step
    artifacts: list[str] = field(default_factory=list)  # relative paths


class ExportSource:
    """The files of an export, in a directory or a zip (outside the lake: plain files)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._zip: zipfile.ZipFile | None = None
        if os.path.isdir(path):
            return
        if not os.path.isfile(path):
            raise InvalidArgument(f"No export at '{path}': expected a directory or a .zip file")
        try:
            self._zip = zipfile.ZipFile(path)
            bad = self._zip.testzip()  # reads every member: a corrupt byte anywhere shows now
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
            raise LakeFormatError(
                f"'{path}' is not a readable zip export (corrupt or truncated): {exc}", path=path
            ) from None
        if bad is not None:
            raise LakeFormatError(f"'{path}' is corrupt: member '{bad}' fails its checksum", path=path, member=bad)
        self._names = set(self._zip.namelist())

    def __enter__(self) -> ExportSource:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._zip is not None:
            self._zip.close()

    def read(self, name: str) -> bytes | None:
        """A file's bytes, or None when the export has no such file."""
        if self._zip is not None:
            if name not in self._names:
                return None
            try:
                return self._zip.read(name)
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
                raise LakeFormatError(f"'{self.path}': cannot read '{name}': {exc}", path=self.path) from None
        full = os.path.join(self.path, *name.split("/"))
        if not os.path.isfile(full):
            return None
        if not _inside(full, self.path):
            # A symlink in an export directory could copy any local file into the lake.
            raise LakeFormatError(f"'{self.path}': '{name}' is a link that leads outside the export", path=self.path)
        with open(full, "rb") as handle:
            return handle.read()

    def artifacts(self, run_id: str) -> list[str]:
        """Relative paths of a run's artifact files, each checked to stay inside the run."""
        from runlake.core.artifacts import clean_artifact_path

        prefix = f"{run_id}/{ARTIFACTS_DIR}/"
        if self._zip is not None:
            names = [n[len(prefix) :] for n in self._names if n.startswith(prefix) and not n.endswith("/")]
        else:
            base = os.path.join(self.path, run_id, ARTIFACTS_DIR)
            names = []
            for d, _dirs, files in os.walk(base):
                for f in files:
                    full = os.path.join(d, f)
                    if os.path.islink(full) or not _inside(full, base):
                        raise LakeFormatError(
                            f"Run {run_id}: artifact '{f}' is a symbolic link; exports hold plain files only",
                            run_id=run_id,
                        )
                    names.append(os.path.relpath(full, base).replace(os.sep, "/"))
        checked = []
        for name in sorted(names):
            try:
                checked.append(clean_artifact_path(name))
            except ValueError as exc:
                raise LakeFormatError(f"Run {run_id}: unsafe artifact name in export: {exc}", run_id=run_id) from None
        return checked

    def reader(self, run_id: str) -> Callable[[str], bytes]:
        def read_artifact(rel: str) -> bytes:
            data = self.read(f"{run_id}/{ARTIFACTS_DIR}/{rel}")
            if data is None:
                raise LakeFormatError(f"Run {run_id}: artifact '{rel}' vanished from the export", run_id=run_id)
            return data

        return read_artifact

    def json(self, name: str) -> dict[str, Any]:
        data = self.read(name)
        if data is None:
            raise LakeFormatError(
                f"'{self.path}' has no {name}: not a complete runlake or mlflow-export-import export", file=name
            )
        try:
            document = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise LakeFormatError(f"'{self.path}': {name} is not valid JSON (truncated?): {exc}", file=name) from None
        if not isinstance(document, dict):
            raise LakeFormatError(f"'{self.path}': {name} must hold a JSON object", file=name)
        return document

    def manifest(self) -> tuple[str, list[str]]:
        """The exported experiment's name and its run ids, after checking the format version."""
        document = self.json(MANIFEST)
        _check_version(document, MANIFEST)
        mlflow = _section(document, "mlflow", MANIFEST)
        experiment = _section(mlflow, "experiment", MANIFEST)
        name = experiment.get("name")
        if not isinstance(name, str) or not name.strip():
            raise LakeFormatError(f"{MANIFEST}: mlflow.experiment.name is missing", file=MANIFEST)
        runs = mlflow.get("runs", (document.get("info") or {}).get("ok_runs"))
        if not isinstance(runs, list) or not all(isinstance(r, str) for r in runs):
            raise LakeFormatError(f"{MANIFEST}: mlflow.runs must list the exported run ids", file=MANIFEST)
        for run_id in runs:
            if not layout.is_valid_id(run_id):
                raise LakeFormatError(f"{MANIFEST}: invalid run id {run_id!r}", file=MANIFEST)
        return name, list(dict.fromkeys(runs))


def open_source(path: str) -> ExportSource:
    """Open an export directory or zip for reading.

    Raises:
        InvalidArgument: nothing at ``path``.
        LakeFormatError: a zip that is corrupt or truncated.
    """
    return ExportSource(path)


def _check_version(document: dict[str, Any], name: str) -> None:
    version = (document.get("runlake") or {}).get(
        "format_version", (document.get("system") or {}).get("runlake_format_version", 1)
    )
    if not isinstance(version, int) or isinstance(version, bool):
        raise LakeFormatError(f"{name}: format version {version!r} is not a number", file=name)
    if version > EXPORT_FORMAT_VERSION:
        raise LakeFormatError(
            f"{name} was written by a newer runlake (export format {version}); this version reads format "
            f"{EXPORT_FORMAT_VERSION} and older - upgrade runlake to import it",
            file=name,
            format_version=version,
        )


def _section(document: dict[str, Any], key: str, name: str) -> dict[str, Any]:
    value = document.get(key)
    if not isinstance(value, dict):
        raise LakeFormatError(f"{name}: the '{key}' section is missing", file=name)
    return value


def _int(value: Any, what: str, name: str, *, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise LakeFormatError(f"{name}: {what} must be an integer, got {value!r}", file=name)
    return value


def _strings(value: Any, what: str, name: str, check: Callable[[str, Any], str]) -> dict[str, str]:
    from runlake.core import validation

    if value is None:
        return {}
    if not isinstance(value, dict):
        raise LakeFormatError(f"{name}: {what} must be an object of key -> value", file=name)
    out = {}
    for key, item in value.items():
        try:
            validation.validate_key(what, key)
            out[key] = check(key, "" if item is None else item)
        except ValueError as exc:
            raise LakeFormatError(f"{name}: {exc}", file=name) from None
    return out


def parse_run(source: ExportSource, run_id: str, *, with_metrics: bool = True) -> RunData:
    """Read and validate one run's ``run.json`` and list its artifacts.

    Raises:
        LakeFormatError: the file is missing, truncated, from a newer format, or a field is
            missing or has the wrong type.
    """
    from runlake.core import validation

    name = f"{run_id}/{RUN_FILE}"
    document = source.json(name)
    _check_version(document, name)
    mlflow = _section(document, "mlflow", name)
    info = _section(mlflow, "info", name)
    if info.get("run_id", info.get("run_uuid")) != run_id:
        raise LakeFormatError(f"{name}: mlflow.info.run_id does not match the directory '{run_id}'", file=name)
    status = info.get("status")
    if status not in layout.RUN_STATUSES:
        raise LakeFormatError(
            f"{name}: mlflow.info.status must be one of {', '.join(layout.RUN_STATUSES)}, got {status!r}", file=name
        )
    start = _int(info.get("start_time"), "mlflow.info.start_time", name)
    end = _int(info.get("end_time"), "mlflow.info.end_time", name, optional=True)
    tags = _strings(mlflow.get("tags"), "tag", name, validation.tag_value)
    params = _strings(mlflow.get("params"), "param", name, validation.param_value)
    extra = document.get("runlake") or {}
    parent = extra.get("parent_run_id") or tags.get(vocab.PARENT_TAG)
    if parent is not None and not layout.is_valid_id(parent):
        raise LakeFormatError(f"{name}: invalid parent run id {parent!r}", file=name)
    run_name = info.get("run_name") or tags.get(vocab.RUN_NAME_TAG)
    if run_name is not None:
        try:
            validation.check_name("run name", run_name, validation.MAX_RUN_NAME_LENGTH)
        except ValueError as exc:
            raise LakeFormatError(f"{name}: invalid run name: {exc}", file=name) from None
    stage = info.get("lifecycle_stage") or layout.LIFECYCLE_ACTIVE
    if stage not in (layout.LIFECYCLE_ACTIVE, layout.LIFECYCLE_DELETED):
        raise LakeFormatError(f"{name}: invalid lifecycle_stage {stage!r}", file=name)
    source_fields = {f: extra.get(f) or tags.get(tag) for f, tag in _SOURCE_TAGS.items()}
    return RunData(
        run_id=run_id,
        run_name=run_name,
        status=status,
        start_time=start or 0,
        end_time=end,
        user_id=info.get("user_id") if isinstance(info.get("user_id"), str) else None,
        lifecycle_stage=stage,
        parent_run_id=parent,
        source=source_fields,
        params=params,
        tags=tags,
        metrics=_metrics(mlflow.get("metrics"), name, run_id) if with_metrics else _EMPTY_POINTS,
        artifacts=source.artifacts(run_id),
    )


_POINTS_SCHEMA = pa.schema(
    [("key", pa.string()), ("value", pa.float64()), ("timestamp", pa.int64()), ("step", pa.int64())]
)
_EMPTY_POINTS = _POINTS_SCHEMA.empty_table()


def _metrics(value: Any, name: str, run_id: str) -> pa.Table:
    """Full metric histories as a (key, value, timestamp, step) table, validated like a log_batch."""
    from runlake.core.points import metric_points_table

    if value is None:
        return _EMPTY_POINTS
    if not isinstance(value, dict):
        raise LakeFormatError(f"{name}: mlflow.metrics must map each key to a list of points", file=name)
    columns: dict[str, list[Any]] = {"key": [], "value": [], "timestamp": [], "step": []}
    for key, points in value.items():
        if not isinstance(points, list):
            raise LakeFormatError(f"{name}: metric '{key}' must be a list of points", file=name)
        for point in points:
            if not isinstance(point, dict) or not {"value", "timestamp"} <= point.keys():
                raise LakeFormatError(
                    f"{name}: metric '{key}' has a point without value or timestamp: {point!r}", file=name
                )
            columns["key"].append(key)
            columns["value"].append(point["value"])
            columns["timestamp"].append(point["timestamp"])
            columns["step"].append(point.get("step", 0))
    try:
        table = pa.table(
            {k: pa.array(v, _POINTS_SCHEMA.field(k).type) for k, v in columns.items()}, schema=_POINTS_SCHEMA
        )
        metric_points_table(run_id, table)  # the checks a log_batch makes, before anything is written
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
        raise LakeFormatError(f"{name}: invalid metric points: {exc}", file=name) from None
    return table


def _inside(path: str, base: str) -> bool:
    """Whether ``path``, with every link resolved, stays under ``base``."""
    real, root = os.path.realpath(path), os.path.realpath(base)
    return real == root or real.startswith(root + os.sep)
