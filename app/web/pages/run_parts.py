"""The run page's parts its callbacks redraw: the notes view and the tags table with its form."""

from __future__ import annotations

from typing import Any

from dash import dcc, html

from runlake.app.web import ids
from runlake.app.web.components import data_table
from runlake.app.web.formatting import long_text
from runlake.core import vocab

NOTE_TAG = vocab.NOTE_TAG
HIDDEN = {"display": "none"}


def notes_view(text: str) -> Any:
    if not text.strip():
        return html.Span(
            "No notes yet. Describe what this run tried and what you learned (Markdown).", className="muted"
        )
    return dcc.Markdown(text, dangerously_allow_html=False, link_target="_blank")


def tags_body(user_tags: dict[str, str], all_tags: dict[str, str]) -> list[Any]:
    rows = [
        html.Tr(
            [
                html.Td(html.Code(long_text(k, 80))),
                html.Td(long_text(v)),
                html.Td(
                    [
                        html.Button(
                            "Edit", id={"type": ids.RUN_TAG_EDIT, "key": ids.encode_key(k)}, className="button small"
                        ),
                        html.Button(
                            "Delete",
                            id={"type": ids.RUN_TAG_DELETE, "key": ids.encode_key(k)},
                            className="button small danger",
                        ),
                    ]
                ),
            ]
        )
        for k, v in sorted(user_tags.items())
    ]
    table = (
        html.Table(
            [html.Thead(html.Tr([html.Th("Key"), html.Th("Value"), html.Th("")])), html.Tbody(rows)],
            className="data-table",
        )
        if rows
        else html.Div("No tags yet. Add one below.", className="muted")
    )
    system = {k: v for k, v in all_tags.items() if k.startswith("mlflow.") and k != NOTE_TAG}
    return [
        table,
        html.Div(
            [
                dcc.Input(id=ids.RUN_TAG_KEY, placeholder="key", className="text-input", debounce=False),
                dcc.Input(id=ids.RUN_TAG_VALUE, placeholder="value", className="text-input", debounce=False),
                html.Button(
                    "Set tag",
                    id=ids.RUN_TAG_SET,
                    className="button primary",
                    title="Add a tag, or change the value of an existing key",
                ),
            ],
            className="inline-form",
        ),
        html.Details(
            [
                html.Summary(f"{len(system)} system tags"),
                data_table(["Key", "Value"], [(long_text(k, 80), long_text(v)) for k, v in sorted(system.items())]),
            ]
        )
        if system
        else None,
    ]
