"""Runs page (``/runs?experiments=...&filter=...``): search, filter and page through runs.

The view (experiments, filter, state, time, models, columns, sort) is a ``RunsQuery`` held in a
store and mirrored into the URL; the grid pages and sorts on the server. The selection actions
(compare, delete, restore, CSV) live in ``runs_actions``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import dash_ag_grid as dag
from dash import ClientsideFunction, Input, Output, State, ctx, dcc, html, no_update

from runlake.app.web import ids, tree
from runlake.app.web.components import control, empty_state, error_box, page_header
from runlake.app.web.grid import (
    BLOCK_SIZE,
    RunsQuery,
    column_defs,
    page_kwargs,
    page_request,
    rows,
)
from runlake.app.web.pages import runs_actions, runs_charts

if TYPE_CHECKING:
    from dash import Dash
    from dash.development.base_component import Component

    from runlake.app.web.services import Services

PATH = "/runs"
REGISTER = {"path": PATH, "name": "Runs", "title": "Runs · runlake", "order": 1}

PLACEHOLDER = "metrics.val_loss < 0.5 AND params.optimizer = 'adam'   (press Enter)"
STATE_OPTIONS = [
    {"label": "Active", "value": "active"},
    {"label": "Deleted", "value": "deleted"},
    {"label": "All", "value": "all"},
]
TIME_OPTIONS = [
    {"label": "All time", "value": "all"},
    {"label": "Last hour", "value": "hour"},
    {"label": "Last 24 hours", "value": "day"},
    {"label": "Last 7 days", "value": "week"},
    {"label": "Last 30 days", "value": "month"},
    {"label": "Custom range", "value": "custom"},
]
MODEL_OPTIONS = [{"label": "All runs", "value": "all"}, {"label": "With a logged model", "value": "with"}]


def check_filter(text: str) -> tuple[dict[str, Any] | None, str]:
    """(error dict or None, a sentence describing the filter) for a filter text."""
    from runlake.lake.search import SearchSyntaxError, compile_filter, describe, parse_filter

    if not text.strip():
        return None, ""
    try:
        compile_filter(text)  # parses and checks: the same errors a search would raise
        return None, describe(parse_filter(text))
    except SearchSyntaxError as exc:
        return exc.to_dict(), ""


def layout(services: Services, **query_args: Any) -> html.Div:
    query = RunsQuery.from_url(query_args)
    error, description = check_filter(query.filter)
    names = services.experiment_names()
    available, default = ([], []) if error else _columns(services, query)
    chosen = list(query.columns) if query.columns is not None else default
    scope: list[Component | str] = [
        dcc.Link(names.get(e, e), href=f"/runs?experiments={e}", className="chip") for e in query.experiment_ids
    ] or ["All experiments"]
    return html.Div(
        [
            dcc.Location(id=ids.RUNS_NAV, refresh="callback-nav"),
            dcc.Store(id=ids.RUNS_QUERY, data=query.to_store()),
            dcc.Store(id=ids.RUNS_SORT, data=[list(s) for s in query.sort]),
            dcc.Store(id=ids.RUNS_URL),
            dcc.Store(id=ids.RUNS_URL_APPLIED),
            dcc.Store(id=ids.RUNS_PURGE_SINK),
            dcc.Store(id=ids.RUNS_CHANGED, data=0),
            dcc.Store(id=ids.RUNS_ALL_MATCHING, data=False),
            dcc.Store(id=ids.RUNS_RUNNING, data=False),
            dcc.Store(id=ids.RUNS_EXPANDED, data=tree.parse_expanded(_arg(query_args, "expanded"))),
            dcc.Interval(id=ids.RUNS_TICK, interval=int(services.settings.refresh_seconds * 1000), disabled=True),
            page_header("Runs", subtitle=html.Span(["Experiments: ", *scope], className="scope")),
            html.Div(
                [
                    dcc.Input(
                        id=ids.RUNS_SEARCH,
                        value=query.filter,
                        type="text",
                        debounce=True,
                        placeholder=PLACEHOLDER,
                        className="search-input",
                        spellCheck="false",
                        autoComplete="off",
                    ),
                    html.Button("Search", id=ids.RUNS_SEARCH_GO, className="button primary", title="Run the search"),
                    html.Button("Clear", id=ids.RUNS_SEARCH_CLEAR, className="button", title="Clear the filter"),
                ],
                className="search-row",
                title="MLflow search syntax, plus OR, NOT and parentheses",
            ),
            html.Div(error_box(error) if error else None, id=ids.RUNS_SEARCH_ERROR),
            html.Div(description, id=ids.RUNS_SEARCH_DESCRIBE, className="search-describe"),
            html.Div(
                [
                    control(
                        "State",
                        dcc.Dropdown(
                            id=ids.RUNS_STATE,
                            options=STATE_OPTIONS,
                            value=query.state,
                            clearable=False,
                            searchable=False,
                        ),
                        "Active runs, soft-deleted runs (kept 30 days), or both",
                    ),
                    control(
                        "Time created",
                        dcc.Dropdown(
                            id=ids.RUNS_TIME, options=TIME_OPTIONS, value=query.time, clearable=False, searchable=False
                        ),
                        "Only runs started in this window",
                    ),
                    html.Div(
                        control(
                            "Range",
                            dcc.DatePickerRange(
                                id=ids.RUNS_TIME_RANGE,
                                start_date=query.start,
                                end_date=query.end,
                                display_format="YYYY-MM-DD",
                                clearable=True,
                            ),
                            "Start and end day (UTC, inclusive)",
                        ),
                        id=ids.RUNS_TIME_BOX,
                        style=None if query.time == "custom" else {"display": "none"},
                    ),
                    control(
                        "Models",
                        dcc.Dropdown(
                            id=ids.RUNS_MODELS,
                            options=MODEL_OPTIONS,
                            value=query.models,
                            clearable=False,
                            searchable=False,
                        ),
                        "All runs, or only runs that logged a model",
                    ),
                    control(
                        "Columns",
                        dcc.Dropdown(
                            id=ids.RUNS_COLUMNS,
                            options=sorted(set(available) | set(chosen)),
                            value=chosen,
                            multi=True,
                            placeholder="Pick metric, param and tag columns",
                        ),
                        "Metric, param and tag columns shown in the table",
                    ),
                    control(
                        "Live",
                        html.Div(
                            [
                                dcc.Checklist(
                                    id=ids.RUNS_LIVE,
                                    options=[{"label": " Auto-refresh", "value": "on"}],
                                    value=["on"],
                                    className="live-toggle",
                                ),
                                html.Span(id=ids.RUNS_LIVE_STATE, className="live-state"),
                            ],
                            className="live-box",
                        ),
                        "Refresh the table while shown runs are RUNNING",
                    ),
                ],
                className="filter-row",
            ),
            runs_actions.action_bar(),
            runs_charts.panel(),
            # The empty state lies over the grid's body (the grid itself stays mounted: it asks
            # for rows again when the view changes).
            html.Div(
                [
                    html.Div(id=ids.RUNS_EMPTY, className="grid-empty"),
                    dcc.Loading(
                        dag.AgGrid(
                            id=ids.RUNS_GRID,
                            rowModelType="infinite",
                            columnDefs=column_defs(chosen, query.sort),
                            defaultColDef={"resizable": True, "suppressHeaderMenuButton": True},
                            getRowId="params.data.run_id",
                            dashGridOptions={
                                "rowSelection": {
                                    "mode": "multiRow",
                                    "checkboxes": True,
                                    "headerCheckbox": False,
                                    "enableClickSelection": False,
                                },
                                "cacheBlockSize": BLOCK_SIZE,
                                "maxBlocksInCache": 20,
                                "infiniteInitialRowCount": 1,
                                "suppressFieldDotNotation": True,
                                "tooltipShowDelay": 300,
                                "suppressNoRowsOverlay": True,  # the page's own empty state says what to do
                            },
                            className="ag-theme-quartz grid runs-grid",
                            style={"height": "62vh"},
                        ),
                        type="dot",
                        delay_show=400,
                        parent_className="grid-loading",
                    ),
                ],
                className="grid-stage",
            ),
            runs_actions.confirm_dialog(),
        ],
        className="page page-runs",
    )


def _arg(args: dict[str, Any], name: str) -> str:
    value = args.get(name)
    return value[0] if isinstance(value, list) else str(value or "")


def _columns(services: Services, query: RunsQuery) -> tuple[list[str], list[str]]:
    return services.column_info(query.search_kwargs())


def register_callbacks(app: Dash, services: Services) -> None:
    @app.callback(
        Output(ids.RUNS_QUERY, "data"),
        Output(ids.RUNS_SEARCH_ERROR, "children"),
        Output(ids.RUNS_SEARCH_DESCRIBE, "children"),
        Output(ids.RUNS_SEARCH, "value"),
        Output(ids.RUNS_TIME_BOX, "style"),
        Output(ids.RUNS_GRID, "columnDefs"),
        Output(ids.RUNS_COLUMNS, "options"),
        Input(ids.RUNS_SEARCH, "value"),  # debounced: changes on Enter or leaving the box
        Input(ids.RUNS_SEARCH_GO, "n_clicks"),
        Input(ids.RUNS_SEARCH_CLEAR, "n_clicks"),
        Input(ids.RUNS_STATE, "value"),
        Input(ids.RUNS_TIME, "value"),
        Input(ids.RUNS_TIME_RANGE, "start_date"),
        Input(ids.RUNS_TIME_RANGE, "end_date"),
        Input(ids.RUNS_MODELS, "value"),
        Input(ids.RUNS_COLUMNS, "value"),
        State(ids.RUNS_QUERY, "data"),
        State(ids.RUNS_SORT, "data"),
        State(ids.RUNS_COLUMNS, "options"),
        prevent_initial_call=True,
    )
    def update_query(
        text: str | None,
        _go: Any,
        _clear: Any,
        state: str,
        time_window: str,
        start: str | None,
        end: str | None,
        models: str,
        columns: list[str] | None,
        data: dict[str, Any],
        sort: list[list[str]],
        options: list[Any],
    ) -> tuple[Any, ...]:
        old = RunsQuery.from_store(data)
        cleared = ctx.triggered_id == ids.RUNS_SEARCH_CLEAR
        text = "" if cleared else (text or "").strip()
        error, description = check_filter(text)
        time_style = None if time_window == "custom" else {"display": "none"}
        if error:
            return no_update, error_box(error), "", no_update, time_style, no_update, no_update
        # Columns follow the user's pick; when the view changes before any pick, the defaults.
        picked = columns if ctx.triggered_id == ids.RUNS_COLUMNS or old.columns is not None else None
        query = RunsQuery.from_store(
            {
                **data,
                "filter": text,
                "state": state,
                "time": time_window,
                "start": start,
                "end": end,
                "models": models,
                "columns": picked,
                "sort": sort,
            }
        )
        available, default = services.column_info(query.search_kwargs())
        shown = list(query.columns) if query.columns is not None else default
        if query == old and not cleared:
            return no_update, None, description, no_update, time_style, no_update, no_update
        new_options = sorted(set(available) | set(shown) | set(_values(options)))
        return (
            query.to_store(),
            None,
            description,
            "" if cleared else no_update,
            time_style,
            column_defs(shown, query.sort),
            new_options,
        )

    @app.callback(
        Output(ids.RUNS_GRID, "getRowsResponse"),
        Output(ids.RUNS_COUNT, "children"),
        Output(ids.RUNS_EMPTY, "children"),
        Output(ids.RUNS_SORT, "data"),
        Output(ids.RUNS_URL, "data"),
        Output(ids.RUNS_RUNNING, "data"),
        Input(ids.RUNS_GRID, "getRowsRequest"),
        State(ids.RUNS_QUERY, "data"),
        State(ids.RUNS_EXPANDED, "data"),
    )
    def load_rows(request: dict[str, Any] | None, data: dict[str, Any], expanded: list[str] | None) -> tuple[Any, ...]:
        if not request:
            return (no_update,) * 6
        return rows_response(services, RunsQuery.from_store(data), request, expanded)

    @app.callback(
        Output(ids.RUNS_EXPANDED, "data"),
        Input(ids.RUNS_GRID, "cellRendererData"),
        State(ids.RUNS_EXPANDED, "data"),
        prevent_initial_call=True,
    )
    def toggle_nested(event: dict[str, Any] | None, expanded: list[str] | None) -> Any:
        # The run-name cell's toggle reports {run_id, open} through the grid's cellRendererData.
        value = (event or {}).get("value")
        if not isinstance(value, dict) or not isinstance(value.get("run_id"), str):
            return no_update
        return tree.toggle(expanded, value["run_id"], bool(value.get("open")))

    app.clientside_callback(
        ClientsideFunction("runlake", "refreshRows"),
        Output(ids.RUNS_PURGE_SINK, "data", allow_duplicate=True),
        Input(ids.RUNS_EXPANDED, "data"),
        State(ids.RUNS_GRID, "id"),
        prevent_initial_call=True,
    )

    app.clientside_callback(
        ClientsideFunction("runlake", "reloadGrid"),
        Output(ids.RUNS_PURGE_SINK, "data"),
        Input(ids.RUNS_QUERY, "data"),
        Input(ids.RUNS_CHANGED, "data"),
        State(ids.RUNS_GRID, "id"),
        prevent_initial_call=True,
    )
    app.clientside_callback(
        ClientsideFunction("runlake", "replaceUrl"),
        Output(ids.RUNS_URL_APPLIED, "data"),
        Input(ids.RUNS_URL, "data"),
        prevent_initial_call=True,
    )
    app.clientside_callback(
        ClientsideFunction("runlake", "refreshGrid"),
        Output(ids.RUNS_PURGE_SINK, "data", allow_duplicate=True),
        Input(ids.RUNS_TICK, "n_intervals"),
        State(ids.RUNS_LIVE, "value"),
        State(ids.RUNS_GRID, "id"),
        prevent_initial_call=True,
    )

    @app.callback(
        Output(ids.RUNS_TICK, "disabled"),
        Output(ids.RUNS_LIVE_STATE, "children"),
        Input(ids.RUNS_LIVE, "value"),
        Input(ids.RUNS_RUNNING, "data"),
    )
    def toggle_live(live: list[str] | None, running: bool) -> tuple[bool, str]:
        if not running:
            return True, "no running runs shown"
        if not live:
            return True, "paused"
        return False, f"updating every {services.settings.refresh_seconds:g} s"

    runs_actions.register_callbacks(app, services)
    runs_charts.register_callbacks(app, services)


def _values(options: list[Any] | None) -> list[str]:
    return [o["value"] if isinstance(o, dict) else o for o in options or []]


def rows_response(
    services: Services, query: RunsQuery, request: dict[str, Any], expanded: list[str] | None = None
) -> tuple[Any, ...]:
    """What the grid callback returns for one ``getRowsRequest`` (also what ``benchmarks/ui.py`` times).

    The rows are the view's top-level runs with each expanded parent's matching children under
    it (``tree.block``); each row carries its depth, its matching-children count and whether
    it is open, for the run-name cell's toggle.
    """
    from runlake.core.errors import RunlakeError

    block = page_request(request)
    view = RunsQuery.from_store({**query.to_store(), "sort": [list(s) for s in block.sort]})
    expanded = tree.parse_expanded(expanded or [])
    try:
        shown = list(query.columns) if query.columns is not None else services.column_info(query.search_kwargs())[1]
        kwargs = page_kwargs(query, block, shown)
        offset, size, columns = kwargs.pop("offset"), kwargs.pop("page_size"), kwargs.pop("columns")
        page = tree.block(services, kwargs, offset, size, columns, expanded)
    except RunlakeError as exc:
        # The search box shows a filter's error with its caret; here the table says why it is empty.
        hint = "Fix the filter above, or press Clear." if query.filter else exc.to_dict()["message"]
        return (
            {"rowData": [], "rowCount": 0},
            "",
            empty_state("No runs shown: the filter is invalid." if query.filter else "No runs shown.", hint),
            no_update,
            no_update,
            False,
        )
    data = rows(page.frame)
    for row in data:
        run_id = row["run_id"]
        row["nest_depth"] = page.depth.get(run_id, 0)
        row["nest_children"] = page.counts.get(run_id, 0)
        row["nest_open"] = run_id in page.expanded
        row["nest_any"] = bool(page.counts)
    count = f"{page.matches:,} run{'s' if page.matches != 1 else ''} match"
    empty = None
    if page.matches == 0:
        empty = empty_state(
            ["No runs match ", html.Code(query.filter)] if query.filter else "No runs in this view.",
            "Clear the filter, widen the time window or switch State to All."
            if query.filter
            else "Switch State to All, widen the time window, or log runs with runlake.ingest.",
        )
    running = any(r.get("status") == "RUNNING" for r in data)
    return (
        {"rowData": data, "rowCount": page.rows},
        count,
        empty,
        [list(s) for s in block.sort],
        view.to_url(expanded),
        running,
    )
