"""A lake's folded state kept in a local DuckDB file between opens.

Opening a ``Lake`` reads every part file and folds it into current-state tables. With a state
cache those tables live in a DuckDB database file on local disk instead of in memory: the next
open (a restarted dashboard, a new notebook) finds the tables and the list of part files they
hold, and applies only the files that changed since, so it costs what changed, not the lake's
size. DuckDB's buffer manager keeps only the hot part of the file in memory (``MEMORY_LIMIT``),
so a reader over a million runs stays within a bounded resident size.

The file is a cache, never the truth: it is keyed by the lake's filesystem and root and by the
SQL and schemas of the folds (any change of those in a new runlake version starts a new file),
and a file that cannot be opened (damaged, from another DuckDB) is started again. One process
holds a cache file at a time (DuckDB's file lock); a second ``Lake`` on the same lake, in this
process or another, reads as a Lake that asked for no cache does: a private copy of the lake's
published state when it has one, else in memory.

DuckDB is not fork-safe: a process that forks while it holds a ``Lake`` (cached or not) must
not use that ``Lake`` in the child (a new DuckDB connection in such a child can hang). The
MLflow plugin closes its reader before a fork for this reason; do the same, or open the
``Lake`` after the fork.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import queue
import re
import secrets
import shutil
import socket
import struct
import tempfile
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.fs as pafs

from runlake.core import layout
from runlake.lake import views

log = logging.getLogger(__name__)

CACHE_DIR_ENV = "RUNLAKE_CACHE_DIR"
# Whether the CLI and the dashboard keep a state cache: "1"/"on", "0"/"off", or a directory.
CACHE_ENV = "RUNLAKE_STATE_CACHE"
# DuckDB's memory limit for a cached state: blocks past it are read back from the file.
MEMORY_LIMIT = "1GB"

# A state file no Lake has used for this long is removed by the next cached open in its
# directory (a lake no longer read, or one left behind by an older runlake's layout: at a
# million runs a file holds gigabytes). Rebuilding it costs one uncached open.
STALE_AFTER_S = 14 * 24 * 3600

# The names ``cache_file`` gives: a sweep never touches another file of a shared folder.
_STATE_NAME = re.compile(r"state-[0-9a-f]{24}\.duckdb")
# The local copies ``publish`` writes before its upload and ``adopt`` downloads before its
# rename (and their write-ahead logs): a process killed in between leaves one, which a sweep
# removes once it is this old.
_LEFTOVER_NAME = re.compile(r"\.(publish|adopt)-[0-9a-f]{24}-[0-9a-f]+\.duckdb(\.wal)?")
LEFTOVER_S = 24 * 3600
# A ``Lake(path)`` that found a published state reads a private copy of it (``private``), under
# a name of its own (the lake's digest, the host's tag, the process id, a random part), removed
# when the Lake closes. One a killed process left is removed by the next sweep on the same host
# once that process is gone, no process holds the file and it is this old (an open holds its
# file within milliseconds of making it, so the age only keeps a sweep off one being linked into
# place). The host and process checks keep a cache folder shared between hosts (a home folder on
# NFS), where a lock may not be seen across hosts, from losing another host's live copy.
_PRIVATE_NAME = re.compile(r"\.private-[0-9a-f]{24}-(?P<host>[0-9a-f]{8})-(?P<pid>[0-9a-f]+)-[0-9a-f]+\.duckdb")
PRIVATE_LEFTOVER_S = 600
# The subfolder of a cache folder private copies are made in (0700: their logs too).
PRIVATE_DIR = "private"

_in_use: set[str] = set()
_in_use_lock = threading.Lock()


def interrupted(exc: BaseException) -> bool:
    """Whether ``exc`` is an interrupt: Ctrl-C itself, or DuckDB's answer to it during a query
    (the user stopping an open, never a fault of a state file)."""
    if isinstance(exc, (KeyboardInterrupt, duckdb.InterruptException)):
        return True
    return isinstance(exc, RuntimeError) and "interrupted" in str(exc).lower()


def _read_elsewhere(exc: BaseException) -> bool:
    """Whether a state file that failed to open with ``exc`` leaves the reader to read elsewhere
    (a private copy, or memory): a file or DuckDB error, never an interrupt or this code's bug."""
    return isinstance(exc, (OSError, duckdb.Error)) and not interrupted(exc)


def default_dir() -> Path:
    """``$RUNLAKE_CACHE_DIR``, else ``$XDG_CACHE_HOME/runlake``, else ``~/.cache/runlake``."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "runlake"


def from_env(default: bool | None) -> bool | str | None:
    """The ``cache`` argument ``$RUNLAKE_STATE_CACHE`` asks for (``default`` when unset)."""
    value = os.environ.get(CACHE_ENV, "").strip()
    if not value:
        return default
    if value.lower() in ("1", "on", "true", "yes"):
        return True
    if value.lower() in ("0", "off", "false", "no"):
        return False
    return value


def _format_key() -> str:
    """Changes whenever the folded tables would: their SQL, the raw schemas, DuckDB's version."""
    from runlake.lake.snapshot import STATE_LAYOUT

    parts = [duckdb.__version__, STATE_LAYOUT]
    parts += [f"{view}:{sql}" for view, (sql, _raw, _key) in sorted(views.CURRENT_STATE.items())]
    parts += [f"{table}:{schema}" for table, schema in sorted(layout.SCHEMAS.items())]
    return "\n".join(parts)


def _digest(fs: pafs.FileSystem, root: str) -> str:
    return hashlib.sha256(f"{fs.type_name}\n{root}\n{_format_key()}".encode()).hexdigest()[:24]


def cache_file(fs: pafs.FileSystem, root: str, directory: Path) -> Path:
    """The state file of one lake in ``directory``."""
    return directory / f"state-{_digest(fs, root)}.duckdb"


def published_file(fs: pafs.FileSystem, root: str) -> str:
    """Where ``publish`` puts the state of this lake, in the lake's own filesystem.

    Named as a cache file is (filesystem, root, format): a reader of another runlake version, or
    one that reaches the lake by another path, never starts from it.
    """
    return f"{layout.LakePaths(root).state_dir()}/state-{_digest(fs, root)}.duckdb"


def has_published(fs: pafs.FileSystem, root: str) -> bool:
    """Whether the lake holds a published state this reader can start from (one stat)."""
    try:
        info: pafs.FileInfo = fs.get_file_info(published_file(fs, root))
    except OSError:
        return False
    return bool(info.type == pafs.FileType.File)


def connect(
    fs: pafs.FileSystem, root: str, cache: bool | str | os.PathLike[str] | None
) -> tuple[duckdb.DuckDBPyConnection, str | None, bool]:
    """A DuckDB connection for a lake's state, the file it holds (None in memory), and whether
    that file is a private copy (removed at ``release``) rather than a cache kept between opens.

    The holder calls ``release`` with all three when it is done (a ``weakref.finalize`` of its
    own).

    A cache file not there yet starts as a copy of the lake's published state when it has one
    (``adopt``), so the first open applies only what changed since it was published.

    Args:
        fs: the lake's filesystem.
        root: the lake root.
        cache: None for an in-memory state, or a private copy of the lake's published state when
            it has one (``private``); False for an in-memory state always; True for a cache in
            the default directory; or a directory. A cache held by another Lake, in this process
            or another, or one that cannot be opened, is read as with None.
    """
    if cache is None:
        return private(fs, root)
    if cache is False:
        return new_connection(), None, False
    directory = default_dir() if cache is True else Path(cache)
    # One key per file, however the directory is spelled (relative, symlinked, ~): DuckDB
    # shares one database between connections to the same file in a process.
    directory = Path(os.path.realpath(directory.expanduser()))
    path = cache_file(fs, root, directory)
    key = str(path)
    with _in_use_lock:
        held = key in _in_use
        if not held:
            _in_use.add(key)
    if held:
        # Another Lake of this process holds it: a private copy of the published state, or memory.
        return private(fs, root, directory)
    try:
        # The state holds every row this user can read: a folder of its own, closed to others
        # (an existing folder, such as one a team shares on purpose, keeps its mode).
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not path.exists():
            adopt(fs, root, path)
        con = _open(path)
    except BaseException as exc:
        with _in_use_lock:
            _in_use.discard(key)
        _adopted.pop(key, None)
        if not _read_elsewhere(exc):
            raise
        log.info("runlake: state cache %s not used (%s); reading the lake elsewhere", path, exc)
        # Held by another process (a second dashboard), or unusable: as when no cache was asked.
        return private(fs, root, directory)
    try:
        os.utime(path)  # "last used", which sweeps go by
        sweep(directory)
    except OSError as exc:
        log.info("runlake: state cache directory %s not swept (%s)", directory, exc)
    return con, key, False


def private(
    fs: pafs.FileSystem, root: str, directory: Path | None = None
) -> tuple[duckdb.DuckDBPyConnection, str | None, bool]:
    """``connect`` for a reader that asked for no cache, or whose cache another Lake holds: a
    private copy of the lake's published state when it has one (in ``directory``, by default
    ``default_dir()``), else memory.

    A fold of every part file in memory takes 40-58 s and 6.8 GB at a million runs; a copy of
    the published state takes 4-8 s, and its reader holds in memory only the blocks its queries
    read (0.64 GB after a first page there). The copy is this reader's alone, under a unique name in
    the cache directory, and is removed when the Lake closes: nothing it does lasts past it, so
    user SQL keeps the meaning it has in memory (what it creates stays for the Lake's life;
    nothing reaches a later open). A lake with no published state, or a copy that cannot be made
    (too little free space, a refused file), is read in memory as before.
    """
    if not has_published(fs, root):
        return new_connection(), None, False
    directory = Path(os.path.realpath((directory or default_dir()).expanduser()))
    folder = directory / PRIVATE_DIR
    path = folder / f".private-{_digest(fs, root)}-{_host_tag()}-{os.getpid():x}-{secrets.token_hex(6)}.duckdb"
    key = str(path)
    with _in_use_lock:
        _in_use.add(key)
    try:
        # DuckDB makes the copy's log and spill files with the umask's mode: a folder closed to
        # others keeps them private too, whatever the cache folder's mode.
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if folder.stat().st_mode & 0o077:
            folder.chmod(0o700)
        if not adopt(fs, root, path, marker_dir=directory):
            raise FileNotFoundError("no usable published state")
        con = _open(path, private=True)
    except BaseException as exc:
        with _in_use_lock:
            _in_use.discard(key)
        _adopted.pop(key, None)
        discard(path)
        if not _read_elsewhere(exc):
            raise
        log.info("runlake: no private copy of the published state of %s (%s); reading it in memory", root, exc)
        return new_connection(), None, False
    with contextlib.suppress(OSError):
        sweep(directory)
    return con, key, True


def new_connection(database: str = ":memory:") -> duckdb.DuckDBPyConnection:
    """A DuckDB connection that draws no progress bar.

    DuckDB draws one on standard output, terminal or not, for any statement of a connection
    (not of its cursors) that runs over two seconds: the first fold of a big lake would land in
    the output of ``runlake sql --format csv > file``. Set before any caller locks the
    configuration (``sql_access="views"``).
    """
    con = duckdb.connect(database)
    con.execute("SET enable_progress_bar = false")
    return con


def sweep(directory: Path, now: float | None = None) -> list[Path]:
    """Remove the state files in ``directory`` that no Lake used for ``STALE_AFTER_S``;
    returns them.

    "Used" is the file's modification time, which every cached open and every release sets.
    A file this process holds is kept (checked under the lock ``connect`` takes, so no thread
    opens one meanwhile), and so is one another process holds: DuckDB's lock on it is tested
    without waiting, and the file is removed only if the name still leads to the file locked
    and still old. Where locks cannot be tested (no ``fcntl``) nothing is removed. A process
    that opens a file just as it is removed keeps reading its copy, and its next open starts a
    new file: it is a cache.
    """
    try:
        import fcntl  # noqa: F401  (only where locks can be tested)
    except ImportError:
        return []
    directory = Path(os.path.realpath(Path(directory).expanduser()))
    now = time.time() if now is None else now
    removed = []
    with _in_use_lock:
        for path in sorted(directory.glob("state-*.duckdb")):
            if not _STATE_NAME.fullmatch(path.name) or str(path) in _in_use:
                continue
            if _remove_unheld(path, now, STALE_AFTER_S):
                removed.append(path)
                log.info("runlake: removed state cache %s (not used for %d days)", path, STALE_AFTER_S // 86400)
        for path in sorted((directory / PRIVATE_DIR).glob(".private-*.duckdb")):
            match = _PRIVATE_NAME.fullmatch(path.name)
            if match is None or str(path) in _in_use or match["host"] != _host_tag():
                continue  # not a private copy, this process's, or another host's to remove
            if _process_alive(int(match["pid"], 16)):
                continue
            if _remove_unheld(path, now, PRIVATE_LEFTOVER_S):
                removed.append(path)
    for path in sorted(directory.glob(".*.duckdb*")):
        try:
            if _LEFTOVER_NAME.fullmatch(path.name) and now - path.stat().st_mtime >= LEFTOVER_S:
                path.unlink()
                removed.append(path)
        except OSError:
            continue
    for path in sorted((directory / PRIVATE_DIR).glob(".private-*.duckdb.*")):
        # A private copy's log or DuckDB spill folder with no copy left (a process killed between
        # the removals, or its copy removed by a sweep).
        name, _dot, suffix = path.name.rpartition(".")
        if suffix in ("wal", "tmp") and _PRIVATE_NAME.fullmatch(name) and not path.with_name(name).exists():
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    path.unlink()
    return removed


@functools.cache
def _host_tag() -> str:
    """Eight hex digits naming this host in private copies' names."""
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _process_alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this host (one of another user's counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # not ours to signal, or cannot tell: leave its copy
    return True


def _remove_unheld(path: Path, now: float, age_s: float) -> bool:
    """Remove the state file ``path`` (with its log) if it is at least ``age_s`` old and no
    process holds it; whether it was removed. Called under ``_in_use_lock`` for a file this
    process does not hold: DuckDB's lock on it is tested without waiting, and the file is
    removed only if the name still leads to the file locked and still old."""
    import fcntl

    try:
        if now - path.stat().st_mtime < age_s:
            return False
        with open(path, "rb+") as handle:
            try:
                fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return False  # another process holds it
            locked = os.fstat(handle.fileno())
            if locked.st_ino != path.stat().st_ino or now - locked.st_mtime < age_s:
                return False  # replaced, or used, since it was listed
            discard(path)
    except OSError:
        return False  # gone already, or not ours to remove
    return True


def _open(path: Path, private: bool = False) -> duckdb.DuckDBPyConnection:
    """Open a state file. A cache file that DuckDB cannot open is started again; a private copy
    is not (the caller reads in memory instead of folding the lake into an empty file).

    A cache is held to ``MEMORY_LIMIT``; a private copy keeps DuckDB's default limit, as an
    in-memory state has (user SQL there means what it means in memory; blocks read from the
    file are still given back when the limit is near)."""
    try:
        con = new_connection(str(path))
    except duckdb.IOException as exc:
        if private or "lock" in str(exc).lower():
            raise  # another process holds it: theirs to use
        discard(path)  # damaged or unreadable: a cache, so start it again
        con = new_connection(str(path))
    except duckdb.Error:
        if private:
            raise
        discard(path)
        con = new_connection(str(path))
    try:
        if not private:
            con.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")
        con.execute("SET force_compression = 'uncompressed'")
        # DuckDB checkpoints a file when its last connection goes, and a forked child that exits
        # through the interpreter's exit hooks lets its copy of the connection go: it would write
        # its stale view of the state into the parent's file. ``release`` checkpoints a cache
        # file itself, in the process that opened it (a private copy is removed instead).
        con.execute("PRAGMA disable_checkpoint_on_shutdown")
    except BaseException:
        con.close()
        raise
    return con


def discard(path: Path) -> None:
    """Remove a state file, its write-ahead log and DuckDB's spill folder, if there."""
    for stale in (path, path.with_name(path.name + ".wal")):
        try:
            stale.unlink()
        except FileNotFoundError:
            pass
    shutil.rmtree(path.with_name(path.name + ".tmp"), ignore_errors=True)


def release(con: duckdb.DuckDBPyConnection, key: str | None, private: bool = False, owner: int | None = None) -> None:
    """Close a state connection; a cache file's lock goes with it, and the file is marked as
    used now (a dashboard may have held an unchanging file for longer than ``STALE_AFTER_S``).
    A private copy (``private``) is removed.

    Nothing is done in a process other than ``owner`` (the one that opened it, when given): a
    forked child that exits through the interpreter's exit hooks runs the finalizer of a Lake it
    inherited, where closing DuckDB's connection crashes the child (DuckDB is not fork-safe)
    and removing a private copy would take it from the parent.
    """
    if owner is not None and owner != os.getpid():
        return
    try:
        if key is not None and not private:
            with contextlib.suppress(duckdb.Error):
                con.execute("CHECKPOINT")  # what closing did before _open turned it off
        con.close()
    finally:
        if key is not None:
            with _in_use_lock:
                _in_use.discard(key)
                if private:
                    _adopted.pop(key, None)
                    discard(Path(key))
                else:
                    try:
                        os.utime(key)
                    except OSError:
                        pass  # removed meanwhile: nothing to mark


# -- published states -------------------------------------------------------------------------
# A state cache is one reader's. A long-lived reader (``runlake ui``) also publishes a copy of
# its state into the lake (``<root>/_state/``), and a reader with no state of its own starts
# from that copy: its first open costs the download and the refresh of what changed since the
# copy was made, not a fold of every file (at a million runs about 50 s in memory).
#
# The copy is made inside one transaction, begun between two refreshes, so it holds tables and
# listings of one moment: the reader's refresh then reads the files written since, as on any
# reopen. It is compressed (DuckDB's lightweight codecs, 3.6x smaller at 100,000 runs) except
# the tables every page scans (``PLAIN_TABLES``): those stay uncompressed as in a state cache
# (a first page at 100,000 runs 14 ms from the copy, 25-29 ms with the index compressed too).
# It is named as a cache file is, so a reader of another version, or one reaching the lake by
# another root, never starts from it. Like every file of the lake, it is trusted as much as the
# lake is: whoever can write the lake can already change what readers see.

_PUBLISHED_DB = "runlake_published"
PLAIN_TABLES = ("_runs_wide",)


@dataclass(frozen=True)
class PublishedState:
    """What ``publish`` wrote: the file in the lake, its size, how long it took."""

    path: str
    size: int
    seconds: float

    def to_dict(self) -> dict[str, object]:
        return {"path": self.path, "bytes": self.size, "seconds": round(self.seconds, 3)}

    def to_text(self) -> str:
        return f"published the lake's state ({self.size / 2**20:.1f} MiB in {self.seconds:.1f} s): {self.path}"


# The published files this process adopted and has not used yet, by the file copied to: the
# rejection marker of that lake in that folder, and the (size, mtime) of the copy taken.
_adopted: dict[str, tuple[Path, str]] = {}


def _rejected_marker(directory: Path, digest: str) -> Path:
    return directory / f".rejected-{digest}"


def adopted(path: Path) -> bool:
    """Whether this process copied ``path`` from a published state and has not used it yet."""
    return str(path) in _adopted


def settled(path: Path) -> None:
    """``path`` served its first refresh: a later failure is not the published file's."""
    _adopted.pop(str(path), None)


def reject(path: Path) -> None:
    """``path`` opened but could not be used. When it was adopted and not used yet, the
    published file it was copied from is not adopted again in this folder until it is replaced
    (each fresh reader would otherwise download it, fail and read in memory, until the next
    publish)."""
    taken = _adopted.pop(str(path), None)
    if taken is not None:
        marker, signature = taken
        with contextlib.suppress(OSError):
            marker.write_text(signature)


def _expected_tables() -> set[str]:
    from runlake.lake import search_index, snapshot

    names = {snapshot.LISTINGS_TABLE, *search_index.TABLES}
    for view, (_sql, raw, _key) in views.CURRENT_STATE.items():
        names |= {view, f"raw_{raw}"}
    return names | {snapshot.seen_table(t) for t in snapshot.SEEN_TABLES}


_INDEX_SQL = re.compile(r"CREATE INDEX (\w+)_run_id ON (\w+)\(run_id\);")
# The search index's key columns beyond the runs' own (``search_index.column_name``), and their
# types by entity letter.
_WIDE_KEY_COLUMN = re.compile(r"([mpt])_[0-9a-f]{16}(_min|_max)?")
_WIDE_KEY_TYPES = {"m": "DOUBLE", "p": "VARCHAR", "t": "VARCHAR"}


@functools.cache
def _reference() -> tuple[dict[str, list[tuple[str, str]]], frozenset[str]]:
    """The columns (name, type) of each table of a state this code folds from an empty lake,
    and the tables it indexes by run id: what a copy's tables are held to."""
    from runlake.lake import snapshot

    with tempfile.TemporaryDirectory(prefix="runlake-reference-") as empty:
        con = new_connection()
        try:
            snapshot.Snapshot(con, pafs.LocalFileSystem(), empty.replace(os.sep, "/"), persistent=True).refresh()
            columns: dict[str, list[tuple[str, str]]] = {}
            for table, name, kind in con.execute(
                "SELECT table_name, column_name, data_type FROM duckdb_columns() "
                "WHERE database_name = current_database() ORDER BY table_name, column_index"
            ).fetchall():
                columns.setdefault(table, []).append((name, kind))
            indexed = frozenset(
                table
                for (table,) in con.execute(
                    "SELECT table_name FROM duckdb_indexes() WHERE database_name = current_database()"
                ).fetchall()
            )
        finally:
            con.close()
    return columns, indexed


def _other_columns(table: str, columns: list[tuple[str, str]]) -> bool:
    """Whether a copy's table has other columns than this code's state would."""
    from runlake.lake import search_index, snapshot

    reference, _indexed = _reference()
    if table in reference:
        own = reference[table]
        if table != search_index.WIDE_TABLE:
            return columns != own
        keys = columns[len(own) :]
        return columns[: len(own)] != own or not all(
            (match := _WIDE_KEY_COLUMN.fullmatch(name)) and kind == _WIDE_KEY_TYPES[match.group(1)]
            for name, kind in keys
        )
    if table in {snapshot.seen_table(t) for t in snapshot.SEEN_TABLES}:
        return columns != [("run_id", "VARCHAR")]
    return True


def _unexpected(path: Path) -> str | None:
    """What a downloaded state holds beyond a state's tables, or None.

    A DuckDB file is closer to code than to data: a macro in it overrides a built-in function
    of the same name in every query of the reader that opens it, and an index's, a column
    default's or a check's expression runs on insert. So a published file is taken only when
    its catalog holds nothing but the tables a state has, with no defaults, constraints,
    macros, views, sequences, types or schemas, and only the run-id indexes a state makes. It
    is read with DuckDB's file access off.
    """
    con = duckdb.connect(str(path), read_only=True, config={"enable_external_access": False})
    try:
        (db,) = con.execute("SELECT current_database()").fetchall()[0]
        checks = {
            "schemas": "SELECT schema_name FROM duckdb_schemas() WHERE database_name = ? AND schema_name <> 'main'",
            "macros": "SELECT function_name FROM duckdb_functions() WHERE database_name = ? AND NOT internal",
            "views": "SELECT view_name FROM duckdb_views() WHERE database_name = ? AND NOT internal",
            "sequences": "SELECT sequence_name FROM duckdb_sequences() WHERE database_name = ?",
            "types": "SELECT type_name FROM duckdb_types() WHERE database_name = ? AND NOT internal",
            "constraints": "SELECT table_name FROM duckdb_constraints() WHERE database_name = ?",
            "column defaults": "SELECT table_name FROM duckdb_columns() WHERE database_name = ? "
            "AND column_default IS NOT NULL",
        }
        for what, query in checks.items():
            found = con.execute(query, [db]).fetchall()
            if found:
                return f"it holds {what}: {', '.join(sorted(str(name) for (name,) in found))[:200]}"
        expected = _expected_tables()
        tables = {
            name
            for (name,) in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE database_name = ?", [db]
            ).fetchall()
        }
        if tables - expected:
            return f"it holds tables: {', '.join(sorted(tables - expected))[:200]}"
        # Every table's columns as this code makes them: a column of another type or collation
        # would fail every refresh, or fold later rows wrongly, long after the lake is fixed.
        columns: dict[str, list[tuple[str, str]]] = {}
        for table, name, kind in con.execute(
            "SELECT table_name, column_name, data_type FROM duckdb_columns() WHERE database_name = ? "
            "ORDER BY table_name, column_index",
            [db],
        ).fetchall():
            columns.setdefault(table, []).append((name, kind))
        for table in sorted(tables):
            if _other_columns(table, columns.get(table, [])):
                return f"the table {table} with other columns"
        # Column names are known by now, so a collation is the only place this word can be.
        for table, sql in con.execute(
            "SELECT table_name, sql FROM duckdb_tables() WHERE database_name = ?", [db]
        ).fetchall():
            if re.search(r"\bCOLLATE\b", sql or "", re.IGNORECASE):
                return f"the table {table} with a collation"
        indexes = set()
        for name, table, sql in con.execute(
            "SELECT index_name, table_name, sql FROM duckdb_indexes() WHERE database_name = ?", [db]
        ).fetchall():
            match = _INDEX_SQL.fullmatch(sql or "")
            if match is None or match.groups() != (table, table) or name != f"{table}_run_id" or table not in expected:
                return f"it holds the index {name!r}"
            indexes.add(table)
        missing = (_reference()[1] & tables) - indexes
        if missing:
            return f"no run-id index on {', '.join(sorted(missing))}"
        return None
    finally:
        con.close()


def adopt(fs: pafs.FileSystem, root: str, path: Path, marker_dir: Path | None = None) -> bool:
    """Make ``path`` (a cache file or a private copy, not there yet) a copy of the lake's
    published state; whether one was taken. Never replaces a file another process put at ``path`` meanwhile. A copy that
    holds more than a state's tables (``_unexpected``) is refused, and so is a published file a
    reader of this folder could not use before (``reject``) until it is replaced, and one
    bigger than half the folder's free space."""
    source = published_file(fs, root)
    digest = _digest(fs, root)
    tmp = path.with_name(f".adopt-{digest}-{secrets.token_hex(6)}.duckdb")
    started = time.perf_counter()
    try:
        info = fs.get_file_info(source)
        if info.type != pafs.FileType.File:
            return False
        signature = f"{info.size} {info.mtime_ns}"
        marker = _rejected_marker(marker_dir or path.parent, digest)
        if marker.exists() and marker.read_text() == signature:
            return False
        if (info.size or 0) > shutil.disk_usage(path.parent).free // 2:
            log.info("runlake: published state %s not used (%d bytes; too little free space)", source, info.size)
            return False
        # Readable by this user alone, whatever the folder's mode: it holds every row of the lake.
        descriptor = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with fs.open_input_stream(source) as src, open(descriptor, "wb") as dst:
            damage = _copy_checked(src, dst, info.size or 0)
        try:
            unexpected = damage or _unexpected(tmp)
        except duckdb.Error as exc:
            if interrupted(exc):
                raise  # Ctrl-C: the user's, not the file's
            unexpected = f"unreadable ({exc})"
        if unexpected is not None:
            log.warning("runlake: published state %s not used (%s)", source, unexpected)
            marker.write_text(signature)
            return False
        try:
            os.link(tmp, path)  # fails when a file is there: a concurrent adopter's, or an open's
        except FileExistsError:
            return False
        except OSError:
            if path.exists():
                return False
            os.replace(tmp, path)  # no hard links here (some network filesystems)
    except FileNotFoundError:
        return False
    except OSError as exc:
        log.info("runlake: published state %s not used (%s)", source, exc)
        return False
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    _adopted[str(path)] = (marker, signature)
    log.info("runlake: started from the published state %s (%.1f s)", source, time.perf_counter() - started)
    return True


def publish(
    con: duckdb.DuckDBPyConnection,
    begin_pinned: Callable[[duckdb.DuckDBPyConnection], None],
    fs: pafs.FileSystem,
    root: str,
    directory: Path,
) -> PublishedState:
    """Copy a cached state into the lake for fresh readers to start from.

    Args:
        con: the state's connection (a cache file's, with full SQL access: it attaches the copy).
        begin_pinned: begins a transaction on a cursor of ``con`` between two refreshes.
        fs: the lake's filesystem.
        root: the lake root.
        directory: where the local copy is made before its upload (the cache's own directory).
    """
    started = time.perf_counter()
    digest = _digest(fs, root)
    local = directory / f".publish-{digest}-{secrets.token_hex(6)}.duckdb"
    cursor = con.cursor()
    state_db = cursor.execute("SELECT current_database()").fetchall()[0][0]
    quoted = str(local).replace("'", "''")
    compression = cursor.execute("SELECT current_setting('force_compression')").fetchall()[0][0]
    try:
        # A global setting: the copy's blocks are compressed when written. A checkpoint of the
        # state itself meanwhile (rare: only a refresh's commit past DuckDB's WAL threshold)
        # compresses its new blocks too, which costs its pages a little speed, not correctness.
        cursor.execute("SET force_compression = 'auto'")
        cursor.execute(f"ATTACH '{quoted}' AS {_PUBLISHED_DB}")
        begin_pinned(cursor)
        try:
            indexed = _copy_tables(cursor, state_db)
            cursor.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(duckdb.Error):
                cursor.execute("ROLLBACK")
            raise
        cursor.execute(f"CHECKPOINT {_PUBLISHED_DB}")
        # The indexes follow from the copied rows alone, so they need not be made in the pinned
        # transaction; made there, a million-run copy carried 375 MB of freed blocks.
        for table in indexed:
            cursor.execute(f"CREATE INDEX {table}_run_id ON {_PUBLISHED_DB}.{table}(run_id)")
        cursor.execute(f"CHECKPOINT {_PUBLISHED_DB}")
        from runlake.lake.snapshot import LISTINGS_TABLE

        listed = cursor.execute(f"SELECT DISTINCT path FROM {_PUBLISHED_DB}.{LISTINGS_TABLE}").fetchall()
        digest_of_copy = listing_digest(cursor, _PUBLISHED_DB)
        cursor.execute(f'USE "{state_db}"')
        cursor.execute(f"DETACH {_PUBLISHED_DB}")
        mode = _readable_as(fs, [path for (path,) in listed])
        target = published_file(fs, root)
        state_dir = layout.LakePaths(root).state_dir()
        fs.create_dir(state_dir, recursive=True)
        # The lake's write protocol (DESIGN.md, rule 1): a temporary, then one move.
        tmp = f"{state_dir}/{layout.TMP_PREFIX}state-{digest}.{secrets.token_hex(6)}{layout.TMP_SUFFIX}"
        try:
            with open(local, "rb") as src, fs.open_output_stream(tmp) as dst:
                size = _copy_sealed(src, dst, digest_of_copy)
            if mode is not None:
                os.chmod(tmp, mode)
            fs.move(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                fs.delete_file(tmp)
            raise
    finally:
        with contextlib.suppress(duckdb.Error):
            cursor.execute(f"SET force_compression = '{compression}'")
        with contextlib.suppress(duckdb.Error):
            cursor.execute(f'USE "{state_db}"')
            cursor.execute(f"DETACH DATABASE IF EXISTS {_PUBLISHED_DB}")
        cursor.close()
        for leftover in (local, local.with_name(local.name + ".wal")):
            with contextlib.suppress(OSError):
                leftover.unlink()
    _sweep_published(fs, root, keep=target)
    return PublishedState(target, size, time.perf_counter() - started)


# The column types a plain table's definition is written with (anything else is copied as
# CREATE TABLE AS does, compressed): the copy never takes SQL text from the catalog.
_SIMPLE_TYPE = re.compile(r"[A-Z][A-Z0-9_]*")


def _copy_tables(cursor: duckdb.DuckDBPyConnection, state_db: str) -> list[str]:
    """Copy a state's tables into the attached copy (inside the caller's transaction); the
    tables whose run-id index the copy is to have.

    ``PLAIN_TABLES`` are declared uncompressed column by column, so they are written once, as
    they stay; a state's tables have no constraints or defaults (they are made by CREATE TABLE
    AS). Only the tables a state has are copied, by the names this code knows: the state may
    have been adopted from a published file."""
    expected = _expected_tables()
    tables = [
        name
        for (name,) in cursor.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = ? AND NOT temporary ORDER BY table_name",
            [state_db],
        ).fetchall()
        if name in expected
    ]
    indexed = {
        table
        for (name, table) in cursor.execute(
            "SELECT index_name, table_name FROM duckdb_indexes() WHERE database_name = ?", [state_db]
        ).fetchall()
        if name == f"{table}_run_id"
    }
    for table in tables:
        source = f'"{state_db}".{table}'
        columns = cursor.execute(
            "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = ? AND table_name = ? "
            "ORDER BY column_index",
            [state_db, table],
        ).fetchall()
        if table in PLAIN_TABLES and all(_SIMPLE_TYPE.fullmatch(kind) for _name, kind in columns):
            definition = ", ".join(
                '"{}" {} USING COMPRESSION uncompressed'.format(name.replace('"', '""'), kind) for name, kind in columns
            )
            cursor.execute(f"CREATE TABLE {_PUBLISHED_DB}.{table} ({definition})")
            cursor.execute(f"INSERT INTO {_PUBLISHED_DB}.{table} SELECT * FROM {source}")
        else:
            cursor.execute(f"CREATE TABLE {_PUBLISHED_DB}.{table} AS SELECT * FROM {source}")
    return [table for table in tables if table in indexed]


# A published file is the DuckDB file, the SHA-256 of the list of part files it holds
# (``listing_digest``), and a trailer: this magic, the length of the two before it and their
# CRC-32. A block damaged on the lake's disk would otherwise pass every check an open makes and
# fail the queries that read it, in every reader that copied it, until each removed its copy.
# The digest tells a publisher whether the copy there already holds its state (one ranged read
# of the file's end). Files of the first format (``RLSTATE1``: no digest) are still read.
_TRAILER = struct.Struct("<8sQI")
_MAGIC = b"RLSTATE2"
_MAGIC_NO_DIGEST = b"RLSTATE1"
_DIGEST_SIZE = 32
_CHUNK = 16 << 20


class _Pipe:
    """Writes chunks to ``dst`` on a thread of its own while the caller reads and sums the next
    (reads, CRC-32 and writes all release the GIL): a 2.7 GB state is copied and checked in
    2.1-2.5 s here instead of 2.9-3.8 s in one loop. Raises the writer's error at ``close``."""

    def __init__(self, dst: Any) -> None:
        self._dst = dst
        self._chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=4)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._write, name="runlake-state-copy", daemon=True)
        self._thread.start()

    def _write(self) -> None:
        while (chunk := self._chunks.get()) is not None:
            if self._error is None:
                try:
                    self._dst.write(chunk)
                except BaseException as exc:  # kept for close(); the queue is still drained
                    self._error = exc

    def write(self, chunk: bytes) -> None:
        if self._error is not None:
            raise self._error
        self._chunks.put(chunk)

    def close(self) -> None:
        self._chunks.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error


def _copy_sealed(src: Any, dst: Any, digest: bytes) -> int:
    """Copy ``src`` to ``dst``, then ``digest`` and the trailer; the bytes written."""
    crc, length = 0, 0
    pipe = _Pipe(dst)
    try:
        while chunk := src.read(_CHUNK):
            crc = zlib.crc32(chunk, crc)
            length += len(chunk)
            pipe.write(chunk)
        crc = zlib.crc32(digest, crc)
        length += len(digest)
        pipe.write(digest + _TRAILER.pack(_MAGIC, length, crc))
    finally:
        pipe.close()
    return length + _TRAILER.size


def _copy_checked(src: Any, dst: Any, size: int) -> str | None:
    """Copy a sealed file of ``size`` bytes from ``src`` to ``dst`` (a local file) as the DuckDB
    file alone; what is wrong with it, or None."""
    length = size - _TRAILER.size
    if length <= 0:
        return "no trailer"
    crc, left = 0, length
    pipe = _Pipe(dst)
    try:
        while left:
            chunk = src.read(min(_CHUNK, left))
            if not chunk:
                return "fewer bytes than listed"
            crc = zlib.crc32(chunk, crc)
            left -= len(chunk)
            pipe.write(chunk)
    finally:
        pipe.close()
    magic, sealed_length, sealed_crc = _TRAILER.unpack(src.read(_TRAILER.size).ljust(_TRAILER.size, b"\0"))
    if magic not in (_MAGIC, _MAGIC_NO_DIGEST) or sealed_length != length:
        return "no trailer"
    if sealed_crc != crc:
        return "damaged bytes (CRC-32 mismatch)"
    if magic == _MAGIC:
        if length < _DIGEST_SIZE:
            return "no trailer"
        dst.flush()
        dst.truncate(length - _DIGEST_SIZE)  # the digest is not the DuckDB file's
    return None


def published_digest(fs: pafs.FileSystem, root: str) -> bytes | None:
    """The ``listing_digest`` the lake's published state was sealed with (one ranged read of
    its end), or None when there is none, or it is of the first format, or it is unreadable."""
    tail = _DIGEST_SIZE + _TRAILER.size
    try:
        with fs.open_input_file(published_file(fs, root)) as handle:
            size = handle.size()
            if size < tail:
                return None
            handle.seek(size - tail)
            end = handle.read(tail)
    except OSError:
        return None
    magic, length, _crc = _TRAILER.unpack(end[_DIGEST_SIZE:])
    if magic != _MAGIC or length != size - _TRAILER.size:
        return None
    return bytes(end[:_DIGEST_SIZE])


def listing_digest(cursor: duckdb.DuckDBPyConnection, database: str | None = None) -> bytes:
    """SHA-256 of the part files (table, path, size) a persistent state holds: equal for two
    states exactly when they were folded from the same files."""
    from runlake.lake.snapshot import LISTINGS_TABLE

    table = f'"{database}".{LISTINGS_TABLE}' if database else LISTINGS_TABLE
    digest = hashlib.sha256()
    for name, path, size in cursor.execute(
        f"SELECT table_name, path, size FROM {table} ORDER BY table_name, path, size"
    ).fetchall():
        digest.update(f"{name}\t{path}\t{size}\n".encode())
    return digest.digest()


def _readable_as(fs: pafs.FileSystem, paths: list[str]) -> int | None:
    """On a local lake, the permission bits every file the state was read from has (read and
    write only): the copy holds their rows, so it is readable by no one who could not read
    each of them. None elsewhere (an object store's access is the bucket's, as for the files)."""
    if not isinstance(fs, pafs.LocalFileSystem):
        return None
    mode = 0o666
    for path in paths:
        with contextlib.suppress(FileNotFoundError):  # gone since: its rows went with it
            mode &= os.stat(path).st_mode
    return mode | 0o600  # the publisher reads and replaces it


def _sweep_published(fs: pafs.FileSystem, root: str, keep: str, now: float | None = None) -> None:
    """Remove published states of other formats (an older runlake's) not replaced for
    ``STALE_AFTER_S``: at a million runs each holds gigabytes."""
    now = time.time() if now is None else now
    selector = pafs.FileSelector(layout.LakePaths(root).state_dir(), allow_not_found=True)
    try:
        infos = fs.get_file_info(selector)
    except OSError:
        return
    for info in infos:
        if info.type != pafs.FileType.File or info.path == keep or not _STATE_NAME.fullmatch(info.base_name):
            continue
        if info.mtime is not None and now - info.mtime.timestamp() >= STALE_AFTER_S:
            with contextlib.suppress(OSError):
                fs.delete_file(info.path)
                log.info(
                    "runlake: removed published state %s (not replaced for %d days)", info.path, STALE_AFTER_S // 86400
                )
