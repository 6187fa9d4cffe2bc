"""``runlake bench server``: one MLflow-client workload against four backends, side by side.

The backends: ``runlake server`` and ``mlflow server`` on SQLite (over HTTP, each a real process
on a free port), and in process the ``runlake:`` plugin and MLflow's ``sqlite:`` store. Every
workload goes through ``mlflow.MlflowClient``: create run, log-batch of 10 and of 500 metrics, a
log-param batch (10 params), ``search_runs`` first page (100 runs) and all pages over a search
experiment of ``runs`` runs, and ``get_metric_history`` (500 points); with 1 client and with 16
concurrent clients (threads of this process, each with its own client, sharing the same number of operations). Per row: p50, p95 and
throughput (operations per second over the wall time of all clients).

The search experiment is filled through each backend's in-process store (``log_batch`` per run:
3 metrics, 2 params); the servers then serve the same files.

The "MLflow client alone" rows put a bound on every server: the same workload against a stub
process that answers each request with an answer ``runlake server`` gave before (reads by the
whole request, writes by the endpoint), so what they time is MLflow's client (building and
parsing JSON, its HTTP stack) plus the stub's own parsing of a request. Their "speedup" is
MLflow's server p50 over that: the most any server behind the same client could reach.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from benchmarks.common import table

OPS_PER_CLIENT = {
    "create run": 20,
    "log-batch 10": 20,
    "log-batch 500": 10,
    "log-param batch": 20,
    "get_metric_history": 10,
}
SEARCH_OPS = {"search_runs first page": 16, "search_runs all": 3}


# The replaying stub (a process of its own, so its work does not share the clients' interpreter).
REPLAY = r"""
import http.server, sys, threading, urllib.error, urllib.request
upstream, port = sys.argv[1], int(sys.argv[2])
answers, lock = {}, threading.Lock()
READS = ("/runs/search", "/metrics/get-history", "/runs/get", "/health")

class Replay(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms stall

    def answer(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        endpoint = self.path.split("?")[0]
        key = (self.command, self.path, body) if endpoint.endswith(READS) else (self.command, endpoint)
        with lock:
            known = answers.get(key)
        if known is None:
            request = urllib.request.Request(upstream + self.path, data=body or None, method=self.command,
                                             headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request) as response:
                    known = (response.status, response.read())
            except urllib.error.HTTPError as error:  # an error answer is an answer too
                known = (error.code, error.read())
            with lock:
                answers[key] = known
        status, data = known
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = answer

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("127.0.0.1", port), Replay).serve_forever()
"""
CLIENT_ALONE = "MLflow client alone"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(url: str, proc: subprocess.Popen[Any], timeout: float = 180, path: str = "/health") -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}{path}", timeout=5) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"{url} did not come up")


@contextlib.contextmanager
def _process(cmd: list[str], url: str, path: str = "/health") -> Iterator[str]:
    """Run ``cmd`` (a server) until the block ends, once ``url + path`` answers 200."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_http(url, proc, path=path)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def _fill(uri: str, runs: int) -> str:
    """A search experiment of ``runs`` runs (3 metrics, 2 params each); returns its id."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    client = MlflowClient(uri)
    experiment_id = client.create_experiment(f"search-{uuid.uuid4().hex[:6]}")
    now = int(time.time() * 1000)
    for i in range(runs):
        run = client.create_run(experiment_id, start_time=now + i)
        client.log_batch(
            run.info.run_id,
            metrics=[Metric(f"m{k}", (i * 7 + k) % 101 / 100, now, 0) for k in range(3)],
            params=[Param("lr", str(10 ** -(i % 4))), Param("i", str(i))],
        )
    return experiment_id


def _workloads(client: Any, experiment_id: str, search_experiment: str) -> dict[str, Callable[[], Any]]:
    from mlflow.entities import Metric, Param

    run_id = client.create_run(experiment_id).info.run_id
    now = int(time.time() * 1000)
    history_run = client.create_run(experiment_id).info.run_id
    client.log_batch(history_run, metrics=[Metric("loss", 1 / (s + 1), now, s) for s in range(500)])
    step = iter(range(10**9))

    def batch(n: int) -> Callable[[], Any]:
        def work() -> None:
            base = next(step) * n
            client.log_batch(run_id, metrics=[Metric(f"k{j % 10}", float(j), now, base + j) for j in range(n)])

        return work

    def params() -> None:
        i = next(step)
        client.log_batch(run_id, params=[Param(f"p{i}_{j}", str(j)) for j in range(10)])

    def search_all() -> int:
        seen, token = 0, None
        while True:
            page = client.search_runs([search_experiment], max_results=1000, page_token=token)
            seen += len(page)
            token = page.token
            if not token:
                return seen

    return {
        "create run": lambda: client.create_run(experiment_id),
        "log-batch 10": batch(10),
        "log-batch 500": batch(500),
        "log-param batch": params,
        "search_runs first page": lambda: client.search_runs([search_experiment], max_results=100),
        "search_runs all": search_all,
        "get_metric_history": lambda: client.get_metric_history(history_run, "loss"),
    }


def _run_clients(works: list[Callable[[], Any]], ops: int) -> tuple[list[float], int, float]:
    """Each work in its own thread ``ops`` times at once: latencies (ms), errors, wall seconds."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()

    def client_loop(work: Callable[[], Any]) -> None:
        nonlocal errors
        for _ in range(ops):
            started = time.perf_counter()
            try:
                work()
            except Exception:
                with lock:
                    errors += 1
                continue
            with lock:
                latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    with ThreadPoolExecutor(len(works)) as pool:
        list(pool.map(client_loop, works))
    return latencies, errors, time.perf_counter() - started


def _measure(uri: str, search_experiment: str, clients: int) -> dict[str, tuple[float, float, float, int]]:
    """workload -> (p50 ms, p95 ms, ops/s, errors) with ``clients`` concurrent clients."""
    from mlflow import MlflowClient

    print(f"  measuring {uri.split('://')[0]}: with {clients} client(s)", file=sys.stderr, flush=True)

    setup = MlflowClient(uri)
    experiment_id = setup.create_experiment(f"bench-{uuid.uuid4().hex[:6]}")
    per_client = [_workloads(MlflowClient(uri), experiment_id, search_experiment) for _ in range(clients)]
    results: dict[str, tuple[float, float, float, int]] = {}
    for name in [*OPS_PER_CLIENT, *SEARCH_OPS]:
        # The same number of operations in all, shared by the clients (at least one each).
        ops = max(1, (OPS_PER_CLIENT.get(name) or SEARCH_OPS[name]) // clients)
        per_client[0][name]()  # warm up: imports, plans, connections
        latencies, errors, wall = _run_clients([w[name] for w in per_client], ops)
        if latencies:
            ordered = sorted(latencies)
            p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
            results[name] = (statistics.median(ordered), p95, len(latencies) / wall, errors)
        else:
            results[name] = (float("nan"), float("nan"), 0.0, errors)
    return results


def bench_server(runs: int = 1000, concurrency: tuple[int, ...] = (1, 16)) -> str:
    """Run the suite and return its table."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    work = tempfile.mkdtemp(prefix="runlake-bench-server-")
    try:
        lake = f"{work}/lake"
        db = f"sqlite:///{work}/mlflow.db"
        runlake_uri = f"runlake://{lake}"
        search = {"runlake": _fill(runlake_uri, runs), "sqlite": _fill(db, runs)}
        from runlake.ingest.store import flush_all

        flush_all()
        rl_port, ml_port = _free_port(), _free_port()
        runlake_cmd = [
            sys.executable,
            "-m",
            "runlake.app.cli",
            "server",
            "--lake",
            lake,
            "--port",
            str(rl_port),
            "--workers",
            "16",
        ]
        mlflow_cmd = [
            sys.executable, "-m", "mlflow", "server", "--backend-store-uri", db,
            "--artifacts-destination", f"{work}/mlartifacts", "--host", "127.0.0.1", "--port", str(ml_port), "--workers", "1",
        ]  # fmt: skip
        measured: dict[tuple[str, int], dict[str, tuple[float, float, float, int]]] = {}
        for clients in concurrency:
            measured[("runlake: in process", clients)] = _measure(runlake_uri, search["runlake"], clients)
            measured[("sqlite: in process", clients)] = _measure(db, search["sqlite"], clients)
        with _process(runlake_cmd, f"http://127.0.0.1:{rl_port}") as url:
            for clients in concurrency:
                measured[("runlake server", clients)] = _measure(url, search["runlake"], clients)
            replay_port = _free_port()
            replay_cmd = [sys.executable, "-c", REPLAY, url, str(replay_port)]
            with _process(replay_cmd, f"http://127.0.0.1:{replay_port}") as replay:
                for clients in concurrency:
                    measured[(CLIENT_ALONE, clients)] = _measure(replay, search["runlake"], clients)
        with _process(mlflow_cmd, f"http://127.0.0.1:{ml_port}") as url:
            for clients in concurrency:
                measured[("mlflow server (SQLite)", clients)] = _measure(url, search["sqlite"], clients)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    rows = []
    pairs = (
        ("runlake server", "mlflow server (SQLite)"),
        ("runlake: in process", "sqlite: in process"),
        (CLIENT_ALONE, "mlflow server (SQLite)"),
    )
    for name in [*OPS_PER_CLIENT, *SEARCH_OPS]:
        for clients in concurrency:
            for ours, theirs in pairs:
                a, b = measured[(ours, clients)][name], measured[(theirs, clients)][name]
                speedup = b[0] / a[0] if a[0] and a[0] == a[0] and b[0] == b[0] else float("nan")
                errors = f"{a[3]}/{b[3]}" if a[3] or b[3] else ""
                rows.append(
                    (
                        name,
                        str(clients),
                        ours.replace(" (SQLite)", ""),
                        f"{a[0]:.1f} / {a[1]:.1f}",
                        f"{a[2]:.0f}",
                        f"{b[0]:.1f} / {b[1]:.1f}",
                        f"{b[2]:.0f}",
                        f"{speedup:.1f}x",
                        errors,
                    )
                )
    header = (
        "workload",
        "clients",
        "runlake side",
        "p50/p95 ms",
        "ops/s",
        "MLflow SQLite p50/p95 ms",
        "ops/s",
        "p50 speedup",
        "errors",
    )
    title = (
        f"MLflow client workload: runlake vs MLflow on SQLite ({runs:,} runs in the search experiment; "
        "servers over HTTP, in process through the tracking URI; concurrent clients are threads; "
        f"'{CLIENT_ALONE}': the client against a stub replaying recorded answers, its speedup the most any server can reach)"
    )
    return table(title, rows, header)
