"""What compaction and retention share: file listings with ages, progress (the lease is core's)."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import TextIO

import pyarrow.fs as pafs

from runlake.core import layout, writer


@dataclass(frozen=True)
class PartFile:
    """One finished part file of a table."""

    path: str
    size: int
    mtime: float  # epoch seconds
    experiment_id: str | None

    @property
    def compacted(self) -> bool:
        return self.path.endswith(layout.COMPACTED_SUFFIX + layout.DATA_SUFFIX)


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
    for directory in (*[paths.table_dir(t) for t in layout.ALL_TABLES], paths.maintenance_dir(), paths.state_dir()):
        selector = pafs.FileSelector(directory, recursive=True, allow_not_found=True)
        found += [
            info
            for info in fs.get_file_info(selector)
            if info.type == pafs.FileType.File
            and info.base_name.startswith(layout.TMP_PREFIX)
            and info.base_name.endswith(layout.TMP_SUFFIX)
        ]
    return found


def compacted_file_id() -> str:
    return layout.new_file_id() + layout.COMPACTED_SUFFIX


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover - the loop always returns


# -- progress --------------------------------------------------------------------------------
class Progress:
    """A one-line progress bar on stderr, silent when stderr is not a terminal (cron, CI, pipes).

    Args:
        label: what is being counted ("runs", "partitions").
        total: the expected count (None when unknown).
        stream: where to draw (stderr by default).
        quiet: never draw (the caller did not ask for progress).
    """

    def __init__(
        self, label: str, total: int | None = None, stream: TextIO | None = None, *, quiet: bool = False
    ) -> None:
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
