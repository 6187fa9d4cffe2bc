"""Chart logic without a browser: escaping, zoom ranges, bucketed and grouped figures, live refresh."""

from __future__ import annotations

import pandas as pd
import pytest
from dash import Patch, no_update

from runlake.app.web import charts

T0 = 1_700_000_000_000


@pytest.mark.parametrize(
    "text, shown",
    [
        ('<a href="https://x.example">x</a>', '&lt;a href="https://x.example"&gt;x&lt;/a&gt;'),
        ('<span style="color:red">r</span>', '&lt;span style="color:red"&gt;r&lt;/span&gt;'),
        ("a & b", "a &amp; b"),
        ("abc\u202edef", "abc\ufffddef"),
        ("\u2066x\u2069", "\ufffdx\ufffd"),
        ("plain-name_01", "plain-name_01"),
    ],
    ids=["link", "span", "amp", "rlo", "isolate", "plain"],
)
def test_safe_text_makes_user_text_inert(text, shown):
    assert charts.safe_text(text) == shown


@pytest.mark.parametrize(
    "relayout, x_axis, expected",
    [
        ({"xaxis.range[0]": 10.5, "xaxis.range[1]": 20}, "step", (10.5, 20.0)),
        ({"xaxis.range": [30, 5]}, "relative", (5.0, 30.0)),
        ({"xaxis.autorange": True}, "step", (None, None)),
        ({"yaxis.range[0]": 1, "yaxis.range[1]": 2}, "step", None),
        ({"autosize": True}, "step", None),
        (None, "step", None),
        ({"xaxis.range[0]": "2023-11-14 22:13:20", "xaxis.range[1]": "2023-11-14 22:13:21.5"}, "wall", (T0, T0 + 1500)),
        ({"xaxis.range[0]": "nonsense", "xaxis.range[1]": 3}, "step", None),
    ],
    ids=["zoom", "whole-range", "reset", "y-only", "resize", "none", "wall", "garbage"],
)
def test_zoom_range_reads_relayout_data(relayout, x_axis, expected):
    assert charts.zoom_range(relayout, x_axis) == expected


def _series(run_id: str, xs, values, counts=None) -> pd.DataFrame:
    n = len(xs)
    return pd.DataFrame(
        {
            "run_id": [run_id] * n,
            "x": xs,
            "value": values,
            "min": [v - 1 for v in values],
            "max": [v + 1 for v in values],
            "count": counts or [1] * n,
        }
    )


def test_series_figure_draws_band_and_line_and_escapes_names():
    rows = _series("r1", [0, 10, 20], [1.0, float("nan"), float("inf")], counts=[5, 5, 5])
    figure = charts.series_figure(rows, "loss", names={"r1": "<b>bold</b>"}, band=True)
    metas = [t.get("meta") for t in figure["data"]]
    assert metas == ["band-max", "band-min", "buckets"]
    line = figure["data"][-1]
    assert line["name"] == "&lt;b&gt;bold&lt;/b&gt;"
    assert line["y"] == [1.0, None, None]  # NaN and inf are gaps, never invalid JSON
    assert figure["data"][1]["fill"] == "tonexty"
    no_band = charts.series_figure(rows, "loss", band=False, x_axis="wall", x_range=(T0, T0 + 1000))
    assert [t.get("meta") for t in no_band["data"]] == ["buckets"]
    assert no_band["layout"]["xaxis"]["type"] == "date"
    assert no_band["layout"]["xaxis"]["range"] == ["2023-11-14 22:13:20.000", "2023-11-14 22:13:21.000"]


def test_grouped_figure_means_aligned_runs_per_group():
    rows = pd.concat(
        [
            _series("a1", [0, 10], [1.0, 3.0]),
            _series("a2", [0, 5, 10], [3.0, 4.0, 5.0]),
            _series("b1", [0, 10], [10.0, 10.0]),
        ]
    )
    groups = {"a1": "adam", "a2": "adam", "b1": "<i>sgd</i>"}
    figure = charts.grouped_figure(rows, "loss", groups, spread="minmax", points=3, group_title="optimizer")
    means = [t for t in figure["data"] if t.get("meta") == "group-mean"]
    assert [t["name"] for t in means] == ["&lt;i&gt;sgd&lt;/i&gt; (1 run)", "adam (2 runs)"]
    adam = means[1]
    assert adam["x"] == [0.0, 5.0, 10.0]
    assert adam["y"] == [2.0, 3.0, 4.0]  # a1 interpolated at 5 -> 2.0, a2 exact
    band = [t for t in figure["data"] if t.get("meta") in ("band-max", "band-min")]
    assert len(band) == 2  # only the group of two runs has a spread
    assert band[0]["y"] == [3.0, 4.0, 5.0] and band[1]["y"] == [1.0, 2.0, 3.0]
    std = charts.grouped_figure(rows, "loss", groups, spread="std", points=3)
    upper = [t for t in std["data"] if t.get("meta") == "band-max"][0]
    assert upper["y"] == [3.0, 4.0, 5.0]  # mean 2/3/4 + std 1


def test_live_refresh_fetches_only_what_is_new(lake_dir):
    from runlake.app.web.pages import run_callbacks
    from runlake.app.web.services import Services
    from runlake.ingest import LakeClient
    from runlake.lake import Lake

    client = LakeClient(lake_dir)
    run_id = client.create_run(client.create_experiment("live"))
    client.log_batch(run_id, metrics=[("loss", 1.0 / (s + 1), T0 + s, s) for s in range(100)])
    client.log_batch(run_id, metrics=[("acc", 0.5, T0, 0)])
    client.flush()
    services = Services(Lake(lake_dir))
    from flask import Flask

    server = Flask(__name__)
    services.init_app(server)
    options = run_callbacks.ChartOptions()
    with server.app_context():
        _cards, drawn = run_callbacks.metric_charts(services, run_id, options)
        assert drawn["loss"]["last"] == 99 and drawn["loss"]["n"] == 100
        client.log_batch(run_id, metrics=[("loss", 0.001, T0 + s, s) for s in range(100, 110)])
        client.flush()
        record = services.get_run(run_id)
        updates, state = run_callbacks.live_updates(services, record, ["acc", "loss"], [None, None], drawn, options)
        assert updates[0] is no_update  # acc has nothing new: not read at all
        assert isinstance(updates[1], Patch)
        operations = updates[1].to_plotly_json()["operations"]
        line_x = [op for op in operations if op["location"] == ["data", 2, "x"]]
        assert line_x and line_x[0]["params"]["value"] == list(range(100, 110))
        assert state["loss"]["last"] == 109 and state["loss"]["n"] == 110
        # Zoomed: the chart is redrawn from its left edge on, keeping the view.
        client.log_batch(run_id, metrics=[("loss", 0.002, T0 + 200, 200)])
        client.flush()
        record = services.get_run(run_id)
        view = {"xaxis.range[0]": 50, "xaxis.range[1]": 60}
        updates, _state = run_callbacks.live_updates(services, record, ["acc", "loss"], [None, view], state, options)
        figure = updates[1]
        assert isinstance(figure, dict) and figure["layout"]["xaxis"]["range"] == [50, 60]
        assert figure["data"][-1]["x"][0] == 50 and figure["data"][-1]["x"][-1] == 200
