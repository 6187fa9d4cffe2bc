"""The runs page's selection and what it acts on: compare, delete (with confirm), restore, CSV.

A selection is either the checked rows or "every run matching the view" (select-all), which
is resolved on the server from the query, never from the rows the browser happens to hold.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dash import Input, Output, State, ctx, dcc, html, no_update
from dash.dcc.express import send_string

from runlake.app.web import ids
from runlake.app.web.components import message
from runlake.app.web.export import runs_csv
from runlake.app.web.grid import RunsQuery
from runlake.app.web.services import MAX_COMPARE
from runlake.core.errors import RunlakeError

if TYPE_CHECKING:
    from dash import Dash

    from runlake.app.web.services import Services


def action_bar() -> html.Div:
    return html.Div(
        [
            html.Span(id=ids.RUNS_COUNT, className="count-text"),
            html.Span(id=ids.RUNS_SELECTED, className="selected-text"),
            html.Button(
                "Select all matching",
                id=ids.RUNS_SELECT_ALL,
                className="button link",
                title="Select every run that matches the view, not only the loaded rows",
            ),
            html.Button(
                "Clear selection", id=ids.RUNS_CLEAR_SELECTION, className="button link", style={"display": "none"}
            ),
            html.Span(className="spacer"),
            html.Button(
                "Compare",
                id=ids.RUNS_COMPARE,
                className="button primary",
                disabled=True,
                title=f"Compare the selected runs (up to {MAX_COMPARE})",
            ),
            html.Button(
                "Delete",
                id=ids.RUNS_DELETE,
                className="button danger",
                disabled=True,
                title="Soft-delete the selected runs (kept 30 days, then purged)",
            ),
            html.Button(
                "Restore",
                id=ids.RUNS_RESTORE,
                className="button",
                disabled=True,
                title="Restore the selected deleted runs",
            ),
            html.Button(
                "Download CSV",
                id=ids.RUNS_CSV,
                className="button",
                title="The selected runs, or every matching run when none is selected",
            ),
            dcc.Download(id=ids.RUNS_DOWNLOAD),
            html.Div(id=ids.RUNS_MESSAGE, className="action-message"),
        ],
        className="action-bar",
        id=ids.RUNS_SELECTION_BAR,
    )


def confirm_dialog() -> html.Div:
    modal: dict[str, Any] = {"aria-modal": "true"}  # not a Python name: passed as a keyword dict
    return html.Div(
        html.Div(
            [
                html.H3("Delete runs?"),
                html.P(id=ids.CONFIRM_TEXT),
                dcc.Checklist(
                    id=ids.CONFIRM_DESCENDANTS,
                    options=[{"label": " Also delete descendant runs", "value": "yes"}],
                    value=["yes"],
                    className="confirm-check",
                ),
                html.P(
                    "Deleted runs are kept for 30 days (State: Deleted) and can be restored until then.",
                    className="muted",
                ),
                html.Div(
                    [
                        html.Button("Cancel", id=ids.CONFIRM_CANCEL, className="button"),
                        html.Button("Delete", id=ids.CONFIRM_OK, className="button danger"),
                    ],
                    className="dialog-buttons",
                ),
            ],
            className="dialog",
            role="dialog",
            **modal,
        ),
        id=ids.CONFIRM,
        className="dialog-backdrop",
        style={"display": "none"},
    )


def selected_ids(
    services: Services, rows: list[dict[str, Any]] | None, all_matching: bool, data: dict[str, Any]
) -> list[str]:
    """The run ids an action applies to."""
    if all_matching:
        kwargs = RunsQuery.from_store(data).search_kwargs()
        return services.search_run_ids(**kwargs)
    return [r["run_id"] for r in rows or [] if r and r.get("run_id")]


def register_callbacks(app: Dash, services: Services) -> None:
    @app.callback(
        Output(ids.RUNS_SELECTED, "children"),
        Output(ids.RUNS_COMPARE, "disabled"),
        Output(ids.RUNS_DELETE, "disabled"),
        Output(ids.RUNS_RESTORE, "disabled"),
        Output(ids.RUNS_CLEAR_SELECTION, "style"),
        Output(ids.RUNS_SELECT_ALL, "style"),
        Input(ids.RUNS_GRID, "selectedRows"),
        Input(ids.RUNS_ALL_MATCHING, "data"),
        State(ids.RUNS_COUNT, "children"),
        State(ids.RUNS_QUERY, "data"),
    )
    def show_selection(
        rows: list[dict[str, Any]] | None, all_matching: bool, count: str | None, data: dict[str, Any]
    ) -> tuple[Any, ...]:
        rows = [r for r in rows or [] if r]
        hidden, shown = {"display": "none"}, None
        if all_matching:
            state = RunsQuery.from_store(data).state
            return (
                f"All {count or 'matching runs'} selected".replace(" match", ""),
                False,
                state == "deleted",
                state == "active",
                shown,
                hidden,
            )
        if not rows:
            return "", True, True, True, hidden, shown
        deleted = sum(1 for r in rows if r.get("lifecycle_stage") == "deleted")
        text = f"{len(rows)} selected" + (f" ({deleted} deleted)" if deleted else "")
        return text, False, deleted == len(rows), deleted == 0, shown, shown

    @app.callback(
        Output(ids.RUNS_ALL_MATCHING, "data"),
        Output(ids.RUNS_GRID, "deselectAll"),
        Input(ids.RUNS_SELECT_ALL, "n_clicks"),
        Input(ids.RUNS_CLEAR_SELECTION, "n_clicks"),
        Input(ids.RUNS_QUERY, "data"),
        prevent_initial_call=True,
    )
    def select_all(_all: Any, _clear: Any, _query: Any) -> tuple[bool, Any]:
        if ctx.triggered_id == ids.RUNS_SELECT_ALL:
            return True, no_update
        return False, True

    @app.callback(
        Output(ids.RUNS_NAV, "href"),
        Output(ids.RUNS_MESSAGE, "children", allow_duplicate=True),
        Input(ids.RUNS_COMPARE, "n_clicks"),
        State(ids.RUNS_GRID, "selectedRows"),
        State(ids.RUNS_ALL_MATCHING, "data"),
        State(ids.RUNS_QUERY, "data"),
        prevent_initial_call=True,
    )
    def compare(
        _clicks: Any, rows: list[dict[str, Any]] | None, all_matching: bool, data: dict[str, Any]
    ) -> tuple[Any, Any]:
        run_ids = selected_ids(services, rows, all_matching, data)
        if not run_ids:
            return no_update, message("Select runs to compare first.", "warning")
        # A URL holds a few hundred ids; past MAX_COMPARE the first ones (in the view's order) are compared.
        return "/compare?runs=" + ",".join(run_ids[:MAX_COMPARE]), no_update

    @app.callback(
        Output(ids.CONFIRM, "style"),
        Output(ids.CONFIRM_TEXT, "children"),
        Input(ids.RUNS_DELETE, "n_clicks"),
        Input(ids.CONFIRM_CANCEL, "n_clicks"),
        Input(ids.RUNS_CHANGED, "data"),
        State(ids.RUNS_GRID, "selectedRows"),
        State(ids.RUNS_ALL_MATCHING, "data"),
        State(ids.RUNS_COUNT, "children"),
        prevent_initial_call=True,
    )
    def confirm(
        _delete: Any,
        _cancel: Any,
        _changed: Any,
        rows: list[dict[str, Any]] | None,
        all_matching: bool,
        count: str | None,
    ) -> tuple[Any, Any]:
        if ctx.triggered_id != ids.RUNS_DELETE:
            return {"display": "none"}, no_update
        if all_matching:
            what = f"every run in this view ({(count or '').replace(' match', '')})"
        else:
            names = [r.get("run_name") or r["run_id"][:8] for r in rows or [] if r]
            what = (
                f"{len(names)} run{'s' if len(names) != 1 else ''}: "
                + ", ".join(names[:5])
                + (" …" if len(names) > 5 else "")
            )
        return {"display": "flex"}, f"Delete {what}?"

    @app.callback(
        Output(ids.RUNS_MESSAGE, "children"),
        Output(ids.RUNS_CHANGED, "data"),
        Output(ids.RUNS_ALL_MATCHING, "data", allow_duplicate=True),
        Output(ids.RUNS_GRID, "deselectAll", allow_duplicate=True),
        Input(ids.CONFIRM_OK, "n_clicks"),
        Input(ids.RUNS_RESTORE, "n_clicks"),
        State(ids.CONFIRM_DESCENDANTS, "value"),
        State(ids.RUNS_GRID, "selectedRows"),
        State(ids.RUNS_ALL_MATCHING, "data"),
        State(ids.RUNS_QUERY, "data"),
        State(ids.RUNS_CHANGED, "data"),
        prevent_initial_call=True,
    )
    def change_lifecycle(
        _ok: Any,
        _restore: Any,
        descendants: list[str] | None,
        rows: list[dict[str, Any]] | None,
        all_matching: bool,
        data: dict[str, Any],
        changed: int,
    ) -> tuple[Any, ...]:
        run_ids = selected_ids(services, rows, all_matching, data)
        if not run_ids:
            return message("Nothing selected.", "warning"), no_update, no_update, no_update
        try:
            if ctx.triggered_id == ids.CONFIRM_OK:
                done = services.change(services.lake.delete_run_ids, run_ids, include_descendants=bool(descendants))
                text = f"Deleted {len(done)} run{'s' if len(done) != 1 else ''}. Restore them under State: Deleted within 30 days."
            else:
                done = services.change(services.lake.restore_run_ids, run_ids, include_descendants=True)
                text = f"Restored {len(done)} run{'s' if len(done) != 1 else ''}."
        except RunlakeError as exc:
            return message(exc.message, "error"), no_update, no_update, no_update
        return message(text, "success"), (changed or 0) + 1, False, True

    @app.callback(
        Output(ids.RUNS_DOWNLOAD, "data"),
        Input(ids.RUNS_CSV, "n_clicks"),
        State(ids.RUNS_GRID, "selectedRows"),
        State(ids.RUNS_ALL_MATCHING, "data"),
        State(ids.RUNS_QUERY, "data"),
        prevent_initial_call=True,
    )
    def download(_clicks: Any, rows: list[dict[str, Any]] | None, all_matching: bool, data: dict[str, Any]) -> Any:
        run_ids = selected_ids(services, rows, all_matching, data)
        if not run_ids:  # nothing selected: every run matching the view
            run_ids = selected_ids(services, None, True, data)
        frame = services.lake.frame_for(run_ids)
        return send_string(runs_csv(frame), "runs.csv", type="text/csv")
