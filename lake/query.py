"""``Lake``: the read API that the dashboard, the CLI and users' notebooks call."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import pandas as pd
import pyarrow.dataset as ds

from runlake.core import layout, writer
from runlake.lake import snapshot, views
from runlake.core.errors import ExperimentNotFound, InvalidArgument, RunNotFound
from runlake.lake.fresh import fresh
from runlake.lake.mutations import MutationMixin
from runlake.lake.searching import VIEW_TYPES, Page, SearchMixin, _stage_condition

__all__ = ["FRAME_COLUMNS", "Lake", "Page", "RunRecord", "VIEW_TYPES"]

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


class Lake(SearchMixin, MutationMixin):
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
    @fresh
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

    @fresh
    def get_experiment(self, experiment_id: str) -> dict[str, Any]:
        """One experiment by id.

        Raises:
            ExperimentNotFound: no such experiment.
        """
        rows = self._query("SELECT * FROM experiments WHERE experiment_id = ?", [str(experiment_id)])
        if rows.empty:
            raise ExperimentNotFound(str(experiment_id))
        return _record(rows.iloc[0])

    @fresh
    def get_experiment_by_name(self, name: str) -> dict[str, Any] | None:
        """The experiment with this name (an active one before a deleted one), or None."""
        rows = self._query(
            "SELECT * FROM experiments WHERE name = ? ORDER BY lifecycle_stage = 'active' DESC, experiment_id",
            [name],
        )
        return None if rows.empty else _record(rows.iloc[0])

    @fresh
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
    @fresh
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

    @fresh
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

    @fresh
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

    @fresh
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

    @fresh
    def frame_for(self, run_ids: Sequence[str], columns: Sequence[str] | None = None) -> pd.DataFrame:
        """The search frame of the given runs, in the given order (pivot of a known set).

        Args:
            run_ids: the runs, in output order.
            columns: only these ``metrics.*``/``params.*``/``tags.*`` columns (all when None).
        """
        from runlake.lake.frames import build_frame

        return build_frame(self, list(run_ids), columns)

    # -- search --------------------------------------------------------------------------


def _with_relisting(read: Callable[[], Any]) -> Any:
    """``writer.with_relisting`` for scans through DuckDB, which reports a vanished file as
    an I/O or invalid-input error naming it rather than as a ``FileNotFoundError``."""

    def vanished(exc: BaseException) -> bool:
        if isinstance(exc, FileNotFoundError):
            return True
        text = str(exc)
        return isinstance(exc, (duckdb.IOException, duckdb.InvalidInputException)) and (
            "No such file" in text or "not found" in text.lower()
        )

    return writer.with_relisting(read, vanished)


def _record(row: pd.Series) -> dict[str, Any]:
    return {key: (None if _is_missing(value) else _plain(value)) for key, value in row.items()}


def _is_missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
