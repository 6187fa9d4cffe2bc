"""A lake written by unmodified MLflow code (the plugin) shows in the dashboard (issue 11)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from dash.testing.wait import until
from selenium.webdriver.common.by import By

from runlake.app.web import ids
from tests.app.helpers import Grid, severe_logs

pytest.importorskip("mlflow")
pytestmark = pytest.mark.browser


def _section_text(duo, title: str) -> str:
    """The text of the run page's collapsible section called ``title`` (e.g. "Parameters")."""
    summary = duo.driver.find_element(By.XPATH, f"//summary[contains(@class, 'section-title')][contains(., '{title}')]")
    return summary.find_element(By.XPATH, "..").text


def test_a_run_logged_by_mlflow_through_the_plugin_shows_by_name_with_its_params_and_metrics(dash_duo, tmp_path):
    from runlake.app.settings import Settings
    from runlake.app.web.server import create_app
    from runlake.lake import Lake
    from tests.mlflow_compat.test_examples import FLOWS

    # The fluent-API flow of tests/mlflow_compat/test_examples.py, as a user runs it: a script
    # whose only runlake setting is MLFLOW_TRACKING_URI.
    # The logistic-regression flow adds a run with an MLflow 3 model (``mlflow.sklearn.log_model``).
    root = str(tmp_path / "lake")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_TRACKING_URI"] = f"runlake://{root}"
    for name in ("fluent", "logistic"):
        script = tmp_path / f"{name}.py"
        script.write_text(textwrap.dedent(FLOWS[name]))
        done = subprocess.run(
            [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr[-3000:]

    lake = Lake(root)
    [run_id] = lake.search_run_ids(filter_string="tags.mlflow.runName = 'docstrings'")
    [model_run] = lake.search_run_ids(has_model=True)
    dash_duo.start_server(create_app(Settings(lake=root, refresh_seconds=2.0), lake))
    dash_duo.driver.get(dash_duo.server_url + "/runs")
    grid = Grid(dash_duo, ids.RUNS_GRID)
    dash_duo.wait_for_element(f"#{ids.RUNS_GRID} .ag-row .run-link", timeout=15)
    until(lambda: {"docstrings", "PARENT_RUN"} <= set(grid.run_names()), timeout=15)

    dash_duo.driver.find_element(By.XPATH, f"//div[@id='{ids.RUNS_GRID}']//a[normalize-space()='docstrings']").click()
    until(lambda: dash_duo.driver.current_url.endswith(f"/runs/{run_id}"), timeout=15)
    dash_duo.wait_for_text_to_equal(f"#{ids.RUN_NAME}", "docstrings", timeout=15)
    params = _section_text(dash_duo, "Parameters")
    for text in ("learning_rate", "0.01", "n_estimators", "10", "resumed", "yes"):
        assert text in params
    metrics = _section_text(dash_duo, "Metrics")
    for text in ("mse", "2,000", "rmse", "50", "acc", "0.7"):
        assert text in metrics
    dash_duo.wait_for_element(f"#{ids.RUN_CHARTS} .js-plotly-plot", timeout=15)  # acc's history drawn
    assert "release.candidate" in _section_text(dash_duo, "Tags")

    # The model MLflow logged shows in its run's Model section, with the URI that loads it.
    dash_duo.driver.get(dash_duo.server_url + f"/runs/{model_run}")
    until(lambda: f"runs:/{model_run}/model" in _section_text(dash_duo, "Model"), timeout=15)
    assert "score" in _section_text(dash_duo, "Metrics")
    assert severe_logs(dash_duo) == []
