"""What every benchmark shares: timing a workload (its median) and the table it prints, and the
loop timing the dashboard's callbacks (``ui``, ``charts``)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

Row = tuple[str, ...]
HEADER: Row = ("workload", "median", "goal", "verdict")
# A dashboard workload: its name, the call, its goal in ms (None: measured only), and whether it
# runs cold (the result cache cleared before each repetition).
Workload = tuple[str, Callable[[], Any], float | None, bool]


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


def callback_rows(app: Any, workloads: Sequence[Workload], repeat: int) -> list[Row]:
    """Time dashboard workloads inside ``app``'s Flask context (where the result cache lives).

    Each is called once untimed, then ``repeat`` times; a cold one has the app's result cache
    cleared before every call (what a user pays after any write to the lake).

    Returns:
        One table row per workload: its name, median, goal and verdict.
    """
    clear = app.server.config["RUNLAKE_SERVICES"].cache.clear
    rows: list[Row] = []
    with app.server.app_context():
        for name, work, goal, cold in workloads:
            median = median_ms(work, repeat, warmup=True, before=clear if cold else None)
            rows.append(
                (
                    name,
                    f"{median:.0f} ms",
                    f"<= {goal:.0f} ms" if goal is not None else "-",
                    verdict(median <= goal) if goal is not None else "-",
                )
            )
    return rows
