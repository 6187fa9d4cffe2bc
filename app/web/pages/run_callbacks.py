"""Callbacks of the run page: rename, notes, tags, restore, charts, artifact preview, reproduce."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dash import ALL, MATCH, Input, Output, Patch, State, ctx, dcc, html, no_update
from dash.dcc.express import send_string

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
        if record is None:  # purged between the change and this read
            return no_update, message("This run no longer exists.", "warning")
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
        Output(ids.RUN_SERIES_STATE, "data"),
        Input(ids.RUN_X_AXIS, "value"),
        Input(ids.RUN_SMOOTHING, "value"),
        Input(ids.RUN_LOG_Y, "value"),
        Input(ids.RUN_BAND, "value"),
        State(ids.RUN_ID, "data"),
    )
    def draw(x_axis: str, smoothing: float, log_y: list[str], band: list[str] | None, run_id: str) -> Any:
        return metric_charts(services, run_id, ChartOptions.of(x_axis, smoothing, log_y, band))

    @app.callback(
        Output({"type": ids.RUN_CHART, "key": MATCH}, "figure", allow_duplicate=True),
        Input({"type": ids.RUN_CHART, "key": MATCH}, "relayoutData"),
        State(ids.RUN_X_AXIS, "value"),
        State(ids.RUN_SMOOTHING, "value"),
        State(ids.RUN_LOG_Y, "value"),
        State(ids.RUN_BAND, "value"),
        State(ids.RUN_ID, "data"),
        prevent_initial_call=True,
    )
    def zoom(
        relayout: dict[str, Any] | None,
        x_axis: str,
        smoothing: float,
        log_y: list[str],
        band: list[str] | None,
        run_id: str,
    ) -> Any:
        # A zoom or pan asks the lake again for the visible range only: the buckets narrow
        # with it, down to the raw points; a reset (double click) brings back the whole series.
        options = ChartOptions.of(x_axis, smoothing, log_y, band)
        window = charts.zoom_range(relayout, options.x_axis)
        record = services.get_run(run_id)
        if window is None or record is None or not isinstance(ctx.triggered_id, dict):
            return no_update
        key = ctx.triggered_id["key"]
        figure, _state = chart_figure(services, record, key, options, None if window == (None, None) else window)
        return figure

    @app.callback(
        Output({"type": ids.RUN_CHART, "key": ALL}, "figure"),
        Output(ids.RUN_CHARTS, "children", allow_duplicate=True),
        Output(ids.RUN_SERIES_STATE, "data", allow_duplicate=True),
        Input(ids.RUN_TICK, "n_intervals"),
        State(ids.RUN_X_AXIS, "value"),
        State(ids.RUN_SMOOTHING, "value"),
        State(ids.RUN_LOG_Y, "value"),
        State(ids.RUN_BAND, "value"),
        State({"type": ids.RUN_CHART, "key": ALL}, "id"),
        State({"type": ids.RUN_CHART, "key": ALL}, "relayoutData"),
        State(ids.RUN_SERIES_STATE, "data"),
        State(ids.RUN_ID, "data"),
        prevent_initial_call=True,
    )
    def refresh(
        _tick: Any,
        x_axis: str,
        smoothing: float,
        log_y: list[str],
        band: list[str] | None,
        shown: list[dict[str, str]],
        views: list[dict[str, Any] | None],
        drawn: dict[str, Any] | None,
        run_id: str,
    ) -> Any:
        # Only a new metric key redraws the set of charts. Otherwise each chart whose metric
        # got new points is brought up to date in place, keeping the user's zoom.
        options = ChartOptions.of(x_axis, smoothing, log_y, band)
        keys = [item["key"] for item in shown]
        record = services.get_run(run_id)
        if record is None or chart_keys(record) != keys:
            children, state = metric_charts(services, run_id, options)
            return [no_update] * len(keys), children, state
        updates, state = live_updates(services, record, keys, views, drawn or {}, options)
        return updates, no_update, state

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
        return send_string(script, f"reproduce-{run_id[:8]}.sh", type="text/x-shellscript")


def chart_keys(record: RunRecord) -> list[str]:
    """The metric keys the run page charts, in order."""
    return sorted(record.metrics)[:MAX_CHARTS]


@dataclass(frozen=True)
class ChartOptions:
    """The run page's chart controls."""

    x_axis: str = "step"
    smoothing: float = 0.0
    log_y: bool = False
    band: bool = True

    @classmethod
    def of(cls, x_axis: str | None, smoothing: Any, log_y: Any, band: Any) -> ChartOptions:
        return cls(x_axis if x_axis in charts.LAKE_X else "step", float(smoothing or 0), bool(log_y), bool(band))


def _marker(record: RunRecord, key: str) -> list[Any]:
    """What changes when a metric gets new points: its latest point."""
    stats = record.metric_stats.get(key, {})
    return [stats.get("step"), stats.get("timestamp"), repr(stats.get("latest"))]


def chart_figure(
    services: Services,
    record: RunRecord,
    key: str,
    options: ChartOptions,
    window: tuple[float | None, float | None] | None = None,
    shown: tuple[float | None, float | None] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One metric's chart (at most ``charts.BUCKETS`` points per trace) and what it drew.

    ``window`` is the x range to read (metric_series units; None: the whole series) and
    ``shown`` the range the axis shows (default: ``window``).
    """
    low, high = window if window is not None else (None, None)
    rows = services.series([record.run_id], key, charts.LAKE_X[options.x_axis], charts.BUCKETS, low, high)
    figure = charts.series_figure(
        rows,
        key,
        x_axis=options.x_axis,
        smoothing=options.smoothing,
        log_y=options.log_y,
        band=options.band,
        names={record.run_id: key},
        x_range=shown if shown is not None else window,
    )
    drawn = {"last": float(rows["x"].max()) if len(rows) else None, "n": len(rows), "marker": _marker(record, key)}
    return figure, drawn


# The smallest step past a drawn x in each mode: steps and epoch ms are integers, relative
# seconds come from integer milliseconds.
_NEXT = {"step": 1.0, "wall": 1.0, "relative": 0.0005}


def live_updates(
    services: Services,
    record: RunRecord,
    keys: list[str],
    views: list[dict[str, Any] | None],
    drawn: dict[str, Any],
    options: ChartOptions,
) -> tuple[list[Any], dict[str, Any]]:
    """Per chart: nothing (no new points), the new points appended (a ``Patch``), or a redraw.

    Only what is new is fetched: a metric whose latest point did not move is not read at all;
    an unzoomed, unsmoothed chart asks the lake for the points past the last x it drew and
    appends them; the chart is re-bucketed when the appended points would take it past twice
    the bucket count; a smoothed chart is redrawn (its EMA runs over every point), a zoomed
    one from its left edge on.
    """
    state = dict(drawn)
    updates: list[Any] = []
    for key, view in zip(keys, views):
        before = drawn.get(key)
        marker = _marker(record, key)
        if before is not None and before.get("marker") == marker:
            updates.append(no_update)
            continue
        window = charts.zoom_range(view, options.x_axis)
        zoomed = window is not None and window != (None, None)
        if zoomed and window is not None:
            # Zoomed: the view stays, the data runs from its left edge to the newest point, so
            # the new points are there when the user pans right.
            figure, state[key] = chart_figure(services, record, key, options, (window[0], None), window)
            updates.append(figure)
            continue
        if before is None or before.get("last") is None or options.smoothing > 0:
            figure, state[key] = chart_figure(services, record, key, options)
            updates.append(figure)
            continue
        new = services.series(
            [record.run_id],
            key,
            charts.LAKE_X[options.x_axis],
            charts.BUCKETS,
            before["last"] + _NEXT[options.x_axis],
            None,
        )
        if before["n"] + len(new) > 2 * charts.BUCKETS:
            figure, state[key] = chart_figure(services, record, key, options)
            updates.append(figure)
            continue
        patch = Patch()
        x = new["x"].tolist()
        columns = [("max", 0), ("min", 1), ("value", 2)] if options.band else [("value", 0)]
        for column, index in columns:
            patch["data"][index]["x"].extend(x)
            patch["data"][index]["y"].extend(charts.finite(new[column]))
        updates.append(patch)
        last = float(new["x"].max()) if len(new) else before["last"]
        state[key] = {"last": last, "n": before["n"] + len(new), "marker": marker}
    return updates, state


def metric_charts(services: Services, run_id: str, options: ChartOptions) -> tuple[Any, dict[str, Any]]:
    """One chart per metric of a run, and what each drew (the chart callback's outputs)."""
    record = services.get_run(run_id)
    if record is None or not record.metrics:
        return None, {}
    cards, state = [], {}
    for key in chart_keys(record):
        figure, state[key] = chart_figure(services, record, key, options)
        cards.append(
            html.Div(
                dcc.Graph(figure=figure, config={"displaylogo": False}, id={"type": ids.RUN_CHART, "key": key}),
                className="chart-card",
            )
        )
    return cards, state
