"""``Lake``: the read API that the dashboard, the CLI and users' notebooks call."""

from __future__ import annotations

import base64
import functools
import json
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import duckdb
import pandas as pd
import pyarrow.dataset as ds

from runlake.lake import layout, snapshot, views
from runlake.lake.errors import ExperimentNotFound, InvalidArgument, RunNotFound

VIEW_TYPES = ("ACTIVE_ONLY", "DELETED_ONLY", "ALL")
F = TypeVar("F", bound=Callable[..., Any])


def _fresh(method: F) -> F:
    """Refresh the lake's state once at the start of a public call (not per inner query)."""

    @functools.wraps(method)
    def wrapper(self: "Lake", *args: Any, **kwargs: Any) -> Any:
        local = self._local
        depth = getattr(local, "depth", 0)
        if not depth:
            self.refresh()
        local.depth = depth + 1
        try:
            return method(self, *args, **kwargs)
        finally:
            local.depth = depth

    return wrapper  # type: ignore[return-value]

MODEL_HISTORY_TAG = "mlflow.log-model.history"
DEFAULT_MAX_RESULTS = 100_000

RUN_COLUMNS = (
    "run_id",
    "experiment_id",
    "run_name",
    "status",
    "start_time",
    "end_time",
    "user_id",
    "source_type",
    "source_name",
    "source_version",
    "entry_point",
    "parent_run_id",
    "artifact_uri",
    "lifecycle_stage",
    "deleted_time",
)
# The leading columns of a search frame, in mlflow.search_runs order plus runlake's additions.
FRAME_COLUMNS = (
    "run_id",
    "experiment_id",
    "status",
    "artifact_uri",
    "start_time",
    "end_time",
    "run_name",
    "user_id",
    "lifecycle_stage",
    "parent_run_id",
    "source_type",
    "source_name",
    "source_version",
    "deleted_time",
)


@dataclass(frozen=True)
class RunRecord:
    """Everything about one run: attributes, params, latest metrics with min/max, tags."""

    info: dict[str, Any]
    params: dict[str, str]
    metrics: dict[str, float]
    metric_stats: dict[str, dict[str, float]]
    tags: dict[str, str]

    @property
    def run_id(self) -> str:
        return str(self.info["run_id"])


@dataclass(frozen=True)
class Page:
    """One page of search results."""

    frame: pd.DataFrame
    total: int
    next_page_token: str | None
    run_ids: list[str] = field(default_factory=list)


class Lake:
    """A lake opened for reading (and for the lifecycle changes the dashboard makes).

    Args:
        path: the lake root, a local path or a URI pyarrow understands.

    One DuckDB connection per ``Lake`` holds the current state, refreshed from the file listing
    before each query; each thread queries through its own cursor.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.fs, self.root = layout.resolve_lake(path)
        self.paths = layout.LakePaths(self.root)
        self._con = duckdb.connect(":memory:")
        self._snapshot = snapshot.Snapshot(self._con, self.fs, self.root)
        self._local = threading.local()
        self._snapshot.refresh()

    def __repr__(self) -> str:
        return f"Lake({self.root!r})"

    # -- plumbing ------------------------------------------------------------------------
    def _cursor(self) -> duckdb.DuckDBPyConnection:
        cursor = getattr(self._local, "cursor", None)
        if cursor is None:
            cursor = self._local.cursor = self._con.cursor()
        return cursor

    def refresh(self) -> bool:
        """Pick up files written since the last query; True when anything changed."""
        return self._snapshot.refresh()

    @property
    def fingerprint(self) -> tuple[int, ...]:
        """Changes whenever the lake's files change (after ``refresh``); a cache key."""
        return self._snapshot.fingerprint()

    def _ensure_fresh(self) -> None:
        # Inside a public call the state was refreshed once at its start: one listing per
        # call, and every query of the call reads the same state.
        if not getattr(self._local, "depth", 0):
            self.refresh()

    def _query(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        self._ensure_fresh()
        return self._cursor().execute(sql, list(params)).df()

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        self._ensure_fresh()
        return self._cursor().execute(sql, list(params)).fetchall()

    def sql(self, query: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
        """Run SQL over the documented views (runs, params, tags, metrics, latest_metrics, experiments).

        Args:
            query: a DuckDB SELECT over the views.
            params: values for ``?`` placeholders.

        Raises:
            InvalidArgument: the query does not parse or names something that does not exist.
        """
        self.refresh()
        cursor = self._cursor()

        def run() -> pd.DataFrame:
            self._register_metrics(cursor)  # a fresh listing of the metric files each try
            return cursor.execute(query, list(params or [])).df()

        try:
            return _with_relisting(run)
        except (duckdb.ParserException, duckdb.CatalogException, duckdb.BinderException,
                duckdb.InvalidInputException, duckdb.ConversionException) as exc:
            raise InvalidArgument(f"SQL error: {exc}", query=query) from None

    def _register_metrics(self, cursor: duckdb.DuckDBPyConnection) -> None:
        # The full metric history is never materialised: a lazily scanned dataset lets DuckDB
        # push run and key filters down to Parquet row groups.
        cursor.register("raw_metrics", self._snapshot.metrics_dataset())
        cursor.execute(f"CREATE OR REPLACE TEMP VIEW metrics AS {views.METRICS_SQL}")

    # -- experiments ---------------------------------------------------------------------
    @_fresh
    def list_experiments(self, view_type: str = "ACTIVE_ONLY") -> pd.DataFrame:
        """Experiments with their run count and last run time, newest activity first.

        Columns: experiment_id, name, artifact_location, lifecycle_stage, creation_time,
        last_update_time, run_count (active runs), last_run_time (epoch ms or NaN).
        """
        stage = _stage_condition("e.lifecycle_stage", view_type)
        return self._query(
            "SELECT e.*, count(r.run_id) AS run_count, max(r.start_time) AS last_run_time "
            "FROM experiments e LEFT JOIN runs r ON r.experiment_id = e.experiment_id AND r.lifecycle_stage = 'active' "
            f"WHERE {stage} GROUP BY ALL "
            "ORDER BY coalesce(last_run_time, any_value(e.creation_time)) DESC NULLS LAST, e.experiment_id"
        )

    @_fresh
    def get_experiment(self, experiment_id: str) -> dict[str, Any]:
        """One experiment by id.

        Raises:
            ExperimentNotFound: no such experiment.
        """
        rows = self._query("SELECT * FROM experiments WHERE experiment_id = ?", [str(experiment_id)])
        if rows.empty:
            raise ExperimentNotFound(str(experiment_id))
        return _record(rows.iloc[0])

    @_fresh
    def get_experiment_by_name(self, name: str) -> dict[str, Any] | None:
        """The experiment with this name (an active one before a deleted one), or None."""
        rows = self._query(
            "SELECT * FROM experiments WHERE name = ? ORDER BY lifecycle_stage = 'active' DESC, experiment_id",
            [name],
        )
        return None if rows.empty else _record(rows.iloc[0])

    @_fresh
    def resolve_experiments(
        self, experiment_ids: Sequence[str] | None = None, experiment_names: Sequence[str] | None = None
    ) -> list[str] | None:
        """Experiment ids for the given ids and names; None means every experiment.

        Raises:
            ExperimentNotFound: an id or a name that does not exist.
        """
        if experiment_ids is None and experiment_names is None:
            return None
        if isinstance(experiment_ids, str) or isinstance(experiment_names, str):
            raise InvalidArgument("experiment_ids and experiment_names take lists, e.g. ['1']")
        known = dict(self._rows("SELECT experiment_id, name FROM experiments"))
        ids: list[str] = []
        for experiment_id in experiment_ids or []:
            if str(experiment_id) not in known:
                raise ExperimentNotFound(str(experiment_id))
            ids.append(str(experiment_id))
        by_name = {name: eid for eid, name in sorted(known.items(), reverse=True)}
        for name in experiment_names or []:
            if name not in by_name:
                raise ExperimentNotFound(name)
            ids.append(by_name[name])
        return list(dict.fromkeys(ids))

    # -- runs ----------------------------------------------------------------------------
    @_fresh
    def get_run(self, run_id: str) -> RunRecord:
        """Every attribute, param, latest metric (with min and max) and tag of a run.

        Raises:
            RunNotFound: no run has this id.
        """
        info = self._query("SELECT * FROM runs WHERE run_id = ?", [run_id])
        if info.empty:
            raise RunNotFound(run_id)
        params = dict(self._rows("SELECT key, value FROM params WHERE run_id = ? ORDER BY key", [run_id]))
        tags = dict(self._rows("SELECT key, value FROM tags WHERE run_id = ? ORDER BY key", [run_id]))
        stats = self._rows(
            "SELECT key, value, step, timestamp, min_value, max_value FROM latest_metrics WHERE run_id = ? ORDER BY key",
            [run_id],
        )
        return RunRecord(
            info=_record(info.iloc[0]),
            params=params,
            metrics={key: value for key, value, *_ in stats},
            metric_stats={
                key: {"latest": value, "step": step, "timestamp": ts, "min": lo, "max": hi}
                for key, value, step, ts, lo, hi in stats
            },
            tags=tags,
        )

    @_fresh
    def metric_history(self, run_id: str, key: str) -> pd.DataFrame:
        """Every point of one metric of one run, ordered by step then timestamp.

        Returns:
            A DataFrame with columns step, timestamp, value (each point once).

        Raises:
            RunNotFound: no run has this id.
        """
        rows = self._rows("SELECT experiment_id FROM runs WHERE run_id = ?", [run_id])
        if not rows:
            raise RunNotFound(run_id)
        return self.metric_histories([run_id], [key], experiment_ids=[rows[0][0]])[["step", "timestamp", "value"]]

    @_fresh
    def metric_histories(
        self, run_ids: Sequence[str], keys: Sequence[str] | None = None, experiment_ids: Sequence[str] | None = None
    ) -> pd.DataFrame:
        """Metric points of several runs (columns run_id, key, step, timestamp, value).

        Reads only the partitions and row groups the runs and keys live in.
        """
        if not run_ids:
            return pd.DataFrame(columns=["run_id", "key", "step", "timestamp", "value"])
        if experiment_ids is None:
            experiment_ids = [r[0] for r in self._rows(
                "SELECT DISTINCT experiment_id FROM runs WHERE run_id IN (SELECT unnest(?::VARCHAR[]))", [list(run_ids)]
            )]
        condition = ds.field("run_id").isin(list(run_ids)) & ds.field(layout.PARTITION_COLUMN).isin(list(experiment_ids))
        if keys is not None:
            condition = condition & ds.field("key").isin(list(keys))
        table = _with_relisting(
            lambda: self._snapshot.metrics_dataset().to_table(
                columns=["run_id", "key", "step", "timestamp", "value"], filter=condition
            )
        )
        cursor = self._cursor()
        cursor.register("_points", table)
        try:
            return cursor.execute(
                "SELECT DISTINCT run_id, key, step, timestamp, value FROM _points ORDER BY run_id, key, step, timestamp, value"
            ).df()
        finally:
            cursor.unregister("_points")

    @_fresh
    def runs_frame(self, experiment_ids: Sequence[str] | None = None, run_view_type: str = "ACTIVE_ONLY") -> pd.DataFrame:
        """All runs of the given experiments as a DataFrame shaped like ``mlflow.search_runs``.

        Columns: run_id, experiment_id, status, artifact_uri, start_time, end_time (UTC
        datetimes), run_name, user_id, lifecycle_stage, ..., then ``metrics.<key>`` (latest
        value), ``params.<key>`` and ``tags.<key>``; newest run first.
        """
        ids = self.resolve_experiments(experiment_ids)
        stage = _stage_condition("r.lifecycle_stage", run_view_type)
        where, params = self._scope(ids)
        rows = self._rows(
            f"SELECT r.run_id FROM runs r WHERE {stage} AND {where} ORDER BY r.start_time DESC, r.run_id", params
        )
        return self.frame_for([r[0] for r in rows])

    def _scope(self, experiment_ids: list[str] | None) -> tuple[str, list[Any]]:
        if experiment_ids is None:
            return "TRUE", []
        return "r.experiment_id IN (SELECT unnest(?::VARCHAR[]))", [experiment_ids]

    @_fresh
    def frame_for(self, run_ids: Sequence[str], columns: Sequence[str] | None = None) -> pd.DataFrame:
        """The search frame of the given runs, in the given order (pivot of a known set).

        Args:
            run_ids: the runs, in output order.
            columns: only these ``metrics.*``/``params.*``/``tags.*`` columns (all when None).
        """
        from runlake.lake.frames import build_frame

        return build_frame(self, list(run_ids), columns)

    # -- search --------------------------------------------------------------------------
    @_fresh
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

    @_fresh
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

    @_fresh
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

    # -- changes made from the dashboard and tools ---------------------------------------
    def set_tag(self, run_id: str, key: str, value: str) -> None:
        """Add or replace a tag on a run.

        Raises:
            RunNotFound: no such run.
            InvalidArgument: an invalid key or a value over 8000 characters.
        """
        from runlake.lake import mutations

        mutations.set_tag(self, run_id, key, value)

    def delete_tag(self, run_id: str, key: str) -> None:
        """Delete a tag from a run."""
        from runlake.lake import mutations

        mutations.delete_tag(self, run_id, key)

    def rename_run(self, run_id: str, new_name: str) -> None:
        """Rename a run."""
        from runlake.lake import mutations

        mutations.rename_run(self, run_id, new_name)

    def set_description(self, run_id: str, text: str) -> None:
        """Set a run's markdown notes."""
        from runlake.lake import mutations

        mutations.set_description(self, run_id, text)

    def delete_run(self, run_id: str, include_descendants: bool = True) -> list[str]:
        """Soft-delete a run and, by default, its whole subtree of nested runs.

        Deleted runs leave ACTIVE_ONLY searches, appear under DELETED_ONLY and are kept until
        retention purges them. Returns the ids of the runs that changed.

        Raises:
            RunNotFound: no such run.
        """
        from runlake.lake import mutations

        return mutations.set_lifecycle(self, [run_id], deleted=True, include_descendants=include_descendants)

    def restore_run(self, run_id: str, include_descendants: bool = True) -> list[str]:
        """Restore a soft-deleted run (and by default its descendants); returns the ids changed."""
        from runlake.lake import mutations

        return mutations.set_lifecycle(self, [run_id], deleted=False, include_descendants=include_descendants)

    def delete_runs(self, experiment_id: str, max_timestamp_millis: int, max_runs: int | None = None) -> int:
        """Bulk soft-delete, as the Databricks API: active runs created at or before a time.

        Oldest first, at most ``max_runs`` (default and limit 10,000). Returns how many.
        """
        from runlake.lake import lifecycle

        return lifecycle.delete_runs(self, experiment_id, max_timestamp_millis, max_runs)

    def restore_runs(self, experiment_id: str, min_timestamp_millis: int, max_runs: int | None = None) -> int:
        """Bulk restore: runs deleted at or after a time, oldest first. Returns how many."""
        from runlake.lake import lifecycle

        return lifecycle.restore_runs(self, experiment_id, min_timestamp_millis, max_runs)

    def delete_run_ids(self, run_ids: Sequence[str], include_descendants: bool = True) -> list[str]:
        """Soft-delete several runs at once (the dashboard's selection)."""
        from runlake.lake import mutations

        return mutations.set_lifecycle(self, list(run_ids), deleted=True, include_descendants=include_descendants)

    def restore_run_ids(self, run_ids: Sequence[str], include_descendants: bool = True) -> list[str]:
        """Restore several runs at once."""
        from runlake.lake import mutations

        return mutations.set_lifecycle(self, list(run_ids), deleted=False, include_descendants=include_descendants)


_RELIST_TRIES = 3


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


def _with_relisting(read: Callable[[], Any]) -> Any:
    """Run a scan of the metric files, listing them again if a listed file vanished.

    Compaction and retention write their output before they remove their inputs, so a fresh
    listing always holds every point. One retry is not always enough while compaction runs in
    a tight loop (the second listing can lose a race too), hence a few.
    """
    for attempt in range(_RELIST_TRIES):
        try:
            return read()
        except (FileNotFoundError, duckdb.IOException, duckdb.InvalidInputException) as exc:
            vanished = isinstance(exc, FileNotFoundError) or "No such file" in str(exc) or "not found" in str(exc).lower()
            if not vanished or attempt == _RELIST_TRIES - 1:
                raise
    raise AssertionError("unreachable")


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


def _record(row: pd.Series) -> dict[str, Any]:
    return {key: (None if _is_missing(value) else _plain(value)) for key, value in row.items()}


def _is_missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
