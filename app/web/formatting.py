"""How the dashboard writes numbers, times, durations, sizes and source names, everywhere the same."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd


def format_time(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
        return ""
    stamp = pd.Timestamp(value, unit="ms", tz="UTC") if isinstance(value, (int, float)) else pd.Timestamp(value)
    if pd.isna(stamp):
        return ""
    return stamp.strftime("%Y-%m-%d %H:%M:%S")


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
