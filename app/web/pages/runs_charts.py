"""The runs page's Charts view: a metric of the selected runs (or of the search's first runs),
as one line per run or grouped by a param or tag into mean curves with a band."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dash import Input, Output, State, dcc, html, no_update

from runlake.app.web import charts, ids
from runlake.app.web.components import control, group_controls, x_axis_control
from runlake.app.web.grid import RunsQuery
from runlake.app.web.pages import compare
from runlake.app.web.pages.runs_actions import selected_ids
from runlake.app.web.services import MAX_COMPARE

if TYPE_CHECKING:
    from dash import Dash

    from runlake.app.web.services import Services

# With nothing selected the view draws the search's first runs, in the table's order.
CHART_RUNS = 100
HIDDEN = {"display": "none"}


def panel() -> html.Div:
    """The toggle and the (initially hidden) Charts view."""
    return html.Div(
        [
            html.Button(
                "Charts",
                id=ids.RUNS_CHARTS_TOGGLE,
                className="button",
                title=f"Chart a metric of the selected runs (or of the first {CHART_RUNS} matching runs)",
            ),
            html.Div(
                [
                    dcc.Store(id=ids.RUNS_CHARTS_RUNS, data=[]),
                    html.Div(id=ids.RUNS_CHARTS_NOTE, className="muted"),
                    html.Div(
                        [
                            control("Metric", dcc.Dropdown(id=ids.RUNS_CHARTS_KEY, options=[]), "Metric to chart"),
                            *group_controls(ids.RUNS_CHARTS_GROUP, ids.RUNS_CHARTS_SPREAD, []),
                            x_axis_control(ids.RUNS_CHARTS_X),
                        ],
                        className="plot-controls",
                    ),
                    dcc.Loading(
                        dcc.Graph(id=ids.RUNS_CHARTS_GRAPH, config={"displaylogo": False}),
                        type="dot",
                        delay_show=400,
                    ),
                ],
                id=ids.RUNS_CHARTS_PANEL,
                className="runs-charts",
                style=HIDDEN,
            ),
        ],
        className="runs-charts-box",
    )


def register_callbacks(app: Dash, services: Services) -> None:
    @app.callback(
        Output(ids.RUNS_CHARTS_PANEL, "style"),
        Output(ids.RUNS_CHARTS_TOGGLE, "className"),
        Input(ids.RUNS_CHARTS_TOGGLE, "n_clicks"),
        prevent_initial_call=True,
    )
    def toggle(clicks: int | None) -> tuple[Any, str]:
        shown = (clicks or 0) % 2 == 1
        return (None if shown else HIDDEN), ("button primary" if shown else "button")

    @app.callback(
        Output(ids.RUNS_CHARTS_RUNS, "data"),
        Output(ids.RUNS_CHARTS_NOTE, "children"),
        Output(ids.RUNS_CHARTS_KEY, "options"),
        Output(ids.RUNS_CHARTS_KEY, "value"),
        Output(ids.RUNS_CHARTS_GROUP, "options"),
        Input(ids.RUNS_CHARTS_PANEL, "style"),
        Input(ids.RUNS_GRID, "selectedRows"),
        Input(ids.RUNS_ALL_MATCHING, "data"),
        Input(ids.RUNS_QUERY, "data"),
        State(ids.RUNS_CHARTS_KEY, "value"),
        prevent_initial_call=True,
    )
    def pick_runs(
        style: dict[str, Any] | None,
        rows: list[dict[str, Any]] | None,
        all_matching: bool,
        data: dict[str, Any],
        key: str | None,
    ) -> Any:
        if style == HIDDEN:
            return (no_update,) * 5
        run_ids = selected_ids(services, rows, all_matching, data)[:MAX_COMPARE]
        if run_ids:
            note = f"{len(run_ids)} selected run{'s' if len(run_ids) != 1 else ''}"
        else:
            kwargs = RunsQuery.from_store(data).search_kwargs()
            run_ids = services.search_run_ids(**{**kwargs, "max_results": CHART_RUNS})
            note = f"The first {len(run_ids)} matching runs (select runs to chart those instead)"
        frame = services.frame_for(run_ids) if run_ids else None
        metrics = (
            sorted(c.split(".", 1)[1] for c in frame.columns if c.startswith("metrics.")) if frame is not None else []
        )
        groups = compare.group_options(frame) if frame is not None else []
        if key not in metrics:
            key = next((m for m in metrics if "loss" in m), metrics[0] if metrics else None)
        return run_ids, note, metrics, key, groups

    @app.callback(
        Output(ids.RUNS_CHARTS_GRAPH, "figure"),
        Input(ids.RUNS_CHARTS_RUNS, "data"),
        Input(ids.RUNS_CHARTS_KEY, "value"),
        Input(ids.RUNS_CHARTS_GROUP, "value"),
        Input(ids.RUNS_CHARTS_SPREAD, "value"),
        Input(ids.RUNS_CHARTS_X, "value"),
        prevent_initial_call=True,
    )
    def draw(
        run_ids: list[str] | None, key: str | None, group: str | None, spread: str | None, x_axis: str | None
    ) -> Any:
        return _figure(run_ids, key, group, spread, x_axis, None)

    # Zooms in their own callback, as on the compare page (see ``compare.zoom_curves``): the
    # graph's first layout report must not supersede a slow first draw.
    @app.callback(
        Output(ids.RUNS_CHARTS_GRAPH, "figure", allow_duplicate=True),
        Input(ids.RUNS_CHARTS_GRAPH, "relayoutData"),
        State(ids.RUNS_CHARTS_RUNS, "data"),
        State(ids.RUNS_CHARTS_KEY, "value"),
        State(ids.RUNS_CHARTS_GROUP, "value"),
        State(ids.RUNS_CHARTS_SPREAD, "value"),
        State(ids.RUNS_CHARTS_X, "value"),
        prevent_initial_call=True,
    )
    def zoom(
        relayout: dict[str, Any] | None,
        run_ids: list[str] | None,
        key: str | None,
        group: str | None,
        spread: str | None,
        x_axis: str | None,
    ) -> Any:
        window = charts.zoom_range(relayout, x_axis if x_axis in charts.LAKE_X else "step")
        if window is None:
            return no_update
        return _figure(run_ids, key, group, spread, x_axis, window)

    def _figure(
        run_ids: list[str] | None,
        key: str | None,
        group: str | None,
        spread: str | None,
        x_axis: str | None,
        window: tuple[float | None, float | None] | None,
    ) -> Any:
        if not run_ids:
            return charts.empty_figure("No runs to chart")
        return compare.curves_figure(
            services,
            run_ids,
            key,
            x_axis if x_axis in charts.LAKE_X else "step",
            0.0,
            False,
            band=len(run_ids) <= 3,
            group=group,
            spread=spread or "minmax",
            window=None if window == (None, None) else window,
        )
