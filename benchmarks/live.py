"""``runlake bench live``: a lake written the way teams write it, measured while it is written.

(a) A simulated team day: writer processes each training one long run and flushing every
    10 ms (each flush stands for 3 s of real training), plus a sweep process creating short
    runs one by one; every few seconds the part files per partition, a fresh ``Lake`` open, a
    first page and the live run's ``metric_history`` are sampled.
(b) The peer-shaped import: 10,000 runs (10 experiments, 10 params, 8 tags, 5 metrics x 100
    steps, 5 % deleted, 10 % nested) logged run by run through ``LakeClient``, no compaction,
    then the query table. MLflow's column is the reference measured on this workload (MLflow
    3.17.2 on SQLite, this machine kind), quoted from the issue that set the goals.
(c) One reader at scale (``--scale-runs``).
(d) A live run's history polled at the real pace: two writers flushing every 3 s, a reader
    calling ``metric_history`` every 3 s, with the points it read before kept and, right
    after, without them (the same ``Lake`` with its kept points set aside).
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from typing import Any

from benchmarks.common import Row, median_ms, table

WRITER = textwrap.dedent(
    """
    import sys, time, math
    from runlake.ingest import LakeClient
    from runlake.ingest.run import Run
    lake, name, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    # Optional: steps per 10 ms and the metric keys (default 20 steps of 5 keys).
    steps = int(sys.argv[4]) if len(sys.argv) > 4 else 20
    keys = sys.argv[5].split(",") if len(sys.argv) > 5 else ["loss", "val_loss", "acc", "lr", "grad_norm"]
    client = LakeClient(lake)
    experiment_id = client.create_experiment("team-day")
    run = Run(client, client.create_run(experiment_id, run_id=name, run_name=name), experiment_id)
    run.log_params({f"p{i}": i for i in range(10)})
    step, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        for _ in range(steps):
            for key in keys:
                run.log_metric(key, math.sin(step / 100.0), step=step)
            step += 1
        time.sleep(0.01)
    run.end()
    print(step)
    """
)
SWEEP = textwrap.dedent(
    """
    import sys, time
    from runlake.ingest import LakeClient
    lake, seconds = sys.argv[1], float(sys.argv[2])
    client = LakeClient(lake)
    experiment_id = client.create_experiment("sweep")
    n, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        run_id = client.create_run(experiment_id, run_name=f"trial-{n}")
        client.log_batch(run_id, metrics=[("loss", 1.0 / (s + 1), 0, s) for s in range(100)], params={"lr": str(n % 7)}, tags={"trial": str(n)})
        client.set_terminated(run_id)
        n += 1
        time.sleep(0.01)
    client.flush()
    print(n)
    """
)


LIVE_QUERY: dict[str, Any] = {"filter_string": "metrics.loss < 0.5", "order_by": ["metrics.loss"], "page_size": 100}


def _part_files(root: str) -> tuple[int, int]:
    """(most part files in one table partition, part files in all)."""
    most = total = 0
    for dirpath, _dirs, files in os.walk(root):
        count = sum(1 for f in files if f.endswith(".parquet"))
        if "_maintenance" in dirpath or "artifacts" in dirpath:
            continue
        most = max(most, count)
        total += count
    return most, total


def _timed(work: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = work()
    return (time.perf_counter() - started) * 1000, result


def team_day(seconds: float = 60.0, writers: int = 4) -> str:
    from runlake.lake import Lake, RunNotFound

    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="runlake-bench-live-") as tmp:
        root = os.path.join(tmp, "lake")
        env = {**os.environ, "RUNLAKE_FLUSH_INTERVAL": "0.01"}
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", WRITER, root, f"writer{i}", str(seconds)],
                env=env,
                stdout=subprocess.PIPE,
                text=True,
            )
            for i in range(writers)
        ]
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", SWEEP, root, str(seconds)], env=env, stdout=subprocess.PIPE, text=True
            )
        )
        started = time.monotonic()
        lake = None
        while any(p.poll() is None for p in procs):
            time.sleep(min(10.0, seconds / 6))
            if not os.path.isdir(os.path.join(root, "runs")):
                continue
            most, total = _part_files(root)
            open_ms, fresh = _timed(lambda: Lake(root))
            warm = lake = lake or fresh  # the dashboard's long-lived Lake, refreshed per call
            # Its refresh picks up what five writers changed since the last sample: ~10 s of
            # 10 ms flushes, hundreds of times what a dashboard polling every few seconds meets
            # at real 3 s flushes. Timed apart, so the two reads after it show their own cost.
            refresh_ms, _changed = _timed(warm.connection.refresh)
            page_ms, page = _timed(lambda warm=warm: warm.search_page(**LIVE_QUERY))
            try:
                history_ms, history = _timed(lambda warm=warm: warm.metric_history("writer0", "loss"))
            except RunNotFound:
                continue  # the first writer's run is not flushed yet
            elapsed = time.monotonic() - started
            rows.append(
                (
                    f"{elapsed:5.0f} s (~{elapsed * 300 / 3600:.1f} h of 3 s flushes)",
                    str(most),
                    f"{total:,}",
                    f"{open_ms:.0f} ms",
                    f"{refresh_ms:.0f} ms",
                    f"{page_ms:.0f} ms ({page.total:,} runs)",
                    f"{history_ms:.0f} ms ({len(history):,} pts)",
                )
            )
        for p in procs:
            p.wait()
    header: Row = (
        "elapsed",
        "max files/partition",
        "files",
        "fresh Lake open",
        "warm Lake refresh",
        "search_page",
        "metric_history (live run)",
    )
    title = f"(a) team day: {writers} writers flushing every 10 ms + a sweep creating runs one by one; {seconds:.0f} s"
    return table(title, rows, header)


# MLflow 3.17.2 on SQLite, all matches, on this workload (the reference measurements).
MLFLOW_REFERENCE_MS = {
    "metric filter": 4800.0,
    "param equals + metric": 500.0,
    "tag equals": 2300.0,
    "status equals": 8000.0,
    "order by a metric": 63000.0,
    "LIKE + order": 7000.0,
    "time range": 2800.0,
    "children of one parent": 12.0,
    "one experiment": 820.0,
    "deleted only": 530.0,
    "three-way AND": 152.0,
}
T0 = 1_767_225_600_000


def _peer_import(root: str, runs: int = 10_000) -> tuple[list[str], list[str], float]:
    """The peer workload through LakeClient, run by run; returns (experiment ids, parent ids, seconds)."""
    import random

    from runlake.ingest import LakeClient

    rng = random.Random(7)
    client = LakeClient(root)
    started = time.perf_counter()
    experiments = [client.create_experiment(f"peer-{e}") for e in range(10)]
    parents: list[str] = []
    for i in range(runs):
        experiment_id = experiments[i % 10]
        parent = parents[-1] if i % 10 == 9 and parents else None
        run_id = client.create_run(
            experiment_id,
            run_name=f"run-{i}",
            start_time=T0 + i * 60_000,
            parent_run_id=parent,
            tags={f"t{k}": f"v{(i + k) % 5}" for k in range(8)},
        )
        if i % 10 == 0:
            parents.append(run_id)
        points = [(f"m{k}", rng.random(), T0 + i * 60_000 + s, s) for k in range(5) for s in range(100)]
        client.log_batch(run_id, metrics=points, params={f"p{k}": str((i * (k + 1)) % 13) for k in range(10)})
        client.set_terminated(run_id, "FINISHED" if i % 7 else "FAILED", end_time=T0 + i * 60_000 + 30_000)
        if i % 20 == 0:
            client.delete_run(run_id)
    client.flush()
    return experiments, parents, time.perf_counter() - started


def peer_queries(runs: int = 10_000, repeat: int = 5) -> str:
    from runlake.lake import Lake

    with tempfile.TemporaryDirectory(prefix="runlake-bench-peer-") as tmp:
        root = os.path.join(tmp, "lake")
        experiments, parents, import_s = _peer_import(root, runs)
        most, total = _part_files(root)
        open_ms, lake = _timed(lambda: Lake(root))
        # The refresh every Lake call starts with, when no file changed (the common case for a
        # dashboard between two flushes): one listing per table, compared with the last.
        refresh_ms = median_ms(lake.connection.refresh, 50, warmup=True)
        queries: dict[str, dict[str, Any]] = {
            "metric filter": {"filter_string": "metrics.m0 < 0.5"},
            "param equals + metric": {"filter_string": "params.p0 = '3' AND metrics.m1 > 0.5"},
            "tag equals": {"filter_string": "tags.t0 = 'v1'"},
            "status equals": {"filter_string": "attributes.status = 'FAILED'"},
            "order by a metric": {"order_by": ["metrics.m2 DESC"]},
            "LIKE + order": {"filter_string": "attributes.run_name LIKE 'run-1%'", "order_by": ["metrics.m3"]},
            "time range": {
                "filter_string": f"attributes.start_time >= {T0 + 1000 * 60_000} AND attributes.start_time < {T0 + 4000 * 60_000}"
            },
            "children of one parent": {"filter_string": f"tags.mlflow.parentRunId = '{parents[len(parents) // 2]}'"},
            "one experiment": {"experiment_ids": [experiments[3]]},
            "deleted only": {"run_view_type": "DELETED_ONLY"},
            "three-way AND": {"filter_string": "params.p1 = '4' AND tags.t2 = 'v3' AND metrics.m4 > 0.5"},
        }
        rows: list[Row] = []
        ratios = []
        for name, kwargs in queries.items():
            first = median_ms(lambda kwargs=kwargs: lake.search_page(page_size=100, **kwargs), repeat, warmup=True)
            every = median_ms(lambda kwargs=kwargs: lake.search_runs(**kwargs), repeat, warmup=True)
            matches = len(lake.search_run_ids(**kwargs))
            theirs = MLFLOW_REFERENCE_MS[name]
            ratios.append(theirs / every)
            rows.append(
                (
                    name,
                    f"{matches:,}",
                    f"{first:.1f} ms",
                    f"{every:.1f} ms",
                    f"{theirs:,.0f} ms",
                    f"{theirs / every:.1f}x",
                )
            )
        import math

        geomean = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
        rows.append(("geometric mean", "", "", "", "", f"{geomean:.1f}x"))
    header: Row = ("query", "matches", "first page", "all matches", "MLflow (ref.)", "speed-up")
    title = (
        f"(b) peer workload: {runs:,} runs logged run by run through LakeClient in {import_s:.0f} s, no compaction; "
        f"{total:,} part files (at most {most} per partition); fresh Lake open {open_ms:.0f} ms; "
        f"refresh with nothing changed {refresh_ms:.2f} ms"
    )
    return table(title, rows, header)


def bench_live(
    seconds: float = 60.0,
    runs: int = 10_000,
    repeat: int = 5,
    scale_runs: list[int] | None = None,
    scale_dir: str | None = None,
) -> str:
    tables = [team_day(seconds), peer_queries(runs, repeat)]
    if scale_runs:
        tables.append(scale(scale_runs, scale_dir))
    tables.append(history_poll(seconds + 15))
    return "\n\n".join(tables)


# (d) Two writers at the default pace (a flush every 3 s), ``WRITER`` with 16 steps x 3 metrics
# every 10 ms: about 100,000 points of the polled series in a minute, the size the history goal
# names.
POLL_STEPS, POLL_KEYS = "16", "loss,val_loss,acc"


def history_poll(seconds: float = 75.0, writers: int = 2, interval: float = 3.0) -> str:
    """Table (d): a live run's ``metric_history`` every ``interval`` while it is written."""
    from runlake.lake import Lake, RunNotFound
    from runlake.lake.file_series import FileSeries

    samples: list[tuple[int, int, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="runlake-bench-poll-") as tmp:
        root = os.path.join(tmp, "lake")
        env = {**os.environ, "RUNLAKE_FLUSH_INTERVAL": str(interval)}
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", WRITER, root, f"writer{i}", str(seconds), POLL_STEPS, POLL_KEYS],
                env=env,
                stdout=subprocess.DEVNULL,
            )
            for i in range(writers)
        ]
        lake = None
        while any(p.poll() is None for p in procs):
            time.sleep(interval)
            if not os.path.isdir(os.path.join(root, "runs")):
                continue
            lake = lake or Lake(root)
            db = lake.connection
            try:
                kept_ms, history = _timed(lambda lake=lake: lake.metric_history("writer0", "loss"))
                kept, db.file_series = db.file_series, FileSeries()
                try:
                    cold_ms, _cold = _timed(lambda lake=lake: lake.metric_history("writer0", "loss"))
                finally:
                    db.file_series = kept
            except RunNotFound:
                continue  # not flushed yet
            samples.append((len(history), len(db.metric_files()), kept_ms, cold_ms))
        for p in procs:
            p.wait()
    rows: list[Row] = []
    for lower, upper in ((0, 25_000), (25_000, 50_000), (50_000, 75_000), (75_000, 10**12)):
        band = [s for s in samples if lower <= s[0] < upper]
        if not band:
            continue
        rows.append(
            (
                f"{lower:,}+ points" if upper == 10**12 else f"{lower:,}-{upper:,} points",
                str(len(band)),
                f"{max(s[1] for s in band)}",
                _spread([s[2] for s in band]),
                _spread([s[3] for s in band]),
            )
        )
    header: Row = ("live series", "polls", "max metric files", "kept points: median (max)", "none kept: median (max)")
    title = (
        f"(d) a live run's history polled every {interval:.0f} s: {writers} writers flushing every {interval:.0f} s, "
        f"{seconds:.0f} s"
    )
    return table(title, rows, header)


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ms ({max(values):.1f} ms)"


# (c) One reader at scale, each figure in a fresh process (as a notebook or a restarted dashboard
# meets it): open, resident memory, first pages; in memory, then with the state cache built
# and reused.
SCALE_PROBE = textwrap.dedent(
    """
    import json, statistics, sys, time
    from runlake.lake import Lake
    root, cache, warm = sys.argv[1], sys.argv[2], sys.argv[3] == "warm"
    started = time.perf_counter()
    if cache == "default":  # Lake(path): a private copy of the published state
        lake = Lake(root)
        assert lake.connection.private, "the published state was not used"
    else:
        lake = Lake(root, cache=False if cache == "-" else cache)
        assert lake.connection.cached == (cache != "-"), "the state cache asked for was not used"
    open_s = time.perf_counter() - started
    started = time.perf_counter()
    if warm:
        lake.warm()  # what `runlake ui` does in the background after opening
    warm_s = time.perf_counter() - started
    def page():
        return lake.search_page(
            filter_string="metrics.val_accuracy > 0.5", order_by=["metrics.val_loss ASC"], page_size=100
        )
    started = time.perf_counter()
    total = page().total
    first_ms = (time.perf_counter() - started) * 1000
    times = []
    for _ in range(5):
        started = time.perf_counter()
        page()
        times.append((time.perf_counter() - started) * 1000)
    # VmHWM, not ru_maxrss: the latter survives exec, so a probe started by a process that just
    # built a big lake would report its parent's peak.
    status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)
    rss_mb = int(status["VmHWM"].split()[0]) / 1024
    print(json.dumps({"open_s": open_s, "warm_s": warm_s, "first_ms": first_ms, "page_ms": statistics.median(times),
                      "rss_mb": rss_mb, "total": total, "cached": lake.connection.cached}))
    """
)


def _probe(root: str, cache: str, warm: bool = False, cache_dir: str | None = None) -> dict[str, Any]:
    args = [sys.executable, "-c", SCALE_PROBE, root, cache, "warm" if warm else "-"]
    env = {**os.environ, "RUNLAKE_CACHE_DIR": cache_dir} if cache_dir else None
    out = subprocess.run(args, capture_output=True, text=True, check=True, env=env)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


PUBLISH_PROBE = textwrap.dedent(
    """
    import json, sys
    from runlake.lake import Lake
    published = Lake(sys.argv[1], cache=sys.argv[2]).publish_state()
    print(json.dumps({"seconds": published.seconds, "size": published.size}))
    """
)


def scale(runs_list: list[int], directory: str | None = None) -> str:
    """Table (c): a demo lake per size (kept in ``directory`` when given, for the next run)."""
    from runlake.core import layout
    from runlake.demo import build_demo
    from runlake.lake import state_cache

    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="runlake-bench-scale-") as tmp:
        for runs in runs_list:
            root = os.path.join(directory or tmp, f"demo-{runs}")
            if not os.path.isdir(os.path.join(root, "runs")):
                build_demo(root, runs=runs)
            cache = os.path.join(tmp, f"cache-{runs}")
            # A state published by an earlier run of this table would make the first open a copy.
            fs, lake_root = layout.resolve_lake(root)
            published = state_cache.published_file(fs, lake_root)
            with contextlib.suppress(FileNotFoundError):
                fs.delete_file(published)
            probes = (
                ("in memory", "-", False),
                ("cache, first open", cache, False),
                ("cache, reopened", cache, False),
                # The dashboard's case: `runlake ui` warms the state before the first visitor.
                ("cache, reopened, warm()", cache, True),
                # What `runlake ui` publishes, in a fresh process with no state of its own (a
                # notebook, a second dashboard): the copy, then the files written since.
                ("publish", cache, False),
                ("from the published state", os.path.join(tmp, f"fresh-{runs}"), False),
                ("from the published state, warm()", os.path.join(tmp, f"fresh-warm-{runs}"), True),
                # A notebook's plain Lake(path): a private copy, removed when it closes.
                ("Lake(path): a private copy of it", "default", False),
            )
            for label, where, warm in probes:
                if label == "publish":
                    out = subprocess.run(
                        [sys.executable, "-c", PUBLISH_PROBE, root, where], capture_output=True, text=True, check=True
                    )
                    done = json.loads(out.stdout.strip().splitlines()[-1])
                    rows.append(
                        (
                            f"{runs:,}",
                            f"publish ({done['size'] / 2**20:,.0f} MiB written)",
                            f"{done['seconds']:.2f} s",
                            "",
                            "",
                            "",
                        )
                    )
                    continue
                figures = _probe(root, where, warm, os.path.join(tmp, f"private-{runs}"))
                opened = f"{figures['open_s']:.2f} s" + (f" + {figures['warm_s']:.2f} s" if warm else "")
                rows.append(
                    (
                        f"{runs:,}",
                        label,
                        opened,
                        f"{figures['rss_mb']:,.0f} MB",
                        f"{figures['first_ms']:.0f} ms",
                        f"{figures['page_ms']:.0f} ms",
                    )
                )
            # A kept demo lake goes back to what it was: the other benchmarks open it in memory.
            with contextlib.suppress(FileNotFoundError):
                fs.delete_file(published)
    header: Row = ("runs", "state", "open", "peak resident", "first page", "page (median of 5)")
    title = (
        "(c) one reader at scale: runlake demo lakes, each figure in a fresh process; page = filter + order by a metric"
    )
    return table(title, rows, header)
