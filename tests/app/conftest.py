"""Fixtures for dashboard tests: demo lakes, the app on a lake, headless Chromium, a grid helper.

Browser tests run headless by default (no CLI flag needed) with the options Chromium needs as
root on a machine without network.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

CHROME_ARGS = (
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1400,1000",
)


def pytest_configure(config: pytest.Config) -> None:
    # dash.testing reads --headless; default it on so a bare `pytest` never opens a window.
    if hasattr(config.option, "headless"):
        config.option.headless = True
    # Two test runs on one machine (two checkouts) must not share dash.testing's ports: a
    # runner that finds another run's server on "its" port takes it for its own.
    base = os.environ.get("RUNLAKE_TEST_PORT_BASE")
    if base:
        from dash.testing.application_runners import BaseDashRunner

        BaseDashRunner._next_port = int(base)


# Chromium makes a folder in TMPDIR for each browser it starts (its singleton socket, a profile)
# and leaves it there when the browser is stopped rather than closed: hundreds per run. The
# browsers of a test session get a TMPDIR of their own, removed at the end of the session.
_BROWSER_TMP: str | None = None


def pytest_unconfigure(config: pytest.Config) -> None:
    global _BROWSER_TMP
    if _BROWSER_TMP is not None:
        shutil.rmtree(_BROWSER_TMP, ignore_errors=True)
        _BROWSER_TMP = None


def pytest_setup_options() -> Any:
    from selenium.webdriver.chrome.options import Options

    global _BROWSER_TMP
    if _BROWSER_TMP is None:
        # Python's own temporary directory is chosen once and kept (tempfile caches it), so
        # only the processes started from here on - chromedriver and Chromium - use this one.
        _BROWSER_TMP = tempfile.mkdtemp(prefix="runlake-test-browsers-")
        tempfile.gettempdir()
        os.environ["TMPDIR"] = _BROWSER_TMP
    options = Options()
    for arg in CHROME_ARGS:
        options.add_argument(arg)
    chromium = shutil.which("chromium")
    if chromium:
        options.binary_location = chromium
    return options


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One 60-run demo lake per session; tests that change it take a copy."""
    from runlake.demo import build_demo

    root = tmp_path_factory.mktemp("demo") / "lake"
    build_demo(root, runs=60)
    return root


@pytest.fixture
def demo_lake(demo_template: Path, tmp_path: Path) -> str:
    target = tmp_path / "lake"
    shutil.copytree(demo_template, target, symlinks=True)
    return str(target)


@pytest.fixture
def lake(demo_lake: str) -> Any:
    from runlake.lake import Lake

    return Lake(demo_lake)


@pytest.fixture
def app(lake: Any) -> Any:
    from runlake.app.settings import Settings
    from runlake.app.web.server import create_app

    return create_app(Settings(lake=str(lake.root), refresh_seconds=2.0), lake)
