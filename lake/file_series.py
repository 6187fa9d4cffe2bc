"""Each metric file's points of one series, kept between reads of a history.

A live run's history is read again and again (a notebook polling it, an MLflow client's
``get_metric_history``, a dashboard) while most of its points sit in files that no longer
change: part files are immutable under unique names, and merges write new files rather than
rewriting old ones. So the points one file holds of a series (run, key), once read, are kept
under the file's version (path and size, as the state keys its files) and a later read scans
only the files it has not seen: the new flushes and merges.

What is kept is bounded (``MAX_POINTS`` points, ``MAX_ENTRIES`` files); the least recently
used go first. A file that left the listing is never asked for again, and leaves with the
rest by age.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

import pyarrow as pa

# About 24 bytes a point (step, timestamp, value): 2,000,000 points are about 48 MB.
MAX_POINTS = 2_000_000
# Most files of a partition hold nothing of a series; those entries are tiny, but counted.
MAX_ENTRIES = 100_000

File = tuple[str, int]


class FileSeries:
    """Points of series per metric file version, least recently used out first. Thread-safe."""

    def __init__(self, max_points: int = MAX_POINTS, max_entries: int = MAX_ENTRIES) -> None:
        self.max_points = max_points
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[str, int, str, str], pa.Table] = OrderedDict()
        self._points = 0

    def get(self, files: Sequence[File], run_id: str, key: str) -> tuple[list[pa.Table], list[File]]:
        """The kept points of the files that have them, and the files that have none kept."""
        found: list[pa.Table] = []
        missing: list[File] = []
        with self._lock:
            for path, size in files:
                entry = (path, size, run_id, key)
                points = self._entries.get(entry)
                if points is None:
                    missing.append((path, size))
                else:
                    self._entries.move_to_end(entry)
                    found.append(points)
        return found, missing

    def put(self, run_id: str, key: str, points: dict[File, pa.Table]) -> None:
        """Keep each file's points of the series (a file too big for the bound is not kept)."""
        with self._lock:
            for (path, size), table in points.items():
                if table.num_rows > self.max_points:
                    continue
                entry = (path, size, run_id, key)
                old = self._entries.pop(entry, None)
                if old is not None:
                    self._points -= old.num_rows
                self._entries[entry] = table
                self._points += table.num_rows
            while self._entries and (self._points > self.max_points or len(self._entries) > self.max_entries):
                _entry, table = self._entries.popitem(last=False)
                self._points -= table.num_rows

    @property
    def points(self) -> int:
        """How many points are kept."""
        with self._lock:
            return self._points

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
