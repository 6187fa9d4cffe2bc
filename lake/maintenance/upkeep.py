"""Automatic upkeep from a long-lived reader (``runlake ui``): full size tiers merged in the background.

Writers merge their own files and the tiers of the partitions they write (``runlake.core.merge``);
this picks up what they left - the tiers of partitions nobody writes any more, raw files of
writers that died - whenever the maintenance lease is free. It never waits for the lease.
"""

from __future__ import annotations

import threading
from typing import Any

from runlake.core import merge
from runlake.core.lease import try_lease
from runlake.lake.maintenance.compaction import resolve

DEFAULT_INTERVAL_S = 60.0


def merge_tiers(location: Any, budget_s: float = 5.0) -> int | None:
    """Merge every partition's full tiers if the lease is free; files merged, or None when busy."""
    fs, root = resolve(location)
    with try_lease(fs, root, "merge") as held:
        if not held:
            return None
        return merge.merge_tiers(fs, root, merge.partitions(fs, root), budget_s=budget_s)


def start(location: Any, interval_s: float = DEFAULT_INTERVAL_S) -> threading.Event:
    """Run ``merge_tiers`` every ``interval_s`` on a daemon thread; set the returned event to stop."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(interval_s):
            try:
                merge_tiers(location)
            except Exception as exc:  # a read-only or unreachable lake: reading goes on regardless
                print(f"runlake: background merge skipped: {exc}", flush=True)

    threading.Thread(target=loop, name="runlake-upkeep", daemon=True).start()
    return stop
