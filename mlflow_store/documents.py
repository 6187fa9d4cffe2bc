"""What MLflow keeps beside runs that the lake's tables do not hold, as small JSON documents.

Run inputs (datasets, models) and outputs (logged models), experiment tags, MLflow 3 logged
models and the metrics logged against them live under ``<lake>/_mlflow/<kind>/<key>/<file id>.json``. They follow the lake's own
rules: every change is a new immutable file written to a temporary name and renamed (so two
processes never overwrite each other and a reader never sees half a file), and the current
state is folded from all of a key's files by their ``version``. Files are read once and kept,
since they never change.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import pyarrow.fs as pafs

from runlake.core import artifacts, layout

DIR = layout.MLFLOW_DOCUMENTS
RUN_IO = layout.RUN_IO_DOCUMENTS  # a run's dataset inputs, model inputs and model outputs
EXPERIMENT_TAGS = "experiment_tags"
LOGGED_MODELS = "logged_models"
MODEL_METRICS = "logged_model_metrics"  # metrics logged with a model_id, per model


class Documents:
    """The JSON documents of one lake."""

    def __init__(self, fs: pafs.FileSystem, root: str) -> None:
        self.fs = fs
        self.base = f"{root}/{DIR}"
        self._cache: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def _dir(self, kind: str, key: str) -> str:
        if not layout.is_valid_id(key):
            raise ValueError(f"Invalid document key {key!r}")
        return f"{self.base}/{kind}/{key}"

    def add(self, kind: str, key: str, body: dict[str, Any]) -> None:
        """Record one change (a new file; ``version`` orders it after every earlier one)."""
        doc = {"version": layout.next_version(), **body}
        name = f"{layout.new_file_id()}.json"
        artifacts.write_bytes(self.fs, self._dir(kind, key), name, json.dumps(doc).encode("utf-8"))

    def read(self, kind: str, key: str) -> list[dict[str, Any]]:
        """Every change recorded for a key, oldest first."""
        selector = pafs.FileSelector(self._dir(kind, key), allow_not_found=True)
        infos = [
            i
            for i in self.fs.get_file_info(selector)
            if i.type == pafs.FileType.File and i.base_name.endswith(".json") and not i.base_name.startswith(".")
        ]
        docs = []
        for info in infos:
            with self._lock:
                doc = self._cache.get(info.path)
            if doc is None:
                with self.fs.open_input_stream(info.path) as stream:
                    doc = json.loads(stream.read().decode("utf-8"))
                with self._lock:
                    self._cache[info.path] = doc
            docs.append(doc)
        return sorted(docs, key=lambda d: d.get("version", 0))

    def keys(self, kind: str) -> set[str]:
        """The keys that have documents of this kind."""
        selector = pafs.FileSelector(f"{self.base}/{kind}", allow_not_found=True)
        return {i.base_name for i in self.fs.get_file_info(selector) if i.type == pafs.FileType.Directory}


def fold_tags(docs: list[dict[str, Any]]) -> dict[str, str]:
    """Tag documents ({key, value}; value None deletes) folded into the current tags."""
    tags: dict[str, str] = {}
    for doc in docs:
        if doc.get("value") is None:
            tags.pop(doc["key"], None)
        else:
            tags[doc["key"]] = doc["value"]
    return tags
