"""Benchmark ``ingest``: the training side's call overhead, sustained ingest, bytes per point, import time."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time

from benchmarks.common import Row, table, verdict


def bench_ingest(repeat: int = 7) -> str:
    """Time the ingest workloads; returns the printed table."""
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
        for _ in range(repeat):
            started = time.perf_counter()
            log = run.log_metric
            for i in range(calls):
                log("loss", 0.5, step=i)
            per_call.append((time.perf_counter() - started) / calls * 1e6)
            client.flush()
        med = statistics.median(per_call)
        rows.append(("log_metric call overhead", f"{med:.2f} us/call", "<= 5 us", verdict(med <= 5)))

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
        rows.append(
            (
                "log_batch sustained, 1M (key, value, ts, step) tuples + flush",
                f"{med / 1e6:.2f} M points/s",
                ">= 1 M/s",
                verdict(med >= 1e6),
            )
        )

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
            rows.append((f"bytes per metric point, {label}", f"{per_point:.2f} B", "<= 10 B", verdict(per_point <= 10)))

    # Import time of runlake.ingest in a fresh interpreter (pyarrow's own import included).
    code = "import time; t=time.perf_counter(); import {m}; print(time.perf_counter()-t)"
    for module in ("runlake.ingest", "pyarrow"):
        times = [
            float(
                subprocess.run(
                    [sys.executable, "-c", code.format(m=module)], capture_output=True, text=True, check=True
                ).stdout
            )
            for _ in range(5)
        ]
        rows.append(
            (
                f"import {module} (fresh interpreter)",
                f"{statistics.median(times) * 1000:.0f} ms",
                "-",
                "context" if module == "pyarrow" else "-",
            )
        )
    return table(f"runlake bench ingest  (median of {repeat} batches; {os.cpu_count()} cores)", rows)


def _dir_size(path: str) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(dirpath, f)) for f in files)
    return total
