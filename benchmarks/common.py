"""What every benchmark shares: timing a workload (its median) and the table it prints."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

Row = tuple[str, ...]
HEADER: Row = ("workload", "median", "goal", "verdict")


def median_ms(
    work: Callable[[], Any], repeat: int, *, warmup: bool = False, before: Callable[[], Any] | None = None
) -> float:
    """The median wall time of ``work()`` over ``repeat`` calls, in milliseconds.

    Args:
        work: the workload.
        repeat: timed calls.
        warmup: call ``work()`` once untimed first (imports, query plans, caches).
        before: called untimed before each timed call (e.g. clearing a result cache).
    """
    if warmup:
        work()
    times = []
    for _ in range(repeat):
        if before is not None:
            before()
        started = time.perf_counter()
        work()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def table(title: str, rows: list[Row], header: Row = HEADER) -> str:
    """Every benchmark's printed table: a title, a header, a rule, one aligned line per row."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(row: Row) -> str:
        return "  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip()

    return "\n".join([title, line(header), line(tuple("-" * w for w in widths)), *[line(r) for r in rows]])


def verdict(ok: bool) -> str:
    return "meets goal" if ok else "MISSES goal"
