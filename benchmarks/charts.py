"""Benchmark ``charts``: long metric histories, from ``log_batch`` to the dashboard's chart callbacks.

Builds one lake: a run with 1 M points, a run with 3 metrics x 10 M points (each logged as one
Arrow table through ``LakeClient.log_batch``, timed end to end on disk) and 100 runs x 100 k
points. Then the medians of ``Lake.metric_series`` (1,000 buckets), ``Lake.metric_history``,
the run page's chart callback and the compare page's curves callback (result cache cleared
before each repetition: what a user pays after any write).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from typing import Any

from benchmarks.common import Row, Workload, callback_rows, table, verdict

T0 = 1_700_000_000_000


def _points(key: str, n: int, seed: int) -> Any:
    import numpy as np
    import pyarrow as pa

    steps = np.arange(n, dtype=np.int64)
    noise = np.random.default_rng(seed).normal(0.0, 0.05, n)
    return pa.table(
        {
            "key": pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype=np.int8)), [key]).cast(pa.string()),
            "value": np.exp(-steps / max(n / 5, 1)) + noise,
            "timestamp": T0 + steps * 10,
            "step": steps,
        }
    )


def bench_charts(repeat: int = 5, big: int = 10_000_000) -> str:
    """Time the chart workloads on a freshly built lake; returns the table.

    Args:
        repeat: repetitions per workload (the median is reported).
        big: points per metric of the long run (10 M by default).
    """
    from runlake.ingest import LakeClient

    with tempfile.TemporaryDirectory(prefix="runlake-bench-charts-") as tmp:
        root = os.path.join(tmp, "lake")
        client = LakeClient(root)
        experiment = client.create_experiment("long")
        small = client.create_run(experiment, run_name="1m")
        client.log_batch(small, _points("loss", 1_000_000, 1))
        client.set_terminated(small)
        long_run = client.create_run(experiment, run_name="10m")
        ingest_ms = []
        for i, key in enumerate(("loss", "grad_norm", "lr")):
            data = _points(key, big, 10 + i)
            started = time.perf_counter()
            client.log_batch(long_run, data)
            client.flush()
            ingest_ms.append((time.perf_counter() - started) * 1000)
            del data
        client.set_terminated(long_run)
        sweep = client.create_experiment("sweep")
        hundred = []
        for i in range(100):
            run_id = client.create_run(sweep, run_name=f"trial-{i}")
            client.log_batch(run_id, _points("loss", 100_000, 100 + i), params={"optimizer": ["adam", "sgd"][i % 2]})
            client.set_terminated(run_id)
            hundred.append(run_id)
        client.flush()
        return _measure(root, repeat, big, small, long_run, hundred, sorted(ingest_ms)[1])


def _measure(root: str, repeat: int, big: int, small: str, long_run: str, hundred: list[str], ingest_ms: float) -> str:
    from runlake.app.settings import Settings
    from runlake.app.web.pages import compare, run_callbacks
    from runlake.app.web.server import create_app
    from runlake.lake import Lake

    lake = Lake(root)
    app = create_app(Settings(lake=root), lake)
    services = app.server.config["RUNLAKE_SERVICES"]
    rate = big / (ingest_ms / 1000) / 1e6
    label = f"{big / 1e6:g} M"
    rows: list[Row] = [
        (
            f"log_batch: one Arrow table of {label} points, flushed to disk",
            f"{ingest_ms:.0f} ms ({rate:.1f} M points/s)",
            ">= 5 M points/s",
            verdict(rate >= 5),
        )
    ]
    workloads: list[Workload] = [
        ("metric_series: 1 M points, 1,000 buckets", lambda: lake.metric_series(small, "loss"), None, False),
        (f"metric_series: {label} points, 1,000 buckets", lambda: lake.metric_series(long_run, "loss"), 150.0, False),
        (
            f"metric_series: {label} points, zoomed to 1 % (x_min/x_max)",
            lambda: lake.metric_series(long_run, "loss", x_min=big // 2, x_max=big // 2 + big // 100),
            None,
            False,
        ),
        (
            f"metric_series: {label} points, x = relative",
            lambda: lake.metric_series(long_run, "loss", x="relative"),
            None,
            False,
        ),
        ("metric_series: 100 runs x 100 k points", lambda: lake.metric_series(hundred, "loss"), 500.0, False),
        ("metric_history: 1 M points", lambda: lake.metric_history(small, "loss"), None, False),
        (f"metric_history: {label} points", lambda: lake.metric_history(long_run, "loss"), 1000.0, False),
        (
            f"run page: chart callback, 3 metrics x {label} points",
            lambda: run_callbacks.metric_charts(services, long_run, run_callbacks.ChartOptions()),
            2000.0,
            True,
        ),
        (
            "compare page: curves callback, 100 runs x 100 k points",
            lambda: compare.curves_figure(services, hundred, "loss", "step", 0.0, False),
            2000.0,
            True,
        ),
        (
            "compare page: grouped curves (mean ± std by optimizer), 100 runs",
            lambda: compare.curves_figure(
                services, hundred, "loss", "step", 0.0, False, group="params.optimizer", spread="std"
            ),
            None,
            True,
        ),
    ]
    rows += callback_rows(app, workloads, repeat)
    rows += _browser_rows(root, long_run, hundred, repeat, label)
    title = f"runlake bench charts  (median of {repeat}; chart callbacks with the result cache cleared; {os.cpu_count()} cores)"
    return table(title, rows)


# Both pages wait for their charts: the run page for its three metric charts, the compare page
# for the curves of all 100 runs (one line per run; bands are off above 3 runs).
_RUN_PAGE_DRAWN = """
const plots = document.querySelectorAll('#run-charts .js-plotly-plot');
return plots.length >= arguments[0] && Array.from(plots).every(p => p.querySelector('.scatterlayer .trace path'));
"""
_COMPARE_DRAWN = """
const plot = document.querySelector('#cmp-plot-curves .js-plotly-plot') || document.querySelector('#cmp-plot-curves');
return !!plot && plot.querySelectorAll('.scatterlayer .trace').length >= arguments[0];
"""


def _browser_rows(root: str, long_run: str, hundred: list[str], repeat: int, label: str, metrics: int = 3) -> list[Row]:
    """Wall time in headless Chromium from navigation to drawn charts, on a running
    ``runlake ui`` after one untimed view; before each timed view another run writes a point, so
    the dashboard's result cache is cold (what a user meets after any write to the lake)."""
    import shutil

    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver_path:
        return [("Chromium timings", "skipped: chromium or chromedriver not installed", "-", "-")]
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(arg)
    options.binary_location = chromium
    pages = [
        (
            f"Chromium: run page, {metrics} metrics x {label} points, charts drawn",
            f"/runs/{long_run}",
            _RUN_PAGE_DRAWN,
            (metrics,),
        ),
        (
            "Chromium: compare page, 100 runs x 100 k points, curves drawn",
            "/compare?runs=" + ",".join(hundred),
            _COMPARE_DRAWN,
            (len(hundred),),
        ),
    ]
    from runlake.ingest import LakeClient

    writer = LakeClient(root)
    toucher = writer.create_run(writer.create_experiment("bench-touch"), run_name="touch")

    def view(driver: Any, url: str, drawn: str, args: tuple[Any, ...]) -> float:
        driver.get("about:blank")
        started = time.perf_counter()
        driver.get(url)
        while not driver.execute_script(drawn, *args):
            if time.perf_counter() - started > 120:
                raise RuntimeError(f"{url}: charts not drawn within 120 s")
            time.sleep(0.02)
        return (time.perf_counter() - started) * 1000

    rows: list[Row] = []
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        with _dashboard(root) as url:
            for step, (name, path, drawn, args) in enumerate(pages):
                view(driver, url + path, drawn, args)  # the browser's and the server's first view
                times = []
                for i in range(repeat):
                    writer.log_metric(toucher, "touch", float(i), step=step * 100 + i)
                    writer.flush()
                    times.append(view(driver, url + path, drawn, args))
                median = sorted(times)[len(times) // 2]
                rows.append((name, f"{median:.0f} ms", "<= 2000 ms", verdict(median <= 2000)))
    finally:
        driver.quit()
        writer.set_terminated(toucher)
        writer.flush()
    return rows


@contextlib.contextmanager
def _dashboard(root: str) -> Iterator[str]:
    """``runlake ui`` over the lake on a free port, as a user starts it (state cache on)."""
    import sys

    from benchmarks.server import _free_port, _process

    port = _free_port()
    cmd = [sys.executable, "-m", "runlake.app.cli", "ui", "--lake", root, "--port", str(port)]
    with _process(cmd, f"http://127.0.0.1:{port}", path="/") as url:
        yield url
