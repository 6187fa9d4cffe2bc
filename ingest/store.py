"""One open lake on the training side: its buffer, background flusher and catalog reads.

Stdlib and pyarrow only. A ``Store`` is shared by every run and client of one lake root in a
process; a forked child gets fresh stores (the parent's buffer and thread are not its own).
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

from runlake.core import damage, layout, writer
from runlake.core import merge as merge_mod
from runlake.core.batch import Buffer, register_pending
from runlake.core.lease import try_lease

FLUSH_INTERVAL_S = float(os.environ.get("RUNLAKE_FLUSH_INTERVAL", "3"))
# A flusher that finds nothing to do this many intervals in a row stops (one minute at the
# default interval): a process that keeps clients of many lakes but logs nothing holds no
# thread for them. The next call that buffers something starts one again.
IDLE_ROUNDS = 20
# A buffer this large is flushed early, to bound memory in runs that log very fast.
MAX_BUFFERED_POINTS = 2_000_000


class Store:
    """A lake root opened for writing."""

    def __init__(self, location: str | os.PathLike[str]) -> None:
        self.fs, self.root = layout.resolve_lake(location)
        self.paths = layout.LakePaths(self.root)
        self._run_experiments: dict[str, str] = {}
        self._indexed_files: set[str] = set()  # runs part files whose ids are in _run_experiments
        self._partition_mtimes: dict[str, Any] = {}  # runs partition dir -> mtime when last indexed
        self._experiment_parts: dict[str, list[dict[str, Any]]] = {}  # experiments file -> its rows
        self._catalog_lock = threading.RLock()
        self._warned: set[str] = set()  # damaged files this store warned of (once each)
        self._reset_process_state()

    def _read_or_skip(self, path: str, table: str, **kwargs: Any) -> pa.Table | None:
        """A part file's rows, or None (and one warning) when it cannot be read: a damaged file
        must not stop training jobs from starting runs (``runlake.core.damage``)."""
        import pyarrow.parquet as pq

        try:
            return pq.read_table(path, filesystem=self.fs, **kwargs)
        except Exception as exc:
            if isinstance(exc, FileNotFoundError) or not damage.is_read_failure(exc):
                raise
            if path not in self._warned:
                self._warned.add(path)
                damage.warn(damage.damaged_file(path, table, exc), stacklevel=3)
            return None

    def _reset_process_state(self) -> None:
        """Fresh buffer, locks and flusher: at creation, and in a forked child.

        ``Run`` and ``LakeClient`` objects created before a fork keep pointing at this store,
        so the child resets it in place rather than replacing it: what the child logs then
        goes to its own buffer (the parent's buffered rows stay the parent's to write), and no
        lock is inherited in the state a parent thread held it at the fork.
        """
        self.buffer = Buffer()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()
        self.flush_error: BaseException | None = None
        self._reported_error: str | None = None
        # The part files this process wrote and has not merged yet, per (table, partition):
        # its own to merge (a forked child starts with none - the parent's are the parent's).
        self._own: dict[tuple[str, str], list[str]] = {}
        self._written_at: dict[str, float] = {}  # own file -> when it was written (monotonic)
        self._touched: set[tuple[str, str]] = set()
        self._own_lock = threading.Lock()
        self._merge_lock = threading.Lock()

    # -- buffering -----------------------------------------------------------------------
    def ensure_flusher(self) -> None:
        thread = self._thread  # read once: a retiring flusher may clear it meanwhile
        if thread is not None and thread.is_alive():
            return
        with self._thread_lock:
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(target=self._loop, name="runlake-flusher", daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        idle = 0
        while not self._stop.is_set():
            self._wake.wait(FLUSH_INTERVAL_S)
            self._wake.clear()
            busy = self.buffer.pending()
            try:
                self.flush()
                self.flush_error = None
            except Exception as exc:
                # The rows stay buffered for the next try (a full disk may clear); an explicit
                # flush or end_run raises the error, and the user hears of it once here.
                self.flush_error = exc
                busy = True
                if str(exc) != self._reported_error:
                    self._reported_error = str(exc)
                    print(f"runlake: background flush to {self.root} failed, will retry: {exc}", file=sys.stderr)
            idle = 0 if busy else idle + 1
            if idle >= IDLE_ROUNDS and self._retire():
                return

    def _retire(self) -> bool:
        """Stop this flusher thread if nothing is buffered; True when it stops.

        ``add_metric`` buffers its point, then starts a thread only if it reads none, without a
        lock. A call that buffered after the first look below but read the thread before it was
        cleared started none, so the thread looks again after clearing itself and stays on.
        """
        me = threading.current_thread()
        with self._thread_lock:
            if self._thread is not me or self.buffer.pending():
                return False
            self._thread = None
        if self.buffer.pending():
            with self._thread_lock:
                if self._thread is None:  # no call started another meanwhile: carry on
                    self._thread = me
                    return False
        return True

    def add_metric(self, experiment_id: str, run_id: str, key: str, value: float, step: int, timestamp: int) -> None:
        if self.buffer.add_metric(experiment_id, run_id, key, value, step, timestamp) >= MAX_BUFFERED_POINTS:
            self._wake.set()
        if self._thread is None:
            self.ensure_flusher()

    def add_metric_table(self, experiment_id: str, points: pa.Table) -> None:
        if self.buffer.add_metric_table(experiment_id, points) >= MAX_BUFFERED_POINTS:
            self._wake.set()
        self.ensure_flusher()

    def add_rows(self, table: str, experiment_id: str, rows: list[dict[str, Any]], *, after_data: bool = False) -> None:
        self.buffer.add_rows(table, experiment_id, rows, after_data=after_data)
        self.ensure_flusher()

    def flush(self, *, merge: bool = True) -> None:
        """Write everything buffered now (raises what the write raised), then merge what is due."""
        written = self.buffer.flush(self.fs, self.root)
        if written:
            with self._own_lock:
                for part in written:
                    key = (part.table, part.experiment_id)
                    if part.bytes < merge_mod.RELEASE_BYTES:
                        self._own.setdefault(key, []).append(part.path)
                        self._written_at[part.path] = time.monotonic()
                    self._touched.add(key)
        if merge:
            self.merge()

    def flush_for_reader(self) -> None:
        """A reader in this process is about to list the lake: write what it should see."""
        if self.buffer.pending():
            self.flush(merge=False)

    def merge(self, *, release_all: bool = False) -> None:
        """Merge this process's own part files once a table partition holds ``OWN_FILE_LIMIT``
        of them (every one with ``release_all``: a run ended), then the partitions' full tiers.

        Runs on the flusher thread (never inside a ``log_*`` call). The own merge needs no
        lease: the files are this process's, seconds old, of runs it is writing now; a cron
        compaction that took some of them meanwhile leaves duplicates the folds absorb. The
        tier merge rewrites files other processes wrote, so it runs only while this process
        holds the maintenance lease, taken without waiting. See ``runlake.core.merge``.
        """
        limit = 2 if release_all else merge_mod.OWN_FILE_LIMIT
        with self._own_lock:
            # Own files old enough for cron compaction (default grace 10 min) or the tiers to
            # take are released unmerged: only the lease holders rewrite those.
            cutoff = time.monotonic() - merge_mod.OWN_MAX_AGE_S
            for key, paths in self._own.items():
                self._own[key] = [p for p in paths if self._written_at.get(p, 0.0) >= cutoff]
            self._written_at = {p: t for p, t in self._written_at.items() if t >= cutoff}
            due = {key: list(paths) for key, paths in self._own.items() if len(paths) >= limit}
            if release_all:  # a single file is released as it is
                self._own = {key: paths for key, paths in self._own.items() if len(paths) != 1}
        if not due:
            return
        with self._merge_lock:
            for (table, experiment_id), paths in due.items():
                try:
                    merge_mod.merge_files(self.fs, self.root, table, experiment_id or None, paths)
                    done = set(paths)
                except FileNotFoundError:
                    # Compaction merged some of them meanwhile: those are no longer ours.
                    done = {p for p in paths if self.fs.get_file_info(p).type == pafs.FileType.NotFound}
                except merge_mod.DamagedInputs as exc:
                    # A file of ours that no longer reads: left for compaction or doctor to
                    # quarantine (this merge holds no lease); the rest merge next time.
                    done = {found.path for found in exc.files}
                with self._own_lock:
                    self._own[(table, experiment_id)] = [
                        p for p in self._own.get((table, experiment_id), []) if p not in done
                    ]
            with self._own_lock:
                touched = set(self._touched)
            with try_lease(self.fs, self.root, "merge") as held:
                if held:
                    # Only partitions left with no full tier are done: one whose merges the
                    # time budget cut short stays touched for the next flush's merge.
                    finished: set[tuple[str, str | None]] = set()
                    merge_mod.merge_tiers(self.fs, self.root, [(t, e or None) for t, e in touched], done=finished)
                    with self._own_lock:
                        self._touched -= {(t, e or "") for t, e in finished}

    def own_files(self) -> dict[tuple[str, str], int]:
        """How many unmerged part files this process holds per (table, experiment id)."""
        with self._own_lock:
            return {key: len(paths) for key, paths in self._own.items() if paths}

    def close(self) -> str | None:
        """Write what is buffered and merge; returns what was lost (None when nothing was).

        A failed write here is final - the process is ending - so it is said on stderr with
        the number of points and rows that could not be written and why.
        """
        self._stop.set()
        self._wake.set()
        try:
            self.flush(merge=False)
        except Exception as exc:
            points, rows = self.buffer.pending_points(), self.buffer.pending_rows()
            lost = (
                f"runlake: could not write buffered data to {self.root} at exit: {points:,} metric points "
                f"and {rows:,} other rows (run, param, tag changes) were lost ({type(exc).__name__}: {exc})"
            )
            print(lost, file=sys.stderr, flush=True)
            return lost
        try:
            self.merge(release_all=True)
        except Exception as exc:  # the data is written; only the tidying failed
            print(f"runlake: could not merge part files in {self.root} at exit: {exc}", file=sys.stderr)
        return None

    # -- catalog reads (small tables, read with pyarrow) ---------------------------------
    def read_rows(self, table: str, experiment_id: str | None = None) -> pa.Table | None:
        """All rows of a table (one partition when given); None when it has none."""

        def read() -> pa.Table | None:
            if experiment_id is not None:
                infos = writer.list_dir_parts(self.fs, self.paths.partition_dir(table, experiment_id))
            else:
                infos = writer.list_parts(self.fs, self.root, table)
            parts = []
            for info in infos:
                part = self._read_or_skip(info.path, table)
                if part is None:
                    continue
                if experiment_id is None and table != layout.EXPERIMENTS:
                    part = part.append_column(
                        layout.PARTITION_COLUMN, pa.array([writer.partition_of(info.path)] * part.num_rows, pa.string())
                    )
                parts.append(part)
            return pa.concat_tables(parts, promote_options="default") if parts else None

        return writer.with_relisting(read)

    def experiments(self) -> dict[str, dict[str, Any]]:
        """Current experiments by id (latest non-null value per field).

        Every ``create_run`` and ``start_run`` asks this; part files are immutable, so each is
        read once and kept, and a call lists the directory and reads only files it has not seen.
        """

        def read() -> list[Any]:
            infos = writer.list_parts(self.fs, self.root, layout.EXPERIMENTS)
            for info in infos:
                if info.path not in self._experiment_parts:
                    part = self._read_or_skip(info.path, layout.EXPERIMENTS)
                    self._experiment_parts[info.path] = part.to_pylist() if part is not None else []
            return infos

        # One reader of the cache at a time: two threads (a run starting, a client creating
        # an experiment) must not prune each other's freshly read files.
        with self._catalog_lock:
            infos = writer.with_relisting(read)
            listed = {info.path for info in infos}
            for gone in set(self._experiment_parts) - listed:  # merged away by compaction
                del self._experiment_parts[gone]
            rows = [row for path in sorted(listed) for row in self._experiment_parts[path]]
        return fold_latest(rows, "experiment_id")

    def experiment_by_name(self, name: str) -> dict[str, Any] | None:
        matches = [e for e in self.experiments().values() if e.get("name") == name]
        if not matches:
            return None
        matches.sort(key=lambda e: (e.get("lifecycle_stage") != layout.LIFECYCLE_ACTIVE, e["experiment_id"]))
        return matches[0]

    def remember_run(self, run_id: str, experiment_id: str) -> None:
        self._run_experiments[run_id] = experiment_id

    def experiment_of_run(self, run_id: str) -> str | None:
        """The experiment partition holding a run, or None when the run does not exist.

        Part files are immutable, so each file's run ids are read once (one column) and
        remembered, and a partition directory whose modification time has not changed is not
        listed again: checking a new run id costs one listing of the partition directories.
        """
        found = self._run_experiments.get(run_id)
        if found is not None:
            return found
        selector = pafs.FileSelector(self.paths.table_dir(layout.RUNS), allow_not_found=True)
        for directory in self.fs.get_file_info(selector):
            experiment_id = writer.partition_of(directory.path + "/x")
            if directory.type != pafs.FileType.Directory or experiment_id is None:
                continue
            if directory.mtime is not None and self._partition_mtimes.get(directory.path) == directory.mtime:
                continue
            self._index_partition(directory.path, experiment_id)
            self._partition_mtimes[directory.path] = directory.mtime
        return self._run_experiments.get(run_id)

    def _index_partition(self, directory: str, experiment_id: str) -> None:
        def read() -> None:
            for info in writer.list_dir_parts(self.fs, directory):
                if info.path in self._indexed_files:
                    continue
                part = self._read_or_skip(info.path, layout.RUNS, columns=["run_id"])
                ids = part.column("run_id") if part is not None else pa.array([], pa.string())
                for known in ids.to_pylist():
                    self._run_experiments.setdefault(known, experiment_id)
                self._indexed_files.add(info.path)

        writer.with_relisting(read)


def fold_latest(rows: list[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    """Fold versioned partial rows into the current state: latest non-null value per field."""
    state: dict[str, dict[str, Any]] = {}
    for row in sorted(rows, key=lambda r: r.get("version") or 0):
        current = state.setdefault(row[key], {})
        for name, value in row.items():
            if value is not None:
                current[name] = value
    return state


_stores: dict[str, Store] = {}
_stores_lock = threading.Lock()


def get_store(location: str | os.PathLike[str]) -> Store:
    """The process's store for a lake location (created on first use)."""
    _, root = layout.resolve_lake(location)
    with _stores_lock:
        store = _stores.get(root)
        if store is None:
            _install_process_hooks()
            store = _stores[root] = Store(location)
            register_pending(store.root, store.flush_for_reader)
        return store


def flush_all() -> None:
    for store in list(_stores.values()):
        store.flush()


# What the exit flush could not write (one line per store); the process's exit status says so.
_lost_at_exit: list[str] = []
# Exit status of a process whose buffered data could not be written at exit.
DATA_LOSS_EXIT_STATUS = 1


def close_all() -> None:
    """Flush every store of this process (at exit); remember what could not be written."""
    for store in list(_stores.values()):
        lost = store.close()
        if lost is not None:
            _lost_at_exit.append(lost)


def exit_if_data_lost() -> None:
    """The last runlake exit hook: data that could not be written makes the exit status non-zero.

    An atexit hook cannot change the status Python is exiting with, and a script that never
    calls ``end_run`` otherwise ends with 0 while its points are gone (a full disk). So the
    process ends here with ``DATA_LOSS_EXIT_STATUS``, after flushing its output streams and
    logging; exit hooks registered before runlake's first store do not run then.
    """
    if not _lost_at_exit:
        return
    print(
        f"runlake: exiting with status {DATA_LOSS_EXIT_STATUS}: buffered data could not be written "
        "(see above); whatever was flushed earlier is in the lake",
        file=sys.stderr,
    )
    if "logging" in sys.modules:
        sys.modules["logging"].shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # a closed or broken stream: nothing more to say there
            pass
    os._exit(DATA_LOSS_EXIT_STATUS)


def _after_fork_in_child() -> None:
    # The parent's buffers hold the parent's points (it will flush them); each store starts
    # empty in the child, with its own locks and flusher thread.
    global _stores_lock
    _stores_lock = threading.Lock()
    for store in _stores.values():
        store._reset_process_state()


_hooks_installed = False


def _install_process_hooks() -> None:
    """Flush at exit and reset in forked children, from the first store on (not at import)."""
    global _hooks_installed
    if not _hooks_installed:
        _hooks_installed = True
        # Last in, first out: close_all runs, then the check of what it could not write.
        atexit.register(exit_if_data_lost)
        atexit.register(close_all)
        os.register_at_fork(after_in_child=_after_fork_in_child)
