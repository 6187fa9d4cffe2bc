"""Safe access to a run's artifacts: listing, reading and serving files under its directory only.

A requested path is refused when it is absolute, holds a ``..`` segment, a backslash or a NUL,
or - on a local lake - resolves (through symlinks) to anything outside the run's artifact
directory. Listing skips such entries too. Files are served by a read-only Flask route with a
sandboxing Content-Security-Policy, so an HTML or SVG artifact cannot run script in the app.
"""

from __future__ import annotations

import json
import mimetypes
import os
import posixpath
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pyarrow.fs as pafs

if TYPE_CHECKING:
    from flask import Flask

    from runlake.app.web.services import Services

PREVIEW_BYTES = 1_000_000
ROUTE = "/artifacts"
IMAGE_TYPES = {".png", ".jpg", ".jpeg", ".gif", ".webp", ".svg", ".bmp"}
TEXT_LANGUAGES = {
    ".py": "python",
    ".txt": "",
    ".log": "",
    ".md": "markdown",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".toml": "toml",
    ".cfg": "ini",
    ".ini": "ini",
    ".sh": "bash",
    ".diff": "diff",
    ".patch": "diff",
    ".sql": "sql",
    ".ipynb": "json",
    ".r": "r",
    ".scala": "scala",
    ".java": "java",
    ".js": "javascript",
    ".html": "html",
    ".xml": "xml",
    "": "",
}
# Served as plain text whatever their real type: never rendered by the browser as a page.
ACTIVE_TYPES = {
    "text/html",
    "application/xhtml+xml",
    "application/javascript",
    "text/javascript",
    "text/xml",
    "application/xml",
}
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; sandbox",
    "Cache-Control": "no-store",
}


class UnsafeArtifactPath(ValueError):
    """A requested artifact path points outside the run's artifact directory."""


@dataclass(frozen=True)
class Entry:
    path: str  # relative, '/'-separated
    size: int
    is_dir: bool


class RunArtifacts:
    """The artifacts of one run, confined to its directory.

    Args:
        fs: the lake's pyarrow filesystem.
        root: the run's artifact directory on ``fs``.
    """

    def __init__(self, fs: pafs.FileSystem, root: str) -> None:
        self.fs = fs
        self.root = root.rstrip("/")
        self.local = isinstance(fs, pafs.LocalFileSystem)

    def resolve(self, rel: str) -> str:
        """The full path of ``rel``.

        Raises:
            UnsafeArtifactPath: absolute, ``..``, backslash, NUL, or (local) a symlink leading out.
        """
        if not isinstance(rel, str) or not rel or "\x00" in rel or "\\" in rel:
            raise UnsafeArtifactPath(f"Invalid artifact path {rel!r}")
        if rel.startswith("/") or (len(rel) > 1 and rel[1] == ":"):
            raise UnsafeArtifactPath(f"Artifact paths are relative to the run, got {rel!r}")
        parts = rel.split("/")
        if any(part in ("..", ".") for part in parts) or any(not part for part in parts):
            raise UnsafeArtifactPath(f"Artifact path {rel!r} must not contain '..', '.' or empty segments")
        full = f"{self.root}/{rel}"
        if self.local and not self._inside(full):
            raise UnsafeArtifactPath(f"Artifact path {rel!r} leads outside the run's artifact directory")
        return full

    def _inside(self, full: str) -> bool:
        root = os.path.realpath(self.root)
        real = os.path.realpath(full)
        return real == root or real.startswith(root + os.sep)

    def list(self) -> list[Entry]:
        """Every file and folder under the run's directory, sorted, symlinks out of it skipped."""
        try:
            infos = self.fs.get_file_info(pafs.FileSelector(self.root, recursive=True, allow_not_found=True))
        except OSError:  # pyarrow's I/O errors are OSErrors
            return []
        entries = []
        for info in infos:
            rel = info.path[len(self.root) + 1 :] if info.path.startswith(self.root + "/") else None
            if not rel:
                continue
            if self.local and not self._inside(info.path):
                continue
            if info.type == pafs.FileType.NotFound:
                continue
            entries.append(Entry(rel, int(info.size or 0), info.type == pafs.FileType.Directory))
        return sorted(entries, key=lambda e: e.path)

    def read(self, rel: str, limit: int | None = None) -> bytes:
        full = self.resolve(rel)
        info = self.fs.get_file_info(full)
        if info.type != pafs.FileType.File:
            raise FileNotFoundError(rel)
        with self.fs.open_input_stream(full) as stream:
            data: bytes = stream.read(limit) if limit is not None else stream.read()
        return data

    def size(self, rel: str) -> int:
        return int(self.fs.get_file_info(self.resolve(rel)).size or 0)

    def exists(self, rel: str) -> bool:
        try:
            return bool(self.fs.get_file_info(self.resolve(rel)).type == pafs.FileType.File)
        except UnsafeArtifactPath:
            return False


def for_run(services: Services, run_id: str) -> RunArtifacts | None:
    """The artifacts of a run, or None for an unknown run. The directory comes from the lake's
    layout (experiment id and run id), not from the stored URI, so the row cannot redirect it."""
    record = services.get_run(run_id)
    if record is None:
        return None
    lake = services.lake
    return RunArtifacts(lake.fs, lake.paths.run_artifact_dir(str(record.info["experiment_id"]), record.run_id))


def url(run_id: str, rel: str, download: bool = False) -> str:
    return f"{ROUTE}/{quote(run_id)}/{quote(rel)}" + ("?download=1" if download else "")


def kind(rel: str) -> str:
    """How a file is previewed: image, plotly, json, csv, text or binary."""
    name = posixpath.basename(rel).lower()
    ext = posixpath.splitext(name)[1]
    if name.endswith(".plotly.json"):
        return "plotly"
    if ext in IMAGE_TYPES:
        return "image"
    if ext == ".json" or name == "mlmodel":
        return "json" if ext == ".json" else "text"
    if ext in (".csv", ".tsv"):
        return "csv"
    if ext in TEXT_LANGUAGES or name in ("requirements.txt", "dockerfile", "makefile", "license"):
        return "text"
    return "binary"


def language(rel: str) -> str:
    return TEXT_LANGUAGES.get(posixpath.splitext(rel.lower())[1], "")


def content_type(rel: str) -> str:
    guessed = mimetypes.guess_type(posixpath.basename(rel))[0] or "application/octet-stream"
    if guessed in ACTIVE_TYPES or kind(rel) in ("text", "json", "plotly", "csv") and not guessed.startswith("image/"):
        return "text/plain; charset=utf-8" if kind(rel) != "json" else "application/json"
    return guessed


def register_routes(server: Flask, services: Services) -> None:
    """``GET /artifacts/<run_id>/<path>``: one file, inline or (``?download=1``) as an attachment."""
    from flask import Response, abort, request

    @server.route(f"{ROUTE}/<run_id>/<path:rel>", endpoint="runlake_artifact")
    def serve_artifact(run_id: str, rel: str) -> Response:
        store = for_run(services, run_id)
        if store is None:
            abort(404)
        try:
            data = store.read(rel)
        except UnsafeArtifactPath:
            abort(403)
        except (FileNotFoundError, OSError):
            abort(404)
        response = Response(data, mimetype=None, content_type=content_type(rel))
        disposition = "attachment" if request.args.get("download") else "inline"
        filename = posixpath.basename(rel).replace('"', "")
        response.headers["Content-Disposition"] = f'{disposition}; filename="{filename}"'
        response.headers.update(SECURITY_HEADERS)
        return response


def load_json(data: bytes) -> Any:
    return json.loads(data.decode("utf-8"))
