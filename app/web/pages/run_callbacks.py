"""Callbacks of the run page: rename, notes, tags, restore, charts, artifact preview, reproduce."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dash import ALL, Input, Output, State, ctx, dcc, html, no_update

from runlake.app.web import artifacts as arts
from runlake.app.web import charts, ids
from runlake.app.web.components import message, status_pill
from runlake.app.web.formatting import display_text, long_text
from runlake.app.web.pages.run_parts import HIDDEN, notes_view, tags_body
from runlake.app.web.run_sections import DIFF_FILE, artifact_preview, load_environment, reproduce_script
from runlake.core.errors import RunlakeError

if TYPE_CHECKING:
    from dash import Dash

    from runlake.app.web.services import Services
    from runlake.lake import RunRecord

SHOWN = {"display": "flex"}
MAX_CHARTS = 24


def _error(exc: RunlakeError) -> html.Div:
    return message(exc.to_dict()["message"], "error")


def _clicked() -> bool:
    """True when the trigger is a real click (not a button appearing with n_clicks None)."""
    return any(t.get("value") for t in ctx.triggered)


def register(app: Dash, services: Services) -> None:
    lake = services.lake

    @app.callback(
        Output(ids.RUN_RENAME_BOX, "style"),
        Output(ids.RUN_NAME, "children"),
        Output(ids.RUN_MESSAGE, "children"),
        Input(ids.RUN_RENAME, "n_clicks"),
        Input(ids.RUN_RENAME_CANCEL, "n_clicks"),
        Input(ids.RUN_RENAME_SAVE, "n_clicks"),
        Input(ids.RUN_RENAME_INPUT, "n_submit"),
        State(ids.RUN_RENAME_INPUT, "value"),
        State(ids.RUN_ID, "data"),
        prevent_initial_call=True,
    )
    def rename(
        _open: Any, _cancel: Any, _save: Any, _submit: Any, name: str | None, run_id: str
    ) -> tuple[Any, Any, Any]:
        if ctx.triggered_id == ids.RUN_RENAME:
            return SHOWN, no_update, None
        if ctx.triggered_id == ids.RUN_RENAME_CANCEL:
            return HIDDEN, no_update, None
        name = (name or "").strip()
        if not name:
            return no_update, no_update, message("A run name cannot be empty.", "warning")
        try:
            services.change(lake.rename_run, run_id, name)
        except RunlakeError as exc:
            return no_update, no_update, _error(exc)
        return HIDDEN, long_text(name), message(f"Renamed to {display_text(name, 120)}.", "success")

    @app.callback(
        Output(ids.RUN_NOTES_BOX, "style"),
        Output(ids.RUN_NOTES, "children"),
        Output(ids.RUN_NOTES_EDIT, "style"),
        Output(ids.RUN_MESSAGE, "children", allow_duplicate=True),
        Input(ids.RUN_NOTES_EDIT, "n_clicks"),
        Input(ids.RUN_NOTES_CANCEL, "n_clicks"),
        Input(ids.RUN_NOTES_SAVE, "n_clicks"),
        State(ids.RUN_NOTES_INPUT, "value"),
        State(ids.RUN_ID, "data"),
        prevent_initial_call=True,
    )
    def notes(_edit: Any, _cancel: Any, _save: Any, text: str | None, run_id: str) -> tuple[Any, ...]:
        if ctx.triggered_id == ids.RUN_NOTES_EDIT:
            return {"display": "block"}, no_update, HIDDEN, None
        if ctx.triggered_id == ids.RUN_NOTES_CANCEL:
            return HIDDEN, no_update, None, None
        try:
            services.change(lake.set_description, run_id, text or "")
        except RunlakeError as exc:
            return no_update, no_update, no_update, _error(exc)
        return HIDDEN, notes_view(text or ""), None, message("Notes saved.", "success")

    @app.callback(
        Output(ids.RUN_TAGS, "children"),
        Output(ids.RUN_MESSAGE, "children", allow_duplicate=True),
        Input(ids.RUN_TAG_SET, "n_clicks"),
        Input(ids.RUN_TAG_VALUE, "n_submit"),
        Input({"type": ids.RUN_TAG_DELETE, "key": ALL}, "n_clicks"),
        State(ids.RUN_TAG_KEY, "value"),
        State(ids.RUN_TAG_VALUE, "value"),
        State(ids.RUN_ID, "data"),
        prevent_initial_call=True,
    )
    def change_tags(
        _set: Any, _submit: Any, _deletes: Any, key: str | None, value: str | None, run_id: str
    ) -> tuple[Any, Any]:
        if not _clicked():
            return no_update, no_update
        try:
            if isinstance(ctx.triggered_id, dict):
                key = ids.decode_key(ctx.triggered_id.get("key"))
                if key is None:
                    return no_update, message("Unknown tag.", "warning")
                services.change(lake.delete_tag, run_id, key)
                note = f"Deleted tag {display_text(key, 80)}."
            else:
                key = (key or "").strip()
                if not key:
                    return no_update, message("A tag needs a key.", "warning")
                services.change(lake.set_tag, run_id, key, value or "")
                note = f"Set tag {display_text(key, 80)}."
        except RunlakeError as exc:
            return no_update, _error(exc)
        record = services.get_run(run_id)
        user_tags = {k: v for k, v in record.tags.items() if not k.startswith("mlflow.")}
        return tags_body(user_tags, record.tags), message(note, "success")

    @app.callback(
        Output(ids.RUN_TAG_KEY, "value"),
        Output(ids.RUN_TAG_VALUE, "value"),
        Input({"type": ids.RUN_TAG_EDIT, "key": ALL}, "n_clicks"),
        State(ids.RUN_ID, "data"),
        prevent_initial_call=True,
    )
    def edit_tag(_clicks: Any, run_id: str) -> tuple[Any, Any]:
        if not _clicked() or not isinstance(ctx.triggered_id, dict):
            return no_update, no_update
        key = ids.decode_key(ctx.triggered_id.get("key"))
        record = services.get_run(run_id)
        if key is None or record is None:
            return no_update, no_update
        return key, record.tags.get(key, "")

    @app.callback(
        Output(ids.RUN_DELETED, "children"),
        Output(ids.RUN_MESSAGE, "children", allow_duplicate=True),
        Input(ids.RUN_RESTORE, "n_clicks"),
        State(ids.RUN_ID, "data"),
        prevent_initial_call=True,
    )
    def restore(clicks: Any, run_id: str) -> tuple[Any, Any]:
        if not clicks:
            return no_update, no_update
        try:
            done = services.change(lake.restore_run, run_id, include_descendants=True)
        except RunlakeError as exc:
            return no_update, _error(exc)
        return None, message(f"Restored {len(done)} run{'s' if len(done) != 1 else ''}.", "success")

    @app.callback(
        Output(ids.RUN_CHARTS, "children"),
        Input(ids.RUN_X_AXIS, "value"),
        Input(ids.RUN_SMOOTHING, "value"),
        Input(ids.RUN_LOG_Y, "value"),
        State(ids.RUN_ID, "data"),
    )
    def draw(x_axis: str, smoothing: float, log_y: list[str], run_id: str) -> Any:
        return metric_charts(services, run_id, x_axis or "step", float(smoothing or 0), bool(log_y))

    @app.callback(
        Output({"type": ids.RUN_CHART, "key": ALL}, "figure"),
        Output(ids.RUN_CHARTS, "children", allow_duplicate=True),
        Input(ids.RUN_TICK, "n_intervals"),
        State(ids.RUN_X_AXIS, "value"),
        State(ids.RUN_SMOOTHING, "value"),
        State(ids.RUN_LOG_Y, "value"),
        State({"type": ids.RUN_CHART, "key": ALL}, "id"),
        State({"type": ids.RUN_CHART, "key": ALL}, "relayoutData"),
        State(ids.RUN_ID, "data"),
        prevent_initial_call=True,
    )
    def refresh(
        _tick: Any,
        x_axis: str,
        smoothing: float,
        log_y: list[str],
        shown: list[dict[str, str]],
        views: list[dict[str, Any] | None],
        run_id: str,
    ) -> Any:
        # Live refresh sets each graph's figure in place, carrying over the range the user
        # zoomed or panned to (uirevision alone loses it once the graph re-syncs its layout).
        # Only a new metric key redraws the set of charts.
        x_axis, smoothing_value, log = x_axis or "step", float(smoothing or 0), bool(log_y)
        keys = [item["key"] for item in shown]
        record = services.get_run(run_id)
        if record is None or chart_keys(record) != keys:
            return [no_update] * len(keys), metric_charts(services, run_id, x_axis, smoothing_value, log)
        figures = metric_figures(services, record, keys, x_axis, smoothing_value, log)
        return [charts.keep_view(figure, view) for figure, view in zip(figures, views)], no_update

    @app.callback(
        Output(ids.RUN_TICK, "disabled"),
        Output(ids.RUN_STATUS, "children"),
        Input(ids.RUN_LIVE, "value"),
        Input(ids.RUN_TICK, "n_intervals"),
        State(ids.RUN_ID, "data"),
    )
    def live_state(live: list[str] | None, _tick: Any, run_id: str) -> tuple[bool, Any]:
        # Each tick re-reads the status: the refresh stops by itself once the run ends.
        record = services.get_run(run_id)
        status = record.info.get("status") if record is not None else None
        return not (live and status == "RUNNING"), status_pill(status)

    @app.callback(
        Output(ids.RUN_ARTIFACT_PREVIEW, "children"),
        Input({"type": ids.RUN_ARTIFACT_FILE, "path": ALL}, "n_clicks"),
        State(ids.RUN_ID, "data"),
        prevent_initial_call=True,
    )
    def preview(_clicks: Any, run_id: str) -> Any:
        if not _clicked() or not isinstance(ctx.triggered_id, dict):
            return no_update
        rel = ids.decode_key(ctx.triggered_id.get("path"))
        store = arts.for_run(services, run_id)
        return artifact_preview(run_id, store, rel) if store and rel is not None else no_update

    @app.callback(
        Output(ids.RUN_REPRO_DOWNLOAD, "data"),
        Input(ids.RUN_REPRO_SCRIPT, "n_clicks"),
        State(ids.RUN_ID, "data"),
        prevent_initial_call=True,
    )
    def download_script(_clicks: Any, run_id: str) -> Any:
        record = services.get_run(run_id)
        store = arts.for_run(services, run_id)
        if record is None:
            return no_update
        script = reproduce_script(record, load_environment(store), bool(store and store.exists(DIFF_FILE)))
        return dcc.send_string(script, f"reproduce-{run_id[:8]}.sh", type="text/x-shellscript")


def chart_keys(record: RunRecord) -> list[str]:
    """The metric keys the run page charts, in order."""
    return sorted(record.metrics)[:MAX_CHARTS]


def metric_figures(
    services: Services, record: RunRecord, keys: list[str], x_axis: str, smoothing: float, log_y: bool
) -> list[Any]:
    points = services.histories([record.run_id], keys)
    start = record.info.get("start_time")
    return [
        charts.history_figure(
            points,
            key,
            x_axis=x_axis,
            smoothing=smoothing,
            log_y=log_y,
            starts={record.run_id: start},
            names={record.run_id: key},
        )
        for key in keys
    ]


def metric_charts(services: Services, run_id: str, x_axis: str, smoothing: float, log_y: bool) -> Any:
    """One chart per metric of a run (what the run page's chart callback returns)."""
    record = services.get_run(run_id)
    if record is None or not record.metrics:
        return None
    keys = chart_keys(record)
    figures = metric_figures(services, record, keys, x_axis, smoothing, log_y)
    return [
        html.Div(
            dcc.Graph(figure=figure, config={"displaylogo": False}, id={"type": ids.RUN_CHART, "key": key}),
            className="chart-card",
        )
        for key, figure in zip(keys, figures)
    ]
