"""Automatic upkeep from a long-lived reader (``runlake ui``, ``runlake server``): full size
tiers merged in the background, and the reader's state published for fresh readers.

Writers merge their own files and the tiers of the partitions they write (``runlake.core.merge``);
this picks up what they left - the tiers of partitions nobody writes any more, raw files of
writers that died - whenever the maintenance lease is free. It never waits for the lease.

A ``Lake`` with a state cache is also published into the lake (``Lake.publish_state``) once it
holds ``PUBLISH_MIN_RUNS`` runs, and again when it changed and the published copy is
``PUBLISH_EVERY_S`` old: a notebook or a second dashboard then opens a million-run lake from
that copy in seconds instead of folding every file for most of a minute.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pyarrow.fs as pafs

from runlake.core import merge
from runlake.core.lease import try_lease
from runlake.lake import state_cache
from runlake.lake.maintenance.compaction import resolve

if TYPE_CHECKING:
    from runlake.lake.facade import Lake

DEFAULT_INTERVAL_S = 60.0
# Below this many runs a fresh open folds the lake in about a second: nothing to publish for.
# ``$RUNLAKE_PUBLISH_MIN_RUNS`` changes it (a lake on slow storage, where a fold of fewer runs is
# slow already).
PUBLISH_MIN_RUNS = 20_000
PUBLISH_MIN_RUNS_ENV = "RUNLAKE_PUBLISH_MIN_RUNS"


def publish_min_runs() -> int:
    """``$RUNLAKE_PUBLISH_MIN_RUNS`` when set to a whole number, else ``PUBLISH_MIN_RUNS`` (a
    value that is not one is named on standard error, not silently read as the default)."""
    value = os.environ.get(PUBLISH_MIN_RUNS_ENV, "").strip()
    if value.isdigit():
        return int(value)
    if value:
        print(
            f"runlake: {PUBLISH_MIN_RUNS_ENV}={value!r} is not a whole number of runs; "
            f"publishing from {PUBLISH_MIN_RUNS:,} runs",
            file=sys.stderr,
            flush=True,
        )
    return PUBLISH_MIN_RUNS


# How old a published state may grow while the lake changes: a reader starting from it folds
# what was written since (work in proportion to it), and each publish writes the whole state
# (218 MiB and about 6 s at 100,000 runs; 2.1 GiB and 45-55 s at a million).
PUBLISH_EVERY_S = 15 * 60.0


def merge_tiers(location: Any, budget_s: float = 5.0) -> int | None:
    """Merge every partition's full tiers if the lease is free; files merged, or None when busy."""
    fs, root = resolve(location)
    with try_lease(fs, root, "merge") as held:
        if not held:
            return None
        return merge.merge_tiers(fs, root, merge.partitions(fs, root), budget_s=budget_s)


class Publisher:
    """Publishes one reader's state when it is due (see the module's docstring): the lake holds
    ``min_runs`` runs, and the copy there is missing, or holds other files than this state
    (``state_cache.listing_digest``, sealed into the copy) and is ``every_s`` old. A restarted
    reader whose state the copy already holds writes nothing; one whose lake changed while it was
    down publishes at its first tick.

    Args:
        lake: the reader, or a function returning it (a reader its owner may open again, as the
            MLflow store's).
    """

    def __init__(
        self, lake: Lake | Callable[[], Lake], min_runs: int | None = None, every_s: float = PUBLISH_EVERY_S
    ) -> None:
        self._reader = lake if callable(lake) else (lambda: lake)
        self.min_runs = publish_min_runs() if min_runs is None else min_runs
        self.every_s = every_s
        # When a publish last failed (a read-only lake, a full disk): tried again after every_s.
        self._failed_at: float | None = None

    @property
    def lake(self) -> Lake:
        return self._reader()

    def due(self, now: float | None = None) -> bool:
        connection = self.lake.connection
        if not connection.cached or connection.sql_access != "full":
            return False  # an in-memory state keeps no listings to start from
        now = time.time() if now is None else now
        if self._failed_at is not None and now - self._failed_at < self.every_s:
            return False
        connection.refresh()
        cursor = connection.cursor()
        (runs,) = cursor.execute("SELECT count(*) FROM runs").fetchall()[0]
        if runs < self.min_runs:
            return False
        fs, root = connection.fs, connection.root
        info = fs.get_file_info(state_cache.published_file(fs, root))
        if info.type != pafs.FileType.File or info.mtime is None:
            return True
        if now - info.mtime.timestamp() < self.every_s:
            return False
        # Old enough to replace, unless it holds this very state (one ranged read of its end).
        return state_cache.published_digest(fs, root) != state_cache.listing_digest(cursor)

    def publish_if_due(self) -> state_cache.PublishedState | None:
        """Publish the state if it is due; what was written, or None."""
        if not self.due():
            return None
        try:
            published = self.lake.publish_state()
        except Exception:
            self._failed_at = time.time()
            raise
        self._failed_at = None
        return published


def start(
    location: Any, interval_s: float = DEFAULT_INTERVAL_S, reader: Callable[[], Lake] | None = None
) -> threading.Event:
    """Run ``merge_tiers`` every ``interval_s`` on a daemon thread, and publish the state of a
    ``Lake`` given as ``location`` (or returned by ``reader``) when due (``Publisher``); set the
    returned event to stop."""
    from runlake.lake.facade import Lake

    stop = threading.Event()
    source = reader if reader is not None else location if isinstance(location, Lake) else None
    publisher = Publisher(source) if source is not None else None

    def loop() -> None:
        # A tick at once, then every interval_s: a restarted reader publishes a state that is due
        # (none yet, or an old one) without waiting for the first interval.
        while True:
            try:
                merge_tiers(location)
            except Exception as exc:  # a read-only or unreachable lake: reading goes on regardless
                print(f"runlake: background merge skipped: {exc}", flush=True)
            if publisher is not None:
                try:
                    published = publisher.publish_if_due()
                except Exception as exc:  # a cache: readers fold the lake themselves without it
                    print(f"runlake: publishing the lake's state skipped: {exc}", flush=True)
                else:
                    if published is not None:
                        print(f"runlake: {published.to_text()}", flush=True)
            if stop.wait(interval_s):
                return

    threading.Thread(target=loop, name="runlake-upkeep", daemon=True).start()
    return stop
