"""The dashboard driven in headless Chromium (dash.testing). Each test waits for state, never sleeps."""

from __future__ import annotations

import csv
import io
import os
from urllib.parse import quote

import pytest
from dash.testing.wait import until
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from runlake.app import ids
from tests.app.helpers import Grid, severe_logs

pytestmark = pytest.mark.browser


def _run_id(lake, name: str) -> str:
    return lake.search_run_ids(filter_string=f"attributes.run_name = '{name}'", run_view_type="ALL")[0]


def _open(duo, path: str) -> None:
    duo.driver.get(duo.server_url + path)


def _runs_grid(duo) -> Grid:
    grid = Grid(duo, ids.RUNS_GRID)
    duo.wait_for_element(f"#{ids.RUNS_GRID} .ag-row .run-link", timeout=15)
    return grid


def _count(duo) -> int:
    text = duo.find_element(f"#{ids.RUNS_COUNT}").text
    return int(text.split()[0].replace(",", "")) if text else -1


def _search(duo, text: str) -> None:
    box = duo.find_element(f"#{ids.RUNS_SEARCH}")
    box.clear()
    box.send_keys(text, Keys.ENTER)


def test_rl001_every_page_renders_without_console_errors(dash_duo, app, lake):
    dash_duo.start_server(app)
    dash_duo.wait_for_element(f"#{ids.EXP_GRID} .ag-row", timeout=15)
    assert "image-classifier-sweep" in dash_duo.find_element(f"#{ids.EXP_GRID}").text
    _open(dash_duo, "/runs")
    _runs_grid(dash_duo)
    dash_duo.wait_for_contains_text(f"#{ids.RUNS_COUNT}", "runs match")
    _open(dash_duo, f"/runs/{_run_id(lake, 'tabular-004')}")
    dash_duo.wait_for_element(f"#{ids.RUN_CHARTS} .js-plotly-plot", timeout=15)
    _open(dash_duo, "/compare?runs=" + ",".join(lake.search_run_ids(max_results=5)))
    dash_duo.wait_for_element(f"#{ids.CMP_PLOT}-curves .js-plotly-plot", timeout=15)
    assert severe_logs(dash_duo) == []


def test_rl002_search_narrows_the_table(dash_duo, app):
    dash_duo.start_server(app)
    _open(dash_duo, "/runs")
    grid = _runs_grid(dash_duo)
    until(lambda: _count(dash_duo) > 0, timeout=10)
    everything = _count(dash_duo)
    _search(dash_duo, "status = 'FAILED'")
    until(lambda: 0 < _count(dash_duo) < everything, timeout=10)
    until(lambda: set(grid.column("status")) == {"Failed"}, timeout=10, msg="only failed runs shown")
    dash_duo.wait_for_contains_text(f"#{ids.RUNS_SEARCH_DESCRIBE}", "status")
    assert "filter=status" in dash_duo.driver.current_url
    assert severe_logs(dash_duo) == []


def test_rl003_invalid_search_shows_the_error_with_its_position(dash_duo, app):
    dash_duo.start_server(app)
    _open(dash_duo, "/runs")
    _runs_grid(dash_duo)
    until(lambda: _count(dash_duo) > 0, timeout=10)
    before = _count(dash_duo)
    _search(dash_duo, "metrics.val_loss <")
    dash_duo.wait_for_contains_text(f"#{ids.RUNS_SEARCH_ERROR}", "column 19", timeout=10)
    error = dash_duo.find_element(f"#{ids.RUNS_SEARCH_ERROR}").text
    assert "^" in error and "a number" in error and "Traceback" not in error
    assert _count(dash_duo) == before  # the table keeps the last valid results
    _search(dash_duo, "metrics.val_loss < 0.5")
    until(lambda: dash_duo.find_element(f"#{ids.RUNS_SEARCH_ERROR}").text == "", timeout=10)


def test_rl004_sorting_a_column_sorts_on_the_server(dash_duo, app):
    dash_duo.start_server(app)
    _open(dash_duo, "/runs")
    grid = _runs_grid(dash_duo)
    grid.sort_by("run_name")
    until(lambda: (names := [n for n in grid.run_names() if n]) and names == sorted(names) and len(names) > 5,
          timeout=10, msg="names ascending")
    first = grid.run_names()[0]
    grid.sort_by("run_name")
    until(lambda: (names := [n for n in grid.run_names() if n]) and names == sorted(names, reverse=True) and names[0] != first,
          timeout=10, msg="names descending")
    until(lambda: "sort=run_name%3Adesc" in dash_duo.driver.current_url, timeout=5)


def test_rl005_delete_then_restore_a_run_with_its_descendants(dash_duo, app, lake):
    parent = _run_id(lake, "sweep-1")
    children = lake.search_run_ids(filter_string=f"parent_run_id = '{parent}'", run_view_type="ALL")
    assert children
    dash_duo.start_server(app)
    _open(dash_duo, "/runs?filter=" + quote("run_name = 'sweep-1'"))
    grid = _runs_grid(dash_duo)
    until(lambda: grid.run_names() == ["sweep-1"], timeout=10)
    grid.select(0)
    dash_duo.wait_for_text_to_equal(f"#{ids.RUNS_SELECTED}", "1 selected")
    dash_duo.find_element(f"#{ids.RUNS_DELETE}").click()
    dash_duo.wait_for_contains_text(f"#{ids.CONFIRM_TEXT}", "sweep-1")
    assert dash_duo.find_element(f"#{ids.CONFIRM_DESCENDANTS} input").is_selected()  # checked by default
    dash_duo.find_element(f"#{ids.CONFIRM_OK}").click()
    dash_duo.wait_for_contains_text(f"#{ids.RUNS_MESSAGE}", f"Deleted {1 + len(children)} runs")
    until(lambda: _count(dash_duo) == 0, timeout=10)
    assert set(lake.search_run_ids(run_view_type="DELETED_ONLY")) >= {parent, *children}
    dash_duo.select_dcc_dropdown(f"#{ids.RUNS_STATE}", "Deleted")
    until(lambda: grid.run_names() == ["sweep-1"], timeout=10)
    grid.select(0)
    dash_duo.wait_for_text_to_equal(f"#{ids.RUNS_SELECTED}", "1 selected (1 deleted)")
    dash_duo.find_element(f"#{ids.RUNS_RESTORE}").click()
    dash_duo.wait_for_contains_text(f"#{ids.RUNS_MESSAGE}", f"Restored {1 + len(children)} runs")
    assert not {parent, *children} & set(lake.search_run_ids(run_view_type="DELETED_ONLY"))


def test_rl006_add_edit_and_delete_a_tag(dash_duo, app, lake):
    run_id = _run_id(lake, "tabular-004")
    dash_duo.start_server(app)
    _open(dash_duo, f"/runs/{run_id}")
    dash_duo.wait_for_element(f"#{ids.RUN_TAG_KEY}")
    dash_duo.find_element(f"#{ids.RUN_TAG_KEY}").send_keys("reviewed by")
    dash_duo.find_element(f"#{ids.RUN_TAG_VALUE}").send_keys("dana")
    dash_duo.find_element(f"#{ids.RUN_TAG_SET}").click()
    dash_duo.wait_for_contains_text(f"#{ids.RUN_MESSAGE}", "Set tag reviewed by")
    dash_duo.wait_for_contains_text(f"#{ids.RUN_TAGS}", "dana")
    assert lake.get_run(run_id).tags["reviewed by"] == "dana"
    edit = dash_duo.driver.find_element(By.XPATH, "//button[contains(@id, 'reviewed by') and contains(@id, 'run-tag-edit')]")
    edit.click()
    until(lambda: dash_duo.find_element(f"#{ids.RUN_TAG_VALUE}").get_attribute("value") == "dana", timeout=5)
    value = dash_duo.find_element(f"#{ids.RUN_TAG_VALUE}")
    value.send_keys(Keys.CONTROL, "a")
    value.send_keys("emeka")
    dash_duo.find_element(f"#{ids.RUN_TAG_SET}").click()
    dash_duo.wait_for_contains_text(f"#{ids.RUN_TAGS}", "emeka")
    assert lake.get_run(run_id).tags["reviewed by"] == "emeka"
    delete = dash_duo.driver.find_element(By.XPATH, "//button[contains(@id, 'reviewed by') and contains(@id, 'run-tag-delete')]")
    delete.click()
    dash_duo.wait_for_contains_text(f"#{ids.RUN_MESSAGE}", "Deleted tag reviewed by")
    until(lambda: "emeka" not in dash_duo.find_element(f"#{ids.RUN_TAGS}").text, timeout=5)
    assert "reviewed by" not in lake.get_run(run_id).tags


def test_rl007_rename_a_run(dash_duo, app, lake):
    run_id = _run_id(lake, "tabular-004")
    dash_duo.start_server(app)
    _open(dash_duo, f"/runs/{run_id}")
    dash_duo.wait_for_text_to_equal(f"#{ids.RUN_NAME}", "tabular-004")
    dash_duo.find_element(f"#{ids.RUN_RENAME}").click()
    box = dash_duo.find_element(f"#{ids.RUN_RENAME_INPUT}")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys("baseline <b>v2</b>")
    dash_duo.find_element(f"#{ids.RUN_RENAME_SAVE}").click()
    dash_duo.wait_for_text_to_equal(f"#{ids.RUN_NAME}", "baseline <b>v2</b>")  # shown as text, never as HTML
    assert lake.get_run(run_id).info["run_name"] == "baseline <b>v2</b>"


def test_rl008_edit_notes_as_sanitised_markdown(dash_duo, app, lake):
    run_id = _run_id(lake, "tabular-004")
    dash_duo.start_server(app)
    _open(dash_duo, f"/runs/{run_id}")
    dash_duo.wait_for_element(f"#{ids.RUN_NOTES_EDIT}").click()
    notes = dash_duo.find_element(f"#{ids.RUN_NOTES_INPUT}")
    notes.send_keys("**Best** so far <img src=x onerror=alert(1)>")
    dash_duo.find_element(f"#{ids.RUN_NOTES_SAVE}").click()
    dash_duo.wait_for_text_to_equal(f"#{ids.RUN_NOTES} strong", "Best")
    assert not dash_duo.find_elements(f"#{ids.RUN_NOTES} img")
    assert lake.get_run(run_id).tags["mlflow.note.content"].startswith("**Best** so far")


def test_rl009_csv_download_of_the_selection(dash_duo, app, lake):
    dash_duo.start_server(app)
    _open(dash_duo, "/runs?filter=" + quote("run_name LIKE 'tabular-00%'") + "&sort=run_name:asc")
    grid = _runs_grid(dash_duo)
    until(lambda: len([n for n in grid.run_names() if n]) >= 3, timeout=10)
    names = grid.run_names()[:2]
    grid.select(0)
    grid.select(1)
    dash_duo.wait_for_text_to_equal(f"#{ids.RUNS_SELECTED}", "2 selected")
    dash_duo.find_element(f"#{ids.RUNS_CSV}").click()
    target = os.path.join(dash_duo.download_path, "runs.csv")
    until(lambda: os.path.exists(target) and os.path.getsize(target) > 0, timeout=10, msg="runs.csv downloaded")
    with open(target, encoding="utf-8") as handle:
        table = list(csv.reader(io.StringIO(handle.read())))
    header, rows = table[0], table[1:]
    assert header[:8] == ["Start Time", "Duration", "Run ID", "Name", "Source Type", "Source Name", "User", "Status"]
    assert "lr" in header and "val_loss" in header and header.index("lr") < header.index("val_loss")
    assert [r[3] for r in rows] == names
    run = lake.get_run(rows[0][2])
    assert rows[0][header.index("lr")] == run.params["lr"]


def test_rl010_compare_page_draws_each_plot_type(dash_duo, app, lake):
    run_ids = lake.search_run_ids(filter_string="run_name LIKE 'image-%' OR run_name LIKE 'sweep-0%'", max_results=12)
    dash_duo.start_server(app)
    _open(dash_duo, "/compare?runs=" + ",".join(run_ids))
    dash_duo.wait_for_element(f"#{ids.CMP_PLOT}-parallel .parcoords", timeout=15)
    dash_duo.wait_for_element(f"#{ids.CMP_PLOT}-scatter .scatterlayer .trace", timeout=15)
    dash_duo.wait_for_element(f"#{ids.CMP_PLOT}-contour .contourlayer", timeout=15)
    dash_duo.wait_for_element(f"#{ids.CMP_PLOT}-curves .scatterlayer .trace", timeout=15)
    until(lambda: len(dash_duo.find_elements(f"#{ids.CMP_PLOT}-curves .scatterlayer .trace")) == len(run_ids), timeout=10)
    assert severe_logs(dash_duo) == []


def test_rl011_diff_only_hides_identical_params(dash_duo, app, lake):
    frame = lake.search_runs(filter_string="run_name LIKE 'image-%'")
    pair = None
    for i in range(len(frame)):
        for j in range(i + 1, len(frame)):
            if frame["params.optimizer"][i] == frame["params.optimizer"][j]:
                pair = (frame["run_id"][i], frame["run_id"][j])
                break
        if pair:
            break
    assert pair, "the demo lake has two image runs with the same optimizer"
    dash_duo.start_server(app)
    _open(dash_duo, "/compare?runs=" + ",".join(pair))
    params = Grid(dash_duo, ids.CMP_PARAMS)
    dash_duo.wait_for_element(f"#{ids.CMP_PARAMS} .ag-row", timeout=15)
    until(lambda: {"optimizer", "seed"} <= set(params.column("key")), timeout=10)
    dash_duo.find_element(f"#{ids.CMP_DIFF} input").click()
    until(lambda: "optimizer" not in params.column("key") and "seed" in params.column("key"), timeout=10,
          msg="identical params hidden, differing ones kept")


def test_rl012_a_url_with_a_filter_reproduces_the_view(dash_duo, app, lake):
    url = "/runs?filter=" + quote("status = 'FAILED'") + "&state=all&sort=run_name:asc&columns=metrics.val_loss,params.lr"
    dash_duo.start_server(app)
    _open(dash_duo, url)
    grid = _runs_grid(dash_duo)
    assert dash_duo.find_element(f"#{ids.RUNS_SEARCH}").get_attribute("value") == "status = 'FAILED'"
    expected = lake.search_runs(filter_string="status = 'FAILED'", run_view_type="ALL", order_by=["attributes.run_name ASC"])
    until(lambda: _count(dash_duo) == len(expected), timeout=10)
    until(lambda: grid.run_names()[:5] == expected["run_name"].tolist()[:5], timeout=10)
    headers = [h.get_attribute("col-id") for h in dash_duo.find_elements(f"#{ids.RUNS_GRID} .ag-header-cell")]
    assert "metrics.val_loss" in headers and "params.lr" in headers and "params.seed" not in headers
    assert dash_duo.find_element(f"#{ids.RUNS_STATE}").text.strip().startswith("All")


def test_rl013_artifact_preview_and_a_deleted_run_offers_restore(dash_duo, app, lake):
    run_id = _run_id(lake, "tabular-004")
    deleted = lake.search_run_ids(run_view_type="DELETED_ONLY")[0]
    dash_duo.start_server(app)
    _open(dash_duo, f"/runs/{run_id}")
    dash_duo.driver.find_element(By.XPATH, "//button[contains(@id, 'feature_importance.csv')]").click()
    dash_duo.wait_for_contains_text(f"#{ids.RUN_ARTIFACT_PREVIEW} table", "f0", timeout=10)
    dash_duo.driver.find_element(By.XPATH, "//summary[contains(., 'plots')]").click()
    dash_duo.driver.find_element(By.XPATH, "//button[contains(@id, 'importance.plotly.json')]").click()
    dash_duo.wait_for_element(f"#{ids.RUN_ARTIFACT_PREVIEW} .js-plotly-plot", timeout=10)
    _open(dash_duo, f"/runs/{deleted}")
    dash_duo.wait_for_contains_text(f"#{ids.RUN_DELETED}", "This run is deleted")
    dash_duo.find_element(f"#{ids.RUN_RESTORE}").click()
    dash_duo.wait_for_contains_text(f"#{ids.RUN_MESSAGE}", "Restored")
    assert lake.get_run(deleted).info["lifecycle_stage"] == "active"
    assert severe_logs(dash_duo) == []
