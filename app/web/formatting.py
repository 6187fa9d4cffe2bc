"""How the dashboard writes numbers, times, durations, sizes and source names, everywhere the same."""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Callable
from typing import Any

import pandas as pd


def format_time(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
        return ""
    # Epoch milliseconds, numpy integers included (a nullable Int64 column yields np.int64).
    is_number = isinstance(value, numbers.Real) and not isinstance(value, bool)
    stamp = pd.Timestamp(value, unit="ms", tz="UTC") if is_number else pd.Timestamp(value)
    if pd.isna(stamp):
        return ""
    return str(stamp.strftime("%Y-%m-%d %H:%M:%S"))


def format_number(value: Any, digits: int = 5) -> str:
    """A number as every table of the dashboard shows it (``formatNumber`` in runlake.js is the
    same rule, for the grids): ``digits`` significant digits, trailing zeros trimmed; whole
    numbers exact with thousands separators; scientific (``2.467e-7``) below 0.001 and from a
    million up, so a column never mixes ``0.0000002467`` and ``2.467e-7``.
    """
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return "" if value is None else str(value)
    number = float(value)
    if math.isnan(number):
        return ""
    if math.isinf(number):
        return "∞" if number > 0 else "-∞"
    if number == 0:
        return "0"
    whole = number == int(number)
    rounded = number if whole else float(f"{number:.{digits}g}")
    if abs(rounded) >= 1e6 or abs(rounded) < 1e-3:
        mantissa, exponent = f"{number:.{digits - 1}e}".split("e")
        mantissa = mantissa.rstrip("0").rstrip(".") if "." in mantissa else mantissa
        return f"{mantissa}e{int(exponent)}"
    if whole or abs(rounded) >= 10 ** (digits - 1):
        return f"{int(rounded):,}"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(rounded))))
    text = f"{rounded:,.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def format_duration(start: Any, end: Any, status: Any = None) -> str:
    start_ts, end_ts = _ts(start), _ts(end)
    if start_ts is None:
        return ""
    if end_ts is None:
        return "running" if status == "RUNNING" else ""
    seconds = max(0, int((end_ts - start_ts).total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes}m"
    return f"{hours // 24}d {hours % 24}h"


def _ts(value: Any) -> pd.Timestamp | None:
    if value is None:
        return None
    stamp = (
        pd.Timestamp(value, unit="ms", tz="UTC")
        if isinstance(value, (int, float)) and not isinstance(value, bool)
        else pd.Timestamp(value)
    )
    return None if pd.isna(stamp) else stamp


def short_source(name: Any) -> str:
    text = str(name or "")
    return text.rsplit("/", 1)[-1] if text else ""


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


# -- user text on screen ---------------------------------------------------------------------
# Characters that reorder or hide text: bidi embeddings, overrides and isolates, the marks, and
# the zero-width joiners. "normal\u202egnp.exe" would read "normalexe.png"; each is shown as a
# visible code instead, so what is on screen is what is stored.
_BIDI_AND_INVISIBLE = frozenset(
    [0x061C, 0x200B, 0x200C, 0x200D, 0x200E, 0x200F, 0x2060, 0xFEFF]
    + list(range(0x202A, 0x202F))
    + list(range(0x2066, 0x206A))
)
# Past this many characters a value is cut in tables and headers; the whole value is on hover.
DISPLAY_LIMIT = 120
# Figure labels (axis ticks, dimension names, hover names) are cut shorter: a plot has no room.
PLOT_LIMIT = 60


def neutralise(text: str) -> str:
    """``text`` with bidi controls, invisible characters and control characters made visible."""
    if text.isprintable() and not any(ord(c) in _BIDI_AND_INVISIBLE for c in text):
        return text
    out = []
    for char in text:
        code = ord(char)
        if code in _BIDI_AND_INVISIBLE:
            out.append(f"<U+{code:04X}>")
        elif code < 0x20 and char not in "\n\t":
            out.append(chr(0x2400 + code))  # the Control Pictures block: NUL shows as ␀
        elif code == 0x7F:
            out.append("\u2421")
        else:
            out.append(char)
    return "".join(out)


def display_text(value: Any, limit: int | None = None) -> str:
    """A user value as text to show: neutralised, and cut to ``limit`` characters with "…"."""
    text = neutralise("" if value is None else str(value))
    if limit is not None and len(text) > limit:
        return text[: max(1, limit - 1)] + "…"
    return text


def long_text(value: Any, limit: int = DISPLAY_LIMIT, className: str = "long-text") -> Any:
    """A component for a user value: neutralised, cut at ``limit`` with the whole value on hover."""
    from dash import html

    full = display_text(value)
    if len(full) <= limit:
        return full
    return html.Span(display_text(full, limit), title=full, className=className)


# Tags plotly would render as markup. Links (<a href>) and styles (<span style>) let a run name
# cover a chart or become a live link, so no user text may carry markup into a figure; the few
# attribute-less tags the dashboard's own templates use (hover line breaks, the <extra> box)
# are kept.
_ALLOWED_TAGS = re.compile(r"</?(?:br|b|i|em|sup|sub|extra)\s*/?>", re.IGNORECASE)


def plot_text(value: Any, limit: int | None = PLOT_LIMIT) -> str:
    """User text for a plotly figure (trace name, hover text, tick label): no markup at all."""
    text = display_text(value, limit)
    return text.replace("<", "&lt;").replace(">", "&gt;")


def _entities(text: str) -> str:
    return text.replace("<", "&lt;").replace(">", "&gt;")


def _lookalikes(text: str) -> str:
    # Parallel coordinates draw labels as plain text (no tags, no entities): angle quotes
    # keep them readable where "&lt;" would show as it is.
    return text.replace("<", "\u2039").replace(">", "\u203a")


def _template_text(text: str, escape: Callable[[str], str] = _entities) -> str:
    """Text that may hold a figure's own simple tags: every other tag is escaped."""
    text = neutralise(text)
    out, last = [], 0
    for match in _ALLOWED_TAGS.finditer(text):
        out.append(escape(text[last : match.start()]))
        out.append(match.group(0))
        last = match.end()
    out.append(escape(text[last:]))
    return "".join(out)


# Trace types whose strings plotly draws as plain text, not through its tag-and-entity parser.
_PLAIN_TEXT_TRACES = frozenset({"parcoords"})


# Keys of a figure whose strings are labels: cut to PLOT_LIMIT (a category of 6,000 characters
# would flood the plot). Other strings (hover text) are cut at DISPLAY_LIMIT.
_LABEL_KEYS = frozenset({"ticktext", "label", "name", "legendgroup"})
_TEXT_KEYS = frozenset({"text", "hovertext", "title"})
_TEXT_LIMIT = DISPLAY_LIMIT * 4


def escape_figure(figure: Any) -> dict[str, Any]:
    """A plotly figure (``go.Figure`` or its dict) with no markup from data in any string.

    Every string in the data and layout is neutralised and its tags escaped, except the few
    attribute-less tags of ``_ALLOWED_TAGS``; labels are cut to ``PLOT_LIMIT`` characters.
    Used for the compare page's parallel coordinates, scatter and contour plots, and for
    ``.plotly.json`` artifacts (whose every string is user data).
    """
    data = figure.to_plotly_json() if hasattr(figure, "to_plotly_json") else figure
    if not isinstance(data, dict):
        return {"data": [], "layout": {}}

    def walk(node: Any, key: str | None, escape: Callable[[str], str] = _entities) -> Any:
        if isinstance(node, str):
            limit = PLOT_LIMIT if key in _LABEL_KEYS else _TEXT_LIMIT if key in _TEXT_KEYS else None
            text = node if limit is None or len(node) <= limit else node[: limit - 1] + "…"
            return _template_text(text, escape)
        if isinstance(node, dict):
            if "bdata" in node:
                return node  # a typed array (plotly's base64 numbers): data, not text
            return {k: walk(v, k, escape) for k, v in node.items()}
        if isinstance(node, (list, tuple)):
            return [walk(v, key, escape) for v in node]
        return node

    traces = data.get("data") or []
    return {
        "data": [
            walk(
                trace,
                None,
                _lookalikes if isinstance(trace, dict) and trace.get("type") in _PLAIN_TEXT_TRACES else _entities,
            )
            for trace in (traces if isinstance(traces, list) else [])
        ],
        "layout": walk(data.get("layout") or {}, None),
        **({"frames": walk(data["frames"], None)} if isinstance(data.get("frames"), list) else {}),
    }
