"""Experiments page (``/``): every experiment with its run count and last run; open one or several."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import dash_ag_grid as dag
import pandas as pd
from dash import Input, Output, State, dcc, html, no_update

from runlake.app.web import ids
from runlake.app.web.components import empty_state, page_header
from runlake.app.web.formatting import display_text, format_time

if TYPE_CHECKING:
    from dash import Dash

    from runlake.app.web.services import Services

PATH = "/"
REGISTER = {"path": PATH, "name": "Experiments", "title": "Experiments · runlake", "order": 0}

COLUMNS = [
    {
        "field": "name",
        "headerName": "Experiment",
        "cellRenderer": "ExperimentLink",
        "flex": 2,
        "minWidth": 220,
        "checkboxSelection": True,
        "headerCheckboxSelection": True,
    },
    {"field": "run_count", "headerName": "Runs", "type": "rightAligned", "width": 110},
    # Text, not inferred: AG Grid infers a date type from the first row's value and then shows
    # nothing for a row whose text is not a date (an experiment with no run yet shows "—").
    {"field": "last_run_text", "headerName": "Last run (UTC)", "width": 190, "cellDataType": "text"},
    {"field": "created_text", "headerName": "Created (UTC)", "width": 190, "cellDataType": "text"},
    {"field": "experiment_id", "headerName": "ID", "flex": 1, "minWidth": 180},
]


def layout(services: Services, **_query: Any) -> html.Div:
    return html.Div(
        [
            dcc.Location(id=ids.EXP_NAV, refresh="callback-nav"),
            page_header(
                "Experiments",
                html.Button(
                    "Open runs of selected",
                    id=ids.EXP_OPEN,
                    className="button primary",
                    disabled=True,
                    title="Open the runs of the selected experiments in one table (compare across experiments)",
                ),
                subtitle="Pick one or several experiments to browse, search and compare their runs.",
            ),
            html.Div(id=ids.EXP_SELECTION, className="selection-note"),
            html.Div(id="exp-body", children=_body(services)),
        ],
        className="page page-experiments",
    )


def _body(services: Services) -> Any:
    frame = services.experiments()
    if frame.empty:
        return empty_state(
            "No experiments yet.",
            ["Log a run with ", html.Code("runlake.ingest"), ", or try ", html.Code("runlake demo --lake PATH"), "."],
        )
    records = []
    for row in frame.itertuples():
        # An experiment with no active run has no last run time: a missing value (pd.NA in a
        # nullable column) that no comparison may touch.
        records.append(
            {
                "experiment_id": str(row.experiment_id),
                "name": display_text(row.name if not _missing(row.name) else row.experiment_id),
                "run_count": 0 if _missing(row.run_count) else int(row.run_count),
                "last_run_text": "—" if _missing(row.last_run_time) else format_time(row.last_run_time),
                "created_text": "" if _missing(row.creation_time) else format_time(row.creation_time),
            }
        )
    return dag.AgGrid(
        id=ids.EXP_GRID,
        rowData=records,
        columnDefs=COLUMNS,
        getRowId="params.data.experiment_id",
        dashGridOptions={
            "rowSelection": "multiple",
            "suppressRowClickSelection": True,
            "domLayout": "autoHeight",
            "suppressFieldDotNotation": True,
        },
        className="ag-theme-quartz grid",
        style={"height": None},
    )


def _missing(value: Any) -> bool:
    return value is None or bool(pd.isna(value))


def register_callbacks(app: Dash, services: Services) -> None:
    @app.callback(
        Output(ids.EXP_OPEN, "disabled"),
        Output(ids.EXP_SELECTION, "children"),
        Input(ids.EXP_GRID, "selectedRows"),
    )
    def on_select(selected: list[dict[str, Any]] | None) -> tuple[bool, str]:
        selected = selected or []
        if not selected:
            return True, ""
        runs = sum(int(r.get("run_count") or 0) for r in selected)
        return False, f"{len(selected)} experiment{'s' if len(selected) != 1 else ''} selected · {runs:,} runs"

    @app.callback(
        Output(ids.EXP_NAV, "href"),
        Input(ids.EXP_OPEN, "n_clicks"),
        State(ids.EXP_GRID, "selectedRows"),
        prevent_initial_call=True,
    )
    def open_selected(_clicks: int | None, selected: list[dict[str, Any]] | None) -> Any:
        chosen = [r["experiment_id"] for r in selected or []]
        if not chosen:
            return no_update
        return "/runs?experiments=" + ",".join(chosen)
