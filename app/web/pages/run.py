"""Run page (``/runs/<run_id>``): everything about one run; changes go through callbacks only.

Header with rename, notes, params, metrics with charts, tags, artifacts, model snippets and
how to reproduce the run (callbacks in ``run_callbacks``, redrawn parts in ``run_parts``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dash import dcc, html

from runlake.app.web import artifacts as arts
from runlake.app.web import ids
from runlake.app.web.components import (
    control,
    data_table,
    empty_state,
    page_header,
    section,
    status_pill,
    x_axis_control,
)
from runlake.app.web.formatting import format_duration, format_number, format_time, long_text
from runlake.app.web.pages import run_callbacks
from runlake.app.web.pages.run_parts import HIDDEN, NOTE_TAG, notes_view, tags_body
from runlake.app.web.run_sections import (
    artifact_preview,
    artifact_tree,
    model_section,
    reproduce_section,
    source_artifact,
)
from runlake.core import vocab

if TYPE_CHECKING:
    from dash import Dash
    from dash.development.base_component import Component

    from runlake.app.web.services import Services
    from runlake.lake import RunRecord

PATH = "/runs/<run_id>"
REGISTER = {"path_template": PATH, "name": "Run", "title": "Run · runlake", "order": 2}


def layout(services: Services, run_id: str | None = None, artifact: str | None = None, **_query: Any) -> html.Div:
    record = services.get_run(run_id) if run_id else None
    if record is None:
        return html.Div(
            [
                page_header("Run not found"),
                empty_state(
                    f"No run with id {run_id!r}.",
                    [
                        "It may have been purged. ",
                        dcc.Link("Browse runs", href="/runs"),
                        " or ",
                        dcc.Link("go to experiments", href="/"),
                        ".",
                    ],
                ),
            ],
            className="page",
        )
    info = record.info
    deleted = info.get("lifecycle_stage") == "deleted"
    store = arts.for_run(services, record.run_id)
    entries = store.list() if store else []
    running = info.get("status") == "RUNNING"
    models = services.model_names(record)
    user_tags = {k: v for k, v in record.tags.items() if not k.startswith("mlflow.")}
    return html.Div(
        [
            dcc.Store(id=ids.RUN_ID, data=record.run_id),
            dcc.Interval(id=ids.RUN_TICK, interval=int(services.settings.refresh_seconds * 1000), disabled=not running),
            page_header(
                html.Span(long_text(info.get("run_name") or record.run_id), id=ids.RUN_NAME),
                html.Span(status_pill(info.get("status")), id=ids.RUN_STATUS),
                html.Button("Rename", id=ids.RUN_RENAME, className="button small", title="Rename this run"),
                subtitle=dcc.Link(
                    long_text(services.experiment_names().get(str(info["experiment_id"]), str(info["experiment_id"]))),
                    href=f"/runs?experiments={info['experiment_id']}",
                ),
            ),
            html.Div(
                [
                    dcc.Input(
                        id=ids.RUN_RENAME_INPUT, value=info.get("run_name") or "", className="text-input", maxLength=250
                    ),
                    html.Button("Save", id=ids.RUN_RENAME_SAVE, className="button primary"),
                    html.Button("Cancel", id=ids.RUN_RENAME_CANCEL, className="button"),
                ],
                id=ids.RUN_RENAME_BOX,
                className="inline-form",
                style=HIDDEN,
            ),
            html.Div(_deleted_banner() if deleted else None, id=ids.RUN_DELETED),
            html.Div(id=ids.RUN_MESSAGE),
            _meta(services, record, source_artifact(store, entries)),
            section("Notes", _notes(record.tags.get(NOTE_TAG, ""))),
            section("Parameters", _params(record.params), count=len(record.params), open=bool(record.params)),
            section("Metrics", _metrics(record, running), count=len(record.metrics)),
            section("Tags", html.Div(tags_body(user_tags, record.tags), id=ids.RUN_TAGS), count=len(user_tags)),
            section(
                "Artifacts",
                html.Div(
                    [
                        artifact_tree(entries),
                        html.Div(
                            artifact_preview(record.run_id, store, artifact)
                            if (artifact and store)
                            else html.Div("Pick a file to preview it.", className="muted"),
                            id=ids.RUN_ARTIFACT_PREVIEW,
                            className="artifact-preview",
                        ),
                    ],
                    className="artifacts",
                ),
                count=sum(1 for e in entries if not e.is_dir),
            ),
            section("Model", model_section(record.run_id, str(services.lake.root), models)) if models else None,
            section("Reproduce run", reproduce_section(record.run_id, record, store), open=False),
        ],
        className="page page-run",
    )


def _deleted_banner() -> list[Any]:
    return [
        html.Div(
            [
                html.Strong("This run is deleted."),
                html.Span("It is kept 30 days after deletion, then purged."),
                html.Button("Restore", id=ids.RUN_RESTORE, className="button small"),
            ],
            className="deleted-banner",
        )
    ]


def _meta(services: Services, record: RunRecord, source_path: str | None) -> html.Div:
    info, tags = record.info, record.tags
    start, end = info.get("start_time"), info.get("end_time")
    source = info.get("source_name") or tags.get(vocab.SOURCE_NAME_TAG) or "—"
    source_view = (
        dcc.Link(source, href=f"/runs/{record.run_id}?artifact={source_path}", title="View the exact snapshot that ran")
        if source_path
        else source
    )
    commit = tags.get(vocab.GIT_COMMIT_TAG) or info.get("source_version") or ""
    branch = tags.get(vocab.GIT_BRANCH_TAG)
    dirty = tags.get(vocab.GIT_DIRTY_TAG)
    version: list[Component] = [html.Code(commit[:10] or "—", title=commit)]
    if branch:
        version.append(html.Span(f" on {branch}"))
    if dirty == "true":
        version.append(
            html.Span(" (dirty)", className="pill pill-killed", title="Uncommitted changes; see Reproduce run")
        )
    parent = info.get("parent_run_id")
    children = services.children(record.run_id)
    names = services.names_of(([parent] if parent else []) + children[:20])
    items = [
        ("Run ID", html.Code(record.run_id)),
        ("Started", format_time(start) or "—"),
        ("Ended", format_time(end) or ("running" if info.get("status") == "RUNNING" else "—")),
        ("Duration", format_duration(start, end, info.get("status")) or "—"),
        ("User", long_text(info.get("user_id") or "—", 80)),
        ("Source", [html.Span(f"{info.get('source_type') or ''} ", className="muted"), source_view]),
        ("Version", version),
        ("Parent run", dcc.Link(long_text(names.get(parent, parent), 80), href=f"/runs/{parent}") if parent else "—"),
        ("Child runs", _child_links(children, names) if children else "—"),
    ]
    return html.Div(
        [
            html.Div(
                [html.Span(k, className="meta-label"), html.Span(v, className="meta-value")], className="meta-item"
            )
            for k, v in items
        ],
        className="run-meta",
    )


def _child_links(children: list[str], names: dict[str, str]) -> list[Any]:
    links: list[Any] = []
    for child in children[:20]:
        links += [dcc.Link(long_text(names.get(child, child[:8]), 80), href=f"/runs/{child}"), " "]
    if len(children) > 20:
        links.append(html.Span(f"and {len(children) - 20} more", className="muted"))
    return links


def _notes(text: str) -> list[Any]:
    return [
        html.Div(notes_view(text), id=ids.RUN_NOTES, className="notes-view"),
        html.Button("Edit notes", id=ids.RUN_NOTES_EDIT, className="button small"),
        html.Div(
            [
                dcc.Textarea(id=ids.RUN_NOTES_INPUT, value=text, className="notes-input"),
                html.Div(
                    [
                        html.Button("Save", id=ids.RUN_NOTES_SAVE, className="button primary"),
                        html.Button("Cancel", id=ids.RUN_NOTES_CANCEL, className="button"),
                    ],
                    className="inline-form",
                ),
            ],
            id=ids.RUN_NOTES_BOX,
            style=HIDDEN,
        ),
    ]


def _params(params: dict[str, str]) -> Any:
    if not params:
        return html.Span("No parameters logged.", className="muted")
    return data_table(["Parameter", "Value"], [(long_text(k, 80), long_text(v)) for k, v in sorted(params.items())])


def _metrics(record: RunRecord, running: bool) -> Any:
    if not record.metrics and not running:
        # The live switch stays in the page (hidden, off): the status callback takes it as an
        # input beside the page's tick, and Dash reports an input missing from the layout as
        # an error in the browser.
        live_off = dcc.Checklist(id=ids.RUN_LIVE, options=[], value=[], style=HIDDEN)
        return html.Div([html.Span("No metrics logged.", className="muted"), live_off])
    rows = [
        (long_text(key, 80), _num(s["latest"]), _num(s["min"]), _num(s["max"]), format_number(s.get("step")))
        for key, s in sorted(record.metric_stats.items())
    ]
    return html.Div(
        [
            data_table(["Metric", "Latest", "Min", "Max", "Step"], rows, numeric=(1, 2, 3, 4))
            if rows
            else html.Div("No metrics yet: charts appear here as the run logs them.", className="muted"),
            html.Div(
                [
                    x_axis_control(ids.RUN_X_AXIS, tooltip="What the charts' x-axis shows"),
                    control(
                        "Smoothing",
                        dcc.Slider(
                            id=ids.RUN_SMOOTHING,
                            min=0,
                            max=0.99,
                            step=0.01,
                            value=0,
                            marks={0: "0", 0.5: "0.5", 0.99: "0.99"},
                            tooltip={"placement": "bottom"},
                        ),
                        "Exponential moving average of each curve (raw points stay faint)",
                    ),
                    control(
                        "Y scale",
                        dcc.Checklist(id=ids.RUN_LOG_Y, options=[{"label": " Log", "value": "log"}], value=[]),
                        "Logarithmic y-axis",
                    ),
                    control(
                        "Band",
                        dcc.Checklist(
                            id=ids.RUN_BAND, options=[{"label": " Min–max", "value": "band"}], value=["band"]
                        ),
                        "Shade each bucket's min and max around the line of its last values",
                    ),
                    # Only a running run refreshes; for the others the switch would do nothing.
                    html.Div(
                        control(
                            "Live",
                            dcc.Checklist(
                                id=ids.RUN_LIVE,
                                options=[{"label": " Auto-refresh", "value": "on"}],
                                value=["on"] if running else [],
                                className="live-toggle",
                            ),
                            "Refresh the charts while the run is RUNNING",
                        ),
                        style=None if running else HIDDEN,
                    ),
                ],
                className="chart-controls",
            ),
            dcc.Store(id=ids.RUN_SERIES_STATE, data={}),
            dcc.Loading(html.Div(id=ids.RUN_CHARTS, className="charts"), type="dot", delay_show=400),
        ]
    )


def _num(value: Any) -> html.Span:
    # The exact value on hover; the table shows the dashboard's significant-digit form.
    return html.Span(format_number(value), title=repr(float(value)) if value is not None else None)


def register_callbacks(app: Dash, services: Services) -> None:
    run_callbacks.register(app, services)
