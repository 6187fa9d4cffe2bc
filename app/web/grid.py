"""The runs grid: its typed query (``RunsQuery``), AG Grid's row requests, rows and columns.

AG Grid's infinite-row requests are translated to ``Lake.search_page`` calls, and rows and
column definitions are built from a page. The browser never holds the whole table: each ``getRowsRequest`` (a block of rows, the sort
model) becomes one ``search_page`` call for exactly that block.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import pandas as pd

from runlake.app.web.formatting import format_duration, format_time, neutralise, short_source
from runlake.core.errors import InvalidArgument

STATES = {"active": "ACTIVE_ONLY", "deleted": "DELETED_ONLY", "all": "ALL"}
TIME_WINDOWS_MS = {"hour": 3_600_000, "day": 86_400_000, "week": 7 * 86_400_000, "month": 30 * 86_400_000}
TIME_CHOICES = ("all", "hour", "day", "week", "month", "custom")
MODEL_CHOICES = ("all", "with")
BLOCK_SIZE = 100

# Grid column id -> the search syntax's order_by operand, for the fixed columns.
ATTRIBUTE_SORT = {
    "start_time": "attributes.start_time",
    "run_name": "attributes.run_name",
    "user_id": "attributes.user_id",
    "source_name": "attributes.source_name",
    "source_version": "attributes.source_version",
    "status": "attributes.status",
    "end_time": "attributes.end_time",
}
DEFAULT_SORT = (("start_time", "desc"),)
ENTITY_PREFIXES = ("metrics.", "params.", "tags.")


@dataclass(frozen=True)
class RunsQuery:
    """Everything that decides which runs the runs page shows, in which order, with which columns.

    It round-trips through the URL (``to_url`` / ``from_url``) and the page's ``dcc.Store``
    (``to_store`` / ``from_store``), so a link reproduces the view.
    """

    experiment_ids: tuple[str, ...] = ()
    filter: str = ""
    state: str = "active"
    time: str = "all"
    start: str | None = None  # custom range, ISO dates (inclusive)
    end: str | None = None
    models: str = "all"
    columns: tuple[str, ...] | None = None  # None: the defaults (every metric, varying params)
    sort: tuple[tuple[str, str], ...] = DEFAULT_SORT

    # -- conversions ---------------------------------------------------------------------
    def to_store(self) -> dict[str, Any]:
        data = asdict(self)
        data["sort"] = [list(item) for item in self.sort]
        return data

    @classmethod
    def from_store(cls, data: dict[str, Any] | None) -> RunsQuery:
        if not data:
            return cls()
        columns = data.get("columns")
        return cls(
            experiment_ids=tuple(data.get("experiment_ids") or ()),
            filter=str(data.get("filter") or ""),
            state=_choice(data.get("state"), tuple(STATES), "active"),
            time=_choice(data.get("time"), TIME_CHOICES, "all"),
            start=data.get("start") or None,
            end=data.get("end") or None,
            models=_choice(data.get("models"), MODEL_CHOICES, "all"),
            columns=None if columns is None else tuple(columns),
            sort=_sort_items(data.get("sort")) or DEFAULT_SORT,
        )

    def to_url(self, expanded: Sequence[str] = ()) -> str:
        """The query string (without '?') of this view; default values are left out.

        ``expanded`` (the nested-run parents the user opened) is page state kept beside the
        query, so a link reopens them too.
        """
        params: dict[str, str] = {}
        if self.experiment_ids:
            params["experiments"] = ",".join(self.experiment_ids)
        if self.filter:
            params["filter"] = self.filter
        for name, default in (("state", "active"), ("time", "all"), ("models", "all")):
            if getattr(self, name) != default:
                params[name] = getattr(self, name)
        if self.time == "custom":
            params.update({k: v for k, v in (("start", self.start), ("end", self.end)) if v})
        if self.columns is not None:
            params["columns"] = ",".join(self.columns)
        if self.sort != DEFAULT_SORT:
            params["sort"] = ",".join(f"{col}:{direction}" for col, direction in self.sort)
        if expanded:
            params["expanded"] = ",".join(expanded)
        return urlencode(params)

    @classmethod
    def from_url(cls, args: dict[str, Any]) -> RunsQuery:
        """The view a URL's query parameters describe (Dash passes them as layout kwargs)."""

        def text(name: str) -> str:
            value = args.get(name)
            return value[0] if isinstance(value, list) else (value or "")

        columns = text("columns")
        sort = [tuple(part.rsplit(":", 1)) for part in text("sort").split(",") if ":" in part]
        return cls.from_store(
            {
                "experiment_ids": [e for e in text("experiments").split(",") if e],
                "filter": text("filter"),
                "state": text("state"),
                "time": text("time"),
                "start": text("start"),
                "end": text("end"),
                "models": text("models"),
                "columns": [c for c in columns.split(",") if c] if "columns" in args else None,
                "sort": sort,
            }
        )

    def with_sort(self, sort_model: list[dict[str, Any]] | None) -> RunsQuery:
        items = tuple((str(s.get("colId")), str(s.get("sort"))) for s in sort_model or [] if s.get("colId"))
        return replace(self, sort=_sort_items(items) or DEFAULT_SORT)

    # -- to the lake ---------------------------------------------------------------------
    def search_kwargs(self, now_ms: int | None = None) -> dict[str, Any]:
        """Keyword arguments of ``Lake.search_page`` / ``search_run_ids`` for this view."""
        created_after, created_before = self.time_bounds(now_ms)
        return {
            "experiment_ids": list(self.experiment_ids) or None,
            "filter_string": self.filter,
            "run_view_type": STATES[self.state],
            "order_by": order_by(self.sort),
            "created_after": created_after,
            "created_before": created_before,
            "has_model": True if self.models == "with" else None,
        }

    def time_bounds(self, now_ms: int | None = None) -> tuple[int | None, int | None]:
        if self.time in TIME_WINDOWS_MS:
            now = int(time.time() * 1000) if now_ms is None else now_ms
            # Rounded to the minute, so repeated requests share cache keys.
            return (now - TIME_WINDOWS_MS[self.time]) // 60_000 * 60_000, None
        if self.time == "custom":
            after = _date_ms(self.start)
            before = _date_ms(self.end)
            return after, (before + 86_400_000 - 1 if before is not None else None)
        return None, None


def _choice(value: Any, choices: tuple[str, ...], default: str) -> str:
    return value if value in choices else default


def _sort_items(items: Any) -> tuple[tuple[str, str], ...]:
    out = []
    for item in items or []:
        if isinstance(item, (list, tuple)) and len(item) == 2 and item[1] in ("asc", "desc") and sortable(str(item[0])):
            out.append((str(item[0]), str(item[1])))
    return tuple(out)


def _date_ms(text: str | None) -> int | None:
    if not text:
        return None
    try:
        day = datetime.fromisoformat(str(text)[:10]).replace(tzinfo=UTC)
    except ValueError:
        return None
    return int(day.timestamp() * 1000)


def sortable(col_id: str) -> bool:
    if col_id in ATTRIBUTE_SORT:
        return True
    return col_id.startswith(ENTITY_PREFIXES) and "`" not in col_id


def order_by(sort: tuple[tuple[str, str], ...]) -> list[str]:
    """Search-syntax order_by entries for a grid sort model (column ids and directions)."""
    entries = []
    for col_id, direction in sort:
        if col_id in ATTRIBUTE_SORT:
            operand = ATTRIBUTE_SORT[col_id]
        elif sortable(col_id):
            prefix, _, key = col_id.partition(".")
            operand = f"{prefix}.`{key}`"  # quoted: keys may hold spaces or dots
        else:
            continue
        entries.append(f"{operand} {direction.upper()}")
    return entries


# -- a getRowsRequest becomes one page ----------------------------------------------------
@dataclass(frozen=True)
class PageRequest:
    """One block the grid asks for."""

    offset: int
    size: int
    sort: tuple[tuple[str, str], ...] = field(default=DEFAULT_SORT)


# A grid row position past this is no table anyone scrolls (and would overflow int64 later).
MAX_ROW = 2**53


def page_request(request: Any) -> PageRequest:
    """Translate AG Grid's ``getRowsRequest`` (startRow, endRow, sortModel), checking every type.

    The request comes from the browser, so from anyone: a wrong type is a bad request, never a
    crash.

    Raises:
        InvalidArgument: not an object, a row that is not a whole number in range, or a sort
            model that is not a list of ``{colId, sort}`` objects.
    """
    if request is None:
        request = {}
    if not isinstance(request, dict):
        raise InvalidArgument("getRowsRequest must be an object", request=_short(request))
    start = _row_number(request, "startRow", 0)
    end = _row_number(request, "endRow", start + BLOCK_SIZE)
    size = min(max(1, end - start), 1000)
    model = request.get("sortModel")
    if model is not None and (
        not isinstance(model, list)
        or not all(isinstance(s, dict) and isinstance(s.get("colId", ""), str) for s in model)
        or not all(s.get("sort") in (None, "asc", "desc") for s in model)
    ):
        raise InvalidArgument("sortModel must be a list of {colId, sort: 'asc' | 'desc'}", sortModel=_short(model))
    sort = RunsQuery().with_sort(model).sort
    return PageRequest(start, size, sort)


def _row_number(request: dict[str, Any], name: str, default: int) -> int:
    value = request.get(name)
    if value is None:
        return default
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_ROW:
        raise InvalidArgument(f"{name} must be a whole number from 0 to {MAX_ROW}", **{name: _short(value)})
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:79] + "…"


def page_kwargs(
    query: RunsQuery, request: PageRequest, columns: list[str] | None, now_ms: int | None = None
) -> dict[str, Any]:
    kwargs = replace(query, sort=request.sort).search_kwargs(now_ms)
    kwargs["offset"] = request.offset
    kwargs["page_size"] = request.size
    kwargs["columns"] = columns
    return kwargs


# -- rows ----------------------------------------------------------------------------------
def rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-ready grid rows: times as epoch ms plus display text, NaN as None."""
    out = []
    for record in frame.to_dict("records"):
        row: dict[str, Any] = {}
        for key, value in record.items():
            value = _json_value(value)
            # Names, params and tags show as stored, with bidi controls made visible; ids stay
            # exact (links and selections use them).
            row[key] = neutralise(value) if isinstance(value, str) and key not in _EXACT_COLUMNS else value
        start, end = record.get("start_time"), record.get("end_time")
        row["start_text"] = format_time(start)
        row["duration"] = format_duration(start, end, row.get("status"))
        row["source"] = short_source(row.get("source_name"))
        row["version"] = (row.get("source_version") or "")[:7]
        out.append(row)
    return out


_EXACT_COLUMNS = frozenset({"run_id", "experiment_id", "parent_run_id", "artifact_uri"})


def _json_value(value: Any) -> Any:
    if isinstance(value, pd.Timestamp):
        return None if pd.isna(value) else int(value.value // 1_000_000)
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if hasattr(value, "item"):
        value = value.item()
        return None if isinstance(value, float) and math.isnan(value) else value
    return value


# -- columns -------------------------------------------------------------------------------
def default_columns(frame: pd.DataFrame) -> list[str]:
    """Every metric, and the params whose values vary across the sample."""
    metrics = [c for c in frame.columns if c.startswith("metrics.")]
    params = [c for c in frame.columns if c.startswith("params.") and frame[c].nunique(dropna=False) > 1]
    return metrics + params


def available_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c.startswith(ENTITY_PREFIXES)]


def column_defs(columns: list[str], sort: tuple[tuple[str, str], ...] = DEFAULT_SORT) -> list[dict[str, Any]]:
    """AG Grid column definitions: the fixed run columns, then the picked entity columns."""
    sort_of = {col: direction for col, direction in sort}

    def col(col_id: str, header: str, **extra: Any) -> dict[str, Any]:
        definition = {"field": col_id, "colId": col_id, "headerName": header, "sortable": sortable(col_id), **extra}
        if col_id in sort_of:
            definition["sort"] = sort_of[col_id]
        return definition

    defs = [
        col(
            "start_time",
            "Start time",
            cellRenderer="RunLink",
            minWidth=170,
            headerTooltip="When the run started (UTC); opens the run",
        ),
        col("run_name", "Run name", cellRenderer="RunName", minWidth=160),
        col("user_id", "User", width=100),
        col(
            "source_name",
            "Source",
            width=120,
            valueGetter={"function": "params.data && params.data.source"},
            tooltipField="source_name",
        ),
        col("source_version", "Version", width=95, valueGetter={"function": "params.data && params.data.version"}),
        col("status", "Status", cellRenderer="StatusPill", width=115),
        {"field": "duration", "colId": "duration", "headerName": "Duration", "sortable": False, "width": 105},
    ]
    for name in columns:
        prefix, _, key = name.partition(".")
        extra: dict[str, Any] = {"headerTooltip": name, "headerClass": f"col-{prefix}"}
        if prefix == "metrics":
            extra["valueFormatter"] = {"function": "formatNumber(params.value)"}
            extra["tooltipValueGetter"] = {"function": "params.value == null ? null : String(params.value)"}
            extra["type"] = "rightAligned"
        else:
            extra["tooltipField"] = name  # a long param or tag value, whole, on hover
        defs.append(col(name, key, width=130, **extra))
    return defs
