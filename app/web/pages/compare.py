"""Compare page (``/compare?runs=...``): runs side by side, in tables and plots.

Details, params and metrics side by side (with "show diff only"), then the plots in tabs:
overlaid metric curves (open first), parallel coordinates, scatter and contour. Runs may come
from several experiments; up to ``MAX_COMPARE`` runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import dash_ag_grid as dag
import pandas as pd
from dash import Input, Output, State, dcc, html, no_update

from runlake.app.web import charts, ids
from runlake.app.web.components import (
    control,
    empty_state,
    group_controls,
    message,
    page_header,
    section,
    x_axis_control,
)
from runlake.app.web.formatting import display_text, escape_figure, format_duration, format_number, format_time
from runlake.app.web.services import MAX_COMPARE

if TYPE_CHECKING:
    from dash import Dash

    from runlake.app.web.services import Services

PATH = "/compare"
REGISTER = {"path": PATH, "name": "Compare", "title": "Compare runs · runlake", "order": 3}
# The plot tabs whose figures are computed when opened (the curves tab is open on load).
LAZY_PLOTS = ("parallel", "scatter", "contour")


def parse_runs(runs: Any, limit: int | None = MAX_COMPARE) -> list[str]:
    """The run ids of a ``runs=`` URL value, deduplicated, in order, at most ``limit``."""
    text = ",".join(runs) if isinstance(runs, list) else str(runs or "")
    unique = list(dict.fromkeys(r.strip() for r in text.split(",") if r.strip()))
    return unique if limit is None else unique[:limit]


def missing_notice(requested: list[str], found: list[str]) -> Any:
    """What the page says about requested runs it does not show (unknown ids, over the limit)."""
    shown = requested[:MAX_COMPARE]
    missing = [r for r in shown if r not in set(found)]
    notes = []
    if missing:
        listed = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        notes.append(message(f"{len(missing)} run{'s' if len(missing) != 1 else ''} not found: {listed}", "warning"))
    if len(requested) > MAX_COMPARE:
        notes.append(message(f"Showing the first {MAX_COMPARE} of {len(requested):,} requested runs.", "info"))
    return html.Div(notes, id=ids.CMP_NOTICE) if notes else html.Div(id=ids.CMP_NOTICE)


def compare_frame(services: Services, run_ids: list[str]) -> pd.DataFrame:
    frame = services.frame_for(run_ids)
    return frame[frame["experiment_id"].notna()].reset_index(drop=True)


def table_rows(frame: pd.DataFrame, prefix: str) -> list[dict[str, Any]]:
    """One row per key (``prefix`` params or metrics), one column per run; ``same`` marks rows
    whose value is identical in every run (what "show diff only" hides)."""
    rows = []
    for column in sorted(c for c in frame.columns if c.startswith(prefix + ".")):
        values = [None if pd.isna(v) else v for v in frame[column].tolist()]
        row: dict[str, Any] = {"key": display_text(column.split(".", 1)[1])}
        for run_id, value in zip(frame["run_id"], values):
            # Metrics read like every other table (significant digits); params are the logged text.
            row[run_id] = (
                format_number(value) if prefix == "metrics" and value is not None else display_text(value, 2000)
            )
        row["same"] = all(v == values[0] for v in values)
        rows.append(row)
    return rows


def _text(value: Any) -> str:
    """A frame cell as text: missing (None or NaN) is empty."""
    return "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)


def detail_rows(frame: pd.DataFrame, names: dict[str, str]) -> list[dict[str, Any]]:
    fields: list[tuple[str, Callable[[Any], str]]] = [
        ("Run name", lambda r: display_text(r.run_name)),
        ("Experiment", lambda r: names.get(str(r.experiment_id), str(r.experiment_id))),
        ("Status", lambda r: _text(r.status).title()),
        ("Start time", lambda r: format_time(r.start_time)),
        ("Duration", lambda r: format_duration(r.start_time, r.end_time, r.status)),
        ("User", lambda r: display_text(r.user_id)),
        ("Source", lambda r: display_text(r.source_name)),
        ("Version", lambda r: _text(r.source_version)[:10]),
        ("Run ID", lambda r: r.run_id),
    ]
    rows = []
    for label, get in fields:
        row: dict[str, Any] = {"key": label}
        for record in frame.itertuples():
            row[record.run_id] = get(record)
        rows.append(row)
    return rows


def _columns(frame: pd.DataFrame, numeric: bool = False) -> list[dict[str, Any]]:
    cols: list[dict[str, Any]] = [
        {
            "field": "key",
            "headerName": "",
            "pinned": "left",
            "width": 180,
            "cellClass": "key-cell",
            "tooltipField": "key",
        }
    ]
    for record in frame.itertuples():
        # Widths follow the content (the grid auto-sizes its columns), within bounds: a long
        # value (a source path, a run id) ends in an ellipsis and shows whole in its tooltip.
        col = {
            "field": record.run_id,
            "headerName": display_text(record.run_name or record.run_id[:8], 60),
            "headerTooltip": record.run_id,
            "minWidth": 120,
            "maxWidth": 420,
            "tooltipField": record.run_id,
            "cellClass": "compare-cell",
        }
        if numeric:
            col["type"] = "rightAligned"
        cols.append(col)
    return cols


def _table(grid_id: str, frame: pd.DataFrame, rows: list[dict[str, Any]], numeric: bool = False) -> dag.AgGrid:
    return dag.AgGrid(
        id=grid_id,
        rowData=rows,
        columnDefs=_columns(frame, numeric),
        getRowId="params.data.key",
        defaultColDef={"resizable": True, "sortable": False, "suppressHeaderMenuButton": True},
        dashGridOptions={
            "suppressFieldDotNotation": True,
            "domLayout": "autoHeight" if len(rows) <= 25 else "normal",
            "tooltipShowDelay": 300,
        },
        className="ag-theme-quartz grid compare-grid",
        style={"height": None if len(rows) <= 25 else "480px"},
        columnSize="autoSize",
    )


def _choices(frame: pd.DataFrame) -> tuple[list[str], list[str], list[str]]:
    params = sorted(c for c in frame.columns if c.startswith("params."))
    metrics = sorted(c for c in frame.columns if c.startswith("metrics."))
    varying = [c for c in params if frame[c].nunique(dropna=False) > 1]
    return params, metrics, varying


def layout(services: Services, runs: Any = None, **_query: Any) -> html.Div:
    requested = parse_runs(runs, limit=None)
    run_ids = requested[:MAX_COMPARE]
    frame = compare_frame(services, run_ids) if run_ids else pd.DataFrame()
    if frame.empty:
        return html.Div(
            [
                page_header("Compare runs"),
                missing_notice(requested, []),
                empty_state(
                    "No runs to compare.",
                    ["Select runs on the ", dcc.Link("runs page", href="/runs"), " and press Compare."],
                ),
            ],
            className="page",
        )
    names = services.experiment_names()
    plots = _plot_choices(frame)
    experiments = sorted({names.get(str(e), str(e)) for e in frame["experiment_id"]})
    return html.Div(
        [
            dcc.Store(id=ids.CMP_RUNS, data=list(frame["run_id"])),
            *[dcc.Store(id=f"{ids.CMP_PLOT}-{name}-drawn") for name in LAZY_PLOTS],
            page_header(
                f"Comparing {len(frame)} run{'s' if len(frame) != 1 else ''}",
                subtitle=[
                    "Experiments: ",
                    *[html.Span(display_text(e, 60), className="chip", title=e) for e in experiments],
                ],
            ),
            missing_notice(requested, list(frame["run_id"])),
            dcc.Checklist(
                id=ids.CMP_DIFF,
                options=[{"label": " Show diff only", "value": "diff"}],
                value=[],
                className="diff-toggle",
                labelStyle={"display": "inline-flex", "gap": "4px"},
            ),
            html.Div(
                [
                    section("Run details", _table(ids.CMP_DETAILS, frame, detail_rows(frame, names))),
                    section(
                        "Parameters",
                        _table(ids.CMP_PARAMS, frame, table_rows(frame, "params")),
                        count=len(plots.params),
                    ),
                    section(
                        "Metrics",
                        _table(ids.CMP_METRICS, frame, table_rows(frame, "metrics"), numeric=True),
                        count=len(plots.metrics),
                    ),
                ],
                className="compare-tables",
            ),
            section(
                "Plots",
                dcc.Tabs(
                    id=ids.CMP_PLOT_TABS,
                    value="curves",
                    children=[
                        dcc.Tab(id=f"{ids.CMP_PLOT_TABS}-{value}", label=label, value=value, children=children)
                        for value, label, children in (
                            ("curves", "Metric curves", _curves_tab(frame, plots)),
                            ("parallel", "Parallel coordinates", _parallel_tab(plots)),
                            ("scatter", "Scatter", _scatter_tab(plots)),
                            ("contour", "Contour", _contour_tab(plots)),
                        )
                    ],
                ),
            ),
        ],
        className="page page-compare",
    )


# The plots sit in tabs and only the chosen tab is drawn: Dash's tabs mount the chosen tab's
# children alone, and a tab's figure is computed when it is first opened. Stacked, the page drew
# all four on load: parallel coordinates are WebGL, which took 0.8-1.2 s of the browser's main
# thread in headless Chromium (software GL), and the curves of 100 runs waited behind them.
# The curves come first: over training runs they are what a comparison is mostly for.
class PlotChoices(NamedTuple):
    """What the plots' dropdowns offer and show first."""

    params: list[str]
    metrics: list[str]
    options: list[dict[str, str]]  # every param and metric column
    varying: list[str]  # params whose value differs between the runs
    axes: list[str]  # the varying params, numeric ones first (the contour's axes)
    first_metric: str | None  # the first metric with "loss" in its name, else the first


def _plot_choices(frame: pd.DataFrame) -> PlotChoices:
    params, metrics, varying = _choices(frame)
    numeric = [c for c in varying if pd.to_numeric(frame[c], errors="coerce").notna().all()]
    return PlotChoices(
        params=params,
        metrics=metrics,
        options=[{"label": c, "value": c} for c in params + metrics],
        varying=varying,
        axes=numeric + [c for c in varying if c not in numeric],
        first_metric=next((m for m in metrics if "loss" in m), metrics[0] if metrics else None),
    )


def _graph(name: str) -> dcc.Graph:
    return dcc.Graph(id=f"{ids.CMP_PLOT}-{name}", config={"displaylogo": False})


def _curves_tab(frame: pd.DataFrame, plots: PlotChoices) -> list[Any]:
    first_metric = plots.first_metric
    controls = [
        control(
            "Metric",
            dcc.Dropdown(
                id=ids.CMP_CURVE_KEY,
                options=[c.split(".", 1)[1] for c in plots.metrics],
                value=first_metric.split(".", 1)[1] if first_metric else None,
            ),
            "Metric to overlay",
        ),
        x_axis_control(ids.CMP_X_AXIS),
        control(
            "Smoothing",
            dcc.Slider(
                id=ids.CMP_SMOOTHING, min=0, max=0.99, step=0.01, value=0, marks={0: "0", 0.5: "0.5", 0.99: "0.99"}
            ),
            "Exponential moving average",
        ),
        control(
            "Y scale",
            dcc.Checklist(id=ids.CMP_LOG_Y, options=[{"label": " Log", "value": "log"}], value=[]),
            "Log y-axis",
        ),
        control(
            "Band",
            dcc.Checklist(
                id=ids.CMP_BAND,
                options=[{"label": " Min–max", "value": "band"}],
                # Bands of many overlaid runs hide each other: on for a few runs only.
                value=["band"] if len(frame) <= 3 else [],
            ),
            "Shade each bucket's min and max around a run's line",
        ),
        *group_controls(ids.CMP_GROUP, ids.CMP_SPREAD, group_options(frame)),
    ]
    return [
        html.Div(controls, className="plot-controls"),
        dcc.Loading(_graph("curves"), type="dot", delay_show=400),
    ]


def _parallel_tab(plots: PlotChoices) -> list[Any]:
    options, varying, first_metric = plots.options, plots.varying, plots.first_metric
    controls = [
        control(
            "Axes",
            dcc.Dropdown(
                id=ids.CMP_PAR_DIMS,
                options=options,
                multi=True,
                value=(varying[:6] + ([first_metric] if first_metric else [])),
            ),
            "Params and metrics shown as axes; text params become categories",
        ),
        control(
            "Color",
            dcc.Dropdown(id=ids.CMP_PAR_COLOR, options=options, value=first_metric),
            "Color lines by this value",
        ),
    ]
    return [html.Div(controls, className="plot-controls"), _graph("parallel")]


def _scatter_tab(plots: PlotChoices) -> list[Any]:
    options, varying, params, first_metric = plots.options, plots.varying, plots.params, plots.first_metric
    controls = [
        control("X", dcc.Dropdown(id=ids.CMP_SC_X, options=options, value=(varying + params + [None])[0]), "X axis"),
        control("Y", dcc.Dropdown(id=ids.CMP_SC_Y, options=options, value=first_metric), "Y axis"),
    ]
    return [html.Div(controls, className="plot-controls"), _graph("scatter")]


def _contour_tab(plots: PlotChoices) -> list[Any]:
    options, axes, first_metric = plots.options, plots.axes, plots.first_metric
    controls = [
        control("X", dcc.Dropdown(id=ids.CMP_CT_X, options=options, value=(axes + [None])[0]), "X axis"),
        control("Y", dcc.Dropdown(id=ids.CMP_CT_Y, options=options, value=(axes[1:] + [None])[0]), "Y axis"),
        control("Z", dcc.Dropdown(id=ids.CMP_CT_Z, options=options, value=first_metric), "Contour value"),
    ]
    return [html.Div(controls, className="plot-controls"), _graph("contour")]


def register_callbacks(app: Dash, services: Services) -> None:
    def frame_of(run_ids: list[str]) -> pd.DataFrame:
        return compare_frame(services, run_ids)

    for grid_id, prefix in ((ids.CMP_PARAMS, "params"), (ids.CMP_METRICS, "metrics")):

        @app.callback(
            Output(grid_id, "rowData"),
            Input(ids.CMP_DIFF, "value"),
            State(ids.CMP_RUNS, "data"),
            prevent_initial_call=True,
        )
        def diff_only(value: list[str] | None, run_ids: list[str], _prefix: str = prefix) -> list[dict[str, Any]]:
            rows = table_rows(frame_of(run_ids), _prefix)
            return [r for r in rows if not r["same"]] if value else rows

    # The other tabs' figures are computed when their tab is opened, and again when their
    # controls change: on load the server computes the curves alone. A tab opened again keeps
    # its figure if it was drawn with the controls as they are ("-drawn" holds those values,
    # set with the figure: a figure whose answer Dash dropped because the tab changed while it
    # was computed never recorded them, so it is drawn again).
    def tab_plot(name: str, controls: tuple[str, ...], draw: Callable[..., Any]) -> None:
        @app.callback(
            Output(f"{ids.CMP_PLOT}-{name}", "figure"),
            Output(f"{ids.CMP_PLOT}-{name}-drawn", "data"),
            Input(ids.CMP_PLOT_TABS, "value"),
            *[Input(control, "value") for control in controls],
            State(f"{ids.CMP_PLOT}-{name}-drawn", "data"),
            State(ids.CMP_RUNS, "data"),
            prevent_initial_call=True,
        )
        def update(tab: str | None, *args: Any) -> tuple[Any, Any]:
            *values, drawn, run_ids = args
            if tab != name or drawn == values:
                return no_update, no_update
            # Every string of these figures may come from user data: no markup of it is rendered.
            return escape_figure(draw(frame_of(run_ids), *values)), values

    def scatter(frame: pd.DataFrame, x: str | None, y: str | None) -> Any:
        names = [r or i[:8] for r, i in zip(frame["run_name"], frame["run_id"])]
        return charts.scatter_figure(frame, x, y, names=names)

    tab_plot(
        "parallel",
        (ids.CMP_PAR_DIMS, ids.CMP_PAR_COLOR),
        lambda frame, dims, color: charts.parallel_figure(frame, dims or [], color),
    )
    tab_plot("scatter", (ids.CMP_SC_X, ids.CMP_SC_Y), scatter)
    tab_plot("contour", (ids.CMP_CT_X, ids.CMP_CT_Y, ids.CMP_CT_Z), charts.contour_figure)

    @app.callback(
        Output(f"{ids.CMP_PLOT}-curves", "figure"),
        *[Input(control, "value") for control in _CURVE_CONTROLS],
        State(ids.CMP_RUNS, "data"),
    )
    def curves(
        key: str | None,
        x_axis: str,
        smoothing: float,
        log_y: list[str] | None,
        band: list[str] | None,
        group: str | None,
        spread: str | None,
        run_ids: list[str],
    ) -> Any:
        return _curves(run_ids, key, x_axis, smoothing, log_y, band, group, spread, None)

    # A zoom or pan re-queries the visible range; a reset (double click) draws the whole series
    # again; a y-only zoom or a resize draws nothing. Not an input of the drawing callback: the
    # graph reports its first layout (autosize) while a slow first draw is still being computed,
    # and Dash drops a callback's answer in flight when that callback fires again, so the curves
    # of 100 long runs never appeared.
    @app.callback(
        Output(f"{ids.CMP_PLOT}-curves", "figure", allow_duplicate=True),
        Input(f"{ids.CMP_PLOT}-curves", "relayoutData"),
        *[State(control, "value") for control in _CURVE_CONTROLS],
        State(ids.CMP_RUNS, "data"),
        prevent_initial_call=True,
    )
    def zoom_curves(
        relayout: dict[str, Any] | None,
        key: str | None,
        x_axis: str,
        smoothing: float,
        log_y: list[str] | None,
        band: list[str] | None,
        group: str | None,
        spread: str | None,
        run_ids: list[str],
    ) -> Any:
        window = charts.zoom_range(relayout, x_axis if x_axis in charts.LAKE_X else "step")
        if window is None:
            return no_update
        return _curves(run_ids, key, x_axis, smoothing, log_y, band, group, spread, window)

    def _curves(
        run_ids: list[str],
        key: str | None,
        x_axis: str,
        smoothing: float,
        log_y: list[str] | None,
        band: list[str] | None,
        group: str | None,
        spread: str | None,
        window: tuple[float | None, float | None] | None,
    ) -> Any:
        return curves_figure(
            services,
            run_ids,
            key,
            x_axis if x_axis in charts.LAKE_X else "step",
            float(smoothing or 0),
            bool(log_y),
            band=bool(band),
            group=group,
            spread=spread or "minmax",
            window=None if window == (None, None) else window,
        )


# The controls the compare curves are drawn with: inputs of the drawing callback, state of the
# zoom callback, in the order both callbacks take them.
_CURVE_CONTROLS = (
    ids.CMP_CURVE_KEY,
    ids.CMP_X_AXIS,
    ids.CMP_SMOOTHING,
    ids.CMP_LOG_Y,
    ids.CMP_BAND,
    ids.CMP_GROUP,
    ids.CMP_SPREAD,
)


def group_options(frame: pd.DataFrame) -> list[dict[str, str]]:
    """The params and tags runs can be grouped by (user tags before ``mlflow.*`` ones)."""
    columns = sorted(c for c in frame.columns if c.startswith("params."))
    tags = sorted(c for c in frame.columns if c.startswith("tags."))
    columns += [c for c in tags if not c.startswith("tags.mlflow.")] + [c for c in tags if c.startswith("tags.mlflow.")]
    return [{"label": c, "value": c} for c in columns]


def run_groups(frame: pd.DataFrame, column: str) -> dict[str, str]:
    """Run id -> its value of ``column`` as the group label ("(none)" where it is not set)."""
    values = frame[column] if column in frame.columns else pd.Series([None] * len(frame))
    return {r: ("(none)" if pd.isna(v) else str(v)) for r, v in zip(frame["run_id"], values)}


def curve_buckets(runs: int) -> int:
    """Buckets per run: ``charts.BUCKETS`` for a few runs, fewer for many, so 100 runs stay a
    figure a browser draws at once (the zoom re-buckets at full density)."""
    return max(200, min(charts.BUCKETS, 50_000 // max(runs, 1)))


def curves_figure(
    services: Services,
    run_ids: list[str],
    key: str | None,
    x_axis: str,
    smoothing: float,
    log_y: bool,
    *,
    band: bool = True,
    group: str | None = None,
    spread: str = "minmax",
    window: tuple[float | None, float | None] | None = None,
) -> Any:
    """The compare page's metric curves: one line per run (with its min-max band), or with
    ``group`` one mean curve per value of that param or tag."""
    if not key:
        return charts.empty_figure("Pick a metric")
    frame = compare_frame(services, run_ids)
    ids_shown = list(frame["run_id"])
    low, high = window if window is not None else (None, None)
    series = services.series(ids_shown, key, charts.LAKE_X[x_axis], curve_buckets(len(ids_shown)), low, high)
    if group:
        label = group.split(".", 1)[1] if "." in group else group
        fig = charts.grouped_figure(
            series,
            key,
            run_groups(frame, group),
            x_axis=x_axis,
            spread=spread if spread in charts.SPREADS else "minmax",
            smoothing=smoothing,
            log_y=log_y,
            group_title=label,
        )
    else:
        names = {r: (n or r[:8]) for r, n in zip(frame["run_id"], frame["run_name"])}
        fig = charts.series_figure(
            series,
            key,
            x_axis=x_axis,
            smoothing=smoothing,
            log_y=log_y,
            band=band,
            names=names,
            height=460,
            x_range=window,
        )
        fig["layout"]["showlegend"] = 1 < len(names) <= 30
    if low is not None and high is not None:
        fig["layout"]["xaxis"]["range"] = [charts.iso(low), charts.iso(high)] if x_axis == "wall" else [low, high]
        fig["layout"]["xaxis"]["autorange"] = False
    return fig
