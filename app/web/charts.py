"""Plotly figures: metric histories, parallel coordinates, scatter and contour over runs.

Histories take step, wall time or relative time as x, EMA smoothing and a log scale; parallel
coordinates handle categorical params. Long histories are drawn from ``Lake.metric_series``:
at most ``BUCKETS`` points per trace, the last value of each x bucket as the line and its
min/max as a shaded band; a zoom asks the lake again for the visible range only.
"""

from __future__ import annotations

import html
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

X_AXES = ("step", "wall", "relative")
X_TITLES = {"step": "Step", "wall": "Time (UTC)", "relative": "Time since start (s)"}
# Buckets per trace: a chart is at most ~1,000 px wide, so a line of 1,000 points (plus a band
# of as many) shows everything a screen can, and a zoom re-buckets the narrower range.
BUCKETS = 1000
# The chart's x modes -> Lake.metric_series's.
LAKE_X = {"step": "step", "wall": "timestamp", "relative": "relative"}
# Bidirectional-text controls: a run name holding them could reorder what the legend shows.
_BIDI = dict.fromkeys([*range(0x202A, 0x202F), *range(0x2066, 0x206A)], "\ufffd")
PALETTE = ("#2f6fde", "#e4572e", "#17a398", "#f3a712", "#7d5ba6", "#c84c8f", "#4c9f38", "#8a6d3b", "#1b998b", "#6c757d")


def safe_text(text: Any) -> str:
    """User text (a run name, a param value) made inert for plotly's labels.

    Plotly renders a subset of HTML in trace names, legends and hover text (``<a href>``,
    ``<span style>``, ``<br>``): escaping ``<``, ``>`` and ``&`` shows such names literally, and
    bidi controls (U+202A-U+202E, U+2066-U+2069) become U+FFFD so they cannot reorder the text.
    """
    return html.escape(str(text), quote=False).translate(_BIDI)


def ema(values: Sequence[float], smoothing: float) -> np.ndarray:
    """Exponential moving average with TensorBoard's debiasing; ``smoothing`` in [0, 1)."""
    data = np.asarray(values, dtype=float)
    if smoothing <= 0 or len(data) == 0:
        return data
    smoothing = min(float(smoothing), 0.999)
    out = np.empty_like(data)
    last, weight = 0.0, 0.0
    for i, value in enumerate(data):
        if np.isnan(value):
            out[i] = np.nan
            continue
        last = last * smoothing + (1 - smoothing) * value
        weight = weight * smoothing + (1 - smoothing)
        out[i] = last / weight
    return out


def x_values(points: pd.DataFrame, x_axis: str, start_ms: float | None = None) -> Any:
    if x_axis == "wall":
        return pd.to_datetime(points["timestamp"], unit="ms", utc=True)
    if x_axis == "relative":
        origin = start_ms if start_ms is not None else points["timestamp"].min()
        return (points["timestamp"] - origin) / 1000.0
    return points["step"]


def history_figure(
    points: pd.DataFrame,
    key: str,
    *,
    x_axis: str = "step",
    smoothing: float = 0.0,
    log_y: bool = False,
    names: Mapping[str, str] | None = None,
    starts: Mapping[str, float] | None = None,
    height: int = 300,
) -> dict[str, Any]:
    """One metric's history, one line per run (columns run_id, key, step, timestamp, value).

    With smoothing, the raw points stay as a faint line under the smoothed one.
    ``uirevision`` keeps the user's zoom across live refreshes. Returned as a plain figure
    dict: building hundreds of validated trace objects costs more than reading the data.
    """
    names = names or {}
    starts = starts or {}
    traces: list[dict[str, Any]] = []
    data = points[points["key"] == key] if "key" in points.columns else points
    groups = data.groupby("run_id", sort=False) if "run_id" in data.columns else [("", data)]
    for i, (run_id, run_points) in enumerate(groups):
        run_points = run_points.sort_values(["step", "timestamp"])
        x = x_values(run_points, x_axis, starts.get(run_id))
        x = [v.isoformat() for v in x] if x_axis == "wall" else x.tolist()
        color = PALETTE[i % len(PALETTE)]
        label = safe_text(names.get(run_id, str(run_id)[:8]) or key)
        values = run_points["value"].to_numpy()
        if smoothing > 0:
            traces.append(
                {
                    "type": "scatter",
                    "x": x,
                    "y": _plain(values),
                    "mode": "lines",
                    "showlegend": False,
                    "line": {"color": color, "width": 1},
                    "opacity": 0.25,
                    "hoverinfo": "skip",
                }
            )
        traces.append(
            {
                "type": "scatter",
                "x": x,
                "y": _plain(ema(values, smoothing)),
                "mode": "lines",
                "name": label,
                "line": {"color": color, "width": 2},
            }
        )
    lines = sum(1 for t in traces if t.get("name") is not None)
    layout = {
        "title": {"text": key, "x": 0.01, "font": {"size": 14}},
        "height": height,
        "margin": {"l": 50, "r": 16, "t": 36, "b": 40},
        "template": pio.templates["plotly_white"],
        "xaxis": {"title": {"text": X_TITLES.get(x_axis, "Step")}},
        "yaxis": {"type": "log" if log_y else "linear"},
        "uirevision": f"{key}:{x_axis}:{log_y}",
        "legend": {"orientation": "h", "y": -0.25},
        "showlegend": lines > 1,
    }
    return {"data": traces, "layout": layout}


def keep_view(figure: dict[str, Any], relayout: Mapping[str, Any] | None) -> dict[str, Any]:
    """``figure`` showing the axis ranges a user zoomed or panned to (a graph's ``relayoutData``:
    ``{"xaxis.range[0]": a, "xaxis.range[1]": b, ...}``); a reset (autorange) or no interaction
    leaves it as it is."""
    for axis in ("xaxis", "yaxis"):
        low, high = (relayout or {}).get(f"{axis}.range[0]"), (relayout or {}).get(f"{axis}.range[1]")
        whole = (relayout or {}).get(f"{axis}.range")
        if isinstance(whole, (list, tuple)) and len(whole) == 2:
            low, high = whole
        if low is None or high is None:
            continue
        figure["layout"][axis] = {**figure["layout"].get(axis, {}), "range": [low, high], "autorange": False}
    return figure


def _rgba(color: str, alpha: float) -> str:
    r, g, b = (int(color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def finite(values: Any) -> list[float | None]:
    """Plain floats for JSON: NaN and infinities (which plotly cannot draw) become gaps."""
    return [float(v) if math.isfinite(v) else None for v in np.asarray(values, dtype=float)]


def _xs(values: pd.Series, x_axis: str) -> list[Any]:
    # Wall-time x stays epoch ms: a plotly date axis reads numbers as ms since the epoch.
    xs: list[Any] = values.tolist()
    return xs


def band_traces(x: list[Any], low: Any, high: Any, color: str, group: str) -> list[dict[str, Any]]:
    """The shaded min-max band: the upper edge, then the lower edge filled up to it."""
    edge = {"type": "scatter", "mode": "lines", "line": {"width": 0, "color": color}, "hoverinfo": "skip"}
    return [
        {**edge, "x": x, "y": finite(high), "showlegend": False, "legendgroup": group, "meta": "band-max"},
        {
            **edge,
            "x": x,
            "y": finite(low),
            "fill": "tonexty",
            "fillcolor": _rgba(color, 0.18),
            "showlegend": False,
            "legendgroup": group,
            "meta": "band-min",
        },
    ]


def series_figure(
    series: pd.DataFrame,
    key: str,
    *,
    x_axis: str = "step",
    smoothing: float = 0.0,
    log_y: bool = False,
    band: bool = True,
    names: Mapping[str, str] | None = None,
    height: int = 300,
    x_range: tuple[float | None, float | None] | None = None,
) -> dict[str, Any]:
    """One metric of some runs from ``Lake.metric_series`` rows (run_id, x, value, min, max, count).

    Per run: the min-max band (when ``band``), then the line of each bucket's last value,
    smoothed by EMA when asked (the unsmoothed line stays faint beneath). A run drawn from its
    raw points (every count 1) shows them as markers too. ``x_range`` is the range the rows
    were asked for (a zoom); the axis then shows exactly that range.
    """
    names = names or {}
    traces: list[dict[str, Any]] = []
    runs = series.groupby("run_id", sort=False) if len(series) else []
    for i, (run_id, rows) in enumerate(runs):
        color = PALETTE[i % len(PALETTE)]
        label = safe_text(names.get(str(run_id), str(run_id)[:8]) or key)
        x = _xs(rows["x"], x_axis)
        values = rows["value"].to_numpy(dtype=float)
        raw = bool((rows["count"] == 1).all())
        if band:
            traces += band_traces(x, rows["min"], rows["max"], color, str(run_id))
        if smoothing > 0:
            traces.append(
                {
                    "type": "scatter",
                    "x": x,
                    "y": finite(values),
                    "mode": "lines",
                    "showlegend": False,
                    "legendgroup": str(run_id),
                    "line": {"color": color, "width": 1},
                    "opacity": 0.3,
                    "hoverinfo": "skip",
                }
            )
        traces.append(
            {
                "type": "scatter",
                "x": x,
                "y": finite(ema(values, smoothing)),
                "mode": "lines+markers" if raw and len(rows) <= 500 else "lines",
                "marker": {"size": 4},
                "name": label,
                "legendgroup": str(run_id),
                "line": {"color": color, "width": 2},
                "meta": "raw" if raw else "buckets",
            }
        )
    lines = sum(1 for t in traces if t.get("name") is not None)
    xaxis: dict[str, Any] = {"title": {"text": X_TITLES.get(x_axis, "Step")}}
    if x_axis == "wall":
        xaxis["type"] = "date"
    low, high = x_range if x_range is not None else (None, None)
    if low is not None and high is not None:
        if x_axis == "wall":
            xaxis["range"] = [iso(low), iso(high)]
        else:
            xaxis["range"] = [low, high]
        xaxis["autorange"] = False
    layout = {
        "title": {"text": safe_text(key), "x": 0.01, "font": {"size": 14}},
        "height": height,
        "margin": {"l": 50, "r": 16, "t": 36, "b": 40},
        "template": pio.templates["plotly_white"],
        "xaxis": xaxis,
        "yaxis": {"type": "log" if log_y else "linear"},
        "uirevision": f"{key}:{x_axis}:{log_y}",
        "legend": {"orientation": "h", "y": -0.25},
        "showlegend": lines > 1,
    }
    return {"data": traces, "layout": layout}


def iso(ms: float) -> str:
    return str(pd.Timestamp(int(ms), unit="ms").strftime("%Y-%m-%d %H:%M:%S.%f"))[:-3]


def zoom_range(relayout: Mapping[str, Any] | None, x_axis: str) -> tuple[float | None, float | None] | None:
    """The x range a graph's ``relayoutData`` asks for, in ``metric_series`` units.

    Returns (low, high) after a zoom or pan, (None, None) after a reset (autorange: the whole
    series again), None when the x axis did not change (a y-only zoom, a resize).
    """
    if not relayout:
        return None
    if relayout.get("xaxis.autorange") or relayout.get("xaxis.autorange") == "true":
        return None, None
    low, high = relayout.get("xaxis.range[0]"), relayout.get("xaxis.range[1]")
    whole = relayout.get("xaxis.range")
    if isinstance(whole, (list, tuple)) and len(whole) == 2:
        low, high = whole
    if low is None or high is None:
        return None
    try:
        bounds = (_to_x(low, x_axis), _to_x(high, x_axis))
    except (TypeError, ValueError):
        return None
    return (min(bounds), max(bounds))


def _to_x(value: Any, x_axis: str) -> float:
    if x_axis == "wall" and isinstance(value, str):
        # Plotly's date strings carry no zone; the axis draws UTC epoch ms.
        return float(pd.Timestamp(value).value // 1_000_000)
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(value)
    return number


SPREADS = {"minmax": "min-max", "std": "± std", "none": "none"}


def grouped_figure(
    series: pd.DataFrame,
    key: str,
    groups: Mapping[str, str],
    *,
    x_axis: str = "step",
    spread: str = "minmax",
    smoothing: float = 0.0,
    log_y: bool = False,
    height: int = 460,
    group_title: str = "",
    points: int = 500,
) -> dict[str, Any]:
    """One curve per group of runs: the mean across the group's runs, with a band.

    Runs are aligned on x: each run's bucketed line is interpolated onto one shared grid of
    ``points`` x values over the union of their ranges (no run is extrapolated beyond its own
    points). The band is the runs' min-max or the mean ± one standard deviation, and the
    legend names each group with its run count.

    Args:
        series: ``metric_series`` rows of every run.
        groups: run id -> its group's label (a param or tag value).
    """
    data = series[series["run_id"].isin(list(groups))] if len(series) else series
    traces: list[dict[str, Any]] = []
    if len(data):
        lo, hi = float(data["x"].min()), float(data["x"].max())
        grid = np.linspace(lo, hi, points) if hi > lo else np.array([lo])
        members: dict[str, list[np.ndarray]] = {}
        for run_id, rows in data.groupby("run_id", sort=False):
            rows = rows.sort_values("x")
            xs, ys = rows["x"].to_numpy(dtype=float), rows["value"].to_numpy(dtype=float)
            ok = np.isfinite(ys)
            if not ok.any():
                continue
            line = np.interp(grid, xs[ok], ys[ok], left=np.nan, right=np.nan)
            members.setdefault(groups[str(run_id)], []).append(line)
        counts = {label: sum(1 for g in groups.values() if g == label) for label in set(groups.values())}
        x = grid.tolist()
        for i, label in enumerate(sorted(members, key=str)):
            stack = np.vstack(members[label])
            with warnings.catch_warnings():  # an x no run of the group reaches is all-NaN: a gap
                warnings.simplefilter("ignore", category=RuntimeWarning)
                mean = np.nanmean(stack, axis=0)
                if spread == "std":
                    std = np.nanstd(stack, axis=0)
                    low, high = mean - std, mean + std
                else:
                    low, high = np.nanmin(stack, axis=0), np.nanmax(stack, axis=0)
            color = PALETTE[i % len(PALETTE)]
            if spread != "none" and len(members[label]) > 1:
                traces += band_traces(x, low, high, color, f"group-{i}")
            name = f"{safe_text(label)} ({counts.get(label, len(members[label]))} run{'s' if counts.get(label, 0) != 1 else ''})"
            traces.append(
                {
                    "type": "scatter",
                    "x": x,
                    "y": finite(ema(mean, smoothing)),
                    "mode": "lines",
                    "name": name,
                    "legendgroup": f"group-{i}",
                    "line": {"color": color, "width": 2},
                    "meta": "group-mean",
                }
            )
    xaxis: dict[str, Any] = {"title": {"text": X_TITLES.get(x_axis, "Step")}}
    if x_axis == "wall":
        xaxis["type"] = "date"
    title = f"{key}: mean by {group_title}" if group_title else key
    return {
        "data": traces,
        "layout": {
            "title": {"text": safe_text(title), "x": 0.01, "font": {"size": 14}},
            "height": height,
            "margin": {"l": 50, "r": 16, "t": 36, "b": 40},
            "template": pio.templates["plotly_white"],
            "xaxis": xaxis,
            "yaxis": {"type": "log" if log_y else "linear"},
            "uirevision": f"group:{key}:{x_axis}:{log_y}",
            "legend": {"orientation": "h", "y": -0.2, "title": {"text": safe_text(group_title)}},
            "showlegend": True,
        },
    }


def _plain(values: np.ndarray) -> list[float | None]:
    return [None if np.isnan(v) else float(v) for v in values]


def as_dimension(series: pd.Series, label: str) -> dict[str, Any]:
    """A parallel-coordinates dimension: numeric when every value parses, else categorical
    (values mapped to positions, shown as tick labels)."""
    numeric = pd.to_numeric(series, errors="coerce")
    if numeric.notna().sum() == series.notna().sum() and numeric.notna().any():
        return {"label": label, "values": numeric.tolist()}
    categories = sorted(series.dropna().astype(str).unique())
    index = {c: i for i, c in enumerate(categories)}
    codes = [index.get(str(v), np.nan) if pd.notna(v) else np.nan for v in series]
    return {"label": label, "values": codes, "tickvals": list(range(len(categories))), "ticktext": categories}


def numeric_or_codes(series: pd.Series) -> tuple[pd.Series, list[str] | None]:
    numeric = pd.to_numeric(series, errors="coerce")
    if numeric.notna().sum() == series.notna().sum():
        return numeric, None
    categories = sorted(series.dropna().astype(str).unique())
    index = {c: i for i, c in enumerate(categories)}
    return series.map(lambda v: index.get(str(v), np.nan) if pd.notna(v) else np.nan).astype(float), categories


def _label(column: str) -> str:
    return column.split(".", 1)[1] if "." in column else column


def parallel_figure(frame: pd.DataFrame, columns: Sequence[str], color: str | None = None) -> go.Figure:
    dims = [as_dimension(frame[c], _label(c)) for c in columns if c in frame.columns]
    line: dict[str, Any] = {}
    if color and color in frame.columns:
        values, _ = numeric_or_codes(frame[color])
        line = {
            "color": values.tolist(),
            "colorscale": "Viridis",
            "showscale": True,
            "colorbar": {"title": _label(color)},
        }
    fig = (
        go.Figure(go.Parcoords(dimensions=dims, line=line)) if dims else empty_figure("Pick params and metrics to plot")
    )
    fig.update_layout(height=460, margin={"l": 60, "r": 60, "t": 50, "b": 30}, template="plotly_white")
    return fig


def scatter_figure(frame: pd.DataFrame, x: str | None, y: str | None, names: Sequence[str] | None = None) -> go.Figure:
    if not x or not y or x not in frame.columns or y not in frame.columns:
        return empty_figure("Pick a param or metric for each axis")
    xs, x_cats = numeric_or_codes(frame[x])
    ys, y_cats = numeric_or_codes(frame[y])
    fig = go.Figure(
        go.Scatter(
            x=xs,
            y=ys,
            mode="markers",
            text=list(names) if names is not None else None,
            marker={"size": 10, "color": PALETTE[0], "opacity": 0.8},
            hovertemplate="%{text}<br>" + _label(x) + "=%{x}<br>" + _label(y) + "=%{y}<extra></extra>",
        )
    )
    return _xy_layout(fig, x, y, x_cats, y_cats)


def contour_figure(frame: pd.DataFrame, x: str | None, y: str | None, z: str | None) -> go.Figure:
    if not x or not y or not z or any(c not in frame.columns for c in (x, y, z)):
        return empty_figure("Pick x, y and z")
    xs, x_cats = numeric_or_codes(frame[x])
    ys, y_cats = numeric_or_codes(frame[y])
    zs, _ = numeric_or_codes(frame[z])
    ok = xs.notna() & ys.notna() & zs.notna()
    if ok.sum() < 3 or xs[ok].nunique() < 2 or ys[ok].nunique() < 2:
        return empty_figure("A contour needs at least 3 runs with 2+ distinct x and y values")
    # Runs sharing (x, y) are averaged; plotly grids the scattered points and fills the gaps.
    grid = pd.DataFrame({"x": xs[ok], "y": ys[ok], "z": zs[ok]}).groupby(["x", "y"], as_index=False)["z"].mean()
    fig = go.Figure(
        [
            go.Contour(
                x=grid["x"],
                y=grid["y"],
                z=grid["z"],
                colorscale="Viridis",
                connectgaps=True,
                colorbar={"title": _label(z)},
                contours={"coloring": "heatmap"},
            ),
            go.Scatter(
                x=grid["x"],
                y=grid["y"],
                mode="markers",
                marker={"color": "white", "size": 6, "line": {"width": 1}},
                showlegend=False,
                hoverinfo="skip",
            ),
        ]
    )
    return _xy_layout(fig, x, y, x_cats, y_cats)


def _xy_layout(fig: go.Figure, x: str, y: str, x_cats: list[str] | None, y_cats: list[str] | None) -> go.Figure:
    """The scatter and contour plots' frame: axis titles, size, and category names as ticks."""
    fig.update_layout(
        xaxis_title=_label(x),
        yaxis_title=_label(y),
        height=460,
        template="plotly_white",
        margin={"l": 60, "r": 20, "t": 30, "b": 50},
    )
    _category_ticks(fig, "xaxis", x_cats)
    _category_ticks(fig, "yaxis", y_cats)
    return fig


def _category_ticks(fig: go.Figure, axis: str, categories: list[str] | None) -> None:
    if categories:
        fig.update_layout({axis: {"tickvals": list(range(len(categories))), "ticktext": categories}})


def empty_figure(text: str) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(
        xaxis={"visible": False},
        yaxis={"visible": False},
        height=300,
        template="plotly_white",
        annotations=[
            {
                "text": text,
                "showarrow": False,
                "font": {"size": 14, "color": "#5f6b7a"},
                "xref": "paper",
                "yref": "paper",
                "x": 0.5,
                "y": 0.5,
            }
        ],
    )
    return fig


_warm = False


def warm_up() -> None:
    """Build one figure of each kind the dashboard draws, in the calling thread.

    plotly imports most of its figure classes lazily, on first use. Left to the server's
    request threads, several first uses at once can deadlock the interpreter's import locks
    (seen with Debian's Python 3.11.2 in CI: two callback threads importing plotly's layout
    classes while a third thread imported Dash); done once here, before the server starts,
    later figures import nothing. It also spares the first user the imports' cost. Once per
    process.
    """
    global _warm
    if _warm:
        return
    _warm = True
    line = go.Figure(layout={"template": "plotly_white"})
    line.add_trace(
        go.Scatter(
            x=[0, 1], y=[0, 1], mode="lines+markers", fill="tonexty", name="a", text=["a", "b"],
            hovertemplate="%{x}", line={"color": "#000", "width": 1}, marker={"size": 3},
            legendgroup="g", showlegend=True, meta="raw",
        )
    )  # fmt: skip
    line.update_layout(
        height=300, margin={"l": 1, "r": 1, "t": 1, "b": 1}, title={"text": "t"}, hovermode="x unified",
        xaxis={"title": {"text": "x"}, "range": [0, 1]}, yaxis={"title": {"text": "y"}, "type": "log"},
        legend={"orientation": "h"}, annotations=[{"text": "a", "showarrow": False}],
    )  # fmt: skip
    contour = go.Figure(go.Contour(x=[0, 1], y=[0, 1], z=[[0, 1], [1, 0]], colorbar={"title": {"text": "z"}}))
    contour.update_layout(template="plotly_white")
    parallel = go.Figure(
        go.Parcoords(
            dimensions=[{"label": "a", "values": [0, 1]}],
            line={"color": [0, 1], "colorscale": "Viridis", "showscale": True},
        )
    )
    parallel.update_layout(template="plotly_white")
    for figure in (line, contour, parallel):
        figure.to_plotly_json()
