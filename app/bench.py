"""``runlake bench``: named workloads that print tables of medians (speed lives here, not in tests)."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable


Row = tuple[str, ...]


def _table(title: str, rows: list[Row], header: Row = ("workload", "median", "goal", "verdict")) -> str:
    """Every benchmark's printed table: a title, a header, a rule, one aligned line per row."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([title, line(header), line(tuple("-" * w for w in widths)), *[line(r) for r in rows]])


def _verdict(ok: bool) -> str:
    return "meets goal" if ok else "MISSES goal"


# -- ingest --------------------------------------------------------------------------------
def bench_ingest(repeat: int = 7) -> str:
    import numpy as np

    import runlake.ingest as rl
    from runlake.ingest.client import LakeClient

    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="runlake-bench-") as tmp:
        # log_metric call overhead: batches of calls, median per-call time over batches.
        client = LakeClient(os.path.join(tmp, "calls"))
        exp = client.create_experiment("bench")
        run = rl.Run(client, client.create_run(exp, run_name="calls"), exp)
        calls = 100_000
        per_call = []
        for r in range(repeat):
            started = time.perf_counter()
            log = run.log_metric
            for i in range(calls):
                log("loss", 0.5, step=i)
            per_call.append((time.perf_counter() - started) / calls * 1e6)
            client.flush()
        med = statistics.median(per_call)
        rows.append(("log_metric call overhead", f"{med:.2f} us/call", "<= 5 us", _verdict(med <= 5)))

        # Sustained ingest through log_batch, flush (Parquet write) included.
        rng = np.random.default_rng(0)
        n = 1_000_000
        steps = np.arange(n) // 10
        keys = [f"m{i % 10}" for i in range(n)]
        values = rng.random(n).astype(np.float32).astype(np.float64).tolist()
        timestamps = (1_767_225_600_000 + steps * 1000).tolist()
        tuples = list(zip(keys, values, timestamps, steps.tolist()))
        rates = []
        for r in range(max(3, repeat // 2)):
            rid = client.create_run(exp, run_name=f"batch-{r}")
            started = time.perf_counter()
            client.log_batch(rid, metrics=tuples)
            client.flush()
            rates.append(n / (time.perf_counter() - started))
        med = statistics.median(rates)
        rows.append(("log_batch sustained, 1M (key, value, ts, step) tuples + flush", f"{med / 1e6:.2f} M points/s", ">= 1 M/s", _verdict(med >= 1e6)))

        # Bytes on disk per metric point: a realistic run (10 metrics x 100,000 steps,
        # float32-valued like framework losses) and a worst case (full float64 noise).
        for label, vals in (
            ("float32-valued (framework losses)", values),
            ("float64 random noise (worst case)", rng.random(n).tolist()),
        ):
            lake = os.path.join(tmp, "bytes-" + label.split()[0])
            c2 = LakeClient(lake)
            e2 = c2.create_experiment("bytes")
            rid = c2.create_run(e2)
            c2.log_batch(rid, metrics=list(zip(keys, vals, timestamps, steps.tolist())))
            c2.flush()
            size = _dir_size(os.path.join(lake, "metrics"))
            summaries = _dir_size(os.path.join(lake, "metric_summaries"))
            per_point = (size + summaries) / n
            rows.append((f"bytes per metric point, {label}", f"{per_point:.2f} B", "<= 10 B", _verdict(per_point <= 10)))

    # Import time of runlake.ingest in a fresh interpreter (pyarrow's own import included).
    code = "import time; t=time.perf_counter(); import {m}; print(time.perf_counter()-t)"
    for module in ("runlake.ingest", "pyarrow"):
        times = [float(subprocess.run([sys.executable, "-c", code.format(m=module)], capture_output=True, text=True, check=True).stdout) for _ in range(5)]
        rows.append((f"import {module} (fresh interpreter)", f"{statistics.median(times) * 1000:.0f} ms", "-", "context" if module == "pyarrow" else "-"))
    return _table(f"runlake bench ingest  (median of {repeat} batches; {os.cpu_count()} cores)", rows)


def _dir_size(path: str) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(dirpath, f)) for f in files)
    return total


def run_benchmarks(suite: str, runs: int = 100_000, lake: str | None = None, repeat: int = 20) -> int:
    """Run a suite and print its table(s); returns the exit code."""
    suites: dict[str, Callable[[], str]] = {
        "ingest": lambda: bench_ingest(repeat=min(repeat, 7)),
        "search": lambda: _search_suite(runs, lake, repeat),
        "compaction": lambda: _compaction_suite(repeat),
        "ui": lambda: _ui_suite(runs, lake, repeat),
    }
    names = list(suites) if suite == "all" else [suite]
    for name in names:
        print(suites[name]())
        print()
    return 0


def _ui_suite(runs: int, lake: str | None, repeat: int) -> str:
    from runlake.app.bench_ui import bench_ui

    return bench_ui(runs=runs, lake=lake, repeat=min(repeat, 10))


def _compaction_suite(repeat: int) -> str:
    from runlake.app.bench_compaction import bench_compaction

    return bench_compaction(repeat=min(repeat, 10))


def _search_suite(runs: int, lake: str | None, repeat: int) -> str:
    from runlake.app.bench_search import bench_search

    return bench_search(runs=runs, lake=lake, repeat=repeat)



