"""CSV export of runs, in MLflow's column order, for the runs page's Download CSV."""

from __future__ import annotations

import pandas as pd

from runlake.app.web.formatting import format_duration, format_time

FIXED_COLUMNS = ["Start Time", "Duration", "Run ID", "Name", "Source Type", "Source Name", "User", "Status"]


def runs_csv_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The CSV table of a search frame.

    Columns: ``Start Time, Duration, Run ID, Name, Source Type, Source Name, User, Status``
    (MLflow's order), then one column per param and per metric (named by key, params first,
    each sorted), one row per run in the frame's order.
    """
    params = sorted(c for c in frame.columns if c.startswith("params."))
    metrics = sorted(c for c in frame.columns if c.startswith("metrics."))
    out = pd.DataFrame(
        {
            "Start Time": [format_time(v) for v in frame.get("start_time", [])],
            "Duration": [
                format_duration(s, e, st)
                for s, e, st in zip(frame.get("start_time", []), frame.get("end_time", []), frame.get("status", []))
            ],
            "Run ID": frame.get("run_id", pd.Series(dtype=str)).tolist(),
            "Name": frame.get("run_name", pd.Series(dtype=str)).tolist(),
            "Source Type": frame.get("source_type", pd.Series(dtype=str)).tolist(),
            "Source Name": frame.get("source_name", pd.Series(dtype=str)).tolist(),
            "User": frame.get("user_id", pd.Series(dtype=str)).tolist(),
            "Status": frame.get("status", pd.Series(dtype=str)).tolist(),
        }
    )
    # A key may be both a param and a metric: the CSV header then says which.
    param_keys = {c.split(".", 1)[1] for c in params}
    metric_keys = {c.split(".", 1)[1] for c in metrics}
    clash = param_keys & metric_keys
    for column in params + metrics:
        prefix, key = column.split(".", 1)
        header = f"{key} ({prefix[:-1]})" if key in clash else key
        out[header] = frame[column].tolist()
    return out


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _neutralise(value: object) -> object:
    """A text cell a spreadsheet would run as a formula, made inert with a leading quote.

    Run names, params and tags are user text; `=HYPERLINK(...)` in one must stay text when a
    teammate opens the CSV in Excel or Sheets. Numbers, and text that reads as a plain number
    ('-0.5'), are left alone.
    """
    if not isinstance(value, str) or not value.startswith(_FORMULA_START):
        return value
    try:
        float(value)
        return value
    except ValueError:
        return "'" + value


def runs_csv(frame: pd.DataFrame) -> str:
    table = runs_csv_frame(frame)
    return str(table.apply(lambda column: column.map(_neutralise)).to_csv(index=False))
