"""What compaction and retention share: file listings with ages, the maintenance lease, progress.

The lake needs no lock for correctness between writers and readers (see DESIGN.md, rule 3), but
two maintenance jobs must not rewrite the same partition at once: compaction merging a file that
retention is purging would write the purged rows back. A lease file serialises maintenance jobs
only; training jobs and readers never look at it.
"""

from __future__ import annotations

import json
import os
import random
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TextIO

import pyarrow.fs as pafs

from runlake.core import layout, writer
from runlake.core.errors import RunlakeError

# Compaction outputs carry this suffix in their file id, so a later pass can tell files that
# already went through compaction (sorted, deduplicated, summarised) from raw ingest output.
COMPACTED_SUFFIX = "-c"
# Leases live beside the tables, outside every table directory, so no reader ever lists them.
LEASE_PREFIX = "lease-"
# A lease whose owner cannot be checked (another host) counts as abandoned after this long.
LEASE_TTL_S = 6 * 3600


class MaintenanceBusy(RunlakeError):
    """Another compaction or retention job holds the lake's maintenance lease."""


@dataclass(frozen=True)
class PartFile:
    """One finished part file of a table."""

    path: str
    size: int
    mtime: float  # epoch seconds
    experiment_id: str | None

    @property
    def compacted(self) -> bool:
        return self.path.endswith(COMPACTED_SUFFIX + layout.DATA_SUFFIX)


def list_files(fs: pafs.FileSystem, root: str, table: str) -> dict[str | None, list[PartFile]]:
    """A table's part files grouped by partition (``None`` for the experiments table), by name."""
    groups: dict[str | None, list[PartFile]] = {}
    for info in writer.list_parts(fs, root, table):
        mtime = info.mtime.timestamp() if info.mtime is not None else 0.0
        part = PartFile(info.path, info.size or 0, mtime, writer.partition_of(info.path))
        groups.setdefault(part.experiment_id, []).append(part)
    return groups


def list_tmp_files(fs: pafs.FileSystem, root: str) -> list[pafs.FileInfo]:
    """Temporary files writers leave behind when they die mid-write (``.<name>.tmp``)."""
    found: list[pafs.FileInfo] = []
    paths = layout.LakePaths(root)
    for directory in (*[paths.table_dir(t) for t in layout.ALL_TABLES], paths.maintenance_dir()):
        selector = pafs.FileSelector(directory, recursive=True, allow_not_found=True)
        found += [
            info
            for info in fs.get_file_info(selector)
            if info.type == pafs.FileType.File
            and info.base_name.startswith(layout.TMP_PREFIX)
            and info.base_name.endswith(layout.TMP_SUFFIX)
        ]
    return found


def delete_quietly(fs: pafs.FileSystem, path: str) -> bool:
    """Delete a file; False when it was already gone (another job or a retry removed it)."""
    try:
        fs.delete_file(path)
        return True
    except FileNotFoundError:
        return False


def compacted_file_id() -> str:
    return layout.new_file_id() + COMPACTED_SUFFIX


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover - the loop always returns


# -- the maintenance lease -------------------------------------------------------------------
def _lease_alive(fs: pafs.FileSystem, info: pafs.FileInfo, now: float) -> bool:
    try:
        with fs.open_input_stream(info.path) as stream:
            owner = json.loads(stream.read().decode("utf-8"))
    except (FileNotFoundError, ValueError, UnicodeDecodeError):
        return False  # released meanwhile, or a torn write that never was a lease
    if owner.get("host") == socket.gethostname():
        try:
            os.kill(int(owner.get("pid", -1)), 0)
        except ProcessLookupError:
            return False  # its owner died (SIGKILL, OOM): the lease is abandoned
        except (PermissionError, ValueError, OverflowError):
            pass  # alive under another user, or unreadable: fall back to the age
        else:
            return True
    mtime = info.mtime.timestamp() if info.mtime is not None else 0.0
    return now - mtime < LEASE_TTL_S


def _try_acquire(fs: pafs.FileSystem, root: str, job: str) -> str | None:
    directory = layout.LakePaths(root).maintenance_dir()
    fs.create_dir(directory, recursive=True)
    name = f"{LEASE_PREFIX}{layout.new_file_id()}"
    path = f"{directory}/{name}.json"
    tmp = f"{directory}/{layout.TMP_PREFIX}{name}{layout.TMP_SUFFIX}"
    owner = {"host": socket.gethostname(), "pid": os.getpid(), "job": job, "since": layout.now_ms()}
    with fs.open_output_stream(tmp) as out:
        out.write(json.dumps(owner).encode("utf-8"))
    fs.move(tmp, path)
    # Write first, list second: of two jobs racing here, the one that lists later sees both
    # leases and backs off, so at most one proceeds (both backing off is safe; they retry).
    now = time.time()
    for info in fs.get_file_info(pafs.FileSelector(directory)):
        if info.path == path or not info.base_name.startswith(LEASE_PREFIX):
            continue
        if _lease_alive(fs, info, now):
            delete_quietly(fs, path)
            return None
        delete_quietly(fs, info.path)
    return path


@contextmanager
def maintenance_lease(fs: pafs.FileSystem, root: str, job: str, wait_s: float = 60.0) -> Iterator[None]:
    """Hold the lake's maintenance lease for the duration of the block.

    Args:
        fs: the lake's filesystem.
        root: the lake root.
        job: a name for people reading the lease file ("compact", "retention").
        wait_s: how long to keep trying while another job holds it.

    Raises:
        MaintenanceBusy: another maintenance job still holds the lease after ``wait_s``.
    """
    deadline = time.monotonic() + wait_s
    while True:
        path = _try_acquire(fs, root, job)
        if path is not None:
            break
        if time.monotonic() >= deadline:
            raise MaintenanceBusy(
                f"Another maintenance job (compaction or retention) is running on {root}; try again later",
                job=job,
            )
        time.sleep(random.uniform(0.05, 0.5))  # jitter, so two waiting jobs stop colliding
    try:
        yield
    finally:
        delete_quietly(fs, path)


# -- progress --------------------------------------------------------------------------------
class Progress:
    """A one-line progress bar on stderr, silent when stderr is not a terminal (cron, CI, pipes).

    Args:
        label: what is being counted ("runs", "partitions").
        total: the expected count (None when unknown).
        stream: where to draw (stderr by default).
        quiet: never draw (the caller did not ask for progress).
    """

    def __init__(self, label: str, total: int | None = None, stream: TextIO | None = None, *, quiet: bool = False) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self._stream = stream or sys.stderr
        self._enabled = not quiet and bool(getattr(self._stream, "isatty", lambda: False)())
        self._last_draw = 0.0

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        # Redraw at most ten times a second: drawing must never slow the work it reports.
        if self._enabled and (now - self._last_draw > 0.1 or self.done == self.total):
            self._last_draw = now
            self._draw()

    def _draw(self) -> None:
        if self.total:
            width = 30
            filled = int(width * min(self.done, self.total) / self.total)
            bar = "#" * filled + "-" * (width - filled)
            text = f"\r{self.label} [{bar}] {self.done}/{self.total}"
        else:
            text = f"\r{self.label}: {self.done}"
        self._stream.write(text)
        self._stream.flush()

    def close(self) -> None:
        if self._enabled:
            self._draw()
            self._stream.write("\n")
            self._stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
