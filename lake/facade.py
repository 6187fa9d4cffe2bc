"""``Lake``: the one class the dashboard, the CLI and users' notebooks read and change a lake through.

Every public method is here; each refreshes the lake's state once (``@fresh``; ``metric_history``
reads its points from the files listed at the call and refreshes only to find a run) and delegates to
a small module through the lake's ``Connection``: catalog (experiments), records (one run),
history (metric points), frames (the wide search frame), search (filters, order, pages),
nesting (the nested-run tree) and changes (tags, names, deletion).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import duckdb
import pandas as pd

from runlake.core import layout
from runlake.core.damage import DamagedFile
from runlake.core.errors import InvalidArgument
from runlake.lake import catalog, changes, frames, history, nesting, records, search_index, series, state_cache
from runlake.lake.connection import Connection, fresh
from runlake.lake.records import RunRecord
from runlake.lake.search import results
from runlake.lake.search.results import DEFAULT_MAX_RESULTS, Page, Search
from runlake.lake.sql import q

__all__ = ["DamagedFile", "Lake", "Page", "RunRecord"]


class Lake:
    """A lake opened for reading, and for the changes the dashboard and tools make.

    Args:
        path: the lake root, a local path or a URI pyarrow understands.
        sql_access: what ``sql`` may do. ``"full"`` (the default) is DuckDB with all its
            power, for the lake's owner in their own shell or notebook. ``"views"`` is for code
            that passes other people's SQL through: one SELECT at a time over the views, with
            DuckDB's file access, ``COPY``, ``ATTACH`` and extensions switched off.
        cache: keep the folded state in a local DuckDB file between opens (True: under
            ``$RUNLAKE_CACHE_DIR`` or ``~/.cache/runlake``; or a directory). A later open applies
            only the files that changed since, and the state's resident memory stays bounded.
            A cache file not there yet starts from the state the lake's dashboard published,
            when there is one (``publish_state``). False: in memory. Default (None): in
            memory, or, when the lake has a published state, a private copy of it that this
            Lake alone reads and that is removed when it closes (at a million runs an open of
            5-7 s and 0.64 GB resident after a first page, instead of 40-58 s and 6.8 GB; what
            ``sql`` creates lasts for the Lake's life, as in memory). See ``runlake.lake.state_cache``.

    A part file that cannot be read is skipped with one ``DamagedFileWarning`` naming it and
    listed by ``damaged_files()``; every other run, experiment and point stays available.

    One DuckDB connection per ``Lake`` holds the current state, refreshed from the file listing
    at the start of each public call; each thread queries through its own cursor.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        sql_access: str = "full",
        cache: bool | str | os.PathLike[str] | None = None,
    ) -> None:
        self.fs, self.root = layout.resolve_lake(path)
        self.paths = layout.LakePaths(self.root)
        self.connection = Connection(self.fs, self.root, sql_access, cache)

    def __repr__(self) -> str:
        return f"Lake({self.root!r})"

    # -- state ---------------------------------------------------------------------------
    def refresh(self) -> bool:
        """Pick up files written since the last call; True when anything changed."""
        return self.connection.refresh()

    def publish_state(self) -> state_cache.PublishedState:
        """Copy this Lake's cached state into the lake (``<root>/_state/``), so a reader with no
        state of its own starts from it and reads only the files written since.

        ``runlake ui`` does this in the background for big lakes; ``runlake publish-state``
        from cron. Needs ``cache`` (a state in memory keeps no record of its files) and
        ``sql_access="full"``.

        Raises:
            InvalidArgument: the state is in memory, or ``sql_access`` is not ``"full"``.
        """
        return self.connection.publish_state()

    @property
    def fingerprint(self) -> tuple[int, ...]:
        """Changes whenever the lake's files change (after ``refresh``); a cache key."""
        return self.connection.fingerprint()

    @fresh
    def warm(self, sample: int = 200) -> None:
        """Read what a dashboard's first pages read, so the first user does not wait for it.

        A state reopened from the state cache loads its blocks and index nodes from the file as
        queries first touch them: at 100,000 runs the first page after a reopen took 150-280 ms
        and later pages 20-50 ms; 100 runs' frames read beforehand made the next first page as
        fast as the later ones. This reads the default first page of runs, every block of the
        search index's wide rows (from a state file only: a first page's 100 runs lie all over
        the file; at 1,000,000 runs this takes about 0.6 s and made the first page after a
        warmed reopen 51-53 ms instead of 69-73), and the frames of up to ``sample`` runs drawn
        at random (about 0.2-0.3 s at 100,000 runs). ``runlake ui`` calls it in the background
        after opening the lake. In memory it costs about one page.

        Raises:
            InvalidArgument: ``sample`` is not a whole number from 0 to 100,000.
        """
        if isinstance(sample, bool) or not isinstance(sample, int) or not 0 <= sample <= 100_000:
            raise InvalidArgument(f"sample must be a whole number of runs from 0 to 100,000, got {sample!r}")
        self.search_page(page_size=100)
        if self.connection.file_backed and self.connection.search_index() is not None:
            try:
                # One pass over every column: DuckDB keeps the blocks it read in its buffer pool.
                self.connection.rows(q(f"SELECT sum(hash(COLUMNS(*))) FROM {search_index.WIDE_TABLE}"))
            except duckdb.CatalogException:
                pass  # another thread's refresh is rebuilding the index: nothing to warm yet
        if sample:
            rows = self.connection.rows(q(f"SELECT run_id FROM runs USING SAMPLE reservoir({sample} ROWS)"))
            ids = [r[0] for r in rows]
            # In pages of the size that probes the indexes (a page's frame does), not one join.
            for start in range(0, len(ids), frames.INDEX_PROBE_LIMIT):
                frames.build_frame(self.connection, ids[start : start + frames.INDEX_PROBE_LIMIT])

    def damaged_files(self) -> list[DamagedFile]:
        """Part files skipped because they could not be read (as of the last refresh).

        ``runlake doctor --repair``, compaction and retention move them to ``<root>/_quarantine/``.
        """
        return self.connection.damaged_files()

    def sql(self, query: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
        """Run SQL over the documented views (runs, params, tags, metrics, latest_metrics, experiments).

        Warning: with ``sql_access="full"`` (the default) this is DuckDB with its full power,
        meant for the lake's owner: the query can read any file the process can
        (``read_csv('/etc/...')``), write files (``COPY ... TO``), ``ATTACH`` databases and
        ``INSTALL`` extensions. Never pass other people's SQL to it; open the lake with
        ``Lake(path, sql_access="views")`` for that.

        Args:
            query: a DuckDB SELECT over the views.
            params: values for ``?`` placeholders.

        Raises:
            InvalidArgument: the query does not parse or names something that does not exist.
        """
        return self.connection.user_sql(query, list(params or []))

    # -- experiments ---------------------------------------------------------------------
    @fresh
    def list_experiments(self, view_type: str = "ACTIVE_ONLY") -> pd.DataFrame:
        """Experiments with their run count and last run time, newest activity first.

        Columns: experiment_id, name, artifact_location, lifecycle_stage, creation_time,
        last_update_time, run_count (active runs), last_run_time (epoch ms or NaN).
        """
        return catalog.list_experiments(self.connection, view_type)

    @fresh
    def get_experiment(self, experiment_id: str) -> dict[str, Any]:
        """One experiment by id.

        Raises:
            ExperimentNotFound: no such experiment.
        """
        return catalog.get_experiment(self.connection, experiment_id)

    @fresh
    def get_experiment_by_name(self, name: str) -> dict[str, Any] | None:
        """The experiment with this name (an active one before a deleted one), or None."""
        return catalog.get_experiment_by_name(self.connection, name)

    @fresh
    def resolve_experiments(
        self, experiment_ids: Sequence[str] | None = None, experiment_names: Sequence[str] | None = None
    ) -> list[str] | None:
        """Experiment ids for the given ids and names; None means every experiment.

        Raises:
            ExperimentNotFound: an id or a name that does not exist.
        """
        return catalog.resolve_experiments(self.connection, experiment_ids, experiment_names)

    # -- runs ----------------------------------------------------------------------------
    @fresh
    def get_run(self, run_id: str) -> RunRecord:
        """Every attribute, param, latest metric (with min and max) and tag of a run.

        Raises:
            RunNotFound: no run has this id.
        """
        return records.get_run(self.connection, run_id)

    def metric_history(self, run_id: str, key: str) -> pd.DataFrame:
        """Every point of one metric of one run, ordered by step then timestamp.

        Read from the metric files as they are listed at the call: the state is refreshed
        only when it does not know the run yet (or the run has no such points).

        Returns:
            A DataFrame with columns step, timestamp, value (each point once).

        Raises:
            RunNotFound: no run has this id.
        """
        return history.metric_history(self.connection, run_id, key)

    @fresh
    def metric_series(
        self,
        run_ids: Sequence[str] | str,
        key: str,
        *,
        x: str = "step",
        buckets: int = 1000,
        x_min: float | None = None,
        x_max: float | None = None,
    ) -> pd.DataFrame:
        """One metric of some runs, cut into x buckets: what a chart of a given width needs.

        The range ``x_min <= x <= x_max`` (open-ended where None) is cut into ``buckets``
        equal-width buckets, the same edges for every run (the points' own extremes where a
        bound is None). Per run and non-empty bucket, one row: ``value`` is the bucket's last
        point (by x, then timestamp), ``x`` that point's x, ``min``/``max`` the extremes (NaN
        ignored unless every value is NaN; infinities kept) and ``count`` the points stored in
        it. A run with at most ``buckets`` points in the range gets its raw points instead,
        each once (count 1), so zooming in far enough shows the real data. Computed in DuckDB
        over the runs' Parquet files; no raw point reaches Python.

        Args:
            run_ids: the runs (one id or several); ids of no run give no rows.
            key: the metric.
            x: ``"step"``, ``"timestamp"`` (epoch ms) or ``"relative"`` (seconds since the
                run's first point of this metric).
            buckets: at most this many rows per run (1 to 100,000).
            x_min: the range's low end, in the units of ``x``.
            x_max: the range's high end, in the units of ``x``.

        Returns:
            A DataFrame with columns run_id, x, value, min, max, count, sorted by run_id then x.

        Raises:
            InvalidArgument: an unknown ``x``, ``buckets`` out of range, a bound that is not
                a finite number, or ``x_min > x_max``.
        """
        query = series.check(run_ids, key, x, buckets, x_min, x_max)
        return series.metric_series(self.connection, query)

    @fresh
    def metric_histories(
        self, run_ids: Sequence[str], keys: Sequence[str] | None = None, experiment_ids: Sequence[str] | None = None
    ) -> pd.DataFrame:
        """Metric points of several runs (columns run_id, key, step, timestamp, value).

        Reads only the partitions and row groups the runs and keys live in.
        """
        return history.metric_histories(self.connection, run_ids, keys, experiment_ids)

    @fresh
    def runs_frame(
        self, experiment_ids: Sequence[str] | None = None, run_view_type: str = "ACTIVE_ONLY"
    ) -> pd.DataFrame:
        """All runs of the given experiments as a DataFrame shaped like ``mlflow.search_runs``.

        Columns: run_id, experiment_id, status, artifact_uri, start_time, end_time (UTC
        datetimes), run_name, user_id, lifecycle_stage, ..., then ``metrics.<key>`` (latest
        value), ``params.<key>`` and ``tags.<key>``; newest run first.
        """
        ids = catalog.resolve_experiments(self.connection, experiment_ids)
        return frames.runs_frame(self.connection, ids, run_view_type)

    @fresh
    def frame_for(self, run_ids: Sequence[str], columns: Sequence[str] | None = None) -> pd.DataFrame:
        """The search frame of the given runs, in the given order (pivot of a known set).

        Args:
            run_ids: the runs, in output order.
            columns: only these ``metrics.*``/``params.*``/``tags.*`` columns (all when None).
        """
        return frames.build_frame(self.connection, list(run_ids), columns)

    # -- search --------------------------------------------------------------------------
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
        limit = DEFAULT_MAX_RESULTS if max_results is None else results.positive_int("max_results", max_results)
        search = Search(
            experiment_ids,
            experiment_names,
            filter_string,
            run_view_type,
            order_by,
            created_after,
            created_before,
            has_model,
        )
        frame, _run_ids, _total = results.search_frame(self.connection, search, limit, 0, count=False)
        return frame

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
        results.positive_int("page_size", page_size)
        start = results.page_offset(page_token, offset)
        search = Search(
            experiment_ids,
            experiment_names,
            filter_string,
            run_view_type,
            order_by,
            created_after,
            created_before,
            has_model,
        )
        frame, run_ids, total = results.search_frame(
            self.connection, search, page_size, start, count=True, columns=columns
        )
        next_offset = start + len(run_ids)
        token = results.encode_token(next_offset) if next_offset < total else None
        return Page(frame=frame, total=total, next_page_token=token, run_ids=run_ids)

    @fresh
    def search_run_ids(
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
    ) -> list[str]:
        """Ids of every run matching (same arguments as ``search_runs``), in order."""
        search = Search(
            experiment_ids,
            experiment_names,
            filter_string,
            run_view_type,
            order_by,
            created_after,
            created_before,
            has_model,
        )
        run_ids, _total = results.search_ids(
            self.connection, search, max_results or DEFAULT_MAX_RESULTS, 0, count=False
        )
        return run_ids

    # -- nested runs ---------------------------------------------------------------------
    @fresh
    def run_parents(self) -> list[str]:
        """Ids that some run names as its parent (deleted runs included), sorted."""
        return nesting.run_parents(self.connection)

    @fresh
    def children_of(self, parent_ids: Sequence[str]) -> list[str]:
        """The runs whose parent is one of ``parent_ids`` (one level down)."""
        return nesting.children_of(self.connection, parent_ids)

    @fresh
    def child_counts(self, run_ids: Sequence[str]) -> dict[str, int]:
        """Parent id -> how many of the given runs are its children."""
        return nesting.child_counts(self.connection, run_ids)

    @fresh
    def descendants(self, run_ids: Sequence[str]) -> list[str]:
        """Every run below the given runs in the nested-run tree, at any depth."""
        return nesting.descendants(self.connection, run_ids)

    # -- changes -------------------------------------------------------------------------
    @fresh
    def set_tag(self, run_id: str, key: str, value: str) -> None:
        """Add or replace a tag on a run.

        Raises:
            RunNotFound: no such run.
            InvalidArgument: an invalid key or a value over 8000 characters.
        """
        changes.set_tag(self.connection, run_id, key, value)

    @fresh
    def delete_tag(self, run_id: str, key: str) -> None:
        """Delete a tag from a run."""
        changes.delete_tag(self.connection, run_id, key)

    @fresh
    def rename_run(self, run_id: str, new_name: str) -> None:
        """Rename a run (non-empty, at most 250 characters, one line)."""
        changes.rename_run(self.connection, run_id, new_name)

    @fresh
    def set_description(self, run_id: str, text: str) -> None:
        """Set a run's markdown notes."""
        changes.set_description(self.connection, run_id, text)

    @fresh
    def delete_run(self, run_id: str, include_descendants: bool = True) -> list[str]:
        """Soft-delete a run and, by default, its whole subtree of nested runs.

        Deleted runs leave ACTIVE_ONLY searches, appear under DELETED_ONLY and are kept until
        retention purges them. Returns the ids of the runs that changed.

        Raises:
            RunNotFound: no such run.
        """
        return changes.set_lifecycle(self.connection, [run_id], deleted=True, include_descendants=include_descendants)

    @fresh
    def restore_run(self, run_id: str, include_descendants: bool = True) -> list[str]:
        """Restore a soft-deleted run (and by default its descendants); returns the ids changed."""
        return changes.set_lifecycle(self.connection, [run_id], deleted=False, include_descendants=include_descendants)

    @fresh
    def delete_run_ids(self, run_ids: Sequence[str], include_descendants: bool = True) -> list[str]:
        """Soft-delete several runs at once (the dashboard's selection)."""
        return changes.set_lifecycle(
            self.connection, list(run_ids), deleted=True, include_descendants=include_descendants
        )

    @fresh
    def restore_run_ids(self, run_ids: Sequence[str], include_descendants: bool = True) -> list[str]:
        """Restore several runs at once."""
        return changes.set_lifecycle(
            self.connection, list(run_ids), deleted=False, include_descendants=include_descendants
        )

    @fresh
    def delete_runs(self, experiment_id: str, max_timestamp_millis: int, max_runs: int | None = None) -> int:
        """Bulk soft-delete, as the Databricks API: active runs created at or before a time.

        Oldest first, at most ``max_runs`` (default and limit 10,000). Nested runs are not
        followed. Returns how many runs were deleted.

        Raises:
            ExperimentNotFound: no such experiment.
            InvalidArgument: a timestamp that is not an integer, or a bad ``max_runs``.
        """
        return changes.apply_bulk(self.connection, "delete", experiment_id, max_timestamp_millis, max_runs)

    @fresh
    def restore_runs(self, experiment_id: str, min_timestamp_millis: int, max_runs: int | None = None) -> int:
        """Bulk restore: runs deleted at or after a time, oldest first. Returns how many."""
        return changes.apply_bulk(self.connection, "restore", experiment_id, min_timestamp_millis, max_runs)

    @fresh
    def plan_delete_runs(self, experiment_id: str, max_timestamp_millis: int, max_runs: int | None = None) -> list[str]:
        """The runs ``delete_runs`` would delete, in the order it would (a dry run)."""
        return changes.plan_bulk(self.connection, "delete", experiment_id, max_timestamp_millis, max_runs)

    @fresh
    def plan_restore_runs(
        self, experiment_id: str, min_timestamp_millis: int, max_runs: int | None = None
    ) -> list[str]:
        """The runs ``restore_runs`` would restore, in the order it would (a dry run)."""
        return changes.plan_bulk(self.connection, "restore", experiment_id, min_timestamp_millis, max_runs)
