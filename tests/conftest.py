"""Shared fixtures: a fresh lake directory per test, and the ingest globals reset around it."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The console script of the interpreter running the tests (the venv's own), never one that
# happens to be on PATH: a fresh machine has no other runlake installed.
RUNLAKE = str(Path(sys.executable).with_name("runlake"))
# Dashboards started by tests keep their state caches in a folder of this run, not in ~/.cache.
os.environ.setdefault("RUNLAKE_CACHE_DIR", tempfile.mkdtemp(prefix="runlake-test-cache-"))
# MLflow calls that name no tracking URI (loading a model by path, mlflow.models.predict) write
# to ./mlruns by default: give them a folder of this run instead of the checkout.
os.environ.setdefault("MLFLOW_TRACKING_URI", "file://" + tempfile.mkdtemp(prefix="runlake-test-mlruns-"))


@pytest.fixture(autouse=True)
def _mlflow_environment_kept() -> object:
    """MLflow's fluent API exports MLFLOW_EXPERIMENT_ID (and friends) into os.environ; a test
    that calls it must not hand them to the subprocesses of the tests after it."""
    before = {k: v for k, v in os.environ.items() if k.startswith("MLFLOW_")}
    yield
    for name in [k for k in os.environ if k.startswith("MLFLOW_")]:
        if name not in before:
            del os.environ[name]
    os.environ.update(before)


@pytest.fixture
def lake_dir(tmp_path: Path) -> str:
    return str(tmp_path / "lake")


@pytest.fixture
def rl(lake_dir: str, monkeypatch: pytest.MonkeyPatch):
    """``runlake.ingest`` pointed at a fresh lake, with no active run left over."""
    import runlake.ingest as rl
    from runlake.ingest import fluent

    monkeypatch.setattr(fluent, "_lake", lake_dir)
    monkeypatch.setattr(fluent, "_experiment_name", None)
    monkeypatch.setattr(fluent, "_experiment_id", None)
    # MLflow's variables choose (and resume) runs as they do in MLflow; none leaks in from outside.
    for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(name, raising=False)
    yield rl
    while rl.active_run() is not None:
        rl.end_run()


def run_python(
    code: str, *, env: dict[str, str] | None = None, cwd: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run a Python snippet in a fresh interpreter (real processes for exit/crash tests)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=timeout,
    )
