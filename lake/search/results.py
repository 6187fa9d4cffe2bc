"""Running a search over a lake: the matching run ids in order, pages with totals and tokens."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

from runlake.core import vocab
from runlake.core.errors import InvalidArgument
from runlake.lake import catalog, frames
from runlake.lake.connection import Connection
from runlake.lake.search.compiler import OrderPlan, compile_filter, compile_order_by
from runlake.lake.search_index import ACTIVE_COLUMN, WIDE_TABLE, SearchIndex
from runlake.lake.sql import Fragment, all_of, as_fragment, join, q

DEFAULT_MAX_RESULTS = 100_000
# The largest count or position a query takes: DuckDB's LIMIT and OFFSET are signed 64-bit.
MAX_INT64 = 2**63 - 1


@dataclass(frozen=True)
class Page:
    """One page of search results."""

    frame: pd.DataFrame
    total: int
    next_page_token: str | None
    run_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Search:
    """What a search asks for, checked: the arguments ``Lake.search_runs`` and friends take."""

    experiment_ids: Sequence[str] | None = None
    experiment_names: Sequence[str] | None = None
    filter_string: str = ""
    run_view_type: str = "ACTIVE_ONLY"
    order_by: Sequence[str] | None = None
    created_after: int | None = None
    created_before: int | None = None
    has_model: bool | None = None

    def __post_init__(self) -> None:
        if self.filter_string is not None and not isinstance(self.filter_string, str):
            raise InvalidArgument(f"filter_string must be a string, got {type(self.filter_string).__name__}")
        order_by = self.order_by
        if isinstance(order_by, (str, bytes)) or (
            order_by is not None and not all(isinstance(entry, str) for entry in order_by)
        ):
            raise InvalidArgument(f"order_by takes a list of strings, e.g. ['metrics.loss DESC'], got {order_by!r}")
        for name in ("created_after", "created_before"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or not -(2**63) <= value <= MAX_INT64
            ):
                raise InvalidArgument(f"{name} must be epoch milliseconds (a 64-bit integer), got {_short(value)}")
        if self.has_model is not None and not isinstance(self.has_model, bool):
            raise InvalidArgument(f"has_model must be True, False or None, got {self.has_model!r}")


def _where(db: Connection, search: Search, index: SearchIndex | None) -> Fragment:
    """The search's whole condition over ``runs r``: stage, scope, time, model, filter."""
    conditions: list[Fragment] = [
        catalog.stage_condition(
            "r.lifecycle_stage", search.run_view_type, None if index is None else f"r.{ACTIVE_COLUMN}"
        ),
        catalog.scope(catalog.resolve_experiments(db, search.experiment_ids, search.experiment_names)),
    ]
    if search.created_after is not None:
        conditions.append(q("r.start_time >= ?", int(search.created_after)))
    if search.created_before is not None:
        conditions.append(q("r.start_time <= ?", int(search.created_before)))
    if search.has_model is not None:
        column = index.column("tag", vocab.MODEL_HISTORY_TAG) if index is not None else None
        if column is not None:
            # The index's column of the tag: NULL exactly where the run has no such tag.
            conditions.append(q(f"r.{column} IS {'NOT ' if search.has_model else ''}NULL"))
        else:
            exists = "EXISTS (SELECT 1 FROM tags mt WHERE mt.run_id = r.run_id AND mt.key = ?)"
            conditions.append(q(exists if search.has_model else f"NOT {exists}", vocab.MODEL_HISTORY_TAG))
    conditions.append(as_fragment(compile_filter(search.filter_string or "", index)))
    return all_of(conditions)


def search_ids(db: Connection, search: Search, limit: int, offset: int, *, count: bool) -> tuple[list[str], int]:
    """The matching run ids ``offset .. offset+limit`` in the search's order, and the total.

    With ``count`` the total rides along in the same query (a window count over the joins, a
    count subquery over the search index). Without it, the total is only what was seen.
    """
    limit, offset = _checked_window(limit, offset)
    # One state for the whole search: the refresh happens before the index is read.
    with db.fresh():
        index = db.search_index()
        plan, where, runs = _compiled(db, search, index)
        rows = db.rows(_page_query(plan, where, runs, limit, offset, count, ["r.run_id"]))
        run_ids = [r[0] for r in rows]
        return run_ids, _total(db, where, runs, len(run_ids), offset, count, rows[0][1] if count and rows else None)


# A search asking for more runs than this (an "all matches" call, not a page) selects the
# frame's columns in its own query; a page finds its ids first and reads their rows by id.
# Selecting every column in the search itself saves a query, but DuckDB then carries every
# column of every match into the top-N: at 1,000,000 runs a 100-run page of a filter half the
# runs pass took about 300 ms that way, against 36-60 ms by ids. An all-matches call reads all
# those rows anyway.
FUSED_SEARCH_LIMIT = 10_000


def search_frame(
    db: Connection, search: Search, limit: int, offset: int, *, count: bool, columns: Sequence[str] | None = None
) -> tuple[pd.DataFrame, list[str], int]:
    """The frame of the matching runs ``offset .. offset+limit`` (``frames.build_frame``'s
    shape), their ids and the total (counted as ``search_ids`` counts it).

    Read from the search index's wide rows when it holds every column asked for
    (``search_rows``); otherwise the ids come first and ``build_frame`` pivots them.
    """
    with db.fresh():
        found = search_rows(db, search, limit, offset, count=count, columns=columns)
        if found is None:
            run_ids, total = search_ids(db, search, limit, offset, count=count)
            return frames.build_frame(db, run_ids, columns), run_ids, total
        rows, selection, run_ids, total = found
        return frames.frame_from_index_rows(rows, selection, run_ids), run_ids, total


# Reads of one search from the index that another thread's refresh may interrupt (it replaced
# the index: new keys, or a rebuild) before the search falls back to the runs' tables.
INDEX_READ_TRIES = 3


def search_rows(
    db: Connection,
    search: Search,
    limit: int,
    offset: int,
    *,
    count: bool,
    columns: Sequence[str] | None = None,
    prefixes: Sequence[str] | None = None,
    fused: bool | None = None,
) -> tuple[pa.Table, frames.IndexSelection, list[str], int] | None:
    """The search index's wide rows of the matching runs ``offset .. offset+limit``, in order,
    with the columns ``frames.index_selection(index, columns, prefixes)`` picks, that
    selection, the runs' ids and the total; None when the index does not hold them (the caller
    then reads the runs' tables).

    ``fused`` (default: more than ``FUSED_SEARCH_LIMIT`` runs asked for) finds the runs and
    reads their rows in one query; otherwise the ids come first and their rows are probed by
    id. The selection, the compiled search and the read all use one index: when another
    thread's refresh replaces it meanwhile (a new key may then be missing from the selection),
    the read is made again.
    """
    limit, offset = _checked_window(limit, offset)
    fused = limit > FUSED_SEARCH_LIMIT if fused is None else fused
    with db.fresh():
        for _attempt in range(INDEX_READ_TRIES):
            index = db.search_index()
            selection = frames.index_selection(index, columns, prefixes)
            if selection is None or index is None:
                return None
            try:
                rows, run_ids, total = _index_read(db, search, index, selection, limit, offset, count, fused)
            except duckdb.Error:
                if db.search_index() is index:
                    raise
                continue  # the index was rebuilt under the read
            if db.search_index() is index:
                return rows, selection, run_ids, total
    return None


def _index_read(
    db: Connection,
    search: Search,
    index: SearchIndex,
    selection: frames.IndexSelection,
    limit: int,
    offset: int,
    count: bool,
    fused: bool,
) -> tuple[pa.Table, list[str], int]:
    plan, where, runs = _compiled(db, search, index)
    if not fused:
        # The total of a condition counted before in this state is taken as it is: paging
        # through one filter, sorting it another way or polling an unchanged lake counts
        # the matches once (at a million runs the count is 7-11 ms of a 50 ms page).
        generation, key = db.generation, _count_key(runs, where)
        known = db.remembered_count(key) if count and key is not None else None
        counting = count and known is None
        found = db.rows(_page_query(plan, where, runs, limit, offset, counting, ["r.run_id"]))
        run_ids = [r[0] for r in found]
        if known is not None:
            total = known
        else:
            counted = found[0][1] if counting and found else None
            total = _total(db, where, runs, len(run_ids), offset, count, counted)
            if count and key is not None:
                db.remember_count(key, generation, total)
        return frames.index_rows(db, selection, run_ids), run_ids, total
    select = [f"r.{column}" for column in selection.columns]
    rows = db.arrow(_page_query(plan, where, runs, limit, offset, count, select))
    run_ids = rows.column("run_id").to_pylist()
    counted = rows.column("total")[0].as_py() if count and run_ids else None
    return rows, run_ids, _total(db, where, runs, len(run_ids), offset, count, counted)


def _count_key(runs: str, where: Fragment) -> tuple[Any, ...] | None:
    """What a search's total depends on besides the state: its table and condition (None when
    a bound value cannot be a key, such as a list)."""
    key = (runs, where.sql, where.params)
    try:
        hash(key)
    except TypeError:
        return None
    return key


def _checked_window(limit: int, offset: int) -> tuple[int, int]:
    # Every entry point checks its numbers; this is the last line before they become SQL
    # parameters (DuckDB's LIMIT and OFFSET are 64-bit: a larger Python int is a raw error).
    limit = positive_int("max_results", limit)
    if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset <= MAX_INT64:
        raise InvalidArgument(f"offset must be a non-negative integer, at most {MAX_INT64}, got {_short(offset)}")
    return limit, offset


def _compiled(db: Connection, search: Search, index: SearchIndex | None) -> tuple[OrderPlan, Fragment, str]:
    """The search's order plan, its condition and the table it reads (``r``)."""
    plan = compile_order_by(list(search.order_by) if search.order_by else None, index)
    where = _where(db, search, index)
    # The search index is the runs table with every key's value beside it: the filter and
    # the order read its columns instead of joining (``lake/search_index.py``).
    return plan, where, "runs" if index is None else WIDE_TABLE


def _page_query(
    plan: OrderPlan, where: Fragment, runs: str, limit: int, offset: int, count: bool, select: list[str]
) -> Fragment:
    """The page's rows: ``select``, then the total as ``total`` when ``count``."""
    head = q(f"SELECT {', '.join(select)}")
    if count and runs == WIDE_TABLE:
        # Over the index the total is its own scan, and the page a plain top-N: a window count
        # would hold every match for the sort (12 ms against 7.5 ms at 100,000 runs).
        head = join([head, q(f", (SELECT count(*) FROM {runs} r WHERE"), where, q(") AS total")])
    elif count:
        # Over the joins one pass finds the page and counts the matches.
        head = join([head, q(", count(*) OVER () AS total")])
    return join(
        [
            head,
            Fragment(f"FROM {runs} r {plan.joins_sql}", tuple(plan.join_params)),
            q("WHERE"),
            where,
            q(f"ORDER BY {plan.order_sql} LIMIT ? OFFSET ?", int(limit), int(offset)),
        ]
    )


def _total(db: Connection, where: Fragment, runs: str, seen: int, offset: int, count: bool, counted: Any) -> int:
    """The total: without ``count`` what was seen; with it the page's count (``counted``) when
    the page had rows, a count of its own for a page past the end."""
    if not count or not (seen or offset):
        return seen + offset
    if counted is not None:
        return int(counted)
    return int(db.rows(join([f"SELECT count(*) FROM {runs} r WHERE", where]))[0][0])


def positive_int(name: str, value: Any) -> int:
    """``value`` when it is a positive integer (raises ``InvalidArgument`` otherwise)."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidArgument(f"{name} must be a positive integer, got {_short(value)}")
    if value > MAX_INT64:
        raise InvalidArgument(f"{name} must be at most {MAX_INT64} (2^63 - 1), got {_short(value)}")
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:59] + "…"


def page_offset(page_token: str | None, offset: int | None) -> int:
    """Where a page starts: an explicit row ``offset``, else the one a page token carries."""
    if offset is None:
        return decode_token(page_token)
    if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset <= MAX_INT64:
        raise InvalidArgument(
            f"offset must be a non-negative integer, at most {MAX_INT64} (2^63 - 1), got {_short(offset)}"
        )
    return offset


def encode_token(offset: int) -> str:
    """An opaque page token for a row offset."""
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def decode_token(token: str | None) -> int:
    """The row offset in a page token (raises ``InvalidArgument`` for a token not made here)."""
    if token is None or token == "":
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(token.encode()))["offset"]
        if isinstance(offset, int) and not isinstance(offset, bool) and 0 <= offset <= MAX_INT64:
            return offset
    except (ValueError, KeyError, TypeError, AttributeError):
        pass
    raise InvalidArgument("Invalid page token: pass the next_page_token of a previous page unchanged")
