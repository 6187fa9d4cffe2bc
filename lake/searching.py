"""Search on a ``Lake``: the filter and order compiled to SQL, paging, and the result frames."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from runlake.core import vocab
from runlake.core.errors import InvalidArgument
from runlake.lake.fresh import fresh

VIEW_TYPES = ("ACTIVE_ONLY", "DELETED_ONLY", "ALL")
MODEL_HISTORY_TAG = vocab.MODEL_HISTORY_TAG
DEFAULT_MAX_RESULTS = 100_000


@dataclass(frozen=True)
class Page:
    """One page of search results."""

    frame: pd.DataFrame
    total: int
    next_page_token: str | None
    run_ids: list[str] = field(default_factory=list)


class SearchMixin:
    """The search methods of ``Lake`` (kept apart so each module stays small)."""

    @fresh
    def search_runs(
        self,
        experiment_ids: Sequence[str] | None = None,
        experiment_names: Sequence[str] | None = None,
        filter_string: str = "",
        run_view_type: str = "ACTIVE_ONLY",
        order_by: Sequence[str] | None = None,
        max_results: int | None = None,
        created_after: int | None = None,
        created_before: int | None = None,
        has_model: bool | None = None,
    ) -> pd.DataFrame:
        """Runs matching a filter, as a DataFrame shaped like ``mlflow.search_runs``.

        Args:
            experiment_ids: experiments to search (all when neither ids nor names are given).
            experiment_names: experiments to search, by name.
            filter_string: MLflow search syntax plus OR, NOT and parentheses.
            run_view_type: "ACTIVE_ONLY", "DELETED_ONLY" or "ALL".
            order_by: entries like ``"metrics.loss DESC"``.
            max_results: at most this many runs (all when None).
            created_after: only runs started at or after this epoch ms.
            created_before: only runs started at or before this epoch ms.
            has_model: only runs with (True) or without (False) a logged model.

        Raises:
            SearchSyntaxError: an invalid filter or order_by entry (a ValueError).
            ExperimentNotFound: an unknown experiment.
        """
        if max_results is not None:
            _positive_int("max_results", max_results)
        run_ids, _total = self._search_ids(
            experiment_ids, experiment_names, filter_string, run_view_type, order_by,
            max_results if max_results is not None else DEFAULT_MAX_RESULTS, 0,
            created_after, created_before, has_model, count=False,
        )
        return self.frame_for(run_ids)

    @fresh
    def search_page(
        self,
        experiment_ids: Sequence[str] | None = None,
        experiment_names: Sequence[str] | None = None,
        filter_string: str = "",
        run_view_type: str = "ACTIVE_ONLY",
        order_by: Sequence[str] | None = None,
        page_size: int = 100,
        page_token: str | None = None,
        columns: Sequence[str] | None = None,
        created_after: int | None = None,
        created_before: int | None = None,
        has_model: bool | None = None,
        offset: int | None = None,
    ) -> Page:
        """One page of matching runs, with the total count and the next page's token.

        The page's run ids are found first; only those runs are pivoted into the frame.
        ``columns`` limits the ``metrics.*``/``params.*``/``tags.*`` columns fetched.
        ``offset`` (instead of a token) starts at a row position, for grids that ask by row.
        """
        _positive_int("page_size", page_size)
        if offset is None:
            offset = _decode_token(page_token)
        elif isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise InvalidArgument(f"offset must be a non-negative integer, got {offset!r}")
        run_ids, total = self._search_ids(
            experiment_ids, experiment_names, filter_string, run_view_type, order_by, page_size, offset,
            created_after, created_before, has_model, count=True,
        )
        next_offset = offset + len(run_ids)
        token = _encode_token(next_offset) if next_offset < total else None
        return Page(frame=self.frame_for(run_ids, columns), total=total, next_page_token=token, run_ids=run_ids)

    @fresh
    def search_run_ids(self, **kwargs: Any) -> list[str]:
        """Ids of every run matching (same arguments as ``search_runs``), in order."""
        max_results = kwargs.pop("max_results", None) or DEFAULT_MAX_RESULTS
        run_ids, _ = self._search_ids(
            kwargs.get("experiment_ids"), kwargs.get("experiment_names"), kwargs.get("filter_string", ""),
            kwargs.get("run_view_type", "ACTIVE_ONLY"), kwargs.get("order_by"), max_results, 0,
            kwargs.get("created_after"), kwargs.get("created_before"), kwargs.get("has_model"), count=False,
        )
        return run_ids

    def _search_ids(
        self,
        experiment_ids: Sequence[str] | None,
        experiment_names: Sequence[str] | None,
        filter_string: str,
        run_view_type: str,
        order_by: Sequence[str] | None,
        limit: int,
        offset: int,
        created_after: int | None,
        created_before: int | None,
        has_model: bool | None,
        *,
        count: bool,
    ) -> tuple[list[str], int]:
        from runlake.lake.search import compile_filter, compile_order_by

        _check_search_arguments(filter_string, order_by, created_after, created_before, has_model)
        filter_sql, filter_params = compile_filter(filter_string or "")
        plan = compile_order_by(list(order_by) if order_by else None)
        ids = self.resolve_experiments(experiment_ids, experiment_names)
        scope_sql, scope_params = self._scope(ids)
        conditions = [_stage_condition("r.lifecycle_stage", run_view_type), scope_sql]
        params: list[Any] = list(scope_params)
        if created_after is not None:
            conditions.append("r.start_time >= ?")
            params.append(int(created_after))
        if created_before is not None:
            conditions.append("r.start_time <= ?")
            params.append(int(created_before))
        if has_model is not None:
            exists = "EXISTS (SELECT 1 FROM tags mt WHERE mt.run_id = r.run_id AND mt.key = ?)"
            conditions.append(exists if has_model else f"NOT {exists}")
            params.append(MODEL_HISTORY_TAG)
        where = " AND ".join(conditions) + f" AND ({filter_sql})"
        # The total rides along as a window count: one pass finds the page and counts matches.
        total_sql = ", count(*) OVER () AS total" if count else ""
        rows = self._rows(
            f"SELECT r.run_id{total_sql} FROM runs r {plan.joins_sql} WHERE {where} "
            f"ORDER BY {plan.order_sql} LIMIT ? OFFSET ?",
            [*plan.join_params, *params, *filter_params, int(limit), int(offset)],
        )
        run_ids = [r[0] for r in rows]
        total = len(run_ids) + offset
        if count:
            if rows:
                total = int(rows[0][1])
            elif offset:
                total = int(self._rows(f"SELECT count(*) FROM runs r WHERE {where}", [*params, *filter_params])[0][0])
        return run_ids, total


def _check_search_arguments(
    filter_string: Any, order_by: Any, created_after: Any, created_before: Any, has_model: Any
) -> None:
    if filter_string is not None and not isinstance(filter_string, str):
        raise InvalidArgument(f"filter_string must be a string, got {type(filter_string).__name__}")
    if isinstance(order_by, (str, bytes)) or (
        order_by is not None and not all(isinstance(entry, str) for entry in order_by)
    ):
        raise InvalidArgument(f"order_by takes a list of strings, e.g. ['metrics.loss DESC'], got {order_by!r}")
    for name, value in (("created_after", created_after), ("created_before", created_before)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise InvalidArgument(f"{name} must be epoch milliseconds (an integer), got {value!r}")
    if has_model is not None and not isinstance(has_model, bool):
        raise InvalidArgument(f"has_model must be True, False or None, got {has_model!r}")


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidArgument(f"{name} must be a positive integer, got {value!r}")


def _stage_condition(column: str, view_type: str) -> str:
    # The SQL here comes from this fixed table only; the user's choice selects an entry.
    conditions = {
        "ACTIVE_ONLY": f"{column} = 'active'",
        "DELETED_ONLY": f"{column} = 'deleted'",
        "ALL": "TRUE",
    }
    key = str(view_type).upper()
    if key not in conditions:
        raise InvalidArgument(f"run_view_type must be one of {', '.join(VIEW_TYPES)}, got {view_type!r}")
    return conditions[key]


def _encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def _decode_token(token: str | None) -> int:
    if token is None or token == "":
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(token.encode()))["offset"]
        if isinstance(offset, int) and offset >= 0:
            return offset
    except (ValueError, KeyError, TypeError, AttributeError):
        pass
    raise InvalidArgument("Invalid page token: pass the next_page_token of a previous page unchanged")
