"""``Services``: the lake, a result cache keyed by the lake's fingerprint, and the lookups pages share."""

from __future__ import annotations

import errno
import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import pandas as pd
from flask_caching import Cache

from runlake.app.settings import Settings
from runlake.core import vocab
from runlake.core.errors import RunlakeError, RunNotFound

if TYPE_CHECKING:
    from flask import Flask

    from runlake.lake import Lake, Page, RunRecord

T = TypeVar("T")

MODEL_HISTORY_TAG = vocab.MODEL_HISTORY_TAG
# How many runs a compare page or a "compare all matching" selection takes at most.
MAX_COMPARE = 500
# "All matching runs" actions (delete, restore, CSV) act on at most this many.
MAX_SELECTION = 100_000


class LakeReadOnly(RunlakeError):
    """A change the dashboard refused or could not write: the lake (or the dashboard) is read-only."""


READ_ONLY_MESSAGE = "The lake is read-only: nothing was changed."
READ_ONLY_UI_MESSAGE = "This dashboard was started read-only (runlake ui --read-only): nothing was changed."


class Services:
    """What callbacks need: the ``Lake``, a cache and cached lookups.

    Cached results are keyed by the query and ``lake.fingerprint`` taken after
    ``lake.refresh()``, so any write (a training job, compaction, purge, or a change made in
    the UI) makes new keys and old results are simply never read again.
    """

    def __init__(self, lake: Lake, settings: Settings | None = None, cache_timeout: int = 300) -> None:
        self.lake = lake
        self.settings = settings or Settings(lake=str(lake.root))
        self.cache = Cache(
            config={"CACHE_TYPE": "SimpleCache", "CACHE_DEFAULT_TIMEOUT": cache_timeout, "CACHE_THRESHOLD": 2000}
        )

    def init_app(self, server: Flask) -> None:
        self.cache.init_app(server)

    # -- caching -------------------------------------------------------------------------
    def fingerprint(self) -> str:
        self.lake.refresh()
        return ",".join(str(part) for part in self.lake.fingerprint)

    def cached(self, name: str, key: Any, compute: Callable[[], T]) -> T:
        """``compute()`` once per (name, key, lake fingerprint)."""
        cache_key = f"runlake:{name}:{json.dumps(key, sort_keys=True, default=str)}:{self.fingerprint()}"
        hit: T | None = self.cache.get(cache_key)
        if hit is not None:
            return hit
        value = compute()
        self.cache.set(cache_key, value)
        return value

    # -- changes -------------------------------------------------------------------------
    @property
    def read_only(self) -> bool:
        return bool(self.settings.read_only)

    def change(self, action: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run one of the lake's change methods for a callback; every refusal is a ``RunlakeError``.

        Raises:
            LakeReadOnly: the dashboard runs ``--read-only`` (refused on the server, whatever
                the browser sends), or the lake's files may not be written (a read-only mount,
                permissions); the callback shows the message where the action was taken.
            RunlakeError: what the change itself raises (unknown run, invalid tag...), or a
                write that failed for another reason (disk full), with its cause.
        """
        if self.read_only:
            raise LakeReadOnly(READ_ONLY_UI_MESSAGE)
        try:
            return action(*args, **kwargs)
        except PermissionError as exc:
            raise LakeReadOnly(READ_ONLY_MESSAGE, cause=str(exc)) from exc
        except OSError as exc:
            if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise LakeReadOnly(READ_ONLY_MESSAGE, cause=str(exc)) from exc
            raise RunlakeError(f"Could not write to the lake: {exc}", cause=str(exc)) from exc

    # -- lookups -------------------------------------------------------------------------
    def experiments(self) -> pd.DataFrame:
        return self.cached("experiments", None, self.lake.list_experiments)

    def experiment_names(self) -> dict[str, str]:
        frame = self.experiments()
        return dict(zip(frame["experiment_id"].astype(str), frame["name"].astype(str)))

    def search_page(self, **kwargs: Any) -> Page:
        return self.cached("page", kwargs, lambda: self.lake.search_page(**kwargs))

    def search_run_ids(self, **kwargs: Any) -> list[str]:
        kwargs.setdefault("max_results", MAX_SELECTION)
        return self.cached("ids", kwargs, lambda: self.lake.search_run_ids(**kwargs))

    # -- nesting (the runs grid's tree) --------------------------------------------------
    def run_parents(self) -> list[str]:
        """Every run id some run names as its parent, sorted."""
        return self.cached("run_parents", None, self.lake.run_parents)

    def children_of(self, parent_ids: Sequence[str]) -> list[str]:
        """Ids of the runs whose parent is one of ``parent_ids`` (any lifecycle stage)."""
        ids = sorted(parent_ids)
        return self.cached("children_of", ids, lambda: self.lake.children_of(ids))

    def child_counts(self, run_ids: Sequence[str]) -> dict[str, int]:
        """Parent id -> how many of ``run_ids`` have it as their parent."""
        ids = sorted(run_ids)
        return self.cached("child_counts", ids, lambda: self.lake.child_counts(ids))

    def column_info(self, search_kwargs: dict[str, Any]) -> tuple[list[str], list[str]]:
        """(available, default) entity columns for a view, from a sample of its first page.

        A sample keeps this fast on 100,000 runs: the picker offers the keys the matching runs
        actually have, and the defaults are every metric plus the params that vary.
        """
        from runlake.app.web.grid import available_columns, default_columns

        search_kwargs = {k: v for k, v in search_kwargs.items() if k != "order_by"}

        def compute() -> tuple[list[str], list[str]]:
            kwargs = {**search_kwargs, "page_size": 200, "page_token": None, "columns": None}
            frame = self.lake.search_page(**kwargs).frame
            return available_columns(frame), default_columns(frame)

        return self.cached("columns", search_kwargs, compute)

    def get_run(self, run_id: str) -> RunRecord | None:
        """The run's record, or None when no run has this id."""

        def load() -> RunRecord | bool:
            try:
                return self.lake.get_run(run_id)
            except RunNotFound:
                return False  # cached as "missing"; None would mean "not cached"

        record = self.cached("run", run_id, load)
        return None if isinstance(record, bool) else record

    def frame_for(self, run_ids: Sequence[str], columns: Sequence[str] | None = None) -> pd.DataFrame:
        return self.cached(
            "frame",
            [list(run_ids), list(columns) if columns is not None else None],
            lambda: self.lake.frame_for(list(run_ids), columns),
        )

    def histories(self, run_ids: Sequence[str], keys: Sequence[str] | None = None) -> pd.DataFrame:
        return self.cached(
            "histories",
            [sorted(run_ids), sorted(keys) if keys is not None else None],
            lambda: self.lake.metric_histories(list(run_ids), list(keys) if keys is not None else None),
        )

    def series(
        self,
        run_ids: Sequence[str],
        key: str,
        x: str = "step",
        buckets: int = 1000,
        x_min: float | None = None,
        x_max: float | None = None,
    ) -> pd.DataFrame:
        """``Lake.metric_series``, cached per query and lake state."""
        return self.cached(
            "series",
            [list(run_ids), key, x, buckets, x_min, x_max],
            lambda: self.lake.metric_series(list(run_ids), key, x=x, buckets=buckets, x_min=x_min, x_max=x_max),
        )

    def children(self, run_id: str) -> list[str]:
        return self.search_run_ids(filter_string=f"parent_run_id = {quote(run_id)}", run_view_type="ALL")

    def names_of(self, run_ids: Sequence[str]) -> dict[str, str]:
        if not run_ids:
            return {}
        frame = self.frame_for(list(run_ids), columns=[])
        return {row.run_id: (row.run_name or row.run_id[:8]) for row in frame.itertuples()}

    def has_model(self, record: RunRecord) -> bool:
        return MODEL_HISTORY_TAG in record.tags

    def model_names(self, record: RunRecord) -> list[str]:
        """Artifact paths of the models a run logged (from the model history tag)."""
        try:
            history = json.loads(record.tags.get(MODEL_HISTORY_TAG, "[]"))
        except ValueError:
            return []
        names = []
        for entry in history if isinstance(history, list) else []:
            path = entry.get("artifact_path") if isinstance(entry, dict) else None
            if isinstance(path, str) and path not in names:
                names.append(path)
        return names


def quote(value: str) -> str:
    """A search-syntax string literal for ``value`` (the grammar has no escapes: pick a quote).

    Raises:
        ValueError: the value holds both quote characters.
    """
    for mark in ("'", '"'):
        if mark not in value:
            return f"{mark}{value}{mark}"
    raise ValueError("a value holding both ' and \" cannot be written as a search literal")
