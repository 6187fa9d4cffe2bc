"""Benchmark ``compaction``: query latency on ~5,000 small part files, before and after compaction.

Every measurement opens a fresh ``Lake``, so the cost of listing and reading the part files -
what compaction changes - is in the number. Run it with ``python -m benchmarks compaction``.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable

from benchmarks.common import Row, median_ms, table

RUNS = 100
FLUSHES_PER_RUN = 24  # two files per flush (points and their summary): ~5,000 files in all
POINTS_PER_FLUSH = 50
KEYS = ("train_loss", "val_loss", "accuracy")


def build_small_file_lake(root: str) -> list[str]:
    """A lake shaped like many training jobs flushing often; returns its run ids."""
    from runlake.ingest.client import LakeClient

    client = LakeClient(root)
    experiment_id = client.create_experiment("small-files")
    ids = []
    for r in range(RUNS):
        run_id = client.create_run(experiment_id, run_name=f"run-{r:03d}", start_time=1_767_225_600_000 + r * 60_000)
        client.log_batch(
            run_id, params={"lr": str(0.001 * (r % 7 + 1)), "batch_size": str(32 << (r % 3))}, tags={"team": "bench"}
        )
        for f in range(FLUSHES_PER_RUN):
            base = f * POINTS_PER_FLUSH
            points = [
                (key, 1.0 / (step + 1) + (r % 10) / 100 + k, 1_767_225_600_000 + step * 1000, step)
                for step in range(base, base + POINTS_PER_FLUSH // len(KEYS) + 1)
                for k, key in enumerate(KEYS)
            ]
            client.log_batch(run_id, metrics=points)
            client.flush()
        client.set_terminated(run_id)
        ids.append(run_id)
    return ids


def _file_count(root: str) -> int:
    return sum(len([f for f in files if f.endswith(".parquet")]) for _d, _s, files in os.walk(root))


def _workloads(root: str, ids: list[str]) -> dict[str, Callable[[], object]]:
    from runlake.lake import Lake

    probe = ids[len(ids) // 2]
    return {
        "open Lake + get_run": lambda: Lake(root).get_run(probe),
        "open Lake + metric_history (1 run, 1 key)": lambda: Lake(root).metric_history(probe, "val_loss"),
        "open Lake + sql over latest_metrics": lambda: Lake(root).sql(
            "SELECT key, avg(value) AS mean, min(min_value) AS best FROM latest_metrics GROUP BY key"
        ),
        "open Lake + sql count over all points": lambda: Lake(root).sql("SELECT count(*) FROM metrics"),
    }


def bench_compaction(repeat: int = 10) -> str:
    """Build the small-file lake, time the workloads, compact, time them again; returns the table."""
    from runlake.lake.maintenance import compact

    with tempfile.TemporaryDirectory(prefix="runlake-bench-compact-") as tmp:
        root = os.path.join(tmp, "lake")
        started = time.perf_counter()
        ids = build_small_file_lake(root)
        build_s = time.perf_counter() - started
        files_before = _file_count(root)
        before = {name: median_ms(action, repeat) for name, action in _workloads(root, ids).items()}
        report = compact(root, grace_s=0)
        files_after = _file_count(root)
        after = {name: median_ms(action, repeat) for name, action in _workloads(root, ids).items()}
    rows: list[Row] = [
        (name, f"{before[name]:.1f} ms", f"{after[name]:.1f} ms", f"{before[name] / after[name]:.1f}x")
        for name in before
    ]
    rows.append(
        ("part files", f"{files_before:,}", f"{files_after:,}", f"{files_before / max(files_after, 1):.0f}x fewer")
    )
    rows.append(("compaction itself", "-", f"{report.seconds * 1000:.0f} ms", "-"))
    title = (
        f"runlake bench compaction  (median of {repeat}; {RUNS} runs x {FLUSHES_PER_RUN} flushes, "
        f"lake built in {build_s:.0f} s; {os.cpu_count()} cores)"
    )
    return table(title, rows, header=("workload", "before", "after", "speed-up"))
