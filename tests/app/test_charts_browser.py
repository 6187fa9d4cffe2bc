"""Charts of long histories in headless Chromium: bucketed traces, the band, zoom to raw points, groups."""

from __future__ import annotations

import math

import pytest
from dash.testing import errors as dash_errors
from dash.testing.wait import until

from runlake.app.web import ids
from tests.app.helpers import severe_logs

pytestmark = pytest.mark.browser

T0 = 1_700_000_000_000
LONG = 50_000


@pytest.fixture
def chart_lake(tmp_path):
    """A long run (50k points of loss and acc) and six short runs in three optimizer groups,
    one named with plotly markup."""
    import numpy as np
    import pyarrow as pa

    from runlake.ingest import LakeClient
    from runlake.lake import Lake

    root = str(tmp_path / "lake")
    client = LakeClient(root)
    experiment = client.create_experiment("charts")
    long_run = client.create_run(experiment, run_name="long")
    steps = np.arange(LONG, dtype=np.int64)
    for key, values in (("loss", np.cos(steps / 500.0)), ("acc", steps / LONG)):
        table = pa.table({"key": pa.array([key] * LONG), "value": values, "timestamp": T0 + steps * 10, "step": steps})
        client.log_batch(long_run, table)
    client.set_terminated(long_run)
    short = []
    for i, optimizer in enumerate(["adam", "adam", "sgd", "sgd", "lion", "lion"]):
        name = '<a href="https://example.com">evil</a>' if i == 0 else f"short-{i}"
        run_id = client.create_run(experiment, run_name=name)
        client.log_batch(
            run_id,
            metrics=[("loss", 1.0 / (s + 1) + i * 0.01, T0 + s, s) for s in range(200)],
            params={"optimizer": optimizer},
        )
        client.set_terminated(run_id)
        short.append(run_id)
    client.flush()
    return Lake(root), long_run, short


@pytest.fixture
def chart_app(chart_lake):
    from runlake.app.settings import Settings
    from runlake.app.web.server import create_app

    lake = chart_lake[0]
    return create_app(Settings(lake=str(lake.root), refresh_seconds=2.0), lake)


def _traces(duo, container: str, title: str | None = None):
    """Each trace of the plotly graph in ``container`` (titled ``title``): points, meta, name, fill, mode."""
    return duo.driver.execute_script(
        """
        const [container, title] = arguments;
        const graphs = [...document.querySelectorAll(`${container} .js-plotly-plot`)];
        const gd = graphs.find(g => !title || (g.layout && g.layout.title && g.layout.title.text === title));
        if (!gd || !gd.data || !gd.data.length) { return null; }
        return gd.data.map(t => ({points: t.x.length, meta: t.meta || null, name: t.name || null,
                                  fill: t.fill || null, mode: t.mode || null, x0: t.x[0], x1: t.x[t.x.length - 1]}));
        """,
        container,
        title,
    )


def _relayout(duo, container: str, title: str, low: float, high: float) -> None:
    duo.driver.execute_script(
        """
        const [container, title, low, high] = arguments;
        const gd = [...document.querySelectorAll(`${container} .js-plotly-plot`)]
            .find(g => g.layout && g.layout.title && g.layout.title.text === title);
        Plotly.relayout(gd, {'xaxis.range[0]': low, 'xaxis.range[1]': high});
        """,
        container,
        title,
        low,
        high,
    )


def test_ch001_long_run_draws_buckets_with_a_band_and_zoom_shows_raw_points(dash_duo, chart_app, chart_lake):
    _lake, long_run, _short = chart_lake
    dash_duo.start_server(chart_app)
    dash_duo.driver.get(f"{dash_duo.server_url}/runs/{long_run}")
    container = f"#{ids.RUN_CHARTS}"
    until(lambda: _traces(dash_duo, container, "loss") is not None, timeout=20)
    traces = _traces(dash_duo, container, "loss")
    assert all(t["points"] <= 2000 for t in traces)
    line = [t for t in traces if t["meta"] == "buckets"]
    assert len(line) == 1 and 500 <= line[0]["points"] <= 1000
    assert line[0]["x1"] == LONG - 1  # the last bucket ends at the last point
    band = [t for t in traces if t["meta"] in ("band-max", "band-min")]
    assert len(band) == 2 and any(t["fill"] == "tonexty" for t in band)

    # Zoom to 300 steps: the lake is asked for that range and sends the raw points.
    def raw_points():
        now = _traces(dash_duo, container, "loss") or []
        raw = [t for t in now if t["meta"] == "raw"]
        return raw[0] if raw else None

    # A zoom made while the page's first draw is still settling can be drawn over by it (the
    # relayout event then belongs to a figure that is gone): zoom again, as a person would.
    for attempt in range(3):
        _relayout(dash_duo, container, "loss", 20_000, 20_300)
        try:
            until(lambda: raw_points() is not None, timeout=10)
            break
        except dash_errors.TestingTimeoutError:
            if attempt == 2:
                raise
    raw = raw_points()
    assert raw["points"] == 301 and raw["x0"] == 20_000 and raw["x1"] == 20_300
    assert "markers" in raw["mode"]

    # The band toggle removes the band.
    dash_duo.find_element(f"#{ids.RUN_BAND} input").click()
    until(
        lambda: (
            not any(t["meta"] == "band-max" for t in (_traces(dash_duo, container, "acc") or [{"meta": "band-max"}]))
        ),
        timeout=15,
    )
    assert severe_logs(dash_duo) == []


def test_ch002_grouping_draws_one_mean_curve_per_group(dash_duo, chart_app, chart_lake):
    _lake, _long, short = chart_lake
    dash_duo.start_server(chart_app)
    dash_duo.driver.get(f"{dash_duo.server_url}/compare?runs={','.join(short)}")
    container = f"#{ids.CMP_PLOT}-curves"
    until(lambda: _traces(dash_duo, container) is not None, timeout=20)
    lines = [t for t in _traces(dash_duo, container) if t["meta"] == "raw"]
    assert len(lines) == 6
    # A run name with plotly markup is shown as text, not as a link.
    assert any(t["name"] == '&lt;a href="https://example.com"&gt;evil&lt;/a&gt;' for t in lines)
    assert not dash_duo.driver.find_elements("css selector", f"{container} .legend a")

    dash_duo.select_dcc_dropdown(f"#{ids.CMP_GROUP}", value="params.optimizer")

    def means():
        return [t for t in (_traces(dash_duo, container) or []) if t["meta"] == "group-mean"]

    until(lambda: len(means()) == 3, timeout=15)
    assert sorted(t["name"] for t in means()) == ["adam (2 runs)", "lion (2 runs)", "sgd (2 runs)"]
    assert sum(1 for t in _traces(dash_duo, container) if t["fill"] == "tonexty") == 3
    assert all(t["points"] <= 2000 for t in _traces(dash_duo, container))
    assert not math.isnan(means()[0]["points"])
    assert severe_logs(dash_duo) == []


def test_ch003_runs_page_charts_view_groups_the_search(dash_duo, chart_app):
    dash_duo.start_server(chart_app)
    dash_duo.driver.get(f"{dash_duo.server_url}/runs")
    dash_duo.wait_for_element(f"#{ids.RUNS_GRID} .ag-row .run-link", timeout=15)
    dash_duo.find_element(f"#{ids.RUNS_CHARTS_TOGGLE}").click()
    dash_duo.wait_for_contains_text(f"#{ids.RUNS_CHARTS_NOTE}", "The first 7 matching runs", timeout=15)
    container = f"#{ids.RUNS_CHARTS_GRAPH}"
    until(lambda: len([t for t in (_traces(dash_duo, container) or []) if t["name"]]) == 7, timeout=15)
    dash_duo.select_dcc_dropdown(f"#{ids.RUNS_CHARTS_GROUP}", value="params.optimizer")

    def means():
        return sorted(t["name"] for t in (_traces(dash_duo, container) or []) if t["meta"] == "group-mean")

    until(lambda: len(means()) == 4, timeout=15)
    assert means() == ["(none) (1 run)", "adam (2 runs)", "lion (2 runs)", "sgd (2 runs)"]
    # ± std instead of min-max: still one band per group of several runs.
    dash_duo.find_element(f"#{ids.RUNS_CHARTS_SPREAD} input[value='std']").click()
    until(lambda: sum(1 for t in _traces(dash_duo, container) if t["fill"] == "tonexty") == 3, timeout=10)
    assert severe_logs(dash_duo) == []


def test_ch004_compare_details_never_run_into_the_next_column(dash_duo, chart_app, chart_lake):
    lake, long_run, short = chart_lake
    from runlake.ingest import LakeClient

    client = LakeClient(str(lake.root))
    long_run = client.create_run(
        lake.get_run(long_run).info["experiment_id"],
        run_name="sourced",
        source={"source_name": "/very/long/path/to/a/training/script/" + "deep/" * 20 + "train.py"},
    )
    client.flush()
    dash_duo.start_server(chart_app)
    dash_duo.driver.get(f"{dash_duo.server_url}/compare?runs={long_run},{short[1]}")
    dash_duo.wait_for_element(f"#{ids.CMP_DETAILS} .ag-row", timeout=15)

    def layout():
        return dash_duo.driver.execute_script(
            """
            const rows = [...document.querySelectorAll(`#${arguments[0]} .ag-center-cols-container .ag-row`)];
            return rows.map(row => [...row.querySelectorAll('.ag-cell')].map(cell => {
                const r = cell.getBoundingClientRect();
                const value = cell.querySelector('.ag-cell-value') || cell;
                return {left: r.left, right: r.right, text: cell.innerText,
                        clipped: getComputedStyle(cell).overflow === 'hidden' || value.scrollWidth <= r.width + 1,
                        ellipsis: getComputedStyle(cell).textOverflow === 'ellipsis',
                        overflows: value.scrollWidth > value.clientWidth + 1};
            }).sort((a, b) => a.left - b.left));
            """,
            ids.CMP_DETAILS,
        )

    until(lambda: any("train.py" in c["text"] for row in layout() for c in row), timeout=10)
    for row in layout():
        assert all(c["clipped"] for c in row)
        for a, b in zip(row, row[1:]):
            assert a["right"] <= b["left"] + 1  # cells side by side, never on top of each other
    source = next(c for row in layout() for c in row if "train.py" in c["text"])
    assert source["overflows"] and source["ellipsis"]  # the long path is cut with an ellipsis
    run_id_cell = next(c for row in layout() for c in row if c["text"] == long_run)
    assert not run_id_cell["overflows"]  # a run id fits its column (widths follow the content)
    dash_duo.driver.save_screenshot("/tmp/charts_w/compare.png")


@pytest.mark.parametrize("page", ["compare", "runs-charts"])
def test_ch006_a_slow_first_draw_is_not_lost_to_the_graphs_first_layout(
    dash_duo, chart_app, chart_lake, monkeypatch, page
):
    """The graph reports its first layout (autosize) while the first draw is still computing;
    that report must not supersede the draw (it did: 100 long runs' curves never appeared)."""
    import time

    from runlake.app.web.pages import compare

    slow = compare.curves_figure

    def slow_curves(*args, **kwargs):
        time.sleep(3.0)
        return slow(*args, **kwargs)

    monkeypatch.setattr(compare, "curves_figure", slow_curves)
    _lake, _long, short = chart_lake
    dash_duo.start_server(chart_app)
    if page == "compare":
        dash_duo.driver.get(f"{dash_duo.server_url}/compare?runs={','.join(short)}")
        container, expected = f"#{ids.CMP_PLOT}-curves", 6
    else:
        dash_duo.driver.get(f"{dash_duo.server_url}/runs")
        dash_duo.wait_for_element(f"#{ids.RUNS_GRID} .ag-row .run-link", timeout=15)
        dash_duo.find_element(f"#{ids.RUNS_CHARTS_TOGGLE}").click()
        container, expected = f"#{ids.RUNS_CHARTS_GRAPH}", 7
    # While the draw computes, the graph reports a layout of its own (as it does when the page
    # around it changes size): an autosize relayout, sent the way plotly sends it.
    dash_duo.wait_for_element(f"{container} .js-plotly-plot", timeout=15)
    time.sleep(1.0)
    dash_duo.driver.execute_script(
        "const gd = document.querySelector(arguments[0] + ' .js-plotly-plot'); Plotly.relayout(gd, {autosize: true});",
        container,
    )
    until(lambda: len([t for t in (_traces(dash_duo, container) or []) if t["name"]]) == expected, timeout=30)
    assert severe_logs(dash_duo) == []
