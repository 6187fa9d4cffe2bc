"""One run in full: ``RunRecord`` with attributes, params, latest metrics (with min/max) and tags."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runlake.core.errors import RunNotFound
from runlake.lake.catalog import record
from runlake.lake.connection import Connection
from runlake.lake.sql import check_id, q


@dataclass(frozen=True)
class RunRecord:
    """Everything about one run: attributes, params, latest metrics with min/max, tags."""

    info: dict[str, Any]
    params: dict[str, str]
    metrics: dict[str, float]
    metric_stats: dict[str, dict[str, float]]
    tags: dict[str, str]

    @property
    def run_id(self) -> str:
        return str(self.info["run_id"])


def get_run(db: Connection, run_id: str) -> RunRecord:
    """Every attribute, param, latest metric (with min and max) and tag of a run.

    Raises:
        RunNotFound: no run has this id.
    """
    check_id(run_id)
    info = db.frame(q("SELECT * FROM runs WHERE run_id = ?", run_id))
    if info.empty:
        raise RunNotFound(run_id)
    params = dict(db.rows(q("SELECT key, value FROM params WHERE run_id = ? ORDER BY key", run_id)))
    tags = dict(db.rows(q("SELECT key, value FROM tags WHERE run_id = ? ORDER BY key", run_id)))
    stats = db.rows(
        q(
            "SELECT key, value, step, timestamp, min_value, max_value FROM latest_metrics WHERE run_id = ? ORDER BY key",
            run_id,
        )
    )
    return RunRecord(
        info=record(info.iloc[0]),
        params=params,
        metrics={key: value for key, value, *_ in stats},
        metric_stats={
            key: {"latest": value, "step": step, "timestamp": ts, "min": lo, "max": hi}
            for key, value, step, ts, lo, hi in stats
        },
        tags=tags,
    )
