"""Benchmark ``ui``: server-side time of the dashboard's data callbacks on a large demo lake.

Each workload calls the same function its callback calls, with the result cache cleared before
every repetition (cold: what a user pays after any write to the lake), plus one warm row.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import Any

from benchmarks.common import Workload, callback_rows, table

RUNS_PAGE_GOAL_MS = 300.0
FILTER = "metrics.val_loss < 0.5 AND params.optimizer = 'adam'"


def bench_ui(runs: int = 100_000, lake: str | None = None, repeat: int = 10) -> str:
    """Time the runs-page, run-page and compare-page data callbacks; returns the table.

    Args:
        runs: size of the demo lake built when ``lake`` is None.
        lake: an existing lake to measure instead.
        repeat: repetitions per workload (the median is reported).
    """
    with tempfile.TemporaryDirectory(prefix="runlake-bench-ui-") as tmp:
        root = lake
        if root is None:
            from runlake.demo import build_demo

            root = os.path.join(tmp, "lake")
            build_demo(root, runs=runs)
        return _measure(root, repeat)


def _measure(root: str, repeat: int) -> str:
    from runlake.app.settings import Settings
    from runlake.app.web.grid import RunsQuery
    from runlake.app.web.pages import compare, run, run_callbacks
    from runlake.app.web.pages.runs import rows_response
    from runlake.app.web.server import create_app
    from runlake.lake import Lake

    opened = Lake(root)
    app = create_app(Settings(lake=root), opened)
    services = app.server.config["RUNLAKE_SERVICES"]
    total = len(opened.search_run_ids(max_results=10_000_000))
    first_page = {"startRow": 0, "endRow": 100, "sortModel": []}
    by_metric = {"startRow": 0, "endRow": 100, "sortModel": [{"colId": "metrics.val_loss", "sort": "asc"}]}
    deep_page = {"startRow": 5_000, "endRow": 5_100, "sortModel": []}
    run_id = opened.search_run_ids(filter_string="status = 'FINISHED'", max_results=1)[0]
    hundred = opened.search_run_ids(filter_string=FILTER, max_results=100)

    def runs_page(query: RunsQuery, request: dict[str, Any]) -> Callable[[], Any]:
        return lambda: rows_response(services, query, request)

    workloads: list[Workload] = [
        (
            f"runs page: first 100 rows, filter `{FILTER}`",
            runs_page(RunsQuery(filter=FILTER), first_page),
            RUNS_PAGE_GOAL_MS,
            True,
        ),
        ("runs page: first 100 rows, no filter", runs_page(RunsQuery(), first_page), RUNS_PAGE_GOAL_MS, True),
        (
            "runs page: filter + sort by metrics.val_loss",
            runs_page(RunsQuery(filter=FILTER), by_metric),
            RUNS_PAGE_GOAL_MS,
            True,
        ),
        ("runs page: rows 5,000-5,100 (scrolled)", runs_page(RunsQuery(), deep_page), RUNS_PAGE_GOAL_MS, True),
        ("runs page: first rows, warm cache", runs_page(RunsQuery(filter=FILTER), first_page), None, False),
        (
            "run page: layout (header, params, metrics, tags, artifacts)",
            lambda: run.layout(services, run_id=run_id),
            None,
            True,
        ),
        (
            "run page: metric charts (5 histories)",
            lambda: run_callbacks.metric_charts(services, run_id, run_callbacks.ChartOptions("step", 0.6)),
            None,
            True,
        ),
        (
            "compare page: 100 runs, layout (tables)",
            lambda: compare.layout(services, runs=",".join(hundred)),
            None,
            True,
        ),
        (
            "compare page: 100 runs, val_loss curves",
            lambda: compare.curves_figure(services, hundred, "val_loss", "step", 0.6, False),
            None,
            True,
        ),
    ]
    rows = callback_rows(app, workloads, repeat)
    title = f"runlake bench ui  ({total:,} runs; median of {repeat}, result cache cleared before each unless warm; {os.cpu_count()} cores)"
    return table(title, rows)
