"""Every page survives odd data and faults, in headless Chromium (dash.testing), one test per case.

The lake is written through ``LakeClient`` with the values a hostile-input probe used: plotly
markup and bidi overrides in run names, 6,000-character params, non-ASCII tag keys and artifact
names, an experiment with no runs, a parent id an old client wrote unchecked, damaged files on
disk, and a lake that cannot be written (``chattr +i``: immutable even for root).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from dash.testing.wait import until

from runlake.app.settings import Settings
from runlake.app.web import ids
from runlake.app.web.server import create_app
from runlake.core import layout, writer
from runlake.ingest.client import LakeClient
from runlake.lake import Lake
from tests.app.helpers import Grid, open_plot_tab, severe_logs

pytestmark = pytest.mark.browser

LINK = '<a href="https://evil.example/">click</a>'
BIG = '<span style="font-size:200px">BIG</span>'
RTL = "normal\u202egnp.exe"
LONG_NAME = "n" * 250
FIGURE = {
    "data": [{"type": "bar", "x": [LINK, "plain"], "y": [1, 2], "name": BIG}],
    "layout": {"title": {"text": LINK}},
}


@pytest.fixture
def odd(tmp_path):
    """A lake of odd values: (root, {name: run id}, experiment ids)."""
    root = str(tmp_path / "lake")
    client = LakeClient(root)
    empty = client.create_experiment("empty experiment")  # set_experiment before logging
    exp = client.create_experiment("odd")
    made = {}
    for i, name in enumerate([LINK, BIG, RTL, LONG_NAME, "plain"]):
        run = client.create_run(exp, run_name=name)
        params = {"arch": [LINK, BIG, "cnn", "mlp", "cnn"][i], "lr": str(0.1 * (i + 1))}
        if name == "plain":
            params["blob"] = "p" * 6000
        client.log_batch(run, metrics=[("loss", 1.0 / (i + 1), 1000 + i, i)], params=params)
        client.set_terminated(run)
        made[name] = run
    plain = made["plain"]
    client.set_tag(plain, "équipe", "rouge")
    client.set_tag(plain, "long", "v" * 8000)
    client.log_text(plain, "bonjour café", "café.txt")
    client.log_text(plain, json.dumps(FIGURE), "fig.plotly.json")
    client.flush()
    # A child whose parent id an old client wrote without checking it.
    fs, lake_root = layout.resolve_lake(root)
    child = client.create_run(exp, run_name="child of a bad id")
    client.flush()
    bad = writer.to_table(
        layout.RUNS,
        [{"run_id": child, "parent_run_id": "x'\"y", "version": layout.next_version()}],
    )
    writer.write_part(fs, lake_root, layout.RUNS, bad, exp)
    made["child"] = child
    return root, made, {"empty": empty, "odd": exp}


def _app(root: str, **settings):
    return create_app(Settings(lake=root, refresh_seconds=2.0, **settings), Lake(root))


def _post_callback(app, output_parts: list[str], values: dict[str, object], changed: str):
    """POST to the server-side callback whose output names all ``output_parts``, as a browser
    does: each input and state its value in ``values`` (a pattern-matched input: none)."""
    name = next(n for n in app.callback_map if all(part in n for part in output_parts))
    callback = app.callback_map[name]
    body = {
        "output": name,
        "outputs": [{"id": o.component_id, "property": o.component_property} for o in callback["output"]],
        "inputs": [{**i, "value": values.get(i["id"]) if isinstance(i["id"], str) else []} for i in callback["inputs"]],
        "state": [{**s, "value": values.get(s["id"])} for s in callback["state"]],
        "changedPropIds": [changed],
    }
    return app.server.test_client().post("/_dash-update-component", json=body, headers={"Host": "localhost"})


def _open(duo, path: str) -> None:
    duo.driver.get(duo.server_url + path)


def _no_overflow(duo) -> bool:
    return duo.driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1;")


def test_rl_o01_empty_experiment_renders_on_the_experiments_page(dash_duo, odd):
    root, _made, exps = odd
    dash_duo.start_server(_app(root))
    dash_duo.wait_for_element(f"#{ids.EXP_GRID} .ag-row", timeout=15)
    grid = Grid(dash_duo, ids.EXP_GRID)
    until(lambda: grid.column("name") == ["odd", "empty experiment"], timeout=10)
    until(lambda: grid.column("last_run_text")[1] == "—", timeout=10, msg="no last run: a dash")
    assert grid.column("last_run_text")[0].startswith("20")  # epoch ms, not read as nanoseconds
    assert severe_logs(dash_duo) == []


def test_rl_o02_unknown_ids_give_not_found_pages(dash_duo, odd):
    root, _made, _exps = odd
    dash_duo.start_server(_app(root))
    _open(dash_duo, "/runs?experiments=123456789")
    dash_duo.wait_for_contains_text(".page-title", "Not found", timeout=15)
    assert "123456789" in dash_duo.find_element(".empty-state").text
    _open(dash_duo, "/runs/no-such-run")
    dash_duo.wait_for_contains_text(".page-title", "Run not found", timeout=15)
    _open(dash_duo, "/compare?runs=nope,%27%22x")
    dash_duo.wait_for_contains_text(f"#{ids.CMP_NOTICE}", "not found", timeout=15)


def test_rl_o03_bad_parent_id_leaves_the_runs_grid_working(dash_duo, odd):
    root, made, exps = odd
    dash_duo.start_server(_app(root))
    for experiment in (exps["odd"], ""):
        _open(dash_duo, f"/runs?experiments={experiment}" if experiment else "/runs")
        dash_duo.wait_for_element(f"#{ids.RUNS_GRID} .ag-row .run-link", timeout=15)
        dash_duo.wait_for_contains_text(f"#{ids.RUNS_COUNT}", "6 runs match", timeout=15)
    assert severe_logs(dash_duo) == []


def test_rl_o04_non_ascii_tag_key_deletes_and_artifact_previews(dash_duo, odd):
    root, made, _exps = odd
    run = made["plain"]
    dash_duo.start_server(_app(root))
    _open(dash_duo, f"/runs/{run}")
    dash_duo.wait_for_contains_text(f"#{ids.RUN_TAGS}", "équipe", timeout=15)
    row = dash_duo.driver.find_element(
        "xpath",
        f"//*[@id='{ids.RUN_TAGS}']//tr[.//code[normalize-space()='équipe']]//button[normalize-space()='Delete']",
    )
    row.click()
    dash_duo.wait_for_contains_text(f"#{ids.RUN_MESSAGE}", "Deleted tag équipe", timeout=10)
    until(lambda: "équipe" not in dash_duo.find_element(f"#{ids.RUN_TAGS}").text, timeout=10)
    assert "équipe" not in Lake(root).get_run(run).tags
    dash_duo.driver.find_element("xpath", "//button[contains(@class,'artifact-file')][contains(., 'café.txt')]").click()
    dash_duo.wait_for_contains_text(f"#{ids.RUN_ARTIFACT_PREVIEW}", "bonjour café", timeout=10)


def test_rl_o05_markup_in_user_data_is_never_markup_in_figures(dash_duo, odd):
    root, made, _exps = odd
    dash_duo.start_server(_app(root))
    _open(dash_duo, "/compare?runs=" + ",".join(made[n] for n in (LINK, BIG, RTL, LONG_NAME, "plain")))
    for plot, shown in (("parallel", "\u2039a href"), ("scatter", "<a href")):
        open_plot_tab(dash_duo, plot)
        dash_duo.wait_for_element(f"#{ids.CMP_PLOT}-{plot} .js-plotly-plot .main-svg", timeout=40)
        until(
            lambda plot=plot: "click" in dash_duo.find_element(f"#{ids.CMP_PLOT}-{plot}").text,
            timeout=15,
            msg="the markup shows as text",
        )
        figure = dash_duo.find_element(f"#{ids.CMP_PLOT}-{plot}")
        assert figure.find_elements("css selector", "svg a") == []  # no live link
        assert shown in figure.text  # the markup is shown as text
        big = dash_duo.driver.execute_script(
            "return [...arguments[0].querySelectorAll('svg text, svg tspan')]"
            ".some(t => parseFloat(getComputedStyle(t).fontSize) > 50);",
            figure,
        )
        assert not big
    assert _no_overflow(dash_duo)
    # An uploaded .plotly.json: every string of it is user data.
    _open(dash_duo, f"/runs/{made['plain']}?artifact=fig.plotly.json")
    dash_duo.wait_for_element(f"#{ids.RUN_ARTIFACT_PREVIEW} .js-plotly-plot .main-svg", timeout=15)
    until(lambda: "click" in dash_duo.find_element(f"#{ids.RUN_ARTIFACT_PREVIEW}").text, timeout=10)
    preview = dash_duo.find_element(f"#{ids.RUN_ARTIFACT_PREVIEW}")
    assert preview.find_elements("css selector", "svg a") == []
    assert severe_logs(dash_duo) == []


def test_rl_o06_long_values_are_cut_with_hover_and_bidi_is_neutralised(dash_duo, odd):
    root, made, _exps = odd
    dash_duo.start_server(_app(root))
    _open(dash_duo, f"/runs/{made[LONG_NAME]}")
    dash_duo.wait_for_element(f"#{ids.RUN_NAME}", timeout=15)
    name = dash_duo.find_element(f"#{ids.RUN_NAME} span")
    assert name.get_attribute("title") == LONG_NAME and len(name.text) < 200
    assert _no_overflow(dash_duo)
    _open(dash_duo, f"/runs/{made['plain']}")
    dash_duo.wait_for_contains_text(f"#{ids.RUN_TAGS}", "long", timeout=15)
    assert _no_overflow(dash_duo)
    cut = dash_duo.driver.find_elements("css selector", ".long-text[title^='vvvv']")
    assert cut and len(cut[0].get_attribute("title")) == 8000 and len(cut[0].text) < 200
    _open(dash_duo, f"/runs/{made[RTL]}")
    dash_duo.wait_for_element(f"#{ids.RUN_NAME}", timeout=15)
    until(lambda: dash_duo.find_element(f"#{ids.RUN_NAME}").text == "normal<U+202E>gnp.exe", timeout=10)
    _open(dash_duo, "/runs")
    grid = Grid(dash_duo, ids.RUNS_GRID)
    dash_duo.wait_for_element(f"#{ids.RUNS_GRID} .ag-row .run-link", timeout=15)
    until(lambda: "normal<U+202E>gnp.exe" in grid.run_names(), timeout=10)


def test_rl_o07_damaged_file_while_the_dashboard_runs_shows_a_banner(dash_duo, odd):
    root, made, exps = odd
    dash_duo.start_server(_app(root))
    dash_duo.wait_for_element(f"#{ids.EXP_GRID} .ag-row", timeout=15)
    fs, lake_root = layout.resolve_lake(root)
    victim = writer.list_dir_parts(fs, layout.LakePaths(lake_root).partition_dir(layout.METRICS, exps["odd"]))[0].path
    data = Path(victim).read_bytes()
    Path(victim).write_bytes(data[: len(data) // 2])
    summary = writer.list_parts(fs, lake_root, layout.METRIC_SUMMARIES)[0].path
    Path(summary).write_bytes(b"")
    _open(dash_duo, "/runs")
    dash_duo.wait_for_element(f"#{ids.RUNS_GRID} .ag-row .run-link", timeout=15)
    dash_duo.wait_for_contains_text(f"#{ids.DAMAGE_BANNER}", "damaged file", timeout=15)
    _open(dash_duo, f"/runs/{made['plain']}")
    dash_duo.wait_for_contains_text(f"#{ids.DAMAGE_BANNER}", "skipped", timeout=15)
    assert summary in dash_duo.find_element(f"#{ids.DAMAGE_BANNER}").text
    dash_duo.wait_for_element(f"#{ids.RUN_TAGS}", timeout=10)
    _open(dash_duo, "/")
    dash_duo.wait_for_element(f"#{ids.EXP_GRID} .ag-row", timeout=15)
    dash_duo.wait_for_contains_text(f"#{ids.DAMAGE_BANNER}", "skipped", timeout=10)


@pytest.fixture
def immutable(odd):
    root = odd[0]
    if subprocess.run(["chattr", "-R", "+i", root], capture_output=True, check=False).returncode != 0:
        pytest.skip("chattr +i is not supported here")
    try:
        yield odd
    finally:
        subprocess.run(["chattr", "-R", "-i", root], capture_output=True, check=False)


def test_rl_o08_read_only_lake_says_so_where_the_change_was_made(dash_duo, immutable):
    root, made, _exps = immutable
    assert not os.access(root, os.W_OK) or os.geteuid() == 0
    dash_duo.start_server(_app(root))
    _open(dash_duo, f"/runs/{made['plain']}")
    dash_duo.wait_for_element(f"#{ids.RUN_RENAME}", timeout=15).click()
    box = dash_duo.find_element(f"#{ids.RUN_RENAME_INPUT}")
    box.clear()
    box.send_keys("renamed")
    dash_duo.find_element(f"#{ids.RUN_RENAME_SAVE}").click()
    dash_duo.wait_for_contains_text(f"#{ids.RUN_MESSAGE}", "The lake is read-only: nothing was changed.", timeout=10)
    tag_key = dash_duo.find_element(f"#{ids.RUN_TAG_KEY}")
    tag_key.send_keys("k")
    dash_duo.find_element(f"#{ids.RUN_TAG_SET}").click()
    dash_duo.wait_for_contains_text(f"#{ids.RUN_MESSAGE}", "read-only", timeout=10)
    assert Lake(root).get_run(made["plain"]).info["run_name"] == "plain"


def test_rl_o09_read_only_dashboard_hides_and_refuses_changes(dash_duo, odd):
    root, made, _exps = odd
    app = _app(root, read_only=True)
    dash_duo.start_server(app)
    _open(dash_duo, f"/runs/{made['plain']}")
    dash_duo.wait_for_contains_text(f"#{ids.RUN_TAGS}", "équipe", timeout=15)
    dash_duo.wait_for_contains_text(".pill-read-only", "read-only", timeout=5)
    for hidden in (ids.RUN_RENAME, ids.RUN_NOTES_EDIT, ids.RUN_TAG_SET):
        assert not dash_duo.find_element(f"#{hidden}").is_displayed(), hidden
    assert not [
        b for b in dash_duo.driver.find_elements("xpath", "//button[normalize-space()='Delete']") if b.is_displayed()
    ]
    _open(dash_duo, "/runs")
    dash_duo.wait_for_element(f"#{ids.RUNS_GRID} .ag-row .run-link", timeout=15)
    assert not dash_duo.find_element(f"#{ids.RUNS_DELETE}").is_displayed()
    # The server refuses a change whatever the browser sends.
    values = {ids.RUN_RENAME_SAVE: 1, ids.RUN_RENAME_INPUT: "hacked", ids.RUN_ID: made["plain"]}
    response = _post_callback(app, [f"{ids.RUN_NAME}.children"], values, f"{ids.RUN_RENAME_SAVE}.n_clicks")
    assert response.status_code == 200 and "read-only" in response.get_data(as_text=True)
    assert Lake(root).get_run(made["plain"]).info["run_name"] == "plain"


@pytest.fixture
def sparse(tmp_path):
    """Runs with non-finite values or nothing at all, a deleted run, an experiment whose every
    run is deleted: (root, {name: id})."""
    root = str(tmp_path / "lake")
    client = LakeClient(root)
    emptied = client.create_experiment("every run deleted")
    gone = client.create_run(emptied, run_name="gone")
    client.log_metric(gone, "loss", 1.0, step=0)
    client.set_terminated(gone)
    client.delete_run(gone)
    exp = client.create_experiment("values")
    odd = client.create_run(exp, run_name="non-finite")
    points = [("loss", v, 1000 + s, s) for s, v in enumerate([float("nan"), float("inf"), float("-inf"), 0.5])]
    client.log_batch(odd, metrics=[*points, ("acc", float("inf"), 1000, 0)], params={"lr": "nan"})
    client.set_terminated(odd)
    bare = client.create_run(exp, run_name="bare")  # no metrics, params or user tags
    client.set_terminated(bare)
    client.flush()
    return root, {"emptied": emptied, "exp": exp, "gone": gone, "odd": odd, "bare": bare}


def _not_a_problem_page(duo) -> None:
    assert duo.driver.find_elements("css selector", ".page-problem") == []


def test_rl_o10_nan_inf_bare_and_deleted_runs_render_on_every_page(dash_duo, sparse):
    root, made = sparse
    dash_duo.start_server(_app(root))
    dash_duo.wait_for_element(f"#{ids.EXP_GRID} .ag-row", timeout=15)
    grid = Grid(dash_duo, ids.EXP_GRID)
    until(lambda: sorted(grid.column("name")) == ["every run deleted", "values"], timeout=10)
    names = grid.column("name")
    assert grid.column("last_run_text")[names.index("every run deleted")] == "—"
    _open(dash_duo, f"/runs?experiments={made['emptied']}")
    dash_duo.wait_for_contains_text(f"#{ids.RUNS_EMPTY}", "No runs", timeout=15)
    _not_a_problem_page(dash_duo)
    _open(dash_duo, f"/runs?experiments={made['exp']}")
    dash_duo.wait_for_element(f"#{ids.RUNS_GRID} .ag-row .run-link", timeout=15)
    dash_duo.wait_for_contains_text(f"#{ids.RUNS_COUNT}", "2 runs match", timeout=15)
    _open(dash_duo, f"/runs/{made['odd']}")
    dash_duo.wait_for_element(f"#{ids.RUN_CHARTS} .js-plotly-plot .main-svg", timeout=15)
    _not_a_problem_page(dash_duo)
    _open(dash_duo, f"/runs/{made['bare']}")
    dash_duo.wait_for_contains_text(f"#{ids.RUN_NAME}", "bare", timeout=15)
    _not_a_problem_page(dash_duo)
    _open(dash_duo, f"/runs/{made['gone']}")
    dash_duo.wait_for_contains_text(f"#{ids.RUN_NAME}", "gone", timeout=15)
    dash_duo.wait_for_element(f"#{ids.RUN_RESTORE}", timeout=10)
    _not_a_problem_page(dash_duo)
    _open(dash_duo, f"/compare?runs={made['odd']},{made['bare']},{made['gone']}")
    dash_duo.wait_for_element(f"#{ids.CMP_PLOT}-curves .js-plotly-plot .main-svg", timeout=30)
    _not_a_problem_page(dash_duo)
    assert [entry["message"] for entry in severe_logs(dash_duo)] == []


def test_rl_o11_a_damaged_file_found_after_the_page_rendered_shows_the_banner(dash_duo, tmp_path):
    """Only a metrics file is damaged: the lake finds out when the run page's charts read it,
    after the page itself rendered; the banner comes up on that page without a reload."""
    import pyarrow.parquet as pq

    root = str(tmp_path / "lake")
    client = LakeClient(root)
    exp = client.create_experiment("late damage")
    for name in ("first", "second"):
        run = client.create_run(exp, run_name=name)
        client.log_batch(run, metrics=[("loss", 1.0 / (s + 1), 1000 + s, s) for s in range(20)])
        client.set_terminated(run)
        client.flush()
    fs, lake_root = layout.resolve_lake(root)
    victim = writer.list_dir_parts(fs, layout.LakePaths(lake_root).partition_dir(layout.METRICS, exp))[0].path
    (run_id,) = set(pq.read_table(victim, columns=["run_id"])["run_id"].to_pylist())
    data = Path(victim).read_bytes()
    Path(victim).write_bytes(data[: len(data) // 2])
    dash_duo.start_server(_app(root))
    _open(dash_duo, f"/runs/{run_id}")
    dash_duo.wait_for_element(f"#{ids.RUN_CHARTS} .js-plotly-plot", timeout=15)
    dash_duo.wait_for_contains_text(f"#{ids.DAMAGE_BANNER}", "1 damaged file skipped", timeout=15)
    assert victim in dash_duo.find_element(f"#{ids.DAMAGE_BANNER}").text
    assert severe_logs(dash_duo) == []


def test_a_tag_change_on_a_run_purged_meanwhile_says_so(tmp_path, monkeypatch):
    """The run's record read back after a tag change can be gone (retention purged it in
    between): the page says so instead of failing the callback."""
    from runlake.app.web import services as services_module

    root = str(tmp_path / "lake")
    client = LakeClient(root)
    run_id = client.create_run(client.create_experiment("purged"), run_name="soon gone")
    client.flush()
    app = _app(root)
    monkeypatch.setattr(services_module.Services, "get_run", lambda self, run_id: None)
    values = {ids.RUN_TAG_SET: 1, ids.RUN_TAG_KEY: "team", ids.RUN_TAG_VALUE: "a", ids.RUN_ID: run_id}
    response = _post_callback(app, [f"{ids.RUN_TAGS}.children", ids.RUN_MESSAGE], values, f"{ids.RUN_TAG_SET}.n_clicks")
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    assert "no longer exists" in response.get_data(as_text=True)
    assert Lake(root).get_run(run_id).tags.get("team") == "a"  # the change itself was made
