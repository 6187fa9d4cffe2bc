"""The run page's read-only sections: artifacts (tree and preview), model snippets, reproduce."""

from __future__ import annotations

import io
import json
import re
import shlex
from typing import TYPE_CHECKING, Any

import pandas as pd
from dash import dcc, html

from runlake.app.web import artifacts as arts
from runlake.app.web import ids
from runlake.app.web.components import code_block, data_table, empty_state, key_value_table
from runlake.app.web.formatting import display_text, escape_figure, human_size
from runlake.core import vocab

if TYPE_CHECKING:
    from dash.development.base_component import Component

    from runlake.lake import RunRecord

ENVIRONMENT_FILE = vocab.ENVIRONMENT_FILE
REQUIREMENTS_FILE = vocab.REQUIREMENTS_FILE
DIFF_FILE = vocab.GIT_DIFF_FILE
SOURCE_DIR = vocab.SOURCE_DIR


# -- artifacts -----------------------------------------------------------------------------
def artifact_tree(entries: list[arts.Entry]) -> Any:
    """Folders as collapsible ``<details>``, files as buttons that open a preview."""
    if not entries:
        return empty_state(
            "No artifacts.", ["Log files with ", html.Code("run.log_artifact(...)"), " or ", html.Code("log_text"), "."]
        )
    tree: dict[str, Any] = {}
    for entry in entries:
        node = tree
        parts = entry.path.split("/")
        for part in parts[:-1]:
            node = node.setdefault(part + "/", {})
        if entry.is_dir:
            node.setdefault(parts[-1] + "/", {})
        else:
            node[parts[-1]] = entry
    return html.Div(_tree_nodes(tree, ""), className="artifact-tree")


def _tree_nodes(node: dict[str, Any], prefix: str) -> list[Any]:
    out: list[Component] = []
    for name in sorted(node, key=lambda n: (not n.endswith("/"), n.lower())):
        child = node[name]
        if name.endswith("/"):
            out.append(
                html.Details(
                    [
                        html.Summary([display_text(name[:-1], 80), html.Span("/", className="folder-slash")]),
                        html.Div(_tree_nodes(child, prefix + name)),
                    ]
                )
            )
        else:
            out.append(
                html.Button(
                    [display_text(name, 80), html.Span(human_size(child.size), className="artifact-size")],
                    id={"type": ids.RUN_ARTIFACT_FILE, "path": ids.encode_key(prefix + name)},
                    className="artifact-file",
                    title=display_text(prefix + name),
                )
            )
    return out


def artifact_preview(run_id: str, store: arts.RunArtifacts, rel: str) -> Any:
    """The preview of one artifact: image, plotly figure, JSON, CSV table, text, or a download."""
    try:
        size = store.size(rel)
        what = arts.kind(rel)
        head = html.Div(
            [
                html.Span(display_text(rel, 120), title=display_text(rel)),
                html.Span(human_size(size), className="muted"),
                html.A("Download", href=arts.url(run_id, rel, download=True), className="button small"),
            ],
            className="preview-head",
        )
        if what == "image":
            return html.Div([head, html.Img(src=arts.url(run_id, rel), className="preview-image", alt=rel)])
        if what == "binary":
            return html.Div([head, empty_state("No preview for this file type.", "Download it to open it locally.")])
        data = store.read(rel, arts.PREVIEW_BYTES)
        truncated = size > arts.PREVIEW_BYTES
        note = (
            html.Div(f"Showing the first {human_size(arts.PREVIEW_BYTES)}.", className="muted") if truncated else None
        )
        text = data.decode("utf-8", errors="replace")
        if what == "plotly" and not truncated:
            # Every string of an uploaded figure is user data: no markup of it is rendered.
            figure = escape_figure(json.loads(text))
            return html.Div([head, dcc.Graph(figure=figure, config={"displaylogo": False})])
        if what == "json" and not truncated:
            return html.Div([head, code_block(json.dumps(json.loads(text), indent=2), "json")])
        if what == "csv":
            frame = pd.read_csv(io.StringIO(text), sep="\t" if rel.lower().endswith(".tsv") else ",", nrows=500)
            return html.Div([head, note, data_table(list(frame.columns), frame.astype(str).values.tolist())])
        return html.Div([head, note, code_block(text, arts.language(rel))])
    except arts.UnsafeArtifactPath as exc:
        return html.Div(str(exc), className="message message-error")
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        return html.Div(f"Cannot preview {rel}: {exc}", className="message message-error")


# -- model ---------------------------------------------------------------------------------
def model_section(run_id: str, lake_root: str, models: list[str]) -> Any:
    blocks = []
    for name in models:
        uri = f"runs:/{run_id}/{name}"
        pandas_code = (
            "import pandas as pd\n"
            "import runlake.ingest as rl\n\n"
            f"model = rl.load_model({uri!r}, lake={lake_root!r})\n"
            "data = pd.DataFrame(...)  # the columns the model was trained on\n"
            "predictions = model.predict(data)\n"
        )
        spark_code = (
            "import pandas as pd\n"
            "import runlake.ingest as rl\n"
            "from pyspark.sql.functions import pandas_udf\n\n"
            f"model = rl.load_model({uri!r}, lake={lake_root!r})\n"
            "broadcast = spark.sparkContext.broadcast(model)\n\n"
            '@pandas_udf("double")\n'
            "def predict(*columns: pd.Series) -> pd.Series:\n"
            "    features = pd.concat(columns, axis=1)\n"
            "    features.columns = feature_names  # the training column names\n"
            "    return pd.Series(broadcast.value.predict(features)).astype(float)\n\n"
            "feature_names = spark_df.columns\n"
            'scored = spark_df.withColumn("prediction", predict(*spark_df.columns))\n'
        )
        blocks += [
            html.H4(["Model ", html.Code(name)]),
            html.P(["URI: ", html.Code(uri)]),
            html.H5("Predict on a pandas DataFrame"),
            code_block(pandas_code, "python"),
            html.H5("Predict on a Spark DataFrame"),
            code_block(spark_code, "python"),
        ]
    return html.Div(blocks)


# -- reproduce -----------------------------------------------------------------------------
def load_environment(store: arts.RunArtifacts | None) -> dict[str, Any] | None:
    if store is None or not store.exists(ENVIRONMENT_FILE):
        return None
    try:
        data = json.loads(store.read(ENVIRONMENT_FILE, arts.PREVIEW_BYTES).decode("utf-8"))
    except (ValueError, OSError):
        return None
    return _well_formed(data) if isinstance(data, dict) else None


def _text_or_none(value: Any) -> str | None:
    """A scalar as text; None for nothing, a list or an object."""
    if value is None or isinstance(value, (list, dict)):
        return None
    return str(value)


def _well_formed(data: dict[str, Any]) -> dict[str, Any]:
    """The environment file's fields in the shapes the sections read. runlake writes them so
    (``ingest/context.py``); a file written by hand or by another tool may hold a string where
    an object belongs, or a list of dirty files in ``git.dirty``: what has another shape is
    left out, and the page shows the run's tags or a dash instead of failing."""
    shaped: dict[str, Any] = {}
    for key in ("python", "platform", "hostname"):
        text = _text_or_none(data.get(key))
        if text is not None:
            shaped[key] = text
    for key in ("git", "source"):
        fields = data.get(key)
        if isinstance(fields, dict):
            shaped[key] = {
                name: value if isinstance(value, bool) else _text_or_none(value) for name, value in fields.items()
            }
    command = data.get("command_line")
    if isinstance(command, list):
        shaped["command_line"] = [str(part) for part in command if _text_or_none(part) is not None]
    packages = data.get("packages")
    if isinstance(packages, dict):
        shaped["packages"] = {name: _text_or_none(version) or "" for name, version in packages.items()}
    return shaped


def reproduce_script(record: RunRecord, env: dict[str, Any] | None, has_diff: bool) -> str:
    """A shell script that recreates the run's environment and runs it again."""
    git = (env or {}).get("git") or {}
    source = (env or {}).get("source") or {}
    commit = git.get("commit") or record.tags.get(vocab.GIT_COMMIT_TAG) or record.info.get("source_version")
    remote = git.get("remote") or record.tags.get(vocab.GIT_REPO_URL_TAG)
    command = (env or {}).get("command_line") or []
    python = str((env or {}).get("python") or "3")
    # The name goes into a comment: a line break in it would start a command of its own.
    name = "".join(c if c.isprintable() else " " for c in str(record.info.get("run_name") or ""))
    lines = ["#!/bin/sh", f"# Recreate runlake run {record.run_id} ({name})", "set -e", ""]
    if remote and commit:
        lines += [f"git clone {shlex.quote(str(remote))} src", "cd src", f"git checkout {shlex.quote(str(commit))}"]
    elif commit:
        lines += ["# Run this inside a clone of the project's repository.", f"git checkout {shlex.quote(str(commit))}"]
    if has_diff:
        lines += [
            "# The working tree was dirty: apply the captured diff (download git.diff next to this script).",
            "git apply ../git.diff || git apply git.diff",
        ]
    version = re.match(r"(\d+)\.(\d+)", python)  # only digits reach the script, never free text
    py = f"python{version.group(1)}.{version.group(2)}" if version else "python3"
    lines += ["", f"{py} -m venv .venv", ". .venv/bin/activate", "pip install -r requirements.txt", ""]
    if command:
        lines.append("python " + " ".join(shlex.quote(str(part)) for part in command))
    else:
        entry = (
            source.get("entry_point") or record.info.get("entry_point") or record.info.get("source_name") or "train.py"
        )
        lines.append(f"python {shlex.quote(str(entry))}")
    return "\n".join(lines) + "\n"


def reproduce_section(run_id: str, record: RunRecord, store: arts.RunArtifacts | None) -> Any:
    env = load_environment(store)
    has_diff = bool(store and store.exists(DIFF_FILE))
    has_requirements = bool(store and store.exists(REQUIREMENTS_FILE))
    git = (env or {}).get("git") or {}
    dirty = git.get("dirty")  # true, false or null as runlake writes it; other values show the tag
    rows = [
        ("Python", (env or {}).get("python") or "—"),
        ("Platform", (env or {}).get("platform") or "—"),
        ("Command", " ".join(map(str, (env or {}).get("command_line") or [])) or "—"),
        (
            "Git commit",
            git.get("commit") or record.tags.get(vocab.GIT_COMMIT_TAG) or record.info.get("source_version") or "—",
        ),
        ("Branch", git.get("branch") or record.tags.get(vocab.GIT_BRANCH_TAG) or "—"),
        (
            "Dirty",
            "yes (diff captured)"
            if dirty is True
            else "no"
            if dirty is False
            else record.tags.get(vocab.GIT_DIRTY_TAG) or "—",
        ),
    ]
    packages = (env or {}).get("packages") or {}
    body: list[Any] = []
    if env is None:
        body.append(
            html.P(
                "This run did not capture its environment (runs started with runlake.ingest.start_run do).",
                className="muted",
            )
        )
    body.append(key_value_table(rows))
    buttons = [
        html.Button("Download reproduce.sh", id=ids.RUN_REPRO_SCRIPT, className="button"),
        dcc.Download(id=ids.RUN_REPRO_DOWNLOAD),
    ]
    if has_requirements:
        buttons.append(
            html.A(
                "Download requirements.txt", href=arts.url(run_id, REQUIREMENTS_FILE, download=True), className="button"
            )
        )
    if has_diff:
        buttons.append(html.A("Download git.diff", href=arts.url(run_id, DIFF_FILE, download=True), className="button"))
    body.append(html.Div(buttons, className="inline-form"))
    if packages:
        body.append(
            html.Details(
                [
                    html.Summary(f"{len(packages)} packages"),
                    data_table(["Package", "Version"], sorted(packages.items(), key=lambda kv: kv[0].lower())),
                ]
            )
        )
    if has_diff and store is not None:
        diff = store.read(DIFF_FILE, arts.PREVIEW_BYTES).decode("utf-8", errors="replace")
        body.append(html.Details([html.Summary("Uncommitted changes (git diff)"), code_block(diff, "diff")]))
    return html.Div(body)


def source_artifact(store: arts.RunArtifacts | None, entries: list[arts.Entry]) -> str | None:
    """The snapshot of the script or notebook that ran, when the run captured one."""
    for entry in entries:
        if entry.path.startswith(SOURCE_DIR) and not entry.is_dir:
            return entry.path
    return None
