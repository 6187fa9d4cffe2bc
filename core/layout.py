"""Where things live in a lake, and the Arrow schema of every table (pyarrow and stdlib only)."""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import socket
import threading
import time
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.fs as pafs

# Bumped when a table's schema changes incompatibly; recorded in <root>/_lake.json by writers.
FORMAT_VERSION = 1

EXPERIMENTS = "experiments"
RUNS = "runs"
PARAMS = "params"
TAGS = "tags"
METRICS = "metrics"
METRIC_SUMMARIES = "metric_summaries"

# Tables partitioned by experiment (hive style: <table>/experiment_id=<id>/part-*.parquet).
PARTITIONED_TABLES = (RUNS, PARAMS, TAGS, METRICS, METRIC_SUMMARIES)
ALL_TABLES = (EXPERIMENTS, *PARTITIONED_TABLES)

ARTIFACTS = "artifacts"
PARTITION_COLUMN = "experiment_id"

# Every mutable entity is stored as versioned rows; ``version`` orders them (latest wins).
SCHEMAS: dict[str, pa.Schema] = {
    EXPERIMENTS: pa.schema(
        [
            ("experiment_id", pa.string()),
            ("version", pa.int64()),
            ("name", pa.string()),
            ("artifact_location", pa.string()),
            ("lifecycle_stage", pa.string()),
            ("creation_time", pa.int64()),
            ("last_update_time", pa.int64()),
        ]
    ),
    # A run row carries only the fields it changes (others null): the current value of a field
    # is its latest non-null version, so two writers changing different fields never lose each
    # other's change (a UI rename racing the training process's status update).
    RUNS: pa.schema(
        [
            ("run_id", pa.string()),
            ("version", pa.int64()),
            ("run_name", pa.string()),
            ("status", pa.string()),
            ("start_time", pa.int64()),
            ("end_time", pa.int64()),
            ("user_id", pa.string()),
            ("source_type", pa.string()),
            ("source_name", pa.string()),
            ("source_version", pa.string()),
            ("entry_point", pa.string()),
            ("parent_run_id", pa.string()),
            ("artifact_uri", pa.string()),
            ("lifecycle_stage", pa.string()),
            ("deleted_time", pa.int64()),
        ]
    ),
    # Params are immutable: the first version of (run_id, key) wins.
    PARAMS: pa.schema(
        [
            ("run_id", pa.string()),
            ("key", pa.string()),
            ("value", pa.string()),
            ("version", pa.int64()),
        ]
    ),
    # A null value is a tombstone: the tag was deleted at that version.
    TAGS: pa.schema(
        [
            ("run_id", pa.string()),
            ("key", pa.string()),
            ("value", pa.string()),
            ("version", pa.int64()),
        ]
    ),
    # Set semantics on the whole row, as in MLflow: a point seen twice counts once.
    METRICS: pa.schema(
        [
            ("run_id", pa.string()),
            ("key", pa.string()),
            ("step", pa.int64()),
            ("timestamp", pa.int64()),
            ("value", pa.float64()),
        ]
    ),
    # One row per (run_id, key) per flush; rows fold by max (step, timestamp, value) for the
    # latest point and by NaN-ignoring min/max, so any number of rows for a key combine exactly.
    METRIC_SUMMARIES: pa.schema(
        [
            ("run_id", pa.string()),
            ("key", pa.string()),
            ("latest_step", pa.int64()),
            ("latest_timestamp", pa.int64()),
            ("latest_value", pa.float64()),
            ("min_value", pa.float64()),
            ("max_value", pa.float64()),
            ("value_count", pa.int64()),
        ]
    ),
}

# The columns of the current-state ``runs`` view, in order: the runs schema without its version,
# with the partition column second.
RUN_COLUMNS: tuple[str, ...] = (
    "run_id",
    PARTITION_COLUMN,
    *(f.name for f in SCHEMAS[RUNS] if f.name not in ("run_id", "version")),
)
# The fields a run row may carry that fold latest-non-null-wins on their own (the lifecycle
# fields fold together: a deletion time counts only while the run is deleted).
RUN_FIELDS: tuple[str, ...] = tuple(c for c in RUN_COLUMNS[2:] if c not in ("lifecycle_stage", "deleted_time"))

# Sort order of rows inside a written file, so run and key filters skip row groups.
SORT_KEYS: dict[str, list[tuple[str, str]]] = {
    EXPERIMENTS: [("experiment_id", "ascending"), ("version", "ascending")],
    RUNS: [("run_id", "ascending"), ("version", "ascending")],
    PARAMS: [("run_id", "ascending"), ("key", "ascending")],
    TAGS: [("run_id", "ascending"), ("key", "ascending"), ("version", "ascending")],
    METRICS: [("run_id", "ascending"), ("key", "ascending"), ("step", "ascending"), ("timestamp", "ascending")],
    METRIC_SUMMARIES: [("run_id", "ascending"), ("key", "ascending")],
}

# Run and experiment ids travel in paths and partition names: keep them to a safe alphabet.
ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,256}")
DEFAULT_EXPERIMENT_ID = "0"
DEFAULT_EXPERIMENT_NAME = "Default"

LIFECYCLE_ACTIVE = "active"
LIFECYCLE_DELETED = "deleted"
RUN_STATUSES = ("RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED")
TERMINAL_STATUSES = ("FINISHED", "FAILED", "KILLED")

# File ids of merged files end with these: "-m" a writer's own files merged (or a tier merge),
# "-c" a file compaction wrote (sorted, deduplicated, summarised).
MERGED_SUFFIX = "-m"
COMPACTED_SUFFIX = "-c"
# A merged file's Parquet key-value metadata under this key: a JSON list of [name, size] of the
# files whose rows it holds, exactly (names within its partition directory); for metric
# summaries, the files whose rows it folds. A reader that holds all of them, and lists none of
# them any more, takes their rows as the merged file's instead of reading it; one that holds
# some reads it and takes only the rest of its rows as new, or for summaries drops the rows
# it holds (``runlake.lake.snapshot.read_changes``). Readers that ignore it read the file.
MERGED_FROM_KEY = b"runlake.merged_from"

TMP_PREFIX = "."
TMP_SUFFIX = ".tmp"
# JSON documents of what MLflow keeps beside runs (``runlake.mlflow_store.documents``); per-run
# ones (dataset inputs, model inputs and outputs) go when retention purges the run.
MLFLOW_DOCUMENTS = "_mlflow"
RUN_IO_DOCUMENTS = "run_io"
DATA_SUFFIX = ".parquet"


def experiment_id_for(name: str) -> str:
    """The id a new experiment of this name gets.

    Derived from the name, so two processes creating the same experiment at the same moment
    agree on its id without a lock: both write the same row and latest-wins absorbs the twin.
    """
    if name == DEFAULT_EXPERIMENT_NAME:
        return DEFAULT_EXPERIMENT_ID
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()
    return str(int(digest[:15], 16) % 10**17 + 10**17)


def is_valid_id(value: str) -> bool:
    """Whether ``value`` may be used as a run or experiment id."""
    return isinstance(value, str) and bool(ID_PATTERN.fullmatch(value))


def now_ms() -> int:
    """The current wall-clock time in epoch milliseconds."""
    return time.time_ns() // 1_000_000


class _VersionClock:
    """Hands out strictly increasing int64 versions, unique across processes in practice.

    A version is the wall clock in units of 1024 ns with this process's 10 random bits in the
    low bits: versions from one process never repeat or go back, and two processes writing in
    the same microsecond still differ unless their random bits collide (1 in 1024).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._bits = secrets.randbits(10)
        self._last = 0

    def next(self) -> int:
        with self._lock:
            if os.getpid() != self._pid:  # a forked child must not reuse the parent's bits
                self._reset()
            candidate = ((time.time_ns() >> 10) << 10) | self._bits
            if candidate <= self._last:
                candidate = self._last + 1024
            self._last = candidate
            return candidate


_CLOCK = _VersionClock()


def next_version() -> int:
    """A new row version, greater than every version this process handed out before."""
    return _CLOCK.next()


class _FileIds:
    """Unique, time-sortable file names: <epoch ms>-<writer id>-<sequence>."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        host = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:12] or "host"
        self._writer = f"{host}{self._pid}{secrets.token_hex(3)}"
        self._seq = 0

    def next(self) -> str:
        with self._lock:
            if os.getpid() != self._pid:
                self._reset()
            self._seq += 1
            return f"{now_ms():013d}-{self._writer}-{self._seq:06d}"


_FILE_IDS = _FileIds()


def new_file_id() -> str:
    """A file id no other writer, process or thread will produce."""
    return _FILE_IDS.next()


@dataclass(frozen=True)
class LakePaths:
    """Paths inside one lake, all built here so no other module spells a path by hand.

    Paths are plain strings in the filesystem's own syntax (``pyarrow.fs``), so the same code
    serves a local directory now and an object store later.
    """

    root: str

    def table_dir(self, table: str) -> str:
        return f"{self.root}/{table}"

    def partition_dir(self, table: str, experiment_id: str) -> str:
        if table == EXPERIMENTS:
            return self.table_dir(table)
        return f"{self.root}/{table}/{PARTITION_COLUMN}={experiment_id}"

    def artifact_root(self) -> str:
        return f"{self.root}/{ARTIFACTS}"

    def run_artifact_dir(self, experiment_id: str, run_id: str) -> str:
        return f"{self.root}/{ARTIFACTS}/{experiment_id}/{run_id}"

    def run_documents_dir(self, run_id: str) -> str:
        """Where the MLflow plugin keeps a run's inputs and outputs (``runlake.mlflow_store``)."""
        return f"{self.root}/{MLFLOW_DOCUMENTS}/{RUN_IO_DOCUMENTS}/{run_id}"

    def maintenance_dir(self) -> str:
        """Where compaction and retention keep their lease (never read by writers or readers)."""
        return f"{self.root}/_maintenance"

    def state_dir(self) -> str:
        """Where a long-lived reader publishes its folded state for fresh readers to start from
        (``runlake.lake.state_cache``; never read by writers, a cache and never the truth)."""
        return f"{self.root}/_state"

    def meta_file(self) -> str:
        return f"{self.root}/_lake.json"


def resolve_lake(location: str | os.PathLike[str]) -> tuple[pafs.FileSystem, str]:
    """The filesystem and the normalised root path for a lake location.

    Args:
        location: a local path (relative paths are made absolute) or a URI pyarrow understands.

    Returns:
        ``(filesystem, root)`` where ``root`` is in the filesystem's own path syntax.
    """
    text = os.fspath(location)
    if "://" in text:
        fs, path = pafs.FileSystem.from_uri(text)
        return fs, path.rstrip("/")
    return pafs.LocalFileSystem(), os.path.abspath(text).replace(os.sep, "/").rstrip("/") or "/"


def artifact_uri_for(root: str, experiment_id: str, run_id: str) -> str:
    """The artifact URI recorded on a run (``file://`` for local lakes)."""
    path = LakePaths(root).run_artifact_dir(experiment_id, run_id)
    return path if "://" in path else "file://" + path
