"""Copying files into a run's artifact directory (pyarrow.fs and stdlib only)."""

from __future__ import annotations

import os
import posixpath

import pyarrow.fs as pafs


def clean_artifact_path(artifact_path: str | None) -> str:
    """A relative POSIX path inside a run's artifacts, or '' for the top level.

    Raises:
        ValueError: the path is absolute or climbs out with '..'.
    """
    if artifact_path in (None, "", "."):
        return ""
    text = str(artifact_path).replace("\\", "/")
    norm = posixpath.normpath(text)
    if text.startswith("/") or norm == ".." or norm.startswith("../") or "/../" in f"/{norm}/":
        raise ValueError(f"Invalid artifact path '{artifact_path}': it must be relative and stay inside the run")
    return "" if norm == "." else norm


def _join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *[p for p in parts if p]])


def write_bytes(fs: pafs.FileSystem, run_dir: str, artifact_file: str, data: bytes) -> str:
    """Write ``data`` to ``artifact_file`` (a relative path) under ``run_dir``; returns its path.

    Written to a temporary name and renamed, so a reader never sees half a file.
    """
    rel = clean_artifact_path(artifact_file)
    if not rel:
        raise ValueError("An artifact file name is required")
    target = _join(run_dir, rel)
    fs.create_dir(posixpath.dirname(target), recursive=True)
    tmp = f"{posixpath.dirname(target)}/.{posixpath.basename(target)}.{os.getpid()}.tmp"
    with fs.open_output_stream(tmp) as out:
        out.write(data)
    fs.move(tmp, target)
    return target


def copy_file(fs: pafs.FileSystem, run_dir: str, local_path: str | os.PathLike[str], artifact_path: str | None) -> str:
    """Copy one local file into ``run_dir/artifact_path/<name>``."""
    local = os.fspath(local_path)
    if not os.path.isfile(local):
        raise FileNotFoundError(f"No such file to log as an artifact: '{local}'")
    dest = _join(run_dir, clean_artifact_path(artifact_path), os.path.basename(local))
    fs.create_dir(posixpath.dirname(dest), recursive=True)
    tmp = f"{posixpath.dirname(dest)}/.{posixpath.basename(dest)}.{os.getpid()}.tmp"
    with open(local, "rb") as src, fs.open_output_stream(tmp) as out:
        while chunk := src.read(1 << 20):
            out.write(chunk)
    fs.move(tmp, dest)
    return dest


def copy_tree(
    fs: pafs.FileSystem, run_dir: str, local_dir: str | os.PathLike[str], artifact_path: str | None
) -> list[str]:
    """Copy every file below a local directory, keeping the relative layout."""
    local = os.fspath(local_dir)
    if not os.path.isdir(local):
        raise FileNotFoundError(f"No such directory to log as artifacts: '{local}'")
    base = clean_artifact_path(artifact_path)
    written = []
    for dirpath, _dirs, files in os.walk(local):
        rel = os.path.relpath(dirpath, local).replace(os.sep, "/")
        for name in sorted(files):
            sub = posixpath.normpath(posixpath.join(base, rel)) if rel != "." else base
            written.append(copy_file(fs, run_dir, os.path.join(dirpath, name), sub if sub != "." else ""))
    return written
