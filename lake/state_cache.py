"""A lake's folded state kept in a local DuckDB file between opens.

Opening a ``Lake`` reads every part file and folds it into current-state tables. With a state
cache those tables live in a DuckDB database file on local disk instead of in memory: the next
open (a restarted dashboard, a new notebook) finds the tables and the list of part files they
hold, and applies only the files that changed since, so it costs what changed, not the lake's
size. DuckDB's buffer manager keeps only the hot part of the file in memory (``MEMORY_LIMIT``),
so a reader over a million runs stays within a bounded resident size.

The file is a cache, never the truth: it is keyed by the lake's filesystem and root and by the
SQL and schemas of the folds (any change of those in a new runlake version starts a new file),
and a file that cannot be opened (held by another process, damaged, from another DuckDB) is set
aside for an in-memory state, as without a cache. One process holds a cache file at a time
(DuckDB's file lock); a second ``Lake`` on the same lake, in this process or another, reads in
memory.

DuckDB is not fork-safe: a process that forks while it holds a ``Lake`` (cached or not) must
not use that ``Lake`` in the child (a new DuckDB connection in such a child can hang). The
MLflow plugin closes its reader before a fork for this reason; do the same, or open the
``Lake`` after the fork.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
from pathlib import Path

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

_in_use: set[str] = set()
_in_use_lock = threading.Lock()


def default_dir() -> Path:
    """``$RUNLAKE_CACHE_DIR``, else ``$XDG_CACHE_HOME/runlake``, else ``~/.cache/runlake``."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "runlake"


def from_env(default: bool) -> bool | str:
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


def cache_file(fs: pafs.FileSystem, root: str, directory: Path) -> Path:
    """The state file of one lake in ``directory``."""
    digest = hashlib.sha256(f"{fs.type_name}\n{root}\n{_format_key()}".encode()).hexdigest()[:24]
    return directory / f"state-{digest}.duckdb"


def connect(
    fs: pafs.FileSystem, root: str, cache: bool | str | os.PathLike[str]
) -> tuple[duckdb.DuckDBPyConnection, str | None]:
    """A DuckDB connection for a lake's state, and the cache file it holds (None in memory).

    The holder calls ``release`` with both when it is done (a ``weakref.finalize`` of its own).

    Args:
        fs: the lake's filesystem.
        root: the lake root.
        cache: False for an in-memory state; True for the default cache directory; or a directory.
    """
    if cache is False:
        return new_connection(), None
    directory = default_dir() if cache is True else Path(cache)
    # One key per file, however the directory is spelled (relative, symlinked, ~): DuckDB
    # shares one database between connections to the same file in a process.
    directory = Path(os.path.realpath(directory.expanduser()))
    path = cache_file(fs, root, directory)
    key = str(path)
    with _in_use_lock:
        if key in _in_use:
            return new_connection(), None
        _in_use.add(key)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        con = _open(path)
    except (OSError, duckdb.Error) as exc:
        with _in_use_lock:
            _in_use.discard(key)
        log.info("runlake: state cache %s not used (%s); reading the lake in memory", path, exc)
        return new_connection(), None
    try:
        os.utime(path)  # "last used", which sweeps go by
        sweep(directory)
    except OSError as exc:
        log.info("runlake: state cache directory %s not swept (%s)", directory, exc)
    return con, key


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
        import fcntl
    except ImportError:
        return []
    directory = Path(os.path.realpath(Path(directory).expanduser()))
    now = time.time() if now is None else now
    removed = []
    with _in_use_lock:
        for path in sorted(directory.glob("state-*.duckdb")):
            if not _STATE_NAME.fullmatch(path.name) or str(path) in _in_use:
                continue
            try:
                if now - path.stat().st_mtime < STALE_AFTER_S:
                    continue
                with open(path, "rb+") as handle:
                    try:
                        fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except OSError:
                        continue  # another process holds it
                    locked = os.fstat(handle.fileno())
                    if locked.st_ino != path.stat().st_ino or now - locked.st_mtime < STALE_AFTER_S:
                        continue  # replaced, or used, since it was listed
                    _discard(path)
            except OSError:
                continue  # gone already, or not ours to remove
            removed.append(path)
            log.info("runlake: removed state cache %s (not used for %d days)", path, STALE_AFTER_S // 86400)
    return removed


def _open(path: Path) -> duckdb.DuckDBPyConnection:
    try:
        con = new_connection(str(path))
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise  # another process holds it: theirs to use
        _discard(path)  # damaged or unreadable: a cache, so start it again
        con = new_connection(str(path))
    except duckdb.Error:
        _discard(path)
        con = new_connection(str(path))
    con.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")
    con.execute("SET force_compression = 'uncompressed'")
    return con


def _discard(path: Path) -> None:
    for stale in (path, path.with_name(path.name + ".wal")):
        try:
            stale.unlink()
        except FileNotFoundError:
            pass


def release(con: duckdb.DuckDBPyConnection, key: str | None) -> None:
    """Close a state connection; a cache file's lock goes with it, and the file is marked as
    used now (a dashboard may have held an unchanging file for longer than ``STALE_AFTER_S``)."""
    try:
        con.close()
    finally:
        if key is not None:
            with _in_use_lock:
                _in_use.discard(key)
                try:
                    os.utime(key)
                except OSError:
                    pass  # removed meanwhile: nothing to mark
