"""The dashboard driven in headless Chromium (dash.testing). Each test waits for state, never sleeps."""

from __future__ import annotations

import csv
import io
import json
import os
from urllib.parse import quote

import pytest
from dash.testing import errors as dash_errors
from dash.testing.wait import until
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from runlake.app.web import ids
from tests.app.helpers import PLOT_TABS_DRAWN, Grid, chart, click_centred, dash_prop, open_plot_tab, severe_logs
from tests.app.number_cases import CASES as NUMBER_CASES
from tests.app.number_cases import js_literal

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
    """Type a search and press Enter; again if the box lost it (the page re-rendered it while
    its first load settled: the CI of 786360a once saw a search that never narrowed the table)."""
    for _attempt in range(3):
        box = duo.find_element(f"#{ids.RUNS_SEARCH}")
        box.clear()
        box.send_keys(text, Keys.ENTER)
        try:
            until(lambda: duo.find_element(f"#{ids.RUNS_SEARCH}").get_attribute("value") == text, timeout=3)
            return
        except dash_errors.TestingTimeoutError:
            continue
    raise AssertionError(f"the search box did not keep {text!r}")


def test_rl001_every_page_renders_without_console_errors(dash_duo, app, lake):
    dash_duo.start_server(app)
    dash_duo.wait_for_element(f"#{ids.EXP_GRID} .ag-row", timeout=15)
    assert "image-classifier-sweep" in dash_duo.find_element(f"#{ids.EXP_GRID}").text
    _open(dash_duo, "/runs")
    _runs_grid(dash_duo)
    dash_duo.wait_for_contains_text(f"#{ids.RUNS_COUNT}", "runs match")
    # The grids' number formatter agrees with the server's on the shared table of cases.
    shown = dash_duo.driver.execute_script(
        "return arguments[0].map(v => window.dashAgGridFunctions.formatNumber(v === null ? null : Number(v)));",
        [js_literal(v) for v, _ in NUMBER_CASES],
    )
    assert shown == [text for _, text in NUMBER_CASES]
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
    until(
        lambda: 0 < _count(dash_duo) < everything,
        timeout=10,
        msg=f"the count did not narrow from {everything}",
    )
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
    until(
        lambda: (names := [n for n in grid.run_names() if n]) and names == sorted(names) and len(names) > 5,
        timeout=10,
        msg="names ascending",
    )
    first = grid.run_names()[0]
    grid.sort_by("run_name")
    until(
        lambda: (
            (names := [n for n in grid.run_names() if n]) and names == sorted(names, reverse=True) and names[0] != first
        ),
        timeout=10,
        msg="names descending",
    )
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
    edit = dash_duo.driver.find_element(
        By.XPATH, f"//button[contains(@id, '{ids.encode_key('reviewed by')}') and contains(@id, 'run-tag-edit')]"
    )
    edit.click()
    until(lambda: dash_duo.find_element(f"#{ids.RUN_TAG_VALUE}").get_attribute("value") == "dana", timeout=5)
    value = dash_duo.find_element(f"#{ids.RUN_TAG_VALUE}")
    value.send_keys(Keys.CONTROL, "a")
    value.send_keys("emeka")
    dash_duo.find_element(f"#{ids.RUN_TAG_SET}").click()
    dash_duo.wait_for_contains_text(f"#{ids.RUN_TAGS}", "emeka")
    assert lake.get_run(run_id).tags["reviewed by"] == "emeka"
    delete = dash_duo.driver.find_element(
        By.XPATH, f"//button[contains(@id, '{ids.encode_key('reviewed by')}') and contains(@id, 'run-tag-delete')]"
    )
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


def test_rl010_compare_page_draws_each_plot_type(dash_duo, app, lake, monkeypatch):
    from runlake.app.web import charts

    computed = []
    parallel_figure = charts.parallel_figure
    monkeypatch.setattr(charts, "parallel_figure", lambda *a, **k: computed.append(1) or parallel_figure(*a, **k))
    run_ids = lake.search_run_ids(filter_string="run_name LIKE 'image-%' OR run_name LIKE 'sweep-0%'", max_results=12)
    dash_duo.start_server(app)
    _open(dash_duo, "/compare?runs=" + ",".join(run_ids))
    # The curves tab is open first; the other plots are neither computed nor drawn until opened.
    dash_duo.wait_for_element(f"#{ids.CMP_PLOT}-curves .scatterlayer .trace", timeout=15)
    until(
        lambda: len(dash_duo.find_elements(f"#{ids.CMP_PLOT}-curves .scatterlayer .trace")) == len(run_ids), timeout=10
    )
    assert dash_duo.find_elements(f"#{ids.CMP_PLOT}-parallel") == [] and computed == []  # not computed either
    for tab, drawn in PLOT_TABS_DRAWN:
        open_plot_tab(dash_duo, tab)
        dash_duo.wait_for_element(f"#{ids.CMP_PLOT}-{tab} {drawn}", timeout=15)
        assert dash_duo.find_elements(f"#{ids.CMP_PLOT}-curves") == []
    # Back to a tab already drawn: its figure is kept, drawn again at once.
    open_plot_tab(dash_duo, "curves")
    until(
        lambda: len(dash_duo.find_elements(f"#{ids.CMP_PLOT}-curves .scatterlayer .trace")) == len(run_ids), timeout=10
    )
    open_plot_tab(dash_duo, "parallel")
    dash_duo.wait_for_element(f"#{ids.CMP_PLOT}-parallel .parcoords", timeout=15)
    assert computed == [1]  # computed when first opened, not again
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
    until(
        lambda: "optimizer" not in params.column("key") and "seed" in params.column("key"),
        timeout=10,
        msg="identical params hidden, differing ones kept",
    )


def test_rl012_a_url_with_a_filter_reproduces_the_view(dash_duo, app, lake):
    url = (
        "/runs?filter=" + quote("status = 'FAILED'") + "&state=all&sort=run_name:asc&columns=metrics.val_loss,params.lr"
    )
    dash_duo.start_server(app)
    _open(dash_duo, url)
    grid = _runs_grid(dash_duo)
    assert dash_duo.find_element(f"#{ids.RUNS_SEARCH}").get_attribute("value") == "status = 'FAILED'"
    expected = lake.search_runs(
        filter_string="status = 'FAILED'", run_view_type="ALL", order_by=["attributes.run_name ASC"]
    )
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
    dash_duo.driver.find_element(
        By.XPATH, "//button[contains(@class, 'artifact-file') and contains(@title, 'feature_importance.csv')]"
    ).click()
    dash_duo.wait_for_contains_text(f"#{ids.RUN_ARTIFACT_PREVIEW} table", "f0", timeout=10)
    dash_duo.driver.find_element(By.XPATH, "//summary[contains(., 'plots')]").click()
    dash_duo.driver.find_element(
        By.XPATH, "//button[contains(@class, 'artifact-file') and contains(@title, 'importance.plotly.json')]"
    ).click()
    dash_duo.wait_for_element(f"#{ids.RUN_ARTIFACT_PREVIEW} .js-plotly-plot", timeout=10)
    _open(dash_duo, f"/runs/{deleted}")
    dash_duo.wait_for_contains_text(f"#{ids.RUN_DELETED}", "This run is deleted")
    dash_duo.find_element(f"#{ids.RUN_RESTORE}").click()
    dash_duo.wait_for_contains_text(f"#{ids.RUN_MESSAGE}", "Restored")
    assert lake.get_run(deleted).info["lifecycle_stage"] == "active"
    assert severe_logs(dash_duo) == []


def test_rl014_expanding_a_sweep_parent_shows_its_children_under_it(dash_duo, app, lake):
    parent = _run_id(lake, "sweep-1")
    children = sorted(lake.search_runs(filter_string=f"parent_run_id = '{parent}'")["run_name"])
    assert len(children) >= 2
    dash_duo.start_server(app)
    _open(dash_duo, "/runs?filter=" + quote("run_name LIKE 'sweep-%'") + "&sort=run_name:asc")
    grid = _runs_grid(dash_duo)
    # Only parents at the top level; each shows a toggle with its count of matching children.
    until(lambda: grid.run_names()[:1] == ["sweep-1"], timeout=10)
    assert not set(children) & set(grid.run_names())
    assert grid.toggle_text("sweep-1") == f"▸{len(children)}"
    top_level = grid.run_names()
    grid.select(0)
    dash_duo.wait_for_text_to_equal(f"#{ids.RUNS_SELECTED}", "1 selected")
    grid.toggle_nested("sweep-1")
    until(
        lambda: grid.run_names() == ["sweep-1", *children, *top_level[1:]],
        timeout=10,
        msg="children right under their parent",
    )
    assert grid.toggle_text("sweep-1") == f"▾{len(children)}"
    assert grid.indent(children[0]) > grid.indent("sweep-1")
    until(lambda: f"expanded={parent}" in dash_duo.driver.current_url, timeout=5)
    dash_duo.wait_for_text_to_equal(f"#{ids.RUNS_SELECTED}", "1 selected")  # the selection survives
    # The link with the expansion reopens it.
    _open(dash_duo, dash_duo.driver.current_url.replace(dash_duo.server_url, ""))
    _runs_grid(dash_duo)
    until(lambda: grid.run_names()[: 1 + len(children)] == ["sweep-1", *children], timeout=10)
    grid.toggle_nested("sweep-1")
    until(lambda: grid.run_names() == top_level, timeout=10, msg="collapsing hides the children")
    until(lambda: "expanded=" not in dash_duo.driver.current_url, timeout=5)
    assert severe_logs(dash_duo) == []


def _last_x(duo, container: str, title: str):
    """The greatest x of the last trace of the graph titled ``title``."""
    return duo.driver.execute_script(
        """const [container, title] = arguments;
        const gd = [...document.querySelectorAll(`${container} .js-plotly-plot`)]
            .find(g => g.layout && g.layout.title && g.layout.title.text === title);
        const xs = gd && gd.data.length ? gd.data[gd.data.length - 1].x : [];
        return xs.length ? Math.max(...xs) : null;""",
        container,
        title,
    )


def _drag_zoom(duo, graph: str) -> None:
    """Zoom a Plotly graph the way a user does: drag a box across the middle of its plot area."""
    from selenium.webdriver.common.action_chains import ActionChains

    rect = duo.driver.execute_script(
        """const area = document.querySelector(arguments[0] + ' .nsewdrag');
        area.scrollIntoView({block: 'center'});
        const r = area.getBoundingClientRect();
        return {x: r.left, y: r.top, width: r.width, height: r.height};""",
        graph,
    )
    y = int(rect["y"] + rect["height"] / 2)
    actions = ActionChains(duo.driver)
    actions.w3c_actions.pointer_action.move_to_location(int(rect["x"] + rect["width"] * 0.3), y)
    actions.w3c_actions.pointer_action.pointer_down()
    actions.w3c_actions.pointer_action.move_to_location(int(rect["x"] + rect["width"] * 0.6), y + 20)
    actions.w3c_actions.pointer_action.pointer_up()
    actions.perform()


@pytest.fixture
def live_app(lake):
    from runlake.app.settings import Settings
    from runlake.app.web.server import create_app

    return create_app(Settings(lake=str(lake.root), refresh_seconds=0.5), lake)


def test_rl015_live_refresh_keeps_selection_and_zoom_and_stops(dash_duo, live_app, lake):
    from runlake.ingest import LakeClient

    client = LakeClient(str(lake.root))
    experiment = lake.get_experiment_by_name("tabular-baselines")["experiment_id"]
    run_id = client.create_run(experiment, run_name="live-run")  # RUNNING, started now: first in the table
    client.log_batch(run_id, metrics=[("val_loss", 0.9, None, 0), ("val_loss", 0.7, None, 1)])
    client.flush()
    dash_duo.start_server(live_app)
    _open(dash_duo, "/runs?columns=metrics.val_loss")
    grid = _runs_grid(dash_duo)
    until(lambda: grid.run_names()[:1] == ["live-run"], timeout=10)
    assert dash_duo.find_element(f"#{ids.RUNS_LIVE} input").is_selected()  # on by default
    dash_duo.wait_for_text_to_equal(f"#{ids.RUNS_LIVE_STATE}", "updating every 0.5 s")
    grid.select(0)
    dash_duo.wait_for_text_to_equal(f"#{ids.RUNS_SELECTED}", "1 selected")
    client.log_metric(run_id, "val_loss", 0.25, step=2)
    client.flush()
    until(lambda: grid.column("metrics.val_loss")[:1] == ["0.25"], timeout=10, msg="the table picks up the new point")
    assert dash_duo.find_element(f"#{ids.RUNS_SELECTED}").text == "1 selected"
    assert dash_duo.find_element(
        f'#{ids.RUNS_GRID} .ag-row[row-index="0"] [col-id="ag-Grid-SelectionColumn"] input'
    ).is_selected()
    # Toggle off: the interval stops; on again: the next write shows up.
    dash_duo.find_element(f"#{ids.RUNS_LIVE} input").click()
    dash_duo.wait_for_text_to_equal(f"#{ids.RUNS_LIVE_STATE}", "paused")
    until(lambda: dash_prop(dash_duo, ids.RUNS_TICK, "disabled") is True, timeout=5)
    dash_duo.find_element(f"#{ids.RUNS_LIVE} input").click()
    dash_duo.wait_for_text_to_equal(f"#{ids.RUNS_LIVE_STATE}", "updating every 0.5 s")
    assert dash_prop(dash_duo, ids.RUNS_TICK, "disabled") is False

    # The run page's charts follow the run too, keeping the user's zoom.
    _open(dash_duo, f"/runs/{run_id}")
    until(lambda: (chart(dash_duo, f"#{ids.RUN_CHARTS}", "val_loss") or {}).get("points") == 3, timeout=15)
    assert dash_duo.find_element(f"#{ids.RUN_LIVE} input").is_selected()
    _drag_zoom(dash_duo, f"#{ids.RUN_CHARTS} .js-plotly-plot")
    until(lambda: chart(dash_duo, f"#{ids.RUN_CHARTS}", "val_loss")["autorange"] is False, timeout=5, msg="zoomed in")
    zoomed = chart(dash_duo, f"#{ids.RUN_CHARTS}", "val_loss")["range"]
    client.log_batch(run_id, metrics=[("val_loss", 0.2, None, 3), ("val_loss", 0.15, None, 4)])
    client.flush()
    # Zoomed, the chart reads from its left edge on (the lake re-buckets the range shown).
    until(
        lambda: _last_x(dash_duo, f"#{ids.RUN_CHARTS}", "val_loss") == 4,
        timeout=10,
        msg="the chart picks up new points",
    )
    assert chart(dash_duo, f"#{ids.RUN_CHARTS}", "val_loss")["range"] == zoomed  # the user's zoom is kept
    client.set_terminated(run_id, "FINISHED")
    dash_duo.wait_for_text_to_equal(f"#{ids.RUN_STATUS}", "Finished", timeout=10)
    until(
        lambda: dash_prop(dash_duo, ids.RUN_TICK, "disabled") is True, timeout=5, msg="refresh stops once the run ends"
    )

    # A view whose runs have all ended does not refresh.
    _open(dash_duo, "/runs?filter=" + quote("run_name = 'live-run'"))
    _runs_grid(dash_duo)
    until(lambda: grid.column("status") == ["Finished"], timeout=10)
    dash_duo.wait_for_text_to_equal(f"#{ids.RUNS_LIVE_STATE}", "no running runs shown")
    assert dash_prop(dash_duo, ids.RUNS_TICK, "disabled") is True
    assert severe_logs(dash_duo) == []


def test_rl016_time_created_and_models_filters(dash_duo, app, lake):
    from runlake.ingest import LakeClient

    client = LakeClient(str(lake.root))
    experiment = lake.get_experiment_by_name("llm-finetune")["experiment_id"]
    fresh = client.create_run(experiment, run_name="fresh-run")
    client.set_terminated(fresh, "FINISHED")
    day = 1_767_139_200_000  # 2025-12-31T00:00Z
    on_day = lake.search_run_ids(created_after=day, created_before=day + 86_400_000 - 1)
    with_model = lake.search_runs(has_model=True)
    assert 0 < len(on_day) < len(lake.search_run_ids()) and len(with_model) > 0

    dash_duo.start_server(app)
    _open(dash_duo, "/runs?time=custom&start=2025-12-31&end=2025-12-31")
    grid = _runs_grid(dash_duo)
    until(lambda: _count(dash_duo) == len(on_day), timeout=10, msg="custom range from the URL")
    assert dash_duo.find_element(f"#{ids.RUNS_TIME_BOX}").is_displayed()
    assert "fresh-run" not in grid.run_names()
    dash_duo.select_dcc_dropdown(f"#{ids.RUNS_TIME}", "Last hour")
    until(lambda: _count(dash_duo) == 1 and grid.run_names() == ["fresh-run"], timeout=10)
    assert not dash_duo.find_element(f"#{ids.RUNS_TIME_BOX}").is_displayed()
    until(lambda: "time=hour" in dash_duo.driver.current_url, timeout=5)
    dash_duo.select_dcc_dropdown(f"#{ids.RUNS_TIME}", "All time")
    dash_duo.select_dcc_dropdown(f"#{ids.RUNS_MODELS}", "With a logged model")
    until(lambda: _count(dash_duo) == len(with_model), timeout=10)
    until(lambda: set(n for n in grid.run_names() if n) == set(with_model["run_name"]), timeout=10)
    assert "models=with" in dash_duo.driver.current_url


def test_rl017_select_all_matching_downloads_every_matching_run(dash_duo, app, lake, monkeypatch):
    from runlake.app.web.pages import runs as runs_page

    monkeypatch.setattr(runs_page, "BLOCK_SIZE", 10)  # the browser holds a few small blocks only
    expected = lake.search_run_ids()
    dash_duo.start_server(app)
    _open(dash_duo, "/runs")
    grid = _runs_grid(dash_duo)
    until(lambda: _count(dash_duo) == len(expected), timeout=10)
    loaded = len([n for n in grid.run_names() if n])
    assert loaded < len(expected)
    dash_duo.find_element(f"#{ids.RUNS_SELECT_ALL}").click()
    dash_duo.wait_for_text_to_equal(f"#{ids.RUNS_SELECTED}", f"All {len(expected)} runs selected")
    dash_duo.find_element(f"#{ids.RUNS_CSV}").click()
    target = os.path.join(dash_duo.download_path, "runs.csv")
    until(lambda: os.path.exists(target) and os.path.getsize(target) > 0, timeout=10, msg="runs.csv downloaded")
    with open(target, encoding="utf-8") as handle:
        table = list(csv.reader(io.StringIO(handle.read())))
    run_ids = [row[table[0].index("Run ID")] for row in table[1:]]
    # Every matching run, nested ones included (the table shows those under their parents).
    assert sorted(run_ids) == sorted(expected)


def test_rl018_model_snippets_and_reproduce_section(dash_duo, app, lake, monkeypatch, tmp_path):
    import platform

    import runlake.ingest as rl
    from runlake.ingest import fluent

    monkeypatch.setattr(fluent, "_lake", str(lake.root))
    with rl.start_run(run_name="repro-run", experiment="reproduce") as run:
        run.log_metric("loss", 0.5, step=0)
    repro = run.run_id
    model_run = lake.search_run_ids(has_model=True)[0]
    model_name = json.loads(lake.get_run(model_run).tags["mlflow.log-model.history"])[0]["artifact_path"]

    dash_duo.start_server(app)
    _open(dash_duo, f"/runs/{model_run}")
    model = dash_duo.driver.find_element(By.XPATH, "//details[summary[normalize-space()='Model']]")
    until(lambda: f"runs:/{model_run}/{model_name}" in model.text, timeout=10)
    headings = model.text.lower()  # headings are styled in capitals
    assert "predict on a pandas dataframe" in headings and "predict on a spark dataframe" in headings
    assert model.text.count(f"runs:/{model_run}/{model_name}") >= 3  # the URI line and both snippets

    _open(dash_duo, f"/runs/{repro}")
    summary = dash_duo.driver.find_element(By.XPATH, "//summary[normalize-space()='Reproduce run']")
    summary.click()
    section = summary.find_element(By.XPATH, "..")
    until(lambda: platform.python_version() in section.text, timeout=10)
    assert platform.system() in section.text or platform.platform() in section.text
    assert "packages" in section.text
    dash_duo.find_element(f"#{ids.RUN_REPRO_SCRIPT}").click()
    script = os.path.join(dash_duo.download_path, f"reproduce-{repro[:8]}.sh")
    until(lambda: os.path.exists(script) and os.path.getsize(script) > 0, timeout=10, msg="reproduce script downloaded")
    with open(script, encoding="utf-8") as handle:
        text = handle.read()
    assert repro in text and "pip install -r requirements.txt" in text
    section.find_element(By.LINK_TEXT, "Download requirements.txt").click()
    requirements = os.path.join(dash_duo.download_path, "requirements.txt")
    until(
        lambda: os.path.exists(requirements) and os.path.getsize(requirements) > 0,
        timeout=10,
        msg="requirements downloaded",
    )
    with open(requirements, encoding="utf-8") as handle:
        assert "==" in handle.read()
    assert severe_logs(dash_duo) == []


def test_rl019_compare_page_names_runs_it_could_not_find(dash_duo, app, lake):
    known = lake.search_run_ids(max_results=2)
    dash_duo.start_server(app)
    _open(dash_duo, "/compare?runs=" + ",".join([*known, "nope"]))
    dash_duo.wait_for_text_to_equal(f"#{ids.CMP_NOTICE}", "1 run not found: nope", timeout=10)
    assert dash_duo.find_element("h1").text == "Comparing 2 runs"
    _open(dash_duo, "/compare?runs=nope,gone")
    dash_duo.wait_for_text_to_equal(f"#{ids.CMP_NOTICE}", "2 runs not found: nope, gone", timeout=10)
    dash_duo.wait_for_contains_text(".empty-state", "No runs to compare")


@pytest.fixture(scope="session")
def wide_lake(tmp_path_factory):
    """A 1,100-run demo lake (read only): enough runs sharing one param value to compare 500."""
    from runlake.demo import build_demo
    from runlake.lake import Lake

    root = tmp_path_factory.mktemp("wide") / "lake"
    build_demo(root, runs=1_100)
    return Lake(root)


def test_rl020_compare_500_runs_renders_and_diff_only_works(dash_duo, wide_lake):
    from runlake.app.settings import Settings
    from runlake.app.web.server import create_app
    from runlake.app.web.services import MAX_COMPARE

    run_ids = wide_lake.search_run_ids(filter_string="params.augment = 'true'", max_results=MAX_COMPARE)
    assert len(run_ids) == MAX_COMPARE == 500
    dash_duo.start_server(create_app(Settings(lake=str(wide_lake.root)), wide_lake))
    _open(dash_duo, "/compare?runs=" + ",".join(run_ids))
    dash_duo.wait_for_text_to_equal("h1", "Comparing 500 runs", timeout=20)
    for grid_id in (ids.CMP_DETAILS, ids.CMP_PARAMS, ids.CMP_METRICS):
        dash_duo.wait_for_element(f"#{grid_id} .ag-row", timeout=20)
    until(lambda: (chart(dash_duo, f"#{ids.CMP_PLOT}-curves") or {}).get("traces") == 500, timeout=20)
    for tab, drawn in PLOT_TABS_DRAWN:
        open_plot_tab(dash_duo, tab)
        dash_duo.wait_for_element(f"#{ids.CMP_PLOT}-{tab} {drawn}", timeout=20)
    params = Grid(dash_duo, ids.CMP_PARAMS)
    until(lambda: {"augment", "lr"} <= set(params.column("key")), timeout=10)
    click_centred(dash_duo, dash_duo.find_element(f"#{ids.CMP_DIFF} input"))
    until(
        lambda: "augment" not in params.column("key") and "lr" in params.column("key"),
        timeout=10,
        msg="the param every run shares is hidden",
    )
    assert severe_logs(dash_duo) == []
