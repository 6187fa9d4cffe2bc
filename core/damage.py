"""Damaged part files: how to tell one, how to warn of it, where it is moved (pyarrow + stdlib only).

A part file is immutable and complete once renamed into place (the write protocol), so a file
that cannot be read was damaged afterwards: a disk or copy truncated it, a tool wrote over it,
a backup restored half of it. One such file must not take the lake down. Readers skip it with
one warning naming it; the jobs that rewrite files (compaction, retention, tier merges,
``runlake doctor --repair``) move it to ``<root>/_quarantine/`` - never delete it: what it
still holds may be recoverable by hand - and keep every readable row around it.

Not every read error is damage. A file that vanished was merged away (readers list again); a
file the process may not read (permissions) or an I/O error of the device is skipped by
readers but never moved, since nothing is wrong with its bytes.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.fs as pafs

from runlake.core import layout

QUARANTINE_DIR = "_quarantine"
# Beside each quarantined file: why and when it was moved, for the person who looks at it.
REASON_SUFFIX = ".reason.json"


class DamagedFileWarning(RuntimeWarning):
    """A part file could not be read and was skipped; the rest of the lake stays available."""


@dataclass(frozen=True)
class DamagedFile:
    """A part file a reader could not read.

    Attributes:
        path: the file, in the filesystem's syntax.
        table: the lake table it belongs to.
        reason: the reader's error, for people.
        damaged: True when the bytes are bad (quarantine it); False for an error of access or
            of the device (permissions, EIO), which is skipped but left in place.
    """

    path: str
    table: str
    reason: str
    damaged: bool = True

    def to_dict(self) -> dict[str, object]:
        return {"path": self.path, "table": self.table, "reason": self.reason, "damaged": self.damaged}

    def describe(self) -> str:
        kind = "damaged" if self.damaged else "unreadable"
        return f"{kind} {self.table} file skipped: {self.path} ({self.reason})"


def classify(exc: BaseException) -> bool | None:
    """What a read error means: True damaged bytes, False unreadable (access, device), None vanished.

    Raises nothing; callers re-raise errors that are none of these (a bug is not damage).
    """
    if isinstance(exc, FileNotFoundError):
        return None
    if isinstance(exc, PermissionError):
        return False
    if isinstance(exc, pa.ArrowException) and not isinstance(exc, OSError):
        return True  # ArrowInvalid (bad magic, 0 bytes, bad footer), wrong types, ...
    if isinstance(exc, OSError):
        # Parquet's decoding errors (a corrupt page header: "Couldn't deserialize thrift")
        # arrive as OSError without an errno; a device or access error carries one.
        return exc.errno is None
    return None


def is_read_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is a read error a reader skips a file for (damage or no access)."""
    return classify(exc) is not None


def describe_error(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return (text[:300] + "…") if len(text) > 300 else (text or type(exc).__name__)


def damaged_file(path: str, table: str, exc: BaseException) -> DamagedFile:
    return DamagedFile(path, table, describe_error(exc), bool(classify(exc)))


def warn(found: DamagedFile, stacklevel: int = 2) -> None:
    """The one warning a reader gives for a file (callers remember which files they warned of)."""
    warnings.warn(DamagedFileWarning(found.describe()), stacklevel=stacklevel + 1)


def check_file(fs: pafs.FileSystem, path: str, table: str, *, full: bool = True) -> DamagedFile | None:
    """Read a part file (whole, or only its footer) and say whether it is damaged.

    Returns:
        None when the file reads (or vanished meanwhile), else what is wrong with it.
    """
    import pyarrow.parquet as pq

    try:
        if full:
            pq.read_table(path, filesystem=fs, schema=layout.SCHEMAS[table])
        else:
            with fs.open_input_file(path) as handle:
                pq.ParquetFile(handle).metadata  # noqa: B018 - reading the footer is the check
    except Exception as exc:
        if classify(exc) is None:
            if isinstance(exc, FileNotFoundError):
                return None
            raise
        return damaged_file(path, table, exc)
    return None


def quarantine_path(root: str, path: str) -> str:
    """Where a file of the lake goes in quarantine: the same relative path under ``_quarantine``."""
    prefix = root.rstrip("/") + "/"
    relative = path[len(prefix) :] if path.startswith(prefix) else path.lstrip("/").replace(":", "_")
    return f"{prefix}{QUARANTINE_DIR}/{relative}"


def quarantine(fs: pafs.FileSystem, root: str, path: str, reason: str) -> str | None:
    """Move a file of the lake to ``<root>/_quarantine/`` with a note saying why; never deletes.

    Returns:
        The file's new path, or None when it was gone already (another job moved or merged it).
    """
    target = quarantine_path(root, path)
    if fs.get_file_info(target).type != pafs.FileType.NotFound:
        # Quarantined once already (a file of the same name, restored and damaged again).
        target = f"{target}.{layout.new_file_id()}"
    fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
    try:
        fs.move(path, target)
    except FileNotFoundError:
        return None
    note = {"original_path": path, "reason": reason, "quarantined_at_ms": int(time.time() * 1000)}
    try:
        with fs.open_output_stream(target + REASON_SUFFIX) as out:
            out.write(json.dumps(note, indent=2).encode("utf-8"))
    except OSError:
        pass  # the move is what matters; the note is a courtesy (a full disk may refuse it)
    return target


def list_quarantine(fs: pafs.FileSystem, root: str) -> list[pafs.FileInfo]:
    """Files in the lake's quarantine (notes excluded), by path."""
    selector = pafs.FileSelector(f"{root.rstrip('/')}/{QUARANTINE_DIR}", recursive=True, allow_not_found=True)
    found = [
        info
        for info in fs.get_file_info(selector)
        if info.type == pafs.FileType.File and not info.base_name.endswith(REASON_SUFFIX)
    ]
    return sorted(found, key=lambda info: info.path)
