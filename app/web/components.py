"""Small building blocks every page uses: headers, sections, status pills, empty states, tables,
and the chart controls several pages share."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from dash import dcc, html

from runlake.app.web.charts import SPREADS, X_AXES

STATUS_CLASSES = {
    "RUNNING": "running",
    "FINISHED": "finished",
    "FAILED": "failed",
    "KILLED": "killed",
    "SCHEDULED": "scheduled",
}


def status_pill(status: str | None, deleted: bool = False) -> html.Span:
    status = status or "UNKNOWN"
    pill = html.Span(
        status.title(), className=f"pill pill-{STATUS_CLASSES.get(status, 'unknown')}", title=f"Status: {status}"
    )
    if deleted:
        return html.Span(
            [pill, html.Span("Deleted", className="pill pill-deleted", title="Soft-deleted; kept 30 days")]
        )
    return pill


def page_header(title: Any, *extra: Any, subtitle: Any = None) -> html.Div:
    return html.Div(
        [
            html.Div([html.H1(title, className="page-title"), *extra], className="page-title-row"),
            html.Div(subtitle, className="page-subtitle") if subtitle else None,
        ],
        className="page-header",
    )


def section(
    title: str, body: Any, *, open: bool = True, id: str | None = None, count: int | None = None
) -> html.Details:
    """A collapsible section, like the panels of MLflow's run screen."""
    label = [title] + ([html.Span(f"{count:,}", className="count")] if count is not None else [])
    kwargs: dict[str, Any] = {"id": id} if id else {}
    return html.Details(
        [html.Summary(label, className="section-title"), html.Div(body, className="section-body")],
        open=open,
        className="section",
        **kwargs,
    )


def empty_state(message: Any, hint: Any = None, id: str | None = None) -> html.Div:
    kwargs: dict[str, Any] = {"id": id} if id else {}
    return html.Div(
        [html.Div(message, className="empty-title"), html.Div(hint, className="empty-hint") if hint else None],
        className="empty-state",
        **kwargs,
    )


def key_value_table(
    rows: Iterable[tuple[str, Any]], *, className: str = "kv-table", id: str | None = None
) -> html.Table:
    kwargs: dict[str, Any] = {"id": id} if id else {}
    return html.Table(
        html.Tbody([html.Tr([html.Th(key), html.Td(value)]) for key, value in rows]), className=className, **kwargs
    )


def data_table(
    header: Sequence[Any],
    body: Iterable[Sequence[Any]],
    *,
    className: str = "data-table",
    id: str | None = None,
    numeric: Sequence[int] = (),
) -> html.Table:
    """A plain table; the columns at ``numeric`` positions are right-aligned with tabular digits."""
    kwargs: dict[str, Any] = {"id": id} if id else {}

    def cls(i: int) -> str | None:
        return "num" if i in numeric else None

    return html.Table(
        [
            html.Thead(html.Tr([html.Th(h, className=cls(i)) for i, h in enumerate(header)])),
            html.Tbody([html.Tr([html.Td(c, className=cls(i)) for i, c in enumerate(row)]) for row in body]),
        ],
        className=className,
        **kwargs,
    )


def control(label: str, component: Any, tooltip: str) -> html.Label:
    """A labelled control with a tooltip saying what it does."""
    return html.Label([html.Span(label, className="control-label"), component], className="control", title=tooltip)


X_AXIS_LABELS = {"step": "Step", "wall": "Wall time", "relative": "Relative time"}


def x_axis_control(id: str, value: str = "step", tooltip: str = "What the x-axis shows") -> html.Label:
    """The metric charts' x-axis switch (the same on the run, compare and runs pages)."""
    return control(
        "X axis",
        dcc.RadioItems(
            id=id,
            options=[{"label": f" {X_AXIS_LABELS[x]}", "value": x} for x in X_AXES],
            value=value,
            inline=True,
        ),
        tooltip,
    )


def group_controls(group_id: str, spread_id: str, options: list[dict[str, str]]) -> list[html.Label]:
    """Group curves by a param or tag, and the band around each group's mean.

    Args:
        group_id: the id of the "Group by" dropdown.
        spread_id: the id of the "Group band" switch.
        options: the params and tags to offer (``compare.group_options``).
    """
    return [
        control(
            "Group by",
            dcc.Dropdown(id=group_id, options=options, value=None, placeholder="No grouping"),
            "One mean curve per value of a param or tag",
        ),
        control(
            "Group band",
            dcc.RadioItems(
                id=spread_id,
                options=[{"label": f" {v}", "value": k} for k, v in SPREADS.items()],
                value="minmax",
                inline=True,
            ),
            "Around each group's mean: its runs' min-max, or ± one standard deviation",
        ),
    ]


def code_block(text: str, language: str = "") -> dcc.Markdown:
    """Highlighted code. Markdown with raw HTML off, and a fence longer than any in the text."""
    fence = "`" * max(3, _longest_run(text, "`") + 1)
    return dcc.Markdown(f"{fence}{language}\n{text}\n{fence}", dangerously_allow_html=False, className="code-block")


def _longest_run(text: str, char: str) -> int:
    best = run = 0
    for c in text:
        run = run + 1 if c == char else 0
        best = max(best, run)
    return best


def message(text: str, kind: str = "info") -> html.Div:
    return html.Div(text, className=f"message message-{kind}", role="status")


def error_box(error: dict[str, Any]) -> html.Div:
    """A ``RunlakeError.to_dict()`` as people read it: the message (with its caret line) in monospace."""
    return html.Div(
        [html.Pre(str(error.get("message", "")), className="error-text")],
        className="error-box",
        role="alert",
    )
