"""``Connection``: one lake's DuckDB state, queried through fragments, one refresh per call.

Every module behind the ``Lake`` facade reads through this small typed object: ``frame`` and
``rows`` run a ``Fragment`` (text plus bound values), ``fresh()`` makes a public call refresh
the state once at its start (however many queries it then runs), and ``scan`` reads the metric
points lazily from Parquet. Each thread queries through its own cursor of the one connection.
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing.util
import os
import threading
import time
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from runlake.core import batch, layout, writer
from runlake.core.damage import DamagedFile
from runlake.core.errors import InvalidArgument, RunNotFound
from runlake.lake import snapshot, state_cache, views
from runlake.lake.file_series import FileSeries
from runlake.lake.search_index import SearchIndex
from runlake.lake.sql import Fragment

T = TypeVar("T")
P = ParamSpec("P")

# DuckDB errors that mean "this SQL is wrong", as opposed to an I/O failure.
SQL_ERRORS = (
    duckdb.ParserException,
    duckdb.CatalogException,
    duckdb.BinderException,
    duckdb.InvalidInputException,
    duckdb.ConversionException,
)


# How much of DuckDB a user's SQL may use (``Lake(..., sql_access=...)``).
SQL_ACCESS = ("full", "views")

# Each thread keeps the parsed form of the last queries it ran (``Connection._statement``).
# The lake's queries are a few fixed texts with bound values; parsing one again cost about
# 1 ms of a 5 ms one-run lookup. Ids are bound, never in the text, so few texts repeat.
STATEMENTS_KEPT = 256
# Runs whose partition a Connection keeps (``run_partition``); all dropped when full.
PARTITIONS_KEPT = 100_000
# ``execute(...).to_arrow_table()`` copies the result once more than a relation would; for a
# page that copy is far cheaper than the relation's own binding pass (one-run lookup 5.1 ->
# 3.5 ms; all 8,143 runs of a status search the same either way). DuckDB warns of the copy
# on every call, so that one message is silenced.
warnings.filterwarnings("ignore", message="Arrow output on a DB-API result makes an extra copy", category=UserWarning)

# An in-memory open that takes longer than this ends with a ``StateCacheHint`` (a 1,000,000-run
# lake takes 45-55 s and 6-7 GB in memory here; a reopened state cache 0.06 s and under 1 GB).
SLOW_OPEN_S = 15.0


class StateCacheHint(UserWarning):
    """A ``Lake`` read in memory took long to open: ``cache=True`` would let the next open of
    the lake apply only what changed since. Filter it out with ``warnings.filterwarnings``."""


class Connection:
    """The current state of one lake in one in-memory DuckDB database.

    Args:
        fs: the lake's filesystem.
        root: the lake root in ``fs`` syntax.
        sql_access: ``"full"`` (user SQL is DuckDB with every power: it can read and write any
            file the process can, attach databases, install extensions) or ``"views"`` (user
            SQL is one SELECT over the views; DuckDB's file system, extensions and settings
            are locked off).
    """

    def __init__(
        self,
        fs: pafs.FileSystem,
        root: str,
        sql_access: str = "full",
        cache: bool | str | os.PathLike[str] | None = False,
    ) -> None:
        if sql_access not in SQL_ACCESS:
            raise InvalidArgument(
                f"sql_access must be one of {', '.join(map(repr, SQL_ACCESS))}, not {sql_access!r}",
                sql_access=sql_access,
            )
        self.fs = fs
        self.root = root
        self.paths = layout.LakePaths(root)
        self.sql_access = sql_access
        self._con, self._cache_key, self.private = state_cache.connect(fs, root, cache)
        # ``cached``: the state is a cache file kept between opens; ``private``: a copy of the
        # lake's published state this Lake alone reads, removed when it closes. Either is a
        # DuckDB file that records the part files it holds (``file_backed``).
        self.cached = self._cache_key is not None and not self.private
        self._cache_asked = cache not in (None, False)
        self._finalizer = weakref.finalize(
            self, state_cache.release, self._con, self._cache_key, self.private, os.getpid()
        )
        if self.private:
            # A worker that multiprocessing starts ends with os._exit, past the interpreter's exit
            # hooks and so past the finalizer above, but after multiprocessing's own (a copy per
            # worker would be left otherwise). Releasing twice is harmless.
            multiprocessing.util.Finalize(
                self, state_cache.release, (self._con, self._cache_key, True, os.getpid()), exitpriority=0
            )
        try:
            self._start(cache)
        except BaseException:
            # An open that fails, or is interrupted, lets go of its state file at once: the
            # traceback can keep this object alive long after (an interactive session keeps the
            # last one), and a private copy is as big as the lake's state.
            self._finalizer()
            raise

    def _start(self, cache: bool | str | os.PathLike[str] | None) -> None:
        """The rest of ``__init__``: the snapshot and the first refresh, leaving the cache file
        for memory when it is the file's failure."""
        if self.sql_access == "views":
            # The lake's own state is read with pyarrow and registered as Arrow objects, so
            # DuckDB needs no file access of its own; locked, so no SQL can switch it back on.
            self._con.execute("SET enable_external_access = false")
            self._con.execute("SET lock_configuration = true")
        try:
            self._snapshot = snapshot.Snapshot(self._con, self.fs, self.root, persistent=self.file_backed)
        except Exception as exc:
            if not self._cache_failed(exc):
                raise
            # A cache file that opens but cannot be read (truncated, damaged blocks), or a copy
            # of a published state that fails in any way.
            self._leave_cache(exc, keep_file=False)
        self._files_con: duckdb.DuckDBPyConnection | None = None
        self._files_lock = threading.Lock()
        # Metric files' points of the series read before (keyed by file version, so they
        # outlive any change of the state).
        self.file_series = FileSeries()
        # The partition of each run ``run_partition`` found (never changes while the run exists).
        self._partitions: dict[str, str] = {}
        self._local = threading.local()
        started = time.perf_counter()
        try:
            self.refresh()
        except Exception as exc:
            if not self._cache_failed(exc):
                raise
            # The cache file cannot be written (read-only directory, full disk), or the process
            # is short of memory: kept for a later open. Otherwise it cannot be read (damaged
            # blocks), or a copy of a published state fails in any way: it goes.
            passing = (duckdb.IOException, duckdb.TransactionException, duckdb.OutOfMemoryException)
            self._leave_cache(exc, keep_file=isinstance(exc, passing))
            self.refresh()
        if self._cache_key is not None:
            state_cache.settled(Path(self._cache_key))
        elapsed = time.perf_counter() - started
        if cache in (False, None) and not self.file_backed and elapsed > SLOW_OPEN_S:
            # Only when the caller chose memory: a cache asked for but held by another
            # process also reads in memory, and the hint would tell it what it did already.
            warnings.warn(
                StateCacheHint(
                    f"runlake: reading the lake {self.root} into memory took {elapsed:.0f} s. "
                    "Lake(path, cache=True) keeps its state in a local DuckDB file instead: the next "
                    "open applies only the files that changed (well under a second at a million "
                    "runs) and memory stays bounded. RUNLAKE_STATE_CACHE=1 does it for the CLI."
                    + (
                        " This lake has a published state (runlake ui publishes one): Lake(path) and a "
                        "first cached open start from it."
                        if state_cache.has_published(self.fs, self.root)
                        else ""
                    )
                ),
                stacklevel=4,  # the caller of Lake(...)
            )

    @property
    def file_backed(self) -> bool:
        """Whether the state is a DuckDB file (a cache, or a private copy), not memory."""
        return self._cache_key is not None

    @property
    def closed(self) -> bool:
        """Whether the state's DuckDB connection was closed (the Lake collected, or the
        interpreter exiting: its finalizer runs before exit hooks registered earlier)."""
        return not self._finalizer.alive

    def _cache_failed(self, exc: Exception) -> bool:
        """Whether ``exc``, raised while opening, is the cache file's failure: any DuckDB error
        of a cached state, and any error at all of a copy of a published state not used yet
        (other errors are this code's, and are not hidden). Never an interrupt (Ctrl-C during
        a query: the user stopping the open, not a fault of the file) nor an error of the lake's
        own filesystem (a listing that failed on an object store): those are raised."""
        key = self._cache_key
        if key is None or state_cache.interrupted(exc):
            return False
        if isinstance(exc, OSError) and not isinstance(exc, duckdb.Error):
            return False
        return isinstance(exc, duckdb.Error) or state_cache.adopted(Path(key))

    def _leave_cache(self, exc: Exception, *, keep_file: bool) -> None:
        """Read the lake in memory after the cache file failed with ``exc``: a cache, never the
        truth. The file goes unless ``keep_file`` (a private copy goes anyway), and a copy of a
        published state that failed its first use is not taken again (``state_cache.reject``)."""
        state_cache.log.info(
            "runlake: state cache %s not usable (%s); reading the lake in memory", self._cache_key, exc
        )
        failed = Path(self._cache_key) if self._cache_key is not None else None
        if failed is not None and not keep_file:
            state_cache.reject(failed)  # before the release, which forgets a private copy's origin
        self._in_memory()  # a private copy goes with it
        if failed is not None and not keep_file:
            state_cache.discard(failed)

    def _in_memory(self) -> None:
        """Leave the cached state for a fresh in-memory one."""
        self._finalizer.detach()
        state_cache.release(self._con, self._cache_key, self.private)
        self._con, self.cached, self.private, self._cache_key = state_cache.new_connection(), False, False, None
        self._finalizer = weakref.finalize(self, state_cache.release, self._con, None, False, os.getpid())
        if self.sql_access == "views":
            self._con.execute("SET enable_external_access = false")
            self._con.execute("SET lock_configuration = true")
        self._snapshot = snapshot.Snapshot(self._con, self.fs, self.root)
        self._local = threading.local()
        self._files_con = None

    # -- state ---------------------------------------------------------------------------
    def refresh(self) -> bool:
        """Pick up files written since the last refresh; True when anything changed.

        Rows this process's writers still buffer for the lake are flushed first, so a program
        that logs and then reads sees what it logged.
        """
        batch.before_read(self.root)
        return self._snapshot.refresh()

    def publish_state(self) -> state_cache.PublishedState:
        """Refresh, then copy the cached state into the lake for fresh readers to start from
        (``state_cache.publish``).

        Raises:
            InvalidArgument: the state is in memory (it keeps no listings to start from), or
                ``sql_access`` is not ``"full"`` (the copy is attached through SQL).
        """
        if self._cache_asked and not self.cached:
            raise InvalidArgument(
                "the state cache of this lake is held by another process (runlake ui or runlake server, "
                "which publish it themselves when it is due), or could not be opened: only the process "
                "holding it can publish it"
            )
        if not self.cached or self._cache_key is None:
            raise InvalidArgument("only a cached state can be published: open the lake with Lake(path, cache=True)")
        if self.sql_access != "full":
            raise InvalidArgument('publishing needs sql_access="full"', sql_access=self.sql_access)
        self.refresh()
        directory = Path(self._cache_key).parent
        return state_cache.publish(self._con, self._snapshot.begin_pinned, self.fs, self.root, directory)

    @property
    def generation(self) -> int:
        """Grows whenever a refresh changed the state (a key for what was computed from it)."""
        return self._snapshot.generation

    def remembered_count(self, key: Hashable) -> int | None:
        """A count kept by ``remember_count`` for ``key`` while the state has not changed."""
        return self._snapshot.remembered_count(key)

    def remember_count(self, key: Hashable, generation: int, count: int) -> None:
        """Keep a count made from the state at ``generation`` (dropped as soon as it changes)."""
        self._snapshot.remember_count(key, generation, count)

    def run_partition(self, run_id: str, *, refresh: bool = False) -> tuple[str, bool]:
        """The experiment (partition) a run's rows live in, and whether the state was refreshed
        to find it.

        The state is refreshed only when it does not know the run (or when ``refresh``): a run's
        partition never changes, so a reader of its files (a metric history) need not fold
        everything else the lake gained since the last refresh. Inside a ``fresh`` call the
        caller's state stands. This process's buffered rows are flushed first, as by ``refresh``.

        Raises:
            RunNotFound: no run has this id.
        """
        settled = getattr(self._local, "depth", 0) > 0  # inside a fresh(): that state it is
        if refresh and not settled:
            self.refresh()
            settled = True
        else:
            batch.before_read(self.root)
            # Found before: a query of the state costs 0.5-0.7 ms, half of a polled 500-point
            # history. Asked with ``refresh`` (the run's files held none of its points: purged?),
            # the state answers again.
            known = self._partitions.get(run_id)
            if known is not None and not refresh:
                return known, False
        query = "SELECT experiment_id FROM runs WHERE run_id = ?"
        rows = self.cursor().execute(query, [run_id]).fetchall()
        if not rows and not settled:
            self.refresh()
            settled = True
            rows = self.cursor().execute(query, [run_id]).fetchall()
        if not rows:
            self._partitions.pop(run_id, None)
            raise RunNotFound(run_id)
        if len(self._partitions) >= PARTITIONS_KEPT:
            self._partitions.clear()
        self._partitions[run_id] = rows[0][0]
        return rows[0][0], settled

    def search_index(self) -> SearchIndex | None:
        """The state's search index (one wide row per run), or None while it has none."""
        return self._snapshot.index

    def fingerprint(self) -> tuple[int, ...]:
        """Changes whenever the lake's files change (after ``refresh``); a cache key."""
        return self._snapshot.fingerprint()

    @contextlib.contextmanager
    def fresh(self) -> Iterator[None]:
        """Refresh once for the outermost call of this thread; inner calls read the same state."""
        depth = getattr(self._local, "depth", 0)
        if not depth:
            self.refresh()
        self._local.depth = depth + 1
        try:
            yield
        finally:
            self._local.depth = depth

    def file_cursor(self) -> duckdb.DuckDBPyConnection:
        """This thread's cursor of a DuckDB that reads the lake's Parquet files itself (DuckDB's
        reader prunes and decodes in parallel).

        With ``sql_access="views"`` or a state cache it is a second, empty in-memory DuckDB: it
        holds no state and is never handed user SQL, so ``"views"`` can lock the state's
        connection off the file system while metric scans keep the fast reader, and big scans
        are not held to the cache's memory limit. Otherwise it is the state's own in-memory
        database: a new DuckDB costs 14-25 ms to start, most of a fresh process's first
        ``metric_history``. There user SQL can change the settings these reads use (``SET
        threads``, ``SET enable_external_access``); a history whose DuckDB read fails on them
        falls back to a pyarrow scan, slower but the same points."""
        cursor = getattr(self._local, "file_cursor", None)
        if cursor is None:
            with self._files_lock:
                if self._files_con is None:
                    shared = self.sql_access == "full" and not self.file_backed
                    self._files_con = self._con if shared else state_cache.new_connection()
                cursor = self._files_con.cursor()
            # Part files are immutable under unique names, so a footer read once stays true:
            # kept, a live run's history no longer reads every file's footer again (about a
            # third of a 100,000-point history over 6 files). Set through this thread's own
            # cursor: the state's connection may be inside another thread's refresh.
            cursor.execute("SET parquet_metadata_cache = true")
            self._local.file_cursor = cursor
        return cursor

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """This thread's cursor (DuckDB connections are not shared across threads)."""
        cursor = getattr(self._local, "cursor", None)
        if cursor is None:
            cursor = self._local.cursor = self._con.cursor()
        return cursor

    # -- queries -------------------------------------------------------------------------
    def _ensure_fresh(self) -> None:
        if not getattr(self._local, "depth", 0):
            self.refresh()

    def _statement(self, sql: str) -> duckdb.Statement | str:
        """The parsed statement of ``sql``, kept per thread (``STATEMENTS_KEPT``); the text
        itself when it is not exactly one statement (DuckDB then reports what is wrong)."""
        kept: OrderedDict[str, duckdb.Statement] | None = getattr(self._local, "statements", None)
        if kept is None:
            kept = self._local.statements = OrderedDict()
        statement = kept.get(sql)
        if statement is not None:
            kept.move_to_end(sql)
            return statement
        try:
            parsed = self.cursor().extract_statements(sql)
        except duckdb.Error:
            return sql
        if len(parsed) != 1:
            return sql
        kept[sql] = parsed[0]
        if len(kept) > STATEMENTS_KEPT:
            kept.popitem(last=False)
        return parsed[0]

    def _execute(self, query: Fragment) -> duckdb.DuckDBPyConnection:
        return self.cursor().execute(self._statement(query.sql), list(query.params))

    def frame(self, query: Fragment) -> pd.DataFrame:
        """The query's result as a DataFrame."""
        self._ensure_fresh()
        return self._execute(query).df()

    def rows(self, query: Fragment) -> list[tuple[Any, ...]]:
        """The query's result as tuples."""
        self._ensure_fresh()
        return self._execute(query).fetchall()

    def arrow(self, query: Fragment, tables: dict[str, pa.Table] | None = None) -> pa.Table:
        """The query's result as an Arrow table, with ``tables`` registered under their names
        for its duration (DuckDB's dynamic PIVOT takes no bound values, but reads a registered
        table)."""
        self._ensure_fresh()
        cursor = self.cursor()
        for name, table in (tables or {}).items():
            cursor.register(name, table)
        try:
            return self._execute(query).to_arrow_table()
        finally:
            for name in tables or {}:
                cursor.unregister(name)

    def over(self, name: str, table: pa.Table, query: Fragment) -> pd.DataFrame:
        """Run ``query`` with ``table`` registered under ``name`` for its duration."""
        cursor = self.cursor()
        cursor.register(name, table)
        try:
            return self._execute(query).df()
        finally:
            cursor.unregister(name)

    def user_sql(self, query: str, params: list[Any]) -> pd.DataFrame:
        """A user's SQL over the documented views, the metric points included.

        Raises:
            InvalidArgument: the query does not parse or names something that does not exist.
        """
        self.refresh()
        cursor = self.cursor()
        if self.sql_access == "views":
            self._check_select_only(cursor, query)

        if self.cached:
            # A cached state outlives this process: whatever the query changes in it (DELETE
            # FROM runs, by mistake) would show in every later open. It runs in a transaction
            # that is always rolled back.
            try:
                statements = cursor.extract_statements(query)
            except SQL_ERRORS as exc:
                raise InvalidArgument(f"SQL error: {exc}", query=query) from None
            if any(s.type == duckdb.StatementType.TRANSACTION for s in statements):
                raise InvalidArgument("Not allowed: transaction statements over a cached lake state", query=query)

        def run() -> pd.DataFrame:
            # The full metric history is never materialised: a lazily scanned dataset lets
            # DuckDB push run and key filters down to Parquet row groups. Registered on each
            # try, so a retry after a vanished file sees a fresh listing.
            cursor.register("raw_metrics", self._snapshot.metrics_dataset())
            cursor.execute(f"CREATE OR REPLACE TEMP VIEW metrics AS {views.METRICS_SQL}")
            if not self.cached:
                return cursor.execute(query, params).df()
            cursor.execute("BEGIN")
            try:
                return cursor.execute(query, params).df()
            finally:
                cursor.execute("ROLLBACK")

        try:
            try:
                return with_relisting(run)
            except (duckdb.InvalidInputException, duckdb.IOException, OSError) as exc:
                # A metric file whose pages do not decode fails the whole query; find it, leave
                # it out (one warning), and answer from the rest. Anything else is the query's.
                if "parquet" not in str(exc).lower() and "thrift" not in str(exc).lower():
                    raise
                if not self._snapshot.probe_metrics():
                    raise
                return with_relisting(run)
        except SQL_ERRORS as exc:
            raise InvalidArgument(f"SQL error: {exc}", query=query) from None
        except duckdb.PermissionException as exc:
            raise InvalidArgument(
                f"Not allowed: this lake was opened with sql_access='views' ({exc})", query=query
            ) from None

    @staticmethod
    def _check_select_only(cursor: duckdb.DuckDBPyConnection, query: str) -> None:
        """With ``sql_access="views"``: one read-only statement, so other people's SQL cannot
        change or drop the state other callers of this lake read."""
        try:
            statements = cursor.extract_statements(query)
        except SQL_ERRORS as exc:
            raise InvalidArgument(f"SQL error: {exc}", query=query) from None
        allowed = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}
        if len(statements) != 1 or statements[0].type not in allowed:
            raise InvalidArgument(
                "Not allowed: this lake was opened with sql_access='views', which runs one SELECT at a time",
                query=query,
            )

    # -- metric points -------------------------------------------------------------------
    def metrics_dataset(self) -> ds.Dataset:
        """The metric part files as a lazily scanned dataset (its ``files`` are the listing)."""
        return self._snapshot.metrics_dataset()

    def metric_files(self) -> list[tuple[str, int]]:
        """The metric part files (path, size) listed now, less damaged ones, without reading
        their footers."""
        return self._snapshot.metric_files()

    def row_group_statistics(self, path: str) -> list[snapshot.GroupStatistics] | None:
        """A metric file's row-group statistics (run_id, key, step, timestamp), read once per file."""
        return self._snapshot.row_group_statistics(path)

    def scan_metrics(self, columns: list[str], condition: ds.Expression) -> pa.Table:
        """Metric points matching ``condition``, read from the Parquet files with pushdown."""
        return with_relisting(lambda: self._snapshot.scan_metrics(columns, condition))

    # -- damaged files -------------------------------------------------------------------
    def damaged_files(self) -> list[DamagedFile]:
        """Part files skipped because they could not be read (see ``runlake.core.damage``)."""
        return self._snapshot.damaged_files()


def with_relisting(read: Callable[[], T]) -> T:
    """``writer.with_relisting`` for scans through DuckDB too, which reports a vanished file as
    an I/O or invalid-input error naming it rather than as a ``FileNotFoundError``."""

    return writer.with_relisting(read, vanished)


def vanished(exc: BaseException) -> bool:
    """Whether a read failed because a listed file is gone (a merge replaced it)."""
    if isinstance(exc, FileNotFoundError):
        return True
    text = str(exc).lower()
    return isinstance(exc, (duckdb.IOException, duckdb.InvalidInputException)) and (
        "no such file" in text or "not found" in text or "no files found" in text
    )


class _HasConnection(Protocol):
    @property
    def connection(self) -> Connection: ...


S = TypeVar("S", bound=_HasConnection)


def fresh(method: Callable[Concatenate[S, P], T]) -> Callable[Concatenate[S, P], T]:
    """Decorate a facade method: the lake's state is refreshed once at the start of the call."""

    @functools.wraps(method)
    def wrapper(self: S, *args: P.args, **kwargs: P.kwargs) -> T:
        with self.connection.fresh():
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]  # functools.wraps keeps the signature
