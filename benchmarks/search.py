"""Benchmark ``search``: search latency on a 100,000-run demo lake, and MLflow's beside it.

The MLflow side (only when the ``bench`` extra is installed) loads the same runs into an MLflow
SQLite store. Loading 50 million points through MLflow's API would take hours, so the loader
creates MLflow's schema with MLflow's own store and bulk-inserts the rows its search reads
(runs, params, tags, latest_metrics); full metric histories are not needed by any MLflow query
here. Queries MLflow cannot express (OR, MIN()) show "-" on its side.
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import TYPE_CHECKING, Any

from benchmarks.common import Row, median_ms, table, verdict

if TYPE_CHECKING:
    from runlake.lake import Lake

QUERIES: list[tuple[str, str, list[str] | None, bool]] = [
    # name, filter, order_by, MLflow can express it
    ("metric filter", "metrics.val_loss < 0.4", None, True),
    ("param + metric filter", "params.optimizer = 'adam' AND metrics.val_accuracy > 0.7", None, True),
    ("tag LIKE filter", "tags.`model family` LIKE 'trans%'", None, True),
    ("OR filter", "params.optimizer = 'sgd' OR metrics.val_loss < 0.3", None, False),
    ("MIN() filter", "MIN(metrics.train_loss) < 0.2", None, False),
    ("sort by a metric", "", ["metrics.val_accuracy DESC"], True),
]
FRAME_FILTER = "metrics.val_accuracy > 0.5"


def bench_search(runs: int = 100_000, lake: str | None = None, repeat: int = 20, mlflow: bool = True) -> str:
    """Run the search workloads; returns the printed table."""
    from runlake.demo import build_demo
    from runlake.lake import Lake

    with tempfile.TemporaryDirectory(prefix="runlake-bench-search-") as tmp:
        root = lake or os.path.join(tmp, "lake")
        if lake is None or not os.path.exists(os.path.join(root, "runs")):
            build_demo(root, runs=runs)
        started = time.perf_counter()
        opened = Lake(root)
        open_ms = (time.perf_counter() - started) * 1000
        total_runs = int(opened.sql("SELECT count(*) AS n FROM runs")["n"][0])
        mlflow_side = _MlflowSide.create(opened, tmp) if mlflow else None
        rows: list[Row] = []
        for name, filter_string, order_by, expressible in QUERIES:
            ours = median_ms(
                lambda f=filter_string, o=order_by: opened.search_page(filter_string=f, order_by=o, page_size=100),
                repeat,
                warmup=True,
            )
            # MLflow takes seconds per query here: three timed runs are enough to see the ratio.
            theirs = (
                mlflow_side.page(filter_string, order_by, min(repeat, 3)) if (mlflow_side and expressible) else None
            )
            rows.append(_row(f"first page of 100: {name}", ours, 50, theirs))
        matches = opened.search_run_ids(filter_string=FRAME_FILTER, max_results=10_000)
        assert len(matches) == 10_000, "the frame workload needs at least 10,000 matches"
        ours = median_ms(
            lambda: opened.search_runs(filter_string=FRAME_FILTER, max_results=10_000), max(3, repeat // 4), warmup=True
        )
        theirs = mlflow_side.frame(FRAME_FILTER, 3) if mlflow_side else None
        rows.append(_row("frame of 10,000 matches", ours, 500, theirs))
    header = ("workload", "runlake", "goal", "verdict", "MLflow", "ratio")
    note = (
        ("MLflow: not installed (pip install '.[bench]')" if mlflow else "MLflow: skipped (--no-mlflow)")
        if mlflow_side is None
        else f"MLflow {mlflow_side.version}, SQLite store"
    )
    title = (
        f"runlake bench search  ({total_runs:,} runs; median of {repeat}; warm Lake; {os.cpu_count()} cores; {note})\n"
        f"opening the lake (reading and folding every table once): {open_ms:.0f} ms"
    )
    return table(title, rows, header)


def _row(name: str, ours: float, goal: float, theirs: float | None) -> Row:
    ratio = f"{theirs / ours:.0f}x faster" if theirs else "-"
    return (
        name,
        f"{ours:.1f} ms",
        f"<= {goal} ms",
        verdict(ours <= goal),
        f"{theirs:.0f} ms" if theirs else "-",
        ratio,
    )


class _MlflowSide:
    """The same runs in an MLflow SQLite store, queried through MLflow's client."""

    def __init__(self, client: Any, experiment_ids: list[str], version: str) -> None:
        self.client = client
        self.experiment_ids = experiment_ids
        self.version = version

    @classmethod
    def create(cls, lake: Lake, tmp: str) -> _MlflowSide | None:
        try:
            import mlflow
            from mlflow.tracking import MlflowClient
        except ImportError:
            return None
        from benchmarks.mlflow_load import load_into_mlflow

        uri = f"sqlite:///{tmp}/mlflow.db"
        experiment_ids = load_into_mlflow(lake, uri)
        return cls(MlflowClient(tracking_uri=uri), experiment_ids, mlflow.__version__)

    def page(self, filter_string: str, order_by: list[str] | None, repeat: int) -> float:
        return median_ms(
            lambda: self.client.search_runs(self.experiment_ids, filter_string, max_results=100, order_by=order_by),
            repeat,
            warmup=True,
        )

    def frame(self, filter_string: str, repeat: int) -> float:
        import mlflow

        def run() -> Any:
            mlflow.set_tracking_uri(self.client.tracking_uri)
            return mlflow.search_runs(self.experiment_ids, filter_string, max_results=10_000)

        return median_ms(run, repeat, warmup=True)
