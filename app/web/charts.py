"""Plotly figures: metric histories, parallel coordinates, scatter and contour over runs.

Histories take step, wall time or relative time as x, EMA smoothing and a log scale; parallel
coordinates handle categorical params.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

X_AXES = ("step", "wall", "relative")
X_TITLES = {"step": "Step", "wall": "Time (UTC)", "relative": "Time since start (s)"}
PALETTE = ("#2f6fde", "#e4572e", "#17a398", "#f3a712", "#7d5ba6", "#c84c8f", "#4c9f38", "#8a6d3b", "#1b998b", "#6c757d")


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
        label = names.get(run_id, str(run_id)[:8]) or key
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


def contour_figure(frame: pd.DataFrame, x: str | None, y: str | None, z: str | None) -> go.Figure:
    cols = [x, y, z]
    if not all(cols) or any(c not in frame.columns for c in cols):
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
